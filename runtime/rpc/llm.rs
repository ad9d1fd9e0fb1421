//! A running LLM service as an RPC service `{workspace}/{service_id}`: one function per
//! catalogue operation (by its operation name, plus hypha's `chat_completion`, `completion`,
//! `embedding`), each served by the HTTP router in-process with the caller's token, so auth,
//! limits, routing, budgets and the session log are exactly those of the HTTP route. A
//! streamed answer becomes a remote generator of its SSE events.
//!
//! Both RPC doors offer these functions with this code: ferrolite's own `/ws` (here) and a
//! Hypha session's service (`hypha::session`), through [`functions`] and [`call`].

use super::codec;
use super::{Answer, Args, Outcome, SERVER_ID};
use crate::apps::session::Session;
use crate::catalogue::{BodyKind, HttpMethod, Operation, Route, ROUTES};
use crate::exchange::parse_json;
use crate::streaming::sse;
use axum::body::Body;
use axum::http::{header, Request, Response};
use futures::StreamExt as _;
use rmpv::Value;
use serde_json::{json, Value as Json};
use std::convert::Infallible;
use tokio::sync::mpsc;
use tower::ServiceExt as _;

/// Hypha's llm-proxy names for the main operations, beside the operation names themselves.
const ALIASES: &[(&str, Operation)] = &[
    ("chat_completion", Operation::ChatCompletions),
    ("completion", Operation::Completions),
    ("embedding", Operation::Embeddings),
    // The app's MCP tools, as `/mcp-rest/tools/*` serves them.
    ("list_mcp_tools", Operation::McpRestToolsList),
    ("call_mcp_tool", Operation::McpRestToolsCall),
];

/// Largest whole (non-streamed) answer read back from the router.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Stream items buffered ahead of the caller's `next` calls.
const STREAM_BUFFER: usize = 64;

fn operation(function: &str) -> Option<Operation> {
    ALIASES.iter().find(|(name, _)| *name == function).map(|(_, op)| *op).or_else(|| Operation::from_wire(function))
}

/// One function of an LLM service, as a service object lists it.
pub struct LlmFunction {
    pub name: &'static str,
    /// The route's summary, method and path.
    pub doc: String,
    /// The JSON schema of its request (an empty object for a route without a body).
    pub parameters: Json,
}

/// Every function of an LLM service: Hypha's names first, then one per catalogue operation.
pub fn functions() -> Vec<LlmFunction> {
    let routes = ALIASES.iter().map(|(name, op)| (*name, op.route())).chain(ROUTES.iter().map(|r| (r.op.as_str(), r)));
    routes.map(|(name, route)| LlmFunction { name, doc: doc(route), parameters: parameters(route) }).collect()
}

fn doc(route: &Route) -> String {
    format!("{} ({} {})", route.summary, method_name(route.method), route.path)
}

fn parameters(route: &Route) -> Json {
    route
        .request_schema
        .and_then(|s| serde_json::from_str::<Json>(s).ok())
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}))
}

/// Runs `function` of the LLM service `service_id` in `workspace` as one request to the HTTP
/// door `http`, authorised by `token`: the request as keyword arguments (or as one dict), path
/// parameters among them. A streamed answer comes back as its events.
pub async fn call<S>(http: S, token: &str, workspace: &str, service_id: &str, function: &str, args: &Args) -> Outcome
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let op = operation(function).ok_or_else(|| {
        format!(
            "service {service_id:?} has no function {function:?}: its functions are the catalogue's operation names"
        )
    })?;
    let route = op.route();
    if route.request == BodyKind::Multipart {
        return Err(format!("{function} takes a file upload: call POST {} over HTTP", route.path));
    }
    let mut kwargs = match args.positional.first() {
        // `chat_completion({...})`: the request as one dict.
        Some(request @ Value::Map(_)) if args.kwargs.is_empty() => match codec::to_json(request) {
            Json::Object(m) => m,
            _ => serde_json::Map::new(),
        },
        _ => args.json_kwargs(route.params),
    };
    let mut path = route.path.to_owned();
    for param in route.params {
        let value = match kwargs.remove(*param) {
            Some(Json::String(s)) if !s.is_empty() => s,
            _ => return Err(format!("missing argument `{param}`")),
        };
        path = path.replace(&format!("{{{param}}}"), &percent_encode(&value));
    }
    let mut uri = format!("/{workspace}/apps/{service_id}{path}");
    let body = if route.request == BodyKind::Json {
        Body::from(Json::Object(kwargs).to_string())
    } else {
        let query: Vec<String> = kwargs
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{}={}", percent_encode(k), percent_encode(&v))
            })
            .collect();
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        Body::empty()
    };
    let request = Request::builder()
        .method(route.method.as_http())
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = match http.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if content_type.starts_with("text/event-stream") && status.is_success() {
        return Ok(Answer::Stream(events(response.into_body())));
    }
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    if !status.is_success() {
        // The caller's RemoteException carries the HTTP error's own message.
        let message = parse_json::<Json>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Json::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(message);
    }
    if content_type.starts_with("application/json") {
        let value: Json = parse_json(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))?;
        return Ok(Answer::Value(codec::from_json(&value)));
    }
    if content_type.starts_with("text/") {
        return Ok(Answer::Value(Value::from(String::from_utf8_lossy(&bytes).into_owned())));
    }
    Ok(Answer::Value(Value::Binary(bytes.to_vec())))
}

