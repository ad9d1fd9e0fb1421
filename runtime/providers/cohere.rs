//! Cohere's v2 API behind OpenAI chat completions, embeddings and rerank: `/v2/chat` (its SSE
//! events turned into OpenAI chunks), `/v2/embed` and `/v2/rerank`, with a bearer key.
//!
//! What does not map one to one:
//! - `top_p` is `p`, `stop` is `stop_sequences`, `max_completion_tokens` is `max_tokens`;
//! - `tool_choice` `required` is `REQUIRED`, `none` is `NONE`; naming one function offers that
//!   function alone, `REQUIRED`;
//! - `response_format` is `{"type": "json_object"}`, with the json_schema's schema as
//!   `json_schema`;
//! - the answer's `tool_plan` (what the model says it will do with its tools) is not passed on;
//!   `thinking` content comes back as `reasoning_content`;
//! - embeddings need an `input_type`: the request's own, else `search_document` (litellm's);
//! - rerank documents are text in v2: an object gives its `text`, else the fields `rank_fields`
//!   names (all of them without it) as `name: value` lines; `return_documents` is answered
//!   here, from the request's documents.

use super::chat::{new_chat_id, usage_chunk};
use super::translate::{
    delta_choice, embedding_value, error_kind, error_message, wants_base64, ChatProvider, ChunkDecoder, StreamMeta,
    UpstreamRequest,
};
use crate::api::cohere::{
    self, AnswerContent, CalledFunction, ChatResponse, Content, ContentPart, EmbedRequest, EmbedResponse, ErrorBody,
    FunctionDeclaration, ImageUrl, Message, RerankQuery, RerankRequest, RerankResponse, ResponseFormat, StreamEvent,
    Tool, ToolCall, Usage,
};
use crate::api::openai::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChatUsage, Choice, Delta, EmbeddingRequest,
    FunctionCall, FunctionDelta, ThinkingBlock, ToolCall as OpenAiToolCall, ToolCallDelta,
};
use crate::exchange::{parse_json, ApiError};
use crate::providers::deployment::Deployment;
use crate::streaming::sse;
use axum::http::StatusCode;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Number, Value};
use std::borrow::Cow;

/// Where Cohere's API lives when a deployment sets no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.cohere.com";

/// Cohere's own chat parameters, passed on as the client wrote them.
pub const CHAT_PARAMS: &[&str] = &["k", "safety_mode", "documents", "citation_options", "strict_tools", "thinking"];

/// The `input_type` an embeddings request without one gets (what litellm sends).
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

str_map! {
    /// Cohere `finish_reason` -> OpenAI `finish_reason`.
    pub fn finish_reason -> &'static str {
        "COMPLETE" | "STOP_SEQUENCE" => "stop",
        "MAX_TOKENS" => "length",
        "TOOL_CALL" => "tool_calls",
        "ERROR_TOXIC" => "content_filter",
        _ => "stop",
    }
}

/// The Cohere provider.
pub struct Cohere;

/// The one instance `providers::chat` calls.
pub static PROVIDER: Cohere = Cohere;

fn bad(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

fn bad_gateway(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("bad_upstream_response")
}

fn param<'a>(p: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    p.get(name).filter(|v| !v.is_null())
}

fn number(p: &Map<String, Value>, name: &str) -> Result<Option<Number>, ApiError> {
    match param(p, name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.clone())),
        Some(_) => Err(bad(format!("{name} must be a number"), name)),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The `/v2/chat` body for an OpenAI chat request.
