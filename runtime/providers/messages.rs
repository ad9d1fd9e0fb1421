//! Anthropic's `/v1/messages` in front of every provider that is not Anthropic.
//!
//! The Messages request becomes an OpenAI chat request, runs through the deployment's chat
//! translation (`providers::chat::execute`), and the answer comes back as an Anthropic
//! `message`, or as the full Anthropic SSE sequence (message_start, content_block_start /
//! delta / stop, message_delta, message_stop), so the Anthropic SDK works against GPT,
//! Gemini or Bedrock deployments.

use super::auth::Scrubber;
use super::chat::{execute, ChatOutput, ChunkStream, StreamEnds};
use super::translate::ChatProvider;
use super::ProviderCall;
use crate::api::openai::ChatRequest;
use crate::exchange::{usage, ApiError, Outcome, Payload};
use crate::streaming::sse;
use axum::body::Bytes;
use axum::response::IntoResponse;
use ferrolite_codegen::str_map;
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use std::sync::Arc;

str_map! {
    /// OpenAI `finish_reason` -> Anthropic `stop_reason`.
    pub fn stop_reason -> &'static str {
        "stop" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// The text of a content value: a string, or its `text` blocks joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// An Anthropic image block as an OpenAI `image_url` part.
fn image_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source["type"].as_str()? {
        "base64" => format!("data:{};base64,{}", source["media_type"].as_str()?, source["data"].as_str()?),
        "url" => source["url"].as_str()?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A Messages API request as an OpenAI chat request.
pub fn to_chat_request(body: &Value) -> Result<ChatRequest, ApiError> {
    let mut messages: Vec<Value> = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => messages.push(json!({"role": "system", "content": text_of(system)})),
    }
    for (i, turn) in body["messages"].as_array().into_iter().flatten().enumerate() {
        let role = turn["role"].as_str().ok_or_else(|| invalid(format!("messages.{i}.role is required")))?;
        let blocks = match &turn["content"] {
            Value::String(text) => {
                messages.push(json!({"role": role, "content": text}));
                continue;
            }
            Value::Array(blocks) => blocks,
            _ => return Err(invalid(format!("messages.{i}.content must be a string or a list of blocks"))),
        };
        let mut parts: Vec<Value> = Vec::new();
        let mut tool_calls: Vec<Value> = Vec::new();
        for block in blocks {
            match block["type"].as_str().unwrap_or_default() {
                "text" => parts.push(json!({"type": "text", "text": block["text"]})),
                "image" => parts.extend(image_part(block)),
                "tool_use" => tool_calls.push(json!({
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": block["input"].to_string()}
                })),
                // Tool results answer the previous assistant turn, so they go first, as `tool` messages.
                "tool_result" => messages.push(json!({
                    "role": "tool",
                    "tool_call_id": block["tool_use_id"],
                    "content": text_of(&block["content"]),
                })),
                _ => {} // thinking and other blocks have no OpenAI form
            }
        }
        if role == "assistant" {
            let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            let mut message =
                json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !tool_calls.is_empty() {
                message["tool_calls"] = json!(tool_calls);
            }
            messages.push(message);
        } else if !parts.is_empty() {
            let only_text = parts.iter().all(|p| p["type"] == "text");
            let content = if only_text {
                json!(parts.iter().filter_map(|p| p["text"].as_str()).collect::<String>())
            } else {
                json!(parts)
            };
            messages.push(json!({"role": role, "content": content}));
        }
    }

    let mut chat = Map::new();
    chat.insert("model".into(), body["model"].clone());
    chat.insert("messages".into(), json!(messages));
    for (from, to) in
        [("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"), ("stream", "stream")]
    {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences").filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
        chat.insert("stop".into(), stop.clone());
    }
    if let Some(user) = body.pointer("/metadata/user_id").filter(|v| v.is_string()) {
        chat.insert("user".into(), user.clone());
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t["name"], "description": t.get("description").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))
                }})
            })
            .collect();
        chat.insert("tools".into(), json!(tools));
    }
    if let Some(choice) = body.get("tool_choice").filter(|c| c.is_object()) {
        let mapped = match choice["type"].as_str() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            _ => json!("auto"),
        };
        chat.insert("tool_choice".into(), mapped);
        if choice["disable_parallel_tool_use"] == true {
            chat.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    serde_json::from_value(Value::Object(chat)).map_err(|e| invalid(format!("invalid request: {e}")))
}

