//! Google AI Studio's Gemini API (`generativelanguage` v1beta): OpenAI chat completions in,
//! `generateContent` / `streamGenerateContent?alt=sse` out, OpenAI answers back; embeddings
//! through `batchEmbedContents`.
//!
//! The key goes in the `x-goog-api-key` header, never in a `key=` query parameter, so it never
//! sits in a URL (or in a log line that prints one). Every translation is a pure function of
//! its inputs (ids and clocks passed in), so the tests pin the exact wire shapes. Both sides
//! are typed: Gemini's bodies are the serde types of `api::gemini`, OpenAI's those of
//! `api::openai`; a request is serialized once, and answers are read straight from the bytes.
//!
//! The mapping, in short:
//! - `system` / `developer` messages -> `systemInstruction.parts`; `user` -> `user`,
//!   `assistant` -> `model`, `tool` -> a `user` turn of `functionResponse` parts; consecutive
//!   turns of one role are merged, so roles alternate as Gemini wants.
//! - text -> `{text}`; image data URLs -> `inlineData`; other image URLs -> `fileData`.
//! - `tools` -> `functionDeclarations`; `tool_choice` -> `toolConfig.functionCallingConfig`.
//! - sampling parameters -> `generationConfig`; `response_format` -> `responseMimeType`
//!   (+ `responseSchema`, cleaned of the JSON Schema keys Gemini's schema subset rejects).
//! - `reasoning_effort` (or litellm's `thinking`) -> `generationConfig.thinkingConfig`: a
//!   `thinkingLevel` on Gemini 3, a `thinkingBudget` before, thoughts included. Thought parts
//!   come back as `reasoning_content`; each `thoughtSignature` as a signed `thinking_blocks`
//!   entry, which an assistant turn hands back on its first function call (or its last text).

use super::reasoning::{self, Ask, Effort};
use super::translate::{
    embedding_value, error_kind, error_message, wants_base64, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest,
};
use crate::api::gemini::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Blob, Candidate, Content, EmbedContentRequest, ErrorBody,
    ErrorDetail, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse, FunctionResult,
    GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part, PartData, PromptFeedback, StreamEvent,
    ThinkingConfig, Tool, ToolConfig, UsageMetadata,
};
use crate::api::openai::{
    self, AssistantMessage, ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChatUsage, Choice, ChunkChoice, Delta,
    EmbeddingRequest, FunctionDelta, ThinkingBlock, ToolCall, ToolCallDelta,
};
use crate::exchange::{parse_json, ApiError};
use crate::providers::deployment::Deployment;
use crate::streaming::sse;
use crate::tokenizer;
use axum::http::StatusCode;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The Gemini provider.
pub struct Gemini;

/// The one instance `providers::chat` calls.
pub static PROVIDER: Gemini = Gemini;

/// Where Google AI Studio's Gemini API lives when a deployment sets no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://generativelanguage.googleapis.com";

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-goog-api-key";

str_map! {
    /// OpenAI message role -> Gemini `Content.role` (system and developer messages become
    /// `systemInstruction` instead; tool results are sent by the user side).
    pub fn role -> &'static str {
        "user" => "user",
        "assistant" => "model",
        "tool" | "function" => "user",
    }
}

str_map! {
    /// Gemini `finishReason` -> OpenAI `finish_reason`.
    pub fn finish_reason -> &'static str {
        "STOP" => "stop",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ => "stop",
    }
}

str_map! {
    /// OpenAI `tool_choice` string -> Gemini `functionCallingConfig.mode`.
    pub fn tool_choice_mode -> &'static str {
        "auto" => "AUTO",
        "none" => "NONE",
        "required" => "ANY",
    }
}

str_map! {
    /// A file extension (lowercase) -> the MIME type Gemini is told for a `fileData` URL.
    pub fn mime_type_of_extension -> &'static str {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

/// JSON Schema keywords outside Gemini's schema subset (the API refuses requests that use them).
pub const UNSUPPORTED_SCHEMA_KEYS: &[&str] =
    &["$schema", "$id", "$comment", "additionalProperties", "unevaluatedProperties", "patternProperties", "strict"];

// ---------------------------------------------------------------------------------------------
// Requests

fn bad(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

fn bad_gateway(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("bad_upstream_response")
}

/// An upstream body serde could not read as `what`: not JSON at all, or JSON of another shape.
fn unreadable(what: &str, e: &serde_json::Error) -> ApiError {
    if e.is_data() {
        bad_gateway(format!("gemini: {what} is not of the expected shape: {e}"))
    } else {
        bad_gateway(format!("gemini: {what} is not JSON: {e}"))
    }
}

/// A parameter of the request, `null` counting as absent.
fn param<'a>(req: &'a ChatRequest, name: &str) -> Option<&'a Value> {
    req.extra.get(name).filter(|v| !v.is_null())
}

