//! The HTTP door: shared state, the axum router built from the catalogue, and errors.

mod admission;
pub mod cache;
pub mod console;
pub mod controller;
pub mod dispatch;
mod drain;
pub mod error;
pub mod h1;
pub mod hypha_tokens;
pub mod key_limits;
pub mod keys;
pub mod limits;
pub mod local;
pub mod mcp;
pub mod metrics;
pub mod passthrough;
pub mod query;
pub mod routes;
pub mod serve;
pub mod spend_logs;

use crate::apps::Controller;
use crate::auth::Tokens;
use crate::catalogue::{self, Operation, ROUTES};
use crate::exchange::ApiError;
use crate::schema_check;
use crate::store::spend_logs::SpendLogs;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use jsonschema::Validator;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Body limits of particular route families (`audio`, `files`, ...), overriding the default.
    pub family_body_bytes: std::collections::HashMap<String, usize>,
    /// Requests served at once before new ones get 503.
    pub max_in_flight: usize,
    pub rates: limits::RateLimits,
}

impl Limits {
    /// The body limit of a route family.
    pub fn body_limit(&self, family: &str) -> usize {
        self.family_body_bytes.get(family).copied().unwrap_or(self.max_body_bytes)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
            family_body_bytes: Default::default(),
            max_in_flight: 10_000,
            rates: limits::RateLimits::default(),
        }
    }
}

/// What every handler shares.
pub struct Shared {
    pub controller: Controller,
    pub tokens: Tokens,
    pub limits: Limits,
    /// One connection pool for all upstreams (keep-alive, HTTP/2 where offered).
    pub http: crate::transport::UpstreamClient,
    pub in_flight: limits::InFlightLimit,
    pub rate_limits: limits::RateLimits,
    pub rates: limits::RateCounter,
    /// API keys' own rpm, tpm and requests at once, on this instance.
    pub key_limits: key_limits::KeyLimiter,
    /// `GET /metrics` without a token (`--metrics-public`).
    pub metrics_public: bool,
    /// Hypha tokens checked by asking their server (`--hypha-server` without its JWT secret).
    pub hypha_tokens: Option<hypha_tokens::HyphaTokenCheck>,
    /// One record per request served through a provider (`get_spend_logs`).
    pub spend_logs: Arc<SpendLogs>,
    /// Request-body validators, compiled on first use of each route.
    validators: Vec<OnceLock<Validator>>,
    /// The same schemas as the text check walks them, where it can (`schema_check::text`).
    text_plans: Vec<OnceLock<Option<schema_check::text::Plan>>>,
}

/// Cheap-to-clone handle on [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(controller: Controller, tokens: Tokens, limits: Limits, spend_logs: Arc<SpendLogs>) -> AppState {
        let http = crate::transport::UpstreamClient::new();
        AppState(Arc::new(Shared {
            controller,
            tokens,
            in_flight: limits::InFlightLimit::new(limits.max_in_flight),
            rate_limits: limits.rates,
            rates: limits::RateCounter::default(),
            key_limits: key_limits::KeyLimiter::default(),
            metrics_public: false,
            hypha_tokens: None,
            spend_logs,
            limits,
            http,
            validators: ROUTES.iter().map(|_| OnceLock::new()).collect(),
            text_plans: ROUTES.iter().map(|_| OnceLock::new()).collect(),
        }))
    }
}

/// Settings applied to the state just built, before it is cloned: a shared state is left as it
/// is, with a warning naming the setting.
impl AppState {
    fn configured(mut self, setting: &str, set: impl FnOnce(&mut Shared)) -> AppState {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => set(shared),
            None => tracing::warn!("{setting} on a shared state: left unchanged"),
        }
        self
    }

    /// Accepts the tokens of the Hypha server at `server` by asking it about each.
    pub fn with_hypha_token_check(self, server: &str) -> AppState {
        self.configured("with_hypha_token_check", |shared| {
            shared.hypha_tokens = Some(hypha_tokens::HyphaTokenCheck::new(server))
        })
    }

    /// Calls upstreams as `settings` say (`--upstream-http2`, `--upstream-http2-streams`); see
    /// [`crate::transport`].
    pub fn with_upstream(self, settings: crate::transport::Settings) -> AppState {
        self.configured("with_upstream", |shared| shared.http.configure(settings))
    }

    /// Opens `GET /metrics` to callers without a token.
    pub fn with_metrics_public(self, public: bool) -> AppState {
        self.configured("with_metrics_public", |shared| shared.metrics_public = public)
    }
}

