//! Anthropic's Messages API behind OpenAI chat completions.
//!
//! [`messages_body`] turns an OpenAI chat request into a `POST /v1/messages` body, [`to_openai`]
//! turns a `message` back into a `chat.completion`, and [`StreamDecoder`] turns the Messages SSE
//! stream into `chat.completion.chunk`s as its events arrive. All of them are pure, so the
//! translations are snapshot-tested without a network; [`Anthropic`] wires them to the
//! [`ChatProvider`] contract that `providers::chat` runs.
//!
//! What does not map one to one:
//! - every `system` (and `developer`) message is lifted into the top-level `system`, and
//!   consecutive turns of one role (a `tool` message is a user turn) are merged, because
//!   Anthropic wants user and assistant turns to alternate;
//! - `response_format` (json_schema or json_object) becomes a tool named [`RESPONSE_FORMAT_TOOL`]
//!   whose input schema is the requested schema; its `input` comes back as the message's JSON
//!   `content` with finish_reason `stop`, never as a tool call. The name is reserved: a caller's
//!   own tool may not use it;
//! - OpenAI's `metadata` only contributes a `user_id` (all Anthropic's `metadata` accepts);
//!   `user` takes precedence;
//! - `stream_options` has no counterpart: Anthropic always reports usage in a stream, and the
//!   decoder always emits the usage chunk (the caller drops it unless `include_usage`).

mod answer;

use crate::api::openai::{ChatChunk, ChatCompletion, ChatMessage, ChatRequest};
use crate::exchange::ApiError;
use crate::providers::deployment::Deployment;
use crate::providers::translate::{error_kind, error_message, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use crate::streaming::sse;
use answer::Answer;
use axum::http::StatusCode;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// `max_tokens` when the caller sets neither `max_tokens` nor `max_completion_tokens`
/// (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The tool a `response_format` becomes; its calls come back as message content.
pub const RESPONSE_FORMAT_TOOL: &str = "json_tool_call";

str_map! {
    /// Anthropic `stop_reason` -> OpenAI `finish_reason`.
    pub fn finish_reason -> &'static str {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

str_map! {
    /// OpenAI `tool_choice` strings -> Anthropic `tool_choice.type`.
    pub fn tool_choice_type -> &'static str {
        "auto" => "auto",
        "required" => "any",
        "none" => "none",
    }
}

str_map! {
    /// Anthropic error `type` -> the HTTP status Anthropic gives it (for errors inside a stream).
    pub fn error_status -> u16 {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "overloaded_error" => 529,
        _ => 502,
    }
}

/// The Anthropic provider.
pub struct Anthropic;

/// The one instance `providers::chat` dispatches to.
pub static PROVIDER: Anthropic = Anthropic;

impl ChatProvider for Anthropic {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        let mut body = messages_body(req, d)?;
        if let Some(obj) = body.as_object_mut() {
            if stream {
                obj.insert("stream".into(), Value::Bool(true));
            } else {
                obj.remove("stream");
            }
        }
        Ok(UpstreamRequest::post_json(url, &body))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        let answer = Answer::from_slice(body).map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("anthropic: the answer is not JSON: {e}"))
        })?;
        super::translate::typed_completion(completion(answer, &d.upstream_model, crate::clock::unix_now())?)
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(StreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let code = parsed.as_ref().and_then(|v| v.pointer("/error/type")).and_then(Value::as_str).map(str::to_owned);
        let message = format!("anthropic: {}", error_message(body));
        let error = ApiError::new(status, error_kind(status), message);
        match code {
            Some(code) => error.with_code(code),
            None => error,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat -> Messages

fn invalid(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

/// The `POST /v1/messages` body for an OpenAI chat request. `stream` is set when the request
/// asks for it; [`ChatProvider::chat_request`] makes it agree with the template used.
pub fn messages_body(req: &ChatRequest, d: &Deployment) -> Result<Value, ApiError> {
    let p = &req.extra;
    let mut body = Map::new();
    body.insert("model".into(), Value::String(d.upstream_model.clone()));

    let (system, messages) = convert_messages(&req.messages)?;
    if let Some(system) = system {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(max_tokens(p)?));

    if let Some(stop) = stop_sequences(p.get("stop"))? {
        body.insert("stop_sequences".into(), stop);
    }
    for name in ["temperature", "top_p"] {
        match p.get(name) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                body.insert(name.into(), v.clone());
            }
            Some(_) => return Err(invalid(format!("{name} must be a number"), name)),
        }
    }
    if let Some(user_id) = user_id(p)? {
        body.insert("metadata".into(), json!({"user_id": user_id}));
    }
    if req.stream == Some(true) {
        body.insert("stream".into(), Value::Bool(true));
    }

    let (tools, tool_choice) = tools_and_choice(p)?;
    if let Some(tools) = tools {
        body.insert("tools".into(), tools);
    }
    if let Some(choice) = tool_choice {
        body.insert("tool_choice".into(), choice);
    }
    Ok(Value::Object(body))
}

fn max_tokens(p: &Map<String, Value>) -> Result<u64, ApiError> {
    for name in ["max_completion_tokens", "max_tokens"] {
        match p.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(format!("{name} must be a positive integer"), name))
            }
        }
    }
    Ok(DEFAULT_MAX_TOKENS)
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok((!items.is_empty()).then(|| Value::Array(items.clone())))
        }
        Some(_) => Err(invalid("stop must be a string or a list of strings", "stop")),
    }
}

