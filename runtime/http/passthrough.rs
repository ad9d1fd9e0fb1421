//! The door of litellm's pass-through routes (`crate::passthrough` decides where a call goes):
//! `/{workspace}/apps/{service_id}/{provider}/*` (and at the root, for a litellm config) and
//! the app's `general_settings.pass_through_endpoints`. Callers are admitted as on the app's
//! other routes (token or key, rate limits, a key's models and requests at once); a provider
//! call is held against the budgets like any request (its worst case: the body's output limit,
//! else the deployment's cap), sent with the deployment's credentials, streamed back as it
//! comes, and booked at the usage its answer reports — or, when it reports none, at what it
//! held, so a budget is never passed by calls it cannot read. Each call gets a spend record
//! and a line in the app's log.

use super::dispatch::{admit, Caller};
use super::AppState;
use crate::apps::session::Session;
use crate::exchange::{object_field, parse_json, usage, ApiError, Payload, Usage};
use crate::observability::metrics::LabelText;
use crate::observability::request_id::RequestId;
use crate::observability::session_log::LogType;
use crate::observability::spend_log::{SpendEnd, SpendOrigin, SpendOutcome, SpendTicket};
use crate::passthrough::{self, configured};
use crate::providers::auth::{self, Scrubber};
use crate::providers::translate::UpstreamRequest;
use crate::router::accounting::{Account, AccountedStream, Pacing, StreamEnd};
use crate::router::reservation::{self, Budgeting, Need};
use crate::transport::AnswerHeaders;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Largest error answer passed back (scrubbed of the deployment's secrets).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// `/{workspace}/apps/{service_id}/{provider}/{*rest}`.
pub async fn provider(
    State(state): State<AppState>,
    Path((workspace, service_id, _rest)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    // The route's name and the rest of the path as the client wrote it (still escaped).
    let raw = request.uri().path().to_owned();
    let mut parts = raw.trim_start_matches('/').splitn(5, '/').skip(3);
    let (Some(route), rest) = (parts.next().and_then(passthrough::route_name), parts.next().unwrap_or_default()) else {
        return ApiError::not_found(format!("no route {raw}")).into_response();
    };
    let rest = rest.to_owned();
    door(&state, &workspace, &service_id, request, |state, call| Box::pin(provider_call(state, call, route, rest)))
        .await
}

/// A request no route took: one of an app's `pass_through_endpoints`, or a 404.
pub async fn configured_or_unknown(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match configured_target(&state, &path) {
        Some((workspace, service_id, sub)) => {
            door(&state, &workspace, &service_id, request, |state, call| Box::pin(configured_call(state, call, sub)))
                .await
        }
        None => super::unknown_route(&path).into_response(),
    }
}

/// Whether `path` is one of its app's `pass_through_endpoints`.
pub fn is_configured(state: &AppState, path: &str) -> bool {
    configured_target(state, path).is_some()
}

/// The workspace, service and path (under the app's URL) of a configured endpoint's call.
fn configured_target(state: &AppState, path: &str) -> Option<(String, String, String)> {
    let (workspace, rest) = path.strip_prefix('/')?.split_once('/')?;
    let (service_id, sub) = rest.strip_prefix("apps/")?.split_once('/')?;
    let session = state.controller.registry().get(workspace, service_id)?;
    let sub = format!("/{sub}");
    configured::find(&session.pass_through, &sub)?;
    Some((workspace.to_owned(), service_id.to_owned(), sub))
}

/// What the door admitted.
struct Call {
    session: Arc<Session>,
    key: Option<crate::auth::keys::KeyRef>,
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: Body,
    request_id: RequestId,
    ticket: SpendTicket,
    started: Instant,
}

type Served<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// Admits the caller, runs `serve` on the call, and stamps the request id.
async fn door(
    state: &AppState,
    workspace: &str,
    service_id: &str,
    request: Request,
    serve: impl for<'a> FnOnce(&'a AppState, Call) -> Served<'a>,
) -> Response {
    let request_id = RequestId::from_headers(request.headers());
    let span = tracing::info_span!(
        "pass_through",
        id = request_id.as_str(),
        workspace = workspace,
        service = service_id,
        path = request.uri().path()
    );
    let id = request_id.clone();
    let served = async move {
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        let query = gemini_key_as_token(&mut headers, parts.uri.query());
        let (session, claims) = admit(state, &headers, workspace, service_id).await?;
        super::limits::check_rates(state, workspace, &headers)?;
        let key = claims.as_ref().and_then(|c| c.key.clone());
        let place = key.as_ref().map(|k| state.key_limits.admit(k)).transpose()?.flatten();
        let who = Caller::of(claims.as_ref());
        let started = Instant::now();
        let origin = SpendOrigin {
            request_id: request_id.as_str().to_owned(),
            key_id: who.key_id,
            user: who.user,
            app: session.spend_names.clone(),
        };
        let ticket = SpendTicket::new(state.spend_logs.queue().clone(), origin, started);
        let call = Call { session, key, method: parts.method, headers, query, body, request_id, ticket, started };
        let response = serve(state, call).await?;
        Ok::<_, ApiError>(match place {
            Some(place) => super::limits::hold(response, place),
            None => response,
        })
    };
    let mut response = served.instrument(span).await.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(crate::observability::request_id::HEADER, id.header_value());
    response
}

/// Gemini's clients put their key in the query (`?key=...`): taken as the caller's token when
/// no header carries one, and never sent on. Returns the query without it.
fn gemini_key_as_token(headers: &mut HeaderMap, query: Option<&str>) -> Option<String> {
    let query = query?;
    let (keys, others): (Vec<&str>, Vec<&str>) = query.split('&').partition(|p| p.starts_with("key="));
    let has_token = crate::auth::presented_token(headers).is_some();
    if let (Some(key), false) = (keys.first().and_then(|k| k.strip_prefix("key=")), has_token) {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {key}")) {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    (!others.is_empty()).then(|| others.join("&"))
}

/// Reads the call's body, within the server's limit (drained past it, so the 413 arrives).
async fn read_body(state: &AppState, body: Body) -> Result<Vec<u8>, ApiError> {
    Ok(super::limits::read_body(body, state.limits.max_body_bytes).await?.into())
}

/// A call to a provider route.
async fn provider_call(state: &AppState, call: Call, route: &'static str, rest: String) -> Result<Response, ApiError> {
    let Call { session, key, method, headers, query, body, request_id, mut ticket, started } = call;
    let body = read_body(state, body).await?;
    let json = parse_json(&body).ok().filter(Value::is_object);
    // The body is parsed already: its flag is read there, not scanned again.
    let field = |name| json.as_ref().and_then(|v| object_field(v, name));
    let streamed = passthrough::asks_stream(&rest, || field("stream") == Some(&Value::Bool(true)));
    let model = field("model").and_then(Value::as_str);
    let table = &session.table;
    let index = passthrough::pick(table, route, &rest, model)?;
    let d = &table.deployments[index];
    if let Some(key) = &key {
        super::key_limits::check_model(key, &d.model_name)?;
    }
    // The spend record's names, shared with the app's labels as the routed door's are.
    if let Some(model) = table.labels.model_name(index) {
        ticket.set_model(&model);
    }
    let deployment = table.labels.deployment_id(index);
    let base = d.api_base.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("deployment {} has no api_base", d.id))
    })?;
    let url = passthrough::target(base, &rest, query.as_deref())?;

    // Held like any request: its worst case (a body that names no output limit: the cap).
    let scopes = state.controller.caller_budgets().scopes_for(&session.workspace, key.as_deref());
    let price = table.prices[index];
    let budgeting = Budgeting { table, spend_scopes: &scopes, cluster: state.controller.cluster() };
    let hold = if budgeting.applies(index) {
        let need = match (&method, json) {
            (&Method::GET | &Method::HEAD | &Method::DELETE, _) => 0,
            (_, Some(v)) => Need::of(&Payload::json(v)).worst_case(d, price),
            (_, None) => Need::default().worst_case(d, price),
        };
        Some(reservation::reserve_micros(budgeting, index, need).await.map_err(|r| r.error)?)
    } else {
        None
    };
    let held = hold.as_ref().map_or(0.0, |h| h.micros() as f64 / 1e6);

    let mut upstream = UpstreamRequest {
        method: method.clone(),
        url,
        headers: passthrough::forwarded_headers(&headers),
        body,
        streamed,
        // Handed on to the client.
        answer_headers: AnswerHeaders::All,
    };
    upstream = auth::authorize_fetching(upstream, d, &state.http).await?;
    passthrough::first_of_each(&mut upstream.headers);
    let parsed = reqwest::Url::parse(&upstream.url).map_err(|e| ApiError::bad_request(format!("upstream URL: {e}")))?;
    let timeout =
        d.params.timeout.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()).or(table.policy.timeout);
    let request = crate::providers::chat::to_transport(
        upstream,
        parsed.into(),
        d.public_only,
        timeout,
        &format_args!("deployment {}", d.id),
    )?;
    let stats = &table.stats[index];
    let in_flight = stats.begin();
    let answer = state.http.send(request).await;
    let account = Account {
        table: table.clone(),
        index,
        request_id: request_id.clone(),
        started,
        scopes,
        hold,
        price,
        if_unreported: Some(held),
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            drop(account); // gives the hold back: nothing was spent
            let error = crate::providers::openai::unreachable_error(&e, d);
            ticket.finish(end(deployment.clone(), Usage::default(), 0.0, error.status.as_u16(), SpendOutcome::Error));
            return Err(error);
        }
    };
    let status = answer.status;
    let line = |what: &str| format!("{request_id} pass-through /{route}/{rest}: {} {what}", status.as_u16());
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers.iter().filter(|(n, _)| keeps(n.as_str())) {
        response = response.header(name, value);
    }
    let content_type = answer.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut account = account;
    if !status.is_success() {
        // Answered, badly: nothing spent. Its body goes back with the deployment's secrets masked.
        let body = Scrubber::of(d).scrub_text(&answer.head_of_body(ERROR_BODY_LIMIT).await);
        account.book_at(Usage::default(), 0.0);
        ticket.finish(end(deployment.clone(), Usage::default(), 0.0, status.as_u16(), SpendOutcome::Error));
        table.logs.push(LogType::Log, line("upstream error"));
        return response.body(Body::from(body)).map_err(|e| ApiError::internal(e.to_string()));
    }
    if content_type.starts_with("text/event-stream") {
        let response = response.body(answer.body).map_err(|e| ApiError::internal(e.to_string()))?;
        let pacing = Pacing { gap: table.policy.stream_timeout.or(timeout), keepalive: None };
        let response = AccountedStream::wrap(response, in_flight, pacing, account, true);
        if let Some(settlement) = response.extensions().get::<crate::router::accounting::Settlement>() {
            let deployment = deployment.clone();
            settlement.then(move |settled| {
                let outcome = match settled.end {
                    StreamEnd::Completed => SpendOutcome::Ok,
                    StreamEnd::Failed => SpendOutcome::Error,
                    StreamEnd::ClientGone => SpendOutcome::ClientDisconnected,
                };
                ticket.finish(end(deployment, settled.usage, settled.cost, status.as_u16(), outcome));
            });
        }
        table.logs.push(LogType::Log, line("stream"));
        return Ok(response);
    }
    if content_type.starts_with("application/json") {
        let bytes = answer.bytes(state.limits.max_body_bytes).await.map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("reading the answer of {}: {e}", d.id))
        })?;
        drop(in_flight);
        let (usage, cost) = match usage::from_answer(&bytes).ok().flatten() {
            Some(u) => (u, account.book(u)),
            None => (Usage::default(), account.book_at(Usage::default(), held)),
        };
        ticket.finish(end(deployment.clone(), usage, cost, status.as_u16(), SpendOutcome::Ok));
        table.logs.push(
            LogType::Log,
            line(&format!("tokens={}/{} cost=${cost:.6}", usage.prompt_tokens, usage.completion_tokens)),
        );
        let cost_header = HeaderValue::from_str(&format!("{cost:.6}")).ok();
        let mut response = response.body(Body::from(bytes)).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(v) = cost_header {
            response.headers_mut().insert(crate::router::stamp::COST_HEADER, v);
        }
        return Ok(response);
    }
    // Another kind of answer (Bedrock's binary event stream, audio, ...): its usage cannot be
    // read on the way, so it is booked at what it held, and passed on as it comes.
    let cost = account.book_at(Usage::default(), held);
    ticket.finish(end(deployment.clone(), Usage::default(), cost, status.as_u16(), SpendOutcome::Ok));
    table.logs.push(LogType::Log, line(&format!("unmetered, booked at ${cost:.6}")));
    let body = Body::from_stream(held_until_end(answer.body, in_flight));
    response.body(body).map_err(|e| ApiError::internal(e.to_string()))
}

