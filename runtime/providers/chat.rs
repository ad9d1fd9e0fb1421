//! OpenAI-shaped chat over translating providers: parameter checks (`drop_params`), the
//! upstream call, and the answer back as an OpenAI `chat.completion` or a chunk stream.
//!
//! [`execute`] is shared by both fronts: `/v1/chat/completions` ([`serve_openai`], here) and
//! `/v1/messages` (`providers::messages`), so every provider gets both for one translation.

use super::auth::{self, Scrubber};
use super::translate::{ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use super::{Deployment, Provider, ProviderCall};
use crate::api::openai::{ChatChunk, ChatCompletion, ChatRequest, ChatUsage};
use crate::catalogue::providers::OPENAI_CHAT_PARAMS;
use crate::exchange::{usage, ApiError, Outcome, Payload};
use crate::observability::session_log::{LogBuffer, LogType};
use crate::streaming::chat_chunks::ChunkWriter;
use crate::streaming::sse;
use crate::transport::{ReadError, Request, Response, UpstreamClient};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::Stream;
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// OpenAI chunks as they arrive, or the error that ended the stream.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ApiError>> + Send>>;

/// A chat answer: whole, or streaming.
pub enum ChatOutput {
    Complete(Box<ChatCompletion>),
    Stream(ChunkStream),
}

/// The OpenAI parameters of `req` that `supported` lacks, in request order.
pub fn unsupported_params(req: &ChatRequest, supported: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    if req.n.is_some_and(|n| n != 1) && !supported.contains(&"n") {
        found.push("n".into());
    }
    for (key, value) in &req.extra {
        if !value.is_null() && OPENAI_CHAT_PARAMS.contains(&key.as_str()) && !supported.contains(&key.as_str()) {
            found.push(key.clone());
        }
    }
    found
}

/// Applies `drop_params`: refuses (400) a request with parameters the provider lacks, or drops
/// them and returns their names.
pub fn check_params(
    req: &mut ChatRequest,
    provider: Provider,
    supported: &[&str],
    drop: bool,
) -> Result<Vec<String>, ApiError> {
    let unsupported = unsupported_params(req, supported);
    if unsupported.is_empty() {
        return Ok(unsupported);
    }
    if !drop {
        return Err(ApiError::bad_request(format!(
            "{provider} does not support the parameter{} {}; set `drop_params: true` in litellm_settings to drop unsupported parameters",
            if unsupported.len() == 1 { "" } else { "s" },
            unsupported.join(", ")
        ))
        .with_param(unsupported[0].clone())
        .with_code("unsupported_parameter"));
    }
    for key in &unsupported {
        if key == "n" {
            req.n = None;
        }
        req.extra.remove(key);
    }
    Ok(unsupported)
}

/// Sends `req` to the deployment through `provider` and returns the OpenAI-shaped answer.
pub async fn execute(
    call: &ProviderCall<'_>,
    provider: &dyn ChatProvider,
    mut req: ChatRequest,
) -> Result<ChatOutput, ApiError> {
    let d = call.deployment;
    let settings = call.settings;
    let dropped = check_params(&mut req, d.provider, d.provider.spec().chat_params, settings.drop_params)?;
    if !dropped.is_empty() && (settings.debug || settings.detailed_debug) {
        call.logs.push(
            LogType::Log,
            format!("drop_params: dropped {} for {} deployment {}", dropped.join(", "), d.provider, d.id),
        );
    }
    let stream = req.stream == Some(true);
    let template = if stream {
        call.provider_route.stream_upstream.or(call.provider_route.upstream)
    } else {
        call.provider_route.upstream
    }
    .ok_or_else(|| {
        ApiError::internal(format!("the catalogue gives {} no upstream for {}", d.provider, call.route.path))
    })?;
    let url = super::translate::upstream_url(d, template.path, call.params)?;
    let mut upstream = provider.chat_request(&req, d, url, stream)?;
    upstream.streamed = stream;
    let response = send(call.upstream, upstream, d, None).await?;
    let status = response.status;
    if !status.is_success() {
        let retry_after = super::translate::retry_after(&response.headers);
        // At most 64 KiB of an error body: enough for any message, bounded against a hostile upstream.
        let body = response.head_of_body(64 * 1024).await;
        return Err(provider.upstream_error(status, &body, d).with_retry_after(retry_after));
    }
    if stream {
        let meta = StreamMeta {
            id: new_chat_id().into(),
            created: crate::clock::unix_now(),
            model: d.upstream_model.as_str().into(),
        };
        Ok(ChatOutput::Stream(decode(response.into_stream(), provider.stream_decoder(meta))))
    } else {
        let body = response.bytes(call.answer_limit).await.map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("reading the answer of {}: {e}", d.id))
        })?;
        Ok(ChatOutput::Complete(Box::new(provider.chat_response(&body, d)?)))
    }
}

