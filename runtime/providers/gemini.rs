//! Google AI Studio's Gemini API (`generativelanguage` v1beta): OpenAI chat completions in,
//! `generateContent` / `streamGenerateContent?alt=sse` out, OpenAI answers back; embeddings
//! through `batchEmbedContents`.
//!
//! The key goes in the `x-goog-api-key` header, never in a `key=` query parameter, so it never
//! sits in a URL (or in a log line that prints one). Every translation is a pure function of
//! its inputs (ids and clocks passed in), so the tests pin the exact wire shapes.
//!
//! The mapping, in short:
//! - `system` / `developer` messages -> `systemInstruction.parts`; `user` -> `user`,
//!   `assistant` -> `model`, `tool` -> a `user` turn of `functionResponse` parts; consecutive
//!   turns of one role are merged, so roles alternate as Gemini wants.
//! - text -> `{text}`; image data URLs -> `inlineData`; other image URLs -> `fileData`.
//! - `tools` -> `functionDeclarations`; `tool_choice` -> `toolConfig.functionCallingConfig`.
//! - sampling parameters -> `generationConfig`; `response_format` -> `responseMimeType`
//!   (+ `responseSchema`, cleaned of the JSON Schema keys Gemini's schema subset rejects).

use super::translate::{error_kind, error_message, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use crate::api::openai::{ChatChunk, ChatCompletion, ChatMessage, ChatRequest, EmbeddingRequest};
use crate::exchange::ApiError;
use crate::providers::deployment::Deployment;
use crate::streaming::sse;
use crate::tokenizer;
use axum::http::StatusCode;
use base64::Engine as _;
use ferrolite_codegen::str_map;
use serde_json::{json, Map, Value};
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

/// A parameter of the request, `null` counting as absent.
fn param<'a>(req: &'a ChatRequest, name: &str) -> Option<&'a Value> {
    req.extra.get(name).filter(|v| !v.is_null())
}

/// The `generateContent` body for an OpenAI chat request (the same body serves streams; the
/// URL says which method is called).
pub fn generate_content_body(req: &ChatRequest) -> Result<Value, ApiError> {
    let (system, contents) = contents(&req.messages)?;
    if contents.is_empty() {
        return Err(bad("gemini needs at least one user or assistant message with content", "messages"));
    }
    let mut body = Map::new();
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));
    if let Some(tools) = tools(req)? {
        body.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config(req)? {
        body.insert("toolConfig".into(), config);
    }
    let config = generation_config(req)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// The system parts and the alternating `contents` turns of a conversation.
fn contents(messages: &[ChatMessage]) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // tool_call_id -> function name, from the assistant turns seen so far.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role == "system" || m.role == "developer" {
            let text = m.text();
            if !text.is_empty() {
                system.push(json!({"text": text}));
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
            Some((last, previous)) if *last == gemini_role => previous.extend(parts),
            _ => turns.push((gemini_role, parts)),
        }
    }
    let contents = turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    Ok((system, contents))
}

