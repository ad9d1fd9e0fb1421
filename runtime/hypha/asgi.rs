//! A session's `asgi` service: Hypha serves `/{workspace}/apps/{service_id}/{path}` by calling
//! `serve({scope, receive, send})` on it. The request body is read with `receive()`, the request
//! runs through ferrolite's own HTTP front door in-process (auth, limits, routing, the session
//! log: all as on the native URL), and the answer goes back with `send()`:
//! `http.response.start`, then the body, an event stream chunk by chunk as it arrives.

use super::client::CALL_TIMEOUT;
use super::service::Call;
use crate::http::AppState;
use crate::rpc::codec::{self, field, map};
use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use futures::StreamExt as _;
use rmpv::Value;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

/// ferrolite's HTTP front door, as a cloneable service (`http::Door` in the server).
pub type HttpService = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Body bytes per `http.response.body` message: hypha-rpc refuses msgpack segments over
/// 512,000 bytes, and smaller messages need no chunked delivery.
const BODY_PIECE: usize = 128 * 1024;
/// Largest non-streamed answer collected before sending.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// How long the session's own token lives, and when a new one is signed.
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const TOKEN_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);

/// Headers that describe one hop (or that the door sets itself) and are not passed on.
const HOP_HEADERS: [HeaderName; 5] =
    [header::HOST, header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::AUTHORIZATION];

/// Serves one session's requests from Hypha's URL.
pub struct Asgi {
    http: HttpService,
    /// For the tokens it signs and the body limit.
    state: AppState,
    workspace: String,
    service_id: String,
    /// The workspace token the requests run with, and when it was signed.
    token: Mutex<Option<(String, Instant)>>,
}

/// Why a request from Hypha could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AsgiError {
    #[error("serve() expects one argument {{scope, receive, send}}; {0} is missing")]
    Missing(&'static str),
    #[error("scope type {0:?} is not http")]
    NotHttp(String),
    #[error("the HTTP client left before its request was read")]
    Disconnected,
    #[error("receive() answered {0}")]
    Unexpected(String),
    #[error("{0}")]
    Client(#[from] super::client::ClientError),
}

impl Asgi {
    pub fn new(http: HttpService, state: AppState, workspace: String, service_id: String) -> Asgi {
        Asgi { http, state, workspace, service_id, token: Mutex::default() }
    }

    /// The HTTP door the session's requests go through.
    pub fn http(&self) -> HttpService {
        self.http.clone()
    }

    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// Hypha authenticated the caller and enforced the service's visibility before calling
    /// `serve` (and the client keeps a protected service's workspace rule for the other
    /// functions); the request then runs as the session's workspace, with a token ferrolite signs.
    pub fn token(&self) -> String {
        let mut held = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*held {
            Some((token, signed)) if signed.elapsed() < TOKEN_RENEW_AFTER => token.clone(),
            _ => {
                let token = self.state.tokens.issue(&self.workspace, false, TOKEN_LIFETIME);
                *held = Some((token.clone(), Instant::now()));
                token
            }
        }
    }

    /// `serve({scope, receive, send})`: one HTTP request through the door.
    pub async fn serve(self: Arc<Self>, call: Call) -> Result<Value, AsgiError> {
        let request = call.args.positional.first().ok_or(AsgiError::Missing("the argument"))?;
        let part = |key: &'static str| field(request, key).ok_or(AsgiError::Missing(key));
        let (scope, receive, send) = (part("scope")?, part("receive")?, part("send")?);
        let kind = text(field(scope, "type")).unwrap_or_default();
        if kind != "http" {
            return Err(AsgiError::NotHttp(kind));
        }
        let exchange = Exchange { call: &call, send };
        let body = match self.read_body(&call, receive).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                let message = format!("the request body is over {} bytes", self.state.limits.max_body_bytes);
                return exchange.error(StatusCode::PAYLOAD_TOO_LARGE, &message).await;
            }
            Err(BodyError::Failed(e)) => return Err(e),
        };
        let request = match self.request(scope, body) {
            Ok(request) => request,
            Err(message) => return exchange.error(StatusCode::BAD_REQUEST, &message).await,
        };
        let response = match self.http.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        exchange.respond(response).await
    }

    /// `receive()` until the last `http.request` message.
    async fn read_body(&self, call: &Call, receive: &Value) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        loop {
            let message = call.client.call_method(receive, &call.caller_ws, Vec::new(), CALL_TIMEOUT).await?;
            match text(field(&message, "type")).as_deref() {
                Some("http.request") => {}
                Some("http.disconnect") => return Err(BodyError::Failed(AsgiError::Disconnected)),
                _ => return Err(BodyError::Failed(AsgiError::Unexpected(codec::to_json(&message).to_string()))),
            }
            body.extend_from_slice(&bytes(field(&message, "body")));
            if body.len() > self.state.limits.max_body_bytes {
                return Err(BodyError::TooLarge);
            }
            if field(&message, "more_body").and_then(Value::as_bool) != Some(true) {
                return Ok(body);
            }
        }
    }

    /// The request as the door sees it on the native URL: `/{workspace}/apps/{service_id}{path}`.
    fn request(&self, scope: &Value, body: Vec<u8>) -> Result<Request<Body>, String> {
        let method = text(field(scope, "method")).unwrap_or_else(|| "GET".into());
        let path = text(field(scope, "path")).unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let mut uri = format!("/{}/apps/{}{}", self.workspace, self.service_id, escape_path(&path));
        let query = bytes(field(scope, "query_string"));
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&String::from_utf8_lossy(&query));
        }
        let mut request = Request::builder().method(method.as_str()).uri(&uri);
        if let Some(Value::Array(pairs)) = field(scope, "headers") {
            for pair in pairs {
                let Value::Array(pair) = pair else { continue };
                let (Some(name), Some(value)) = (pair.first(), pair.get(1)) else { continue };
                let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(&bytes(Some(name))), HeaderValue::from_bytes(&bytes(Some(value))))
                else {
                    continue;
                };
                if !HOP_HEADERS.contains(&name) {
                    request = request.header(name, value);
                }
            }
        }
        request
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token()))
            .body(Body::from(body))
            .map_err(|e| format!("cannot make a request of {method} {uri}: {e}"))
    }
}

