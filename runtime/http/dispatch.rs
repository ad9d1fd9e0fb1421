//! One function serves every catalogue route: authenticate, find the service, check the
//! body against the route's schema, then answer locally or through the chosen deployment's
//! provider; then the request's log line, metrics and spend record (a stream's when it ends).
//! The generated handlers (one per route) only gather their inputs and call [`dispatch`].

use super::{local, AppState};
use crate::apps::responses::recorder;
use crate::apps::session::Session;
use crate::auth::{presented_token, AuthError};
use crate::catalogue::{BodyKind, Operation, Route, Serve};
use crate::exchange::{ApiError, JsonBody, MultipartBody, Outcome, Payload, Usage};
use crate::json_scan;
use crate::manifest::Visibility;
use crate::observability::metrics::{self, LabelText};
use crate::observability::request_id::RequestId;
use crate::observability::session_log::{LineOutcome, LogType, RequestLine};
use crate::observability::spend_log::{SpendEnd, SpendOrigin, SpendOutcome, SpendTicket};
use crate::router::accounting::{Settlement, StreamEnd};
use crate::router::plan::Target;
use crate::router::reservation::SpendScope;
use crate::router::stamp::COST_HEADER;
use crate::router::Routed;
use crate::schema_check;
use axum::body::Body;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Instant;
use tracing::Instrument;