/// The parts of a message's `content`: a string, or a list of OpenAI content parts.
fn content_parts(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ApiError> {
    let at = format!("messages[{i}].content");
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"text": s})]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}[{j}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                match kind {
                    "text" | "refusal" => {
                        let text = part.get(kind).and_then(Value::as_str).unwrap_or_default();
                        if !text.is_empty() {
                            out.push(json!({"text": text}));
                        }
                    }
                    "image_url" => {
                        let image = part.get("image_url");
                        let url = image
                            .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                            .ok_or_else(|| bad("an image_url part needs image_url.url", format!("{at}.image_url")))?;
                        out.push(media_part(url, &format!("{at}.image_url.url"))?);
                    }
                    "input_audio" => {
                        let audio = part.get("input_audio");
                        let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
                        let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str).unwrap_or("wav");
                        let data =
                            data.ok_or_else(|| bad("an input_audio part needs input_audio.data", format!("{at}.input_audio")))?;
                        out.push(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}));
                    }
                    "file" => {
                        let data = part.pointer("/file/file_data").and_then(Value::as_str).ok_or_else(|| {
                            bad("gemini takes file parts as file.file_data data URLs", format!("{at}.file"))
                        })?;
                        out.push(media_part(data, &format!("{at}.file.file_data"))?);
                    }
                    other => {
                        return Err(bad(
                            format!("content part type {other:?} is not supported by gemini; use text, image_url, input_audio or file"),
                            format!("{at}.type"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(bad("content must be a string, a list of content parts, or null", at)),
    }
}

/// A data URL -> `inlineData`; any other URL -> `fileData` with a MIME type guessed from its
/// extension (`image/jpeg` when there is none to go by).
fn media_part(url: &str, param: &str) -> Result<Value, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) =
            rest.split_once(',').ok_or_else(|| bad("a data URL needs a comma before its data", param.to_owned()))?;
        let Some(mime) = meta.strip_suffix(";base64") else {
            return Err(bad("gemini takes base64 data URLs only (data:MIME;base64,DATA)", param.to_owned()));
        };
        let mime = if mime.is_empty() { "application/octet-stream" } else { mime };
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    Ok(json!({"fileData": {"mimeType": guess_mime_type(url), "fileUri": url}}))
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

/// An assistant turn: its content, then a `functionCall` part per tool call.
fn assistant_parts(
    m: &ChatMessage,
    i: usize,
    call_names: &mut HashMap<String, String>,
) -> Result<Vec<Value>, ApiError> {
    let mut parts = content_parts(m.content.as_ref(), i)?;
    let Some(calls) = m.extra.get("tool_calls").filter(|v| !v.is_null()) else {
        return Ok(parts);
    };
    let calls =
        calls.as_array().ok_or_else(|| bad("tool_calls must be a list", format!("messages[{i}].tool_calls")))?;
    for (j, call) in calls.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool call needs function.name", format!("{at}.function.name")))?;
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
        let args = if arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(bad(
                        "function.arguments must be a JSON object for gemini",
                        format!("{at}.function.arguments"),
                    ))
                }
            }
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            call_names.insert(id.to_owned(), name.to_owned());
        }
        parts.push(json!({"functionCall": {"name": name, "args": args}}));
    }
    Ok(parts)
}

/// A `tool` (or legacy `function`) message -> a `functionResponse` part named after the call it
/// answers. The output goes in `response.content`: the parsed object when it is a JSON object,
/// else the text.
fn function_response(m: &ChatMessage, i: usize, call_names: &HashMap<String, String>) -> Result<Value, ApiError> {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str);
    let name = id
        .and_then(|id| call_names.get(id).map(String::as_str))
        .or_else(|| m.extra.get("name").and_then(Value::as_str))
        .ok_or_else(|| {
            let what = match id {
                Some(id) => format!("tool_call_id {id:?} matches no earlier assistant tool call"),
                None => "a tool message needs the tool_call_id of an earlier assistant tool call".to_owned(),
            };
            bad(what, format!("messages[{i}].tool_call_id"))
        })?;
    let text = m.text();
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => Value::String(text),
    };
    Ok(json!({"functionResponse": {"name": name, "response": {"content": content}}}))
}

/// `tools` -> `[{functionDeclarations: [...]}]`.
fn tools(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
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
        let mut declaration = Map::new();
        declaration.insert("name".into(), json!(name));
        if let Some(description) = function.get("description").filter(|d| !d.is_null()) {
            declaration.insert("description".into(), description.clone());
        }
        // Gemini refuses an OBJECT schema without properties: a function without parameters
        // is declared without a schema.
        if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null()) {
            let empty = parameters.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty);
            if !empty {
                declaration.insert("parameters".into(), gemini_schema(parameters));
            }
        }
        declarations.push(Value::Object(declaration));
    }
    if declarations.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!([{"functionDeclarations": declarations}])))
}

/// `tool_choice` -> `{functionCallingConfig: {mode, allowedFunctionNames?}}`.
fn tool_config(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let Some(choice) = param(req, "tool_choice") else { return Ok(None) };
    let config = match choice {
        Value::String(s) => {
            let mode = tool_choice_mode(s)
                .ok_or_else(|| bad(format!("tool_choice {s:?} is not one of auto, none, required"), "tool_choice"))?;
            json!({"mode": mode})
        }
        Value::Object(_) => {
            let name = choice.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    "tool_choice names a function as {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    "tool_choice",
                )
            })?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => return Err(bad("tool_choice must be a string or an object", "tool_choice")),
    };
    Ok(Some(json!({"functionCallingConfig": config})))
}

