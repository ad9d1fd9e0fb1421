//! Anthropic's Messages API behind OpenAI chat completions.
//!
//! [`messages_body`] turns an OpenAI chat request into a typed `POST /v1/messages` body (the
//! wire types of `api::anthropic`, borrowing the request's text), [`to_openai`] turns a
//! `message` back into a typed `chat.completion`, and [`StreamDecoder`] turns the Messages SSE
//! stream into `chat.completion.chunk`s as its events arrive; answers and events are read by the
//! lenient reader in `answer`. All of them are pure, so the translations are snapshot-tested
//! without a network; [`Anthropic`] wires them to the [`ChatProvider`] contract that
//! `providers::chat` runs.
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
//!   decoder always emits the usage chunk (the caller drops it unless `include_usage`);
//! - `reasoning_effort` (or litellm's `thinking`) becomes `thinking` (`providers::reasoning`):
//!   with thinking on, `max_tokens` is raised above the budget, a `temperature` other than 1
//!   and a `top_p` under 0.95 are dropped, and the response_format tool is offered, not forced
//!   (Claude refuses all three); a caller's own forced tool is refused. Thinking comes back as
//!   `reasoning_content` and signed `thinking_blocks`, which an assistant turn hands back
//!   before its text and tool calls (Claude wants them back when it thinks and uses tools).

mod answer;
mod text_delta;

/// The stream event reader and its hand reader of text deltas, for the fuzz target that holds
/// the two to each other.
pub(crate) use answer::Event as StreamEvent;
pub(crate) use text_delta::read as read_text_delta;

