//! A fake Anthropic Messages API on 127.0.0.1:0: it checks what the real API checks (the
//! `x-api-key` and `anthropic-version` headers, the required fields, alternating roles that
//! start with `user`, tool results that answer the previous turn's tool uses) and answers in
//! the real wire format, JSON or SSE, with every request logged as it arrived.
//!
//! Answers are deterministic:
//! - a text message, [`text_answer`] of the last user turn: `Hello from fake Claude! You said: ...`,
//!   or `The tool said: ...` when that turn holds tool results;
//! - a `tool_use` block when the request has tools and `tool_choice` forces one (`any`, `tool`)
//!   or the last user text mentions "weather" (`auto`); its input is built from the tool's
//!   `input_schema` (a `city`/`location` string is the word after "in", else Paris);
//! - `stop_sequences` cut the text (`stop_sequence`), `max_tokens` counts words (`max_tokens`);
//! - a last user text containing "overloaded" gets a 529 `overloaded_error`; streaming, one
//!   containing "break the stream" gets an `event: error` after the first text delta;
//! - with `thinking` on, a signed `thinking` block first ([`thinking_text`], signed by
//!   [`signature`]), streamed as `thinking_delta`s and a `signature_delta`; thinking handed back
//!   is checked as the real API checks it ([`validate_thinking`]).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running fake Anthropic. The server stops when this is dropped.
pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT`: a deployment's `api_base` (requests go to `{base}/v1/messages`).
    pub base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    /// The body as JSON (`null` when it was not JSON).
    pub body: Value,
}

impl FakeAnthropic {
    /// Starts the fake; requests must carry `x-api-key: <expected_key>`.
    pub async fn start(expected_key: &str) -> FakeAnthropic {
        let shared = Arc::new(Shared { key: expected_key.to_owned(), log: Mutex::default(), ids: AtomicU64::new(0) });
        let state = shared.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let shared = state.clone();
            async move { handle(&shared, method, uri, headers, body) }
        });
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Anthropic binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic { base_url: format!("http://{addr}"), shared, server }
    }

    /// The bodies of every request so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.recorded().into_iter().map(|r| r.body).collect()
    }

    /// Every request so far with its path and headers, oldest first.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Shared {
    key: String,
    log: Mutex<Vec<Recorded>>,
    ids: AtomicU64,
}

impl Shared {
    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}{:024}", self.ids.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// An Anthropic error: `{"type": "error", "error": {"type", "message"}}` with its status.
fn error(status: u16, kind: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid status");
    let body = json!({"type": "error", "error": {"type": kind, "message": message.into()}});
    (status, [("request-id", "req_fake")], axum::Json(body)).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    error(400, "invalid_request_error", message)
}

/// Keeps a request in the log the tests read; its headers (lowercase names) and JSON body.
fn record(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> (HashMap<String, String>, Option<Value>) {
    let header_map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    shared.log.lock().unwrap().push(Recorded {
        path: uri.path().to_owned(),
        headers: header_map.clone(),
        body: parsed.clone().unwrap_or(Value::Null),
    });
    (header_map, parsed)
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (header_map, parsed) = record(shared, &uri, &headers, &body);
    match header_map.get("x-api-key") {
        Some(key) if *key == shared.key => {}
        _ => return error(401, "authentication_error", "invalid x-api-key"),
    }
    if method == Method::POST && uri.path() == "/v1/messages/count_tokens" {
        return count_tokens(&header_map, parsed);
    }
    if method != Method::POST || uri.path() != "/v1/messages" {
        return error(404, "not_found_error", format!("Not found: {} {}", method, uri.path()));
    }
    if !header_map.contains_key("anthropic-version") {
        return invalid("anthropic-version: header is required");
    }
    let Some(Value::Object(body)) = parsed else {
        return invalid("There was an error parsing the body of your request: it is not a JSON object");
    };
    if let Err(message) = validate(&body).and_then(|()| validate_thinking(&body)) {
        return invalid(message);
    }
    let last_text = last_user_text(&body);
    if last_text.contains("overloaded") {
        return error(529, "overloaded_error", "Overloaded");
    }
    let answer = answer(shared, &body);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        stream(&answer, last_text.contains("break the stream"))
    } else {
        (StatusCode::OK, [("request-id", "req_fake")], axum::Json(answer.message())).into_response()
    }
}

// ---------------------------------------------------------------------------------------------
// Token counting

/// Members count_tokens refuses as the real API does ("Extra inputs are not permitted").
const NOT_COUNTED: &[&str] = &["max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata"];

/// `POST /v1/messages/count_tokens`: the Messages checks, generation settings refused, answered
/// `{"input_tokens": N}` with N from [`count_of`]. A last user text containing "server error"
/// gets a 500 `api_error`.
fn count_tokens(headers: &HashMap<String, String>, parsed: Option<Value>) -> Response {
    if !headers.contains_key("anthropic-version") {
        return invalid("anthropic-version: header is required");
    }
    let Some(Value::Object(body)) = parsed else {
        return invalid("There was an error parsing the body of your request: it is not a JSON object");
    };
    if let Some(key) = NOT_COUNTED.iter().find(|k| body.contains_key(**k)) {
        return invalid(format!("{key}: Extra inputs are not permitted"));
    }
    let mut checked = body.clone();
    checked.insert("max_tokens".into(), json!(1));
    if let Err(message) = validate(&checked) {
        return invalid(message);
    }
    if last_user_text(&body).contains("server error") {
        return error(500, "api_error", "Internal server error");
    }
    let count = json!({"input_tokens": count_of(&Value::Object(body))});
    (StatusCode::OK, [("request-id", "req_fake")], axum::Json(count)).into_response()
}

/// The fake's token count of a count_tokens body: 10, plus 4 per turn, plus one per word of
/// every string in `system`, the turns' `content` and `tools` but their `type`s (so text and
/// text blocks count alike; deterministic, and unlike ferrolite's estimate).
pub fn count_of(body: &Value) -> u64 {
    fn words(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(items) => items.iter().map(words).sum(),
            Value::Object(members) => members.iter().filter(|(k, _)| *k != "type").map(|(_, v)| words(v)).sum(),
            _ => 0,
        }
    }
    let turns = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    10 + turns.iter().map(|m| 4 + words(&m["content"])).sum::<u64>() + words(&body["system"]) + words(&body["tools"])
}

// ---------------------------------------------------------------------------------------------
// Validation, as the real API does it

fn validate(body: &Map<String, Value>) -> Result<(), String> {
    if !body.get("model").is_some_and(Value::is_string) {
        return Err("model: Field required".into());
    }
    match body.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(v) if v.as_u64().is_none_or(|n| n == 0) => {
            return Err("max_tokens: Input should be a valid integer greater than or equal to 1".into())
        }
        _ => {}
    }
    let messages = match body.get("messages") {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(m)) if m.is_empty() => return Err("messages: at least one message is required".into()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    let mut previous_tool_uses: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        if i > 0 && messages[i - 1].get("role").and_then(Value::as_str) == Some(role) {
            return Err(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            ));
        }
        let blocks = match m.get("content") {
            Some(Value::String(s)) if s.is_empty() && i + 1 < messages.len() => {
                return Err(format!("messages.{i}: all messages must have non-empty content"))
            }
            Some(Value::String(_)) => Vec::new(),
            Some(Value::Array(blocks)) if blocks.is_empty() => {
                return Err(format!("messages.{i}: all messages must have non-empty content"))
            }
            Some(Value::Array(blocks)) => blocks.clone(),
            _ => return Err(format!("messages.{i}.content: Field required")),
        };
        let mut tool_uses = Vec::new();
        let mut results = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if block.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return Err(format!("{at}.text: text content blocks must be non-empty"));
                    }
                }
                Some("image") | Some("document") => {
                    let source = block.get("source").cloned().unwrap_or_default();
                    let ok = match source.get("type").and_then(Value::as_str) {
                        Some("base64") => source.get("media_type").is_some() && source.get("data").is_some(),
                        Some("url") => source.get("url").is_some(),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("{at}.source: invalid source"));
                    }
                }
                Some("tool_use") if role == "assistant" => {
                    let (Some(id), Some(_), Some(Value::Object(_))) =
                        (block.get("id").and_then(Value::as_str), block.get("name"), block.get("input"))
                    else {
                        return Err(format!("{at}: tool_use needs id, name and an object input"));
                    };
                    tool_uses.push(id.to_owned());
                }
                Some("thinking") | Some("redacted_thinking") if role == "assistant" => {}
                Some("tool_result") if role == "user" => {
                    if results.len() != j {
                        return Err(format!("{at}: tool_result blocks must come first in the content"));
                    }
                    let id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
                    if !previous_tool_uses.iter().any(|t| t == id) {
                        return Err(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    results.push(id.to_owned());
                }
                other => return Err(format!("{at}.type: unexpected block type {other:?} in a {role} message")),
            }
        }
        if role == "user" {
            if let Some(missing) = previous_tool_uses.iter().find(|t| !results.contains(t)) {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
                ));
            }
        }
        previous_tool_uses = tool_uses;
    }
    let tools = match body.get("tools") {
        None => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(_) => return Err("tools: Input should be a valid list".into()),
    };
    for (i, tool) in tools.iter().enumerate() {
        if !tool.get("name").is_some_and(Value::is_string) {
            return Err(format!("tools.{i}.name: Field required"));
        }
        if tool.pointer("/input_schema/type").and_then(Value::as_str) != Some("object") {
            return Err(format!("tools.{i}.input_schema.type: Input should be 'object'"));
        }
    }
    if let Some(choice) = body.get("tool_choice") {
        if tools.is_empty() {
            return Err("tool_choice: tool_choice may only be specified while providing tools.".into());
        }
        match choice.get("type").and_then(Value::as_str) {
            Some("auto") | Some("any") | Some("none") => {}
            Some("tool") => {
                let name = choice.get("name").and_then(Value::as_str).unwrap_or_default();
                if !tools.iter().any(|t| t["name"] == name) {
                    return Err(format!("tool_choice.name: tool {name:?} is not among the provided tools"));
                }
            }
            _ => return Err("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'".into()),
        }
    }
    if let Some(system) = body.get("system") {
        if !(system.is_string() || system.is_array()) {
            return Err("system: Input should be a valid string or list".into());
        }
    }
    Ok(())
}

/// What the real API checks of thinking: the budget and the sampling it allows, blocks handed
/// back unchanged (their signatures), first in their turn, and present in the tool call a
/// request answers while budgeted thinking is on.
fn validate_thinking(body: &Map<String, Value>) -> Result<(), String> {
    let kind = body.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str).unwrap_or("disabled");
    let on = kind == "enabled" || kind == "adaptive";
    if kind == "enabled" {
        let budget = body.get("thinking").and_then(|t| t.get("budget_tokens")).and_then(Value::as_u64).unwrap_or(0);
        if budget < 1024 {
            return Err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
        }
        if body["max_tokens"].as_u64().unwrap_or(0) <= budget {
            return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
        }
    }
    if on {
        if body.get("temperature").is_some_and(|t| t.as_f64() != Some(1.0)) {
            return Err("`temperature` may only be set to 1 when thinking is enabled".into());
        }
        if body.get("top_p").is_some_and(|p| p.as_f64().is_none_or(|p| p < 0.95)) {
            return Err("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled".into());
        }
        if matches!(
            body.get("tool_choice").and_then(|c| c.get("type")).and_then(Value::as_str),
            Some("any") | Some("tool")
        ) {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
        }
    }
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    for (i, m) in messages.iter().enumerate().filter(|(_, m)| m["role"] == "assistant") {
        let blocks = m["content"].as_array().map(Vec::as_slice).unwrap_or_default();
        let thinking = |b: &Value| b["type"] == "thinking" || b["type"] == "redacted_thinking";
        if blocks.iter().any(thinking) && !blocks.first().is_some_and(thinking) {
            return Err(format!("messages.{i}.content.0: If an assistant message contains any thinking blocks, the first block must be `thinking` or `redacted_thinking`."));
        }
        for (j, b) in blocks.iter().enumerate().filter(|(_, b)| b["type"] == "thinking") {
            if b["signature"].as_str() != Some(signature(b["thinking"].as_str().unwrap_or_default()).as_str()) {
                return Err(format!("messages.{i}.content.{j}: Invalid `signature` in `thinking` block"));
            }
        }
        if !on && i + 1 == messages.len() && blocks.iter().any(thinking) {
            return Err(format!("messages.{i}.content.0: When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`."));
        }
    }
    if kind == "enabled" {
        if let [.., call, answer] = messages {
            let answers_tools =
                answer["content"].as_array().is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"));
            let first = call.pointer("/content/0/type").and_then(Value::as_str).unwrap_or("text");
            if answers_tools && first != "thinking" && first != "redacted_thinking" {
                return Err(format!("messages.{}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block.", messages.len() - 2));
            }
        }
    }
    Ok(())
}