/// The sampling parameters -> `generationConfig` (empty when the request sets none).
fn generation_config(req: &ChatRequest) -> Result<Map<String, Value>, ApiError> {
    let mut config = Map::new();
    if let Some(max) = param(req, "max_completion_tokens").or_else(|| param(req, "max_tokens")) {
        config.insert("maxOutputTokens".into(), max.clone());
    }
    for (openai, gemini) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = param(req, openai) {
            config.insert(gemini.into(), v.clone());
        }
    }
    if let Some(stop) = param(req, "stop") {
        let sequences = match stop {
            Value::String(s) => vec![json!(s)],
            Value::Array(items) if items.iter().all(Value::is_string) => items.clone(),
            _ => return Err(bad("stop must be a string or a list of strings", "stop")),
        };
        if !sequences.is_empty() {
            config.insert("stopSequences".into(), Value::Array(sequences));
        }
    }
    if let Some(n) = req.n {
        config.insert("candidateCount".into(), json!(n));
    }
    for (openai, gemini) in
        [("seed", "seed"), ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")]
    {
        if let Some(v) = param(req, openai) {
            config.insert(gemini.into(), v.clone());
        }
    }
    if let Some(format) = param(req, "response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format.pointer("/json_schema/schema").filter(|s| !s.is_null()) {
                    config.insert("responseSchema".into(), gemini_schema(schema));
                }
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
/// OpenAI counts reasoning tokens).
pub fn usage(meta: &Value) -> Value {
    let count = |key: &str| meta.get(key).and_then(Value::as_u64);
    let prompt = count("promptTokenCount").unwrap_or(0);
    let thoughts = count("thoughtsTokenCount").unwrap_or(0);
    let completion = count("candidatesTokenCount").unwrap_or(0) + thoughts;
    let total = count("totalTokenCount").unwrap_or(prompt + completion);
    let mut usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total});
    if let Some(cached) = count("cachedContentTokenCount") {
        usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if thoughts > 0 {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": thoughts});
    }
    usage
}

/// What one candidate's parts say: its visible text and its function calls.
struct Parts {
    text: String,
    calls: Vec<(String, Value)>,
}

fn read_parts(candidate: &Value) -> Parts {
    let mut out = Parts { text: String::new(), calls: Vec::new() };
    let parts = candidate.pointer("/content/parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for part in parts {
        // Thought summaries are not part of the answer.
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            out.text.push_str(text);
        }
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let args = call.get("args").filter(|a| !a.is_null()).cloned().unwrap_or_else(|| json!({}));
            out.calls.push((name, args));
        }
    }
    out
}

fn tool_call(id: String, name: &str, args: &Value) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
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

fn candidate_index(candidate: &Value, position: usize) -> u64 {
    candidate.get("index").and_then(Value::as_u64).unwrap_or(position as u64)
}

fn blocked(body: &Value) -> bool {
    body.pointer("/promptFeedback/blockReason").is_some_and(|r| !r.is_null())
}

/// A `GenerateContentResponse` as an OpenAI `chat.completion` object.
pub fn to_openai(body: &Value, model: &str, id: &str, created: u64) -> Result<Value, ApiError> {
    let candidates = body.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    for (position, candidate) in candidates.iter().enumerate() {
        let index = candidate_index(candidate, position);
        let Parts { text, calls } = read_parts(candidate);
        let has_calls = !calls.is_empty();
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) });
        if !calls.is_empty() {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(k, (name, args))| tool_call(tool_call_id(id, index, k), name, args))
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let reason = candidate.get("finishReason").and_then(Value::as_str);
        choices.push(json!({
            "index": index,
            "message": message,
            "logprobs": null,
            "finish_reason": candidate_finish(reason, has_calls),
        }));
    }
    if choices.is_empty() {
        if !blocked(body) {
            return Err(bad_gateway("gemini: the answer has neither candidates nor promptFeedback.blockReason"));
        }
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let mut answer = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "system_fingerprint": null,
    });
    if let Some(meta) = body.get("usageMetadata").filter(|m| m.is_object()) {
        answer["usage"] = usage(meta);
    }
    Ok(answer)
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
    candidates: BTreeMap<u64, CandidateState>,
    usage: Option<Value>,
}