use crate::api::anthropic::{
    Content, ContentBlock, Message, MessagesRequest, Metadata, OutputConfig, Source, Tool, ToolChoice, Usage,
};
use crate::api::openai::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChatUsage, Choice, ChunkChoice, Delta,
    FunctionCall, FunctionDelta, ThinkingBlock, ToolCall, ToolCallDelta,
};
use crate::exchange::ApiError;
use crate::providers::deployment::Deployment;
use crate::providers::reasoning::{self, ClaudeThinking};
use crate::providers::translate::{error_kind, error_message, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use crate::streaming::sse;
use answer::{Answer, ErrorView, Event};
use axum::http::StatusCode;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Number, Value};
use std::borrow::Cow;
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
        // The template used decides, whatever the request asked.
        body.stream = stream.then_some(true);
        Ok(UpstreamRequest::post_json(url, &body))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        let answer = Answer::from_slice(body).map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("anthropic: the answer is not JSON: {e}"))
        })?;
        completion(answer, &d.upstream_model, crate::clock::unix_now())
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(StreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        let code = answer::error_of(body).and_then(|e| e.kind).map(Cow::into_owned);
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

/// The `POST /v1/messages` body for an OpenAI chat request, borrowing its text from the request.
/// `stream` is set when the request asks for it; [`ChatProvider::chat_request`] makes it agree
/// with the template used.
pub fn messages_body<'a>(req: &'a ChatRequest, d: &'a Deployment) -> Result<MessagesRequest<'a>, ApiError> {
    let p = &req.extra;
    // Checked in this order, so the first fault named is the one it always was.
    let (system, mut messages) = convert_messages(&req.messages)?;
    let max_tokens = max_tokens(p)?;
    let stop_sequences = stop_sequences(p.get("stop"))?;
    let mut temperature = number(p, "temperature")?;
    let mut top_p = number(p, "top_p")?;
    let metadata = user_id(p)?.map(|user_id| Metadata { user_id: Some(user_id) });
    let (tools, mut tool_choice) = tools_and_choice(p)?;
    let thinking = reasoning::ask(p)?
        .and_then(|ask| reasoning::claude(&d.upstream_model, &ask))
        // A client that did not hand back the thinking of the tool call it answers (most chat
        // clients) gets an answer without thinking rather than Claude's 400.
        .filter(|t| !(t.needs_signed_tool_turn() && tool_turn_without_thinking(&messages)));
    let thinks = thinking.as_ref().is_some_and(ClaudeThinking::is_on);
    if thinks {
        temperature = temperature.filter(reasoning::claude_takes_temperature);
        top_p = top_p.filter(reasoning::claude_takes_top_p);
        tool_choice = unforced(tool_choice)?;
    } else {
        drop_final_thinking(&mut messages);
    }
    let max_tokens = match &thinking {
        Some(t) => t.max_tokens(max_tokens),
        None => max_tokens,
    };
    Ok(MessagesRequest {
        model: Cow::Borrowed(&d.upstream_model),
        system,
        messages,
        max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        stop_sequences,
        temperature,
        top_p,
        metadata,
        stream: (req.stream == Some(true)).then_some(true),
        tools,
        tool_choice,
        output_config: thinking
            .as_ref()
            .and_then(|t| t.effort)
            .map(|effort| OutputConfig { effort: Some(Cow::Borrowed(effort)), extra: Map::new() }),
        thinking: thinking.map(|t| t.thinking),
        extra: Map::new(),
    })
}

/// A `tool_choice` Claude takes while it thinks: the response_format tool offered rather than
/// forced; a caller's own forced tool refused, as Claude would, but saying what to do instead.
fn unforced(choice: Option<ToolChoice<'_>>) -> Result<Option<ToolChoice<'_>>, ApiError> {
    match choice {
        Some(c) if c.kind == "tool" && c.name.as_deref() == Some(RESPONSE_FORMAT_TOOL) => {
            Ok(Some(ToolChoice { kind: Cow::Borrowed("auto"), name: None, ..c }))
        }
        Some(c) if c.kind == "any" || c.kind == "tool" => Err(invalid(
            "anthropic cannot think while tool_choice forces a tool call: use tool_choice auto or none, or reasoning_effort none",
            "tool_choice",
        )),
        other => Ok(other),
    }
}

/// Whether the conversation answers tool calls whose assistant turn does not start with thinking.
fn tool_turn_without_thinking(messages: &[Message<'_>]) -> bool {
    let [.., call, answer] = messages else { return false };
    let answers_tools =
        matches!(&answer.content, Content::Blocks(b) if b.iter().any(|b| matches!(b, ContentBlock::ToolResult { .. })));
    let starts_thinking = matches!(&call.content, Content::Blocks(b)
        if matches!(b.first(), Some(ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. })));
    answer.role == "user" && answers_tools && !starts_thinking
}

/// Claude refuses thinking blocks in an assistant turn that ends the conversation (a prefill)
/// unless it thinks; earlier turns may keep theirs (Claude ignores them then).
fn drop_final_thinking(messages: &mut [Message<'_>]) {
    let Some(last) = messages.last_mut().filter(|m| m.role == "assistant") else { return };
    if let Content::Blocks(blocks) = &mut last.content {
        blocks.retain(|b| !matches!(b, ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. }));
    }
}

/// The caller's `max_completion_tokens` (or `max_tokens`), if any.
fn max_tokens(p: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    for name in ["max_completion_tokens", "max_tokens"] {
        match p.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| invalid(format!("{name} must be a positive integer"), name))
            }
        }
    }
    Ok(None)
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Vec<Cow<'_, str>>>, ApiError> {
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![Cow::Borrowed(s.as_str())])),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok((!items.is_empty()).then(|| items.iter().filter_map(Value::as_str).map(Cow::Borrowed).collect()))
        }
        Some(_) => Err(invalid("stop must be a string or a list of strings", "stop")),
    }
}

/// A sampling parameter, passed on as the caller wrote the number.
fn number(p: &Map<String, Value>, name: &str) -> Result<Option<Number>, ApiError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.clone())),
        Some(_) => Err(invalid(format!("{name} must be a number"), name)),
    }
}

fn user_id(p: &Map<String, Value>) -> Result<Option<Cow<'_, str>>, ApiError> {
    match p.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) => return Ok(Some(Cow::Borrowed(user))),
        Some(_) => return Err(invalid("user must be a string", "user")),
    }
    Ok(p.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str).map(Cow::Borrowed))
}

/// A turn being built: its role and content blocks.
struct Turn<'a> {
    role: &'static str,
    blocks: Vec<ContentBlock<'a>>,
}

/// (top-level `system`, alternating `messages`).
fn convert_messages(messages: &[ChatMessage]) -> Result<(Option<Content<'_>>, Vec<Message<'_>>), ApiError> {
    let mut system = Vec::new();
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
            t.blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult { .. }));
            Message { role: Cow::Borrowed(t.role), content: compact(t.blocks) }
        })
        .collect();
    let system = (!system.is_empty()).then(|| compact(system));
    Ok((system, messages))
}

