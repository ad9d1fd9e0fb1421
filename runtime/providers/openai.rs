//! OpenAI and OpenAI-compatible upstreams: requests are forwarded as they are, with the
//! deployment's key and its model name, and answers stream back as they arrive.

mod chunk;

use super::auth;
use super::translate::{ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use super::{Deployment, Provider, ProviderCall};
use crate::api::openai::{ChatChunk, ChatCompletion, ChatRequest};
use crate::catalogue::Operation;
use crate::exchange::{parse_json, ApiError, JsonBody, Outcome, Payload};
use crate::transport::{RequestBody, SendError};
use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
pub use chunk::{read as read_chunk, Names as ChunkNames};
use serde::Deserialize;
use serde_json::Value;

/// Request headers a client may set that mean the same upstream (names built at compile time,
/// compared with the client's as they are).
const FORWARDED_HEADERS: [HeaderName; 3] =
    [header::ACCEPT, HeaderName::from_static("openai-beta"), HeaderName::from_static("anthropic-beta")];

/// OpenAI's own chat format, spoken as a translating provider: what `/v1/messages` uses in
/// front of OpenAI, Azure and OpenAI-compatible deployments.
pub struct OpenAiChat;

/// The OpenAI chat provider.
pub static CHAT: OpenAiChat = OpenAiChat;

impl ChatProvider for OpenAiChat {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        let mut req = req.clone();
        req.model.clone_from(&d.upstream_model);
        if stream {
            // Ask for usage so the stream's cost and the Anthropic front's message_delta are exact.
            req.stream_options.get_or_insert_with(Default::default).include_usage = true;
        }
        Ok(UpstreamRequest::post_json(url, &req))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        parse_json(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("deployment {} answered invalid JSON: {e}", d.id),
            )
        })
    }

    fn stream_decoder(&self, _meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(OpenAiChunks { events: crate::streaming::sse::Decoder::new(), names: chunk::Names::default() })
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], d: &Deployment) -> ApiError {
        super::chat::openai_error(status, body, &d.id)
    }
}

/// OpenAI SSE in, the same chunks out.
struct OpenAiChunks {
    events: crate::streaming::sse::Decoder,
    names: chunk::Names,
}

impl OpenAiChunks {
    /// Each event is read once, as a chunk: by hand when it has the shape text streams in
    /// (`chunk::read`), else by serde. An error event mid-stream is `{"error": {...}}`: it is
    /// no chunk (it has no `id`), so it is looked for when the chunk reading fails, or in the
    /// members a chunk does not declare when one carries both. Reading every event as an error
    /// first cost a chunk some 4k instructions (serde's failure message included).
    fn parse(&mut self, events: Vec<crate::streaming::sse::Event>) -> Result<Vec<ChatChunk>, ApiError> {
        let mut chunks = Vec::with_capacity(events.len());
        for event in events {
            if event.data == "[DONE]" {
                continue;
            }
            if let Some(chunk) = chunk::read(&event.data, &mut self.names) {
                // The hand reader takes only declared members and strings, so no `error` object.
                chunks.push(chunk);
                continue;
            }
            match serde_json::from_str::<ChatChunk>(&event.data) {
                Ok(chunk) => match chunk.extra.get("error").and_then(failure_message) {
                    Some(message) => return Err(upstream_failure(message)),
                    None => chunks.push(chunk),
                },
                Err(e) => {
                    return Err(match serde_json::from_str::<UpstreamFailure>(&event.data) {
                        Ok(UpstreamFailure { error }) => upstream_failure(error.message),
                        Err(_) => ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            format!("the upstream sent an invalid chunk: {e}"),
                        ),
                    })
                }
            }
        }
        Ok(chunks)
    }
}

/// The message of an `error` member that has an error's shape (an object whose `message`, if
/// any, is text); `None` for any other value, which a chunk may carry as an unknown member.
fn failure_message(error: &Value) -> Option<Option<String>> {
    FailureDetail::deserialize(error).ok().map(|detail| detail.message)
}

