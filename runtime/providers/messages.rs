//! Anthropic's `/v1/messages` in front of every provider that is not Anthropic.
//!
//! The Messages request becomes an OpenAI chat request, runs through the deployment's chat
//! translation (`providers::chat::execute`), and the answer comes back as an Anthropic
//! `message`, or as the full Anthropic SSE sequence (message_start, content_block_start /
//! delta / stop, message_delta, message_stop), so the Anthropic SDK works against GPT,
//! Gemini or Bedrock deployments.

mod delta_frames;

use super::auth::Scrubber;
use super::chat::{execute, front_frames, usage_of, ChatOutput, FrontEvents, StreamEnds};
use super::translate::ChatProvider;
use super::ProviderCall;
use crate::api::anthropic::{
    Content, ContentBlock, ErrorDetail, Message, MessageDelta, MessageResponse, MessagesRequest, Source, StreamEvent,
    Tool, ToolChoice, Usage,
};
use crate::api::openai::{ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChatUsage, ChunkChoice, ToolCallDelta};
use crate::exchange::{ApiError, Outcome, Payload};
use crate::streaming::sse;
use axum::body::Bytes;
use axum::response::IntoResponse;
use ferrolite_codegen::str_map;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

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

/// A JSON object of these members, in this order.
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn string(text: &str) -> Value {
    Value::String(text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Request: Messages -> OpenAI chat

/// An Anthropic image source as an OpenAI `image_url` part.
fn image_part(source: &Source<'_>) -> Option<Value> {
    let url = match source.kind.as_ref() {
        "base64" => format!("data:{};base64,{}", source.media_type.as_deref()?, source.data.as_deref()?),
        "url" => source.url.as_deref()?.to_owned(),
        _ => return None,
    };
    Some(object([("type", string("image_url")), ("image_url", object([("url", Value::String(url))]))]))
}

/// A Messages API request as an OpenAI chat request.
pub fn to_chat_request(req: &MessagesRequest<'_>) -> ChatRequest {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(chat_message("system", Some(Value::String(system.text()))));
    }
    for turn in &req.messages {
        push_turn(turn, &mut messages);
    }
    ChatRequest {
        model: req.model.as_ref().to_owned(),
        messages,
        stream: req.stream,
        stream_options: None,
        n: None,
        extra: chat_params(req),
    }
}

fn chat_message(role: &str, content: Option<Value>) -> ChatMessage {
    ChatMessage { role: role.to_owned(), content, extra: Map::new() }
}

/// One turn as chat messages: its tool results first (they answer the previous assistant
/// turn), as `tool` messages, then the turn's own text, images and tool calls.
fn push_turn(turn: &Message<'_>, messages: &mut Vec<ChatMessage>) {
    let blocks = match &turn.content {
        Content::Text(text) => return messages.push(chat_message(&turn.role, Some(string(text)))),
        Content::Blocks(blocks) => blocks,
    };
    // The turn's text, joined, and its parts (text and images) for when it has images.
    let mut text = String::new();
    let mut parts: Vec<Value> = Vec::new();
    let mut images = false;
    let mut tool_calls: Vec<Value> = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text { text: piece, .. } => {
                text.push_str(piece);
                parts.push(object([("type", string("text")), ("text", string(piece))]));
            }
            ContentBlock::Image { source } => {
                let part = image_part(source);
                images |= part.is_some();
                parts.extend(part);
            }
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(object([
                ("id", string(id)),
                ("type", string("function")),
                ("function", object([("name", string(name)), ("arguments", Value::String(input.to_string()))])),
            ])),
            ContentBlock::ToolResult { tool_use_id, content } => {
                let mut message = chat_message("tool", Some(Value::String(content.text())));
                message.extra.insert("tool_call_id".into(), string(tool_use_id));
                messages.push(message);
            }
            _ => {} // documents, thinking and other blocks have no OpenAI form
        }
    }
    if turn.role == "assistant" {
        let mut message = chat_message("assistant", (!text.is_empty()).then_some(Value::String(text)));
        if !tool_calls.is_empty() {
            message.extra.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        messages.push(message);
    } else if !parts.is_empty() {
        let content = if images { Value::Array(parts) } else { Value::String(text) };
        messages.push(chat_message(&turn.role, Some(content)));
    }
}

