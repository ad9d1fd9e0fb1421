//! AWS Bedrock's Converse API: OpenAI chat requests become `Converse` / `ConverseStream` bodies
//! (the types of `api::bedrock`), signed with SigV4; answers (JSON, or binary
//! `application/vnd.amazon.eventstream` frames) come back as OpenAI `chat.completion` objects and
//! chunks.
//!
//! Claude models think as on Anthropic's API (`providers::reasoning`): `reasoning_effort` (or
//! litellm's `thinking`) goes in `additionalModelRequestFields.thinking`, with Claude's limits
//! applied to `inferenceConfig` and the tool choice; reasoning comes back as
//! `reasoning_content` and `thinking_blocks` (signed `reasoningText`, or `redactedContent`),
//! which an assistant turn hands back as `reasoningContent` blocks before its text and calls.
//!
//! Everything here is a pure function of its inputs (clock and ids passed in) so the snapshot
//! tests in `tests/it/translate_bedrock.rs` pin each translation; [`Bedrock`] wires them to the
//! [`ChatProvider`] contract that `providers::chat` runs.

use crate::api::anthropic::OutputConfig;
use crate::api::bedrock::{
    AdditionalModelRequestFields, AnyToolChoice, AutoToolChoice, ContentBlock, ContentBlockDelta, ContentBlockStart,
    ConversationRole, ConverseRequest, ConverseResponse, ErrorBody, ImageBlock, ImageSource, InferenceConfig, Message,
    MessageStop, Metadata, OutputBlock, ReasoningBlock, ReasoningTextBlock, SpecificToolChoice, StreamEvent,
    SystemContentBlock, TokenUsage, Tool, ToolChoice, ToolConfig, ToolInputSchema, ToolResultBlock, ToolResultContent,
    ToolSpec, ToolUseBlock,
};
use crate::api::openai::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChatUsage, Choice, ChunkChoice, Delta,
    FunctionCall, FunctionDelta, ThinkingBlock, ToolCall, ToolCallDelta,
};
use crate::exchange::{parse_json, ApiError};
use crate::providers::deployment::Deployment;
use crate::providers::reasoning::{self, ClaudeThinking};
use crate::providers::translate::{error_kind, error_message, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message as Frame;
use axum::http::StatusCode;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Number, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// The Bedrock Converse provider.
pub struct Bedrock;

/// The one instance `providers::chat` calls.
pub static PROVIDER: Bedrock = Bedrock;

/// The tool a `response_format` of JSON becomes: forced, and its input comes back as the
/// message content (litellm's name for it, so logs read the same).
pub const JSON_TOOL: &str = "json_tool_call";

/// What the model is told [`JSON_TOOL`] is for.
const JSON_TOOL_DESCRIPTION: &str = "Respond with a JSON object in this tool's input.";

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
    /// OpenAI's string `tool_choice` -> Bedrock's `toolChoice` (`none` has none: it drops the
    /// tools).
    fn string_tool_choice -> Option<ToolChoice<'static>> {
        "auto" => Some(ToolChoice::Auto(AutoToolChoice {})),
        "required" => Some(ToolChoice::Any(AnyToolChoice {})),
        "none" => None,
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

pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("bedrock: {}", message.into())).with_param(param)
}

pub(crate) fn bad_upstream(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("bedrock: {}", message.into()))
}

/// An upstream body serde could not read: not JSON at all, or JSON of another shape.
pub(crate) fn unreadable(what: &str, e: serde_json::Error) -> ApiError {
    if e.is_data() {
        bad_upstream(format!("{what} is not of the expected shape ({e})"))
    } else {
        bad_upstream(format!("{what} is not JSON ({e})"))
    }
}

/// A request parameter, `null` counted as absent.
fn param<'a>(req: &'a ChatRequest, name: &str) -> Option<&'a Value> {
    req.extra.get(name).filter(|v| !v.is_null())
}

/// A message's text, borrowed when its content is a plain string (the common case).
fn message_text(m: &ChatMessage) -> Cow<'_, str> {
    match &m.content {
        Some(Value::String(text)) => Cow::Borrowed(text),
        _ => Cow::Owned(m.text()),
    }
}