impl Shared {
    /// The compiled request schema of `op`.
    pub fn validator(&self, op: Operation, schema: &'static str) -> &Validator {
        self.validators[op as usize].get_or_init(|| {
            let value = serde_json::from_str(schema).expect("build.rs writes schemas as JSON");
            schema_check::compile(&value).expect("build.rs checked that every catalogue schema compiles")
        })
    }

    /// `op`'s request schema as the text check walks it; `None` when it uses more of JSON
    /// Schema than the walk knows.
    pub fn text_plan(&self, op: Operation, schema: &'static str) -> Option<&schema_check::text::Plan> {
        self.text_plans[op as usize]
            .get_or_init(|| {
                let value = serde_json::from_str(schema).expect("build.rs writes schemas as JSON");
                schema_check::text::Plan::compile(&value)
            })
            .as_ref()
    }
}

/// The whole HTTP surface, and how many catalogue paths it mounts. (The WebSocket door is
/// mounted beside it by `server`, as it calls this router in-process.)
pub fn router(state: AppState) -> (Router, usize) {
    let (routes, mounted) = routes::mount(Router::new());
    let router = routes
        .merge(console::routes())
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics::serve))
        .route("/{workspace}/apps/{service_id}/mcp", any(mcp::serve))
        .merge(passthrough_routes())
        .route("/{workspace}/services/server-apps", get(controller::describe))
        .route("/{workspace}/services/server-apps/{function}", get(controller::call).post(controller::call))
        .fallback(passthrough::configured_or_unknown)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::in_flight))
        .with_state(state);
    (router, mounted)
}

/// litellm's provider pass-through routes, one per provider (`/anthropic/{*rest}`, ...).
fn passthrough_routes() -> Router<AppState> {
    crate::passthrough::ROUTES.iter().fold(Router::new(), |router, name| {
        router.route(&format!("/{{workspace}}/apps/{{service_id}}/{name}/{{*rest}}"), any(passthrough::provider))
    })
}

/// The server's front door: catalogue requests on parameter-free paths
/// (`/{workspace}/apps/{service_id}/v1/chat/completions`, ...) are matched by the table build.rs
/// generates and served straight away; everything else goes through axum's router. axum's path
/// matching, extractors and layers were ~10% of a proxied request's instructions.
#[derive(Clone)]
pub struct Door {
    state: AppState,
    router: Router,
}

impl Door {
    /// `router` is [`router`]'s, built on the same `state`.
    pub fn new(state: AppState, router: Router) -> Door {
        Door { state, router }
    }
}

impl tower::Service<axum::extract::Request> for Door {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // axum's router is always ready, and so is the direct path.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        // An app's own pass-through endpoint goes before a catalogue route of the same path
        // (litellm's example forwards `/v1/rerank`).
        if crate::passthrough::configured::any() && passthrough::is_configured(&self.state, request.uri().path()) {
            let state = self.state.clone();
            return Box::pin(async move {
                let served = passthrough::configured_or_unknown(axum::extract::State(state.clone()), request);
                Ok(limits::within_cap(&state, served).await)
            });
        }
        match plain_target(&request) {
            Some((op, workspace, service_id)) => {
                let served =
                    dispatch::serve_request(self.state.clone(), op, workspace, service_id, Vec::new(), request);
                Box::pin(futures::FutureExt::map(limits::capped(&self.state, served), Ok))
            }
            None => Box::pin(tower::Service::call(&mut self.router, request)),
        }
    }
}

/// The operation, workspace and service of a request whose path is
/// `/{workspace}/apps/{service_id}` and a parameter-free catalogue path served with its method.
/// Segments with percent-escapes are left to axum, which decodes them.
fn plain_target(request: &axum::extract::Request) -> Option<(Operation, String, String)> {
    // Bytes searched, not chars: every request's path goes through here, and a `str` search
    // for a char cost several times memchr's for these few dozen bytes.
    let slash = |text: &str| memchr::memchr(b'/', text.as_bytes());
    let path = request.uri().path().strip_prefix('/')?;
    let (workspace, rest) = path.split_at(slash(path)?);
    let rest = rest.strip_prefix("/apps/")?;
    // The catalogue's paths keep their leading slash.
    let (service_id, path) = rest.split_at(slash(rest)?);
    let plain = |segment: &str| !segment.is_empty() && memchr::memchr(b'%', segment.as_bytes()).is_none();
    if !plain(workspace) || !plain(service_id) {
        return None;
    }
    let op = catalogue::plain_operation(request.method(), path)?;
    Some((op, workspace.to_owned(), service_id.to_owned()))
}