/// The chat parameters of a Messages request, in the order OpenAI documents them.
fn chat_params(req: &MessagesRequest<'_>) -> Map<String, Value> {
    let mut chat = Map::new();
    chat.insert("max_tokens".into(), req.max_tokens.into());
    if let Some(temperature) = &req.temperature {
        chat.insert("temperature".into(), Value::Number(temperature.clone()));
    }
    if let Some(top_p) = &req.top_p {
        chat.insert("top_p".into(), Value::Number(top_p.clone()));
    }
    if let Some(stop) = req.stop_sequences.as_ref().filter(|s| !s.is_empty()) {
        chat.insert("stop".into(), stop.iter().map(|s| string(s)).collect());
    }
    if let Some(user) = req.metadata.as_ref().and_then(|m| m.user_id.as_deref()) {
        chat.insert("user".into(), string(user));
    }
    if let Some(tools) = &req.tools {
        chat.insert("tools".into(), tools.iter().map(chat_tool).collect());
    }
    if let Some(choice) = &req.tool_choice {
        chat.insert("tool_choice".into(), chat_tool_choice(choice));
        if choice.disable_parallel_tool_use == Some(true) {
            chat.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    // Thinking becomes the effort every chat translation maps to its provider's control.
    if let Some(thinking) = &req.thinking {
        chat.insert("reasoning_effort".into(), string(super::reasoning::effort_for(thinking)));
    }
    if let Some(schema) = output_schema(req) {
        let spec = object([("name", string("output")), ("schema", schema.clone()), ("strict", Value::Bool(true))]);
        chat.insert("response_format".into(), object([("type", string("json_schema")), ("json_schema", spec)]));
    }
    chat
}

/// The JSON schema a Messages request asks its answer to follow: `output_config.format`, or the
/// earlier beta's `output_format`, each `{"type": "json_schema", "schema": ...}`. It becomes chat's
/// `response_format`, which each provider's translation turns into its own JSON mode.
fn output_schema<'r>(req: &'r MessagesRequest<'_>) -> Option<&'r Value> {
    let format =
        req.output_config.as_ref().and_then(|c| c.extra.get("format")).or_else(|| req.extra.get("output_format"))?;
    (format.get("type").and_then(Value::as_str) == Some("json_schema")).then(|| format.get("schema")).flatten()
}

/// An Anthropic tool as an OpenAI function tool (a missing description is null).
fn chat_tool(tool: &Tool<'_>) -> Value {
    let description = tool.description.as_deref().map_or(Value::Null, string);
    let parameters = match &tool.input_schema {
        Some(schema) => schema.as_ref().clone(),
        None => object([("type", string("object"))]),
    };
    let function = object([("name", string(&tool.name)), ("description", description), ("parameters", parameters)]);
    object([("type", string("function")), ("function", function)])
}

fn chat_tool_choice(choice: &ToolChoice<'_>) -> Value {
    match choice.kind.as_ref() {
        "any" => string("required"),
        "none" => string("none"),
        "tool" => {
            let name = choice.name.as_deref().map_or(Value::Null, string);
            object([("type", string("function")), ("function", object([("name", name)]))])
        }
        _ => string("auto"),
    }
}

// ---------------------------------------------------------------------------------------------
// Answer: chat.completion -> message

/// An OpenAI `chat.completion` as an Anthropic `message`.
pub fn to_anthropic_message(chat: &ChatCompletion) -> MessageResponse<'_> {
    let choice = chat.choices.first();
    let message = choice.map(|c| &c.message);
    let mut content = Vec::new();
    if let Some(text) = message.and_then(|m| m.content.as_ref()).and_then(Option::as_deref).filter(|t| !t.is_empty()) {
        content.push(ContentBlock::text(text));
    }
    for call in message.and_then(|m| m.tool_calls.as_ref()).into_iter().flatten() {
        content.push(ContentBlock::ToolUse {
            id: Cow::Borrowed(&call.id),
            name: Cow::Borrowed(&call.function.name),
            // Arguments that are not JSON (a model's slip) become an empty input.
            input: serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| Value::Object(Map::new())),
        });
    }
    let finish = choice.and_then(|c| c.finish_reason.as_deref()).unwrap_or("stop");
    MessageResponse {
        id: Cow::Owned(message_id(&chat.id)),
        kind: Cow::Borrowed("message"),
        role: Cow::Borrowed("assistant"),
        model: Cow::Borrowed(&chat.model),
        content,
        stop_reason: Some(Cow::Borrowed(stop_reason(finish))),
        stop_sequence: None,
        usage: message_usage(chat.usage.as_ref()),
    }
}

/// OpenAI's usage in Anthropic's words: cached prompt tokens are cache reads.
fn message_usage(usage: Option<&ChatUsage>) -> Usage {
    let mut out = Usage::new(usage.map_or(0, |u| u.prompt_tokens), usage.map_or(0, |u| u.completion_tokens));
    out.cache_read_input_tokens = usage.and_then(|u| u.prompt_tokens_details.as_ref()).and_then(|d| d.cached_tokens);
    out
}

fn message_id(chat_id: &str) -> String {
    format!("msg_{}", chat_id.trim_start_matches("chatcmpl-"))
}

// ---------------------------------------------------------------------------------------------
// Stream: chat.completion.chunk -> Messages SSE

/// An event in Anthropic's SSE framing.
fn frame(event: &StreamEvent<'_>) -> Bytes {
    sse::named(event.name(), event)
}

/// What kind of content block is open in the Anthropic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool_use block for the OpenAI tool call of this index.
    Tool(u32),
}

/// OpenAI chunks in, Anthropic SSE events out, as each chunk arrives.
#[derive(Debug, Default)]
pub struct AnthropicEvents {
    model: String,
    started: bool,
    open: Option<(u64, Block)>,
    next_index: u64,
    stop_reason: Option<&'static str>,
    input_tokens: u64,
    output_tokens: u64,
}