/// The fake's signature of a thinking text: handed back changed, it no longer matches.
pub fn signature(thinking: &str) -> String {
    let hash =
        thinking.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("EqFakeSig{hash:016x}")
}

/// What the fake thinks when thinking is on: about the last user text (or the tool results).
pub fn thinking_text(last_user_text: &str, tool_results: &[String]) -> String {
    if tool_results.is_empty() {
        format!("The user said: {last_user_text}. I will answer.")
    } else {
        format!("The tool answered {}. I will report it.", tool_results.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// The text of the last user turn (text blocks only).
fn last_user_text(body: &Map<String, Value>) -> String {
    let last = body["messages"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    match last.map(|m| &m["content"]) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The `tool_result` contents of the last message, when it is a user turn of tool results.
fn tool_results(body: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Array(blocks)) = body["messages"].as_array().and_then(|m| m.last()).map(|m| &m["content"]) else {
        return Vec::new();
    };
    blocks
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
            _ => String::new(),
        })
        .collect()
}

/// The text the fake answers a request with (before stop sequences and max_tokens).
pub fn text_answer(last_user_text: &str, tool_results: &[String]) -> String {
    if tool_results.is_empty() {
        format!("Hello from fake Claude! You said: {last_user_text}")
    } else {
        format!("The tool said: {}", tool_results.join("; "))
    }
}

/// The word after " in " (a city, for weather questions), else Paris.
fn city(text: &str) -> String {
    text.split_once(" in ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "Paris".to_owned())
}

/// A value for a JSON schema: objects get every property, strings a placeholder.
fn example(schema: &Value, name: &str, text: &str) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str).unwrap_or("object") {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    out.insert(key.clone(), example(sub, key, text));
                }
            }
            Value::Object(out)
        }
        "string" if name == "city" || name == "location" => Value::String(city(text)),
        "string" => Value::String(format!("example {name}")),
        "integer" => json!(42),
        "number" => json!(21.5),
        "boolean" => json!(true),
        "array" => json!([example(schema.get("items").unwrap_or(&json!({"type": "string"})), name, text)]),
        _ => Value::Null,
    }
}