/// Sends a translated request with the deployment's credentials on it.
pub(super) async fn send(
    client: &UpstreamClient,
    upstream: UpstreamRequest,
    d: &Deployment,
    timeout: Option<std::time::Duration>,
) -> Result<Response, ApiError> {
    let request = outgoing(auth::authorize_fetching(upstream, d, client).await?, d, timeout)?;
    client.send(request).await.map_err(|e| super::openai::unreachable_error(&e, d))
}

/// A translated request in the upstream client's terms.
fn outgoing(
    upstream: UpstreamRequest,
    d: &Deployment,
    timeout: Option<std::time::Duration>,
) -> Result<Request, ApiError> {
    let url = super::translate::parsed_url(&upstream.url, d)?;
    to_transport(upstream, url, d.public_only, timeout, &format_args!("deployment {}", d.id))
}

/// `upstream` as the upstream client sends it to `url` (its own, parsed); `who` names the
/// sender in the error about a header that cannot be sent (written only then).
pub fn to_transport(
    upstream: UpstreamRequest,
    url: std::sync::Arc<reqwest::Url>,
    public_only: bool,
    timeout: Option<std::time::Duration>,
    who: &dyn std::fmt::Display,
) -> Result<Request, ApiError> {
    let mut headers = axum::http::HeaderMap::with_capacity(upstream.headers.len());
    for (name, value) in &upstream.headers {
        let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name.as_str()), axum::http::HeaderValue::from_str(value))
        else {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("{who} has a header {name:?} that cannot be sent"),
            ));
        };
        headers.append(name, value);
    }
    let (streamed, answer_headers) = (upstream.streamed, upstream.answer_headers);
    Ok(Request {
        method: upstream.method,
        url,
        headers: headers.into(),
        body: upstream.body.into(),
        timeout,
        public_only,
        streamed,
        answer_headers,
    })
}

/// Runs upstream bytes through a decoder, yielding each chunk as soon as it is complete.
fn decode<E: std::fmt::Display>(
    bytes: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    decoder: Box<dyn ChunkDecoder>,
) -> ChunkStream {
    Box::pin(Decoded { bytes: Box::pin(bytes), decoder, chunks: Vec::new().into_iter(), end: None })
}

/// [`decode`]'s stream. A `Stream` of its own rather than an `unfold`, which moves its state
/// (and each chunk) in and out of a future on every item.
struct Decoded<S> {
    bytes: Pin<Box<S>>,
    decoder: Box<dyn ChunkDecoder>,
    /// The last read's chunks not handed on yet, in the decoder's own Vec, which goes once
    /// they are out: a stream waiting for its next event holds no queue (a queue kept for
    /// the stream's length was its largest allocation after the connection's task).
    chunks: std::vec::IntoIter<ChatChunk>,
    /// How the stream ends once `chunks` are out: `Some(None)` at its end, `Some(Some(e))`
    /// with `e` first.
    end: Option<Option<ApiError>>,
}

impl<S, E> Stream for Decoded<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    type Item = Result<ChatChunk, ApiError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let s = self.get_mut();
        loop {
            if let Some(chunk) = s.chunks.next() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            s.chunks = Vec::new().into_iter();
            match s.end.take() {
                Some(Some(e)) => {
                    s.end = Some(None);
                    return Poll::Ready(Some(Err(e)));
                }
                Some(None) => {
                    s.end = Some(None);
                    return Poll::Ready(None);
                }
                None => {}
            }
            match std::task::ready!(s.bytes.as_mut().poll_next(cx)) {
                Some(Ok(bytes)) => match s.decoder.feed(&bytes) {
                    Ok(chunks) => s.chunks = chunks.into_iter(),
                    Err(e) => s.end = Some(Some(e)),
                },
                Some(Err(e)) => {
                    s.end = Some(Some(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!("the upstream stream broke off: {e}"),
                    )));
                }
                None => match s.decoder.finish() {
                    Ok(chunks) => {
                        s.chunks = chunks.into_iter();
                        s.end = Some(None);
                    }
                    Err(e) => s.end = Some(Some(e)),
                },
            }
        }
    }
}

/// A fresh OpenAI-style completion id for answers a translation builds.
pub fn new_chat_id() -> String {
    format!("chatcmpl-{:024x}", rand::random::<u128>() & ((1u128 << 96) - 1))
}