impl StreamDecoder {
    pub fn new(meta: StreamMeta) -> StreamDecoder {
        StreamDecoder { meta, sse: sse::Decoder::new(), candidates: BTreeMap::new(), usage: None }
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// A chunk of one choice; the first of each choice carries the role.
    fn delta(&mut self, index: u64, mut delta: Map<String, Value>, finish: Option<&str>) -> Value {
        let state = self.candidates.entry(index).or_default();
        if !state.started {
            state.started = true;
            let mut first = Map::new();
            first.insert("role".into(), json!("assistant"));
            if !delta.contains_key("content") {
                first.insert("content".into(), if delta.contains_key("tool_calls") { Value::Null } else { json!("") });
            }
            first.extend(delta);
            delta = first;
        }
        self.chunk(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]))
    }

    fn finish_chunk(&mut self, index: u64, reason: &str) -> Value {
        self.candidates.entry(index).or_default().finished = true;
        self.delta(index, Map::new(), Some(reason))
    }

    fn event(&mut self, data: &str) -> Result<Vec<Value>, ApiError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let event: Value =
            serde_json::from_str(data).map_err(|e| bad_gateway(format!("gemini: a stream event is not JSON: {e}")))?;
        if let Some(error) = event.get("error") {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            return Err(error_from_json(status, &event, data.as_bytes()));
        }
        if let Some(meta) = event.get("usageMetadata").filter(|m| m.is_object()) {
            self.usage = Some(usage(meta));
        }
        let candidates = event.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut chunks = Vec::new();
        if candidates.is_empty() && blocked(&event) && !self.candidates.get(&0).is_some_and(|s| s.finished) {
            chunks.push(self.finish_chunk(0, "content_filter"));
        }
        for (position, candidate) in candidates.iter().enumerate() {
            let index = candidate_index(candidate, position);
            let Parts { text, calls } = read_parts(candidate);
            if !text.is_empty() {
                let mut delta = Map::new();
                delta.insert("content".into(), json!(text));
                chunks.push(self.delta(index, delta, None));
            }
            for (name, args) in &calls {
                let state = self.candidates.entry(index).or_default();
                let k = state.calls;
                state.calls += 1;
                let mut call = Map::new();
                call.insert("index".into(), json!(k));
                if let Value::Object(fields) = tool_call(tool_call_id(&self.meta.id, index, k), name, args) {
                    call.extend(fields);
                }
                let mut delta = Map::new();
                delta.insert("tool_calls".into(), json!([call]));
                chunks.push(self.delta(index, delta, None));
            }
            let reason = candidate.get("finishReason").and_then(Value::as_str).filter(|r| !r.is_empty());
            let state = self.candidates.entry(index).or_default();
            if let (Some(reason), false) = (reason, state.finished) {
                let has_calls = state.calls > 0;
                chunks.push(self.finish_chunk(index, candidate_finish(Some(reason), has_calls)));
            }
        }
        Ok(chunks)
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
        let mut chunks = Vec::new();
        for event in self.sse.feed(bytes) {
            chunks.extend(self.event(&event.data)?);
        }
        Ok(chunks)
    }

    fn finish_values(&mut self) -> Result<Vec<Value>, ApiError> {
        let mut chunks = Vec::new();
        if let Some(event) = self.sse.finish() {
            // A malformed trailing fragment is dropped: the end of a body never fails.
            chunks.extend(self.event(&event.data).unwrap_or_default());
        }
        // A choice the upstream never finished ends here.
        let open: Vec<(u64, usize)> = self
            .candidates
            .iter()
            .filter(|(_, s)| s.started && !s.finished)
            .map(|(index, s)| (*index, s.calls))
            .collect();
        for (index, calls) in open {
            chunks.push(self.finish_chunk(index, candidate_finish(None, calls > 0)));
        }
        if let Some(usage) = self.usage.take() {
            let mut chunk = self.chunk(json!([]));
            chunk["usage"] = usage;
            chunks.push(chunk);
        }
        Ok(chunks)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A Google error body (`{"error": {"code", "message", "status"}}`) as an OpenAI-style error
/// with the upstream's status: message prefixed `gemini: `, code the Google status name. The
/// key, should a message ever quote it, is redacted.
pub fn upstream_error(status: StatusCode, body: &[u8]) -> ApiError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    error_from_json(status, &parsed, body)
}

