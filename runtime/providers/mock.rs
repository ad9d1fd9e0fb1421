//! litellm's `mock_response`: a deployment that answers with fixed text, in the exact wire
//! shapes of OpenAI (chat, completions, embeddings) and Anthropic (messages), streaming too.
//!
//! The builders here are pure (id and clock passed in) so snapshot tests pin the exact JSON
//! and SSE framing; [`serve`] wires them to a request.

use super::ProviderCall;
use crate::api::anthropic::MessagesRequest;
use crate::api::openai::{ChatRequest, CompletionRequest, EmbeddingRequest};
use crate::catalogue::Translator;
use crate::exchange::{ApiError, Outcome, Payload, Usage};
use crate::streaming::sse;
use crate::tokenizer;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// What the mock needs to build one answer.
#[derive(Debug, Clone)]
pub struct MockAnswer<'a> {
    pub text: &'a str,
    /// The deployment's model, reported as the upstream would.
    pub model: &'a str,
    pub id: &'a str,
    pub created: u64,
}

/// Splits the mock text into stream deltas: one per word, each carrying its leading space.
pub fn deltas(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start && !text[start..i].trim().is_empty() {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.prompt_tokens + u.completion_tokens})
}

/// Usage of a chat request answered with `text`.
pub fn chat_usage(req: &ChatRequest, text: &str) -> Usage {
    let messages: Vec<(String, String)> = req.messages.iter().map(|m| (m.role.clone(), m.text())).collect();
    let n = u64::from(req.n.unwrap_or(1).max(1));
    Usage { prompt_tokens: tokenizer::count_chat(&messages), completion_tokens: tokenizer::count(text) * n }
}

/// A `chat.completion` object.
pub fn chat_response(a: &MockAnswer<'_>, req: &ChatRequest) -> Value {
    let choices: Vec<Value> = (0..req.n.unwrap_or(1).max(1))
        .map(|i| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": a.text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            })
        })
        .collect();
    json!({
        "id": a.id,
        "object": "chat.completion",
        "created": a.created,
        "model": a.model,
        "choices": choices,
        "usage": usage_json(chat_usage(req, a.text)),
        "system_fingerprint": null
    })
}

/// The SSE frames of a streamed chat completion, `data: [DONE]` included.
pub fn chat_stream(a: &MockAnswer<'_>, req: &ChatRequest) -> Vec<Bytes> {
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id": a.id, "object": "chat.completion.chunk", "created": a.created, "model": a.model, "system_fingerprint": null, "choices": choices});
        if include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        sse::data(&c)
    };
    let n = req.n.unwrap_or(1).max(1);
    let mut frames = Vec::new();
    for i in 0..n {
        frames.push(chunk(
            json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            None,
        ));
        for piece in deltas(a.text) {
            frames.push(chunk(
                json!([{"index": i, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]),
                None,
            ));
        }
        frames.push(chunk(json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": "stop"}]), None));
    }
    if include_usage {
        frames.push(chunk(json!([]), Some(usage_json(chat_usage(req, a.text)))));
    }
    frames.push(sse::done());
    frames
}

fn prompt_texts(prompt: &Value) -> Vec<String> {
    match prompt {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Value::Null => vec![String::new()],
        other => vec![other.to_string()],
    }
}

/// Usage of a completions request answered with `text` (once per prompt and per `n`).
pub fn completion_usage(req: &CompletionRequest, text: &str) -> Usage {
    let prompts = prompt_texts(&req.prompt);
    let answers = prompts.len() as u64 * u64::from(req.n.unwrap_or(1).max(1));
    Usage {
        prompt_tokens: prompts.iter().map(|p| tokenizer::count(p)).sum(),
        completion_tokens: tokenizer::count(text) * answers,
    }
}

/// A `text_completion` object.
pub fn completion_response(a: &MockAnswer<'_>, req: &CompletionRequest) -> Value {
    let answers = prompt_texts(&req.prompt).len() as u32 * req.n.unwrap_or(1).max(1);
    let choices: Vec<Value> =
        (0..answers).map(|i| json!({"text": a.text, "index": i, "logprobs": null, "finish_reason": "stop"})).collect();
    json!({
        "id": a.id,
        "object": "text_completion",
        "created": a.created,
        "model": a.model,
        "choices": choices,
        "usage": usage_json(completion_usage(req, a.text))
    })
}

/// The SSE frames of a streamed completion.
pub fn completion_stream(a: &MockAnswer<'_>, req: &CompletionRequest) -> Vec<Bytes> {
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id": a.id, "object": "text_completion", "created": a.created, "model": a.model, "choices": choices});
        if include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        sse::data(&c)
    };
    let answers = prompt_texts(&req.prompt).len() as u32 * req.n.unwrap_or(1).max(1);
    let mut frames = Vec::new();
    for i in 0..answers {
        for piece in deltas(a.text) {
            frames.push(chunk(json!([{"text": piece, "index": i, "logprobs": null, "finish_reason": null}]), None));
        }
        frames.push(chunk(json!([{"text": "", "index": i, "logprobs": null, "finish_reason": "stop"}]), None));
    }
    if include_usage {
        frames.push(chunk(json!([]), Some(usage_json(completion_usage(req, a.text)))));
    }
    frames.push(sse::done());
    frames
}

/// Usage of an Anthropic Messages request answered with `text`.
pub fn messages_usage(req: &MessagesRequest, text: &str) -> Usage {
    let system = req.system.as_ref().map(tokenizer::count_value).unwrap_or(0);
    let turns: u64 = req.messages.iter().map(|m| 3 + tokenizer::count_value(&m.content)).sum();
    Usage { prompt_tokens: system + turns + 3, completion_tokens: tokenizer::count(text) }
}

/// An Anthropic `message` object.
pub fn messages_response(a: &MockAnswer<'_>, req: &MessagesRequest) -> Value {
    let u = messages_usage(req, a.text);
    json!({
        "id": a.id,
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [{"type": "text", "text": a.text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}
    })
}

/// The full Anthropic SSE sequence: message_start, ping, the text block, message_delta, message_stop.
pub fn messages_stream(a: &MockAnswer<'_>, req: &MessagesRequest) -> Vec<Bytes> {
    let u = messages_usage(req, a.text);
    let mut frames = vec![
        sse::named(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": a.id, "type": "message", "role": "assistant", "model": a.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": u.prompt_tokens, "output_tokens": 1}
            }}),
        ),
        sse::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse::named("ping", &json!({"type": "ping"})),
    ];
    for piece in deltas(a.text) {
        frames.push(sse::named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    frames.push(sse::named("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    frames.push(sse::named(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": u.completion_tokens}}),
    ));
    frames.push(sse::named("message_stop", &json!({"type": "message_stop"})));
    frames
}

