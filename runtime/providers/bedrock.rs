//! AWS Bedrock's Converse API: OpenAI chat requests become `Converse` / `ConverseStream` bodies,
//! signed with SigV4; answers (JSON, or binary `application/vnd.amazon.eventstream` frames)
//! come back as OpenAI `chat.completion` objects and chunks.
//!
//! Everything here is a pure function of its inputs (clock and ids passed in) so the snapshot
//! tests in `tests/it/translate_bedrock.rs` pin each translation; [`Bedrock`] wires them to the
//! [`ChatProvider`] contract that `providers::chat` runs.

use crate::api::openai::{ChatChunk, ChatCompletion, ChatRequest};
use crate::exchange::ApiError;
use crate::providers::deployment::Deployment;
use crate::providers::translate::{error_kind, error_message, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use axum::http::StatusCode;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The Bedrock Converse provider.
pub struct Bedrock;

/// The one instance `providers::chat` calls.
pub static PROVIDER: Bedrock = Bedrock;

/// The tool a `response_format` of JSON becomes: forced, and its input comes back as the
/// message content (litellm's name for it, so logs read the same).
pub const JSON_TOOL: &str = "json_tool_call";

str_map! {
    /// Bedrock `stopReason` -> OpenAI `finish_reason`.
    pub fn finish_reason -> &'static str {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

str_map! {
    /// An image's MIME type -> Bedrock's `image.format`.
    pub fn image_format -> &'static str {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
    }
}

str_map! {
    /// OpenAI's string `tool_choice` -> Bedrock's `toolChoice` key (`none` drops the tools).
    fn tool_choice_key -> &'static str {
        "auto" => "auto",
        "required" => "any",
        "none" => "none",
    }
}

str_map! {
    /// A ConverseStream exception frame's `:exception-type` -> the HTTP status Bedrock gives
    /// the same error on a plain request.
    pub fn exception_status -> u16 {
        "throttlingException" | "modelNotReadyException" => 429,
        "validationException" => 400,
        "accessDeniedException" => 403,
        "resourceNotFoundException" => 404,
        "modelTimeoutException" => 408,
        "modelStreamErrorException" | "modelErrorException" => 424,
        "serviceUnavailableException" => 503,
        "internalServerException" => 500,
        _ => 500,
    }
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat -> Converse

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("bedrock: {}", message.into())).with_param(param)
}

fn bad_upstream(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("bedrock: {}", message.into()))
}

/// A request parameter, `null` counted as absent.
fn param<'a>(req: &'a ChatRequest, name: &str) -> Option<&'a Value> {
    req.extra.get(name).filter(|v| !v.is_null())
}

/// The Converse (and ConverseStream: the same body) request for `req`.
pub fn converse_body(req: &ChatRequest) -> Result<Value, ApiError> {
    let (system, messages) = converse_messages(req)?;
    let mut body = Map::new();
    body.insert("messages".into(), Value::Array(messages.iter().map(Turn::to_json).collect()));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(req)?;
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    let has_tool_blocks =
        messages.iter().flat_map(|t| &t.content).any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());
    if let Some(tool_config) = tool_config(req, has_tool_blocks)? {
        body.insert("toolConfig".into(), tool_config);
    }
    Ok(Value::Object(body))
}

/// One Converse message: consecutive OpenAI messages of the same Bedrock role merge into one.
struct Turn {
    role: &'static str,
    content: Vec<Value>,
}

impl Turn {
    fn to_json(&self) -> Value {
        json!({"role": self.role, "content": self.content})
    }
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Vec<Value>) {
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => turns.push(Turn { role, content }),
    }
}

/// `system` blocks and the alternating user / assistant turns.
fn converse_messages(req: &ChatRequest) -> Result<(Vec<Value>, Vec<Turn>), ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "system" | "developer" => {
                let text = m.text();
                if !text.trim().is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            "user" => push_turn(&mut turns, "user", user_blocks(m.content.as_ref(), &at)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(m, &at)?),
            "tool" => {
                let id = m.extra.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!("{at}.tool_call_id"), format!("{at}: a tool message needs tool_call_id"))
                })?;
                let result =
                    json!({"toolResult": {"toolUseId": id, "content": tool_result_content(m.content.as_ref())}});
                push_turn(&mut turns, "user", vec![result]);
            }
            other => {
                return Err(invalid(
                    format!("{at}.role"),
                    format!("{at}: role {other:?} is not supported; use system, developer, user, assistant or tool"),
                ))
            }
        }
    }
    Ok((system, turns))
}