fn user_id(p: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match p.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) => return Ok(Some(user.clone())),
        Some(_) => return Err(invalid("user must be a string", "user")),
    }
    Ok(p.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str).map(str::to_owned))
}

/// A turn being built: its role and content blocks.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// (top-level `system`, alternating `messages`).
fn convert_messages(messages: &[ChatMessage]) -> Result<(Option<Value>, Vec<Value>), ApiError> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(text_blocks(m.content.as_ref(), &at)?);
                continue;
            }
            "user" => ("user", user_blocks(m.content.as_ref(), &at)?),
            "assistant" => ("assistant", assistant_blocks(m, &at)?),
            "tool" => ("user", vec![tool_result(m, &at)?]),
            other => {
                return Err(invalid(
                    format!("{at}.role {other:?} is not supported by anthropic; use system, user, assistant or tool"),
                    format!("{at}.role"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    if turns.is_empty() {
        return Err(invalid("anthropic needs at least one non-empty user or assistant message", "messages"));
    }
    let messages = turns
        .into_iter()
        .map(|mut t| {
            // Anthropic wants a user turn's tool results before anything else in it.
            t.blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            json!({"role": t.role, "content": compact(t.blocks)})
        })
        .collect();
    let system = (!system.is_empty()).then(|| compact(system));
    Ok((system, messages))
}

/// One plain text block is written as a string; anything else stays a list of blocks.
fn compact(mut blocks: Vec<Value>) -> Value {
    let plain = blocks.len() == 1
        && blocks[0].as_object().is_some_and(|b| b.len() == 2 && b.get("type") == Some(&json!("text")));
    if plain {
        blocks.pop().and_then(|b| b.get("text").cloned()).unwrap_or_default()
    } else {
        Value::Array(blocks)
    }
}

/// A text block, keeping a part's `cache_control`; `None` for empty text (Anthropic refuses it).
fn text_block(text: &str, part: Option<&Value>) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    let mut block = json!({"type": "text", "text": text});
    if let Some(cache) = part.and_then(|p| p.get("cache_control")) {
        block["cache_control"] = cache.clone();
    }
    Some(block)
}

/// Content that may only hold text (system messages): a string or text parts.
fn text_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s, None).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(text)) => blocks.extend(text_block(text, Some(part))),
                    _ => {
                        return Err(invalid(
                            format!("{at}.content[{j}]: only text parts are allowed here"),
                            format!("{at}.content[{j}]"),
                        ))
                    }
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(invalid(format!("{at}.content must be a string or a list of parts"), format!("{at}.content"))),
    }
}