/// The `generateContent` body for an OpenAI chat request to `model` (the same body serves
/// streams; the URL says which method is called).
pub fn generate_content_body<'a>(req: &'a ChatRequest, model: &str) -> Result<GenerateContentRequest<'a>, ApiError> {
    let (system, mut contents) = contents(&req.messages)?;
    if contents.is_empty() {
        return Err(bad("gemini needs at least one user or assistant message with content", "messages"));
    }
    if gemini_major(model).is_some_and(|major| major >= 3) {
        vouch_for_unsigned_calls(&mut contents);
    }
    let tools = tools(req)?;
    let tool_config = tool_config(req)?;
    let mut config = generation_config(req)?;
    config.thinking_config = reasoning::ask(&req.extra)?.and_then(|ask| thinking_config(model, &ask));
    Ok(GenerateContentRequest {
        system_instruction: (!system.is_empty()).then_some(Content { role: None, parts: system }),
        contents,
        tools,
        tool_config,
        generation_config: (config != GenerationConfig::default()).then_some(config),
    })
}

/// The system parts and the alternating `contents` turns of a conversation.
fn contents(messages: &[ChatMessage]) -> Result<(Vec<Part<'_>>, Vec<Content<'_>>), ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Content<'_>> = Vec::new();
    // tool_call_id -> function name, from the assistant turns seen so far.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role == "system" || m.role == "developer" {
            let text = message_text(m);
            if !text.is_empty() {
                system.push(PartData::Text(text).into());
            }
            continue;
        }
        let Some(gemini_role) = role(&m.role) else {
            return Err(bad(
                format!(
                    "messages[{i}].role {:?} is not supported by gemini; use system, developer, user, assistant or tool",
                    m.role
                ),
                format!("messages[{i}].role"),
            ));
        };
        let parts = match m.role.as_str() {
            "tool" | "function" => vec![function_response(m, i, &call_names)?],
            "assistant" => assistant_parts(m, i, &mut call_names)?,
            _ => content_parts(m.content.as_ref(), i)?,
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role.as_deref() == Some(gemini_role) => last.parts.extend(parts),
            _ => turns.push(Content { role: Some(Cow::Borrowed(gemini_role)), parts }),
        }
    }
    Ok((system, turns))
}

/// A message's text, borrowed when its content is a plain string.
fn message_text(m: &ChatMessage) -> Cow<'_, str> {
    match &m.content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        _ => Cow::Owned(m.text()),
    }
}

/// The parts of a message's `content`: a string, or a list of OpenAI content parts.
fn content_parts(content: Option<&Value>, i: usize) -> Result<Vec<Part<'_>>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![PartData::Text(Cow::Borrowed(s)).into()]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                out.extend(content_part(part, i, j)?.map(Part::from));
            }
            Ok(out)
        }
        Some(_) => {
            Err(bad("content must be a string, a list of content parts, or null", format!("messages[{i}].content")))
        }
    }
}

/// One OpenAI content part (`messages[i].content[j]`) as a Gemini part (none for empty text).
fn content_part(part: &Value, i: usize, j: usize) -> Result<Option<PartData<'_>>, ApiError> {
    // The parameter path is only spelled out when a part is refused.
    let at = |field: &str| format!("messages[{i}].content[{j}]{field}");
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" | "refusal" => {
            let text = part.get(kind).and_then(Value::as_str).unwrap_or_default();
            Ok((!text.is_empty()).then_some(PartData::Text(Cow::Borrowed(text))))
        }
        "image_url" => {
            let image = part.get("image_url");
            let url = image
                .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                .ok_or_else(|| bad("an image_url part needs image_url.url", at(".image_url")))?;
            media_part(url, || at(".image_url.url")).map(Some)
        }
        "input_audio" => {
            let audio = part.get("input_audio");
            let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
            let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str).unwrap_or("wav");
            let data = data.ok_or_else(|| bad("an input_audio part needs input_audio.data", at(".input_audio")))?;
            let mime_type = Cow::Owned(format!("audio/{format}"));
            Ok(Some(PartData::InlineData(Blob { mime_type, data: Cow::Borrowed(data) })))
        }
        "file" => {
            let data = part
                .pointer("/file/file_data")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("gemini takes file parts as file.file_data data URLs", at(".file")))?;
            media_part(data, || at(".file.file_data")).map(Some)
        }
        other => Err(bad(
            format!("content part type {other:?} is not supported by gemini; use text, image_url, input_audio or file"),
            at(".type"),
        )),
    }
}