/// One plain text block is written as a string; anything else stays a list of blocks.
fn compact(mut blocks: Vec<ContentBlock<'_>>) -> Content<'_> {
    if let [ContentBlock::Text { cache_control: None, .. }] = blocks.as_slice() {
        if let Some(ContentBlock::Text { text, .. }) = blocks.pop() {
            return Content::Text(text);
        }
    }
    Content::Blocks(blocks)
}

/// A text block, keeping a part's `cache_control`; `None` for empty text (Anthropic refuses it).
fn text_block<'a>(text: &'a str, part: Option<&'a Value>) -> Option<ContentBlock<'a>> {
    if text.is_empty() {
        return None;
    }
    let cache_control = part.and_then(|p| p.get("cache_control")).map(Cow::Borrowed);
    Some(ContentBlock::Text { text: Cow::Borrowed(text), cache_control })
}

/// Content that may only hold text (system messages): a string or text parts.
fn text_blocks<'a>(content: Option<&'a Value>, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s, None).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
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
fn user_blocks<'a>(content: Option<&'a Value>, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let parts = match content {
        Some(Value::Array(parts)) => parts,
        other => return text_blocks(other, at),
    };
    let mut blocks = Vec::with_capacity(parts.len());
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

/// Inline base64 bytes of a media type.
fn base64_source<'a>(media_type: &'a str, data: &'a str) -> Source<'a> {
    Source {
        kind: Cow::Borrowed("base64"),
        media_type: Some(Cow::Borrowed(media_type)),
        data: Some(Cow::Borrowed(data)),
        url: None,
    }
}

fn image_block<'a>(url: &'a str, at: &str) -> Result<ContentBlock<'a>, ApiError> {
    if url.starts_with("data:") {
        let (media_type, data) = parse_data_url(url).ok_or_else(|| {
            invalid(format!("{at}: an image data URL must be data:<type>;base64,<data>"), format!("{at}.image_url.url"))
        })?;
        return Ok(ContentBlock::Image { source: base64_source(media_type, data) });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        let source = Source { kind: Cow::Borrowed("url"), media_type: None, data: None, url: Some(Cow::Borrowed(url)) };
        return Ok(ContentBlock::Image { source });
    }
    Err(invalid(
        format!("{at}: an image URL must be an http(s) URL or a base64 data URL"),
        format!("{at}.image_url.url"),
    ))
}

/// An OpenAI `file` part (`file_data` as a base64 data URL) -> a `document` block.
fn file_block<'a>(part: &'a Value, at: &str) -> Result<ContentBlock<'a>, ApiError> {
    let data_url = part.pointer("/file/file_data").and_then(Value::as_str).ok_or_else(|| {
        invalid(format!("{at}: anthropic needs the file inline as file.file_data"), format!("{at}.file.file_data"))
    })?;
    let (media_type, data) = parse_data_url(data_url).ok_or_else(|| {
        invalid(format!("{at}: file_data must be data:<type>;base64,<data>"), format!("{at}.file.file_data"))
    })?;
    Ok(ContentBlock::Document { source: base64_source(media_type, data) })
}

/// An assistant message: its signed thinking, its text, then a `tool_use` block per tool call.
fn assistant_blocks<'a>(m: &'a ChatMessage, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let thinking = thinking_blocks(m, at)?;
    let said = said_blocks(m, at)?;
    // Claude refuses a turn that ends in thinking: thinking alone says nothing to hand back.
    if said.is_empty() {
        return Ok(said);
    }
    Ok(thinking.into_iter().chain(said).collect())
}

/// The thinking an assistant message hands back: signed blocks and redacted ones (Claude
/// refuses a thinking block without its signature, and has no use for one).
fn thinking_blocks<'a>(m: &ChatMessage, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let blocks = m
        .thinking_blocks()
        .map_err(|e| invalid(format!("{at}.thinking_blocks: {e}"), format!("{at}.thinking_blocks")))?;
    Ok(blocks
        .into_iter()
        .filter_map(|block| match block {
            ThinkingBlock::Thinking { thinking, signature: Some(signature) } if !signature.is_empty() => {
                Some(ContentBlock::Thinking { thinking: Cow::Owned(thinking), signature: Cow::Owned(signature) })
            }
            ThinkingBlock::RedactedThinking { data } => Some(ContentBlock::RedactedThinking { data: Cow::Owned(data) }),
            _ => None,
        })
        .collect())
}

