//! Ollama's native API behind OpenAI chat completions and embeddings: `ollama_chat/` models
//! through `/api/chat` (messages, images, tools), `ollama/` models through `/api/generate` (one
//! prompt, as litellm's `ollama/` does), embeddings through `/api/embed`. Answers come back as
//! OpenAI's; streams, which Ollama sends as newline-delimited JSON, as `chat.completion.chunk`s,
//! with `prompt_eval_count` / `eval_count` as the usage.
//!
//! What does not map one to one:
//! - sampling parameters go into `options` (`max_tokens` is `num_predict`), beside Ollama's own
//!   options (`num_ctx`, `top_k`, `repeat_penalty`, ...) from `litellm_params` or the request;
//! - `response_format` is `format`: `"json"`, or the json_schema's schema;
//! - tool calls carry their arguments as an object and no id: ids are made up here, and a
//!   `tool` message names its function (`tool_name`) from the call it answers;
//! - images must be base64 data URLs (Ollama does not fetch URLs, and neither does ferrolite);
//! - `/api/generate` takes a prompt, not a conversation: system messages become `system`, a
//!   lone user message the prompt, and longer conversations a transcript (`### User:` ...).

use super::chat::{new_chat_id, usage_chunk};
use super::reasoning::{self, Ask, Effort};
use super::translate::{
    delta_choice, embedding_value, error_kind, error_message, wants_base64, ChatProvider, ChunkDecoder, StreamMeta,
    UpstreamRequest,
};
use crate::api::ollama::{
    self, Answer, CalledFunction, EmbedRequest, EmbedResponse, ErrorBody, FunctionDeclaration, GenerateRequest,
    Message, Tool, ToolCall,
};
use crate::api::openai::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChatUsage, Choice, Delta, EmbeddingRequest,
    FunctionCall, FunctionDelta, ThinkingBlock, ToolCall as OpenAiToolCall, ToolCallDelta,
};
use crate::exchange::{parse_json, ApiError};
use crate::providers::deployment::Deployment;
use crate::streaming::ndjson;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// Where Ollama listens when a deployment sets no `api_base`.
pub const DEFAULT_API_BASE: &str = "http://localhost:11434";

/// Ollama's own `options`, taken from `litellm_params` and from the request as written.
pub const OPTIONS: &[&str] = &[
    "num_ctx",
    "num_keep",
    "num_batch",
    "num_gpu",
    "num_thread",
    "top_k",
    "min_p",
    "typical_p",
    "repeat_last_n",
    "repeat_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "num_predict",
];

/// OpenAI sampling parameters and the `options` member each becomes.
const SAMPLING: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("frequency_penalty", "frequency_penalty"),
    ("presence_penalty", "presence_penalty"),
];

/// `ollama_chat/` models: `/api/chat`.
pub struct OllamaChat;
/// `ollama/` models: `/api/generate`.
pub struct OllamaGenerate;

pub static CHAT: OllamaChat = OllamaChat;
pub static GENERATE: OllamaGenerate = OllamaGenerate;

fn bad(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

fn bad_gateway(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("bad_upstream_response")
}

fn param<'a>(req: &'a ChatRequest, name: &str) -> Option<&'a Value> {
    req.extra.get(name).filter(|v| !v.is_null())
}

// ---------------------------------------------------------------------------------------------
// Requests

/// What both endpoints take besides the conversation.
struct Common {
    format: Option<Value>,
    options: Map<String, Value>,
    keep_alive: Option<Value>,
    think: Option<bool>,
}

fn common(req: &ChatRequest, d: &Deployment) -> Result<Common, ApiError> {
    Ok(Common {
        format: format(req)?,
        options: options(&req.extra, d)?,
        keep_alive: param(req, "keep_alive").or_else(|| d.params.extra.get("keep_alive")).cloned(),
        think: think(req)?,
    })
}

/// `options`: Ollama's own from the deployment, then from the request, then OpenAI's sampling
/// parameters under Ollama's names.
fn options(p: &Map<String, Value>, d: &Deployment) -> Result<Map<String, Value>, ApiError> {
    let mut options = Map::new();
    for source in [&d.params.extra, p] {
        for name in OPTIONS {
            if let Some(value) = source.get(*name).filter(|v| !v.is_null()) {
                options.insert((*name).to_owned(), value.clone());
            }
        }
    }
    for name in ["max_completion_tokens", "max_tokens"] {
        if let Some(value) = p.get(name).filter(|v| !v.is_null()) {
            let n = value
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("{name} must be a positive integer"), name))?;
            options.insert("num_predict".into(), json!(n));
            break;
        }
    }
    for (openai, theirs) in SAMPLING {
        if let Some(value) = p.get(*openai).filter(|v| !v.is_null()) {
            if !value.is_number() {
                return Err(bad(format!("{openai} must be a number"), *openai));
            }
            options.insert((*theirs).to_owned(), value.clone());
        }
    }
    match p.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            options.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            options.insert("stop".into(), Value::Array(items.clone()));
        }
        Some(_) => return Err(bad("stop must be a string or a list of strings", "stop")),
    }
    Ok(options)
}