/// A data URL -> `inlineData`; any other URL -> `fileData` with a MIME type guessed from its
/// extension (`image/jpeg` when there is none to go by).
fn media_part(url: &str, param: impl Fn() -> String) -> Result<PartData<'_>, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) =
            rest.split_once(',').ok_or_else(|| bad("a data URL needs a comma before its data", param()))?;
        let Some(mime) = meta.strip_suffix(";base64") else {
            return Err(bad("gemini takes base64 data URLs only (data:MIME;base64,DATA)", param()));
        };
        let mime = if mime.is_empty() { "application/octet-stream" } else { mime };
        return Ok(PartData::InlineData(Blob { mime_type: Cow::Borrowed(mime), data: Cow::Borrowed(data) }));
    }
    Ok(PartData::FileData(FileData { mime_type: Cow::Borrowed(guess_mime_type(url)), file_uri: Cow::Borrowed(url) }))
}

/// The MIME type of a URL's file, from the extension of its path.
pub fn guess_mime_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.') {
        Some((_, ext)) => mime_type_of_extension(&ext.to_ascii_lowercase()),
        None => mime_type_of_extension(""),
    }
}

/// An assistant turn: its content, then a `functionCall` part per tool call; the signatures
/// of its thinking on its function calls, in order (or, without calls, on its last part), as
/// Gemini gave them.
fn assistant_parts<'a>(
    m: &'a ChatMessage,
    i: usize,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Vec<Part<'a>>, ApiError> {
    let mut parts = said_parts(m, i, call_names)?;
    let blocks = m
        .thinking_blocks()
        .map_err(|e| bad(format!("thinking_blocks: {e}"), format!("messages[{i}].thinking_blocks")))?;
    let mut signatures = blocks.into_iter().filter_map(|block| match block {
        ThinkingBlock::Thinking { signature: Some(signature), .. } if !signature.is_empty() => Some(signature),
        _ => None,
    });
    let calls = parts.iter().filter(|p| matches!(p.data, PartData::FunctionCall(_))).count();
    for part in parts.iter_mut() {
        let takes = if calls > 0 { matches!(part.data, PartData::FunctionCall(_)) } else { false };
        if takes {
            part.thought_signature = signatures.next().map(Cow::Owned);
        }
    }
    if calls == 0 {
        if let Some(last) = parts.last_mut() {
            last.thought_signature = signatures.next().map(Cow::Owned);
        }
    }
    Ok(parts)
}

/// An assistant turn's content, then a `functionCall` part per tool call.
fn said_parts<'a>(
    m: &'a ChatMessage,
    i: usize,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Vec<Part<'a>>, ApiError> {
    let mut parts = content_parts(m.content.as_ref(), i)?;
    let Some(calls) = m.extra.get("tool_calls").filter(|v| !v.is_null()) else {
        return Ok(parts);
    };
    let calls =
        calls.as_array().ok_or_else(|| bad("tool_calls must be a list", format!("messages[{i}].tool_calls")))?;
    for (j, call) in calls.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].tool_calls[{j}].function.{field}");
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool call needs function.name", at("name")))?;
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
        let args = if arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(bad("function.arguments must be a JSON object for gemini", at("arguments"))),
            }
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            call_names.insert(id, name);
        }
        parts.push(PartData::FunctionCall(FunctionCall { name: Cow::Borrowed(name), args }).into());
    }
    Ok(parts)
}

/// A `tool` (or legacy `function`) message -> a `functionResponse` part named after the call it
/// answers. The output goes in `response.content`: the parsed object when it is a JSON object,
/// else the text.
fn function_response<'a>(
    m: &'a ChatMessage,
    i: usize,
    call_names: &HashMap<&'a str, &'a str>,
) -> Result<Part<'a>, ApiError> {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str);
    let name = id
        .and_then(|id| call_names.get(id).copied())
        .or_else(|| m.extra.get("name").and_then(Value::as_str))
        .ok_or_else(|| {
            let what = match id {
                Some(id) => format!("tool_call_id {id:?} matches no earlier assistant tool call"),
                None => "a tool message needs the tool_call_id of an earlier assistant tool call".to_owned(),
            };
            bad(what, format!("messages[{i}].tool_call_id"))
        })?;
    let text = message_text(m);
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => Value::String(text.into_owned()),
    };
    Ok(PartData::FunctionResponse(FunctionResponse { name: Cow::Borrowed(name), response: FunctionResult { content } })
        .into())
}

/// `tools` -> `[{functionDeclarations: [...]}]`.
fn tools(req: &ChatRequest) -> Result<Option<Vec<Tool<'_>>>, ApiError> {
    let Some(tools) = param(req, "tools") else { return Ok(None) };
    let tools = tools.as_array().ok_or_else(|| bad("tools must be a list", "tools"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(bad(
                format!("tool type {kind:?} is not supported by gemini; use function tools"),
                format!("tools[{i}].type"),
            ));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a function tool needs function.name", format!("tools[{i}].function.name")))?;
        // Gemini refuses an OBJECT schema without properties: a function without parameters
        // is declared without a schema.
        let parameters = function
            .get("parameters")
            .filter(|p| !p.is_null())
            .filter(|p| p.get("properties").and_then(Value::as_object).is_some_and(|props| !props.is_empty()))
            .map(gemini_schema);
        declarations.push(FunctionDeclaration {
            name: Cow::Borrowed(name),
            description: function.get("description").filter(|d| !d.is_null()),
            parameters,
        });
    }
    if declarations.is_empty() {
        return Ok(None);
    }
    Ok(Some(vec![Tool { function_declarations: declarations }]))
}