/// An assistant message's text, then a `tool_use` block per tool call.
fn said_blocks<'a>(m: &'a ChatMessage, at: &str) -> Result<Vec<ContentBlock<'a>>, ApiError> {
    let mut blocks = match m.content.as_ref() {
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
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
        blocks.push(tool_use_block(call, &format!("{at}.tool_calls[{j}]"))?);
    }
    Ok(blocks)
}

/// An assistant's tool call -> a `tool_use` block, its arguments parsed.
fn tool_use_block<'a>(call: &'a Value, at: &str) -> Result<ContentBlock<'a>, ApiError> {
    let id = call.get("id").and_then(Value::as_str);
    let name = call.pointer("/function/name").and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(invalid(format!("{at} needs an id and function.name"), at));
    };
    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
    let input = if arguments.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(arguments).map_err(|e| {
            invalid(format!("{at}.function.arguments is not JSON: {e}"), format!("{at}.function.arguments"))
        })?
    };
    Ok(ContentBlock::ToolUse { id: Cow::Borrowed(id), name: Cow::Borrowed(name), input })
}

/// A `tool` message -> a `tool_result` block.
fn tool_result<'a>(m: &'a ChatMessage, at: &str) -> Result<ContentBlock<'a>, ApiError> {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        invalid(format!("{at}.tool_call_id is required for a tool message"), format!("{at}.tool_call_id"))
    })?;
    let content = match m.content.as_ref() {
        None | Some(Value::Null) => Content::default(),
        Some(Value::String(s)) => Content::Text(Cow::Borrowed(s)),
        Some(parts @ Value::Array(_)) => Content::Blocks(user_blocks(Some(parts), at)?),
        Some(_) => {
            return Err(invalid(format!("{at}.content must be a string or a list of parts"), format!("{at}.content")))
        }
    };
    Ok(ContentBlock::ToolResult { tool_use_id: Cow::Borrowed(id), content })
}

/// A `tool_choice` of this type (and tool name).
fn choice<'a>(kind: &'static str, name: Option<&'a str>) -> ToolChoice<'a> {
    ToolChoice { kind: Cow::Borrowed(kind), name: name.map(Cow::Borrowed), disable_parallel_tool_use: None }
}

type ToolsAndChoice<'a> = (Option<Vec<Tool<'a>>>, Option<ToolChoice<'a>>);

/// (`tools`, `tool_choice`) from `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`.
fn tools_and_choice(p: &Map<String, Value>) -> Result<ToolsAndChoice<'_>, ApiError> {
    let mut tools = Vec::new();
    match p.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            tools.reserve(list.len());
            for (i, tool) in list.iter().enumerate() {
                tools.push(convert_tool(tool, i)?);
            }
        }
        Some(_) => return Err(invalid("tools must be a list", "tools")),
    }
    let has_own_tools = !tools.is_empty();
    let mut choice = caller_tool_choice(p.get("tool_choice"))?;

    if let Some(tool) = response_format_tool(p.get("response_format"))? {
        tools.push(tool);
        // Forced unless the caller's own tools are in play and the caller chose how.
        let caller_chose = choice.as_ref().is_some_and(|c| c.kind != "none");
        if !(has_own_tools && caller_chose) {
            choice = Some(self::choice("tool", Some(RESPONSE_FORMAT_TOOL)));
        }
    }

    if p.get("parallel_tool_calls") == Some(&Value::Bool(false)) && !tools.is_empty() {
        let c = choice.get_or_insert_with(|| self::choice("auto", None));
        if c.kind != "none" {
            c.disable_parallel_tool_use = Some(true);
        }
    }
    let tools = (!tools.is_empty()).then_some(tools);
    // A tool_choice without tools is refused upstream; it means nothing anyway.
    let choice = if tools.is_some() { choice } else { None };
    Ok((tools, choice))
}

/// The caller's own `tool_choice`.
fn caller_tool_choice(value: Option<&Value>) -> Result<Option<ToolChoice<'_>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let kind = tool_choice_type(s).ok_or_else(|| {
                invalid(format!("tool_choice {s:?} is not one of: {}", TOOL_CHOICE_TYPE_KEYS.join(", ")), "tool_choice")
            })?;
            Ok(Some(choice(kind, None)))
        }
        Some(obj @ Value::Object(_)) => {
            let name = obj.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                invalid("tool_choice must be auto, required, none or {type: function, function: {name}}", "tool_choice")
            })?;
            Ok(Some(choice("tool", Some(name))))
        }
        Some(_) => Err(invalid("tool_choice must be a string or an object", "tool_choice")),
    }
}