pub fn chat_body<'a>(
    req: &'a ChatRequest,
    d: &'a Deployment,
    stream: bool,
) -> Result<cohere::ChatRequest<'a>, ApiError> {
    let p = &req.extra;
    let messages = messages(&req.messages)?;
    let (tools, tool_choice) = tools_and_choice(p)?;
    let mut max_tokens = None;
    for name in ["max_completion_tokens", "max_tokens"] {
        if let Some(value) = param(p, name) {
            max_tokens = Some(
                value
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("{name} must be a positive integer"), name))?,
            );
            break;
        }
    }
    let stop_sequences = match param(p, "stop") {
        None => None,
        Some(Value::String(s)) => Some(vec![s.as_str()]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).collect())
        }
        Some(_) => return Err(bad("stop must be a string or a list of strings", "stop")),
    };
    let extra = CHAT_PARAMS.iter().filter_map(|name| param(p, name).map(|v| ((*name).to_owned(), v.clone()))).collect();
    Ok(cohere::ChatRequest {
        model: &d.upstream_model,
        messages,
        tools,
        tool_choice,
        response_format: response_format(p)?,
        max_tokens,
        stop_sequences,
        temperature: number(p, "temperature")?,
        p: number(p, "top_p")?,
        seed: number(p, "seed")?,
        frequency_penalty: number(p, "frequency_penalty")?,
        presence_penalty: number(p, "presence_penalty")?,
        stream,
        extra,
    })
}

fn messages(messages: &[ChatMessage]) -> Result<Vec<Message<'_>>, ApiError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let content = content(m.content.as_ref(), i)?;
        let message = match m.role.as_str() {
            "system" | "developer" => Message { role: "system", content, tool_calls: Vec::new(), tool_call_id: None },
            "user" => Message { role: "user", content, tool_calls: Vec::new(), tool_call_id: None },
            "assistant" => Message { role: "assistant", content, tool_calls: tool_calls(m, i)?, tool_call_id: None },
            "tool" => {
                let id = m.extra.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    bad("a tool message needs the tool_call_id it answers", format!("messages[{i}].tool_call_id"))
                })?;
                Message { role: "tool", content, tool_calls: Vec::new(), tool_call_id: Some(id) }
            }
            other => {
                return Err(bad(
                    format!("messages[{i}].role {other:?} is not supported by cohere; use system, developer, user, assistant or tool"),
                    format!("messages[{i}].role"),
                ))
            }
        };
        out.push(message);
    }
    Ok(out)
}

/// A message's content: text, or text and image parts; none when empty.
fn content(content: Option<&Value>, i: usize) -> Result<Option<Content<'_>>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(Content::Text(Cow::Borrowed(s)))),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let at = |field: &str| format!("messages[{i}].content[{j}]{field}");
                match part.get("type").and_then(Value::as_str).unwrap_or_default() {
                    kind @ ("text" | "refusal") => {
                        let text = part.get(kind).and_then(Value::as_str).unwrap_or_default();
                        if !text.is_empty() {
                            out.push(ContentPart::Text { text });
                        }
                    }
                    "image_url" => {
                        let image = part.get("image_url");
                        let url = image
                            .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                            .ok_or_else(|| bad("an image_url part needs image_url.url", at(".image_url")))?;
                        let detail = image.and_then(|u| u.get("detail")).and_then(Value::as_str);
                        out.push(ContentPart::ImageUrl { image_url: ImageUrl { url, detail } });
                    }
                    other => {
                        return Err(bad(
                            format!("content part type {other:?} is not supported by cohere; use text or image_url"),
                            at(".type"),
                        ))
                    }
                }
            }
            Ok((!out.is_empty()).then_some(Content::Parts(out)))
        }
        Some(_) => {
            Err(bad("content must be a string, a list of content parts, or null", format!("messages[{i}].content")))
        }
    }
}

fn tool_calls(m: &ChatMessage, i: usize) -> Result<Vec<ToolCall<'_>>, ApiError> {
    let Some(calls) = m.extra.get("tool_calls").filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let calls =
        calls.as_array().ok_or_else(|| bad("tool_calls must be a list", format!("messages[{i}].tool_calls")))?;
    let mut out = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].tool_calls[{j}].{field}");
        let id = call.get("id").and_then(Value::as_str).ok_or_else(|| bad("a tool call needs its id", at("id")))?;
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool call needs function.name", at("function.name")))?;
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        out.push(ToolCall { id, kind: "function", function: CalledFunction { name, arguments } });
    }
    Ok(out)
}