/// A user message's content: text, images and PDF files.
fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, ApiError> {
    let parts = match content {
        Some(Value::Array(parts)) => parts,
        other => return text_blocks(other, at),
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        let block = match part.get("type").and_then(Value::as_str) {
            Some("text") => match part.get("text").and_then(Value::as_str) {
                Some(text) => text_block(text, Some(part)),
                None => return Err(invalid(format!("{here}.text must be a string"), format!("{here}.text"))),
            },
            Some("image_url") => {
                let url =
                    part.get("image_url").and_then(|u| u.get("url").or(Some(u))).and_then(Value::as_str).ok_or_else(
                        || invalid(format!("{here}.image_url.url is missing"), format!("{here}.image_url")),
                    )?;
                Some(image_block(url, &here)?)
            }
            Some("file") => Some(file_block(part, &here)?),
            Some(other) => {
                return Err(invalid(
                    format!("{here}: content part type {other:?} is not supported by anthropic"),
                    format!("{here}.type"),
                ))
            }
            None => return Err(invalid(format!("{here}.type is missing"), format!("{here}.type"))),
        };
        blocks.extend(block);
    }
    Ok(blocks)
}

/// `data:<media type>;base64,<data>` -> (media type, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

fn image_block(url: &str, at: &str) -> Result<Value, ApiError> {
    if url.starts_with("data:") {
        let (media_type, data) = parse_data_url(url).ok_or_else(|| {
            invalid(format!("{at}: an image data URL must be data:<type>;base64,<data>"), format!("{at}.image_url.url"))
        })?;
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(invalid(
        format!("{at}: an image URL must be an http(s) URL or a base64 data URL"),
        format!("{at}.image_url.url"),
    ))
}

/// An OpenAI `file` part (`file_data` as a base64 data URL) -> a `document` block.
fn file_block(part: &Value, at: &str) -> Result<Value, ApiError> {
    let data_url = part.pointer("/file/file_data").and_then(Value::as_str).ok_or_else(|| {
        invalid(format!("{at}: anthropic needs the file inline as file.file_data"), format!("{at}.file.file_data"))
    })?;
    let (media_type, data) = parse_data_url(data_url).ok_or_else(|| {
        invalid(format!("{at}: file_data must be data:<type>;base64,<data>"), format!("{at}.file.file_data"))
    })?;
    Ok(json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}))
}

/// An assistant message: its text, then a `tool_use` block per tool call.
fn assistant_blocks(m: &ChatMessage, at: &str) -> Result<Vec<Value>, ApiError> {
    let mut blocks = match m.content.as_ref() {
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let text = match part.get("type").and_then(Value::as_str) {
                    Some("text") => part.get("text").and_then(Value::as_str),
                    Some("refusal") => part.get("refusal").and_then(Value::as_str),
                    _ => None,
                };
                let text = text.ok_or_else(|| {
                    invalid(
                        format!("{at}.content[{j}]: assistant content parts must be text or refusal"),
                        format!("{at}.content[{j}]"),
                    )
                })?;
                blocks.extend(text_block(text, Some(part)));
            }
            blocks
        }
        other => text_blocks(other, at)?,
    };
    let calls = match m.extra.get("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(invalid(format!("{at}.tool_calls must be a list"), format!("{at}.tool_calls"))),
    };
    for (j, call) in calls.iter().enumerate() {
        let here = format!("{at}.tool_calls[{j}]");
        let id = call.get("id").and_then(Value::as_str);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(invalid(format!("{here} needs an id and function.name"), here));
        };
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
        let input: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                invalid(format!("{here}.function.arguments is not JSON: {e}"), format!("{here}.function.arguments"))
            })?
        };
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