/// Drops blank text blocks when a message has something else to say (Bedrock refuses blank
/// text); a message of nothing but blank text keeps it, and Bedrock's own error explains.
fn without_blank_text(blocks: Vec<Value>) -> Vec<Value> {
    let blank = |b: &Value| b.get("text").and_then(Value::as_str).is_some_and(|t| t.trim().is_empty());
    if blocks.iter().all(blank) {
        return blocks;
    }
    blocks.into_iter().filter(|b| !blank(b)).collect()
}

fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, ApiError> {
    let blocks = match content {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => vec![json!({"text": text})],
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        blocks.push(json!({"text": part.get("text").and_then(Value::as_str).unwrap_or("")}))
                    }
                    Some("image_url") => blocks.push(image_block(part, &at)?),
                    other => {
                        return Err(invalid(
                            format!("{at}.type"),
                            format!(
                                "{at}: bedrock does not take {} parts here (text and image_url are)",
                                other.unwrap_or("untyped")
                            ),
                        ))
                    }
                }
            }
            blocks
        }
        Some(_) => {
            return Err(invalid(format!("{at}.content"), format!("{at}: content must be a string or a list of parts")))
        }
    };
    Ok(without_blank_text(blocks))
}

/// `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}` -> an image block.
fn image_block(part: &Value, at: &str) -> Result<Value, ApiError> {
    let url = part
        .get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.image_url"), format!("{at}: image_url needs a url")))?;
    let not_data = || {
        invalid(
            format!("{at}.image_url.url"),
            format!("{at}: bedrock takes images as base64 data URLs (data:image/png;base64,...)"),
        )
    };
    let rest = url.strip_prefix("data:").ok_or_else(not_data)?;
    let (header, data) = rest.split_once(',').ok_or_else(not_data)?;
    let mime = header.strip_suffix(";base64").ok_or_else(not_data)?;
    let format = image_format(&mime.to_ascii_lowercase()).ok_or_else(|| {
        invalid(
            format!("{at}.image_url.url"),
            format!("{at}: image type {mime:?} is not one bedrock takes ({})", IMAGE_FORMAT_KEYS.join(", ")),
        )
    })?;
    let bytes: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    Ok(json!({"image": {"format": format, "source": {"bytes": bytes}}}))
}

fn assistant_blocks(m: &crate::api::openai::ChatMessage, at: &str) -> Result<Vec<Value>, ApiError> {
    let mut blocks = Vec::new();
    let text = m.text();
    if !text.is_empty() {
        blocks.push(json!({"text": text}));
    }
    let calls = m.extra.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (j, call) in calls.iter().enumerate() {
        let at = format!("{at}.tool_calls[{j}]");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}.id"), format!("{at}: needs an id")))?;
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}.function.name"), format!("{at}: needs function.name")))?;
        let arguments = function.get("arguments").and_then(Value::as_str).unwrap_or("");
        let input: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                invalid(format!("{at}.function.arguments"), format!("{at}: function.arguments is not JSON ({e})"))
            })?
        };
        blocks.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    if blocks.is_empty() {
        // An assistant turn with nothing in it: Bedrock refuses empty content, and says so.
        blocks.push(json!({"text": text}));
    }
    Ok(without_blank_text(blocks))
}

/// A tool message's content: text stays text; a JSON value that is not text goes as `json`.
fn tool_result_content(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![json!({"text": text})],
        Some(Value::Array(parts)) if parts.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("text")) => {
            parts.iter().map(|p| json!({"text": p.get("text").and_then(Value::as_str).unwrap_or("")})).collect()
        }
        None | Some(Value::Null) => vec![json!({"text": ""})],
        Some(other) => vec![json!({"json": other})],
    }
}