/// Everything a request to one catalogue operation brings to [`dispatch`].
pub struct Call {
    pub workspace: String,
    pub service_id: String,
    /// The route's own path parameters, by name.
    pub params: Vec<(&'static str, String)>,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// Not read yet: the route's body kind says how it is read.
    pub body: Body,
}

/// Serves `request` as operation `op` of the service at `/{workspace}/apps/{service_id}`, with
/// the route's own path parameters already taken from its path: what every generated handler
/// and the request path's own match ([`super::Door`]) call.
///
/// Not `async` itself: the request is taken apart before the future is made, so the future is
/// `dispatch`'s alone rather than one that also holds the request it took.
pub fn serve_request(
    state: AppState,
    op: Operation,
    workspace: String,
    service_id: String,
    params: Vec<(&'static str, String)>,
    request: axum::extract::Request,
) -> impl std::future::Future<Output = Response> + Send {
    // The request taken whole: its headers move into the call instead of being cloned.
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().map(str::to_owned);
    dispatch(state, op, Call { workspace, service_id, params, query, headers: parts.headers, body })
}

/// Serves one catalogue operation.
pub async fn dispatch(state: AppState, op: Operation, call: Call) -> Response {
    let request_id = RequestId::from_headers(&call.headers);
    let span = tracing::info_span!(
        "request",
        id = request_id.as_str(),
        op = op.as_str(),
        workspace = call.workspace.as_str(),
        service = call.service_id.as_str(),
    );
    // Boxed: the request's whole state machine is large, and axum's layers move the future
    // they are handed; a box moves as a pointer. Boxed before it is instrumented, so that it is
    // copied once, into its box, and the span's wrapper moves the pointer.
    let handled = Box::pin(handle(&state, op, call, &request_id)).instrument(span).await;
    let mut response = handled.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(crate::observability::request_id::HEADER, request_id.header_value());
    response
}

/// Where a body's model is guessed from before it is read. Every catalogue route that names a
/// model calls its member `model`; a route that named another would just not be guessed.
static MODEL: LazyLock<json_scan::StringMemberGuess> = LazyLock::new(|| json_scan::StringMemberGuess::new("model"));

async fn handle(state: &AppState, op: Operation, call: Call, request_id: &RequestId) -> Result<Response, ApiError> {
    let (session, claims) = admit(state, &call.headers, &call.workspace, &call.service_id).await?;
    super::limits::check_rates(state, &call.workspace, &call.headers)?;
    let key = claims.as_ref().and_then(|c| c.key.as_ref());
    let parallel_place = key.map(|k| state.key_limits.admit(k)).transpose()?.flatten();
    let who = Caller::of(claims.as_ref());
    let route = op.route();
    let started = Instant::now();
    // A request a provider serves gets its spend record; dropped unfinished (the client left
    // before the answer), the ticket records that.
    let mut ticket = matches!(route.serve, Serve::Providers(_)).then(|| {
        let origin = SpendOrigin {
            request_id: request_id.as_str().to_owned(),
            key_id: who.key_id,
            user: who.user,
            app: session.spend_names.clone(),
        };
        SpendTicket::new(state.spend_logs.queue().clone(), origin, started)
    });
    let Call { params, query, headers, body, .. } = call;
    let body_limit = state.limits.body_limit(route.family);
    // The key's, its user's and the workspace's budgets, beside the app's: what a provider's
    // answer is held to.
    let spend_scopes = match route.serve {
        Serve::Providers(_) => state.controller.caller_budgets().scopes_for(&session.workspace, key.map(|k| &**k)),
        Serve::Local(_) => Vec::new(),
    };
    // A JSON body may stay unread (see `read_payload`) where every deployment that would serve
    // it takes it as sent. Where one translates it the body is read whole anyway, and checking
    // its text first would only add to the reading. Which group serves it is the body's model,
    // guessed from the text before anything reads it (a wrong guess costs time, not
    // correctness: either way of reading serves every deployment). A budget does not need it
    // read: the prompt is estimated over the text (`Payload::each_field`).
    let may_stay_unread = |bytes: &[u8]| {
        let model = || route.model_field.filter(|&field| field == "model").and_then(|_| MODEL.guess(bytes));
        route.request_schema.is_some() && session.table.forwards_as_sent(route, model)
    };
    let result = match read_payload(state, route, body, &headers, body_limit, may_stay_unread).await {
        Ok(payload) => {
            let table = &session.table;
            // The model asked for, as the log line and the metrics name it: the app's own
            // label when it has the model (no copy), the client's text otherwise.
            let model = route.model_field.and_then(|f| payload.field(f)).and_then(Value::as_str).map(|m| {
                let known = table.group_label(m).and_then(|i| table.labels.model_name(i));
                known.unwrap_or_else(|| LabelText::from_owned(m.to_owned()))
            });
            if let (Some(ticket), Some(model)) = (&mut ticket, &model) {
                ticket.set_model(model);
            }
            if table.settings.detailed_debug {
                table.logs.push(LogType::Log, format!("{request_id} request body: {}", preview(&payload)));
            } else if table.settings.debug {
                let query = query.as_deref().unwrap_or("-");
                table.logs.push(
                    LogType::Log,
                    format!("{request_id} request query={query} stream={}", payload.flag("stream")),
                );
            }
            if let (Some(key), Some(model)) =
                (key, route.model_field.and_then(|f| payload.field(f)).and_then(Value::as_str))
            {
                super::key_limits::check_model(key, model)?;
            }
            // Stored responses belong to the caller's workspace (a master key's: the app's).
            let caller = claims.as_ref().map_or(session.workspace.as_str(), |c| &*c.ws);
            let mcp_access = key.map_or_else(crate::mcp::Access::all, |k| {
                crate::mcp::Access::new(k.mcp_servers.clone(), k.mcp_tools.clone())
            });
            let request = Request {
                request_id,
                caller,
                mcp_access: &mcp_access,
                session: &session,
                route,
                params: &params,
                query: query.as_deref(),
                headers: &headers,
                body_limit,
                started,
                spend_scopes: &spend_scopes,
            };
            serve(state, &request, payload).await.map(|o| (o, model))
        }
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    // The log line keeps the request's facts; it is written out only if someone reads it.
    let (status, model, deployment, usage, outcome) = match &result {
        Ok((o, model)) => {
            let cost = o.response.headers().get(COST_HEADER).cloned();
            (o.response.status().as_u16(), model.clone(), o.deployment, o.usage, LineOutcome::Served(cost))
        }
        Err(e) => (e.status.as_u16(), None, None, None, LineOutcome::Failed(e.message.clone())),
    };
    tracing::debug!(status, latency_ms = elapsed.as_secs_f64() * 1000.0, "served");
    let table = &session.table;
    // Label indices: only names the app knows become labels.
    let model_label = model.as_deref().and_then(|m| table.group_label(m));
    metrics::request_done(&table.labels, route.path, model_label, deployment, status, elapsed);
    let deployment = deployment.and_then(|i| table.labels.deployment_id(i));
    if let Some(ticket) = ticket {
        let settlement = result.as_ref().ok().and_then(|(o, _)| o.response.extensions().get::<Settlement>());
        // A key's tokens count against its tpm when they are known: now, or when a stream ends.
        let key_tokens = key.map(|k| (state.clone(), k.id.clone()));
        record_spend(ticket, settlement, status, deployment.clone(), usage, &outcome, key_tokens);
    }
    table.logs.push_request(RequestLine {
        at: crate::clock::unix_now(),
        request_id: request_id.clone(),
        route,
        model,
        deployment,
        status,
        elapsed,
        usage,
        outcome,
    });
    let response = result.map(|(o, _)| o.response)?;
    Ok(match parallel_place {
        Some(place) => super::limits::hold(response, place),
        None => response,
    })
}

/// Who is calling, as the spend log names them: the API key that authenticated the request and
/// its user; a workspace token names neither.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub key_id: Option<String>,
    pub user: Option<String>,
}

impl Caller {
    pub(super) fn of(claims: Option<&crate::auth::Claims>) -> Caller {
        let key = claims.and_then(|c| c.key.as_ref());
        Caller { key_id: key.map(|k| k.id.clone()), user: key.and_then(|k| k.user.clone()) }
    }
}

/// Finishes a request's spend record: now for a whole answer (its cost as the client's
/// `x-ferrolite-cost` header says), or when a stream ends, with what the stream settled to.
fn record_spend(
    ticket: SpendTicket,
    settlement: Option<&Settlement>,
    status: u16,
    deployment: Option<LabelText>,
    usage: Option<Usage>,
    outcome: &LineOutcome,
    key_tokens: Option<(AppState, String)>,
) {
    let count_tokens = move |usage: Usage| {
        if let Some((state, key_id)) = &key_tokens {
            state.key_limits.add_tokens(key_id, usage.prompt_tokens + usage.completion_tokens);
        }
    };
    match settlement {
        Some(settlement) => settlement.then(move |settled| {
            let outcome = match settled.end {
                StreamEnd::Completed => SpendOutcome::Ok,
                StreamEnd::Failed => SpendOutcome::Error,
                StreamEnd::ClientGone => SpendOutcome::ClientDisconnected,
            };
            count_tokens(settled.usage);
            ticket.finish(SpendEnd {
                deployment,
                usage: settled.usage,
                cost: settled.cost,
                status,
                outcome: Some(outcome),
            });
        }),
        None => {
            let cost = match outcome {
                LineOutcome::Served(Some(cost)) => cost.to_str().ok().and_then(|c| c.parse().ok()).unwrap_or(0.0),
                _ => 0.0,
            };
            count_tokens(usage.unwrap_or_default());
            ticket.finish(SpendEnd { deployment, usage: usage.unwrap_or_default(), cost, status, outcome: None });
        }
    }
}

/// Who is calling and which running service: the token checked (or the service's litellm
/// master key, or the Hypha server's word on it), the service found, its visibility enforced.
/// Every route of a service passes here: the catalogue's and `/mcp`.
pub async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    workspace: &str,
    service_id: &str,
) -> Result<(Arc<Session>, Option<crate::auth::Claims>), ApiError> {
    let registry = state.controller.registry();
    let session = registry.get(workspace, service_id);
    // A litellm config's master key opens its own service, as it did under litellm.
    let claims = match state.tokens.authenticate(headers) {
        Ok(claims) => Some(claims),
        Err(e) => match (presented_token(headers), &session) {
            (Some(token), Some(s)) if s.accepts_master_key(token) => None,
            // Not ferrolite's: perhaps the Hypha server's, which is asked (its answer kept).
            (Some(token), Some(s)) if matches!(e, AuthError::BadSignature | AuthError::Malformed) => {
                match &state.hypha_tokens {
                    Some(check) => Some(check.claims(&state.http, token, &s.workspace).await?),
                    None => return Err(e.into()),
                }
            }
            _ => return Err(e.into()),
        },
    };
    let session = session.ok_or_else(|| {
        if registry.has_workspace(workspace) {
            ApiError::not_found(format!(
                "service {service_id:?} not found in workspace {workspace:?}: it is not running (check list_running)"
            ))
        } else {
            ApiError::not_found(format!("workspace {workspace:?} not found: it has no running services"))
        }
    })?;
    if let Some(claims) = &claims {
        if session.visibility == Visibility::Protected && !claims.may_enter(&session.workspace) {
            return Err(ApiError::forbidden(format!(
                "service {:?} is protected: a token of workspace {:?} cannot call it",
                session.service_id, claims.ws
            )));
        }
    }
    Ok((session, claims))
}

/// One request's parts, as the route's server needs them.
struct Request<'a> {
    request_id: &'a RequestId,
    /// The workspace of the caller's token: where its stored responses live.
    caller: &'a str,
    /// The app's MCP servers and tools the caller's key reaches.
    mcp_access: &'a crate::mcp::Access,
    session: &'a Arc<Session>,
    route: &'static Route,
    params: &'a [(&'static str, String)],
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    /// The body limit of the route's family.
    body_limit: usize,
    started: Instant,
    /// The budgets of the caller's key, its user and the workspace (none for a local route).
    spend_scopes: &'a [SpendScope],
}

