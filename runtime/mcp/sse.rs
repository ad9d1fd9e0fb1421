//! The client side of MCP's older HTTP+SSE transport (revision 2024-11-05), for upstreams that
//! have not moved to Streamable HTTP: rmcp has no client for it. The client holds `GET {url}`
//! open as an event stream; the server's first event, `endpoint`, names the URI to POST each
//! client message to, and every server message arrives on the stream as a `message` event (a
//! POST is only acknowledged, with 202).
//!
//! Both the stream and the posts go through [`McpHttp`]'s upstream client with the server's
//! headers and credentials, so the address guard and the proxy apply as for Streamable HTTP.

use super::client::McpHttp;
use crate::transport::{AnswerHeaders, ReadError, Request, SendError};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method};
use futures::stream::{BoxStream, StreamExt};
use reqwest::Url;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use sse_stream::{Sse, SseStream};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a POST may take to be acknowledged: the server answers 202 before it does the
/// work (the answer comes on the stream), so this is short.
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a POST's acknowledgement is read (so its connection goes back to the pool).
const ACK_LIMIT: usize = 64 * 1024;

/// Why the HTTP+SSE transport could not connect or send.
#[derive(Debug, thiserror::Error)]
pub enum SseTransportError {
    #[error("{0:?} is not a URL: {1}")]
    Url(String, url::ParseError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("the server answered {0:?}, not an event stream")]
    NotEventStream(Option<String>),
    #[error("the server sent no endpoint event within {0:?}")]
    NoEndpoint(Duration),
    #[error("the event stream ended before its endpoint event")]
    EndedEarly,
    #[error("reading the event stream: {0}")]
    Stream(String),
    #[error("the endpoint event's data {data:?} is not a URI: {reason}")]
    BadEndpoint { data: String, reason: String },
    #[error(
        "the endpoint event names {endpoint}, not the event stream's origin {stream}: refused, \
         so the server's credentials go nowhere else"
    )]
    OtherOrigin { endpoint: String, stream: String },
    #[error("encoding the message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reading the answer: {0}")]
    Read(#[from] ReadError),
}

type Events = BoxStream<'static, Result<Sse, sse_stream::Error>>;

/// One HTTP+SSE session with an upstream: its open event stream and where to post.
pub struct SseTransport {
    http: McpHttp,
    /// The `endpoint` event's URI, resolved and on the stream's origin.
    endpoint: Arc<Url>,
    /// `None` once the stream ended or broke, or the transport was closed.
    events: Option<Events>,
}

impl SseTransport {
    /// Opens the event stream at `url` and waits for its `endpoint` event, for at most
    /// `timeout` in all.
    pub async fn connect(http: McpHttp, url: &str, timeout: Duration) -> Result<SseTransport, SseTransportError> {
        let url = Url::parse(url).map_err(|e| SseTransportError::Url(url.to_owned(), e))?;
        tokio::time::timeout(timeout, SseTransport::open(http, url))
            .await
            .unwrap_or(Err(SseTransportError::NoEndpoint(timeout)))
    }

    async fn open(http: McpHttp, url: Url) -> Result<SseTransport, SseTransportError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        // No head timeout of its own: `connect`'s bounds the wait for the endpoint event, and
        // the stream stays open as long as the session.
        let answer = http.http.send(request(&http, Method::GET, url.clone(), headers, Vec::new(), None)).await?;
        if !answer.status.is_success() {
            return Err(SseTransportError::Status(answer.status.as_u16()));
        }
        let content_type = answer.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(|ct| ct.trim_start().starts_with("text/event-stream")) {
            return Err(SseTransportError::NotEventStream(content_type.map(str::to_owned)));
        }
        let mut events: Events = SseStream::from_bytes_stream(answer.into_stream()).boxed();
        loop {
            match events.next().await {
                None => return Err(SseTransportError::EndedEarly),
                Some(Err(e)) => return Err(SseTransportError::Stream(e.to_string())),
                Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                    let endpoint = endpoint_of(&url, event.data.as_deref().unwrap_or_default())?;
                    return Ok(SseTransport { http, endpoint: Arc::new(endpoint), events: Some(events) });
                }
                // A keep-alive, or a message before the endpoint (out of order; nothing asked yet).
                Some(Ok(_)) => {}
            }
        }
    }
}

/// The URI an `endpoint` event names, resolved against the stream's URL. It must stay on the
/// stream's origin: every post carries the server's credentials, which a server must not be
/// able to send elsewhere.
fn endpoint_of(stream: &Url, data: &str) -> Result<Url, SseTransportError> {
    let data = data.trim();
    let bad = |reason: String| SseTransportError::BadEndpoint { data: data.to_owned(), reason };
    if data.is_empty() {
        return Err(bad("it is empty".to_owned()));
    }
    let endpoint = stream.join(data).map_err(|e| bad(e.to_string()))?;
    // Opaque origins (not http/https) never compare equal, so they are refused too.
    if endpoint.origin() != stream.origin() {
        return Err(SseTransportError::OtherOrigin {
            endpoint: endpoint.origin().ascii_serialization(),
            stream: stream.origin().ascii_serialization(),
        });
    }
    Ok(endpoint)
}