impl AnthropicEvents {
    pub fn new(model: &str) -> AnthropicEvents {
        AnthropicEvents { model: model.to_owned(), ..AnthropicEvents::default() }
    }

    /// `message_start`, once, named after the first chunk (or after nothing, for a stream
    /// without chunks).
    fn start(&mut self, chat_id: &str, model: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = MessageResponse {
            id: Cow::Owned(message_id(chat_id)),
            kind: Cow::Borrowed("message"),
            role: Cow::Borrowed("assistant"),
            model: Cow::Borrowed(model.unwrap_or(&self.model)),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::new(0, 0),
        };
        out.push(frame(&StreamEvent::MessageStart { message }));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(frame(&StreamEvent::ContentBlockStop { index }));
        }
    }

    fn open(&mut self, block: Block, start: ContentBlock<'_>, out: &mut Vec<Bytes>) -> u64 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, block));
        out.push(frame(&StreamEvent::ContentBlockStart { index, content_block: start }));
        index
    }

    /// The events one OpenAI chunk makes.
    pub fn push(&mut self, chunk: &ChatChunk) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&chunk.id, Some(&chunk.model), &mut out);
        if let Some(choice) = chunk.choices.first() {
            self.choice(choice, &mut out);
        }
        // Usage comes on the usage-only chunk at the end, or (some upstreams) on the last chunks.
        if let Some(usage) = chunk.usage() {
            self.input_tokens = usage.prompt_tokens;
            self.output_tokens = usage.completion_tokens;
        }
        out
    }

    /// The events of a chunk's first choice: text, tool calls, and the finish reason kept.
    fn choice(&mut self, choice: &ChunkChoice, out: &mut Vec<Bytes>) {
        if let Some(text) = choice.delta.content.as_ref().and_then(Option::as_deref).filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((index, Block::Text)) => index,
                _ => self.open(Block::Text, ContentBlock::text(""), out),
            };
            out.push(delta_frames::text(index, text));
        }
        for call in choice.delta.tool_calls.iter().flatten() {
            self.tool_call(call, out);
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.stop_reason = Some(stop_reason(reason));
        }
    }

    /// A piece of a tool call: a call with an id (or of another index) opens a tool_use block.
    fn tool_call(&mut self, call: &ToolCallDelta, out: &mut Vec<Bytes>) {
        let index = match self.open {
            Some((index, Block::Tool(t))) if t == call.index && call.id.is_none() => index,
            _ => {
                let name = call.function.as_ref().and_then(|f| f.name.as_deref()).unwrap_or_default();
                let start = ContentBlock::ToolUse {
                    id: Cow::Borrowed(call.id.as_deref().unwrap_or_default()),
                    name: Cow::Borrowed(name),
                    input: Value::Object(Map::new()),
                };
                self.open(Block::Tool(call.index), start, out)
            }
        };
        if let Some(partial) = call.function.as_ref().and_then(|f| f.arguments.as_deref()).filter(|a| !a.is_empty()) {
            out.push(delta_frames::input_json(index, partial));
        }
    }

    /// The closing events: the open block's stop, message_delta with stop_reason and usage, message_stop.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start("", None, &mut out);
        self.close(&mut out);
        let delta = MessageDelta {
            stop_reason: Some(Cow::Borrowed(self.stop_reason.unwrap_or("end_turn"))),
            stop_sequence: None,
        };
        let usage = Usage::new(self.input_tokens, self.output_tokens);
        out.push(frame(&StreamEvent::MessageDelta { delta, usage }));
        out.push(frame(&StreamEvent::MessageStop));
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
    frame(&StreamEvent::Error { error: ErrorDetail { kind: Cow::Borrowed(kind), message: Cow::Borrowed(&e.message) } })
}

impl FrontEvents for AnthropicEvents {
    /// Nothing: `message_start` is named after the first chunk.
    fn start(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn chunk(&mut self, chunk: &ChatChunk) -> Vec<Bytes> {
        self.push(chunk)
    }

    fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![error_event(e)]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        AnthropicEvents::finish(self)
    }
}

/// `POST /v1/messages` for a deployment that is not Anthropic, through its chat translation.
pub async fn serve(call: ProviderCall<'_>, provider: &dyn ChatProvider) -> Result<Outcome, ApiError> {
    let Payload::Json(body) = &call.payload else { return Err(invalid("this route takes a JSON body")) };
    let req = MessagesRequest::deserialize(body.as_ref()).map_err(|e| invalid(format!("invalid request: {e}")))?;
    let chat = to_chat_request(&req);
    match execute(&call, provider, chat).await? {
        ChatOutput::Complete(chat) => {
            let usage = chat.usage.as_ref().map(usage_of);
            Ok(Outcome { response: axum::Json(to_anthropic_message(&chat)).into_response(), deployment: None, usage })
        }
        ChatOutput::Stream(chunks) => {
            let ends = StreamEnds { logs: call.logs.clone(), scrubber: Scrubber::of(call.deployment) };
            let frames = front_frames(chunks, AnthropicEvents::new(&call.deployment.upstream_model), ends);
            Ok(Outcome { response: sse::response(frames), deployment: None, usage: None })
        }
    }
}