fn inference_config(req: &ChatRequest) -> Result<Map<String, Value>, ApiError> {
    let mut config = Map::new();
    if let Some(v) = param(req, "max_completion_tokens").or_else(|| param(req, "max_tokens")) {
        let n = v.as_u64().ok_or_else(|| invalid("max_tokens", "max_tokens must be a positive integer"))?;
        config.insert("maxTokens".into(), json!(n));
    }
    for (openai, bedrock) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = param(req, openai) {
            if !v.is_number() {
                return Err(invalid(openai, format!("{openai} must be a number")));
            }
            config.insert(bedrock.into(), v.clone());
        }
    }
    match param(req, "stop") {
        None => {}
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.is_empty() => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            config.insert("stopSequences".into(), Value::Array(items.clone()));
        }
        Some(_) => return Err(invalid("stop", "stop must be a string or a list of strings")),
    }
    Ok(config)
}

/// `toolConfig`, from `tools`, `tool_choice` and `response_format`.
///
/// `tool_choice: "none"` drops the tools, unless the conversation already holds tool calls:
/// Bedrock refuses toolUse / toolResult blocks without a toolConfig, so then the tools stay
/// (with no choice forced).
fn tool_config(req: &ChatRequest, has_tool_blocks: bool) -> Result<Option<Value>, ApiError> {
    let mut tools = Vec::new();
    if let Some(list) = param(req, "tools") {
        let list = list.as_array().ok_or_else(|| invalid("tools", "tools must be a list"))?;
        for (i, tool) in list.iter().enumerate() {
            if tool.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
                return Err(invalid(
                    format!("tools[{i}].type"),
                    format!("tools[{i}]: bedrock takes function tools only"),
                ));
            }
            let function = tool.get("function").unwrap_or(&Value::Null);
            let name = function.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid(format!("tools[{i}].function.name"), format!("tools[{i}]: needs function.name"))
            })?;
            let schema = function
                .get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut spec = Map::new();
            spec.insert("name".into(), json!(name));
            if let Some(description) = function.get("description").and_then(Value::as_str) {
                spec.insert("description".into(), json!(description));
            }
            spec.insert("inputSchema".into(), json!({"json": schema}));
            tools.push(json!({"toolSpec": spec}));
        }
    }
    let mut choice = match param(req, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match tool_choice_key(s) {
            Some("none") => {
                if !has_tool_blocks {
                    tools.clear();
                }
                None
            }
            Some(key) => Some(json!({ key: {} })),
            None => {
                return Err(invalid("tool_choice", format!("tool_choice {s:?} is not one of auto, required, none")))
            }
        },
        Some(Value::Object(o)) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                invalid(
                    "tool_choice",
                    "tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )
            })?;
            Some(json!({"tool": {"name": name}}))
        }
        Some(_) => return Err(invalid("tool_choice", "tool_choice must be a string or an object")),
    };
    if let Some(schema) = json_response_schema(req)? {
        tools.push(json!({"toolSpec": {
            "name": JSON_TOOL,
            "description": "Respond with a JSON object in this tool's input.",
            "inputSchema": {"json": schema}
        }}));
        choice = Some(json!({"tool": {"name": JSON_TOOL}}));
    }
    if tools.is_empty() {
        return Ok(None);
    }
    let mut config = json!({"tools": tools});
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

/// The schema a `response_format` asks for (`json_object`: any object), if it asks for JSON.
fn json_response_schema(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let Some(format) = param(req, "response_format") else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "object"}))),
        Some("json_schema") => {
            let schema = format.pointer("/json_schema/schema").filter(|s| s.is_object()).ok_or_else(|| {
                invalid("response_format.json_schema.schema", "response_format json_schema needs json_schema.schema")
            })?;
            Ok(Some(schema.clone()))
        }
        _ => Err(invalid("response_format", "response_format type must be text, json_object or json_schema")),
    }
}

// ---------------------------------------------------------------------------------------------
// Response: Converse -> chat.completion

fn usage_json(usage: &Value) -> Value {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (prompt, completion) = (n("inputTokens"), n("outputTokens"));
    let total = usage.get("totalTokens").and_then(Value::as_u64).unwrap_or(prompt + completion);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total})
}