/// A request to the server with its own headers and credentials added.
fn request(
    http: &McpHttp,
    method: Method,
    url: Url,
    mut headers: HeaderMap,
    body: Vec<u8>,
    timeout: Option<Duration>,
) -> Request {
    for (name, value) in http.headers.iter() {
        headers.insert(name.clone(), value.clone());
    }
    // A GET opens the session's event stream; POSTs are answered at once.
    let streamed = method == Method::GET;
    Request {
        method,
        url: url.into(),
        headers: headers.into(),
        body: body.into(),
        timeout,
        public_only: http.public_only,
        streamed,
        answer_headers: AnswerHeaders::All,
    }
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseTransportError;

    /// The name rmcp's errors show ("Transport [sse] error: ...").
    fn name() -> Cow<'static, str> {
        "sse".into()
    }

    fn send(&mut self, item: ClientJsonRpcMessage) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let http = self.http.clone();
        let endpoint = self.endpoint.clone();
        async move {
            let body = serde_json::to_vec(&item)?;
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let post = request(&http, Method::POST, (*endpoint).clone(), headers, body, Some(POST_TIMEOUT));
            let answer = http.http.send(post).await?;
            if !answer.status.is_success() {
                return Err(SseTransportError::Status(answer.status.as_u16()));
            }
            // The body is a short acknowledgement ("Accepted"); reading it lets the connection be
            // used again. A server that never ends it does not hold the message up.
            let _ = tokio::time::timeout(POST_TIMEOUT, answer.head_of_body(ACK_LIMIT)).await;
            Ok(())
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            // `next` is cancel-safe, as rmcp's select loop needs: no event is half taken.
            let event = match self.events.as_mut()?.next().await {
                Some(Ok(event)) => event,
                // The stream ended or broke: the session is over (the server forgot it), so the
                // transport closes and the gateway connects anew on its next use.
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the MCP server's event stream broke");
                    self.events = None;
                    return None;
                }
                None => {
                    tracing::debug!("the MCP server's event stream ended");
                    self.events = None;
                    return None;
                }
            };
            // An event without a type is a `message` in SSE; others (a second `endpoint`, or
            // keep-alives) carry nothing for the client.
            if !matches!(event.event.as_deref(), None | Some("message")) {
                continue;
            }
            let Some(data) = event.data else { continue };
            match serde_json::from_str(&data) {
                Ok(message) => return Some(message),
                // One bad message is not the whole session's end: the request it answered, if
                // any, times out on its own.
                Err(e) => tracing::warn!(error = %e, "skipped an MCP server event that is not a JSON-RPC message"),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Dropping the stream closes the GET, which ends the session at the server.
        self.events = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(stream: &str, data: &str) -> Result<String, SseTransportError> {
        endpoint_of(&Url::parse(stream).unwrap(), data).map(String::from)
    }

    #[test]
    fn endpoints_resolve_against_the_stream_url() {
        let stream = "http://127.0.0.1:8000/mcp/sse";
        assert_eq!(
            resolved(stream, "/messages/?session_id=ab").unwrap(),
            "http://127.0.0.1:8000/messages/?session_id=ab"
        );
        assert_eq!(resolved(stream, "messages?s=1").unwrap(), "http://127.0.0.1:8000/mcp/messages?s=1");
        assert_eq!(resolved(stream, " http://127.0.0.1:8000/m\n").unwrap(), "http://127.0.0.1:8000/m");
        // The default port is the same origin as no port.
        assert_eq!(resolved("https://a.example/sse", "https://a.example:443/m").unwrap(), "https://a.example/m");
    }

    #[test]
    fn endpoints_on_another_origin_are_refused() {
        let stream = "http://127.0.0.1:8000/sse";
        for other in [
            "http://127.0.0.1:8001/messages",
            "https://127.0.0.1:8000/messages",
            "http://localhost:8000/messages",
            "//evil.example/messages",
            "data:text/plain,x",
        ] {
            match resolved(stream, other) {
                Err(SseTransportError::OtherOrigin { stream: origin, .. }) => {
                    assert_eq!(origin, "http://127.0.0.1:8000", "{other}")
                }
                answer => panic!("{other}: {answer:?}"),
            }
        }
        let refused = resolved(stream, "http://evil.example/m").unwrap_err().to_string();
        assert!(refused.contains("http://evil.example") && refused.contains("origin"), "{refused}");
        assert!(matches!(resolved(stream, "  "), Err(SseTransportError::BadEndpoint { .. })));
        assert!(matches!(resolved(stream, "http://[::1"), Err(SseTransportError::BadEndpoint { .. })));
    }
}