/// The Converse (and ConverseStream: the same body) request for `req` to `model`; it borrows
/// the text it carries from `req`.
pub fn converse_body<'a>(req: &'a ChatRequest, model: &str) -> Result<ConverseRequest<'a>, ApiError> {
    let (system, mut messages) = converse_messages(req)?;
    let mut inference = inference_config(req)?;
    let has_tool_blocks = messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)));
    let mut tools = tool_config(req, has_tool_blocks)?;
    let thinking = claude_thinking(req, model)?
        // A client that did not hand back the reasoning of the tool call it answers gets an
        // answer without thinking rather than Claude's refusal.
        .filter(|t| !(t.needs_signed_tool_turn() && tool_turn_without_reasoning(&messages)));
    if thinking.as_ref().is_some_and(ClaudeThinking::is_on) {
        inference.temperature = inference.temperature.filter(reasoning::claude_takes_temperature);
        inference.top_p = inference.top_p.filter(reasoning::claude_takes_top_p);
        if let Some(config) = &mut tools {
            config.tool_choice = unforced(config.tool_choice.take())?;
        }
    } else {
        drop_final_reasoning(&mut messages);
    }
    if let Some(t) = &thinking {
        inference.max_tokens = t.max_tokens(inference.max_tokens);
    }
    Ok(ConverseRequest {
        messages,
        system: (!system.is_empty()).then_some(system),
        inference_config: (!inference.is_empty()).then_some(inference),
        tool_config: tools,
        additional_model_request_fields: thinking.map(|t| AdditionalModelRequestFields {
            output_config: t
                .effort
                .map(|effort| OutputConfig { effort: Some(Cow::Borrowed(effort)), extra: Map::new() }),
            thinking: Some(t.thinking),
        }),
    })
}

/// Claude's thinking for what `req` asks, when `model` is a Claude model (other models' own
/// reasoning controls are not mapped: the ask is left out for them).
fn claude_thinking(req: &ChatRequest, model: &str) -> Result<Option<ClaudeThinking>, ApiError> {
    let ask = reasoning::ask(&req.extra)?;
    let claude = model.contains("anthropic.") || model.contains("claude");
    Ok(ask.filter(|_| claude).and_then(|ask| reasoning::claude(model, &ask)))
}