/// `response_format` as Ollama's `format`.
fn format(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let Some(format) = param(req, "response_format") else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!("json"))),
        Some("json_schema") => {
            let schema = format.pointer("/json_schema/schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            Ok(Some(schema))
        }
        _ => Err(bad("response_format.type must be text, json_object or json_schema", "response_format.type")),
    }
}

/// `reasoning_effort` (or litellm's `thinking`) as Ollama's `think` switch.
fn think(req: &ChatRequest) -> Result<Option<bool>, ApiError> {
    Ok(reasoning::ask(&req.extra)?.map(|ask| match ask {
        Ask::Effort(effort) => effort != Effort::None,
        Ask::Thinking(thinking) => thinking.is_on(),
    }))
}

/// A message's text and its images (base64, from data URLs).
fn text_and_images(content: Option<&Value>, i: usize) -> Result<(Cow<'_, str>, Vec<&str>), ApiError> {
    match content {
        None | Some(Value::Null) => Ok((Cow::Borrowed(""), Vec::new())),
        Some(Value::String(s)) => Ok((Cow::Borrowed(s), Vec::new())),
        Some(Value::Array(parts)) => {
            let (mut text, mut images) = (String::new(), Vec::new());
            for (j, part) in parts.iter().enumerate() {
                let at = |field: &str| format!("messages[{i}].content[{j}]{field}");
                match part.get("type").and_then(Value::as_str).unwrap_or_default() {
                    kind @ ("text" | "refusal") => {
                        text.push_str(part.get(kind).and_then(Value::as_str).unwrap_or_default())
                    }
                    "image_url" => {
                        let image = part.get("image_url");
                        let url = image
                            .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                            .ok_or_else(|| bad("an image_url part needs image_url.url", at(".image_url")))?;
                        images.push(base64_of(url).ok_or_else(|| {
                            bad("ollama takes images as base64 data URLs (data:MIME;base64,DATA)", at(".image_url.url"))
                        })?);
                    }
                    other => {
                        return Err(bad(
                            format!("content part type {other:?} is not supported by ollama; use text or image_url"),
                            at(".type"),
                        ))
                    }
                }
            }
            Ok((Cow::Owned(text), images))
        }
        Some(_) => {
            Err(bad("content must be a string, a list of content parts, or null", format!("messages[{i}].content")))
        }
    }
}

/// The base64 data of a `data:MIME;base64,DATA` URL.
fn base64_of(url: &str) -> Option<&str> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    meta.ends_with(";base64").then_some(data)
}

/// The `/api/chat` body for an OpenAI chat request.
pub fn chat_body<'a>(
    req: &'a ChatRequest,
    d: &'a Deployment,
    stream: bool,
) -> Result<ollama::ChatRequest<'a>, ApiError> {
    let messages = messages(&req.messages)?;
    let tools = tools(req)?;
    let Common { format, options, keep_alive, think } = common(req, d)?;
    Ok(ollama::ChatRequest { model: &d.upstream_model, messages, tools, format, options, stream, keep_alive, think })
}

fn messages(messages: &[ChatMessage]) -> Result<Vec<Message<'_>>, ApiError> {
    // tool_call_id -> function name, from the assistant turns so far.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let (content, images) = text_and_images(m.content.as_ref(), i)?;
        let mut message = Message { role: "user", content, images, tool_calls: Vec::new(), tool_name: None };
        match m.role.as_str() {
            "system" | "developer" => message.role = "system",
            "user" => {}
            "assistant" => {
                message.role = "assistant";
                message.tool_calls = assistant_calls(m, i, &mut call_names)?;
            }
            "tool" => {
                message.role = "tool";
                message.tool_name = m
                    .extra
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .and_then(|id| call_names.get(id).copied())
                    .or_else(|| m.extra.get("name").and_then(Value::as_str));
            }
            "function" => {
                message.role = "tool";
                message.tool_name = m.extra.get("name").and_then(Value::as_str);
            }
            other => {
                return Err(bad(
                    format!("messages[{i}].role {other:?} is not supported by ollama; use system, developer, user, assistant or tool"),
                    format!("messages[{i}].role"),
                ))
            }
        }
        out.push(message);
    }
    Ok(out)
}