async fn serve(state: &AppState, r: &Request<'_>, payload: Payload) -> Result<Outcome, ApiError> {
    match r.route.serve {
        Serve::Local(handler) => {
            let local = local::Local {
                state,
                session: r.session,
                mcp_access: r.mcp_access,
                caller: r.caller,
                params: r.params,
                query: r.query,
            };
            Box::pin(local::serve(handler, &local, &payload)).await.map(Outcome::local)
        }
        Serve::Providers(_) => {
            let (payload, pending) =
                match super::cache::lookup(state, r.session, r.route.op, r.route.path, payload).await? {
                    super::cache::Lookup::Hit(outcome) => return Ok(outcome),
                    super::cache::Lookup::Miss(payload, pending) => (payload, pending),
                };
            let outcome = serve_providers(state, r, payload).await?;
            match pending {
                Some(pending) => pending.keep(outcome).await,
                None => Ok(outcome),
            }
        }
    }
}

/// Serves a request through the router (and the MCP tool loop, and the Responses API's state).
async fn serve_providers(state: &AppState, r: &Request<'_>, payload: Payload) -> Result<Outcome, ApiError> {
    {
        {
            let (target, wildcard_model) = choose_target(r.session, r.route, r.query, &payload)?;
            // The Responses API's state: a continued conversation's items put in, the answer
            // recorded on its way out. A count of one counts the whole conversation; it records
            // nothing.
            let (payload, recording) = match r.route.op {
                Operation::CreateResponse | Operation::CountInputTokens => {
                    let forward_unknown = passes_responses_through(r.session, &target);
                    let store = state.controller.responses();
                    let (payload, recording) = Box::pin(recorder::prepare(store, r.caller, payload, forward_unknown))
                        .await
                        .map_err(|e| ApiError::from(e).with_param("previous_response_id"))?;
                    (payload, recording.filter(|_| r.route.op == Operation::CreateResponse))
                }
                _ => (payload, None),
            };
            let routed = Routed {
                table: &r.session.table,
                route: r.route,
                params: r.params,
                query: r.query,
                headers: r.headers,
                request_id: r.request_id,
                upstream: &state.http,
                answer_limit: state.limits.max_body_bytes,
                body_limit: r.body_limit,
                started: r.started,
                spend_scopes: r.spend_scopes,
                cluster: state.controller.cluster(),
                wildcard_model: wildcard_model.as_deref(),
            };
            // A request naming the app's MCP servers as `mcp` tools runs the tool loop.
            let gateway =
                r.session.mcp.as_deref().map(|mcp| crate::mcp::Scoped { gateway: mcp.gateway(), access: r.mcp_access });
            let mut outcome = crate::mcp::agent::serve(r.route.op, gateway, routed, target, payload).await?;
            if let Some(recording) = recording {
                outcome.response = Box::pin(recording.finish(outcome.response, state.limits.max_body_bytes)).await?;
            }
            Ok(outcome)
        }
    }
}