/// An OpenAI `chat.completion` as an Anthropic `message`.
pub fn to_anthropic_message(chat: &Value) -> Value {
    let choice = &chat["choices"][0];
    let message = &choice["message"];
    let mut content: Vec<Value> = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
        }));
    }
    let usage = usage::from_json(chat).unwrap_or_default();
    let mut usage_json = json!({"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens});
    if let Some(cached) = chat.pointer("/usage/prompt_tokens_details/cached_tokens").and_then(Value::as_u64) {
        usage_json["cache_read_input_tokens"] = json!(cached);
    }
    json!({
        "id": message_id(chat["id"].as_str().unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": chat["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": usage_json,
    })
}

fn message_id(chat_id: &str) -> String {
    format!("msg_{}", chat_id.trim_start_matches("chatcmpl-"))
}

/// What kind of content block is open in the Anthropic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool_use block for the OpenAI tool call of this index.
    Tool(u64),
}

/// OpenAI chunks in, Anthropic SSE events out, as each chunk arrives.
#[derive(Debug, Default)]
pub struct AnthropicEvents {
    model: String,
    started: bool,
    open: Option<(usize, Block)>,
    next_index: usize,
    stop_reason: Option<&'static str>,
    input_tokens: u64,
    output_tokens: u64,
}

impl AnthropicEvents {
    pub fn new(model: &str) -> AnthropicEvents {
        AnthropicEvents { model: model.to_owned(), ..AnthropicEvents::default() }
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let model = chunk["model"].as_str().unwrap_or(&self.model).to_owned();
        out.push(sse::named(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(chunk["id"].as_str().unwrap_or_default()), "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}
            }}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(sse::named("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn open(&mut self, block: Block, start: Value, out: &mut Vec<Bytes>) -> usize {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, block));
        out.push(sse::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        index
    }

    /// The events one OpenAI chunk makes.
    pub fn push(&mut self, chunk: &Value) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(chunk, &mut out);
        if chunk["choices"].as_array().is_some_and(Vec::is_empty) && chunk.get("usage").is_some_and(Value::is_object) {
            let usage = usage::from_json(chunk).unwrap_or_default();
            self.input_tokens = usage.prompt_tokens;
            self.output_tokens = usage.completion_tokens;
            return out;
        }
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((index, Block::Text)) => index,
                _ => self.open(Block::Text, json!({"type": "text", "text": ""}), &mut out),
            };
            out.push(sse::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let tool = call["index"].as_u64().unwrap_or(0);
            let index = match self.open {
                Some((index, Block::Tool(t))) if t == tool && call.get("id").is_none_or(Value::is_null) => index,
                _ => self.open(
                    Block::Tool(tool),
                    json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}}),
                    &mut out,
                ),
            };
            if let Some(partial) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                out.push(sse::named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}}),
                ));
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(stop_reason(reason));
        }
        if let Some(usage) = usage::from_json(chunk) {
            self.input_tokens = usage.prompt_tokens;
            self.output_tokens = usage.completion_tokens;
        }
        out
    }

    /// The closing events: the open block's stop, message_delta with stop_reason and usage, message_stop.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&json!({}), &mut out);
        self.close(&mut out);
        out.push(sse::named(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}}),
        ));
        out.push(sse::named("message_stop", &json!({"type": "message_stop"})));
        out
    }
}

/// An error as an Anthropic SSE `error` event.
pub fn error_event(e: &ApiError) -> Bytes {
    let kind = match e.status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    };
    sse::named("error", &json!({"type": "error", "error": {"type": kind, "message": e.message}}))
}

fn anthropic_frames(
    chunks: ChunkStream,
    model: String,
    ends: StreamEnds,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct State {
        chunks: ChunkStream,
        events: AnthropicEvents,
        finished: bool,
    }
    let state = State { chunks, events: AnthropicEvents::new(&model), finished: false };
    let ends = Arc::new(ends);
    futures::stream::unfold(state, move |mut s| {
        let ends = ends.clone();
        async move {
            if s.finished {
                return None;
            }
            let frames = match s.chunks.next().await {
                Some(Ok(chunk)) => s.events.push(&serde_json::to_value(&chunk).unwrap_or_default()),
                Some(Err(e)) => {
                    s.finished = true;
                    vec![error_event(&ends.failed(e))]
                }
                None => {
                    s.finished = true;
                    s.events.finish()
                }
            };
            Some((futures::stream::iter(frames.into_iter().map(Ok)), s))
        }
    })
    .flatten()
}

/// `POST /v1/messages` for a deployment that is not Anthropic, through its chat translation.
pub async fn serve(call: ProviderCall<'_>, provider: &dyn ChatProvider) -> Result<Outcome, ApiError> {
    let body = match &call.payload {
        Payload::Json(v) => Arc::clone(v),
        _ => return Err(invalid("this route takes a JSON body")),
    };
    let req = to_chat_request(&body)?;
    let deployment = Some(call.deployment.id.clone());
    match execute(&call, provider, req).await? {
        ChatOutput::Complete(chat) => {
            let chat = serde_json::to_value(&chat).map_err(|e| ApiError::internal(e.to_string()))?;
            let usage = usage::from_json(&chat);
            Ok(Outcome { response: axum::Json(to_anthropic_message(&chat)).into_response(), deployment, usage })
        }
        ChatOutput::Stream(chunks) => {
            let ends = StreamEnds { logs: call.logs.clone(), scrubber: Scrubber::of(call.deployment) };
            let frames = anthropic_frames(chunks, call.deployment.upstream_model.clone(), ends);
            Ok(Outcome { response: sse::response(frames), deployment, usage: None })
        }
    }
}
