//! A fake Gemini API (Google AI Studio, `generativelanguage` v1beta) on 127.0.0.1:0.
//!
//! It checks what the real API checks before it answers: the `x-goog-api-key` header (or a
//! `key=` query parameter, which the real API also takes), field names it knows, non-empty
//! `contents` with roles `user` / `model` only and non-empty parts, base64 `inlineData`, no
//! JSON Schema keywords outside Gemini's schema subset, and function response turns that
//! answer the function call turn just before them. Failures are Google error JSON
//! (`{"error": {"code", "message", "status"}}`).
//!
//! Answers are deterministic: `echo: <last user text>` (its text parts joined with spaces); a `functionCall` of the first declared
//! function (`{"location": <the word after "in ">}`) when tools are given and that text mentions
//! the weather, or of the first allowed one (its args an example of its schema) when `toolConfig`
//! forces a call (`ANY`); in JSON mode (`responseMimeType: application/json`) an example of the
//! `responseSchema`; `<name> says: <response.content>` after function responses. Streams
//! (`:streamGenerateContent?alt=sse`) split the text over at least three `data:` events, each
//! written separately, with `usageMetadata` and `finishReason` in the last. Embeddings
//! (`:batchEmbedContents`) are unit vectors derived from the text alone (768 dimensions unless
//! `outputDimensionality` says otherwise). With `thinkingConfig.includeThoughts`, a thought
//! summary comes first (streamed in two pieces) and the first part after it carries
//! [`THOUGHT_SIGNATURE`]; a signature handed back must be that one (or the documented stand-in).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running fake Gemini API. The server stops when this is dropped.
pub struct FakeGemini {
    /// `http://127.0.0.1:PORT`: what a deployment's `api_base` is set to.
    pub base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The URL path, e.g. `/v1beta/models/gemini-1.5-pro:generateContent`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names in lowercase; repeated headers joined with `, `.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{} {} body is not JSON ({e}): {}", self.method, self.path, String::from_utf8_lossy(&self.body))
        })
    }
}

/// Dimensions of an embedding when the request does not set `outputDimensionality`.
pub const EMBEDDING_DIMENSIONS: usize = 768;

const UNREGISTERED: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const KEY_NOT_VALID: &str = "API key not valid. Please pass a valid API key.";