/// Whether the target may be an OpenAI deployment that has the Responses API itself, and so
/// may know a `previous_response_id` this gateway never stored.
fn passes_responses_through(session: &Session, target: &Target<'_>) -> bool {
    let passes = |d: &crate::providers::Deployment| d.provider == crate::providers::Provider::OpenAi && !d.chat_only;
    let table = &session.table;
    match target {
        Target::Group(name) => table.group(name).is_some_and(|mut g| g.any(passes)),
        Target::Deployment(i) => table.deployments.get(*i).is_some_and(passes),
    }
}

/// Where a provider-routed request goes.
///
/// Routes with a model field go to that model group. Routes without one (files, batches,
/// assistants, ...) or requests that leave it out go to the group named by a
/// `target_model_names` or `model` query or body field, else to the app's first deployment
/// whose provider serves the route. A model no group has by name goes to the wildcard group
/// that matches it (`openai/*`), with the name (the second value) the deployments are made
/// concrete for.
fn choose_target<'t>(
    session: &'t Session,
    route: &'static Route,
    query: Option<&str>,
    payload: &Payload,
) -> Result<(Target<'t>, Option<String>), ApiError> {
    // The body's name is borrowed: it is a group's name on nearly every request.
    let from_query = |key: &str| {
        super::query::param(query, key).map(|v| Cow::Owned(v.split(',').next().unwrap_or_default().to_owned()))
    };
    let named = route
        .model_field
        .and_then(|f| payload.field(f))
        .or_else(|| payload.field("target_model_names"))
        .or_else(|| payload.field("model"))
        .and_then(Value::as_str)
        .map(|s| Cow::Borrowed(s.split(',').next().unwrap_or(s).trim()))
        .or_else(|| from_query("target_model_names"))
        .or_else(|| from_query("model"));
    let table = &session.table;
    let field = route.model_field.unwrap_or("model");
    match named {
        Some(model) => {
            if let Some(group) = table.group_name(&model) {
                return Ok((Target::Group(group), None));
            }
            let Some(group) = table.wildcard_group(&model) else {
                return Err(ApiError::not_found(format!(
                    "model {model:?} is not served by this app; available models: {}",
                    table.model_names.join(", ")
                ))
                .with_param(field)
                .with_code("model_not_found"));
            };
            // The name goes into upstream URLs (Gemini, Bedrock, Azure): it keeps to their grammar.
            crate::grammar::upstream_model(&model).map_err(|reason| {
                ApiError::bad_request(format!("model: {reason}")).with_param(field).with_code("invalid_model")
            })?;
            if table.is_catch_all(group) {
                catch_all_check(table, group, &model, field)?;
            }
            Ok((Target::Group(group), Some(model.into_owned())))
        }
        None => table
            .deployments
            .iter()
            .position(|d| d.unavailable.is_none() && route.provider_route(d.provider).is_some())
            .map(|i| (Target::Deployment(i), None))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no deployment of this app serves {} {}: its providers are {}",
                    route.method.as_http(),
                    route.path,
                    providers_of(session)
                ))
                .with_code("unsupported_route")
            }),
    }
}