/// A tool call the fake makes: id, name, input.
struct ToolCall {
    id: String,
    name: String,
    input: Value,
}

struct Answer {
    id: String,
    model: String,
    /// Text said first (may be empty).
    text: String,
    tool: Option<ToolCall>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    /// The thinking said first, when thinking is on.
    thinking: Option<String>,
}

fn answer(shared: &Shared, body: &Map<String, Value>) -> Answer {
    let last_text = last_user_text(body);
    let results = tool_results(body);
    let tools = body.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let choice = body.get("tool_choice").cloned().unwrap_or_else(|| json!({"type": "auto"}));
    let kind = choice["type"].as_str().unwrap_or("auto");
    let forced = kind == "any" || kind == "tool";
    let wants_weather = kind == "auto" && results.is_empty() && last_text.to_lowercase().contains("weather");
    let tool = if !tools.is_empty() && (forced || wants_weather) {
        let picked = match kind {
            "tool" => tools.iter().find(|t| t["name"] == choice["name"]),
            _ => tools.iter().find(|t| t["name"].as_str().is_some_and(|n| n.contains("weather"))),
        }
        .unwrap_or(&tools[0]);
        Some(ToolCall {
            id: shared.next_id("toolu_fake"),
            name: picked["name"].as_str().unwrap_or_default().to_owned(),
            input: example(&picked["input_schema"], "", &last_text),
        })
    } else {
        None
    };
    let mut text = match &tool {
        // Claude says a word first when it chooses a tool itself; never when forced.
        Some(t) if !forced => format!("Let me check with {}.", t.name),
        Some(_) => String::new(),
        None => text_answer(&last_text, &results),
    };
    let mut stop_reason = if tool.is_some() { "tool_use" } else { "end_turn" };
    let mut stop_sequence = None;
    if tool.is_none() {
        let stops = body.get("stop_sequences").and_then(Value::as_array).cloned().unwrap_or_default();
        let hit = stops.iter().filter_map(Value::as_str).filter_map(|s| text.find(s).map(|at| (at, s))).min();
        if let Some((at, s)) = hit {
            text.truncate(at);
            stop_reason = "stop_sequence";
            stop_sequence = Some(s.to_owned());
        }
        let max = body["max_tokens"].as_u64().unwrap_or(u64::MAX) as usize;
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        if words.len() > max {
            text = words[..max].concat().trim_end().to_owned();
            stop_reason = "max_tokens";
        }
    }
    let request_words = serde_json::to_string(&body.get("messages")).unwrap_or_default().split_whitespace().count()
        + serde_json::to_string(&body.get("system")).unwrap_or_default().split_whitespace().count();
    let output_tokens = text.split_whitespace().count() as u64
        + tool.as_ref().map(|t| t.input.to_string().len() as u64 / 4 + 10).unwrap_or(0);
    Answer {
        id: shared.next_id("msg_fake"),
        model: body["model"].as_str().unwrap_or_default().to_owned(),
        text,
        tool,
        stop_reason,
        stop_sequence,
        input_tokens: request_words as u64 + 8,
        output_tokens: output_tokens.max(1),
        thinking: matches!(
            body.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str),
            Some("enabled") | Some("adaptive")
        )
        .then(|| thinking_text(&last_text, &results)),
    }
}