/// `POST /v1/chat/completions` through a translating provider.
pub async fn serve_openai(call: ProviderCall<'_>, provider: &dyn ChatProvider) -> Result<Outcome, ApiError> {
    let req = parse_chat(&call.payload)?;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    match execute(&call, provider, req).await? {
        ChatOutput::Complete(body) => {
            let usage = body.usage.as_ref().map(usage_of);
            Ok(Outcome { response: axum::Json(body).into_response(), deployment: None, usage })
        }
        ChatOutput::Stream(chunks) => {
            let ends = StreamEnds { logs: call.logs.clone(), scrubber: Scrubber::of(call.deployment) };
            let frames = openai_frames(chunks, include_usage, ends);
            Ok(Outcome { response: sse::response(frames), deployment: None, usage: None })
        }
    }
}

/// What a translated stream needs when it ends in an error: the session's log, and the
/// deployment's secrets to mask in the message.
pub struct StreamEnds {
    pub logs: Arc<LogBuffer>,
    pub scrubber: Scrubber,
}

impl StreamEnds {
    /// The upstream error that ended a stream, scrubbed and logged.
    pub fn failed(&self, e: ApiError) -> ApiError {
        let e = self.scrubber.scrub(e);
        self.logs.push(LogType::Error, format!("stream ended by an upstream error: {}", e.message));
        e
    }
}

/// The typed chat request of a JSON payload.
pub fn parse_chat(payload: &Payload) -> Result<ChatRequest, ApiError> {
    parse_json(payload)
}

/// A JSON payload as the typed request `T` (400 naming what does not fit).
pub fn parse_json<T: serde::de::DeserializeOwned>(payload: &Payload) -> Result<T, ApiError> {
    match payload {
        Payload::Json(v) => {
            T::deserialize(v.as_ref()).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
        }
        _ => Err(ApiError::bad_request("this route takes a JSON body")),
    }
}

/// OpenAI SSE framing of a chunk stream: usage only when asked for, `data: [DONE]` at the end,
/// and an upstream failure as an `error` event that ends the stream cleanly (and is logged).
pub fn openai_frames(
    chunks: ChunkStream,
    include_usage: bool,
    ends: StreamEnds,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    OpenAiFrames { chunks, writer: ChunkWriter::new(), include_usage, ends, finished: false }
}

/// [`openai_frames`]' stream.
struct OpenAiFrames {
    chunks: ChunkStream,
    writer: ChunkWriter,
    include_usage: bool,
    ends: StreamEnds,
    finished: bool,
}

impl Stream for OpenAiFrames {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let s = self.get_mut();
        loop {
            if s.finished {
                return Poll::Ready(None);
            }
            match std::task::ready!(s.chunks.as_mut().poll_next(cx)) {
                Some(Ok(mut chunk)) => {
                    if chunk.is_usage_only() && !s.include_usage {
                        continue;
                    }
                    // As OpenAI does: with usage asked for, every other chunk says `null`.
                    if s.include_usage {
                        chunk.usage.get_or_insert(None);
                    } else {
                        chunk.usage = None;
                    }
                    return Poll::Ready(Some(Ok(s.writer.event(&chunk))));
                }
                Some(Err(e)) => {
                    s.finished = true;
                    return Poll::Ready(Some(Ok(sse::named("error", &s.ends.failed(e).body()))));
                }
                None => {
                    s.finished = true;
                    return Poll::Ready(Some(Ok(sse::done())));
                }
            }
        }
    }
}

/// What a front that is not chat makes of a chat stream (Anthropic's Messages events, the
/// Responses API's): its frames at the start, for each chunk, for the failure that ends it and
/// at its end.
pub trait FrontEvents {
    fn start(&mut self) -> Vec<Bytes>;
    fn chunk(&mut self, chunk: &ChatChunk) -> Vec<Bytes>;
    fn fail(&mut self, e: &ApiError) -> Vec<Bytes>;
    fn finish(&mut self) -> Vec<Bytes>;
}