/// A tool choice Claude takes while it thinks: the JSON-answer tool offered rather than
/// forced; a caller's own forced tool refused, saying what to do instead.
fn unforced(choice: Option<ToolChoice<'_>>) -> Result<Option<ToolChoice<'_>>, ApiError> {
    match choice {
        Some(ToolChoice::Tool(t)) if t.name == JSON_TOOL => Ok(Some(ToolChoice::Auto(AutoToolChoice {}))),
        Some(ToolChoice::Tool(_) | ToolChoice::Any(_)) => Err(invalid(
            "tool_choice",
            "Claude cannot think while tool_choice forces a tool call: use tool_choice auto or none, or reasoning_effort none",
        )),
        other => Ok(other),
    }
}

/// Whether the conversation answers tool calls whose assistant turn does not start with reasoning.
fn tool_turn_without_reasoning(messages: &[Message<'_>]) -> bool {
    let [.., call, answer] = messages else { return false };
    let answers_tools = answer.content.iter().any(|b| matches!(b, ContentBlock::ToolResult(_)));
    let starts_reasoning = matches!(call.content.first(), Some(ContentBlock::ReasoningContent(_)));
    answer.role == ConversationRole::User && answers_tools && !starts_reasoning
}

/// Claude refuses reasoning in an assistant turn that ends the conversation unless it thinks.
fn drop_final_reasoning(messages: &mut [Message<'_>]) {
    if let Some(last) = messages.last_mut().filter(|m| m.role == ConversationRole::Assistant) {
        last.content.retain(|b| !matches!(b, ContentBlock::ReasoningContent(_)));
    }
}

/// Appends a turn: consecutive OpenAI messages of the same Bedrock role merge into one, as
/// Converse wants user and assistant turns to alternate.
fn push_turn<'a>(turns: &mut Vec<Message<'a>>, role: ConversationRole, content: Vec<ContentBlock<'a>>) {
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => turns.push(Message { role, content }),
    }
}

/// `system` blocks and the alternating user / assistant turns.
#[allow(clippy::type_complexity)]
fn converse_messages(req: &ChatRequest) -> Result<(Vec<SystemContentBlock<'_>>, Vec<Message<'_>>), ApiError> {
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "system" | "developer" => {
                let text = message_text(m);
                if !text.trim().is_empty() {
                    system.push(SystemContentBlock::Text(text));
                }
            }
            "user" => push_turn(&mut turns, ConversationRole::User, user_blocks(m.content.as_ref(), &at)?),
            "assistant" => push_turn(&mut turns, ConversationRole::Assistant, assistant_blocks(m, &at)?),
            "tool" => push_turn(&mut turns, ConversationRole::User, vec![tool_result_block(m, &at)?]),
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
fn without_blank_text(blocks: Vec<ContentBlock<'_>>) -> Vec<ContentBlock<'_>> {
    let blank = |b: &ContentBlock| matches!(b, ContentBlock::Text(t) if t.trim().is_empty());
    if blocks.iter().all(blank) {
        return blocks;
    }
    blocks.into_iter().filter(|b| !blank(b)).collect()
}

fn user_blocks<'a>(content: Option<&'a Value>, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let blocks = match content {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => vec![ContentBlock::Text(Cow::Borrowed(text))],
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => blocks.push(ContentBlock::Text(Cow::Borrowed(part_text(part)))),
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

/// A text part's text (`""` when it has none).
fn part_text(part: &Value) -> &str {
    part.get("text").and_then(Value::as_str).unwrap_or("")
}

/// `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}` -> an image block.
fn image_block<'a>(part: &'a Value, at: &str) -> Result<ContentBlock<'a>, ApiError> {
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
    // Base64 may be wrapped over lines; Bedrock wants it in one piece (copied only if wrapped).
    let bytes = if data.bytes().any(|b| b.is_ascii_whitespace()) {
        Cow::Owned(data.chars().filter(|c| !c.is_ascii_whitespace()).collect())
    } else {
        Cow::Borrowed(data)
    };
    Ok(ContentBlock::Image(ImageBlock { format: Cow::Borrowed(format), source: ImageSource { bytes } }))
}

/// An assistant message: its signed reasoning (only with something said after it: a turn may
/// not end in reasoning), its text, its tool calls.
fn assistant_blocks<'a>(m: &'a ChatMessage, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let said = said_blocks(m, at)?;
    if said.iter().all(|b| matches!(b, ContentBlock::Text(t) if t.trim().is_empty())) {
        return Ok(said);
    }
    Ok(reasoning_blocks(m, at)?.into_iter().chain(said).collect())
}

/// The reasoning an assistant message hands back: signed text and redacted blocks (an unsigned
/// one would be refused).
fn reasoning_blocks<'a>(m: &ChatMessage, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let blocks = m
        .thinking_blocks()
        .map_err(|e| invalid(format!("{at}.thinking_blocks"), format!("{at}.thinking_blocks: {e}")))?;
    Ok(blocks
        .into_iter()
        .filter_map(|block| match block {
            ThinkingBlock::Thinking { thinking, signature: Some(signature) } if !signature.is_empty() => {
                Some(ReasoningBlock::ReasoningText(ReasoningTextBlock {
                    text: Cow::Owned(thinking),
                    signature: Some(Cow::Owned(signature)),
                }))
            }
            ThinkingBlock::RedactedThinking { data } => Some(ReasoningBlock::RedactedContent(Cow::Owned(data))),
            _ => None,
        })
        .map(ContentBlock::ReasoningContent)
        .collect())
}

/// An assistant message's text and tool calls.
fn said_blocks<'a>(m: &'a ChatMessage, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let mut blocks = Vec::new();
    let text = message_text(m);
    if !text.is_empty() {
        blocks.push(ContentBlock::Text(text));
    }
    let calls = m.extra.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (j, call) in calls.iter().enumerate() {
        blocks.push(tool_use_block(call, &format!("{at}.tool_calls[{j}]"))?);
    }
    if blocks.is_empty() {
        // An assistant turn with nothing in it: Bedrock refuses empty content, and says so.
        blocks.push(ContentBlock::Text(Cow::Borrowed("")));
    }
    Ok(without_blank_text(blocks))
}

/// One of an assistant message's `tool_calls` as a toolUse block (its arguments parsed).
fn tool_use_block<'a>(call: &'a Value, at: &str) -> Result<ContentBlock<'a>, ApiError> {
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
    Ok(ContentBlock::ToolUse(ToolUseBlock { tool_use_id: Cow::Borrowed(id), name: Cow::Borrowed(name), input }))
}