fn tool_call(id: &str, name: &str, arguments: String) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// A whole Converse answer as a `chat.completion`.
pub fn to_openai(body: &Value, model: &str, id: &str, created: u64) -> Result<Value, ApiError> {
    let blocks = body
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("the answer has no output.message.content"))?;
    let (mut text, mut reasoning, mut calls, mut json_answer) = (String::new(), String::new(), Vec::new(), false);
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            let input = tool.get("input").cloned().unwrap_or_else(|| json!({}));
            if name == JSON_TOOL {
                text.push_str(&input.to_string());
                json_answer = true;
            } else {
                let id = tool.get("toolUseId").and_then(Value::as_str).unwrap_or_default();
                calls.push(tool_call(id, name, input.to_string()));
            }
        } else if let Some(t) = block.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str) {
            reasoning.push_str(t);
        }
    }
    let stop_reason = body.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
    let finish = match finish_reason(stop_reason) {
        "tool_calls" if calls.is_empty() && json_answer => "stop",
        other => other,
    };
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage_json(body.get("usage").unwrap_or(&Value::Null)),
        "system_fingerprint": null
    }))
}

// ---------------------------------------------------------------------------------------------
// Stream: ConverseStream event-stream frames -> chat.completion.chunk

/// What a content block of the stream turned out to be.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// A tool call, with its OpenAI `tool_calls[].index`.
    Tool(usize),
    /// The forced JSON-answer tool: its input streams out as content.
    JsonAnswer,
}

/// Decodes ConverseStream's binary event stream as its bytes arrive.
pub struct ConverseStreamDecoder {
    meta: StreamMeta,
    frames: MessageFrameDecoder,
    /// Bytes received and not yet handed to the frame decoder.
    pending: Vec<u8>,
    /// Bytes of a frame the frame decoder has taken (its prelude) without finishing it.
    partial: usize,
    /// The role chunk has gone out.
    started: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: usize,
    json_answer: bool,
    /// The finish_reason chunk has gone out.
    finished: bool,
    /// Usage seen before the finish chunk, sent right after it (or at the end).
    usage: Option<Value>,
    usage_sent: bool,
}

impl ConverseStreamDecoder {
    pub fn new(meta: StreamMeta) -> ConverseStreamDecoder {
        ConverseStreamDecoder {
            meta,
            frames: MessageFrameDecoder::new(),
            pending: Vec::new(),
            partial: 0,
            started: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            json_answer: false,
            finished: false,
            usage: None,
            usage_sent: false,
        }
    }