/// The SSE frames `events` makes of `chunks`; an upstream failure is logged, and ends the
/// stream with the front's own error frames.
pub fn front_frames<E>(
    chunks: ChunkStream,
    events: E,
    ends: StreamEnds,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    E: FrontEvents + Send + Unpin + 'static,
{
    FrontFrames { chunks, events, ends, pending: Vec::new().into_iter(), phase: Phase::Start }
}

/// [`front_frames`]' stream, polled in place: written as an `unfold`, it moved its whole state
/// into a future and back out for every chunk (some 1k instructions of copies a chunk).
struct FrontFrames<E> {
    chunks: ChunkStream,
    events: E,
    ends: StreamEnds,
    /// The frames made and not yet taken.
    pending: std::vec::IntoIter<Bytes>,
    phase: Phase,
}

enum Phase {
    Start,
    Chunks,
    Finished,
}

impl<E: FrontEvents + Unpin> Stream for FrontFrames<E> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let s = self.get_mut();
        loop {
            if let Some(frame) = s.pending.next() {
                return Poll::Ready(Some(Ok(frame)));
            }
            let frames = match s.phase {
                Phase::Start => {
                    s.phase = Phase::Chunks;
                    s.events.start()
                }
                Phase::Chunks => match std::task::ready!(s.chunks.as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) => s.events.chunk(&chunk),
                    Some(Err(e)) => {
                        s.phase = Phase::Finished;
                        s.events.fail(&s.ends.failed(e))
                    }
                    None => {
                        s.phase = Phase::Finished;
                        s.events.finish()
                    }
                },
                Phase::Finished => return Poll::Ready(None),
            };
            s.pending = frames.into_iter();
        }
    }
}

/// An OpenAI-style error from an OpenAI-compatible upstream body.
pub fn openai_error(status: StatusCode, body: &[u8], who: &str) -> ApiError {
    let parsed: Option<Value> = crate::exchange::parse_json(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = super::translate::error_message(body);
    let mut api_error = ApiError::new(
        status,
        super::translate::error_kind(status),
        format!("upstream error from deployment {who}: {message}"),
    );
    if let Some(param) = error.and_then(|e| e.get("param")).and_then(Value::as_str) {
        api_error = api_error.with_param(param);
    }
    if let Some(code) = error.and_then(|e| e.get("code")).and_then(Value::as_str) {
        api_error = api_error.with_code(code);
    }
    api_error
}

/// The exchange's usage of an answer's or a chunk's OpenAI usage.
pub fn usage_of(u: &ChatUsage) -> crate::exchange::Usage {
    let cached = u.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0);
    crate::exchange::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: cached,
    }
}

/// A usage-only chunk, as decoders emit at the end of a stream.
pub fn usage_chunk(meta: &StreamMeta, prompt: u64, completion: u64) -> ChatChunk {
    ChatChunk {
        id: meta.id.clone(),
        object: "chat.completion.chunk".into(),
        created: meta.created,
        model: meta.model.clone(),
        choices: Vec::new(),
        system_fingerprint: None,
        usage: Some(Some(ChatUsage::new(prompt, completion))),
        extra: Default::default(),
    }
}

/// A one-shot translated JSON call (no streaming): embeddings and the like.
pub async fn one_shot(
    call: &ProviderCall<'_>,
    build: impl FnOnce(String) -> Result<UpstreamRequest, ApiError>,
    answer: impl FnOnce(&[u8]) -> Result<Value, ApiError>,
    error: impl FnOnce(StatusCode, &[u8]) -> ApiError,
) -> Result<Outcome, ApiError> {
    let d = call.deployment;
    let template = call.provider_route.upstream.ok_or_else(|| {
        ApiError::internal(format!("the catalogue gives {} no upstream for {}", d.provider, call.route.path))
    })?;
    let url = super::translate::upstream_url(d, template.path, call.params)?;
    let response = send(call.upstream, build(url)?, d, None).await?;
    let (status, retry_after) = (response.status, super::translate::retry_after(&response.headers));
    let body = response.bytes(call.answer_limit).await.map_err(|e| {
        let message = match e {
            ReadError::TooLarge => e.to_string(),
            ReadError::Broken(cause) => format!("reading the upstream answer: {cause}"),
        };
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    })?;
    if !status.is_success() {
        return Err(error(status, &body).with_retry_after(retry_after));
    }
    let value = answer(&body)?;
    let usage = usage::from_json(&value);
    Ok(Outcome { response: axum::Json(value).into_response(), deployment: None, usage })
}