/// `tool_choice` -> `{functionCallingConfig: {mode, allowedFunctionNames?}}`.
fn tool_config(req: &ChatRequest) -> Result<Option<ToolConfig<'_>>, ApiError> {
    let Some(choice) = param(req, "tool_choice") else { return Ok(None) };
    let config = match choice {
        Value::String(s) => {
            let mode = tool_choice_mode(s)
                .ok_or_else(|| bad(format!("tool_choice {s:?} is not one of auto, none, required"), "tool_choice"))?;
            FunctionCallingConfig { mode: Cow::Borrowed(mode), allowed_function_names: None }
        }
        Value::Object(_) => {
            let name = choice.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    "tool_choice names a function as {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    "tool_choice",
                )
            })?;
            FunctionCallingConfig {
                mode: Cow::Borrowed("ANY"),
                allowed_function_names: Some(vec![Cow::Borrowed(name)]),
            }
        }
        _ => return Err(bad("tool_choice must be a string or an object", "tool_choice")),
    };
    Ok(Some(ToolConfig { function_calling_config: config }))
}

/// The sampling parameters -> `generationConfig` (all `None` when the request sets none).
fn generation_config(req: &ChatRequest) -> Result<GenerationConfig<'_>, ApiError> {
    let mut config = GenerationConfig {
        max_output_tokens: param(req, "max_completion_tokens").or_else(|| param(req, "max_tokens")),
        temperature: param(req, "temperature"),
        top_p: param(req, "top_p"),
        stop_sequences: stop_sequences(req)?,
        candidate_count: req.n,
        seed: param(req, "seed"),
        presence_penalty: param(req, "presence_penalty"),
        frequency_penalty: param(req, "frequency_penalty"),
        ..GenerationConfig::default()
    };
    if let Some(format) = param(req, "response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => config.response_mime_type = Some(Cow::Borrowed("application/json")),
            Some("json_schema") => {
                config.response_mime_type = Some(Cow::Borrowed("application/json"));
                config.response_schema =
                    format.pointer("/json_schema/schema").filter(|s| !s.is_null()).map(gemini_schema);
            }
            _ => {
                return Err(bad(
                    "response_format.type must be text, json_object or json_schema",
                    "response_format.type",
                ))
            }
        }
    }
    Ok(config)
}

/// Gemini's `thinkingConfig` for what a request asks of `model`. Gemini 3 takes a level
/// (its Flash models all four, the others `low` and `high` only; `none` is the lowest, its
/// thoughts left out); earlier models a budget (`none` is 0: off where the model allows it).
pub fn thinking_config(model: &str, ask: &Ask) -> Option<ThinkingConfig> {
    let effort = match ask {
        Ask::Thinking(t) => {
            let on = t.is_on() && t.budget_tokens != Some(0);
            return Some(ThinkingConfig {
                thinking_budget: t.budget_tokens,
                thinking_level: None,
                include_thoughts: on.then_some(true),
            });
        }
        Ask::Effort(effort) => *effort,
    };
    let include_thoughts = Some(effort != Effort::None);
    if gemini_major(model).is_some_and(|major| major >= 3) {
        let flash = model.contains("flash");
        let level = match effort {
            Effort::None | Effort::Minimal if flash => "minimal",
            Effort::Medium if flash => "medium",
            Effort::None | Effort::Minimal | Effort::Low => "low",
            Effort::Medium | Effort::High => "high",
        };
        return Some(ThinkingConfig { thinking_budget: None, thinking_level: Some(level), include_thoughts });
    }
    let budget = match effort {
        Effort::None => 0,
        // litellm's 128 is under the smallest budget some 2.5 models take (Flash-Lite's 512).
        Effort::Minimal => GEMINI_MINIMAL_BUDGET,
        effort => reasoning::budget(effort).unwrap_or(0),
    };
    Some(ThinkingConfig { thinking_budget: Some(budget), thinking_level: None, include_thoughts })
}

/// What Gemini 3 takes in place of a thought signature it never gave (history from another
/// model, or a client that did not hand the signature back); Google documents it for this.
pub const UNSIGNED_CALL_SIGNATURE: &str = "skip_thought_signature_validator";

