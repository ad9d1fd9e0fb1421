//! The upstream side of the app's MCP server: the connections to its MCP servers, what they
//! list (merged) and where each call, prompt and read goes.
//!
//! Tools and prompts are named `{server}-{name}` (tools filtered by the app's allow/deny lists,
//! which name tools only). Resource URIs are kept as the upstream wrote them, since clients
//! open them as URIs, and only their display names are prefixed: a read goes to the server that
//! listed the URI (or whose template's literal head it starts with), remembered from the last
//! listing and listed again on a miss, so any instance can serve any read. When two servers list
//! the same URI the first in the manifest keeps it.

use super::access::Access;
use super::client::McpHttp;
use super::forward::{Downstream, Forwarder, Notices};
use super::sse::SseTransport;
use super::{prefixed, split_name, Upstream};
use crate::manifest::McpTransport;
use crate::observability::metrics::{self, LabelText};
use crate::observability::session_log::{LogBuffer, LogType};
use crate::transport::UpstreamClient;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, CancelledNotificationParam,
    ClientRequest, GetPromptRequestParams, GetPromptResponse, Prompt, ReadResourceRequestParams, ReadResourceResponse,
    Resource, ResourceTemplate, ServerCapabilities, ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ErrorData, ServiceError, ServiceExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tracing::Instrument;

/// How long connecting to an upstream (its `initialize` handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upstream may take to list its tools, prompts or resources.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream could not serve a request.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("cancelled by the client")]
    Cancelled,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Why a tool call, prompt or resource read got no answer from an upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("unknown {what} {name:?}: {what}s are named {{server}}-{{name}} after this app's MCP servers")]
    UnknownName { what: &'static str, name: String },
    #[error("tool {tool:?} of MCP server {server:?} is not allowed by this app")]
    NotAllowed { server: String, tool: String },
    #[error("no MCP server of this app lists the resource {0:?}")]
    UnknownResource(String),
    /// The caller's key does not reach the server or tool.
    #[error("{0}")]
    Forbidden(String),
    /// The upstream's own MCP error, passed on as it sent it.
    #[error("{}", .0.message)]
    Upstream(ErrorData),
    #[error("MCP server {server:?} is unavailable: {reason}")]
    Unavailable { server: String, reason: String },
}

impl GatewayError {
    fn from_upstream(server: &str, error: UpstreamError) -> GatewayError {
        match error {
            UpstreamError::Service(ServiceError::McpError(e)) => GatewayError::Upstream(e),
            e => GatewayError::Unavailable { server: server.to_owned(), reason: e.to_string() },
        }
    }
}

impl From<GatewayError> for ErrorData {
    fn from(error: GatewayError) -> ErrorData {
        match error {
            GatewayError::Upstream(e) => e,
            GatewayError::UnknownResource(_) => ErrorData::resource_not_found(error.to_string(), None),
            GatewayError::UnknownName { .. } | GatewayError::NotAllowed { .. } | GatewayError::Forbidden(_) => {
                ErrorData::invalid_params(error.to_string(), None)
            }
            GatewayError::Unavailable { .. } => ErrorData::internal_error(error.to_string(), None),
        }
    }
}

/// One upstream and its client connection, opened on first use and again after it breaks.
struct Server {
    upstream: Upstream,
    http: McpHttp,
    /// The connection's handler: where the upstream's notifications go.
    forwarder: Forwarder,
    connection: Mutex<Option<RunningService<RoleClient, Forwarder>>>,
}