/// `tools` and Cohere's `tool_choice`: a named function is offered alone and required.
fn tools_and_choice(p: &Map<String, Value>) -> Result<(Option<Vec<Tool<'_>>>, Option<&'static str>), ApiError> {
    let mut only: Option<&str> = None;
    let choice = match param(p, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => None,
            "none" => Some("NONE"),
            "required" => Some("REQUIRED"),
            other => {
                return Err(bad(format!("tool_choice {other:?} is not one of auto, none, required"), "tool_choice"))
            }
        },
        Some(named) => {
            only = Some(named.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    "tool_choice must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\"}}",
                    "tool_choice",
                )
            })?);
            Some("REQUIRED")
        }
    };
    let Some(tools) = param(p, "tools") else { return Ok((None, choice)) };
    let tools = tools.as_array().ok_or_else(|| bad("tools must be a list", "tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad("cohere takes function tools only", format!("tools[{i}].type")));
        }
        let function = tool.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool needs function.name", format!("tools[{i}].function.name")))?;
        if only.is_some_and(|only| only != name) {
            continue;
        }
        out.push(Tool {
            kind: "function",
            function: FunctionDeclaration {
                name,
                description: function.and_then(|f| f.get("description")).and_then(Value::as_str),
                parameters: function.and_then(|f| f.get("parameters")).filter(|p| !p.is_null()),
            },
        });
    }
    if let (Some(name), true) = (only, out.is_empty()) {
        return Err(bad(format!("tool_choice names {name:?}, which is not among the tools"), "tool_choice"));
    }
    Ok(((!out.is_empty()).then_some(out), choice))
}

fn response_format(p: &Map<String, Value>) -> Result<Option<ResponseFormat<'_>>, ApiError> {
    let Some(format) = param(p, "response_format") else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat { kind: "json_object", json_schema: None })),
        Some("json_schema") => {
            Ok(Some(ResponseFormat { kind: "json_object", json_schema: format.pointer("/json_schema/schema") }))
        }
        _ => Err(bad("response_format.type must be text, json_object or json_schema", "response_format.type")),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

fn count(n: Option<f64>) -> u64 {
    n.filter(|n| n.is_finite() && *n >= 0.0).map_or(0, |n| n as u64)
}

/// The model's token counts (`tokens`), else what was billed.
fn openai_usage(usage: &Usage) -> ChatUsage {
    let units = usage.tokens.as_ref().or(usage.billed_units.as_ref());
    ChatUsage::new(count(units.and_then(|u| u.input_tokens)), count(units.and_then(|u| u.output_tokens)))
}

/// A whole `/v2/chat` answer as an OpenAI `chat.completion`.
pub fn to_openai(body: &[u8], model: &str, id: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    let answer: ChatResponse =
        parse_json(body).map_err(|e| bad_gateway(format!("cohere: the answer is not of the expected shape: {e}")))?;
    let message = answer.message.unwrap_or_default();
    let (mut text, mut thinking) = (String::new(), String::new());
    for item in message.content.iter().flatten() {
        match item.kind.as_str() {
            "thinking" => thinking.push_str(item.thinking.as_deref().unwrap_or_default()),
            _ => text.push_str(item.text.as_deref().unwrap_or_default()),
        }
    }
    let tool_calls: Vec<OpenAiToolCall> = message
        .tool_calls
        .iter()
        .flatten()
        .enumerate()
        .map(|(k, call)| {
            let function = call.function.clone().unwrap_or_default();
            OpenAiToolCall {
                id: call.id.clone().unwrap_or_else(|| format!("call_{k}")),
                kind: "function".into(),
                function: FunctionCall {
                    name: function.name.unwrap_or_default(),
                    arguments: function.arguments.unwrap_or_else(|| "{}".into()),
                },
            }
        })
        .collect();
    let finish = match answer.finish_reason.as_deref() {
        _ if !tool_calls.is_empty() => "tool_calls",
        Some(reason) => finish_reason(reason),
        None => "stop",
    };
    let content = if text.is_empty() && !tool_calls.is_empty() { None } else { Some(text) };
    let blocks = if thinking.is_empty() { Vec::new() } else { vec![ThinkingBlock::text(thinking.clone())] };
    Ok(ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion".into(),
        created,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage::new(content, (!tool_calls.is_empty()).then_some(tool_calls))
                .thinking(thinking, blocks),
            logprobs: Some(None),
            finish_reason: Some(finish.to_owned()),
            extra: Map::new(),
        }],
        system_fingerprint: Some(None),
        usage: answer.usage.as_ref().map(openai_usage),
        extra: Map::new(),
    })
}

