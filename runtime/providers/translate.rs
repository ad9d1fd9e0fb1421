//! The contract of a translating provider: OpenAI chat requests in, the provider's wire
//! format out, and OpenAI-shaped answers (whole or streamed) back.
//!
//! `providers::chat` runs it: it checks parameters (drop_params), builds the upstream URL from
//! the catalogue's template, sends the request, and feeds the answer through these methods.
//! A provider module implements [`ChatProvider`] with pure functions, so every translation
//! can be snapshot-tested without a network.

use super::Deployment;
use crate::api::openai::{ChatChunk, ChatCompletion, ChatRequest, ChunkChoice, Delta, EmbeddingRequest};
use crate::exchange::{parse_json, ApiError};
use crate::transport::AnswerHeaders;
use axum::http::StatusCode;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// An HTTP request ready for the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub method: reqwest::Method,
    pub url: String,
    /// Headers to send, credentials included (never logged).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The answer is expected to stream (see `transport::Request::streamed`).
    pub streamed: bool,
    /// Which of the answer's headers are read (see `transport::Request::answer_headers`).
    pub answer_headers: AnswerHeaders,
}

/// The answer headers a provider's translation reads: its content type, and on an error how
/// long to wait. Nothing else of a provider's head reaches the client.
pub const READ_ANSWER_HEADERS: AnswerHeaders = AnswerHeaders::Only(&["content-type", "retry-after"]);