impl Server {
    async fn peer(&self) -> Result<rmcp::Peer<RoleClient>, UpstreamError> {
        // One connection per upstream: callers that find none wait for the one being opened.
        let mut slot = self.connection.lock().await;
        // A service whose transport ended (its loop gone) is not cancelled, so `is_closed` alone
        // misses it; its peer's channel is closed then.
        if let Some(running) = slot.as_ref().filter(|r| !r.is_closed() && !r.peer().is_transport_closed()) {
            return Ok(running.peer().clone());
        }
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let handler = self.forwarder.clone();
        let running = match self.upstream.transport {
            McpTransport::Http => {
                let config = StreamableHttpClientTransportConfig::with_uri(self.upstream.url.clone());
                let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
                tokio::time::timeout_at(deadline, handler.serve(transport)).await
            }
            McpTransport::Sse => {
                let transport = SseTransport::connect(self.http.clone(), &self.upstream.url, CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                tokio::time::timeout_at(deadline, handler.serve(transport)).await
            }
        };
        let running =
            running.map_err(|_| UpstreamError::Timeout)?.map_err(|e| UpstreamError::Connect(root_cause(&e)))?;
        let peer = running.peer().clone();
        *slot = Some(running);
        Ok(peer)
    }

    /// Forgets a connection that failed, so the next request opens a new one (an upstream
    /// restarted has forgotten its sessions).
    async fn reset(&self, error: &UpstreamError) {
        if !matches!(error, UpstreamError::Service(ServiceError::McpError(_)) | UpstreamError::Cancelled) {
            self.connection.lock().await.take();
        }
    }

    /// Runs `request` on the upstream's connection, forgetting the connection when it failed.
    async fn request<T, F>(&self, request: impl FnOnce(rmcp::Peer<RoleClient>) -> F) -> Result<T, UpstreamError>
    where
        F: Future<Output = Result<T, ServiceError>>,
    {
        let result = async { Ok(request(self.peer().await?).await?) }.await;
        if let Err(e) = &result {
            self.reset(e).await;
        }
        result
    }

    /// A listing, bounded by [`LIST_TIMEOUT`]; empty when the upstream does not offer
    /// `capability` (a tools-only server is not down for `prompts/list`).
    async fn list<T, F>(
        &self,
        capability: fn(&ServerCapabilities) -> bool,
        list: impl FnOnce(rmcp::Peer<RoleClient>) -> F,
    ) -> Result<Vec<T>, UpstreamError>
    where
        F: Future<Output = Result<Vec<T>, ServiceError>>,
    {
        let listed = self.request(|peer| async move {
            let offered = peer.peer_info().is_some_and(|info| capability(&info.capabilities));
            if offered {
                list(peer).await
            } else {
                Ok(Vec::new())
            }
        });
        let result = tokio::time::timeout(LIST_TIMEOUT, listed).await.unwrap_or(Err(UpstreamError::Timeout));
        // A connection that hung is as broken as one that failed.
        if let Err(e @ UpstreamError::Timeout) = &result {
            self.reset(e).await;
        }
        result
    }

    /// Calls a tool, its progress routed to `downstream` and the call cancelled upstream when
    /// the client cancels it.
    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        downstream: Option<&Downstream>,
    ) -> Result<CallToolResponse, UpstreamError> {
        let peer = self.peer().await?;
        let result = async {
            let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
            let handle = peer.send_cancellable_request(request, PeerRequestOptions::no_options()).await?;
            let id = handle.id.clone();
            let _route = downstream.and_then(|d| self.forwarder.route(handle.progress_token.clone(), d));
            let cancel = downstream.map(|d| d.cancel.clone()).unwrap_or_default();
            tokio::select! {
                answer = handle.await_response() => Ok(tool_response(answer?)?),
                () = cancel.cancelled() => {
                    let notice = CancelledNotificationParam::new(Some(id), Some("cancelled by the client".into()));
                    // Best effort: the upstream may be gone, and the client no longer waits.
                    let _ = peer.notify_cancelled(notice).await;
                    Err(UpstreamError::Cancelled)
                }
            }
        }
        .await;
        if let Err(e) = &result {
            self.reset(e).await;
        }
        result
    }

    async fn tools(&self) -> Result<Vec<Tool>, UpstreamError> {
        self.list(|c| c.tools.is_some(), |peer| async move { peer.list_all_tools().await }).await
    }

    async fn prompts(&self) -> Result<Vec<Prompt>, UpstreamError> {
        self.list(|c| c.prompts.is_some(), |peer| async move { peer.list_all_prompts().await }).await
    }

    async fn resources(&self) -> Result<Vec<Resource>, UpstreamError> {
        self.list(|c| c.resources.is_some(), |peer| async move { peer.list_all_resources().await }).await
    }

    async fn templates(&self) -> Result<Vec<ResourceTemplate>, UpstreamError> {
        self.list(|c| c.resources.is_some(), |peer| async move { peer.list_all_resource_templates().await }).await
    }
}