fn convert_tool(tool: &Value, i: usize) -> Result<Tool<'_>, ApiError> {
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
    let schema = match f.get("parameters") {
        None | Some(Value::Null) => Cow::Owned(json!({"type": "object", "properties": {}})),
        Some(schema) => Cow::Borrowed(schema),
    };
    Ok(Tool {
        name: Cow::Borrowed(name),
        description: f.get("description").and_then(Value::as_str).map(Cow::Borrowed),
        input_schema: Some(schema),
    })
}

/// The tool a `response_format` becomes, if it asks for JSON.
fn response_format_tool(format: Option<&Value>) -> Result<Option<Tool<'_>>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else { return Ok(None) };
    let object_schema = || Cow::Owned(json!({"type": "object"}));
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Tool {
            name: Cow::Borrowed(RESPONSE_FORMAT_TOOL),
            description: Some(Cow::Borrowed("Respond with a JSON object.")),
            input_schema: Some(object_schema()),
        })),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .ok_or_else(|| invalid("response_format.json_schema is required", "response_format.json_schema"))?;
            let name = spec.get("name").and_then(Value::as_str).unwrap_or("response");
            let mut description = format!("Respond with a JSON object that follows the {name} schema.");
            if let Some(more) = spec.get("description").and_then(Value::as_str) {
                description = format!("{description} {more}");
            }
            Ok(Some(Tool {
                name: Cow::Borrowed(RESPONSE_FORMAT_TOOL),
                description: Some(Cow::Owned(description)),
                input_schema: Some(spec.get("schema").map_or_else(object_schema, Cow::Borrowed)),
            }))
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
pub fn to_openai(body: &Value, model: &str) -> Result<ChatCompletion, ApiError> {
    to_openai_at(body, model, crate::clock::unix_now())
}

/// [`to_openai`] with the `created` timestamp given. `model` is used when the answer names none.
pub fn to_openai_at(body: &Value, model: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    completion(Answer::from_value(body), model, created)
}

/// An Anthropic answer as an OpenAI `chat.completion`.
fn completion(answer: Answer<'_>, model: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    use std::fmt::Write as _;
    let blocks = answer.content.ok_or_else(|| bad_answer("the message has no content"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    let mut reasoning = String::new();
    let mut thinking = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text { text: piece, .. } => text.push_str(&piece),
            ContentBlock::Thinking { thinking: piece, signature } => {
                reasoning.push_str(&piece);
                thinking.push(ThinkingBlock::signed(piece, signature));
            }
            ContentBlock::RedactedThinking { data } => {
                thinking.push(ThinkingBlock::RedactedThinking { data: data.into_owned() })
            }
            ContentBlock::ToolUse { name, input, .. } if name == RESPONSE_FORMAT_TOOL => {
                // Writing a Value into a String cannot fail.
                let _ = write!(text, "{input}");
                json_answer = true;
            }
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id: id.into_owned(),
                kind: "function".into(),
                function: FunctionCall { name: name.into_owned(), arguments: input.to_string() },
            }),
            // Server tool blocks: nothing OpenAI-shaped to say.
            _ => {}
        }
    }
    let stop_reason = answer.stop_reason.as_deref().unwrap_or("end_turn");
    let finish = match finish_reason(stop_reason) {
        "tool_calls" if tool_calls.is_empty() && json_answer => "stop",
        other => other,
    };
    let content = if text.is_empty() && !tool_calls.is_empty() { None } else { Some(text) };
    let message =
        AssistantMessage::new(content, (!tool_calls.is_empty()).then_some(tool_calls)).thinking(reasoning, thinking);
    let id = answer.id.as_deref().unwrap_or_default();
    let mut chat_id = String::with_capacity(9 + id.len());
    chat_id.push_str("chatcmpl-");
    chat_id.push_str(id);
    Ok(ChatCompletion {
        id: chat_id,
        object: "chat.completion".into(),
        created,
        model: answer.model.map_or_else(|| model.to_owned(), Cow::into_owned),
        choices: vec![Choice {
            index: 0,
            message,
            logprobs: Some(None),
            finish_reason: Some(finish.into()),
            extra: Map::new(),
        }],
        system_fingerprint: None,
        usage: answer.usage.as_ref().map(openai_usage),
        extra: Map::new(),
    })
}