/// An assistant turn's tool calls, their JSON-text arguments as the objects Ollama wants.
fn assistant_calls<'a>(
    m: &'a ChatMessage,
    i: usize,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Vec<ToolCall<'a>>, ApiError> {
    let Some(calls) = m.extra.get("tool_calls").filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let calls =
        calls.as_array().ok_or_else(|| bad("tool_calls must be a list", format!("messages[{i}].tool_calls")))?;
    let mut out = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].tool_calls[{j}].function.{field}");
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool call needs function.name", at("name")))?;
        let text = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
        let arguments = if text.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(text).map_err(|e| bad(format!("arguments are not JSON: {e}"), at("arguments")))?
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            call_names.insert(id, name);
        }
        out.push(ToolCall { function: CalledFunction { name, arguments } });
    }
    Ok(out)
}

/// `tools`, as far as `tool_choice` lets them be offered: Ollama lets the model choose, so
/// `none` offers none, and a forced call cannot be asked for.
fn tools(req: &ChatRequest) -> Result<Option<Vec<Tool<'_>>>, ApiError> {
    match param(req, "tool_choice") {
        None => {}
        Some(Value::String(choice)) if choice == "auto" => {}
        Some(Value::String(choice)) if choice == "none" => return Ok(None),
        Some(_) => return Err(bad("ollama cannot force a tool call: use tool_choice auto or none", "tool_choice")),
    }
    let Some(tools) = param(req, "tools") else { return Ok(None) };
    let tools = tools.as_array().ok_or_else(|| bad("tools must be a list", "tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad("ollama takes function tools only", format!("tools[{i}].type")));
        }
        let function = tool.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool needs function.name", format!("tools[{i}].function.name")))?;
        out.push(Tool {
            kind: "function",
            function: FunctionDeclaration {
                name,
                description: function.and_then(|f| f.get("description")).and_then(Value::as_str),
                parameters: function.and_then(|f| f.get("parameters")).filter(|p| !p.is_null()),
            },
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The `/api/generate` body for an OpenAI chat request: its conversation as one prompt.
pub fn generate_body<'a>(
    req: &'a ChatRequest,
    d: &'a Deployment,
    stream: bool,
) -> Result<GenerateRequest<'a>, ApiError> {
    let mut system: Vec<Cow<'_, str>> = Vec::new();
    let mut turns: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let mut images = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (text, mut found) = text_and_images(m.content.as_ref(), i)?;
        images.append(&mut found);
        let label = match m.role.as_str() {
            "system" | "developer" => {
                system.push(text);
                continue;
            }
            "user" => "User",
            "assistant" => "Assistant",
            "tool" | "function" => "Tool",
            other => {
                return Err(bad(
                    format!("messages[{i}].role {other:?} is not supported by ollama; use system, developer, user, assistant or tool"),
                    format!("messages[{i}].role"),
                ))
            }
        };
        turns.push((label, text));
    }
    let prompt = match turns.as_slice() {
        [] => return Err(bad("ollama needs at least one user message", "messages")),
        [("User", text)] => text.to_string(),
        _ => {
            let mut prompt: Vec<String> = turns.iter().map(|(label, text)| format!("### {label}:\n{text}")).collect();
            if turns.last().is_some_and(|(label, _)| *label != "Assistant") {
                prompt.push("### Assistant:\n".to_owned());
            }
            prompt.join("\n\n")
        }
    };
    let Common { format, options, keep_alive, think } = common(req, d)?;
    Ok(GenerateRequest {
        model: &d.upstream_model,
        prompt,
        system: (!system.is_empty()).then(|| system.join("\n")),
        images,
        format,
        options,
        stream,
        keep_alive,
        think,
    })
}

// ---------------------------------------------------------------------------------------------
// Answers

fn read_answer(body: &[u8]) -> Result<Answer, ApiError> {
    parse_json(body).map_err(|e| bad_gateway(format!("ollama: the answer is not of the expected shape: {e}")))
}

/// OpenAI's `finish_reason` for Ollama's `done_reason`.
fn finish_reason(done_reason: Option<&str>, has_calls: bool) -> &'static str {
    match done_reason {
        _ if has_calls => "tool_calls",
        Some("length") => "length",
        _ => "stop",
    }
}

/// The id of the `k`th tool call of an answer (Ollama gives calls none).
fn tool_call_id(id: &str, k: usize) -> String {
    format!("call_{}_{k}", id.strip_prefix("chatcmpl-").unwrap_or(id))
}

fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

fn usage(answer: &Answer) -> ChatUsage {
    ChatUsage::new(answer.prompt_eval_count.unwrap_or(0), answer.eval_count.unwrap_or(0))
}

/// A whole `/api/chat` or `/api/generate` answer as an OpenAI `chat.completion`.
pub fn to_openai(body: &[u8], model: &str, id: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    let answer = read_answer(body)?;
    if let Some(error) = &answer.error {
        return Err(bad_gateway(format!("ollama: {error}")));
    }
    let (text, thinking, calls) = match &answer.message {
        Some(m) => (m.content.clone(), m.thinking.clone(), m.tool_calls.clone().unwrap_or_default()),
        None => (answer.response.clone().unwrap_or_default(), answer.thinking.clone(), Vec::new()),
    };
    let tool_calls: Vec<OpenAiToolCall> = calls
        .iter()
        .enumerate()
        .map(|(k, call)| OpenAiToolCall {
            id: tool_call_id(id, k),
            kind: "function".into(),
            function: FunctionCall {
                name: call.function.name.clone(),
                arguments: arguments_text(&call.function.arguments),
            },
        })
        .collect();
    let finish = finish_reason(answer.done_reason.as_deref(), !tool_calls.is_empty());
    let content = if text.is_empty() && !tool_calls.is_empty() { None } else { Some(text) };
    let thinking = thinking.filter(|t| !t.is_empty()).unwrap_or_default();
    let blocks = if thinking.is_empty() { Vec::new() } else { vec![ThinkingBlock::text(thinking.clone())] };
    let message =
        AssistantMessage::new(content, (!tool_calls.is_empty()).then_some(tool_calls)).thinking(thinking, blocks);
    Ok(ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion".into(),
        created,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message,
            logprobs: Some(None),
            finish_reason: Some(finish.to_owned()),
            extra: Map::new(),
        }],
        system_fingerprint: Some(None),
        usage: Some(usage(&answer)),
        extra: Map::new(),
    })
}

/// Ollama's NDJSON stream (of either endpoint) -> OpenAI chunks, each line's as it completes.
pub struct StreamDecoder {
    meta: StreamMeta,
    lines: ndjson::Decoder,
    started: bool,
    calls: usize,
    finished: bool,
}

impl StreamDecoder {
    pub fn new(meta: StreamMeta) -> StreamDecoder {
        StreamDecoder { meta, lines: ndjson::Decoder::new(), started: false, calls: 0, finished: false }
    }

    /// A chunk of the one choice; the first carries the role (and an empty or, before tool
    /// calls, null content).
    fn delta(&mut self, mut delta: Delta, finish: Option<&str>) -> ChatChunk {
        if !self.started {
            self.started = true;
            delta.role = Some("assistant".into());
            if delta.content.is_none() {
                delta.content = Some(if delta.tool_calls.is_some() { None } else { Some(String::new()) });
            }
        }
        self.meta.chunk(vec![delta_choice(0, delta, finish)], true)
    }

    fn line(&mut self, line: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        let answer: Answer = parse_json(line)
            .map_err(|e| bad_gateway(format!("ollama: a stream line is not of the expected shape: {e}")))?;
        if let Some(error) = &answer.error {
            return Err(ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("ollama: {error}")));
        }
        let mut chunks = Vec::new();
        let (text, thinking, calls) = match answer.message.as_ref() {
            Some(m) => (m.content.as_str(), m.thinking.as_deref(), m.tool_calls.as_deref().unwrap_or_default()),
            None => (answer.response.as_deref().unwrap_or_default(), answer.thinking.as_deref(), &[][..]),
        };
        if let Some(thinking) = thinking.filter(|t| !t.is_empty()) {
            let delta = Delta {
                reasoning_content: Some(thinking.to_owned()),
                thinking_blocks: Some(vec![ThinkingBlock::text(thinking)]),
                ..Delta::default()
            };
            chunks.push(self.delta(delta, None));
        }
        if !text.is_empty() {
            chunks.push(self.delta(Delta { content: Some(Some(text.to_owned())), ..Delta::default() }, None));
        }
        for call in calls {
            let k = self.calls;
            self.calls += 1;
            let call = ToolCallDelta {
                index: u32::try_from(k).unwrap_or(u32::MAX),
                id: Some(tool_call_id(&self.meta.id, k)),
                kind: Some("function".into()),
                function: Some(FunctionDelta {
                    name: Some(call.function.name.clone()),
                    arguments: Some(arguments_text(&call.function.arguments)),
                }),
            };
            chunks.push(self.delta(Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None));
        }
        if answer.done && !self.finished {
            self.finished = true;
            let finish = finish_reason(answer.done_reason.as_deref(), self.calls > 0);
            chunks.push(self.delta(Delta::default(), Some(finish)));
            let usage = usage(&answer);
            chunks.push(usage_chunk(&self.meta, usage.prompt_tokens, usage.completion_tokens));
        }
        Ok(chunks)
    }
}

