//! The app's MCP endpoint at `/mcp`: rmcp's Streamable HTTP server, stateless, over the
//! gateway, plus what a stateless rmcp server leaves out and clients expect:
//! - a session id on `initialize`'s answer, random and tied to nothing, so a client that only
//!   opens its notification stream once it has one does, and any instance accepts it (there is
//!   no session state to find: the upstream sessions are each instance's own);
//! - `GET`: the stream of server-initiated notifications, here the upstreams' list changes;
//! - `DELETE`: ends a session, which holds nothing;
//! - a client's `notifications/cancelled`, applied to the call it names (see `forward.rs`).

use super::access::Access;
use super::forward::{self, Downstream, ListChange, Posted};
use super::gateway::Gateway;
use axum::body::Body;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::Arc;
use std::time::Duration;

/// The largest MCP message a client may POST (rmcp's own limit).
const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;
/// How often an idle notification stream carries a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// What the caller reaches: the key's lists the door put in the HTTP request's extensions
/// (rmcp hands the request's parts to the handler), else everything.
fn access(context: &RequestContext<RoleServer>) -> Access {
    let parts = context.extensions.get::<axum::http::request::Parts>();
    parts.and_then(|p| p.extensions.get::<Access>()).cloned().unwrap_or_default()
}

/// rmcp's handler: one per request (the endpoint is stateless), all sharing the gateway.
#[derive(Clone)]
struct Handler(Arc<Gateway>);

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        // Lists change when an upstream's do: its notices reach clients on their GET stream.
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("ferrolite", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The tools, prompts and resources of this app's MCP servers; tools and prompts are named \
                 {server}-{name}.",
            )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.0.tools(&access(&context)).await))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(self.0.prompts(&access(&context)).await))
    }

    async fn get_prompt(
        &self,
        params: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        Ok(self.0.get_prompt(params, &access(&context)).await?)
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.0.resources(&access(&context)).await))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(self.0.templates(&access(&context)).await))
    }

    async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Ok(self.0.read_resource(params, &access(&context)).await?)
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let gateway = &self.0;
        gateway.check_access(&params.name, &access(&context))?;
        let headers = context.extensions.get::<axum::http::request::Parts>().map(|parts| &parts.headers);
        let caller = forward::caller(headers);
        let _inflight = gateway.notices().inflight.enter(caller, context.id.clone(), context.ct.clone());
        let downstream =
            Downstream { peer: context.peer, progress_token: context.meta.get_progress_token(), cancel: context.ct };
        Ok(gateway.call_for(params, Some(&downstream)).await?)
    }
}

/// The app's `/mcp` endpoint: rmcp's Streamable HTTP server over the gateway.
pub struct Endpoint {
    service: StreamableHttpService<Handler, NeverSessionManager>,
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("gateway", &self.gateway).finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(gateway: Gateway) -> Endpoint {
        let gateway = Arc::new(gateway);
        let shared = gateway.clone();
        // Stateless, so any instance can answer any request; the upstream sessions are the
        // gateway's own. Host checks guard unauthenticated local servers against DNS
        // rebinding; this route takes ferrolite's tokens, checked before.
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .disable_allowed_hosts();
        let service = StreamableHttpService::new(move || Ok(Handler(shared.clone())), Default::default(), config);
        Endpoint { service, gateway }
    }

    /// The gateway, for the doors that are not MCP (`/mcp-rest`, the LLM routes' MCP tools).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Serves one HTTP request to `/mcp`.
    pub async fn serve(&self, request: axum::extract::Request) -> Response {
        match *request.method() {
            Method::GET => self.notifications(&request),
            Method::DELETE => StatusCode::NO_CONTENT.into_response(),
            Method::POST => self.post(request).await,
            _ => self.rmcp(request).await,
        }
    }

    async fn rmcp(&self, request: axum::extract::Request) -> Response {
        let mut service = self.service.clone();
        match tower::Service::call(&mut service, request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        }
    }

    /// A POSTed message: a cancellation applied, an `initialize` answered with a session id,
    /// everything served by rmcp.
    async fn post(&self, request: axum::extract::Request) -> Response {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BODY).await else {
            let status = StatusCode::PAYLOAD_TOO_LARGE;
            return (status, format!("an MCP message is at most {MAX_REQUEST_BODY} bytes")).into_response();
        };
        let posted = Posted::of(&bytes);
        if let Posted::Cancelled(id) = &posted {
            let caller = forward::caller(Some(&parts.headers));
            let notices = self.gateway.notices();
            if !notices.inflight.cancel(caller, id.clone()) {
                // Served by another instance behind the same balancer, or already done.
                if let Some(relay) = notices.relay() {
                    relay.cancel(caller, id.clone());
                }
            }
        }
        let mut response = self.rmcp(axum::extract::Request::from_parts(parts, Body::from(bytes))).await;
        if posted == Posted::Initialize && response.status().is_success() {
            let id = format!("fl-mcp-{:032x}", rand::random::<u128>());
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
        }
        response
    }

    /// `GET /mcp`: the upstreams' list changes as they come, on this instance and (relayed)
    /// on the others.
    fn notifications(&self, request: &axum::extract::Request) -> Response {
        let accepts = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
        if !accepts.is_some_and(|a| a.contains("text/event-stream")) {
            let message = "GET /mcp opens the notification stream: send Accept: text/event-stream";
            return (StatusCode::NOT_ACCEPTABLE, message).into_response();
        }
        let changes = tokio_stream_of(self.gateway.notices().listen());
        let frames = changes.map(|change| {
            let frame = match change {
                Some(change) => {
                    format!("event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"{}\"}}\n\n", change.method())
                }
                None => ": keep-alive\n\n".to_owned(),
            };
            Ok::<_, std::convert::Infallible>(frame)
        });
        let mut response = Response::new(Body::from_stream(frames));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// The changes announced, as a stream of `Some(change)`, with `None` for each keep-alive
/// tick; a listener that fell behind hears that every list changed.
fn tokio_stream_of(
    changes: tokio::sync::broadcast::Receiver<ListChange>,
) -> futures::stream::BoxStream<'static, Option<ListChange>> {
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.reset();
    futures::stream::unfold((changes, tick, Vec::new()), |(mut changes, mut tick, mut pending)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(change) = pending.pop() {
                return Some((Some(change), (changes, tick, pending)));
            }
            tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => return Some((Some(change), (changes, tick, pending))),
                    Err(RecvError::Lagged(_)) => {
                        pending = vec![ListChange::Resources, ListChange::Prompts, ListChange::Tools];
                    }
                    // The app stopped: the stream ends.
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => return Some((None, (changes, tick, pending))),
            }
        }
    })
    .boxed()
}