/// A `tool` message -> a `tool_result` block.
fn tool_result(m: &ChatMessage, at: &str) -> Result<Value, ApiError> {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        invalid(format!("{at}.tool_call_id is required for a tool message"), format!("{at}.tool_call_id"))
    })?;
    let content = match m.content.as_ref() {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(parts @ Value::Array(_)) => Value::Array(user_blocks(Some(parts), at)?),
        Some(_) => {
            return Err(invalid(format!("{at}.content must be a string or a list of parts"), format!("{at}.content")))
        }
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

/// (`tools`, `tool_choice`) from `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`.
fn tools_and_choice(p: &Map<String, Value>) -> Result<(Option<Value>, Option<Value>), ApiError> {
    let mut tools = Vec::new();
    match p.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, tool) in list.iter().enumerate() {
                tools.push(convert_tool(tool, i)?);
            }
        }
        Some(_) => return Err(invalid("tools must be a list", "tools")),
    }
    let has_own_tools = !tools.is_empty();

    let mut choice = match p.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let kind = tool_choice_type(s).ok_or_else(|| {
                invalid(format!("tool_choice {s:?} is not one of: {}", TOOL_CHOICE_TYPE_KEYS.join(", ")), "tool_choice")
            })?;
            Some(json!({"type": kind}))
        }
        Some(obj @ Value::Object(_)) => {
            let name = obj.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                invalid("tool_choice must be auto, required, none or {type: function, function: {name}}", "tool_choice")
            })?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => return Err(invalid("tool_choice must be a string or an object", "tool_choice")),
    };

    if let Some(tool) = response_format_tool(p.get("response_format"))? {
        tools.push(tool);
        // Forced unless the caller's own tools are in play and the caller chose how.
        let caller_chose = choice.as_ref().is_some_and(|c| c["type"] != "none");
        if !(has_own_tools && caller_chose) {
            choice = Some(json!({"type": "tool", "name": RESPONSE_FORMAT_TOOL}));
        }
    }

    if p.get("parallel_tool_calls") == Some(&Value::Bool(false)) && !tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    let tools = (!tools.is_empty()).then_some(Value::Array(tools));
    // A tool_choice without tools is refused upstream; it means nothing anyway.
    let choice = if tools.is_some() { choice } else { None };
    Ok((tools, choice))
}

fn convert_tool(tool: &Value, i: usize) -> Result<Value, ApiError> {
    let at = format!("tools[{i}]");
    if tool.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
        return Err(invalid(format!("{at}: only function tools are supported by anthropic"), format!("{at}.type")));
    }
    let f =
        tool.get("function").ok_or_else(|| invalid(format!("{at}.function is required"), format!("{at}.function")))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.function.name is required"), format!("{at}.function.name")))?;
    if name == RESPONSE_FORMAT_TOOL {
        return Err(invalid(
            format!("{at}: the tool name {RESPONSE_FORMAT_TOOL} is reserved for response_format"),
            format!("{at}.function.name"),
        ));
    }
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.to_owned()));
    if let Some(description) = f.get("description").filter(|d| d.is_string()) {
        out.insert("description".into(), description.clone());
    }
    let schema = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(schema) => schema.clone(),
    };
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// The tool a `response_format` becomes, if it asks for JSON.
fn response_format_tool(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({
            "name": RESPONSE_FORMAT_TOOL,
            "description": "Respond with a JSON object.",
            "input_schema": {"type": "object"}
        }))),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .ok_or_else(|| invalid("response_format.json_schema is required", "response_format.json_schema"))?;
            let name = spec.get("name").and_then(Value::as_str).unwrap_or("response");
            let mut description = format!("Respond with a JSON object that follows the {name} schema.");
            if let Some(more) = spec.get("description").and_then(Value::as_str) {
                description = format!("{description} {more}");
            }
            let schema = spec.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            Ok(Some(json!({"name": RESPONSE_FORMAT_TOOL, "description": description, "input_schema": schema})))
        }
        _ => Err(invalid("response_format.type must be text, json_object or json_schema", "response_format.type")),
    }
}

// ---------------------------------------------------------------------------------------------
// Response: message -> chat.completion

fn bad_answer(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("anthropic: {}", message.into()))
}

/// An Anthropic `message` as an OpenAI `chat.completion`, created now.
pub fn to_openai(body: &Value, model: &str) -> Result<Value, ApiError> {
    to_openai_at(body, model, crate::clock::unix_now())
}

/// [`to_openai`] with the `created` timestamp given. `model` is used when the answer names none.
pub fn to_openai_at(body: &Value, model: &str, created: u64) -> Result<Value, ApiError> {
    completion(Answer::from_value(body), model, created)
}