/// Gemini 3 refuses a model turn's function calls without the signature of its thinking: a
/// turn of calls none of which is signed gets [`UNSIGNED_CALL_SIGNATURE`] on its first.
fn vouch_for_unsigned_calls(contents: &mut [Content<'_>]) {
    for turn in contents.iter_mut().filter(|c| c.role.as_deref() == Some("model")) {
        if turn.parts.iter().any(|p| p.thought_signature.is_some()) {
            continue;
        }
        if let Some(first) = turn.parts.iter_mut().find(|p| matches!(p.data, PartData::FunctionCall(_))) {
            first.thought_signature = Some(Cow::Borrowed(UNSIGNED_CALL_SIGNATURE));
        }
    }
}

/// The thinking budget of `minimal` effort on Gemini 2.5: the least every 2.5 model takes.
pub const GEMINI_MINIMAL_BUDGET: u64 = 512;

/// The major version of a `gemini-N...` model name.
fn gemini_major(model: &str) -> Option<u32> {
    let (_, rest) = model.split_once("gemini-")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `stop` (a string or a list of strings) -> `stopSequences` (none for an empty list).
fn stop_sequences(req: &ChatRequest) -> Result<Option<Vec<Cow<'_, str>>>, ApiError> {
    let Some(stop) = param(req, "stop") else { return Ok(None) };
    let sequences: Vec<Cow<'_, str>> = match stop {
        Value::String(s) => vec![Cow::Borrowed(s)],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(Cow::Borrowed))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("stop must be a string or a list of strings", "stop"))?,
        _ => return Err(bad("stop must be a string or a list of strings", "stop")),
    };
    Ok((!sequences.is_empty()).then_some(sequences))
}