/// A call to one of the app's `pass_through_endpoints`: sent with the configured headers (and
/// the client's, with `forward_headers`), passed back as it comes. No deployment: no price.
async fn configured_call(state: &AppState, call: Call, path: String) -> Result<Response, ApiError> {
    let Call { session, method, headers, query, body, request_id, ticket, .. } = call;
    let (endpoint, sub) = configured::find(&session.pass_through, &path)
        .ok_or_else(|| ApiError::not_found(format!("no pass-through endpoint {path}")))?;
    let url = endpoint.url(sub, query.as_deref())?;
    let body = read_body(state, body).await?;
    let mut sent = endpoint.headers.clone();
    if endpoint.forward_headers {
        sent.extend(passthrough::forwarded_headers(&headers));
    }
    passthrough::first_of_each(&mut sent);
    let parsed = reqwest::Url::parse(&url).map_err(|e| ApiError::bad_request(format!("upstream URL: {e}")))?;
    let who = format!("pass-through endpoint {}", endpoint.path);
    let streamed = passthrough::asks_stream(&path, || passthrough::says_stream(&body));
    let upstream = UpstreamRequest { method, url, headers: sent, body, streamed, answer_headers: AnswerHeaders::All };
    let request = crate::providers::chat::to_transport(upstream, parsed.into(), endpoint.public_only, None, &who)?;
    let answer = match state.http.send(request).await {
        Ok(answer) => answer,
        Err(e) => {
            ticket.finish(end(
                Some(LabelText::from_owned(who.clone())),
                Usage::default(),
                0.0,
                502,
                SpendOutcome::Error,
            ));
            return Err(ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("{who}: {e}")));
        }
    };
    let status = answer.status;
    let outcome = if status.is_success() { SpendOutcome::Ok } else { SpendOutcome::Error };
    ticket.finish(end(Some(LabelText::from_owned(who.clone())), Usage::default(), 0.0, status.as_u16(), outcome));
    session.table.logs.push(LogType::Log, format!("{request_id} {who}: {}", status.as_u16()));
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers.iter().filter(|(n, _)| keeps(n.as_str())) {
        response = response.header(name, value);
    }
    response.body(answer.body).map_err(|e| ApiError::internal(e.to_string()))
}

/// Answer headers passed back: all but hop-by-hop ones and the length (the body may be
/// re-framed).
fn keeps(name: &str) -> bool {
    !matches!(name, "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade" | "trailer")
}

fn end(deployment: Option<LabelText>, usage: Usage, cost: f64, status: u16, outcome: SpendOutcome) -> SpendEnd {
    SpendEnd { deployment, usage, cost, status, outcome: Some(outcome) }
}

/// `body`, keeping the deployment counted in flight until it ends.
pub fn held_until_end(
    body: Body,
    in_flight: crate::router::stats::InFlight,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Send {
    use futures::StreamExt;
    body.into_data_stream().map(move |chunk| {
        let _counted = &in_flight;
        chunk
    })
}