    fn envelope(&self, choices: Value) -> Value {
        json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": null,
            "choices": choices
        })
    }

    /// A content chunk; the first one of the stream also carries the role.
    fn chunk(&mut self, delta: Value, finish: Option<&str>) -> Value {
        let mut delta = delta;
        if !self.started {
            self.started = true;
            let mut with_role = Map::new();
            with_role.insert("role".into(), json!("assistant"));
            if let Value::Object(rest) = delta {
                with_role.extend(rest);
            }
            delta = Value::Object(with_role);
        }
        self.envelope(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]))
    }

    fn usage_chunk(&mut self, out: &mut Vec<Value>) {
        if let Some(usage) = self.usage.take() {
            self.usage_sent = true;
            let mut chunk = self.envelope(json!([]));
            chunk["usage"] = usage;
            out.push(chunk);
        }
    }

    fn on_frame(
        &mut self,
        message: &aws_smithy_types::event_stream::Message,
        out: &mut Vec<Value>,
    ) -> Result<(), ApiError> {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        let payload: &[u8] = message.payload();
        match header(":message-type").as_deref() {
            Some("event") => {}
            Some("exception") => {
                let kind = header(":exception-type").unwrap_or_else(|| "exception".to_owned());
                let status = StatusCode::from_u16(exception_status(&kind)).unwrap_or(StatusCode::BAD_GATEWAY);
                return Err(ApiError::new(
                    status,
                    error_kind(status),
                    format!("bedrock: {kind}: {}", error_message(payload)),
                ));
            }
            Some("error") => {
                let code = header(":error-code").unwrap_or_else(|| "error".to_owned());
                let text = header(":error-message").unwrap_or_default();
                return Err(bad_upstream(format!("{code}: {text}")));
            }
            other => return Err(bad_upstream(format!("unexpected event-stream message type {other:?}"))),
        }
        let event = header(":event-type").unwrap_or_default();
        let data: Value = if payload.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(payload).map_err(|e| bad_upstream(format!("{event} event is not JSON ({e})")))?
        };
        let block_index = data.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
        match event.as_str() {
            "messageStart" if !self.started => {
                let chunk = self.chunk(json!({"content": ""}), None);
                out.push(chunk);
            }
            "contentBlockStart" => {
                if let Some(tool) = data.pointer("/start/toolUse") {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    if name == JSON_TOOL {
                        self.json_answer = true;
                        self.blocks.insert(block_index, Block::JsonAnswer);
                    } else {
                        let index = self.tool_calls;
                        self.tool_calls += 1;
                        self.blocks.insert(block_index, Block::Tool(index));
                        let id = tool.get("toolUseId").and_then(Value::as_str).unwrap_or_default();
                        let call = json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
                        let chunk = self.chunk(json!({"tool_calls": [call]}), None);
                        out.push(chunk);
                    }
                }
            }
            "contentBlockDelta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let openai = if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    json!({"content": text})
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
                    match self.blocks.get(&block_index) {
                        Some(Block::JsonAnswer) => json!({"content": input}),
                        Some(Block::Tool(index)) => {
                            json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]})
                        }
                        None => {
                            return Err(bad_upstream(format!(
                                "tool input for content block {block_index}, which never started"
                            )))
                        }
                    }
                } else if let Some(text) = delta.pointer("/reasoningContent/text").and_then(Value::as_str) {
                    json!({"reasoning_content": text})
                } else {
                    return Ok(());
                };
                let chunk = self.chunk(openai, None);
                out.push(chunk);
            }
            "messageStop" => {
                let stop_reason = data.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
                let finish = match finish_reason(stop_reason) {
                    "tool_calls" if self.tool_calls == 0 && self.json_answer => "stop",
                    other => other,
                };
                let chunk = self.chunk(json!({}), Some(finish));
                out.push(chunk);
                self.finished = true;
                self.usage_chunk(out);
            }
            "metadata" => {
                if let Some(usage) = data.get("usage") {
                    self.usage = Some(usage_json(usage));
                    if self.finished {
                        self.usage_chunk(out);
                    }
                }
            }
            // contentBlockStop, a repeated messageStart, and events this translation has no use for.
            _ => {}
        }
        Ok(())
    }
}

impl ChunkDecoder for ConverseStreamDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        super::translate::typed_chunks(self.feed_values(bytes)?)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
        super::translate::typed_chunks(self.finish_values()?)
    }
}

impl ConverseStreamDecoder {
    fn feed_values(&mut self, bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let mut unread: &[u8] = &self.pending;
            let decoded = self.frames.decode_frame(&mut unread);
            let consumed = self.pending.len() - unread.len();
            self.pending.drain(..consumed);
            match decoded {
                Ok(DecodedFrame::Incomplete) => {
                    self.partial += consumed;
                    break;
                }
                Ok(DecodedFrame::Complete(message)) => {
                    self.partial = 0;
                    self.on_frame(&message, &mut out)?;
                }
                Err(e) => return Err(bad_upstream(format!("malformed event stream: {e}"))),
            }
        }
        Ok(out)
    }

    fn finish_values(&mut self) -> Result<Vec<Value>, ApiError> {
        if self.partial > 0 || !self.pending.is_empty() {
            let n = self.partial + self.pending.len();
            self.partial = 0;
            self.pending.clear();
            return Err(bad_upstream(format!("the event stream ended inside a frame ({n} bytes of it)")));
        }
        let mut out = Vec::new();
        if !self.usage_sent {
            self.usage_chunk(&mut out);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// The provider

/// `message` with every credential of `aws` masked (an upstream may quote what it was sent).
impl ChatProvider for Bedrock {
    fn chat_request(
        &self,
        req: &ChatRequest,
        _d: &Deployment,
        url: String,
        _stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest::post_json(url, &converse_body(req)?))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| bad_upstream(format!("the answer is not JSON ({e})")))?;
        super::translate::typed_completion(to_openai(
            &value,
            &d.upstream_model,
            &super::chat::new_chat_id(),
            crate::clock::unix_now(),
        )?)
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(ConverseStreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        let message = error_message(body);
        ApiError::new(status, error_kind(status), format!("bedrock: {message}"))
    }
}