/// `/v2/chat` SSE events -> OpenAI chunks, each event's as soon as it is complete.
pub struct StreamDecoder {
    meta: StreamMeta,
    sse: sse::Decoder,
    started: bool,
    finished: bool,
    /// Tool calls so far, for the OpenAI index of each.
    calls: u32,
}

impl StreamDecoder {
    pub fn new(meta: StreamMeta) -> StreamDecoder {
        StreamDecoder { meta, sse: sse::Decoder::new(), started: false, finished: false, calls: 0 }
    }

    /// A chunk of the one choice; the first carries the role.
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

    fn event(&mut self, data: &str) -> Result<Vec<ChatChunk>, ApiError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let event: StreamEvent = serde_json::from_str(data)
            .map_err(|e| bad_gateway(format!("cohere: a stream event is not of the expected shape: {e}")))?;
        let mut chunks = Vec::new();
        match event {
            StreamEvent::ContentDelta { delta } => {
                let AnswerContent { text, thinking, .. } =
                    delta.and_then(|d| d.message).and_then(|m| m.content).unwrap_or_default();
                if let Some(thinking) = thinking.filter(|t| !t.is_empty()) {
                    let delta = Delta {
                        reasoning_content: Some(thinking.clone()),
                        thinking_blocks: Some(vec![ThinkingBlock::text(thinking)]),
                        ..Delta::default()
                    };
                    chunks.push(self.delta(delta, None));
                }
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    chunks.push(self.delta(Delta { content: Some(Some(text)), ..Delta::default() }, None));
                }
            }
            StreamEvent::ToolCallStart { delta } => {
                let call = delta.and_then(|d| d.message).and_then(|m| m.tool_calls).unwrap_or_default();
                let function = call.function.unwrap_or_default();
                let index = self.calls;
                self.calls += 1;
                let piece = ToolCallDelta {
                    index,
                    id: Some(call.id.unwrap_or_else(|| format!("call_{index}"))),
                    kind: Some("function".into()),
                    function: Some(FunctionDelta {
                        name: function.name,
                        arguments: Some(function.arguments.unwrap_or_default()),
                    }),
                };
                chunks.push(self.delta(Delta { tool_calls: Some(vec![piece]), ..Delta::default() }, None));
            }
            StreamEvent::ToolCallDelta { delta } => {
                let arguments = delta
                    .and_then(|d| d.message)
                    .and_then(|m| m.tool_calls)
                    .and_then(|c| c.function)
                    .and_then(|f| f.arguments)
                    .filter(|a| !a.is_empty());
                if let (Some(arguments), Some(index)) = (arguments, self.calls.checked_sub(1)) {
                    let piece = ToolCallDelta {
                        index,
                        function: Some(FunctionDelta { name: None, arguments: Some(arguments) }),
                        ..ToolCallDelta::default()
                    };
                    chunks.push(self.delta(Delta { tool_calls: Some(vec![piece]), ..Delta::default() }, None));
                }
            }
            StreamEvent::MessageEnd { delta } => {
                let end = delta.unwrap_or_default();
                if let Some(error) = end.error.filter(|e| !e.is_empty()) {
                    return Err(ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("cohere: {error}")));
                }
                if !self.finished {
                    self.finished = true;
                    let finish = match end.finish_reason.as_deref() {
                        _ if self.calls > 0 => "tool_calls",
                        Some(reason) => finish_reason(reason),
                        None => "stop",
                    };
                    chunks.push(self.delta(Delta::default(), Some(finish)));
                    if let Some(usage) = end.usage.as_ref().map(openai_usage) {
                        chunks.push(usage_chunk(&self.meta, usage.prompt_tokens, usage.completion_tokens));
                    }
                }
            }
            StreamEvent::Other => {}
        }
        Ok(chunks)
    }
}