/// A JSON Schema in Gemini's schema subset, at every depth: the keywords it refuses removed
/// (property names are kept even when they spell one of them), and a nullable type written
/// `"type": ["T", "null"]` rewritten `"type": "T", "nullable": true`.
pub fn gemini_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .filter(|(key, _)| !UNSUPPORTED_SCHEMA_KEYS.contains(&key.as_str()))
                .map(|(key, value)| {
                    let value = match (key.as_str(), value) {
                        ("properties" | "$defs" | "definitions", Value::Object(named)) => {
                            Value::Object(named.iter().map(|(name, sub)| (name.clone(), gemini_schema(sub))).collect())
                        }
                        _ => gemini_schema(value),
                    };
                    (key.clone(), value)
                })
                .collect();
            if let Some(Value::Array(types)) = out.get("type") {
                let nullable = types.iter().any(|t| t == "null");
                let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                if let [only] = rest.as_slice() {
                    out.insert("type".into(), only.clone());
                    if nullable {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(gemini_schema).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// A deterministic tool call id: `call_` and 24 hex digits of a hash of the answer id, the
/// candidate and the call's position (FNV-1a, then a SplitMix64 finaliser so that ids of
/// neighbouring calls share no visible prefix).
pub fn tool_call_id(answer_id: &str, candidate: u64, call: usize) -> String {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let seed = format!("{answer_id}/{candidate}/{call}");
    let fnv = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let (a, b) = (mix(fnv), mix(fnv ^ 0x9e37_79b9_7f4a_7c15));
    format!("call_{a:016x}{:08x}", b >> 32)
}

/// Gemini `usageMetadata` -> OpenAI `usage` (thinking tokens count as completion tokens, as
/// OpenAI counts reasoning tokens). Sums saturate: the counts are the upstream's to choose.
pub fn usage(meta: &UsageMetadata) -> ChatUsage {
    let prompt = meta.prompt_token_count.unwrap_or(0);
    let thoughts = meta.thoughts_token_count.unwrap_or(0);
    let completion = meta.candidates_token_count.unwrap_or(0).saturating_add(thoughts);
    let total = meta.total_token_count.unwrap_or(prompt.saturating_add(completion));
    let mut usage = ChatUsage { total_tokens: total, ..ChatUsage::new(prompt, completion) };
    if let Some(cached) = meta.cached_content_token_count {
        usage = usage.cached(cached);
    }
    if thoughts > 0 {
        usage = usage.reasoning(thoughts);
    }
    usage
}

/// What one candidate's parts say: its visible text, its function calls, its thought
/// summaries and the signed blocks of its thinking.
#[derive(Default)]
struct Parts<'c, 'a> {
    text: String,
    calls: Vec<&'c FunctionCall<'a>>,
    thoughts: String,
    thinking: Vec<ThinkingBlock>,
}

fn read_parts<'c, 'a>(candidate: &'c Candidate<'a>) -> Parts<'c, 'a> {
    let mut out = Parts::default();
    // The thought text since the last signature: the text of the next signed block.
    let mut unsigned = 0;
    for piece in pieces(candidate) {
        match piece {
            Piece::Thought(text) => out.thoughts.push_str(&text),
            Piece::Signature(signature) => {
                out.thinking.push(ThinkingBlock::signed(&out.thoughts[unsigned..], signature));
                unsigned = out.thoughts.len();
            }
            Piece::Text(text) => out.text.push_str(&text),
            Piece::Call(call) => out.calls.push(call),
        }
    }
    out
}

/// One thing a candidate's parts say, in their order.
enum Piece<'c, 'a> {
    /// A thought summary's text.
    Thought(Cow<'c, str>),
    /// The signature of the thinking so far: after a thought part's text, before another
    /// part's content.
    Signature(&'c str),
    Text(Cow<'c, str>),
    Call(&'c FunctionCall<'a>),
}

/// A candidate's parts as pieces, adjacent texts (and thoughts) joined.
fn pieces<'c, 'a>(candidate: &'c Candidate<'a>) -> Vec<Piece<'c, 'a>> {
    let parts = candidate.content.as_ref().and_then(|c| c.parts.as_deref()).unwrap_or_default();
    let mut out: Vec<Piece<'c, 'a>> = Vec::with_capacity(parts.len());
    let push_text = |out: &mut Vec<Piece<'c, 'a>>, text: &'c str, thought: bool| match (out.last_mut(), thought) {
        (Some(Piece::Thought(joined)), true) | (Some(Piece::Text(joined)), false) => joined.to_mut().push_str(text),
        (_, true) => out.push(Piece::Thought(Cow::Borrowed(text))),
        (_, false) => out.push(Piece::Text(Cow::Borrowed(text))),
    };
    for part in parts {
        let signature = part.thought_signature.as_deref().filter(|s| !s.is_empty());
        let thought = part.thought == Some(true);
        if let (Some(signature), false) = (signature, thought) {
            out.push(Piece::Signature(signature));
        }
        if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
            push_text(&mut out, text, thought);
        }
        if let (Some(signature), true) = (signature, thought) {
            out.push(Piece::Signature(signature));
        }
        if let Some(call) = &part.function_call {
            out.push(Piece::Call(call));
        }
    }
    out
}

/// A function call's arguments as OpenAI's JSON text (`{}` when the upstream gave none).
fn arguments(call: &FunctionCall<'_>) -> String {
    match &call.args {
        Value::Null => "{}".to_owned(),
        args => args.to_string(),
    }
}

fn tool_call(id: String, call: &FunctionCall<'_>) -> ToolCall {
    ToolCall {
        id,
        kind: "function".to_owned(),
        function: openai::FunctionCall { name: call.name.clone().into_owned(), arguments: arguments(call) },
    }
}

/// The OpenAI `finish_reason` of a candidate: STOP (or none given) with function calls is
/// `tool_calls`.
fn candidate_finish(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        None | Some("STOP") if has_calls => "tool_calls",
        None => "stop",
        Some(reason) => finish_reason(reason),
    }
}

fn candidate_index(candidate: &Candidate<'_>, position: usize) -> u32 {
    candidate.index.unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX))
}

fn blocked(feedback: Option<&PromptFeedback<'_>>) -> bool {
    feedback.is_some_and(|f| f.block_reason.is_some())
}

/// A `GenerateContentResponse`'s bytes as an OpenAI `chat.completion`.
pub fn to_openai(body: &[u8], model: &str, id: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    let answer: GenerateContentResponse<'_> = parse_json(body).map_err(|e| unreadable("the answer", &e))?;
    completion(&answer, model, id, created)
}

/// A `GenerateContentResponse` as an OpenAI `chat.completion`: a choice per candidate, or one
/// choice ended by the content filter when the prompt itself was blocked.
pub fn completion(
    answer: &GenerateContentResponse<'_>,
    model: &str,
    id: &str,
    created: u64,
) -> Result<ChatCompletion, ApiError> {
    let candidates = answer.candidates.as_deref().unwrap_or_default();
    let mut choices: Vec<Choice> =
        candidates.iter().enumerate().map(|(position, candidate)| choice(candidate, position, id)).collect();
    if choices.is_empty() {
        if !blocked(answer.prompt_feedback.as_ref()) {
            return Err(bad_gateway("gemini: the answer has neither candidates nor promptFeedback.blockReason"));
        }
        choices.push(Choice {
            index: 0,
            message: assistant_message(Some(String::new()), None),
            logprobs: Some(None),
            finish_reason: Some("content_filter".to_owned()),
            extra: Map::new(),
        });
    }
    Ok(ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion".to_owned(),
        created,
        model: model.to_owned(),
        choices,
        system_fingerprint: Some(None),
        usage: answer.usage_metadata.as_ref().map(usage),
        extra: Map::new(),
    })
}

/// One candidate as a choice: its text (null when it only calls functions) and its calls.
fn choice(candidate: &Candidate<'_>, position: usize, id: &str) -> Choice {
    let index = candidate_index(candidate, position);
    let Parts { text, calls, thoughts, thinking } = read_parts(candidate);
    let finish = candidate_finish(candidate.finish_reason.as_deref(), !calls.is_empty());
    let content = if text.is_empty() && !calls.is_empty() { None } else { Some(text) };
    let tool_calls = (!calls.is_empty()).then(|| {
        calls.iter().enumerate().map(|(k, call)| tool_call(tool_call_id(id, u64::from(index), k), call)).collect()
    });
    Choice {
        index,
        message: assistant_message(content, tool_calls).thinking(thoughts, thinking),
        logprobs: Some(None),
        finish_reason: Some(finish.to_owned()),
        extra: Map::new(),
    }
}