fn error_from_json(status: StatusCode, parsed: &Value, body: &[u8]) -> ApiError {
    // Stream errors come as a one-element list of the same object.
    let error = parsed.get("error").or_else(|| parsed.get(0).and_then(|e| e.get("error")));
    let mut message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error_message(body));
    if message.is_empty() {
        message = format!("upstream answered {status}");
    }
    let mut api_error = ApiError::new(status, error_kind(status), format!("gemini: {message}"));
    if let Some(code) = error.and_then(|e| e.get("status")).and_then(Value::as_str) {
        api_error = api_error.with_code(code);
    }
    api_error
}

// ---------------------------------------------------------------------------------------------
// Embeddings

fn wants_base64(req: &EmbeddingRequest) -> Result<bool, ApiError> {
    match req.encoding_format.as_deref() {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => {
            Err(bad(format!("encoding_format {other:?} is not supported; use float or base64"), "encoding_format"))
        }
    }
}

/// The `batchEmbedContents` body: one request per input.
pub fn batch_embed_body(req: &EmbeddingRequest, upstream_model: &str) -> Result<Value, ApiError> {
    let inputs = req.inputs();
    if inputs.is_empty() {
        return Err(bad("input must not be empty", "input"));
    }
    let model = format!("models/{upstream_model}");
    let requests: Vec<Value> = inputs
        .iter()
        .map(|text| {
            let mut one = json!({"model": model, "content": {"parts": [{"text": text}]}});
            if let Some(dimensions) = req.dimensions {
                one["outputDimensionality"] = json!(dimensions);
            }
            one
        })
        .collect();
    Ok(json!({"requests": requests}))
}

/// `POST /v1/embeddings` on a Gemini deployment: `batchEmbedContents`, answered as OpenAI's list.
pub async fn serve_embedding(call: super::ProviderCall<'_>) -> Result<crate::exchange::Outcome, ApiError> {
    let req: EmbeddingRequest = match &call.payload {
        crate::exchange::Payload::Json(v) => <EmbeddingRequest as serde::Deserialize>::deserialize(v.as_ref())
            .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?,
        _ => return Err(ApiError::bad_request("this route takes a JSON body")),
    };
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
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| bad_gateway(format!("gemini: embeddings answer is not JSON: {e}")))?;
    let embeddings = parsed
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_gateway("gemini: embeddings answer has no embeddings list"))?;
    let inputs = req.inputs();
    if embeddings.len() != inputs.len() {
        return Err(bad_gateway(format!(
            "gemini: {} embeddings came back for {} inputs",
            embeddings.len(),
            inputs.len()
        )));
    }
    let mut data = Vec::with_capacity(embeddings.len());
    for (i, e) in embeddings.iter().enumerate() {
        let values: Vec<f32> = e
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| bad_gateway(format!("gemini: embedding {i} has no values")))?
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| bad_gateway(format!("gemini: embedding {i} has a value that is not a number")))?;
        let embedding = if base64 {
            let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            json!(values)
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
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
        _d: &Deployment,
        url: String,
        _stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = generate_content_body(req)?;
        Ok(UpstreamRequest::post_json(url, &body))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        let parsed: Value =
            serde_json::from_slice(body).map_err(|e| bad_gateway(format!("gemini: the answer is not JSON: {e}")))?;
        super::translate::typed_completion(to_openai(
            &parsed,
            &d.upstream_model,
            &super::chat::new_chat_id(),
            crate::clock::unix_now(),
        )?)
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        Box::new(StreamDecoder::new(meta))
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        upstream_error(status, body)
    }
}