/// The SSE body's events, parsed as they arrive: each `data:` JSON is one item; `[DONE]` and
/// the end of the body end the generator; an `error` event is raised to the caller.
fn events(body: Body) -> mpsc::Receiver<Result<Value, String>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut decoder = sse::Decoder::new();
        // Dropping `stream` (the caller closed the generator or left) cancels the upstream.
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(bytes) => bytes,
                Err(e) => {
                    let _ = tx.send(Err(format!("the stream broke: {e}"))).await;
                    return;
                }
            };
            for event in decoder.feed(&chunk) {
                if event.data == "[DONE]" {
                    return;
                }
                let item = match serde_json::from_str::<Json>(&event.data) {
                    Ok(value) if event.event.as_deref() == Some("error") || is_error_only(&value) => {
                        Err(value.pointer("/error/message").and_then(Json::as_str).unwrap_or(&event.data).to_owned())
                    }
                    Ok(value) => Ok(codec::from_json(&value)),
                    Err(_) => Ok(Value::from(event.data.as_str())),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        }
    });
    rx
}

/// An OpenAI-framed stream signals an error as `data: {"error": {...}}`.
fn is_error_only(value: &Json) -> bool {
    value.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("error"))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The service object `get_service("{workspace}/{service_id}")` returns: a method per
/// catalogue operation, described by the route's summary and request schema.
pub(super) fn describe(session: &Session) -> Value {
    let target = format!("{}/{SERVER_ID}", session.workspace);
    let Json::Object(summary) = summary(session) else { return Value::Nil };
    let mut fields: Vec<(Value, Value)> =
        summary.iter().map(|(k, v)| (Value::from(k.as_str()), codec::from_json(v))).collect();
    for f in functions() {
        let method =
            super::method(&target, &format!("{}.{}", session.service_id, f.name), f.name, &f.doc, f.parameters);
        fields.push((Value::from(f.name), method));
    }
    Value::Map(fields)
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Delete => "DELETE",
    }
}

/// What `list_services` shows of a running LLM service.
pub(super) fn summary(session: &Session) -> Json {
    let visibility = match session.visibility {
        crate::manifest::Visibility::Public => "public",
        crate::manifest::Visibility::Protected => "protected",
    };
    json!({
        "id": format!("{}/{}", session.workspace, session.service_id),
        "name": session.service_id,
        "type": "llm-proxy",
        "description": format!("llm-proxy service of app {} (models: {})", session.app_id, session.table.model_names.join(", ")),
        "app_id": session.app_id,
        "config": {"visibility": visibility, "workspace": session.workspace, "require_context": false},
        "models": session.table.model_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypha_names_and_operation_names_both_resolve() {
        assert_eq!(operation("chat_completion"), Some(Operation::ChatCompletions));
        assert_eq!(operation("chat_completions"), Some(Operation::ChatCompletions));
        assert_eq!(operation("list_models"), Some(Operation::ListModels));
        assert_eq!(operation("nope"), None);
    }

    #[test]
    fn path_parameters_are_escaped() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