/// An Anthropic answer as an OpenAI `chat.completion`.
fn completion(answer: Answer<'_>, model: &str, created: u64) -> Result<Value, ApiError> {
    let blocks = answer.content.ok_or_else(|| bad_answer("the message has no content"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in blocks {
        let is_format_tool = block.name.as_ref().and_then(Value::as_str) == Some(RESPONSE_FORMAT_TOOL);
        match block.kind.as_deref() {
            Some("text") => text.push_str(block.text.as_deref().unwrap_or_default()),
            Some("tool_use") if is_format_tool => {
                text.push_str(&block.input.unwrap_or_else(|| json!({})).to_string());
                json_answer = true;
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": block.id.unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.name.unwrap_or_default(),
                    "arguments": block.input.unwrap_or_else(|| json!({})).to_string(),
                }
            })),
            // thinking, redacted_thinking, server tool blocks: nothing OpenAI-shaped to say.
            _ => {}
        }
    }
    let stop_reason = answer.stop_reason.as_deref().unwrap_or("end_turn");
    let finish = match finish_reason(stop_reason) {
        "tool_calls" if tool_calls.is_empty() && json_answer => "stop",
        other => other,
    };
    let content = if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut message = json!({"role": "assistant", "content": content});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    message["refusal"] = Value::Null;
    let mut id = String::with_capacity(40);
    id.push_str("chatcmpl-");
    id.push_str(answer.id.as_deref().unwrap_or_default());
    let mut out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": answer.model.as_deref().unwrap_or(model),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
    });
    if let Some(usage) = &answer.usage {
        out["usage"] = Usage::default().update(usage).to_openai();
    }
    Ok(out)
}

/// Token counts as Anthropic reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    /// `None` when the upstream did not report it.
    pub cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Takes every count present in an Anthropic `usage` object (later reports are cumulative).
    pub fn update(mut self, usage: &Value) -> Usage {
        let get = |name: &str| usage.get(name).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output_tokens = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation_input_tokens = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read_input_tokens = Some(n);
        }
        self
    }

    /// OpenAI's `usage`: cache writes and reads count as prompt tokens, reads also as cached.
    pub fn to_openai(self) -> Value {
        let prompt = self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens.unwrap_or(0);
        let mut usage = json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output_tokens,
            "total_tokens": prompt + self.output_tokens,
        });
        if let Some(cached) = self.cache_read_input_tokens {
            usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
        }
        usage
    }
}

// ---------------------------------------------------------------------------------------------
// Stream: Messages SSE -> chat.completion.chunk

/// What a content block of the stream turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, with its index among the answer's tool calls.
    Tool(usize),
    /// The response_format tool: its input is the message content.
    Json,
    /// Thinking and other blocks OpenAI has no delta for.
    Skip,
}

/// Decodes an Anthropic Messages SSE stream into OpenAI chunks, one event at a time.
pub struct StreamDecoder {
    meta: StreamMeta,
    sse: sse::Decoder,
    started: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: usize,
    json_answer: bool,
    usage: Option<Usage>,
    usage_sent: bool,
}