impl UpstreamRequest {
    /// A JSON POST to `url`, whose answer's headers are read as [`READ_ANSWER_HEADERS`] says.
    pub fn post_json<T: serde::Serialize + ?Sized>(url: String, body: &T) -> UpstreamRequest {
        UpstreamRequest {
            method: reqwest::Method::POST,
            url,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
            streamed: false,
            answer_headers: READ_ANSWER_HEADERS,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> UpstreamRequest {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// What a stream decoder needs to stamp the chunks it makes.
#[derive(Debug, Clone)]
pub struct StreamMeta {
    /// One id for every chunk of the stream (`chatcmpl-...`).
    pub id: Arc<str>,
    pub created: u64,
    /// The model reported in chunks (the deployment's upstream model).
    pub model: Arc<str>,
}

impl StreamMeta {
    /// A chunk of this stream carrying `choices` (no usage). `null_fingerprint` writes
    /// `"system_fingerprint": null`, as some translations always have.
    pub fn chunk(&self, choices: Vec<ChunkChoice>, null_fingerprint: bool) -> ChatChunk {
        ChatChunk {
            id: Arc::clone(&self.id),
            object: Cow::Borrowed("chat.completion.chunk"),
            created: self.created,
            model: Arc::clone(&self.model),
            system_fingerprint: null_fingerprint.then_some(None),
            choices,
            usage: None,
            extra: Default::default(),
        }
    }
}

/// One choice of a chunk: its delta and, on the last, why the answer ended.
pub fn delta_choice(index: u32, delta: Delta, finish: Option<&str>) -> ChunkChoice {
    ChunkChoice {
        index,
        delta,
        logprobs: Some(None),
        finish_reason: finish.map(str::to_owned),
        extra: Default::default(),
    }
}

/// Turns an upstream response body, as its bytes arrive, into OpenAI `chat.completion.chunk`s.
///
/// Chunks must come out as soon as the bytes that complete them come in (never held back to
/// the end): the first has `delta.role = "assistant"`; text and tool-call argument deltas
/// follow as the upstream sends them; the last content chunk carries `finish_reason`; then,
/// when the upstream reports usage, one chunk with `"choices": []` and `usage`. The caller
/// decides whether that usage chunk reaches the client (`stream_options.include_usage`).
pub trait ChunkDecoder: Send {
    /// Consumes the next bytes of the body; returns the chunks they complete.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError>;
    /// The body ended; returns whatever is left (never fails on a clean end).
    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError>;
}

/// A provider that speaks its own chat wire format. Which OpenAI parameters it honours is data
/// (`Provider::spec().chat_params`); how it takes credentials too (`providers::auth`).
pub trait ChatProvider: Sync {
    /// The upstream request for `req`, without credentials (`auth::authorize` adds them). `url`
    /// is the full URL built from the catalogue's template (`stream` says which one was used).
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError>;

    /// A whole upstream answer (2xx) as an OpenAI `chat.completion` object.
    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError>;

    /// A decoder for a streamed upstream answer (2xx).
    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder>;

    /// An upstream error (non-2xx) as an OpenAI-style error with the upstream's status.
    fn upstream_error(&self, status: StatusCode, body: &[u8], d: &Deployment) -> ApiError;
}

/// The base URL of a deployment, without a trailing `/` (written into `out`).
fn push_base_url(d: &Deployment, out: &mut String) -> Result<(), ApiError> {
    let base =
        d.api_base.as_deref().ok_or_else(|| ApiError::bad_request(format!("deployment {} has no api_base", d.id)))?;
    out.push_str(base.trim_end_matches('/'));
    Ok(())
}

/// An upstream error body's message, for error mapping: `error.message`, `message`, or the text.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = parse_json(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    from_json.unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned())
}

/// The OpenAI error `type` that goes with an upstream status.
pub fn error_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 | 400..=428 | 430..=499 => "invalid_request_error",
        429 => "rate_limit_error",
        _ => "upstream_error",
    }
}

/// `url` parsed, for sending. A deployment calls the same few URLs over and over, and parsing
/// one (host checks included) cost ~8% of a proxied request's instructions, so parsed URLs are
/// remembered; the set is bounded and starts over when full. Each thread keeps its own: one
/// set behind a lock was written by every lane on every request (the lock's word), and the
/// lanes took turns holding its cache line.
pub fn parsed_url(url: &str, d: &Deployment) -> Result<Arc<reqwest::Url>, ApiError> {
    use foldhash::HashMap;
    use std::cell::RefCell;
    const MAX_REMEMBERED: usize = 4096;
    thread_local! {
        static PARSED: RefCell<HashMap<Box<str>, Arc<reqwest::Url>>> = RefCell::default();
    }
    if let Some(known) = PARSED.with_borrow(|m| m.get(url).cloned()) {
        return Ok(known);
    }
    let fresh = reqwest::Url::parse(url).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("deployment {} has an invalid upstream URL: {e}", d.id),
        )
        .with_code("invalid_upstream_url")
    })?;
    let fresh = Arc::new(fresh);
    PARSED.with_borrow_mut(|m| {
        if m.len() >= MAX_REMEMBERED {
            m.clear();
        }
        m.insert(url.into(), Arc::clone(&fresh));
    });
    Ok(fresh)
}