/// OpenAI's schema has `refusal` on every assistant message (`null` when there is none).
fn assistant_message(content: Option<String>, tool_calls: Option<Vec<ToolCall>>) -> AssistantMessage {
    AssistantMessage::new(content, tool_calls)
}

// ---------------------------------------------------------------------------------------------
// Streams

#[derive(Debug, Default)]
struct CandidateState {
    started: bool,
    calls: usize,
    finished: bool,
}

/// Gemini `alt=sse` events -> OpenAI `chat.completion.chunk`s, each event's chunks out as soon
/// as the event is complete.
pub struct StreamDecoder {
    meta: StreamMeta,
    sse: sse::Decoder,
    candidates: BTreeMap<u32, CandidateState>,
    usage: Option<ChatUsage>,
}

impl StreamDecoder {
    pub fn new(meta: StreamMeta) -> StreamDecoder {
        StreamDecoder { meta, sse: sse::Decoder::new(), candidates: BTreeMap::new(), usage: None }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        self.meta.chunk(choices, true)
    }

    /// A chunk of one choice; the first of each choice carries the role (and a content, empty
    /// or, before tool calls, null).
    fn delta(&mut self, index: u32, mut delta: Delta, finish: Option<&str>) -> ChatChunk {
        let state = self.candidates.entry(index).or_default();
        if !state.started {
            state.started = true;
            delta.role = Some("assistant".to_owned());
            if delta.content.is_none() {
                delta.content = Some(if delta.tool_calls.is_some() { None } else { Some(String::new()) });
            }
        }
        self.chunk(vec![super::translate::delta_choice(index, delta, finish)])
    }

    fn finish_chunk(&mut self, index: u32, reason: &str) -> ChatChunk {
        self.candidates.entry(index).or_default().finished = true;
        self.delta(index, Delta::default(), Some(reason))
    }