impl StreamDecoder {
    pub fn new(meta: StreamMeta) -> StreamDecoder {
        StreamDecoder {
            meta,
            sse: sse::Decoder::new(),
            started: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            json_answer: false,
            usage: None,
            usage_sent: false,
        }
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": choices,
        })
    }

    /// A chunk with one delta; the first chunk of the stream also says the role.
    fn delta(&mut self, mut delta: Value, finish: Option<&str>) -> Value {
        if !self.started {
            self.started = true;
            let mut with_role = json!({"role": "assistant"});
            if let (Some(obj), Some(fields)) = (with_role.as_object_mut(), delta.as_object()) {
                obj.extend(fields.clone());
            }
            delta = with_role;
        }
        self.chunk(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]))
    }

    fn usage_chunk(&mut self) -> Option<Value> {
        if self.usage_sent {
            return None;
        }
        let usage = self.usage?;
        self.usage_sent = true;
        let mut chunk = self.chunk(json!([]));
        chunk["usage"] = usage.to_openai();
        Some(chunk)
    }

    fn event(&mut self, event: sse::Event, out: &mut Vec<Value>) -> Result<(), ApiError> {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| bad_answer(format!("a stream event is not JSON ({e}): {:.200}", event.data)))?;
        let kind = data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or_default();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                if let Some(usage) = data.pointer("/message/usage") {
                    self.usage = Some(self.usage.unwrap_or_default().update(usage));
                }
                if !self.started {
                    let chunk = self.delta(json!({"content": ""}), None);
                    out.push(chunk);
                }
            }
            "content_block_start" => {
                let block = data.get("content_block").cloned().unwrap_or_default();
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        self.blocks.insert(index, Block::Text);
                        if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            let chunk = self.delta(json!({"content": text}), None);
                            out.push(chunk);
                        }
                    }
                    Some("tool_use") if block.get("name").and_then(Value::as_str) == Some(RESPONSE_FORMAT_TOOL) => {
                        self.blocks.insert(index, Block::Json);
                        self.json_answer = true;
                    }
                    Some("tool_use") => {
                        let n = self.tool_calls;
                        self.tool_calls += 1;
                        self.blocks.insert(index, Block::Tool(n));
                        let call = json!({
                            "index": n,
                            "id": block.get("id").cloned().unwrap_or_default(),
                            "type": "function",
                            "function": {"name": block.get("name").cloned().unwrap_or_default(), "arguments": ""},
                        });
                        let chunk = self.delta(json!({"tool_calls": [call]}), None);
                        out.push(chunk);
                    }
                    _ => {
                        self.blocks.insert(index, Block::Skip);
                    }
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").cloned().unwrap_or_default();
                let block = self.blocks.get(&index).copied().unwrap_or(Block::Text);
                let piece = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => delta.get("text"),
                    Some("input_json_delta") => delta.get("partial_json"),
                    _ => None,
                };
                let Some(piece) = piece.and_then(Value::as_str).filter(|p| !p.is_empty()) else { return Ok(()) };
                let chunk = match block {
                    Block::Text | Block::Json => self.delta(json!({"content": piece}), None),
                    Block::Tool(n) => {
                        self.delta(json!({"tool_calls": [{"index": n, "function": {"arguments": piece}}]}), None)
                    }
                    Block::Skip => return Ok(()),
                };
                out.push(chunk);
            }
            "message_delta" => {
                if let Some(usage) = data.get("usage") {
                    self.usage = Some(self.usage.unwrap_or_default().update(usage));
                }
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    let finish = match finish_reason(reason) {
                        "tool_calls" if self.tool_calls == 0 && self.json_answer => "stop",
                        other => other,
                    };
                    let chunk = self.delta(json!({}), Some(finish));
                    out.push(chunk);
                }
            }
            "message_stop" => out.extend(self.usage_chunk()),
            "error" => {
                let kind = data.pointer("/error/type").and_then(Value::as_str).unwrap_or("api_error");
                let message = data.pointer("/error/message").and_then(Value::as_str).unwrap_or("stream error");
                let status = StatusCode::from_u16(error_status(kind)).unwrap_or(StatusCode::BAD_GATEWAY);
                return Err(ApiError::new(status, error_kind(status), format!("anthropic: {message}")).with_code(kind));
            }
            // ping, content_block_stop, and events added later.
            _ => {}
        }
        Ok(())
    }
}

impl ChunkDecoder for StreamDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        super::translate::typed_chunks(self.feed_values(bytes)?)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
        super::translate::typed_chunks(self.finish_values()?)
    }
}

impl StreamDecoder {
    fn feed_values(&mut self, bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for event in self.sse.feed(bytes) {
            self.event(event, &mut out)?;
        }
        Ok(out)
    }

    fn finish_values(&mut self) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        if let Some(event) = self.sse.finish() {
            self.event(event, &mut out)?;
        }
        out.extend(self.usage_chunk());
        Ok(out)
    }
}