fn upstream_failure(message: Option<String>) -> ApiError {
    let message = message.unwrap_or_else(|| "upstream error".to_owned());
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
}

/// An OpenAI error event: `{"error": {"message": ...}}`.
#[derive(serde::Deserialize)]
struct UpstreamFailure {
    error: FailureDetail,
}

#[derive(serde::Deserialize)]
struct FailureDetail {
    message: Option<String>,
}

impl ChunkDecoder for OpenAiChunks {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        let events = self.events.feed(bytes);
        self.parse(events)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
        let events = self.events.finish().into_iter().collect();
        self.parse(events)
    }
}

/// Largest upstream error body read into an error message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Forwards a request to the deployment's OpenAI-compatible upstream.
pub async fn forward(call: ProviderCall<'_>) -> Result<Outcome, ApiError> {
    let d = call.deployment;
    let wants_stream = call.stream;
    let upstream = if wants_stream {
        call.provider_route.stream_upstream.or(call.provider_route.upstream)
    } else {
        call.provider_route.upstream
    }
    .ok_or_else(|| ApiError::internal(format!("the catalogue gives no upstream for {}", call.route.path)))?;
    let url = super::translate::parsed_upstream_url(d, upstream.path, call.params, call.query)?;
    let mut headers = auth::credential_headers(d, Some(call.headers))?;
    // One pass over the client's few headers instead of a hashed look-up per name; each name's
    // first value goes, over the deployment's own (as `HeaderMap::get` would pick it).
    let mut forwarded = 0u8;
    for (name, value) in call.headers {
        if let Some(bit) = FORWARDED_HEADERS.iter().position(|n| n == name).map(|i| 1 << i) {
            if forwarded & bit == 0 {
                forwarded |= bit;
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    let mut failure = None;
    let body = match call.payload {
        Payload::Json(body) => {
            // Ask streams for their usage so every answer can be priced; the client gets the
            // usage chunk only if it asked for it (router::accounting drops it otherwise).
            let counts_tokens = matches!(call.route.op, Operation::ChatCompletions | Operation::Completions);
            let ask_usage = wants_stream && counts_tokens && d.provider != Provider::Anthropic;
            let upstream_body =
                UpstreamBody { body: &body, model_field: call.route.model_field, deployment: d, ask_usage };
            let bytes = upstream_body.bytes().map_err(|e| ApiError::internal(e.to_string()))?;
            headers.insert(header::CONTENT_TYPE, JSON);
            RequestBody::from(bytes)
        }
        Payload::Multipart(form) => {
            failure = Some(form.failure.clone());
            let rewrite = call.route.model_field.map(|f| (f, d.upstream_model.clone()));
            let (content_type, stream) = form.into_upstream(rewrite, call.body_limit);
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            RequestBody::Stream(Body::from_stream(stream))
        }
        Payload::Empty => RequestBody::empty(),
    };
    let request = crate::transport::Request {
        method: upstream.method.as_http(),
        url,
        headers,
        body,
        timeout: None,
        public_only: d.public_only,
        streamed: wants_stream,
        answer_headers: super::translate::READ_ANSWER_HEADERS,
    };
    let upstream_response = call.upstream.send(request).await.map_err(|e| {
        // A multipart body that failed on the client's side is the client's error, not the upstream's.
        match failure.as_ref().and_then(|f| f.get()) {
            Some(client_error) => client_error.clone(),
            None => unreachable_error(&e, d),
        }
    })?;
    let status = upstream_response.status;
    if !status.is_success() {
        let retry_after = super::translate::retry_after(&upstream_response.headers);
        return Err(upstream_error(status, upstream_response, d).await.with_retry_after(retry_after));
    }
    let content_type = upstream_response.headers.get(header::CONTENT_TYPE).cloned();
    let mut response = Response::new(upstream_response.body);
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(Outcome { response, deployment: None, usage: None })
}

/// Checked when compiled: `from_static` called at run time checks its text byte by byte.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A client's JSON body as the upstream gets it: the model field names the deployment's model,
/// and streams ask for usage. The client's bytes with those members spliced in when it has them;
/// otherwise written from its value, which every attempt shares, instead of from an edited copy.
struct UpstreamBody<'a> {
    body: &'a JsonBody,
    model_field: Option<&'a str>,
    deployment: &'a Deployment,
    ask_usage: bool,
}

impl UpstreamBody<'_> {
    fn bytes(&self) -> serde_json::Result<Vec<u8>> {
        let Some((sent, layout)) = self.body.editable() else {
            return serde_json::to_vec(self);
        };
        // Only a model field the body has is replaced, as writing the value does.
        let model = self.model_field.filter(|f| self.body.field(f).is_some()).map(|field| {
            let d = self.deployment;
            (field, &**d.upstream_model_json.get_or_init(|| quoted(&d.upstream_model)))
        });
        let usage = match self.ask_usage {
            true => Some(serde_json::to_vec(&WithUsage(self.body.field("stream_options").unwrap_or(&Value::Null)))?),
            false => None,
        };
        let sets: smallvec::SmallVec<[(&str, &[u8]); 2]> =
            model.into_iter().chain(usage.as_deref().map(|value| ("stream_options", value))).collect();
        match crate::json_edit::set_members(sent, layout, &sets) {
            Some(bytes) => Ok(bytes),
            None => serde_json::to_vec(self),
        }
    }
}

impl serde::Serialize for UpstreamBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = &**self.body else { return self.body.serialize(s) };
        let mut map = s.serialize_map(Some(fields.len() + usize::from(self.ask_usage)))?;
        let mut asked = false;
        for (key, value) in fields {
            if Some(key.as_str()) == self.model_field {
                map.serialize_entry(key, &self.deployment.upstream_model)?;
            } else if key == "stream_options" && self.ask_usage {
                asked = true;
                map.serialize_entry(key, &WithUsage(value))?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        if self.ask_usage && !asked {
            map.serialize_entry("stream_options", &WithUsage(&Value::Null))?;
        }
        map.end()
    }
}

/// `text` as a JSON string.
fn quoted(text: &str) -> Box<[u8]> {
    // A `str` always serializes; the empty string stands in for what cannot happen.
    serde_json::to_vec(text).unwrap_or_else(|_| b"\"\"".to_vec()).into_boxed_slice()
}

/// `stream_options` with `include_usage: true` (an object keeps its other options).
struct WithUsage<'a>(&'a Value);