impl Answer {
    fn content(&self) -> Vec<Value> {
        let mut content = Vec::new();
        if let Some(t) = &self.thinking {
            content.push(json!({"type": "thinking", "thinking": t, "signature": signature(t)}));
        }
        if !self.text.is_empty() {
            content.push(json!({"type": "text", "text": self.text}));
        }
        if let Some(t) = &self.tool {
            content.push(json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input}));
        }
        content
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        })
    }

    /// The whole `message` object.
    fn message(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content(),
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage(self.output_tokens),
        })
    }
}

/// Splits a text into deltas of a word each (leading space kept).
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 { word.to_owned() } else { format!(" {word}") });
    }
    out.retain(|w| !w.is_empty());
    out
}

/// The answer as Anthropic's SSE: each event its own frame, a few milliseconds apart.
fn stream(answer: &Answer, break_it: bool) -> Response {
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": answer.id, "type": "message", "role": "assistant", "model": answer.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": answer.usage(1),
        }}),
    )];
    let mut index = 0;
    if let Some(t) = &answer.thinking {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        for piece in words(t) {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}}),
            ));
        }
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": signature(t)}}),
        ));
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    if !answer.text.is_empty() {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(("ping", json!({"type": "ping"})));
        for (n, piece) in words(&answer.text).into_iter().enumerate() {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            ));
            if break_it && n == 0 {
                events.push((
                    "error",
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ));
                return sse(events);
            }
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    if let Some(t) = &answer.tool {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": t.id, "name": t.name, "input": {}
            }}),
        ));
        let input = t.input.to_string();
        let chars: Vec<char> = input.chars().collect();
        let mut partials = vec![String::new()];
        partials.extend(chars.chunks(6).map(|c| c.iter().collect::<String>()));
        for partial in partials {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}}),
            ));
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
               "usage": {"output_tokens": answer.output_tokens}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    sse(events)
}