/// A catch-all (`model: "*"`) serves a model through the deployment of the provider its name
/// tells: a name that tells none is the client's to fix (400), a provider the app holds no
/// credentials for is the operator's (503).
fn catch_all_check(table: &crate::router::table::Table, group: &str, model: &str, field: &str) -> Result<(), ApiError> {
    let mut deployments = table.group(group).into_iter().flatten();
    let first = deployments.clone().next();
    let target = first.and_then(|d| d.catch_all_target(model));
    if let Some(t) = &target {
        if deployments.any(|d| d.catch_all_serves(t)) {
            return Ok(());
        }
    }
    match target {
        None => Err(ApiError::bad_request(format!(
            "model {model:?} names no provider ferrolite knows: name it as provider/model (openai/..., anthropic/..., \
             gemini/..., bedrock/..., groq/..., ...)"
        ))
        .with_param(field)
        .with_code("invalid_model")),
        Some(r) => {
            let env =
                if r.api_key_env.is_empty() { String::new() } else { format!(" ({})", r.api_key_env.join(" or ")) };
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                format!(
                    "model {model:?} is served by {}/, and this app's catch-all {group:?} holds no credentials for it: \
                     set them in its litellm_params or the server's environment{env}",
                    r.prefix
                ),
            )
            .with_code("deployment_unavailable"))
        }
    }
}

fn providers_of(session: &Session) -> String {
    let mut names: Vec<&str> = session.table.deployments.iter().map(|d| d.provider.as_str()).collect();
    names.dedup();
    names.join(", ")
}