/// [`upstream_url`] with the client's `query` after it, parsed ([`parsed_url`]). The text is
/// written into a buffer the thread keeps, so a URL seen before costs no allocation at all.
pub fn parsed_upstream_url(
    d: &Deployment,
    template: &str,
    params: &[(&'static str, String)],
    query: Option<&str>,
) -> Result<Arc<reqwest::Url>, ApiError> {
    use std::cell::RefCell;
    /// A buffer past this (a long query) is let go rather than kept for the thread's life.
    const KEPT: usize = 4096;
    thread_local! {
        static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
    }
    TEXT.with_borrow_mut(|text| {
        text.clear();
        let parsed = push_upstream_url(d, template, params, text).and_then(|()| {
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                text.push(if text.contains('?') { '&' } else { '?' });
                text.push_str(q);
            }
            parsed_url(text, d)
        });
        if text.capacity() > KEPT {
            *text = String::new();
        }
        parsed
    })
}

/// The full upstream URL: the deployment's base and the catalogue's path template, filled.
pub fn upstream_url(d: &Deployment, template: &str, params: &[(&'static str, String)]) -> Result<String, ApiError> {
    let mut url = String::with_capacity(d.api_base.as_ref().map_or(64, String::len) + template.len() + 32);
    push_upstream_url(d, template, params, &mut url)?;
    Ok(url)
}

/// [`upstream_url`], written into `out`.
pub fn push_upstream_url(
    d: &Deployment,
    template: &str,
    params: &[(&'static str, String)],
    out: &mut String,
) -> Result<(), ApiError> {
    push_base_url(d, out)?;
    push_filled_template(template, params, d, out)
}

/// Appends an upstream path, its `{name}`s filled from the route's parameters and the deployment.
/// A value that is only dots is refused: URL parsers take `..` (even escaped, `%2E%2E`) as a
/// step up the path, which would send the request to another route of the upstream.
fn push_filled_template(
    template: &str,
    params: &[(&'static str, String)],
    d: &Deployment,
    out: &mut String,
) -> Result<(), ApiError> {
    let mut rest = template;
    // Bytes searched, not chars (both are ASCII): a `str` search for a char cost several times
    // memchr's over a template's few bytes, on every request.
    while let Some(start) = memchr::memchr(b'{', rest.as_bytes()) {
        out.push_str(&rest[..start]);
        let Some(len) = memchr::memchr(b'}', &rest.as_bytes()[start..]) else {
            break;
        };
        let name = &rest[start + 1..start + len];
        let value = params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .or(match name {
                "model" | "deployment" => Some(d.upstream_model.as_str()),
                "api_version" => d.api_version.as_deref(),
                "vertex_project" => d.vertex.as_ref().map(|v| v.project.as_str()),
                "vertex_location" => d.vertex.as_ref().map(|v| v.location.as_str()),
                _ => None,
            })
            .unwrap_or_default();
        if !value.is_empty() && value.bytes().all(|b| b == b'.') {
            return Err(ApiError::bad_request(format!("`{name}` may not be {value:?}")).with_param(name));
        }
        encode_segment(value, out);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters pass, and `@`, a path
/// character Vertex AI's Claude versions are written with: `claude-sonnet-4@20250514`).
fn encode_segment(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// An upstream's `Retry-After` in whole seconds (delay-seconds form; an HTTP date counts as 1).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    Some(value.parse::<f64>().map(|s| s.ceil().max(0.0) as u64).unwrap_or(1))
}

/// Whether an embeddings request asks for base64 vectors (`encoding_format`); a format other than
/// `float` or `base64` is refused.
pub fn wants_base64(req: &EmbeddingRequest) -> Result<bool, ApiError> {
    match req.encoding_format.as_deref() {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request(format!("encoding_format {other:?} is not supported; use float or base64"))
                .with_param("encoding_format"))
        }
    }
}

/// One embedding as OpenAI writes it: numbers, or base64 of little-endian f32s.
pub fn embedding_value(values: &[f32], base64: bool) -> Value {
    use base64::Engine as _;
    if base64 {
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        serde_json::json!(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_url_is_parsed_once_and_shared_with_the_query_after_it() {
        let mut d = Deployment::mock("m/0", "m");
        d.api_base = Some("http://up.example:8080/v1/".into());
        d.upstream_model = "gpt-x".into();
        let template = "/deployments/{model}/chat/completions";
        let first = parsed_upstream_url(&d, template, &[], Some("api-version=1")).unwrap();
        assert_eq!(first.as_str(), "http://up.example:8080/v1/deployments/gpt-x/chat/completions?api-version=1");
        let again = parsed_upstream_url(&d, template, &[], Some("api-version=1")).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second is the first, counted");
        let bare = parsed_upstream_url(&d, template, &[], Some("")).unwrap();
        assert_eq!(bare.query(), None);
        // A template with a query of its own takes the client's after an `&`.
        let joined = parsed_upstream_url(&d, "/x?a=1", &[], Some("b=2")).unwrap();
        assert_eq!(joined.query(), Some("a=1&b=2"));
        // A value that would step up the path is refused, and the next URL is written afresh.
        let dots = [("model", "..".to_owned())];
        assert!(parsed_upstream_url(&d, "/{model}/x", &dots, None).is_err());
        let after = parsed_upstream_url(&d, "/y", &[], None).unwrap();
        assert_eq!(after.as_str(), "http://up.example:8080/v1/y");
    }
}