    /// The chunks of one `data:` event; an error event ends the stream with its error.
    fn event(&mut self, data: &str) -> Result<Vec<ChatChunk>, ApiError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let event: StreamEvent<'_> = serde_json::from_str(data).map_err(|e| unreadable("a stream event", &e))?;
        if let Some(error) = &event.error {
            let status = error
                .code
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            return Err(error_from_detail(status, Some(error), data.as_bytes()));
        }
        if let Some(meta) = &event.usage_metadata {
            self.usage = Some(usage(meta));
        }
        let candidates = event.candidates.as_deref().unwrap_or_default();
        let mut chunks = Vec::new();
        if candidates.is_empty()
            && blocked(event.prompt_feedback.as_ref())
            && !self.candidates.get(&0).is_some_and(|s| s.finished)
        {
            chunks.push(self.finish_chunk(0, "content_filter"));
        }
        for (position, candidate) in candidates.iter().enumerate() {
            self.candidate_chunks(candidate, position, &mut chunks);
        }
        Ok(chunks)
    }

    /// One candidate's piece of an event, in order: thoughts, signatures, text, each function
    /// call whole; then its finish.
    fn candidate_chunks(&mut self, candidate: &Candidate<'_>, position: usize, chunks: &mut Vec<ChatChunk>) {
        let index = candidate_index(candidate, position);
        for piece in pieces(candidate) {
            let delta = match piece {
                Piece::Thought(text) => Delta {
                    reasoning_content: Some(text.to_string()),
                    thinking_blocks: Some(vec![ThinkingBlock::text(text)]),
                    ..Delta::default()
                },
                Piece::Signature(signature) => {
                    Delta { thinking_blocks: Some(vec![ThinkingBlock::signed("", signature)]), ..Delta::default() }
                }
                Piece::Text(text) => Delta { content: Some(Some(text.into_owned())), ..Delta::default() },
                Piece::Call(call) => self.call_delta(index, call),
            };
            chunks.push(self.delta(index, delta, None));
        }
        let reason = candidate.finish_reason.as_deref().filter(|r| !r.is_empty());
        let state = self.candidates.entry(index).or_default();
        if let (Some(reason), false) = (reason, state.finished) {
            let has_calls = state.calls > 0;
            chunks.push(self.finish_chunk(index, candidate_finish(Some(reason), has_calls)));
        }
    }

    /// A function call of candidate `index`, whole, as the next of its tool calls.
    fn call_delta(&mut self, index: u32, call: &FunctionCall<'_>) -> Delta {
        let state = self.candidates.entry(index).or_default();
        let k = state.calls;
        state.calls += 1;
        let ToolCall { id, kind, function } = tool_call(tool_call_id(&self.meta.id, u64::from(index), k), call);
        let call = ToolCallDelta {
            index: u32::try_from(k).unwrap_or(u32::MAX),
            id: Some(id),
            kind: Some(kind),
            function: Some(FunctionDelta { name: Some(function.name), arguments: Some(function.arguments) }),
        };
        Delta { tool_calls: Some(vec![call]), ..Delta::default() }
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
        // A choice the upstream never finished ends here.
        let open: Vec<(u32, usize)> = self
            .candidates
            .iter()
            .filter(|(_, s)| s.started && !s.finished)
            .map(|(index, s)| (*index, s.calls))
            .collect();
        for (index, calls) in open {
            chunks.push(self.finish_chunk(index, candidate_finish(None, calls > 0)));
        }
        if let Some(usage) = self.usage.take() {
            let mut chunk = self.chunk(Vec::new());
            chunk.usage = Some(Some(usage));
            chunks.push(chunk);
        }
        Ok(chunks)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A Google error body (`{"error": {"code", "message", "status"}}`) as an OpenAI-style error
/// with the upstream's status: message prefixed `gemini: `, code the Google status name. The
/// key, should a message ever quote it, is redacted. A body of another shape still gives its
/// text as the message.
pub fn upstream_error(status: StatusCode, body: &[u8]) -> ApiError {
    let parsed: Option<ErrorBody<'_>> = parse_json(body).ok();
    error_from_detail(status, parsed.as_ref().and_then(ErrorBody::detail), body)
}

fn error_from_detail(status: StatusCode, detail: Option<&ErrorDetail<'_>>, body: &[u8]) -> ApiError {
    let mut message = match detail.and_then(|d| d.message.as_deref()) {
        Some(message) => message.to_owned(),
        None => error_message(body),
    };
    if message.is_empty() {
        message = format!("upstream answered {status}");
    }
    let mut api_error = ApiError::new(status, error_kind(status), format!("gemini: {message}"));
    if let Some(code) = detail.and_then(|d| d.status.as_deref()) {
        api_error = api_error.with_code(code);
    }
    api_error
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// The `batchEmbedContents` body: one request per input.
pub fn batch_embed_body(
    req: &EmbeddingRequest,
    upstream_model: &str,
) -> Result<BatchEmbedContentsRequest<'static>, ApiError> {
    let inputs = req.inputs();
    if inputs.is_empty() {
        return Err(bad("input must not be empty", "input"));
    }
    let model = format!("models/{upstream_model}");
    let requests = inputs
        .into_iter()
        .map(|text| EmbedContentRequest {
            model: Cow::Owned(model.clone()),
            content: Content { role: None, parts: vec![PartData::Text(Cow::Owned(text)).into()] },
            output_dimensionality: req.dimensions,
        })
        .collect();
    Ok(BatchEmbedContentsRequest { requests })
}

/// `POST /v1/embeddings` on a Gemini deployment: `batchEmbedContents`, answered as OpenAI's list.
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

/// `POST {api_base}/v1beta/models/{model}:batchEmbedContents` for an OpenAI embeddings request.
pub fn embedding_request(req: &EmbeddingRequest, d: &Deployment, url: String) -> Result<UpstreamRequest, ApiError> {
    wants_base64(req)?;
    let body = batch_embed_body(req, &d.upstream_model)?;
    Ok(UpstreamRequest::post_json(url, &body))
}

/// A `batchEmbedContents` answer as an OpenAI embeddings `list` (floats, or base64 of
/// little-endian f32 when asked), with prompt tokens estimated from the inputs.
pub fn embedding_response(body: &[u8], req: &EmbeddingRequest, d: &Deployment) -> Result<Value, ApiError> {
    let base64 = wants_base64(req)?;
    let answer: BatchEmbedContentsResponse = parse_json(body).map_err(|e| unreadable("the embeddings answer", &e))?;
    let embeddings =
        answer.embeddings.ok_or_else(|| bad_gateway("gemini: embeddings answer has no embeddings list"))?;
    let inputs = req.inputs();
    if embeddings.len() != inputs.len() {
        return Err(bad_gateway(format!(
            "gemini: {} embeddings came back for {} inputs",
            embeddings.len(),
            inputs.len()
        )));
    }
    let mut data = Vec::with_capacity(embeddings.len());
    for (i, e) in embeddings.into_iter().enumerate() {
        let values = e.values.ok_or_else(|| bad_gateway(format!("gemini: embedding {i} has no values")))?;
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding_value(&values, base64)}));
    }
    let tokens: u64 = inputs.iter().map(|t| tokenizer::count(t)).sum();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": d.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

// ---------------------------------------------------------------------------------------------
// The provider

impl ChatProvider for Gemini {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        _stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = generate_content_body(req, &d.upstream_model)?;
        Ok(UpstreamRequest::post_json(url, &body))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        to_openai(body, &d.upstream_model, &super::chat::new_chat_id(), crate::clock::unix_now())
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(StreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        upstream_error(status, body)
    }
}