/// Rewrites root paths (`/v1/chat/completions`, `/health`, ...) to one service's prefix, so a
/// litellm config keeps litellm's URLs. Paths that already name a workspace pass unchanged.
#[derive(Clone)]
pub struct RootAlias {
    prefix: Arc<str>,
    /// First segments of the service's own pass-through endpoints' paths.
    extra: Arc<[String]>,
}

impl RootAlias {
    pub fn new(workspace: &str, service_id: &str) -> RootAlias {
        RootAlias { prefix: format!("/{workspace}/apps/{service_id}").into(), extra: Arc::new([]) }
    }

    /// Also rewrites the paths of `general_settings.pass_through_endpoints`, as litellm
    /// serves them at the root.
    pub fn with_pass_through(mut self, general_settings: Option<&serde_json::Value>) -> RootAlias {
        let specs = crate::passthrough::configured::specs(general_settings).unwrap_or_default();
        let firsts = specs.iter().filter_map(|s| s.path.trim_start_matches('/').split('/').next().map(str::to_owned));
        self.extra = firsts.collect::<Vec<_>>().into();
        self
    }

    pub fn rewrite(&self, mut request: axum::extract::Request) -> axum::extract::Request {
        let path = request.uri().path();
        let mut segments = path.trim_start_matches('/').split('/');
        let first = segments.next().unwrap_or_default();
        let second = segments.next().unwrap_or_default();
        let is_catalogue_root = (root_segments().contains(&first) || self.extra.iter().any(|e| e == first))
            && second != "apps"
            && second != "services";
        if is_catalogue_root {
            let target = match request.uri().query() {
                Some(q) => format!("{}{path}?{q}", self.prefix),
                None => format!("{}{path}", self.prefix),
            };
            if let Ok(uri) = target.parse() {
                *request.uri_mut() = uri;
            }
        }
        request
    }
}

/// The first path segments of every catalogue route and alias (`v1`, `health`, `chat`, ...),
/// and of the routes mounted beside the catalogue (`mcp`, and the provider pass-through
/// routes: litellm serves them at the root too).
fn root_segments() -> &'static [&'static str] {
    static SEGMENTS: OnceLock<Vec<&'static str>> = OnceLock::new();
    SEGMENTS.get_or_init(|| {
        let mut found: Vec<&'static str> = ROUTES
            .iter()
            .flat_map(|r| std::iter::once(r.path).chain(r.bare_path))
            .filter_map(|p| p.trim_start_matches('/').split('/').next())
            .chain(["mcp"])
            .chain(crate::passthrough::ROUTES.iter().copied())
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], catalogue::OPENAPI_JSON).into_response()
}

/// The answer to a path no route serves.
fn unknown_route(path: &str) -> ApiError {
    ApiError::not_found(format!("no route {path}: services answer under /{{workspace}}/apps/{{service_id}}/v1/..."))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .with_code("method_not_allowed")
}

#[cfg(test)]
mod tests {
    use super::plain_target;
    use crate::catalogue::Operation;
    use axum::http::Method;

    fn target(method: Method, uri: &str) -> Option<(Operation, String, String)> {
        let request = axum::http::Request::builder().method(method).uri(uri).body(axum::body::Body::empty()).unwrap();
        plain_target(&request)
    }

    #[test]
    fn parameter_free_catalogue_paths_are_matched_directly_and_the_rest_left_to_axum() {
        let chat = Some((Operation::ChatCompletions, "default".to_owned(), "bench".to_owned()));
        assert_eq!(target(Method::POST, "/default/apps/bench/v1/chat/completions"), chat);
        assert_eq!(target(Method::POST, "/default/apps/bench/chat/completions?x=1"), chat, "bare path, query");
        assert_eq!(target(Method::GET, "/default/apps/bench/v1/chat/completions"), None, "405 is axum's");
        assert_eq!(target(Method::POST, "/default/apps/bench/v1/chat/completions/"), None);
        assert_eq!(target(Method::POST, "/de%20fault/apps/bench/v1/chat/completions"), None, "escapes");
        assert_eq!(target(Method::POST, "//apps/bench/v1/chat/completions"), None);
        assert_eq!(target(Method::POST, "/default/services/bench/v1/chat/completions"), None);
        assert_eq!(target(Method::GET, "/default/apps/bench/v1/files/file-1"), None, "a path parameter");
        assert!(target(Method::GET, "/default/apps/bench/v1/models").is_some());
    }
}