/// Reads the body within the size limit and checks it against the route's schema. A JSON body
/// that `may_stay_unread` (asked of its bytes) is checked over its text first where the route's
/// schema allows (`schema_check::text`): when that check is sure the body is fine, the body is
/// read into a value only if something needs it (a pass-through never does). Otherwise, and for
/// every other body, it is read into a value and checked by `jsonschema`, which says what is
/// wrong.
async fn read_payload(
    state: &AppState,
    route: &'static Route,
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    may_stay_unread: impl FnOnce(&[u8]) -> bool,
) -> Result<Payload, ApiError> {
    let read = |body: Body| async move { super::limits::read_body(body, limit).await.map_err(ApiError::from) };
    let payload = match route.request {
        BodyKind::Json => {
            let bytes = read(body).await?;
            if bytes.is_empty() {
                return Err(ApiError::bad_request("request body is empty: this route takes a JSON object"));
            }
            let plan = route
                .request_schema
                .filter(|_| may_stay_unread(&bytes))
                .and_then(|schema| state.text_plan(route.op, schema));
            let text = plan.and_then(|_| std::str::from_utf8(&bytes).ok());
            if let Some(members) = plan.zip(text).and_then(|(plan, text)| plan.check(text)) {
                return Ok(Payload::Json(JsonBody::checked(bytes, members)));
            }
            Payload::Json(JsonBody::parse(bytes).map_err(|e| {
                ApiError::bad_request(format!("request body is not valid JSON: {e}")).with_code("invalid_json")
            })?)
        }
        BodyKind::Multipart => {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let boundary = multer::parse_boundary(content_type).map_err(|_| {
                ApiError::bad_request("this route takes multipart/form-data with a boundary in its Content-Type")
                    .with_code("invalid_multipart")
            })?;
            Payload::Multipart(Box::new(MultipartBody::read(body, boundary, limit).await?))
        }
        BodyKind::None => Payload::Empty,
    };
    if let (Some(schema), Some(instance)) = (route.request_schema, payload_instance(&payload)) {
        let validator = state.validator(route.op, schema);
        let mut violations = schema_check::violations(validator, &instance);
        if let Payload::Multipart(form) = &payload {
            // Fields after the first file are not read yet: they may still bring what is missing.
            if !form.complete {
                violations
                    .retain(|v| !(v.reason == "required property missing" && v.pointer.matches('/').count() == 1));
            }
        }
        if let Some(first) = violations.first() {
            let field = first.pointer.trim_start_matches('/').replace('/', ".");
            let all: Vec<String> = violations.iter().map(describe_violation).collect();
            let mut error =
                ApiError::bad_request(format!("invalid request: {}", all.join("; "))).with_code("invalid_request");
            if !field.is_empty() {
                error = error.with_param(field);
            }
            return Err(error);
        }
    }
    Ok(payload)
}

fn describe_violation(v: &schema_check::Violation) -> String {
    let field = v.pointer.trim_start_matches('/').replace('/', ".");
    if field.is_empty() {
        format!("body: {}", v.reason)
    } else if v.reason == "required property missing" {
        format!("`{field}` is required")
    } else {
        format!("`{field}`: {}", v.reason)
    }
}

fn payload_instance(payload: &Payload) -> Option<std::borrow::Cow<'_, Value>> {
    match payload {
        Payload::Json(v) => Some(std::borrow::Cow::Borrowed(v.as_ref())),
        Payload::Multipart(form) => Some(std::borrow::Cow::Owned(Value::Object(form.fields.clone()))),
        Payload::Empty => None,
    }
}

/// What `detailed_debug` logs of a body: JSON as sent (cut at 4 KiB), a form's text fields.
/// Bodies carry no credentials (those travel in headers, which are never logged).
fn preview(payload: &Payload) -> String {
    const MAX: usize = 4096;
    let text = match payload {
        Payload::Json(v) => v.to_string(),
        Payload::Multipart(form) => Value::Object(form.fields.clone()).to_string(),
        Payload::Empty => "-".to_owned(),
    };
    if text.len() > MAX {
        let cut = (0..=MAX).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        format!("{}... ({} bytes)", &text[..cut], text.len())
    } else {
        text
    }
}