impl FakeGemini {
    /// Starts the fake on an ephemeral loopback port; requests must carry `expected_key`.
    pub async fn start(expected_key: &str) -> FakeGemini {
        let shared = Arc::new(Shared { key: expected_key.to_owned(), log: Mutex::default() });
        // The method follows the model after a ':' inside one path segment
        // (`models/gemini-1.5-pro:generateContent`), so the whole rest is captured and split here.
        let app = Router::new()
            .route("/v1beta/models/{*rest}", post(handle))
            .fallback(unknown_route)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Gemini binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGemini { base_url: format!("http://{addr}"), shared, server }
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The most recent request whose path ends with `suffix` (e.g. `:generateContent`).
    pub fn last(&self, suffix: &str) -> Option<Recorded> {
        self.shared.log.lock().unwrap().iter().rev().find(|r| r.path.ends_with(suffix)).cloned()
    }
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Shared {
    key: String,
    log: Mutex<Vec<Recorded>>,
}

// ---------------------------------------------------------------------------------------------
// Entry points: record, authenticate, route

fn record(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    let mut map: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    shared.log.lock().unwrap().push(Recorded {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: map,
        body: body.to_vec(),
    });
}

/// Google's error JSON with its status name.
fn google_error(status: StatusCode, message: impl Into<String>) -> Response {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message.into(), "status": name}});
    (status, axum::Json(body)).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    google_error(StatusCode::BAD_REQUEST, message)
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or((p.to_owned(), String::new()), |(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

async fn unknown_route(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, &method, &uri, &headers, &body);
    google_error(StatusCode::NOT_FOUND, format!("The requested URL {} was not found on this server.", uri.path()))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, &method, &uri, &headers, &body);
    let query = query_pairs(uri.query());
    let presented = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.iter().find(|(k, _)| k == "key").map(|(_, v)| v.clone()));
    match presented {
        None => return google_error(StatusCode::FORBIDDEN, UNREGISTERED),
        Some(key) if key != shared.key => return invalid(KEY_NOT_VALID),
        Some(_) => {}
    }
    let Some((model, action)) = rest.split_once(':') else {
        return google_error(
            StatusCode::NOT_FOUND,
            format!("The requested URL {} was not found on this server.", uri.path()),
        );
    };
    if model.is_empty() || model.contains('/') {
        return invalid(format!("* model name {model:?} is not valid"));
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("Invalid JSON payload received. Expected an object."),
    };
    match action {
        "generateContent" => match check_generate(&body) {
            Ok(()) => axum::Json(generate(model, &body)).into_response(),
            Err(message) => invalid(message),
        },
        "streamGenerateContent" => {
            if !query.iter().any(|(k, v)| k == "alt" && v == "sse") {
                return invalid("this fake streams with alt=sse only (add ?alt=sse)");
            }
            match check_generate(&body) {
                Ok(()) => stream(model, &body),
                Err(message) => invalid(message),
            }
        }
        "batchEmbedContents" => batch_embed(model, &body),
        "countTokens" => count_tokens(model, &body),
        other => google_error(StatusCode::NOT_FOUND, format!("method {other:?} is not found for models/{model}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Request checks

const REQUEST_FIELDS: &[&str] =
    &["contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"];
const GENERATION_CONFIG_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
];
const PART_FIELDS: &[&str] =
    &["text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"];

/// The signature the fake gives its thinking.
pub const THOUGHT_SIGNATURE: &str = "ZmFrZS1nZW1pbmktdGhvdWdodA==";

fn unknown_field(name: &str, at: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")
}

fn check_fields(object: &Value, known: &[&str], at: &str) -> Result<(), String> {
    match object.as_object() {
        Some(map) => match map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(unknown_field(k, at)),
            None => Ok(()),
        },
        None => Err(format!("Invalid value at '{at}': expected an object")),
    }
}

/// JSON Schema keywords the Gemini schema subset has no field for, anywhere in `schema`.
fn check_schema(schema: &Value, at: &str) -> Result<(), String> {
    let Some(map) = schema.as_object() else { return Ok(()) };
    for (key, value) in map {
        if ["additionalProperties", "$schema", "$id", "strict"].contains(&key.as_str()) {
            return Err(unknown_field(key, at));
        }
        match (key.as_str(), value) {
            ("properties", Value::Object(named)) => {
                for (name, sub) in named {
                    check_schema(sub, &format!("{at}.properties[{name}].value"))?;
                }
            }
            ("items", sub) => check_schema(sub, &format!("{at}.items"))?,
            ("anyOf", Value::Array(subs)) => {
                for (i, sub) in subs.iter().enumerate() {
                    check_schema(sub, &format!("{at}.any_of[{i}]"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn parts_of(content: &Value) -> &[Value] {
    content.get("parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn count_parts(content: &Value, kind: &str) -> usize {
    parts_of(content).iter().filter(|p| p.get(kind).is_some()).count()
}

fn check_generate(body: &Value) -> Result<(), String> {
    check_fields(body, REQUEST_FIELDS, "")?;
    if let Some(config) = body.get("generationConfig") {
        check_fields(config, GENERATION_CONFIG_FIELDS, "generation_config")?;
        if let Some(schema) = config.get("responseSchema") {
            check_schema(schema, "generation_config.response_schema")?;
        }
    }
    if let Some(system) = body.get("systemInstruction") {
        if parts_of(system).is_empty() {
            return Err("* GenerateContentRequest.system_instruction.parts: contents.parts must not be empty.".into());
        }
    }
    for (i, tool) in
        body.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default().iter().enumerate()
    {
        let declarations = tool.get("functionDeclarations").and_then(Value::as_array);
        for (j, declaration) in declarations.map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
            let at = format!("tools[{i}].function_declarations[{j}]");
            check_fields(declaration, &["name", "description", "parameters", "response"], &at)?;
            if let Some(parameters) = declaration.get("parameters") {
                check_schema(parameters, &format!("{at}.parameters"))?;
            }
        }
    }
    let contents = body.get("contents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if contents.is_empty() {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    }
    for (i, content) in contents.iter().enumerate() {
        let role = content.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "model" {
            return Err("Please use a valid role: user, model.".into());
        }
        let parts = parts_of(content);
        if parts.is_empty() {
            return Err(format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."));
        }
        for (j, part) in parts.iter().enumerate() {
            let at = format!("contents[{i}].parts[{j}]");
            check_fields(part, PART_FIELDS, &at)?;
            if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
                if signature != THOUGHT_SIGNATURE && signature != "skip_thought_signature_validator" {
                    return Err(format!("Corrupted thought signature at '{at}.thought_signature'."));
                }
            }
            if let Some(inline) = part.get("inlineData") {
                let data = inline.get("data").and_then(Value::as_str).unwrap_or_default();
                if inline.get("mimeType").and_then(Value::as_str).is_none()
                    || base64::engine::general_purpose::STANDARD.decode(data).is_err()
                {
                    return Err(format!(
                        "Invalid value at '{at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
                    ));
                }
            }
        }
        let previous = i.checked_sub(1).map(|p| &contents[p]);
        let calls = count_parts(content, "functionCall");
        if calls > 0 {
            let after_user = previous.is_none_or(|p| p["role"] == "user");
            if role != "model" || !after_user {
                return Err("Please ensure that function call turn comes immediately after a user turn or after a function response turn.".into());
            }
        }
        let responses = count_parts(content, "functionResponse");
        if responses > 0 {
            let call_turn = previous.filter(|p| p["role"] == "model" && count_parts(p, "functionCall") > 0);
            let Some(call_turn) = call_turn else {
                return Err(
                    "Please ensure that function response turn comes immediately after a function call turn.".into()
                );
            };
            if count_parts(call_turn, "functionCall") != responses {
                return Err("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".into());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answers

enum Reply {
    Text(String),
    Call { name: String, args: Value },
}

fn text_parts(content: &Value) -> String {
    parts_of(content).iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The word after the last " in " of `text`, letters only ("the weather in Paris?" -> "Paris").
fn place_in(text: &str) -> String {
    let after = text.rsplit_once(" in ").map(|(_, rest)| rest).unwrap_or_default();
    let place: String = after.chars().take_while(|c| c.is_alphabetic()).collect();
    if place.is_empty() {
        "Paris".to_owned()
    } else {
        place
    }
}

fn reply(body: &Value) -> Reply {
    let contents = body["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let last = contents.last().unwrap_or(&Value::Null);
    let responses: Vec<String> = parts_of(last)
        .iter()
        .filter_map(|p| p.get("functionResponse"))
        .map(|r| {
            let content = &r["response"]["content"];
            let content = content.as_str().map_or_else(|| content.to_string(), str::to_owned);
            format!("{} says: {content}", r["name"].as_str().unwrap_or_default())
        })
        .collect();
    if !responses.is_empty() {
        return Reply::Text(responses.join(" "));
    }
    let text = text_parts(last);
    let declarations: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
        .filter_map(|d| d["name"].as_str())
        .collect();
    let mode = body.pointer("/toolConfig/functionCallingConfig/mode").and_then(Value::as_str).unwrap_or("AUTO");
    if !declarations.is_empty() && mode != "NONE" && text.to_lowercase().contains("weather") {
        let name = declarations.iter().find(|n| n.contains("weather")).unwrap_or(&declarations[0]);
        return Reply::Call { name: (*name).to_owned(), args: json!({"location": place_in(&text)}) };
    }
    // A forced call (`ANY`) of the first allowed function, its args an example of its schema.
    if mode == "ANY" {
        let allowed = body.pointer("/toolConfig/functionCallingConfig/allowedFunctionNames/0").and_then(Value::as_str);
        let declaration = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
            .find(|d| allowed.is_none_or(|name| d["name"] == name));
        if let Some(declaration) = declaration {
            let args = crate::support::schema_example(&declaration["parameters"]);
            return Reply::Call { name: declaration["name"].as_str().unwrap_or_default().to_owned(), args };
        }
    }
    // JSON mode: an example of the response schema (an empty object without one).
    if body.pointer("/generationConfig/responseMimeType").and_then(Value::as_str) == Some("application/json") {
        let schema =
            body.pointer("/generationConfig/responseSchema").cloned().unwrap_or_else(|| json!({"type": "object"}));
        return Reply::Text(crate::support::schema_example(&schema).to_string());
    }
    Reply::Text(format!("echo: {text}"))
}

/// The reply text cut to `maxOutputTokens` words (one word, one token), and whether it was cut.
fn limit(text: String, body: &Value) -> (String, bool) {
    let Some(max) = body.pointer("/generationConfig/maxOutputTokens").and_then(Value::as_u64) else {
        return (text, false);
    };
    if words(&text) <= max {
        return (text, false);
    }
    let kept: Vec<&str> = text.split_whitespace().take(max as usize).collect();
    (kept.join(" "), true)
}

fn prompt_tokens(body: &Value) -> u64 {
    let contents = body["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let system = body.get("systemInstruction").map(text_parts).unwrap_or_default();
    (contents.iter().map(|c| words(&text_parts(c))).sum::<u64>() + words(&system)).max(1)
}

fn usage_metadata(prompt: u64, candidates: u64) -> Value {
    json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates})
}

fn candidate_count(body: &Value) -> u64 {
    body.pointer("/generationConfig/candidateCount").and_then(Value::as_u64).unwrap_or(1).max(1)
}

fn candidate(index: u64, parts: Value, finish: Option<&str>) -> Value {
    let mut c = json!({"content": {"role": "model", "parts": parts}, "index": index});
    if let Some(finish) = finish {
        c["finishReason"] = json!(finish);
        c["safetyRatings"] = json!([
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"}
        ]);
    }
    c
}

fn generate(model: &str, body: &Value) -> Value {
    let n = candidate_count(body);
    let prompt = prompt_tokens(body);
    let (parts, finish, tokens) = match reply(body) {
        Reply::Text(text) => {
            let (text, cut) = limit(text, body);
            let tokens = words(&text);
            (json!([{"text": text}]), if cut { "MAX_TOKENS" } else { "STOP" }, tokens)
        }
        Reply::Call { name, args } => (json!([{"functionCall": {"name": name, "args": args}}]), "STOP", 5),
    };
    let parts = with_thoughts(body, parts);
    let candidates: Vec<Value> = (0..n).map(|i| candidate(i, parts.clone(), Some(finish))).collect();
    json!({
        "candidates": candidates,
        "usageMetadata": with_thought_tokens(body, usage_metadata(prompt, tokens * n)),
        "modelVersion": model,
        "responseId": "fake-gemini-response",
    })
}

/// Splits `text` into at least three pieces (when it has three characters) that join back to it:
/// one per word, each word carrying its leading space, else thirds.
pub fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(word.to_owned());
        } else {
            out.push(format!(" {word}"));
        }
    }
    if out.len() >= 3 {
        return out;
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < 3 {
        return vec![text.to_owned()];
    }
    let third = chars.len().div_ceil(3);
    chars.chunks(third).map(|c| c.iter().collect()).collect()
}

fn stream(model: &str, body: &Value) -> Response {
    let n = candidate_count(body);
    let prompt = prompt_tokens(body);
    let mut events: Vec<Value> = Vec::new();
    match reply(body) {
        Reply::Text(text) => {
            let (text, cut) = limit(text, body);
            let tokens = words(&text);
            let pieces = pieces(&text);
            let last = pieces.len() - 1;
            for (k, piece) in pieces.iter().enumerate() {
                let finish = (k == last).then_some(if cut { "MAX_TOKENS" } else { "STOP" });
                let candidates: Vec<Value> = (0..n).map(|i| candidate(i, json!([{"text": piece}]), finish)).collect();
                let mut event = json!({"candidates": candidates, "modelVersion": model});
                if k == last {
                    event["usageMetadata"] = usage_metadata(prompt, tokens * n);
                }
                events.push(event);
            }
        }
        Reply::Call { name, args } => {
            let parts = json!([{"functionCall": {"name": name, "args": args}}]);
            let candidates: Vec<Value> = (0..n).map(|i| candidate(i, parts.clone(), Some("STOP"))).collect();
            events.push(json!({"candidates": candidates, "usageMetadata": usage_metadata(prompt, 5 * n), "modelVersion": model}));
        }
    }
    if includes_thoughts(body) {
        // The thought in two pieces, then the signature on the first part of the answer.
        for event in events.iter_mut().take(1) {
            for c in event["candidates"].as_array_mut().into_iter().flatten() {
                c["content"]["parts"][0]["thoughtSignature"] = json!(THOUGHT_SIGNATURE);
            }
        }
        let thought = thought_text(body);
        let (first, second) = thought.split_at(thought.len() / 2);
        for piece in [second, first] {
            let parts = json!([{"text": piece, "thought": true}]);
            let candidates: Vec<Value> = (0..n).map(|i| candidate(i, parts.clone(), None)).collect();
            events.insert(0, json!({"candidates": candidates, "modelVersion": model}));
        }
        if let Some(last) = events.last_mut() {
            last["usageMetadata"] = with_thought_tokens(body, last["usageMetadata"].clone());
        }
    }
    // Each event is its own body frame, written a moment after the one before.
    let frames = futures::stream::iter(events).then(|event| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::io::Error>(Bytes::from(format!("data: {event}\r\n\r\n")))
    });
    let mut response = Response::new(Body::from_stream(frames));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    response
}

fn includes_thoughts(body: &Value) -> bool {
    body.pointer("/generationConfig/thinkingConfig/includeThoughts").and_then(Value::as_bool) == Some(true)
}

/// The fake's thought summary: about the last user turn.
pub fn thought_text(body: &Value) -> String {
    let last = body["contents"].as_array().and_then(|c| c.last()).cloned().unwrap_or_default();
    format!("Thinking about: {}", text_parts(&last))
}

/// An answer's parts with the thought summary first and the signature on the part after it.
fn with_thoughts(body: &Value, mut parts: Value) -> Value {
    if !includes_thoughts(body) {
        return parts;
    }
    if let Some(first) = parts.get_mut(0) {
        first["thoughtSignature"] = json!(THOUGHT_SIGNATURE);
    }
    let mut out = vec![json!({"text": thought_text(body), "thought": true})];
    out.extend(parts.as_array().cloned().unwrap_or_default());
    Value::Array(out)
}

/// Usage with the thought summary's words as thought tokens, when there is one.
fn with_thought_tokens(body: &Value, mut usage: Value) -> Value {
    if includes_thoughts(body) {
        let thoughts = words(&thought_text(body));
        usage["thoughtsTokenCount"] = json!(thoughts);
        usage["totalTokenCount"] = json!(usage["totalTokenCount"].as_u64().unwrap_or(0) + thoughts);
    }
    usage
}

/// A unit vector derived from the text alone: the same text always embeds the same.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state =
        text.bytes().fold(0x8422_2325_cbf2_9ce4_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) | 1;
    let mut v: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn batch_embed(model: &str, body: &Value) -> Response {
    if let Err(message) = check_fields(body, &["requests"], "") {
        return invalid(message);
    }
    let requests = body["requests"].as_array().map(Vec::as_slice).unwrap_or_default();
    if requests.is_empty() {
        return invalid("* BatchEmbedContentsRequest.requests: requests is not specified");
    }
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let at = format!("requests[{i}]");
        if let Err(message) =
            check_fields(request, &["model", "content", "taskType", "title", "outputDimensionality"], &at)
        {
            return invalid(message);
        }
        let named = request["model"].as_str().unwrap_or_default();
        if named != format!("models/{model}") {
            return invalid(format!(
                "* BatchEmbedContentsRequest.{at}.model: unexpected model name format; the batch is for models/{model}, this request names {named:?}"
            ));
        }
        let parts = parts_of(&request["content"]);
        if parts.is_empty() {
            return invalid(format!(
                "* BatchEmbedContentsRequest.{at}.content.parts: contents.parts must not be empty."
            ));
        }
        let dimensions = request["outputDimensionality"].as_u64().map_or(EMBEDDING_DIMENSIONS, |d| d as usize);
        embeddings.push(json!({"values": embed(&text_parts(&request["content"]), dimensions)}));
    }
    let mut answer = Map::new();
    answer.insert("embeddings".into(), Value::Array(embeddings));
    axum::Json(Value::Object(answer)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Token counting

/// `models/{model}:countTokens`: `contents`, or a whole `generateContentRequest` (naming its
/// model, `models/NAME`), never both; each checked as generateContent checks it. Answered
/// `{"totalTokens", "promptTokensDetails"}` with [`count_of`]; a last user text containing
/// "server error" gets a 500.
fn count_tokens(model: &str, body: &Value) -> Response {
    if let Err(message) = check_fields(body, &["contents", "generateContentRequest"], "") {
        return invalid(message);
    }
    let request = match (body.get("contents"), body.get("generateContentRequest")) {
        (Some(_), Some(_)) => {
            return invalid("* CountTokensRequest: contents and generate_content_request are mutually exclusive.")
        }
        (Some(contents), None) => json!({"contents": contents}),
        (None, Some(Value::Object(request))) => {
            let mut request = request.clone();
            match request.remove("model") {
                Some(Value::String(named)) if named == format!("models/{model}") => {}
                Some(other) => {
                    return invalid(format!(
                        "* CountTokensRequest.generate_content_request.model: {other} is not models/{model}"
                    ))
                }
                None => return invalid("* CountTokensRequest.generate_content_request.model: model is required."),
            }
            Value::Object(request)
        }
        _ => return invalid("* CountTokensRequest: contents or generate_content_request is required."),
    };
    if let Err(message) = check_generate(&request) {
        return invalid(message);
    }
    let contents = request["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let last_user = contents.iter().rev().find(|c| c["role"] == "user").map(text_parts).unwrap_or_default();
    if last_user.contains("server error") {
        return google_error(StatusCode::INTERNAL_SERVER_ERROR, "An internal error has occurred.");
    }
    let total = count_of(&request);
    axum::Json(json!({"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}))
        .into_response()
}

/// The fake's count of a generateContent request: 5, plus one per word of the contents' and
/// the system instruction's text, plus one per word of every string in the tools but `type`s.
pub fn count_of(request: &Value) -> u64 {
    fn words_in(v: &Value) -> u64 {
        match v {
            Value::String(s) => words(s),
            Value::Array(items) => items.iter().map(words_in).sum(),
            Value::Object(members) => members.iter().filter(|(k, _)| *k != "type").map(|(_, v)| words_in(v)).sum(),
            _ => 0,
        }
    }
    let contents = request["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let system = request.get("systemInstruction").map(text_parts).unwrap_or_default();
    5 + contents.iter().map(|c| words(&text_parts(c))).sum::<u64>() + words(&system) + words_in(&request["tools"])
}