/// A `tool` message as a toolResult block (of a user turn).
fn tool_result_block<'a>(m: &'a ChatMessage, at: &str) -> Result<ContentBlock<'a>, ApiError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.tool_call_id"), format!("{at}: a tool message needs tool_call_id")))?;
    Ok(ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: Cow::Borrowed(id),
        content: tool_result_content(m.content.as_ref()),
    }))
}

/// A tool message's content: text stays text; a JSON value that is not text goes as `json`.
fn tool_result_content(content: Option<&Value>) -> Vec<ToolResultContent<'_>> {
    match content {
        Some(Value::String(text)) => vec![ToolResultContent::Text(Cow::Borrowed(text))],
        Some(Value::Array(parts)) if parts.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("text")) => {
            parts.iter().map(|p| ToolResultContent::Text(Cow::Borrowed(part_text(p)))).collect()
        }
        None | Some(Value::Null) => vec![ToolResultContent::Text(Cow::Borrowed(""))],
        Some(other) => vec![ToolResultContent::Json(other.clone())],
    }
}

fn inference_config(req: &ChatRequest) -> Result<InferenceConfig<'_>, ApiError> {
    let mut config = InferenceConfig::default();
    if let Some(v) = param(req, "max_completion_tokens").or_else(|| param(req, "max_tokens")) {
        let n = v.as_u64().ok_or_else(|| invalid("max_tokens", "max_tokens must be a positive integer"))?;
        config.max_tokens = Some(n);
    }
    config.temperature = number_param(req, "temperature")?;
    config.top_p = number_param(req, "top_p")?;
    config.stop_sequences = match param(req, "stop") {
        None => None,
        Some(Value::String(s)) => Some(vec![Cow::Borrowed(s.as_str())]),
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).map(Cow::Borrowed).collect())
        }
        Some(_) => return Err(invalid("stop", "stop must be a string or a list of strings")),
    };
    Ok(config)
}

/// A numeric parameter, as the client wrote it.
fn number_param(req: &ChatRequest, name: &str) -> Result<Option<Number>, ApiError> {
    match param(req, name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.clone())),
        Some(_) => Err(invalid(name, format!("{name} must be a number"))),
    }
}

/// `toolConfig`, from `tools`, `tool_choice` and `response_format`.
///
/// `tool_choice: "none"` drops the tools, unless the conversation already holds tool calls:
/// Bedrock refuses toolUse / toolResult blocks without a toolConfig, so then the tools stay
/// (with no choice forced).
fn tool_config(req: &ChatRequest, has_tool_blocks: bool) -> Result<Option<ToolConfig<'_>>, ApiError> {
    let mut tools = function_tools(req)?;
    let mut choice = match param(req, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match string_tool_choice(s) {
            Some(Some(choice)) => Some(choice),
            Some(None) => {
                if !has_tool_blocks {
                    tools.clear();
                }
                None
            }
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
            Some(ToolChoice::Tool(SpecificToolChoice { name: Cow::Borrowed(name) }))
        }
        Some(_) => return Err(invalid("tool_choice", "tool_choice must be a string or an object")),
    };
    if let Some(schema) = json_response_schema(req)? {
        tools.push(Tool::ToolSpec(ToolSpec {
            name: Cow::Borrowed(JSON_TOOL),
            description: Some(Cow::Borrowed(JSON_TOOL_DESCRIPTION)),
            input_schema: ToolInputSchema::Json(schema),
        }));
        choice = Some(ToolChoice::Tool(SpecificToolChoice { name: Cow::Borrowed(JSON_TOOL) }));
    }
    if tools.is_empty() {
        return Ok(None);
    }
    Ok(Some(ToolConfig { tools, tool_choice: choice }))
}

/// The request's `tools`, as tool specs (a function without `parameters` takes an empty object).
fn function_tools(req: &ChatRequest) -> Result<Vec<Tool<'_>>, ApiError> {
    let Some(list) = param(req, "tools") else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| invalid("tools", "tools must be a list"))?;
    let mut tools = Vec::with_capacity(list.len() + 1);
    for (i, tool) in list.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
            return Err(invalid(format!("tools[{i}].type"), format!("tools[{i}]: bedrock takes function tools only")));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("tools[{i}].function.name"), format!("tools[{i}]: needs function.name")))?;
        let schema = function
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        tools.push(Tool::ToolSpec(ToolSpec {
            name: Cow::Borrowed(name),
            description: function.get("description").and_then(Value::as_str).map(Cow::Borrowed),
            input_schema: ToolInputSchema::Json(schema),
        }));
    }
    Ok(tools)
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