/// A health probe: a one-token chat through the deployment's own translation and credentials.
pub async fn probe(client: &UpstreamClient, d: &Deployment) -> Result<(), String> {
    let provider = super::chat_provider(d.provider).ok_or("no chat translation")?;
    let route = crate::catalogue::Operation::ChatCompletions.route();
    let template = route.provider_route(d.provider).and_then(|p| p.upstream).ok_or("no chat upstream")?;
    let url = super::translate::upstream_url(d, template.path, &[]).map_err(|e| e.message)?;
    let req: ChatRequest = serde_json::from_value(json!({
        "model": d.upstream_model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]
    }))
    .map_err(|e| e.to_string())?;
    let upstream = provider.chat_request(&req, d, url, false).map_err(|e| e.message)?;
    let upstream = auth::authorize_fetching(upstream, d, client).await.map_err(|e| e.message)?;
    let request = outgoing(upstream, d, Some(std::time::Duration::from_secs(10))).map_err(|e| e.message)?;
    crate::transport::answers_ok(client.send(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// Each `;`-ended word fed becomes a chunk whose id is the word; `!` fails the stream; what
    /// is left unended comes out at the finish.
    struct Words(String);

    fn chunk(id: &str) -> ChatChunk {
        serde_json::from_value(serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": []
        }))
        .expect("a chunk")
    }

    impl ChunkDecoder for Words {
        fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
            self.0.push_str(std::str::from_utf8(bytes).unwrap_or_default());
            if self.0.contains('!') {
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", "a bad event"));
            }
            let ended = self.0.rfind(';').map_or(0, |at| at + 1);
            let words: Vec<ChatChunk> = self.0[..ended].split_terminator(';').map(chunk).collect();
            self.0.drain(..ended);
            Ok(words)
        }

        fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
            Ok(std::mem::take(&mut self.0).split_terminator(';').map(chunk).collect())
        }
    }

    async fn run(reads: &[Result<&'static str, &'static str>]) -> Vec<String> {
        let bytes = futures::stream::iter(
            reads.iter().map(|r| r.map(|s| Bytes::from_static(s.as_bytes()))).collect::<Vec<_>>(),
        );
        decode(bytes, Box::new(Words(String::new())))
            .map(|item| match item {
                Ok(c) => c.id.to_string(),
                Err(e) => format!("error: {}", e.message),
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn chunks_come_out_in_order_then_the_end_or_the_error_that_ends_the_stream() {
        assert_eq!(run(&[Ok("a;b"), Ok(";c;"), Ok("d")]).await, ["a", "b", "c", "d"]);
        assert_eq!(run(&[Ok("a;b;"), Ok("c!"), Ok("d;")]).await, ["a", "b", "error: a bad event"]);
        let broken = run(&[Ok("a;"), Err("reset"), Ok("b;")]).await;
        assert_eq!(broken, ["a", "error: the upstream stream broke off: reset"]);
        assert!(run(&[]).await.is_empty());
    }

    /// Frames named after what the front was asked: `start`, each chunk's id, `fail: ...`, `end`.
    struct Named;

    impl FrontEvents for Named {
        fn start(&mut self) -> Vec<Bytes> {
            vec![Bytes::from("start")]
        }
        fn chunk(&mut self, chunk: &ChatChunk) -> Vec<Bytes> {
            // Two frames for one chunk, none for another: each comes out, in order.
            match &*chunk.id {
                "skip" => Vec::new(),
                id => vec![Bytes::from(id.to_owned()), Bytes::from(format!("{id}'"))],
            }
        }
        fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
            vec![Bytes::from(format!("fail: {}", e.message))]
        }
        fn finish(&mut self) -> Vec<Bytes> {
            vec![Bytes::from("end")]
        }
    }

    /// The frames, and the error lines the session's log got.
    async fn fronted(reads: &[Result<&'static str, &'static str>]) -> (Vec<String>, Vec<String>) {
        let bytes = futures::stream::iter(
            reads.iter().map(|r| r.map(|s| Bytes::from_static(s.as_bytes()))).collect::<Vec<_>>(),
        );
        let chunks: ChunkStream = Box::pin(decode(bytes, Box::new(Words(String::new()))));
        let logs = Arc::new(LogBuffer::default());
        let ends = StreamEnds { logs: logs.clone(), scrubber: Scrubber::default() };
        let frames = front_frames(chunks, Named, ends)
            .map(|frame| String::from_utf8(frame.expect("a frame").to_vec()).expect("text"))
            .collect()
            .await;
        let errors = logs.read(Some(LogType::Error), 0, None).0.into_iter().map(|line| line.content).collect();
        (frames, errors)
    }

    #[tokio::test]
    async fn a_front_frames_the_start_each_chunk_and_the_end_or_the_failure_that_ends_it() {
        let (frames, errors) = fronted(&[Ok("a;skip;"), Ok("b;")]).await;
        assert_eq!(frames, ["start", "a", "a'", "b", "b'", "end"]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(fronted(&[]).await.0, ["start", "end"]);
        let (frames, errors) = fronted(&[Ok("a;"), Ok("!"), Ok("b;")]).await;
        assert_eq!(frames, ["start", "a", "a'", "fail: a bad event"]);
        assert_eq!(errors, ["stream ended by an upstream error: a bad event"]);
    }
}