enum BodyError {
    TooLarge,
    Failed(AsgiError),
}

impl From<super::client::ClientError> for BodyError {
    fn from(e: super::client::ClientError) -> BodyError {
        BodyError::Failed(e.into())
    }
}

/// The answering half of one request: the `send` callback and who handed it over.
struct Exchange<'a> {
    call: &'a Call,
    send: &'a Value,
}

impl Exchange<'_> {
    async fn send(&self, message: Value) -> Result<(), AsgiError> {
        self.call.client.call_method(self.send, &self.call.caller_ws, vec![message], CALL_TIMEOUT).await?;
        Ok(())
    }

    async fn body(&self, piece: &[u8], more: bool) -> Result<(), AsgiError> {
        self.send(map([
            ("type", Value::from("http.response.body")),
            ("body", Value::Binary(piece.to_vec())),
            ("more_body", Value::Boolean(more)),
        ]))
        .await
    }

    async fn respond(&self, response: Response<Body>) -> Result<Value, AsgiError> {
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| streamed.then_some(*name) != Some(&header::CONTENT_LENGTH))
            .map(|(name, value)| {
                Value::Array(vec![
                    Value::Binary(name.as_str().as_bytes().to_vec()),
                    Value::Binary(value.as_bytes().to_vec()),
                ])
            })
            .collect();
        self.send(map([
            ("type", Value::from("http.response.start")),
            ("status", Value::from(response.status().as_u16())),
            ("headers", Value::Array(headers)),
        ]))
        .await?;
        let body = response.into_body();
        if streamed {
            // Each chunk goes on as it arrives; dropping the stream (Hypha's client left and a
            // send failed) cancels the upstream call.
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => {
                        for piece in chunk.chunks(BODY_PIECE) {
                            self.body(piece, true).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("the answer's stream broke: {e}");
                        break;
                    }
                }
            }
            self.body(&[], false).await?;
        } else {
            let whole = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await.unwrap_or_else(|e| {
                tracing::warn!("cannot read the answer: {e}");
                Default::default()
            });
            let mut pieces = whole.chunks(BODY_PIECE).peekable();
            if pieces.peek().is_none() {
                self.body(&[], false).await?;
            }
            while let Some(piece) = pieces.next() {
                self.body(piece, pieces.peek().is_some()).await?;
            }
        }
        Ok(Value::Nil)
    }

    /// An OpenAI-style error answer for a request that never reached the door.
    async fn error(&self, status: StatusCode, message: &str) -> Result<Value, AsgiError> {
        let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
        let response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_default();
        self.respond(response).await
    }
}

/// Text of a msgpack string or bytes value.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => s.as_str().map(str::to_owned),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Bytes of a msgpack bytes or string value (hypha-rpc sends Python bytes as bin).
fn bytes(value: Option<&Value>) -> Vec<u8> {
    match value {
        Some(Value::Binary(b)) => b.clone(),
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// ASGI's `path` is decoded: escape what a URI path may not hold (a `%` included).
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' | b'@' | b'!' | b'$' => {
                out.push(char::from(b))
            }
            b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_paths_are_escaped_again() {
        assert_eq!(escape_path("/v1/files/file-1"), "/v1/files/file-1");
        assert_eq!(escape_path("/v1/a b%/é"), "/v1/a%20b%25/%C3%A9");
    }

    #[test]
    fn bytes_and_strings_read_alike() {
        assert_eq!(bytes(Some(&Value::Binary(b"a=1".to_vec()))), b"a=1");
        assert_eq!(bytes(Some(&Value::from("a=1"))), b"a=1");
        assert_eq!(text(Some(&Value::Binary(b"POST".to_vec()))).as_deref(), Some("POST"));
    }
}