/// Bedrock's token counts as OpenAI's (the total, when Bedrock leaves it out, is the sum).
fn chat_usage(usage: TokenUsage) -> ChatUsage {
    let (prompt, completion) = (usage.input_tokens, usage.output_tokens);
    let total = usage.total_tokens.unwrap_or(prompt.saturating_add(completion));
    ChatUsage { total_tokens: total, ..ChatUsage::new(prompt, completion) }
}

/// OpenAI's `finish_reason` for a `stopReason` (absent: `end_turn`). The forced JSON-answer
/// tool stops with `tool_use`, but its call comes back as content, so that is a plain stop.
fn finish(stop_reason: Option<&str>, tool_calls: bool, json_answer: bool) -> &'static str {
    match finish_reason(stop_reason.unwrap_or("end_turn")) {
        "tool_calls" if !tool_calls && json_answer => "stop",
        other => other,
    }
}

/// What the blocks of a whole answer add up to.
#[derive(Default)]
struct AnswerParts {
    text: String,
    reasoning: String,
    thinking: Vec<ThinkingBlock>,
    calls: Vec<ToolCall>,
    /// The forced JSON-answer tool was called (its input is in `text`).
    json_answer: bool,
}

impl AnswerParts {
    fn read(blocks: Vec<OutputBlock<'_>>) -> AnswerParts {
        let mut parts = AnswerParts::default();
        for block in blocks {
            if let Some(text) = block.text {
                parts.text.push_str(&text);
            } else if let Some(tool) = block.tool_use {
                let input = tool.input.unwrap_or_else(|| json!({}));
                if tool.name == JSON_TOOL {
                    parts.text.push_str(&input.to_string());
                    parts.json_answer = true;
                } else {
                    parts.calls.push(ToolCall {
                        id: tool.tool_use_id.into_owned(),
                        kind: "function".into(),
                        function: FunctionCall { name: tool.name.into_owned(), arguments: input.to_string() },
                    });
                }
            } else if let Some(reasoning) = block.reasoning_content {
                parts.reasoning_block(reasoning);
            }
        }
        parts
    }

    /// A reasoning block: its text, and the block itself when it is signed or redacted.
    fn reasoning_block(&mut self, reasoning: crate::api::bedrock::ReasoningContent<'_>) {
        if let Some(r) = reasoning.reasoning_text {
            let text = r.text.unwrap_or_default();
            self.reasoning.push_str(&text);
            if let Some(signature) = r.signature.filter(|s| !s.is_empty()) {
                self.thinking.push(ThinkingBlock::signed(text.into_owned(), signature.into_owned()));
            }
        } else if let Some(data) = reasoning.redacted_content {
            self.thinking.push(ThinkingBlock::RedactedThinking { data: data.into_owned() });
        }
    }

    /// The assistant's message: content is null when the answer is only tool calls.
    fn into_message(self) -> AssistantMessage {
        let content = if self.text.is_empty() && !self.calls.is_empty() { None } else { Some(self.text) };
        AssistantMessage::new(content, (!self.calls.is_empty()).then_some(self.calls))
            .thinking(self.reasoning, self.thinking)
    }
}

/// A whole Converse answer (its body's bytes) as a `chat.completion`.
pub fn to_openai(body: &[u8], model: &str, id: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    let answer: ConverseResponse = parse_json(body).map_err(|e| unreadable("the answer", e))?;
    let blocks = answer
        .output
        .and_then(|o| o.message)
        .and_then(|m| m.content)
        .ok_or_else(|| bad_upstream("the answer has no output.message.content"))?;
    let parts = AnswerParts::read(blocks);
    let finish = finish(answer.stop_reason.as_deref(), !parts.calls.is_empty(), parts.json_answer);
    Ok(ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion".into(),
        created,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: parts.into_message(),
            logprobs: Some(None),
            finish_reason: Some(finish.into()),
            extra: Map::new(),
        }],
        system_fingerprint: Some(None),
        usage: Some(chat_usage(answer.usage.unwrap_or_default())),
        extra: Map::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Stream: ConverseStream event-stream frames -> chat.completion.chunk

/// What a content block of the stream turned out to be.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// A tool call, with its OpenAI `tool_calls[].index`.
    Tool(u32),
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
    tool_calls: u32,
    json_answer: bool,
    /// The finish_reason chunk has gone out.
    finished: bool,
    /// Usage seen before the finish chunk, sent right after it (or at the end).
    usage: Option<ChatUsage>,
    usage_sent: bool,
}