/// OpenAI's `usage`: cache writes and reads count as prompt tokens, reads also as cached.
pub fn openai_usage(usage: &Usage) -> ChatUsage {
    let prompt = usage
        .input_tokens
        .unwrap_or(0)
        .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0))
        .saturating_add(usage.cache_read_input_tokens.unwrap_or(0));
    let openai = ChatUsage::new(prompt, usage.output_tokens.unwrap_or(0));
    match usage.cache_read_input_tokens {
        Some(cached) => openai.cached(cached),
        None => openai,
    }
}

// ---------------------------------------------------------------------------------------------
// Stream: Messages SSE -> chat.completion.chunk

/// What a content block of the stream turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, with its index among the answer's tool calls.
    Tool(u32),
    /// The response_format tool: its input is the message content.
    Json,
    /// Thinking: `reasoning_content` and `thinking_blocks`.
    Thinking,
    /// Blocks OpenAI has no delta for.
    Skip,
}

/// Decodes an Anthropic Messages SSE stream into OpenAI chunks, one event at a time.
pub struct StreamDecoder {
    meta: StreamMeta,
    sse: sse::Decoder,
    started: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: u32,
    json_answer: bool,
    /// Counts reported so far (`None` until the stream reports any).
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

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        self.meta.chunk(choices, false)
    }

    /// A chunk with one delta; the first chunk of the stream also says the role.
    fn delta(&mut self, mut delta: Delta, finish: Option<&str>) -> ChatChunk {
        if !self.started {
            self.started = true;
            delta.role = Some("assistant".into());
        }
        self.chunk(vec![super::translate::delta_choice(0, delta, finish)])
    }

    /// A chunk adding text to the message.
    fn content(&mut self, text: &str) -> ChatChunk {
        self.delta(Delta { content: Some(Some(text.to_owned())), ..Delta::default() }, None)
    }

    /// A chunk with a piece of thinking, as text and as a piece of its block.
    fn thinking(&mut self, piece: &str) -> ChatChunk {
        let delta = Delta {
            reasoning_content: Some(piece.to_owned()),
            thinking_blocks: Some(vec![ThinkingBlock::text(piece)]),
            ..Delta::default()
        };
        self.delta(delta, None)
    }

    /// A chunk with a whole block of thinking, or the signature that ends one.
    fn thinking_block(&mut self, block: ThinkingBlock) -> ChatChunk {
        self.delta(Delta { thinking_blocks: Some(vec![block]), ..Delta::default() }, None)
    }

    /// A chunk with one piece of a tool call.
    fn tool_call(&mut self, call: ToolCallDelta) -> ChatChunk {
        self.delta(Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None)
    }

    fn usage_chunk(&mut self) -> Option<ChatChunk> {
        if self.usage_sent {
            return None;
        }
        let usage = self.usage?;
        self.usage_sent = true;
        let mut chunk = self.chunk(Vec::new());
        chunk.usage = Some(Some(openai_usage(&usage)));
        Some(chunk)
    }

    fn add_usage(&mut self, usage: Option<&Usage>) {
        if let Some(usage) = usage {
            self.usage.get_or_insert_with(Usage::default).update(usage);
        }
    }

    fn event(&mut self, event: sse::Event, out: &mut Vec<ChatChunk>) -> Result<(), ApiError> {
        let data = Event::read(&event.data)
            .map_err(|e| bad_answer(format!("a stream event is not JSON ({e}): {:.200}", event.data)))?;
        let kind = data.kind.as_deref().or(event.event.as_deref()).unwrap_or_default();
        let index = data.index.unwrap_or(0);
        match kind {
            "message_start" => {
                self.add_usage(data.message.as_ref().and_then(|m| m.usage.as_ref()));
                if !self.started {
                    out.push(self.content(""));
                }
            }
            "content_block_start" => out.extend(self.block_start(index, data.content_block.map(|b| *b))),
            "content_block_delta" => {
                let delta = data.delta.unwrap_or_default();
                let piece = match delta.kind.as_deref() {
                    Some("text_delta") => delta.text,
                    Some("input_json_delta") => delta.partial_json,
                    Some("thinking_delta") => {
                        let thinking = delta.thinking.filter(|t| !t.is_empty());
                        out.extend(thinking.map(|t| self.thinking(&t)));
                        None
                    }
                    Some("signature_delta") => {
                        let signature = delta.signature.filter(|s| !s.is_empty());
                        out.extend(signature.map(|s| self.thinking_block(ThinkingBlock::signed("", s))));
                        None
                    }
                    _ => None,
                };
                out.extend(piece.filter(|p| !p.is_empty()).and_then(|p| self.block_delta(index, &p)));
            }
            "message_delta" => {
                self.add_usage(data.usage.as_ref());
                if let Some(reason) = data.delta.and_then(|d| d.stop_reason) {
                    let finish = match finish_reason(&reason) {
                        "tool_calls" if self.tool_calls == 0 && self.json_answer => "stop",
                        other => other,
                    };
                    out.push(self.delta(Delta::default(), Some(finish)));
                }
            }
            "message_stop" => out.extend(self.usage_chunk()),
            "error" => return Err(stream_error(data.error.map(|e| *e).unwrap_or_default())),
            // ping, content_block_stop, and events added later.
            _ => {}
        }
        Ok(())
    }

    /// A block opens: text may come with it, a tool call says its id and name.
    fn block_start(&mut self, index: u64, block: Option<ContentBlock<'_>>) -> Option<ChatChunk> {
        match block {
            Some(ContentBlock::Text { text, .. }) => {
                self.blocks.insert(index, Block::Text);
                (!text.is_empty()).then(|| self.content(&text))
            }
            Some(ContentBlock::Thinking { thinking, .. }) => {
                self.blocks.insert(index, Block::Thinking);
                (!thinking.is_empty()).then(|| self.thinking(&thinking))
            }
            Some(ContentBlock::RedactedThinking { data }) => {
                self.blocks.insert(index, Block::Skip);
                Some(self.thinking_block(ThinkingBlock::RedactedThinking { data: data.into_owned() }))
            }
            Some(ContentBlock::ToolUse { name, .. }) if name == RESPONSE_FORMAT_TOOL => {
                self.blocks.insert(index, Block::Json);
                self.json_answer = true;
                None
            }
            Some(ContentBlock::ToolUse { id, name, .. }) => {
                let n = self.tool_calls;
                self.tool_calls = self.tool_calls.saturating_add(1);
                self.blocks.insert(index, Block::Tool(n));
                Some(self.tool_call(ToolCallDelta {
                    index: n,
                    id: Some(id.into_owned()),
                    kind: Some("function".into()),
                    function: Some(FunctionDelta { name: Some(name.into_owned()), arguments: Some(String::new()) }),
                }))
            }
            _ => {
                self.blocks.insert(index, Block::Skip);
                None
            }
        }
    }

    /// A piece of a block: text, or a tool call's (or the JSON answer's) input.
    fn block_delta(&mut self, index: u64, piece: &str) -> Option<ChatChunk> {
        match self.blocks.get(&index).copied().unwrap_or(Block::Text) {
            Block::Text | Block::Json => Some(self.content(piece)),
            Block::Tool(n) => Some(self.tool_call(ToolCallDelta {
                index: n,
                function: Some(FunctionDelta { name: None, arguments: Some(piece.to_owned()) }),
                ..ToolCallDelta::default()
            })),
            Block::Thinking | Block::Skip => None,
        }
    }
}

/// An `error` event as the error that ends the stream, with the status Anthropic gives it.
fn stream_error(error: ErrorView<'_>) -> ApiError {
    let kind = error.kind.as_deref().unwrap_or("api_error");
    let message = error.message.as_deref().unwrap_or("stream error");
    let status = StatusCode::from_u16(error_status(kind)).unwrap_or(StatusCode::BAD_GATEWAY);
    ApiError::new(status, error_kind(status), format!("anthropic: {message}")).with_code(kind)
}

impl ChunkDecoder for StreamDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatChunk>, ApiError> {
        let mut out = Vec::new();
        for event in self.sse.feed(bytes) {
            self.event(event, &mut out)?;
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>, ApiError> {
        let mut out = Vec::new();
        if let Some(event) = self.sse.finish() {
            self.event(event, &mut out)?;
        }
        out.extend(self.usage_chunk());
        Ok(out)
    }
}
