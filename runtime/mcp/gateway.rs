//! The app's MCP server: rmcp's Streamable HTTP service around a handler that lists the tools
//! of every upstream server (prefixed `{server}-{tool}`, filtered by the app's lists) and
//! forwards each call to its server.

use super::client::McpHttp;
use super::{prefixed, split_name, Upstream};
use crate::manifest::McpTransport;
use crate::observability::session_log::{LogBuffer, LogType};
use crate::transport::UpstreamClient;
use axum::body::Body;
use axum::response::Response;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceError, ServiceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tracing::Instrument;

/// How long connecting to an upstream (its `initialize` handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upstream may take to list its tools.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream could not serve a request.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("the {0} transport is not supported yet")]
    Transport(&'static str),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// One upstream and its client connection, opened on first use and again after it breaks.
struct Server {
    upstream: Upstream,
    http: McpHttp,
    connection: Mutex<Option<RunningService<RoleClient, ()>>>,
}

impl Server {
    async fn peer(&self) -> Result<rmcp::Peer<RoleClient>, UpstreamError> {
        // One connection per upstream: callers that find none wait for the one being opened.
        let mut slot = self.connection.lock().await;
        if let Some(running) = slot.as_ref().filter(|r| !r.is_closed()) {
            return Ok(running.peer().clone());
        }
        if self.upstream.transport == McpTransport::Sse {
            return Err(UpstreamError::Transport("sse"));
        }
        let config = StreamableHttpClientTransportConfig::with_uri(self.upstream.url.clone());
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let running = tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let peer = running.peer().clone();
        *slot = Some(running);
        Ok(peer)
    }

    /// Forgets a connection that failed, so the next request opens a new one (an upstream
    /// restarted has forgotten its sessions).
    async fn reset(&self, error: &UpstreamError) {
        if !matches!(error, UpstreamError::Service(ServiceError::McpError(_))) {
            self.connection.lock().await.take();
        }
    }

    async fn tools(&self) -> Result<Vec<Tool>, UpstreamError> {
        let listed = async { Ok::<_, UpstreamError>(self.peer().await?.list_all_tools().await?) };
        let result = tokio::time::timeout(LIST_TIMEOUT, listed).await.unwrap_or(Err(UpstreamError::Timeout));
        if let Err(e) = &result {
            self.reset(e).await;
        }
        result
    }

    async fn call(&self, params: CallToolRequestParams) -> Result<CallToolResponse, UpstreamError> {
        let result = async { Ok(self.peer().await?.call_tool_once(params).await?) }.await;
        if let Err(e) = &result {
            self.reset(e).await;
        }
        result
    }
}

/// The upstream servers of one running app, and where its tool calls are logged.
pub struct Gateway {
    servers: Vec<Server>,
    logs: Arc<LogBuffer>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.servers.iter().map(|s| &s.upstream)).finish()
    }
}

impl Gateway {
    /// `public_only`: the upstreams may be reached at public addresses only (see `transport::guard`).
    pub fn new(upstreams: Vec<Upstream>, public_only: bool, logs: Arc<LogBuffer>) -> Gateway {
        // One pool for the app's MCP servers, apart from the LLM routes' (a session does not
        // hold the server's state).
        let http = Arc::new(UpstreamClient::new());
        let servers = upstreams
            .into_iter()
            .map(|upstream| Server {
                http: McpHttp { http: http.clone(), headers: Arc::new(upstream.headers.clone()), public_only },
                upstream,
                connection: Mutex::new(None),
            })
            .collect();
        Gateway { servers, logs }
    }

    fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.upstream.name == name)
    }

    /// Every permitted tool of every upstream that answers, prefixed.
    async fn list(&self) -> Vec<Tool> {
        let lists = futures::future::join_all(self.servers.iter().map(Server::tools)).await;
        let mut tools = Vec::new();
        for (server, list) in self.servers.iter().zip(lists) {
            let name = &server.upstream.name;
            match list {
                Ok(list) => tools.extend(list.into_iter().filter(|t| server.upstream.permits(&t.name)).map(|mut t| {
                    t.name = prefixed(name, &t.name).into();
                    t
                })),
                Err(e) => {
                    tracing::warn!(server = name.as_str(), error = %e, "MCP server left out of tools/list");
                    self.logs.push(LogType::Error, format!("mcp tools/list: server {name} left out: {e}"));
                }
            }
        }
        tools
    }

    async fn call(&self, mut params: CallToolRequestParams) -> Result<CallToolResponse, ErrorData> {
        let name = params.name.to_string();
        let names = self.servers.iter().map(|s| s.upstream.name.as_str());
        let Some((server_name, tool)) = split_name(names, &name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}: tools are named {{server}}-{{tool}} after this app's MCP servers"),
                None,
            ));
        };
        let server = self.server(server_name).ok_or_else(|| ErrorData::internal_error("no such server", None))?;
        if !server.upstream.permits(&tool) {
            return Err(ErrorData::invalid_params(
                format!("tool {tool:?} of MCP server {server_name:?} is not allowed by this app"),
                None,
            ));
        }
        params.name = tool.clone().into();
        let started = Instant::now();
        let span = tracing::info_span!("mcp_call", server = server_name, tool = tool.as_str());
        let result = server.call(params).instrument(span).await;
        let latency_ms = started.elapsed().as_millis();
        let (kind, status) = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => (LogType::Log, "tool_error".to_owned()),
            Ok(_) => (LogType::Log, "ok".to_owned()),
            Err(e) => (LogType::Error, format!("failed: {e}")),
        };
        self.logs.push(
            kind,
            format!("mcp tools/call server={server_name} tool={tool} latency_ms={latency_ms} status={status}"),
        );
        result.map_err(|e| match e {
            UpstreamError::Service(ServiceError::McpError(e)) => e,
            e => ErrorData::internal_error(format!("MCP server {server_name:?} is unavailable: {e}"), None),
        })
    }
}

/// rmcp's handler: one per request (the endpoint is stateless), all sharing the gateway.
#[derive(Clone)]
struct Handler(Arc<Gateway>);

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ferrolite", env!("CARGO_PKG_VERSION")))
            .with_instructions("The tools of this app's MCP servers, each named {server}-{tool}.")
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.0.list().await))
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.0.call(params).await
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
        // Stateless: no Mcp-Session-Id to keep, so any instance can answer any request; the
        // upstream sessions are the gateway's own. Host checks guard unauthenticated local
        // servers against DNS rebinding; this route takes ferrolite's tokens, checked before.
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .disable_allowed_hosts();
        let service = StreamableHttpService::new(move || Ok(Handler(shared.clone())), Default::default(), config);
        Endpoint { service, gateway }
    }

    /// Serves one HTTP request to `/mcp`.
    pub async fn serve(&self, request: axum::extract::Request) -> Response {
        let mut service = self.service.clone();
        match tower::Service::call(&mut service, request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        }
    }
}