/// A piece of reasoning as a delta: text (as `reasoning_content` and a piece of its block),
/// the signature that ends a block, or a redacted block.
fn reasoning_delta(reasoning: crate::api::bedrock::ReasoningDelta<'_>) -> Option<Delta> {
    let (text, block) = if let Some(text) = reasoning.text.filter(|t| !t.is_empty()) {
        (Some(text.to_string()), ThinkingBlock::text(text))
    } else if let Some(signature) = reasoning.signature.filter(|s| !s.is_empty()) {
        (None, ThinkingBlock::signed("", signature))
    } else {
        (None, ThinkingBlock::RedactedThinking { data: reasoning.redacted_content?.into_owned() })
    };
    Some(Delta { reasoning_content: text, thinking_blocks: Some(vec![block]), ..Delta::default() })
}

/// A string header of an event-stream frame.
fn header<'m>(frame: &'m Frame, name: &str) -> Option<&'m str> {
    let header = frame.headers().iter().find(|h| h.name().as_str() == name)?;
    header.value().as_string().ok().map(|s| s.as_str())
}

/// An exception frame as the error Bedrock gives the same failure on a plain request.
fn exception(kind: Option<&str>, payload: &[u8]) -> ApiError {
    let kind = kind.unwrap_or("exception");
    let status = StatusCode::from_u16(exception_status(kind)).unwrap_or(StatusCode::BAD_GATEWAY);
    ApiError::new(status, error_kind(status), format!("bedrock: {kind}: {}", error_text(payload)))
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

    fn envelope(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        self.meta.chunk(choices, true)
    }

    /// A content chunk; the first one of the stream also carries the role.
    fn chunk(&mut self, mut delta: Delta, finish: Option<&str>) -> ChatChunk {
        if !self.started {
            self.started = true;
            delta.role = Some("assistant".into());
        }
        self.envelope(vec![super::translate::delta_choice(0, delta, finish)])
    }

    fn usage_chunk(&mut self, out: &mut Vec<ChatChunk>) {
        if let Some(usage) = self.usage.take() {
            self.usage_sent = true;
            let mut chunk = self.envelope(Vec::new());
            chunk.usage = Some(Some(usage));
            out.push(chunk);
        }
    }

    /// One whole frame: an event, or an exception / error that ends the stream.
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<ChatChunk>) -> Result<(), ApiError> {
        match header(frame, ":message-type") {
            Some("event") => {
                let kind = header(frame, ":event-type").unwrap_or_default();
                let event =
                    StreamEvent::parse(kind, frame.payload()).map_err(|e| unreadable(&format!("{kind} event"), e))?;
                self.on_event(event, out)
            }
            Some("exception") => Err(exception(header(frame, ":exception-type"), frame.payload())),
            Some("error") => {
                let code = header(frame, ":error-code").unwrap_or("error");
                let text = header(frame, ":error-message").unwrap_or_default();
                Err(bad_upstream(format!("{code}: {text}")))
            }
            other => Err(bad_upstream(format!("unexpected event-stream message type {other:?}"))),
        }
    }

    fn on_event(&mut self, event: StreamEvent<'_>, out: &mut Vec<ChatChunk>) -> Result<(), ApiError> {
        match event {
            StreamEvent::MessageStart(_) => self.on_message_start(out),
            StreamEvent::ContentBlockStart(start) => self.on_block_start(start, out),
            StreamEvent::ContentBlockDelta(delta) => self.on_block_delta(delta, out)?,
            StreamEvent::MessageStop(stop) => self.on_message_stop(stop, out),
            StreamEvent::Metadata(metadata) => self.on_metadata(metadata, out),
            // A block's end has no OpenAI counterpart, nor have events this translation
            // does not know.
            StreamEvent::ContentBlockStop(_) | StreamEvent::Other => {}
        }
        Ok(())
    }

    /// `messageStart`: the role chunk (once: a repeated messageStart adds nothing).
    fn on_message_start(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            let chunk = self.chunk(Delta { content: Some(Some(String::new())), ..Delta::default() }, None);
            out.push(chunk);
        }
    }

    /// `contentBlockStart`: a tool call's first chunk (id and name), unless it is the forced
    /// JSON answer, whose input will stream out as content.
    fn on_block_start(&mut self, start: ContentBlockStart<'_>, out: &mut Vec<ChatChunk>) {
        let Some(tool) = start.start.and_then(|s| s.tool_use) else { return };
        if tool.name == JSON_TOOL {
            self.json_answer = true;
            self.blocks.insert(start.content_block_index, Block::JsonAnswer);
            return;
        }
        let index = self.tool_calls;
        self.tool_calls = self.tool_calls.saturating_add(1);
        self.blocks.insert(start.content_block_index, Block::Tool(index));
        let call = ToolCallDelta {
            index,
            id: Some(tool.tool_use_id.into_owned()),
            kind: Some("function".into()),
            function: Some(FunctionDelta { name: Some(tool.name.into_owned()), arguments: Some(String::new()) }),
        };
        let chunk = self.chunk(Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None);
        out.push(chunk);
    }

    /// `contentBlockDelta`: a piece of text, of a tool call's input, or of reasoning.
    fn on_block_delta(&mut self, event: ContentBlockDelta<'_>, out: &mut Vec<ChatChunk>) -> Result<(), ApiError> {
        let Some(delta) = event.delta else { return Ok(()) };
        let openai = if let Some(text) = delta.text {
            Delta { content: Some(Some(text.into_owned())), ..Delta::default() }
        } else if let Some(input) = delta.tool_use.and_then(|t| t.input) {
            self.tool_input(event.content_block_index, input.into_owned())?
        } else if let Some(reasoning) = delta.reasoning_content {
            match reasoning_delta(reasoning) {
                Some(delta) => delta,
                None => return Ok(()),
            }
        } else {
            return Ok(());
        };
        let chunk = self.chunk(openai, None);
        out.push(chunk);
        Ok(())
    }

    /// A piece of the input of the tool call in block `block`: arguments, or content for the
    /// JSON answer.
    fn tool_input(&self, block: u64, input: String) -> Result<Delta, ApiError> {
        match self.blocks.get(&block) {
            Some(Block::JsonAnswer) => Ok(Delta { content: Some(Some(input)), ..Delta::default() }),
            Some(&Block::Tool(index)) => {
                let function = FunctionDelta { name: None, arguments: Some(input) };
                let call = ToolCallDelta { index, id: None, kind: None, function: Some(function) };
                Ok(Delta { tool_calls: Some(vec![call]), ..Delta::default() })
            }
            None => Err(bad_upstream(format!("tool input for content block {block}, which never started"))),
        }
    }

    /// `messageStop`: the finish chunk, then the usage if it came first.
    fn on_message_stop(&mut self, stop: MessageStop<'_>, out: &mut Vec<ChatChunk>) {
        let finish = finish(stop.stop_reason.as_deref(), self.tool_calls > 0, self.json_answer);
        let chunk = self.chunk(Delta::default(), Some(finish));
        out.push(chunk);
        self.finished = true;
        self.usage_chunk(out);
    }

    /// `metadata`: the usage, sent at once if the finish chunk is out (else right after it).
    fn on_metadata(&mut self, metadata: Metadata, out: &mut Vec<ChatChunk>) {
        if let Some(usage) = metadata.usage {
            self.usage = Some(chat_usage(usage));
            if self.finished {
                self.usage_chunk(out);
            }
        }
    }
}

impl ChunkDecoder for ConverseStreamDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
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
                Ok(DecodedFrame::Complete(frame)) => {
                    self.partial = 0;
                    self.on_frame(&frame, &mut out)?;
                }
                Err(e) => return Err(bad_upstream(format!("malformed event stream: {e}"))),
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
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

/// An error body's message: Bedrock's `{"message": ...}` (or a proxy's `{"error": {"message":
/// ...}}`, which wins when both are there); any other body gets the shared lenient reading.
fn error_text(body: &[u8]) -> String {
    let typed = parse_json::<ErrorBody>(body).ok().and_then(|b| b.error.and_then(|e| e.message).or(b.message));
    typed.map_or_else(|| error_message(body), Cow::into_owned)
}

impl ChatProvider for Bedrock {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        _stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest::post_json(url, &converse_body(req, &d.upstream_model)?))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        to_openai(body, &d.upstream_model, &super::chat::new_chat_id(), crate::clock::unix_now())
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(ConverseStreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        ApiError::new(status, error_kind(status), format!("bedrock: {}", error_text(body)))
    }
}