impl ChunkDecoder for StreamDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        let lines = self.lines.feed(bytes).map_err(|e| bad_gateway(format!("ollama: {e}")))?;
        let mut chunks = Vec::new();
        for line in lines {
            chunks.extend(self.line(&line)?);
        }
        Ok(chunks)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
        let mut chunks = Vec::new();
        if let Some(line) = self.lines.finish() {
            // A malformed trailing fragment is dropped: the end of a body never fails.
            chunks.extend(self.line(&line).unwrap_or_default());
        }
        if self.started && !self.finished {
            self.finished = true;
            let finish = finish_reason(None, self.calls > 0);
            chunks.push(self.delta(Delta::default(), Some(finish)));
        }
        Ok(chunks)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Ollama's `{"error": "..."}` as an OpenAI-style error with the upstream's status.
pub fn upstream_error(status: StatusCode, body: &[u8]) -> ApiError {
    let message = match parse_json::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => error_message(body),
    };
    let message = if message.is_empty() { format!("upstream answered {status}") } else { message };
    ApiError::new(status, error_kind(status), format!("ollama: {message}"))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// `POST /v1/embeddings` on an Ollama deployment: `/api/embed`, answered as OpenAI's list.
pub async fn serve_embedding(call: super::ProviderCall<'_>) -> Result<crate::exchange::Outcome, ApiError> {
    let req: EmbeddingRequest = super::chat::parse_json(&call.payload)?;
    let d = call.deployment;
    super::chat::one_shot(
        &call,
        |url| embedding_request(&req, d, url),
        |body| embedding_response(body, &req, d),
        upstream_error,
    )
    .await
}

/// `POST {api_base}/api/embed` for an OpenAI embeddings request.
pub fn embedding_request(req: &EmbeddingRequest, d: &Deployment, url: String) -> Result<UpstreamRequest, ApiError> {
    wants_base64(req)?;
    let input = req.inputs();
    if input.is_empty() {
        return Err(bad("input must not be empty", "input"));
    }
    let body = EmbedRequest {
        model: &d.upstream_model,
        input,
        dimensions: req.dimensions,
        truncate: req.extra.get("truncate").and_then(Value::as_bool),
        options: options(&Map::new(), d)?,
        keep_alive: d.params.extra.get("keep_alive").cloned(),
    };
    Ok(UpstreamRequest::post_json(url, &body))
}

/// An `/api/embed` answer as an OpenAI embeddings `list`, its usage Ollama's `prompt_eval_count`.
pub fn embedding_response(body: &[u8], req: &EmbeddingRequest, d: &Deployment) -> Result<Value, ApiError> {
    let base64 = wants_base64(req)?;
    let answer: EmbedResponse = parse_json(body)
        .map_err(|e| bad_gateway(format!("ollama: the embeddings answer is not of the expected shape: {e}")))?;
    let inputs = req.inputs();
    if answer.embeddings.len() != inputs.len() {
        return Err(bad_gateway(format!(
            "ollama: {} embeddings came back for {} inputs",
            answer.embeddings.len(),
            inputs.len()
        )));
    }
    let data: Vec<Value> = answer
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, values)| json!({"object": "embedding", "index": i, "embedding": embedding_value(values, base64)}))
        .collect();
    let tokens = answer.prompt_eval_count.unwrap_or_else(|| inputs.iter().map(|t| crate::tokenizer::count(t)).sum());
    Ok(json!({
        "object": "list",
        "data": data,
        "model": d.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

// ---------------------------------------------------------------------------------------------
// The providers

impl ChatProvider for OllamaChat {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest::post_json(url, &chat_body(req, d, stream)?))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        to_openai(body, &d.upstream_model, &new_chat_id(), crate::clock::unix_now())
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(StreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        upstream_error(status, body)
    }
}

impl ChatProvider for OllamaGenerate {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest::post_json(url, &generate_body(req, d, stream)?))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        to_openai(body, &d.upstream_model, &new_chat_id(), crate::clock::unix_now())
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(StreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        upstream_error(status, body)
    }
}