/// The innermost cause of `error`: rmcp's outer layers name its transport's types, which say
/// nothing to whoever reads the log.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// A `tools/call` answer as rmcp's `call_tool_once` reads it: a result, a request for input,
/// or a task; a reply without `content` is an empty result.
fn tool_response(result: ServerResult) -> Result<CallToolResponse, ServiceError> {
    match result {
        ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
        ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
        ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
        ServerResult::EmptyResult(_) => Ok(CallToolResponse::Complete(CallToolResult::default())),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// What each upstream listed, by index, and `"{server}: {error}"` for those that failed.
struct Listing<T> {
    answered: Vec<(usize, Vec<T>)>,
    failed: Vec<String>,
}

/// The tools clients see, each with its server's name, and the upstreams left out.
pub struct ToolListing<'a> {
    pub tools: Vec<(&'a str, Tool)>,
    pub failed: Vec<String>,
}

/// Which upstream serves a resource URI, as learnt from the last listings.
#[derive(Default)]
struct ResourceOwners {
    /// Exact URIs, from `resources/list`.
    uris: HashMap<String, usize>,
    /// Literal heads of URI templates (the text before the first `{`), from
    /// `resources/templates/list`, with the index of their server.
    templates: Vec<(String, usize)>,
}

impl ResourceOwners {
    fn owner(&self, uri: &str) -> Option<usize> {
        self.uris.get(uri).copied().or_else(|| {
            self.templates
                .iter()
                .filter(|(head, _)| !head.is_empty() && uri.starts_with(head.as_str()))
                .max_by_key(|(head, _)| head.len())
                .map(|(_, server)| *server)
        })
    }
}

/// The upstream servers of one running app, and where its tool calls are logged.
pub struct Gateway {
    servers: Vec<Server>,
    logs: Arc<LogBuffer>,
    /// The session's workspace and app, as metric labels.
    owner: (LabelText, LabelText),
    owners: std::sync::Mutex<ResourceOwners>,
    /// Calls in flight, clients listening for list changes, the relay to other instances.
    notices: Arc<Notices>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.servers.iter().map(|s| &s.upstream)).finish()
    }
}

impl Gateway {
    /// `public_only`: the upstreams may be reached at public addresses only (see `transport::guard`).
    pub fn new(
        upstreams: Vec<Upstream>,
        http: Arc<UpstreamClient>,
        public_only: bool,
        logs: Arc<LogBuffer>,
        owner: (LabelText, LabelText),
    ) -> Gateway {
        let notices = Arc::new(Notices::default());
        let servers = upstreams
            .into_iter()
            .map(|upstream| Server {
                http: McpHttp { http: http.clone(), headers: Arc::new(upstream.headers.clone()), public_only },
                upstream,
                forwarder: Forwarder::new(notices.clone()),
                connection: Mutex::new(None),
            })
            .collect();
        Gateway { servers, logs, owner, owners: Default::default(), notices }
    }

    fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.upstream.name == name)
    }

    /// What `list` gives for each upstream that answers, in the manifest's order; an upstream
    /// that does not is left out, and logged.
    async fn each<'a, T, F>(&'a self, what: &str, list: impl Fn(&'a Server) -> F) -> Vec<(usize, Vec<T>)>
    where
        F: Future<Output = Result<Vec<T>, UpstreamError>>,
    {
        self.listing(what, list).await.answered
    }

    async fn listing<'a, T, F>(&'a self, what: &str, list: impl Fn(&'a Server) -> F) -> Listing<T>
    where
        F: Future<Output = Result<Vec<T>, UpstreamError>>,
    {
        let lists = futures::future::join_all(self.servers.iter().map(list)).await;
        let mut answered = Vec::new();
        let mut failed = Vec::new();
        for (index, (server, list)) in self.servers.iter().zip(lists).enumerate() {
            let name = &server.upstream.name;
            match list {
                Ok(list) => answered.push((index, list)),
                Err(e) => {
                    tracing::warn!(server = name.as_str(), error = %e, "MCP server left out of {what}");
                    self.logs.push(LogType::Error, format!("mcp {what}: server {name} left out: {e}"));
                    failed.push(format!("{name}: {e}"));
                }
            }
        }
        Listing { answered, failed }
    }

    /// Every permitted tool of every upstream that answers, prefixed.
    pub(super) async fn tools(&self, access: &Access) -> Vec<Tool> {
        let scoped = super::Scoped { gateway: self, access };
        scoped.tool_listing().await.tools.into_iter().map(|(_, tool)| tool).collect()
    }

    /// Every permitted tool of every upstream that answers, prefixed, with its server's name;
    /// and the upstreams that did not answer.
    pub async fn tool_listing(&self) -> ToolListing<'_> {
        let Listing { answered, failed } = self.listing("tools/list", Server::tools).await;
        let mut tools = Vec::new();
        for (index, list) in answered {
            let upstream = &self.servers[index].upstream;
            tools.extend(list.into_iter().filter(|t| upstream.permits(&t.name)).map(|mut t| {
                t.name = prefixed(&upstream.name, &t.name).into();
                (upstream.name.as_str(), t)
            }));
        }
        ToolListing { tools, failed }
    }

    /// What the gateway shares with its clients and other instances.
    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    /// Each upstream's health: how many tools it lists that the app permits, or why it does not
    /// answer (and so is left out of the lists).
    pub async fn health(&self) -> Vec<(&str, Result<usize, String>)> {
        let answers = futures::future::join_all(self.servers.iter().map(Server::tools)).await;
        let count =
            |server: &Server, tools: Vec<Tool>| tools.iter().filter(|t| server.upstream.permits(&t.name)).count();
        self.servers
            .iter()
            .zip(answers)
            .map(|(server, answer)| {
                (server.upstream.name.as_str(), answer.map(|tools| count(server, tools)).map_err(|e| e.to_string()))
            })
            .collect()
    }

    /// Whether the app has an MCP server of this name.
    pub fn has_server(&self, name: &str) -> bool {
        self.server(name).is_some()
    }

    /// The names of the app's MCP servers, in the manifest's order.
    pub fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|s| s.upstream.name.as_str())
    }

    /// The permitted tools of one server under their own names: the LLM routes' tool loop
    /// (`mcp::agent`) lists only the servers a request names, so a down server it does not
    /// name costs it nothing.
    pub async fn server_tools(&self, name: &str) -> Result<Vec<Tool>, GatewayError> {
        let Some(server) = self.server(name) else {
            return Err(GatewayError::Unavailable { server: name.to_owned(), reason: "no such server".to_owned() });
        };
        match server.tools().await {
            Ok(tools) => Ok(tools.into_iter().filter(|t| server.upstream.permits(&t.name)).collect()),
            Err(e) => {
                self.logs.push(LogType::Error, format!("mcp tools/list: server {name} failed: {e}"));
                Err(GatewayError::from_upstream(name, e))
            }
        }
    }

    /// Every prompt of every upstream that answers and `access` reaches, prefixed.
    pub(super) async fn prompts(&self, access: &Access) -> Vec<Prompt> {
        let mut prompts = Vec::new();
        for (index, list) in self.each("prompts/list", Server::prompts).await {
            let server = &self.servers[index].upstream.name;
            if !access.server(server) {
                continue;
            }
            prompts.extend(list.into_iter().map(|mut p| {
                p.name = prefixed(server, &p.name);
                p
            }));
        }
        prompts
    }

    /// Every resource of every upstream that answers and `access` reaches, URIs kept and names
    /// prefixed; remembers which server listed each URI (of every server).
    pub(super) async fn resources(&self, access: &Access) -> Vec<Resource> {
        let mut uris = HashMap::new();
        let mut resources = Vec::new();
        for (index, list) in self.each("resources/list", Server::resources).await {
            let server = &self.servers[index].upstream.name;
            for mut resource in list {
                if uris.contains_key(&resource.uri) {
                    continue;
                }
                uris.insert(resource.uri.clone(), index);
                if access.server(server) {
                    resource.name = prefixed(server, &resource.name);
                    resources.push(resource);
                }
            }
        }
        if let Ok(mut owners) = self.owners.lock() {
            owners.uris = uris;
        }
        resources
    }

    /// Every resource template of every upstream that answers and `access` reaches, names
    /// prefixed.
    pub(super) async fn templates(&self, access: &Access) -> Vec<ResourceTemplate> {
        let mut heads = Vec::new();
        let mut templates = Vec::new();
        for (index, list) in self.each("resources/templates/list", Server::templates).await {
            let server = &self.servers[index].upstream.name;
            for mut template in list {
                let head = template.uri_template.split('{').next().unwrap_or_default().to_owned();
                heads.push((head, index));
                if access.server(server) {
                    template.name = prefixed(server, &template.name);
                    templates.push(template);
                }
            }
        }
        if let Ok(mut owners) = self.owners.lock() {
            owners.templates = heads;
        }
        templates
    }

    fn owner(&self, uri: &str) -> Option<usize> {
        self.owners.lock().ok().and_then(|owners| owners.owner(uri))
    }

    /// The server a prefixed tool or prompt name stands for, and the upstream's own name.
    fn route(&self, what: &'static str, name: &str) -> Result<(&Server, String), GatewayError> {
        let names = self.servers.iter().map(|s| s.upstream.name.as_str());
        split_name(names, name)
            .and_then(|(server, own)| Some((self.server(server)?, own)))
            .ok_or_else(|| GatewayError::UnknownName { what, name: name.to_owned() })
    }

    pub(super) async fn get_prompt(
        &self,
        mut params: GetPromptRequestParams,
        access: &Access,
    ) -> Result<GetPromptResponse, GatewayError> {
        let (server, prompt) = self.route("prompt", &params.name)?;
        if !access.server(&server.upstream.name) {
            return Err(GatewayError::Forbidden(format!("this key may not use MCP server {:?}", server.upstream.name)));
        }
        params.name = prompt;
        let result = server.request(|peer| async move { peer.get_prompt_once(params).await }).await;
        result.map_err(|e| GatewayError::from_upstream(&server.upstream.name, e))
    }

    pub(super) async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        access: &Access,
    ) -> Result<ReadResourceResponse, GatewayError> {
        let owner = match self.owner(&params.uri) {
            Some(owner) => Some(owner),
            // Listed by another instance, or since: learn the owners again.
            None => {
                let all = Access::all();
                futures::future::join(self.resources(&all), self.templates(&all)).await;
                self.owner(&params.uri)
            }
        };
        // A server the caller does not reach lists nothing to it: its resources are unknown.
        let owner = owner.filter(|index| self.servers.get(*index).is_some_and(|s| access.server(&s.upstream.name)));
        let Some(server) = owner.and_then(|index| self.servers.get(index)) else {
            return Err(GatewayError::UnknownResource(params.uri));
        };
        let result = server.request(|peer| async move { peer.read_resource_once(params).await }).await;
        result.map_err(|e| GatewayError::from_upstream(&server.upstream.name, e))
    }

    /// Refuses a prefixed tool the caller's `access` does not reach.
    pub fn check_access(&self, name: &str, access: &Access) -> Result<(), GatewayError> {
        let (server, tool) = self.route("tool", name)?;
        if access.tool(&server.upstream.name, &tool) {
            return Ok(());
        }
        Err(GatewayError::Forbidden(format!("this key may not call MCP tool {name:?}")))
    }

    /// Calls a prefixed tool on its server, and logs the call.
    pub async fn call(&self, params: CallToolRequestParams) -> Result<CallToolResponse, GatewayError> {
        self.call_for(params, None).await
    }

    /// [`Gateway::call`] for an MCP client, which gets the call's progress and may cancel it.
    pub(super) async fn call_for(
        &self,
        mut params: CallToolRequestParams,
        downstream: Option<&Downstream>,
    ) -> Result<CallToolResponse, GatewayError> {
        let (server, tool) = self.route("tool", &params.name)?;
        let server_name = server.upstream.name.as_str();
        if !server.upstream.permits(&tool) {
            return Err(GatewayError::NotAllowed { server: server_name.to_owned(), tool });
        }
        params.name = tool.clone().into();
        let started = Instant::now();
        let span = tracing::info_span!("mcp_call", server = server_name, tool = tool.as_str());
        let result = server.call_tool(params, downstream).instrument(span).await;
        let elapsed = started.elapsed();
        let latency_ms = elapsed.as_millis();
        let (kind, status) = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => (LogType::Log, "tool_error".to_owned()),
            Ok(_) => (LogType::Log, "ok".to_owned()),
            Err(UpstreamError::Cancelled) => (LogType::Log, "cancelled".to_owned()),
            Err(e) => (LogType::Error, format!("failed: {e}")),
        };
        let (label, named) = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => ("tool_error", tool.as_str()),
            Ok(_) => ("ok", tool.as_str()),
            Err(UpstreamError::Cancelled) => ("cancelled", tool.as_str()),
            Err(_) => ("failed", ""),
        };
        metrics::mcp_call(&self.owner.0, &self.owner.1, server_name, named, label, elapsed);
        self.logs.push(
            kind,
            format!("mcp tools/call server={server_name} tool={tool} latency_ms={latency_ms} status={status}"),
        );
        result.map_err(|e| GatewayError::from_upstream(server_name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_reads_go_to_the_listing_server_then_the_longest_template_head() {
        let owners = ResourceOwners {
            uris: HashMap::from([("docs://readme".to_owned(), 0)]),
            templates: vec![("docs://".into(), 1), ("docs://pages/".into(), 2), (String::new(), 3)],
        };
        assert_eq!(owners.owner("docs://readme"), Some(0));
        assert_eq!(owners.owner("docs://pages/1"), Some(2));
        assert_eq!(owners.owner("docs://other"), Some(1));
        assert_eq!(owners.owner("file:///x"), None, "a template that opens with a variable matches nothing");
    }
}