impl ChunkDecoder for StreamDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        let mut chunks = Vec::new();
        for event in self.sse.feed(bytes) {
            chunks.extend(self.event(&event.data)?);
        }
        Ok(chunks)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
        let mut chunks = Vec::new();
        if let Some(event) = self.sse.finish() {
            // A malformed trailing fragment is dropped: the end of a body never fails.
            chunks.extend(self.event(&event.data).unwrap_or_default());
        }
        if self.started && !self.finished {
            self.finished = true;
            let finish = if self.calls > 0 { "tool_calls" } else { "stop" };
            chunks.push(self.delta(Delta::default(), Some(finish)));
        }
        Ok(chunks)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Cohere's `{"message"}` body as an OpenAI-style error with the upstream's status.
pub fn upstream_error(status: StatusCode, body: &[u8]) -> ApiError {
    let message = parse_json::<ErrorBody>(body).ok().and_then(|e| e.message).unwrap_or_else(|| error_message(body));
    let message = if message.is_empty() { format!("upstream answered {status}") } else { message };
    ApiError::new(status, error_kind(status), format!("cohere: {message}"))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

fn json_body<T: serde::de::DeserializeOwned>(call: &super::ProviderCall<'_>) -> Result<T, ApiError> {
    super::chat::parse_json(&call.payload)
}

/// `POST /v1/embeddings` on a Cohere deployment: `/v2/embed`, answered as OpenAI's list.
pub async fn serve_embedding(call: super::ProviderCall<'_>) -> Result<crate::exchange::Outcome, ApiError> {
    let req: EmbeddingRequest = json_body(&call)?;
    let d = call.deployment;
    super::chat::one_shot(
        &call,
        |url| embedding_request(&req, d, url),
        |body| embedding_response(body, &req, d),
        upstream_error,
    )
    .await
}

/// `POST {api_base}/v2/embed` for an OpenAI embeddings request (float vectors asked for; base64
/// is made here).
pub fn embedding_request(req: &EmbeddingRequest, d: &Deployment, url: String) -> Result<UpstreamRequest, ApiError> {
    wants_base64(req)?;
    let texts = req.inputs();
    if texts.is_empty() {
        return Err(bad("input must not be empty", "input"));
    }
    let input_type = match req.extra.get("input_type") {
        None | Some(Value::Null) => Cow::Borrowed(DEFAULT_INPUT_TYPE),
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(_) => return Err(bad("input_type must be a string", "input_type")),
    };
    let truncate = req.extra.get("truncate").and_then(Value::as_str);
    let body = EmbedRequest {
        model: &d.upstream_model,
        texts,
        input_type,
        embedding_types: ["float"],
        output_dimension: req.dimensions,
        truncate,
    };
    Ok(UpstreamRequest::post_json(url, &body))
}

/// A `/v2/embed` answer as an OpenAI embeddings `list`, its usage the billed input tokens.
pub fn embedding_response(body: &[u8], req: &EmbeddingRequest, d: &Deployment) -> Result<Value, ApiError> {
    let base64 = wants_base64(req)?;
    let answer: EmbedResponse = parse_json(body)
        .map_err(|e| bad_gateway(format!("cohere: the embeddings answer is not of the expected shape: {e}")))?;
    let vectors =
        answer.embeddings.float.ok_or_else(|| bad_gateway("cohere: the embeddings answer has no float embeddings"))?;
    let inputs = req.inputs();
    if vectors.len() != inputs.len() {
        return Err(bad_gateway(format!("cohere: {} embeddings came back for {} inputs", vectors.len(), inputs.len())));
    }
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, values)| json!({"object": "embedding", "index": i, "embedding": embedding_value(values, base64)}))
        .collect();
    let billed = answer.meta.and_then(|m| m.billed_units).and_then(|u| u.input_tokens);
    let tokens = billed.map_or_else(|| inputs.iter().map(|t| crate::tokenizer::count(t)).sum(), |n| count(Some(n)));
    Ok(json!({
        "object": "list",
        "data": data,
        "model": d.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

// ---------------------------------------------------------------------------------------------
// Rerank

/// `/v1/rerank` and `/v2/rerank` on a Cohere deployment: `/v2/rerank`.
pub async fn serve_rerank(call: super::ProviderCall<'_>) -> Result<crate::exchange::Outcome, ApiError> {
    let query: RerankQuery = json_body(&call)?;
    let d = call.deployment;
    super::chat::one_shot(
        &call,
        |url| rerank_request(&query, d, url),
        |body| rerank_response(body, &query),
        upstream_error,
    )
    .await
}

/// A rerank document as the text Cohere v2 ranks.
fn document_text<'a>(document: &'a Value, rank_fields: Option<&[String]>, i: usize) -> Result<Cow<'a, str>, ApiError> {
    match document {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Object(fields) => {
            if let (None, Some(Value::String(text))) = (rank_fields, fields.get("text")) {
                return Ok(Cow::Borrowed(text));
            }
            let lines: Vec<String> = fields
                .iter()
                .filter(|(name, _)| rank_fields.is_none_or(|keep| keep.iter().any(|k| k == *name)))
                .map(|(name, value)| match value {
                    Value::String(s) => format!("{name}: {s}"),
                    other => format!("{name}: {other}"),
                })
                .collect();
            Ok(Cow::Owned(lines.join("\n")))
        }
        _ => Err(bad("a document must be a string or an object", format!("documents[{i}]"))),
    }
}

/// The `/v2/rerank` body for a rerank request.
pub fn rerank_request(query: &RerankQuery, d: &Deployment, url: String) -> Result<UpstreamRequest, ApiError> {
    let documents = query
        .documents
        .iter()
        .enumerate()
        .map(|(i, doc)| document_text(doc, query.rank_fields.as_deref(), i))
        .collect::<Result<Vec<_>, _>>()?;
    let body = RerankRequest {
        model: &d.upstream_model,
        query: &query.query,
        documents,
        top_n: query.top_n,
        max_tokens_per_doc: query.max_tokens_per_doc,
    };
    Ok(UpstreamRequest::post_json(url, &body))
}

/// A `/v2/rerank` answer, with each result's document when the request asked for them.
pub fn rerank_response(body: &[u8], query: &RerankQuery) -> Result<Value, ApiError> {
    let answer: RerankResponse = parse_json(body)
        .map_err(|e| bad_gateway(format!("cohere: the rerank answer is not of the expected shape: {e}")))?;
    let mut results = Vec::with_capacity(answer.results.len());
    for r in &answer.results {
        let mut result = json!({"index": r.index, "relevance_score": r.relevance_score});
        if query.return_documents == Some(true) {
            let document = query
                .documents
                .get(r.index)
                .ok_or_else(|| bad_gateway(format!("cohere: rerank result index {} is out of range", r.index)))?;
            result["document"] = match document {
                Value::String(text) => json!({"text": text}),
                other => other.clone(),
            };
        }
        results.push(result);
    }
    let mut out = json!({"results": results});
    if let Some(id) = answer.id {
        out["id"] = json!(id);
    }
    if let Some(meta) = answer.meta {
        out["meta"] = meta;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The provider

impl ChatProvider for Cohere {
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
