//! rmcp's Streamable HTTP client transport over ferrolite's own upstream client, so calls to an
//! app's MCP servers share the address guard (an untrusted app reaches public addresses only,
//! checked where the connection is made), the environment's proxy and the pooled connections
//! of the LLM routes, rather than a second HTTP stack (rmcp's built-in client is reqwest 0.13).

use crate::exchange::parse_json;
use crate::transport::{ReadError, Request, SendError, UpstreamClient};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use futures::stream::{BoxStream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The largest JSON answer read from an upstream MCP server.
const MAX_JSON_ANSWER: usize = 16 * 1024 * 1024;
/// How long an upstream may take to send an answer's head (a tool's JSON answer comes when the
/// tool is done, so this also bounds a call that does not stream).
const HEAD_TIMEOUT: Duration = Duration::from_secs(120);
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Why an exchange with an upstream MCP server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("reading the answer: {0}")]
    Read(#[from] ReadError),
    #[error("{0:?} is not a URL: {1}")]
    Url(String, url::ParseError),
    #[error("the server answered HTTP {0}")]
    Status(u16),
}

/// One upstream MCP server's HTTP side: the shared client, the server's own headers
/// (credentials included) and whether the guard applies.
#[derive(Clone)]
pub struct McpHttp {
    pub http: Arc<UpstreamClient>,
    /// Sent with every request: `headers` and the `auth_type`'s header, resolved.
    pub headers: Arc<HeaderMap>,
    pub public_only: bool,
}

impl McpHttp {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        mut headers: HeaderMap,
        custom: HashMap<HeaderName, HeaderValue>,
        body: Vec<u8>,
    ) -> Result<crate::transport::Response, StreamableHttpError<ClientError>> {
        let url = reqwest::Url::parse(uri).map_err(|e| StreamableHttpError::Client(ClientError::Url(uri.into(), e)))?;
        // rmcp's own headers (the negotiated MCP-Protocol-Version) after the server's.
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        headers.extend(custom);
        // A GET opens the server's event stream, open as long as the session.
        let streamed = method == Method::GET;
        let request = Request {
            method,
            url: url.into(),
            headers: headers.into(),
            body: body.into(),
            timeout: Some(HEAD_TIMEOUT),
            public_only: self.public_only,
            streamed,
            answer_headers: crate::transport::AnswerHeaders::All,
        };
        self.http.send(request).await.map_err(|e| StreamableHttpError::Client(e.into()))
    }
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers.get(&SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn is(headers: &HeaderMap, mime: &str) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.trim_start().starts_with(mime))
}

fn sse_of(answer: crate::transport::Response) -> BoxStream<'static, Result<Sse, SseError>> {
    SseStream::from_bytes_stream(answer.into_stream()).boxed()
}

fn with_session(mut headers: HeaderMap, session: Option<&str>) -> HeaderMap {
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(SESSION_HEADER, value);
    }
    headers
}

impl StreamableHttpClient for McpHttp {
    type Error = ClientError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        // rmcp's bearer token: the server's credentials travel in `self.headers` instead.
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let headers = with_session(headers, session_id.as_deref());
        let body = serde_json::to_vec(&message)?;
        let answer = self.send(Method::POST, &uri, headers, custom_headers, body).await?;
        match answer.status {
            StatusCode::ACCEPTED | StatusCode::NO_CONTENT => return Ok(StreamableHttpPostResponse::Accepted),
            StatusCode::NOT_FOUND if session_id.is_some() => return Err(StreamableHttpError::SessionExpired),
            status if !status.is_success() => {
                // A JSON-RPC error in the body is the server's own answer (a bad request).
                let body = answer.head_of_body(64 * 1024).await;
                return match parse_json::<ServerJsonRpcMessage>(&body) {
                    Ok(message @ rmcp::model::JsonRpcMessage::Error(_)) => {
                        Ok(StreamableHttpPostResponse::Json(message, None))
                    }
                    _ => Err(StreamableHttpError::Client(ClientError::Status(status.as_u16()))),
                };
            }
            _ => {}
        }
        let session = session_of(&answer.headers);
        if is(&answer.headers, "text/event-stream") {
            Ok(StreamableHttpPostResponse::Sse(sse_of(answer), session))
        } else if is(&answer.headers, "application/json") {
            let bytes = answer.bytes(MAX_JSON_ANSWER).await.map_err(|e| StreamableHttpError::Client(e.into()))?;
            Ok(StreamableHttpPostResponse::Json(parse_json(&bytes)?, session))
        } else {
            let found = answer.headers.get(CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            Err(StreamableHttpError::UnexpectedContentType(found))
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let headers = with_session(HeaderMap::new(), Some(&session_id));
        let answer = self.send(Method::DELETE, &uri, headers, custom_headers, Vec::new()).await?;
        // 405: the server keeps its sessions until they expire; nothing to do.
        match answer.status {
            s if s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED => Ok(()),
            s => Err(StreamableHttpError::Client(ClientError::Status(s.as_u16()))),
        }
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(value) = last_event_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            headers.insert(LAST_EVENT_ID, value);
        }
        let headers = with_session(headers, session_id.as_deref());
        let answer = self.send(Method::GET, &uri, headers, custom_headers, Vec::new()).await?;
        match answer.status {
            StatusCode::METHOD_NOT_ALLOWED => Err(StreamableHttpError::ServerDoesNotSupportSse),
            s if !s.is_success() => Err(StreamableHttpError::Client(ClientError::Status(s.as_u16()))),
            _ if is(&answer.headers, "text/event-stream") => Ok(sse_of(answer)),
            _ => Err(StreamableHttpError::ServerDoesNotSupportSse),
        }
    }
}