impl serde::Serialize for WithUsage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let empty = serde_json::Map::new();
        let options = self.0.as_object().unwrap_or(&empty);
        let mut map = s.serialize_map(None)?;
        for (key, value) in options.iter().filter(|(k, _)| *k != "include_usage") {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("include_usage", &true)?;
        map.end()
    }
}

pub fn unreachable_error(e: &SendError, d: &Deployment) -> ApiError {
    match e {
        SendError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout_error", format!("deployment {} {e}", d.id))
                .with_code("upstream_timeout")
        }
        SendError::Unreachable { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("deployment {} {e}", d.id))
                .with_code("upstream_unreachable")
        }
        // Not retried (403): another deployment's address is not what is wrong.
        SendError::Refused(_) => ApiError::forbidden(format!("deployment {}: {e}", d.id)).with_code("private_upstream"),
    }
}

/// Keeps the upstream's status and its OpenAI-style error; wraps anything else in one.
async fn upstream_error(status: StatusCode, response: crate::transport::Response, d: &Deployment) -> ApiError {
    let body = response.head_of_body(ERROR_BODY_LIMIT).await;
    let parsed: Option<Value> = parse_json(&body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message").and_then(Value::as_str).or_else(|| e.as_str()))
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned());
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "upstream_error",
    };
    let mut api_error = ApiError::new(status, kind, format!("upstream error from deployment {}: {message}", d.id));
    if let Some(param) = error.and_then(|e| e.get("param")).and_then(Value::as_str) {
        api_error = api_error.with_param(param);
    }
    if let Some(code) = error.and_then(|e| e.get("code")).and_then(Value::as_str) {
        api_error = api_error.with_code(code);
    }
    api_error
}