fn sse(events: Vec<(&str, Value)>) -> Response {
    let frames: Vec<String> =
        events.into_iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    let body = futures::stream::iter(frames).then(|frame| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::convert::Infallible>(Bytes::from(frame))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("request-id", "req_fake")
        .body(Body::from_stream(body))
        .expect("SSE response")
}

/// The `tool_result` contents of a request's last message (empty unless it answers tool uses).
pub fn last_tool_results(body: &Value) -> Vec<String> {
    body.as_object().map(tool_results).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Scripted answers, for clients whose tools the default answers cannot drive (a coding agent's
// shell tool wants a real command, not a placeholder built from its schema).

/// What a scripted fake says to one request.
pub enum Scripted {
    /// A text message (`end_turn`).
    Text(String),
    /// A `tool_use` block calling `name` with `input` (`tool_use`), after a word of text.
    ToolUse { name: String, input: Value },
}

type Script = dyn Fn(&Value) -> Scripted + Send + Sync;

impl FakeAnthropic {
    /// A fake that checks requests as [`FakeAnthropic::start`] does and answers each valid one
    /// with what `script` says for its body, JSON or SSE as asked.
    pub async fn start_scripted(
        expected_key: &str,
        script: impl Fn(&Value) -> Scripted + Send + Sync + 'static,
    ) -> FakeAnthropic {
        let shared = Arc::new(Shared { key: expected_key.to_owned(), log: Mutex::default(), ids: AtomicU64::new(0) });
        let script: Arc<Script> = Arc::new(script);
        let state = shared.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (shared, script) = (state.clone(), script.clone());
            async move { handle_scripted(&shared, &*script, method, uri, headers, body) }
        });
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Anthropic binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic { base_url: format!("http://{addr}"), shared, server }
    }
}

fn handle_scripted(
    shared: &Shared,
    script: &Script,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (header_map, parsed) = record(shared, &uri, &headers, &body);
    if header_map.get("x-api-key") != Some(&shared.key) {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if method != Method::POST || uri.path() != "/v1/messages" {
        return error(404, "not_found_error", format!("Not found: {} {}", method, uri.path()));
    }
    if !header_map.contains_key("anthropic-version") {
        return invalid("anthropic-version: header is required");
    }
    let Some(Value::Object(map)) = &parsed else {
        return invalid("There was an error parsing the body of your request: it is not a JSON object");
    };
    if let Err(message) = validate(map) {
        return invalid(message);
    }
    let body = parsed.as_ref().expect("checked above");
    let (text, tool) = match script(body) {
        Scripted::Text(text) => (text, None),
        Scripted::ToolUse { name, input } => {
            if !map.get("tools").and_then(Value::as_array).is_some_and(|t| t.iter().any(|t| t["name"] == name)) {
                return invalid(format!("the script calls {name:?}, which is not among the request's tools"));
            }
            (format!("Let me run {name}."), Some(ToolCall { id: shared.next_id("toolu_fake"), name, input }))
        }
    };
    let output_tokens = text.split_whitespace().count() as u64 + if tool.is_some() { 20 } else { 0 };
    let answer = Answer {
        id: shared.next_id("msg_fake"),
        model: map["model"].as_str().unwrap_or_default().to_owned(),
        stop_reason: if tool.is_some() { "tool_use" } else { "end_turn" },
        text,
        tool,
        stop_sequence: None,
        input_tokens: body.to_string().split_whitespace().count() as u64 + 8,
        output_tokens,
        // Scripted answers never think.
        thinking: None,
    };
    if map.get("stream").and_then(Value::as_bool) == Some(true) {
        stream(&answer, false)
    } else {
        (StatusCode::OK, [("request-id", "req_fake")], axum::Json(answer.message())).into_response()
    }
}