/// Default embedding size (text-embedding-3-small's).
const EMBEDDING_DIMENSIONS: usize = 1536;

/// A unit-length vector derived from the text alone: the same text always embeds the same.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a seeds a xorshift generator; cheap, stable across platforms and releases.
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut v: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// An embeddings `list` response, as floats or (when asked) base64 of little-endian f32.
pub fn embedding_response(model: &str, req: &EmbeddingRequest) -> Result<Value, ApiError> {
    let dimensions = req.dimensions.unwrap_or(EMBEDDING_DIMENSIONS);
    if dimensions == 0 || dimensions > 8192 {
        return Err(ApiError::bad_request("dimensions must be between 1 and 8192").with_param("dimensions"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format {other:?} is not supported; use float or base64"
            ))
            .with_param("encoding_format"))
        }
    };
    let inputs = req.inputs();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = embed(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| tokenizer::count(t)).sum();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

fn parse<T: DeserializeOwned>(payload: Payload) -> Result<T, ApiError> {
    match payload {
        Payload::Json(v) => <T as serde::Deserialize>::deserialize(v.as_ref())
            .map_err(|e| ApiError::bad_request(format!("invalid request: {e}"))),
        _ => Err(ApiError::bad_request("this route takes a JSON body")),
    }
}

fn stream_response(frames: Vec<Bytes>) -> Response {
    sse::response(futures::stream::iter(frames.into_iter().map(Ok)))
}

fn new_id(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}{:024x}", n & ((1u128 << 96) - 1))
}

/// Answers a request routed to a mock deployment.
pub fn serve(call: ProviderCall<'_>, translator: Translator) -> Result<Outcome, ApiError> {
    let d = call.deployment;
    let text = d.mock_response.as_deref().unwrap_or_default();
    let created = crate::clock::unix_now();
    let (response, usage) = match translator {
        Translator::MockChat => {
            let req: ChatRequest = parse(call.payload)?;
            let id = new_id("chatcmpl-");
            let a = MockAnswer { text, model: &d.upstream_model, id: &id, created };
            let usage = chat_usage(&req, text);
            let response = if req.stream == Some(true) {
                stream_response(chat_stream(&a, &req))
            } else {
                axum::Json(chat_response(&a, &req)).into_response()
            };
            (response, usage)
        }
        Translator::MockCompletion => {
            let req: CompletionRequest = parse(call.payload)?;
            let id = new_id("cmpl-");
            let a = MockAnswer { text, model: &d.upstream_model, id: &id, created };
            let usage = completion_usage(&req, text);
            let response = if req.stream == Some(true) {
                stream_response(completion_stream(&a, &req))
            } else {
                axum::Json(completion_response(&a, &req)).into_response()
            };
            (response, usage)
        }
        Translator::MockMessages => {
            let req: MessagesRequest = parse(call.payload)?;
            let id = new_id("msg_");
            let a = MockAnswer { text, model: &d.upstream_model, id: &id, created };
            let usage = messages_usage(&req, text);
            let response = if req.stream == Some(true) {
                stream_response(messages_stream(&a, &req))
            } else {
                axum::Json(messages_response(&a, &req)).into_response()
            };
            (response, usage)
        }
        Translator::MockEmbedding => {
            let req: EmbeddingRequest = parse(call.payload)?;
            let body = embedding_response(&d.upstream_model, &req)?;
            let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            (axum::Json(body).into_response(), Usage { prompt_tokens, completion_tokens: 0 })
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "translator {other} is not a mock translator; mock deployments serve chat completions, completions, messages and embeddings"
            )))
        }
    };
    Ok(Outcome { response, deployment: Some(d.id.clone()), usage: Some(usage) })
}