#[cfg(test)]
mod tests {
    use super::UpstreamBody;
    use crate::exchange::JsonBody;
    use serde_json::json;

    fn write(body: &JsonBody, ask_usage: bool) -> String {
        let deployment = crate::providers::Deployment::mock("d", "gpt-4o-2024-08-06");
        let b = UpstreamBody { body, model_field: Some("model"), deployment: &deployment, ask_usage };
        String::from_utf8(b.bytes().unwrap()).unwrap()
    }

    /// The body as the upstream gets it, written from the value. Made long enough to be read
    /// with its layout (a `user` member at its end), it must come out of the client's bytes
    /// (here the value's compact text) as it is written from the value.
    fn upstream(body: serde_json::Value, ask_usage: bool) -> String {
        let mut long = body.clone();
        long["user"] = "u".repeat(crate::json_edit::LAYOUT_FROM).into();
        let sent = JsonBody::parse(serde_json::to_vec(&long).unwrap().into()).unwrap();
        assert!(sent.editable().is_some());
        assert_eq!(
            write(&sent, ask_usage),
            write(&JsonBody::new(long), ask_usage),
            "spliced and written bodies differ"
        );
        write(&JsonBody::new(body), ask_usage)
    }

    #[test]
    fn the_clients_bytes_go_upstream_as_written_but_for_the_members_edited() {
        let pad = "p".repeat(crate::json_edit::LAYOUT_FROM);
        let text = format!(
            "{{ \"model\": \"gpt\",\n  \"messages\": [{{\"role\": \"user\", \"content\": \"caf\\u00e9 {pad}\"}}], \"temperature\": 1.50 }}"
        );
        let sent = |text: &str| JsonBody::parse(text.as_bytes().to_vec().into()).unwrap();
        assert_eq!(
            write(&sent(&text), true),
            format!(
                "{{ \"model\": \"gpt-4o-2024-08-06\",\n  \"messages\": [{{\"role\": \"user\", \"content\": \"caf\\u00e9 {pad}\"}}], \"temperature\": 1.50,\"stream_options\":{{\"include_usage\":true}} }}"
            )
        );
        // No model field: none is added, as writing the value adds none.
        let input = format!(r#"{{"input": "{pad}"}}"#);
        assert_eq!(write(&sent(&input), false), input);
        // Bytes that cannot be spliced safely (an escaped key; a repeated one) are written from
        // the value, as are short ones.
        let escaped = format!(r#"{{"mod\u0065l": "gpt", "input": "{pad}"}}"#);
        assert_eq!(write(&sent(&escaped), false), format!(r#"{{"model":"gpt-4o-2024-08-06","input":"{pad}"}}"#));
        let twice = format!(r#"{{"model": "gpt", "max_tokens": 1, "max_tokens": 2, "input": "{pad}"}}"#);
        assert_eq!(
            write(&sent(&twice), false),
            format!(r#"{{"model":"gpt-4o-2024-08-06","max_tokens":2,"input":"{pad}"}}"#)
        );
        assert_eq!(write(&sent(r#"{ "model": "gpt" }"#), false), r#"{"model":"gpt-4o-2024-08-06"}"#);
    }

    #[test]
    fn a_wildcard_deployment_made_concrete_sends_its_own_model() {
        let pad = "p".repeat(crate::json_edit::LAYOUT_FROM);
        let sent = JsonBody::parse(format!(r#"{{"model": "x", "input": "{pad}"}}"#).into_bytes().into()).unwrap();
        let send = |deployment: &crate::providers::Deployment| {
            let b = UpstreamBody { body: &sent, model_field: Some("model"), deployment, ask_usage: false };
            String::from_utf8(b.bytes().unwrap()).unwrap()
        };
        let wildcard = crate::providers::Deployment::mock("d", "gpt-*");
        assert!(send(&wildcard).starts_with(r#"{"model": "gpt-*","#), "its model's text made and kept");
        let concrete = wildcard.for_model("gpt-4o").unwrap();
        assert!(send(&concrete).starts_with(r#"{"model": "gpt-4o","#), "not the wildcard's kept text");
        let quoted = crate::providers::Deployment::mock("d", "a\"b");
        assert!(send(&quoted).starts_with(r#"{"model": "a\"b","#), "written as a JSON string");
    }

    #[test]
    fn the_upstream_body_names_the_deployments_model_in_place_and_asks_streams_for_usage() {
        let body =
            json!({"model": "gpt", "messages": [], "stream": true, "stream_options": {"x": 1, "include_usage": false}});
        assert_eq!(
            upstream(body, true),
            r#"{"model":"gpt-4o-2024-08-06","messages":[],"stream":true,"stream_options":{"x":1,"include_usage":true}}"#
        );
        let bare = json!({"messages": [], "model": "gpt", "stream": true});
        assert_eq!(
            upstream(bare.clone(), true),
            r#"{"messages":[],"model":"gpt-4o-2024-08-06","stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(upstream(bare, false), r#"{"messages":[],"model":"gpt-4o-2024-08-06","stream":true}"#);
        let null_options = json!({"model": "gpt", "stream_options": null});
        assert_eq!(
            upstream(null_options, true),
            r#"{"model":"gpt-4o-2024-08-06","stream_options":{"include_usage":true}}"#
        );
    }

    /// A stream's events as the decoder reads them: the chunks, or the error it stops on.
    fn decode(events: &[&str]) -> Result<Vec<super::ChatChunk>, String> {
        use super::ChunkDecoder as _;
        let mut decoder = super::OpenAiChunks {
            events: crate::streaming::sse::Decoder::new(),
            names: super::chunk::Names::default(),
        };
        let text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        decoder.feed(text.as_bytes()).map_err(|e| {
            assert_eq!((e.status.as_u16(), e.kind), (502, "upstream_error"));
            e.message
        })
    }

    #[test]
    fn an_error_event_stops_the_stream_with_its_message_and_other_chunks_pass() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        let read = decode(&[chunk, "[DONE]"]).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].choices[0].delta.content, Some(Some("hi".to_owned())));
        // An error alone, with or without a message.
        assert_eq!(
            decode(&[chunk, r#"{"error":{"message":"overloaded","type":"server_error"}}"#]).unwrap_err(),
            "overloaded"
        );
        assert_eq!(decode(&[r#"{"error":{"code":500}}"#]).unwrap_err(), "upstream error");
        // An error riding on a chunk's members is still an error.
        let both = chunk.replacen('{', r#"{"error":{"message":"cut short"},"#, 1);
        assert_eq!(decode(&[&both]).unwrap_err(), "cut short");
        // An `error` member without an error's shape is one more member of a chunk.
        let member = chunk.replacen('{', r#"{"error":null,"#, 1);
        assert_eq!(decode(&[&member]).unwrap()[0].extra["error"], serde_json::Value::Null);
        let text = chunk.replacen('{', r#"{"error":"none","#, 1);
        assert_eq!(decode(&[&text]).unwrap().len(), 1);
        // Anything else is an invalid chunk, named as one.
        let invalid = decode(&[r#"{"id":"c"}"#]).unwrap_err();
        assert!(invalid.starts_with("the upstream sent an invalid chunk: missing field"), "{invalid}");
    }
}
