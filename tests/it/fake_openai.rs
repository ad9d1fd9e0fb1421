//! A fake OpenAI upstream on 127.0.0.1:0: OpenAI's wire format for every route family ferrolite
//! forwards (JSON, SSE, binary and multipart), an in-memory store for the stateful objects
//! (files, batches, responses, fine-tuning jobs, assistants, threads, vector stores), and a log
//! of every request exactly as it arrived.
//!
//! Answers are deterministic: chat and completions echo the prompt (chat and responses call a
//! function for a weather question, chat also the one `tool_choice` forces; both echo a tool's
//! output and answer a `json_schema` format with an example of the schema), embeddings hash the
//! input, speech is [`speech_bytes`], transcriptions report the size and [`fnv64_hex`] of the
//! file. [`FakeOpenAi::start_azure`] serves chat completions on Azure's deployment paths.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A running fake upstream. The server stops when this is dropped.
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`: what a deployment's `api_base` is set to.
    pub base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The URL path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names in lowercase; repeated headers joined with `, `.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl FakeOpenAi {
    /// Starts the fake on an ephemeral loopback port; requests must carry
    /// `Authorization: Bearer <expected_key>`.
    pub async fn start(expected_key: &str) -> FakeOpenAi {
        let shared = Arc::new(Shared { key: expected_key.to_owned(), log: Mutex::default(), store: Mutex::default() });
        let app = Router::new().fallback(handle).layer(DefaultBodyLimit::disable()).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake OpenAI binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi { base_url: format!("http://{addr}/v1"), shared, server }
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The most recent request whose path is exactly `path`.
    pub fn last(&self, path: &str) -> Option<Recorded> {
        self.shared.log.lock().unwrap().iter().rev().find(|r| r.path == path).cloned()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOpenAi {
    /// Azure OpenAI's flavour of the fake: chat completions at
    /// `/openai/deployments/{deployment}/chat/completions?api-version=...` behind an `api-key`
    /// header, answered as [`FakeOpenAi::start`]'s `/v1/chat/completions` answers. `base_url` is
    /// the bare origin, what an Azure deployment's `api_base` is set to.
    pub async fn start_azure(expected_key: &str) -> FakeOpenAi {
        let shared = Arc::new(Shared { key: expected_key.to_owned(), log: Mutex::default(), store: Mutex::default() });
        let app = Router::new().fallback(handle_azure).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Azure binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi { base_url: format!("http://{addr}"), shared, server }
    }
}

/// Keeps a request in the log the tests read.
fn log(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    shared.log.lock().unwrap().push(Recorded {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: header_map(headers),
        body: body.to_vec(),
    });
}

async fn handle_azure(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log(&shared, &method, &uri, &headers, &body);
    // A key in `api-key`, or a Microsoft Entra ID token as a bearer token.
    let key = headers.get("api-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if key.as_deref() != Some(shared.key.as_str()) && bearer != Some(shared.key.as_str()) {
        let message = "Access denied due to invalid subscription key or wrong API endpoint.";
        return error(StatusCode::UNAUTHORIZED, message, None, None).into_response();
    }
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let versioned = uri.query().is_some_and(|q| q.split('&').any(|p| p.starts_with("api-version=")));
    let req = Req { method: method.clone(), query: uri.query().map(str::to_owned), headers, body };
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["openai", "deployments", _, "chat", "completions"]) if versioned => {
            chat_completions(&req).unwrap_or_else(IntoResponse::into_response)
        }
        ("POST", ["openai", "deployments", _, "embeddings"]) if versioned => {
            embeddings(&req).unwrap_or_else(IntoResponse::into_response)
        }
        _ => error(StatusCode::NOT_FOUND, "Resource not found", None, None).into_response(),
    }
}

/// Length of every [`speech_bytes`] answer.
const SPEECH_LEN: usize = 48 * 1024;

/// Deterministic speech bytes for an input text: b"ID3" followed by the input's bytes repeated
/// to 48 KiB total. The SDK test computes the same thing independently.
pub fn speech_bytes(input: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SPEECH_LEN);
    out.extend_from_slice(b"ID3");
    if input.is_empty() {
        out.resize(SPEECH_LEN, 0);
    } else {
        out.extend(input.bytes().cycle().take(SPEECH_LEN - 3));
    }
    out
}

/// 64-bit FNV-1a of bytes, lowercase hex (16 chars).
pub fn fnv64_hex(bytes: &[u8]) -> String {
    format!("{:016x}", fnv64(bytes))
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    key: String,
    log: Mutex<Vec<Recorded>>,
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    /// Oldest first; lists answer newest first as OpenAI does.
    files: Vec<StoredFile>,
    batches: Vec<Value>,
    /// Response id -> (response object, its input items).
    responses: HashMap<String, (Value, Vec<Value>)>,
    jobs: Vec<FineTuningJob>,
    assistants: Vec<Value>,
    threads: HashMap<String, Thread>,
    vector_stores: Vec<Value>,
}

struct StoredFile {
    object: Value,
    content: Vec<u8>,
}

struct FineTuningJob {
    object: Value,
    events: Vec<Value>,
}

struct Thread {
    object: Value,
    messages: Vec<Value>,
}

/// What a route handler gets.
struct Req {
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// Handlers answer `Err` with an OpenAI error, so `?` works on validation.
type Reply = Result<Response, OpenAiError>;

/// An OpenAI error: `{"error": {"message", "type", "param", "code"}}` with its status.
struct OpenAiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

const SYSTEM_FINGERPRINT: &str = "fp_fake0openai";

// ---------------------------------------------------------------------------------------------
// Entry point: record, authenticate, route

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log(&shared, &method, &uri, &headers, &body);
    if let Err(unauthorized) = authenticate(&shared.key, &headers) {
        return unauthorized.into_response();
    }
    let path = uri.path().to_owned();
    let req = Req { method: method.clone(), query: uri.query().map(str::to_owned), headers, body };
    let Some(rest) = path.strip_prefix("/v1/") else {
        return invalid_url(&method, &path).into_response();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let s = &shared;
    let reply = match (method.as_str(), segments.as_slice()) {
        ("GET", ["models"]) => list_models(),
        ("GET", ["models", id]) => get_model(id),
        ("POST", ["chat", "completions"]) => chat_completions(&req),
        ("POST", ["completions"]) => completions(&req),
        ("POST", ["embeddings"]) => embeddings(&req),
        ("POST", ["moderations"]) => moderations(&req),
        ("POST", ["audio", "speech"]) => speech(&req),
        ("POST", ["audio", "transcriptions"]) => transcribe(&req, "transcribe").await,
        ("POST", ["audio", "translations"]) => transcribe(&req, "translate").await,
        ("POST", ["images", "generations"]) => image_generations(&req),
        ("POST", ["files"]) => upload_file(s, &req).await,
        ("GET", ["files"]) => list_files(s, &req),
        ("GET", ["files", id]) => get_file(s, id),
        ("GET", ["files", id, "content"]) => file_content(s, id),
        ("DELETE", ["files", id]) => delete_file(s, id),
        ("POST", ["batches"]) => create_batch(s, &req),
        ("GET", ["batches"]) => list_batches(s),
        ("GET", ["batches", id]) => get_batch(s, id),
        ("POST", ["batches", id, "cancel"]) => cancel_batch(s, id),
        ("POST", ["responses"]) => create_response(s, &req),
        ("POST", ["responses", "input_tokens"]) => count_input_tokens(&req),
        ("GET", ["responses", id]) => get_response(s, id),
        ("DELETE", ["responses", id]) => delete_response(s, id),
        ("GET", ["responses", id, "input_items"]) => response_input_items(s, id),
        ("POST", ["fine_tuning", "jobs"]) => create_job(s, &req),
        ("GET", ["fine_tuning", "jobs"]) => list_jobs(s),
        ("GET", ["fine_tuning", "jobs", id]) => get_job(s, id),
        ("POST", ["fine_tuning", "jobs", id, "cancel"]) => cancel_job(s, id),
        ("GET", ["fine_tuning", "jobs", id, "events"]) => job_events(s, id),
        ("POST", ["assistants"]) => create_assistant(s, &req),
        ("GET", ["assistants"]) => list_assistants(s),
        ("DELETE", ["assistants", id]) => delete_assistant(s, id),
        ("POST", ["threads"]) => create_thread(s, &req),
        ("GET", ["threads", id]) => get_thread(s, id),
        ("POST", ["threads", id, "messages"]) => create_message(s, id, &req),
        ("GET", ["threads", id, "messages"]) => list_messages(s, id),
        ("POST", ["threads", id, "runs"]) => create_run(s, id, &req),
        ("POST", ["vector_stores"]) => create_vector_store(s, &req),
        ("GET", ["vector_stores"]) => list_vector_stores(s),
        ("POST", ["vector_stores", id, "search"]) => search_vector_store(s, id, &req),
        ("POST", ["rerank"]) => rerank(&req),
        _ => Err(invalid_url(&req.method, &path)),
    };
    reply.unwrap_or_else(IntoResponse::into_response)
}

fn header_map(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn authenticate(expected: &str, headers: &HeaderMap) -> Result<(), OpenAiError> {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim);
    match given.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) {
        Some(key) if key == expected => Ok(()),
        Some(key) => Err(error(
            StatusCode::UNAUTHORIZED,
            format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
            None,
            Some("invalid_api_key"),
        )),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            None,
            Some("invalid_api_key"),
        )),
    }
}

/// `sk-abc***********wxyz`, the way OpenAI shows a wrong key: never the whole of it.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

// ---------------------------------------------------------------------------------------------
// Small helpers: errors, JSON bodies, multipart forms, ids, SSE

fn error(
    status: StatusCode,
    message: impl Into<String>,
    param: Option<&str>,
    code: Option<&'static str>,
) -> OpenAiError {
    OpenAiError { status, message: message.into(), param: param.map(str::to_owned), code }
}

fn invalid_url(method: &Method, path: &str) -> OpenAiError {
    error(StatusCode::NOT_FOUND, format!("Invalid URL ({method} {path})"), None, None)
}

fn not_found(kind: &str, id: &str, param: &str) -> OpenAiError {
    error(StatusCode::NOT_FOUND, format!("No such {kind} object: {id}"), Some(param), None)
}

fn bad_param(param: &str, message: impl Into<String>) -> OpenAiError {
    error(StatusCode::BAD_REQUEST, message, Some(param), Some("invalid_value"))
}

fn missing(param: &str) -> OpenAiError {
    error(
        StatusCode::BAD_REQUEST,
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn ok_json(value: Value) -> Reply {
    Ok((StatusCode::OK, axum::Json(value)).into_response())
}

/// The request's JSON object; an empty body counts as `{}` when `empty_ok`.
fn json_object(req: &Req, empty_ok: bool) -> Result<Map<String, Value>, OpenAiError> {
    if empty_ok && req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        )),
    }
}

/// A JSON body with every one of `fields` present and not null.
fn json_body(req: &Req, fields: &[&str]) -> Result<Map<String, Value>, OpenAiError> {
    let body = json_object(req, false)?;
    for field in fields {
        if body.get(*field).is_none_or(Value::is_null) {
            return Err(missing(field));
        }
    }
    Ok(body)
}

fn str_field<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, OpenAiError> {
    body.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_param(field, format!("Invalid type for '{field}': expected a string.")))
}

fn wants_stream(body: &Map<String, Value>) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

fn include_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true)
}

/// One part of a multipart form.
struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

async fn multipart(req: &Req) -> Result<Vec<Part>, OpenAiError> {
    let content_type = req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "Invalid Content-Type header: this endpoint takes multipart/form-data with a boundary.",
            None,
            None,
        )
    })?;
    let body = req.body.clone();
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let malformed =
        |e: multer::Error| error(StatusCode::BAD_REQUEST, format!("Could not parse multipart form: {e}"), None, None);
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(|m| m.to_string());
        let data = field.bytes().await.map_err(malformed)?;
        parts.push(Part { name, file_name, content_type, data });
    }
    Ok(parts)
}

fn part<'a>(parts: &'a [Part], name: &str) -> Option<&'a Part> {
    parts.iter().find(|p| p.name == name)
}

fn text_part(parts: &[Part], name: &str) -> Option<String> {
    part(parts, name).map(|p| String::from_utf8_lossy(&p.data).into_owned())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// `prefix` + 24 random alphanumerics, like OpenAI's object ids.
fn new_id(prefix: &str) -> String {
    use rand::Rng as _;
    let suffix: String =
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(24).map(char::from).collect();
    format!("{prefix}{suffix}")
}

/// A rough token count: whitespace-separated words, at least one.
fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// Splits a text into streaming deltas: word by word (leading space kept), and into three
/// even runs of characters when it has fewer than three words.
fn pieces(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if ch.is_whitespace() && !current.trim().is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(ch);
    }
    if !current.is_empty() {
        words.push(current);
    }
    if words.len() >= 3 {
        return words;
    }
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// One server-sent event: an optional `event:` name and its `data:` payload.
struct Event {
    name: Option<String>,
    data: String,
}

fn data_event(data: impl ToString) -> Event {
    Event { name: None, data: data.to_string() }
}

fn named_event(name: &str, data: impl ToString) -> Event {
    Event { name: Some(name.to_owned()), data: data.to_string() }
}

/// A `text/event-stream` response writing each event as its own body frame, a few
/// milliseconds apart, as a real upstream produces them.
fn sse(events: Vec<Event>) -> Response {
    let frames = events.into_iter().map(|e| match e.name {
        Some(name) => format!("event: {name}\ndata: {}\n\n", e.data),
        None => format!("data: {}\n\n", e.data),
    });
    let stream = futures::stream::iter(frames).then(|frame| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::convert::Infallible>(Bytes::from(frame))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("SSE response")
}

/// The text of a chat message's `content`: a string, or the `text` of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Models

const MODELS: &[&str] = &[
    "gpt-4o-2024-08-06",
    "gpt-4o-mini",
    "text-embedding-3-small",
    "tts-1",
    "whisper-1",
    "dall-e-3",
    "omni-moderation-latest",
];

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"})
}

fn list_models() -> Reply {
    let data: Vec<Value> = MODELS.iter().map(|m| model_object(m)).collect();
    ok_json(json!({"object": "list", "data": data}))
}

fn get_model(id: &str) -> Reply {
    if MODELS.contains(&id) {
        ok_json(model_object(id))
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            format!("The model '{id}' does not exist"),
            Some("model"),
            Some("model_not_found"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Chat completions and completions

fn chat_completions(req: &Req) -> Reply {
    let body = json_body(req, &["model", "messages"])?;
    let model = str_field(&body, "model")?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_param("messages", "Invalid 'messages': expected a non-empty array of messages."))?;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    // Tool use, as a model would: a weather question with tools gets a call; a tool result an answer.
    let tool = body.get("tools").and_then(Value::as_array).and_then(|t| t.first()).cloned();
    let wants_tool = tool.is_some()
        && last.get("role").and_then(Value::as_str) == Some("user")
        && last_user.to_lowercase().contains("weather")
        && body.get("tool_choice") != Some(&json!("none"));
    let mut tool_call = wants_tool.then(|| {
        let name = tool.as_ref().and_then(|t| t.pointer("/function/name")).and_then(Value::as_str).unwrap_or("tool");
        json!({"id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": "{\"city\": \"Paris\"}"}})
    });
    if tool_call.is_none() && last.get("role").and_then(Value::as_str) == Some("user") {
        tool_call = forced_call(&body);
    }
    let answer = if last.get("role").and_then(Value::as_str) == Some("tool") {
        format!("echo: the tool said {}", last.get("content").map(content_text).unwrap_or_default())
    } else if tool_call.is_some() {
        String::new()
    } else if let Some(schema) = body.get("response_format").filter(|f| f["type"] == "json_schema") {
        crate::support::schema_example(&schema["json_schema"]["schema"]).to_string()
    } else {
        format!("echo: {last_user}")
    };
    let prompt_tokens: u64 =
        messages.iter().map(|m| tokens(&m.get("content").map(content_text).unwrap_or_default()) + 3).sum();
    let completion_tokens = tokens(&answer);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    });
    let id = new_id("chatcmpl-");
    let created = now();
    if !wants_stream(&body) {
        return ok_json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": match &tool_call {
                    Some(call) => json!({"role": "assistant", "content": null, "tool_calls": [call], "refusal": null, "annotations": []}),
                    None => json!({"role": "assistant", "content": answer, "refusal": null, "annotations": []}),
                },
                "logprobs": null,
                "finish_reason": if tool_call.is_some() { "tool_calls" } else { "stop" }
            }],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT
        }));
    }
    let with_usage = include_usage(&body);
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        });
        if with_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let choice =
        |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events =
        vec![data_event(chunk(choice(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)))];
    for piece in pieces(&answer) {
        events.push(data_event(chunk(choice(json!({"content": piece}), Value::Null))));
    }
    if let Some(call) = &tool_call {
        // The call's head first, then its arguments in two pieces, as OpenAI streams them.
        let head = json!({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]});
        events.push(data_event(chunk(choice(head, Value::Null))));
        let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
        for part in split_arguments(arguments) {
            let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]});
            events.push(data_event(chunk(choice(delta, Value::Null))));
        }
    }
    let finish = if tool_call.is_some() { "tool_calls" } else { "stop" };
    events.push(data_event(chunk(choice(json!({}), json!(finish)))));
    if with_usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        events.push(data_event(last));
    }
    events.push(data_event("[DONE]"));
    Ok(sse(events))
}

/// A call's arguments in the two pieces they stream in: up to the first `:`, and the rest.
fn split_arguments(arguments: &str) -> [&str; 2] {
    let at = arguments.find(':').map_or(arguments.len() / 2, |i| i + 1);
    [&arguments[..at], &arguments[at..]]
}

/// The call a forced `tool_choice` (`required`, or a named function) makes: the named tool (the
/// first for `required`), its arguments an example of its parameters' schema.
fn forced_call(body: &Map<String, Value>) -> Option<Value> {
    let tools = body.get("tools").and_then(Value::as_array)?;
    let tool = match body.get("tool_choice")? {
        Value::String(choice) if choice == "required" => tools.first()?,
        choice => {
            let name = choice.pointer("/function/name")?;
            tools.iter().find(|t| t.pointer("/function/name") == Some(name))?
        }
    };
    let (name, parameters) = (&tool["function"]["name"], tool.pointer("/function/parameters").unwrap_or(&Value::Null));
    let arguments = crate::support::schema_example(parameters).to_string();
    Some(json!({"id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": arguments}}))
}

fn completions(req: &Req) -> Reply {
    let body = json_body(req, &["model", "prompt"])?;
    let model = str_field(&body, "model")?;
    let prompt = match &body["prompt"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => match items.first() {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
        other => other.to_string(),
    };
    let text = format!("echo: {prompt}");
    let prompt_tokens = tokens(&prompt);
    let completion_tokens = tokens(&text);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens
    });
    let id = new_id("cmpl-");
    let created = now();
    let object = |choices: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        })
    };
    let choice =
        |text: &str, finish: Value| json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);
    if !wants_stream(&body) {
        let mut answer = object(choice(&text, json!("stop")));
        answer["usage"] = usage;
        return ok_json(answer);
    }
    let mut events: Vec<Event> =
        pieces(&text).iter().map(|piece| data_event(object(choice(piece, Value::Null)))).collect();
    events.push(data_event(object(choice("", json!("stop")))));
    if include_usage(&body) {
        let mut last = object(json!([]));
        last["usage"] = usage;
        events.push(data_event(last));
    }
    events.push(data_event("[DONE]"));
    Ok(sse(events))
}

// ---------------------------------------------------------------------------------------------
// Embeddings and moderations

const EMBEDDING_DIMENSION: u64 = 8;

/// A deterministic vector for one input, every component exactly representable in f32.
fn embedding_vector(input: &str) -> Vec<f32> {
    let seed = fnv64(input.as_bytes());
    (0..EMBEDDING_DIMENSION)
        .map(|i| {
            // splitmix64's finaliser spreads the seed over all 64 bits for each component.
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // 24 bits: exact in f32, so float and base64 answers decode to the same numbers.
            ((z >> 40) as f32) / ((1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn embeddings(req: &Req) -> Reply {
    let body = json_body(req, &["model", "input"])?;
    let model = str_field(&body, "model")?;
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_number) => vec![body["input"].to_string()],
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => {
            return Err(bad_param(
                "input",
                "Invalid 'input': expected a string, an array of strings or an array of token arrays.",
            ))
        }
    };
    if inputs.is_empty() {
        return Err(bad_param("input", "'input' must not be empty."));
    }
    let format = body.get("encoding_format").and_then(Value::as_str).unwrap_or("float");
    if format != "float" && format != "base64" {
        return Err(bad_param(
            "encoding_format",
            format!("Invalid value for 'encoding_format': '{format}'. Supported values are: 'float' and 'base64'."),
        ));
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = embedding_vector(input);
            let embedding = if format == "base64" {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt_tokens: u64 = inputs.iter().map(|i| tokens(i)).sum();
    ok_json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    }))
}

const MODERATION_CATEGORIES: &[&str] = &[
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

fn moderations(req: &Req) -> Reply {
    let body = json_body(req, &["input"])?;
    let model = body.get("model").and_then(Value::as_str).unwrap_or("omni-moderation-latest");
    let count = match &body["input"] {
        // A list of strings is one result each; a list of multimodal parts is one input.
        Value::Array(items) if items.iter().all(Value::is_string) => items.len().max(1),
        _ => 1,
    };
    let result = json!({
        "flagged": false,
        "categories": MODERATION_CATEGORIES.iter().map(|c| (c.to_string(), json!(false))).collect::<Map<_, _>>(),
        "category_scores": MODERATION_CATEGORIES.iter().map(|c| (c.to_string(), json!(0.000_012))).collect::<Map<_, _>>(),
        "category_applied_input_types": MODERATION_CATEGORIES.iter().map(|c| (c.to_string(), json!(["text"]))).collect::<Map<_, _>>(),
    });
    ok_json(json!({
        "id": new_id("modr-"),
        "model": model,
        "results": vec![result; count],
    }))
}

// ---------------------------------------------------------------------------------------------
// Audio and images

fn speech(req: &Req) -> Reply {
    let body = json_body(req, &["model", "input", "voice"])?;
    let input = str_field(&body, "input")?;
    let content_type = match body.get("response_format").and_then(Value::as_str) {
        None | Some("mp3") => "audio/mpeg",
        Some("opus") => "audio/opus",
        Some("aac") => "audio/aac",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        Some("pcm") => "audio/pcm",
        Some(other) => {
            return Err(bad_param("response_format", format!("Invalid value for 'response_format': '{other}'.")))
        }
    };
    // Sent in 16 KiB frames, chunked, as OpenAI streams generated audio.
    let audio = speech_bytes(input);
    let frames: Vec<Result<Bytes, std::convert::Infallible>> =
        audio.chunks(16 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(futures::stream::iter(frames)))
        .expect("speech response"))
}

/// Transcriptions and translations: the file's name, size and hash come back with the text.
async fn transcribe(req: &Req, task: &str) -> Reply {
    let parts = multipart(req).await?;
    let file = part(&parts, "file").ok_or_else(|| missing("file"))?;
    let model = text_part(&parts, "model").ok_or_else(|| missing("model"))?;
    let file_name = file.file_name.clone().unwrap_or_else(|| "upload".into());
    let text = match task {
        "translate" => format!("translated {file_name}"),
        _ => format!("transcribed {file_name}"),
    };
    let format = text_part(&parts, "response_format").unwrap_or_else(|| "json".into());
    let mut answer = json!({
        "text": text,
        "model": model,
        "file_bytes": file.data.len(),
        "file_fnv64": fnv64_hex(&file.data),
        "file_content_type": file.content_type,
    });
    match format.as_str() {
        "json" => {
            if task == "transcribe" {
                answer["usage"] = json!({"type": "duration", "seconds": 1});
            }
            ok_json(answer)
        }
        "verbose_json" => {
            answer["task"] = json!(task);
            answer["language"] = json!("english");
            answer["duration"] = json!(1.0);
            answer["segments"] = json!([]);
            ok_json(answer)
        }
        "text" | "srt" | "vtt" => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response())
        }
        other => Err(bad_param("response_format", format!("Invalid value for 'response_format': '{other}'."))),
    }
}

fn image_generations(req: &Req) -> Reply {
    let body = json_body(req, &["prompt"])?;
    let prompt = str_field(&body, "prompt")?;
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=10).contains(&n) {
        return Err(bad_param("n", "'n' must be between 1 and 10."));
    }
    let b64 = body.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let data: Vec<Value> = (1..=n)
        .map(|i| {
            if b64 {
                let png = [&b"\x89PNG\r\n\x1a\n"[..], prompt.as_bytes()].concat();
                json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(png), "revised_prompt": prompt})
            } else {
                json!({"url": format!("https://images.invalid/{i}.png"), "revised_prompt": prompt})
            }
        })
        .collect();
    ok_json(json!({"created": now(), "data": data}))
}

// ---------------------------------------------------------------------------------------------
// Files

async fn upload_file(shared: &Shared, req: &Req) -> Reply {
    let parts = multipart(req).await?;
    let file = part(&parts, "file").ok_or_else(|| missing("file"))?;
    let purpose = text_part(&parts, "purpose").ok_or_else(|| missing("purpose"))?;
    let object = json!({
        "id": new_id("file-"),
        "object": "file",
        "bytes": file.data.len(),
        "created_at": now(),
        "expires_at": null,
        "filename": file.file_name.clone().unwrap_or_else(|| "upload".into()),
        "purpose": purpose,
        "status": "processed",
        "status_details": null,
    });
    shared.store.lock().unwrap().files.push(StoredFile { object: object.clone(), content: file.data.to_vec() });
    ok_json(object)
}

/// `{"object": "list", "data", "first_id", "last_id", "has_more": false}`.
fn list_of(data: Vec<Value>) -> Value {
    let id = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "data": data,
        "has_more": false,
    })
}

/// Query parameters, percent-decoded.
fn query_param(req: &Req, key: &str) -> Option<String> {
    req.query.as_deref()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn list_files(shared: &Shared, req: &Req) -> Reply {
    let purpose = query_param(req, "purpose");
    let store = shared.store.lock().unwrap();
    let data: Vec<Value> = store
        .files
        .iter()
        .rev()
        .filter(|f| purpose.as_deref().is_none_or(|p| f.object["purpose"] == p))
        .map(|f| f.object.clone())
        .collect();
    ok_json(list_of(data))
}

fn get_file(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.files.iter().find(|f| f.object["id"] == id) {
        Some(f) => ok_json(f.object.clone()),
        None => Err(not_found("File", id, "id")),
    }
}

fn file_content(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.files.iter().find(|f| f.object["id"] == id) {
        Some(f) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], f.content.clone()).into_response()),
        None => Err(not_found("File", id, "id")),
    }
}

fn delete_file(shared: &Shared, id: &str) -> Reply {
    let mut store = shared.store.lock().unwrap();
    let Some(at) = store.files.iter().position(|f| f.object["id"] == id) else {
        return Err(not_found("File", id, "id"));
    };
    store.files.remove(at);
    ok_json(json!({"id": id, "object": "file", "deleted": true}))
}

// ---------------------------------------------------------------------------------------------
// Batches

const BATCH_ENDPOINTS: &[&str] =
    &["/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations"];

fn create_batch(shared: &Shared, req: &Req) -> Reply {
    let body = json_body(req, &["input_file_id", "endpoint", "completion_window"])?;
    let input_file_id = str_field(&body, "input_file_id")?;
    let endpoint = str_field(&body, "endpoint")?;
    let window = str_field(&body, "completion_window")?;
    if !BATCH_ENDPOINTS.contains(&endpoint) {
        return Err(bad_param(
            "endpoint",
            format!(
                "Invalid value for 'endpoint': '{endpoint}'. Supported values are: {}.",
                BATCH_ENDPOINTS.join(", ")
            ),
        ));
    }
    if window != "24h" {
        return Err(bad_param(
            "completion_window",
            format!("Invalid value for 'completion_window': '{window}'. Supported values are: '24h'."),
        ));
    }
    let mut store = shared.store.lock().unwrap();
    let Some(file) = store.files.iter().find(|f| f.object["id"] == input_file_id) else {
        return Err(bad_param(
            "input_file_id",
            format!("Invalid 'input_file_id': '{input_file_id}'. No file with that id exists."),
        ));
    };
    let total = String::from_utf8_lossy(&file.content).lines().filter(|l| !l.trim().is_empty()).count();
    let created = now();
    let batch = json!({
        "id": new_id("batch_"),
        "object": "batch",
        "endpoint": endpoint,
        "errors": null,
        "input_file_id": input_file_id,
        "completion_window": window,
        "status": "validating",
        "output_file_id": null,
        "error_file_id": null,
        "created_at": created,
        "in_progress_at": null,
        "expires_at": created + 24 * 3600,
        "finalizing_at": null,
        "completed_at": null,
        "failed_at": null,
        "expired_at": null,
        "cancelling_at": null,
        "cancelled_at": null,
        "request_counts": {"total": total, "completed": 0, "failed": 0},
        "metadata": body.get("metadata").cloned().unwrap_or(Value::Null),
    });
    store.batches.push(batch.clone());
    ok_json(batch)
}

fn list_batches(shared: &Shared) -> Reply {
    let store = shared.store.lock().unwrap();
    ok_json(list_of(store.batches.iter().rev().cloned().collect()))
}

fn get_batch(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.batches.iter().find(|b| b["id"] == id) {
        Some(b) => ok_json(b.clone()),
        None => Err(not_found("Batch", id, "batch_id")),
    }
}

fn cancel_batch(shared: &Shared, id: &str) -> Reply {
    let mut store = shared.store.lock().unwrap();
    let Some(batch) = store.batches.iter_mut().find(|b| b["id"] == id) else {
        return Err(not_found("Batch", id, "batch_id"));
    };
    if matches!(batch["status"].as_str(), Some("validating" | "in_progress" | "finalizing")) {
        batch["status"] = json!("cancelling");
        batch["cancelling_at"] = json!(now());
    }
    ok_json(batch.clone())
}

// ---------------------------------------------------------------------------------------------
// Responses

/// The input items of a Responses request, each with an id.
fn input_items(input: &Value) -> Vec<Value> {
    let text_item = |role: &str, text: &str| {
        json!({
            "id": new_id("msg_"),
            "type": "message",
            "role": role,
            "status": "completed",
            "content": [{"type": "input_text", "text": text}],
        })
    };
    match input {
        Value::String(s) => vec![text_item("user", s)],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                match item.get("content") {
                    Some(Value::String(s)) => text_item(role, s),
                    _ => {
                        let mut item = item.clone();
                        if let Some(obj) = item.as_object_mut() {
                            obj.entry("id").or_insert_with(|| json!(new_id("msg_")));
                            obj.entry("type").or_insert_with(|| json!("message"));
                        }
                        item
                    }
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn create_response(shared: &Shared, req: &Req) -> Reply {
    let body = json_body(req, &["model"])?;
    let model = str_field(&body, "model")?;
    let items = input_items(body.get("input").unwrap_or(&Value::Null));
    let last_user =
        items.iter().rev().find(|i| i["role"] == "user").map(|i| content_text(&i["content"])).unwrap_or_default();
    // Function tools as chat's: a weather question gets a call, a call's output an answer, and
    // a `text.format` JSON schema an example of it.
    let last = items.last().cloned().unwrap_or(Value::Null);
    let function = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.iter().find(|t| t["type"] == "function"))
        .filter(|_| body.get("tool_choice") != Some(&json!("none")));
    let call = function.filter(|_| last["role"] == "user" && last_user.to_lowercase().contains("weather")).map(|f| {
        json!({"type": "function_call", "id": new_id("fc_"), "call_id": new_id("call_"), "name": f["name"],
               "arguments": "{\"city\": \"Paris\"}", "status": "completed"})
    });
    let answer = if last["type"] == "function_call_output" {
        format!("echo: the tool said {}", content_text(&last["output"]))
    } else if let Some(format) = body.get("text").and_then(|t| t.get("format")).filter(|f| f["type"] == "json_schema") {
        crate::support::schema_example(&format["schema"]).to_string()
    } else {
        format!("echo: {last_user}")
    };
    let (input_tokens, output_tokens) = (tokens(&last_user), tokens(&answer));
    let id = new_id("resp_");
    let message_id = new_id("msg_");
    let message = |status: &str, text: &str| {
        json!({
            "type": "message",
            "id": message_id,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id,
            "object": "response",
            "created_at": now(),
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": true,
            "temperature": body.get("temperature").cloned().unwrap_or(json!(1.0)),
            "text": body.get("text").cloned().unwrap_or_else(|| json!({"format": {"type": "text"}})),
            "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto")),
            "tools": body.get("tools").cloned().unwrap_or(json!([])),
            "top_p": body.get("top_p").cloned().unwrap_or(json!(1.0)),
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": body.get("metadata").cloned().unwrap_or(json!({})),
        })
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let output = match &call {
        Some(call) => json!([call]),
        None => json!([message("completed", &answer)]),
    };
    let done = response("completed", output, usage);
    shared.store.lock().unwrap().responses.insert(id.clone(), (done.clone(), items));
    if !wants_stream(&body) {
        return ok_json(done);
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        events.push(named_event(kind, data));
    };
    let started = response("in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": started}));
    push("response.in_progress", json!({"response": started}));
    if let Some(call) = &call {
        let item_id = &call["id"];
        let mut added = call.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        push("response.output_item.added", json!({"output_index": 0, "item": added}));
        let arguments = call["arguments"].as_str().unwrap_or_default();
        for piece in split_arguments(arguments) {
            push(
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": 0, "delta": piece}),
            );
        }
        push(
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": 0, "arguments": arguments}),
        );
        push("response.output_item.done", json!({"output_index": 0, "item": call}));
        push("response.completed", json!({"response": done}));
        return Ok(sse(events));
    }
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": {
            "type": "message", "id": message_id, "status": "in_progress", "role": "assistant", "content": []
        }}),
    );
    push(
        "response.content_part.added",
        json!({"item_id": message_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for piece in pieces(&answer) {
        push(
            "response.output_text.delta",
            json!({"item_id": message_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": message_id, "output_index": 0, "content_index": 0, "text": answer, "logprobs": []}),
    );
    push(
        "response.content_part.done",
        json!({"item_id": message_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": answer, "annotations": []}}),
    );
    push("response.output_item.done", json!({"output_index": 0, "item": message("completed", &answer)}));
    push("response.completed", json!({"response": done}));
    Ok(sse(events))
}

fn get_response(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.responses.get(id) {
        Some((response, _)) => ok_json(response.clone()),
        None => Err(response_not_found(id)),
    }
}

fn response_not_found(id: &str) -> OpenAiError {
    error(StatusCode::NOT_FOUND, format!("Response with id '{id}' not found."), None, None)
}

fn delete_response(shared: &Shared, id: &str) -> Reply {
    let mut store = shared.store.lock().unwrap();
    match store.responses.remove(id) {
        Some(_) => ok_json(json!({"id": id, "object": "response", "deleted": true})),
        None => Err(response_not_found(id)),
    }
}

fn response_input_items(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.responses.get(id) {
        Some((_, items)) => ok_json(list_of(items.iter().rev().cloned().collect())),
        None => Err(response_not_found(id)),
    }
}

// ---------------------------------------------------------------------------------------------
// Fine-tuning

fn fine_tuning_event(message: &str, created: u64) -> Value {
    json!({
        "object": "fine_tuning.job.event",
        "id": new_id("ftevent-"),
        "created_at": created,
        "level": "info",
        "message": message,
        "data": {},
        "type": "message",
    })
}

fn create_job(shared: &Shared, req: &Req) -> Reply {
    let body = json_body(req, &["model", "training_file"])?;
    let model = str_field(&body, "model")?;
    let training_file = str_field(&body, "training_file")?;
    let created = now();
    let id = new_id("ftjob-");
    let hyperparameters = body
        .get("hyperparameters")
        .cloned()
        .unwrap_or_else(|| json!({"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}));
    let job = json!({
        "object": "fine_tuning.job",
        "id": id,
        "model": model,
        "created_at": created,
        "finished_at": null,
        "fine_tuned_model": null,
        "organization_id": "org-fakeopenai",
        "result_files": [],
        "status": "validating_files",
        "validation_file": body.get("validation_file").cloned().unwrap_or(Value::Null),
        "training_file": training_file,
        "hyperparameters": hyperparameters,
        "trained_tokens": null,
        "error": null,
        "user_provided_suffix": body.get("suffix").cloned().unwrap_or(Value::Null),
        "seed": body.get("seed").cloned().unwrap_or(json!(42)),
        "estimated_finish": null,
        "integrations": [],
        "metadata": body.get("metadata").cloned().unwrap_or(Value::Null),
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
    });
    let events = vec![
        fine_tuning_event(&format!("Created fine-tuning job: {id}"), created),
        fine_tuning_event(&format!("Validating training file: {training_file}"), created),
    ];
    shared.store.lock().unwrap().jobs.push(FineTuningJob { object: job.clone(), events });
    ok_json(job)
}

fn list_jobs(shared: &Shared) -> Reply {
    let store = shared.store.lock().unwrap();
    let data: Vec<Value> = store.jobs.iter().rev().map(|j| j.object.clone()).collect();
    ok_json(json!({"object": "list", "data": data, "has_more": false}))
}

fn get_job(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.jobs.iter().find(|j| j.object["id"] == id) {
        Some(j) => ok_json(j.object.clone()),
        None => Err(job_not_found(id)),
    }
}

fn job_not_found(id: &str) -> OpenAiError {
    error(
        StatusCode::NOT_FOUND,
        format!("Could not find fine tune: {id}"),
        Some("fine_tune_id"),
        Some("fine_tune_not_found"),
    )
}

fn cancel_job(shared: &Shared, id: &str) -> Reply {
    let mut store = shared.store.lock().unwrap();
    let Some(job) = store.jobs.iter_mut().find(|j| j.object["id"] == id) else {
        return Err(job_not_found(id));
    };
    job.object["status"] = json!("cancelled");
    job.events.push(fine_tuning_event("Fine-tuning job cancelled", now()));
    ok_json(job.object.clone())
}

fn job_events(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    let Some(job) = store.jobs.iter().find(|j| j.object["id"] == id) else {
        return Err(job_not_found(id));
    };
    let data: Vec<Value> = job.events.iter().rev().cloned().collect();
    ok_json(json!({"object": "list", "data": data, "has_more": false}))
}

// ---------------------------------------------------------------------------------------------
// Assistants and threads

fn create_assistant(shared: &Shared, req: &Req) -> Reply {
    let body = json_body(req, &["model"])?;
    let model = str_field(&body, "model")?;
    let field = |name: &str, default: Value| body.get(name).cloned().unwrap_or(default);
    let assistant = json!({
        "id": new_id("asst_"),
        "object": "assistant",
        "created_at": now(),
        "name": field("name", Value::Null),
        "description": field("description", Value::Null),
        "model": model,
        "instructions": field("instructions", Value::Null),
        "tools": field("tools", json!([])),
        "tool_resources": field("tool_resources", json!({})),
        "metadata": field("metadata", json!({})),
        "top_p": field("top_p", json!(1.0)),
        "temperature": field("temperature", json!(1.0)),
        "reasoning_effort": field("reasoning_effort", Value::Null),
        "response_format": field("response_format", json!("auto")),
    });
    shared.store.lock().unwrap().assistants.push(assistant.clone());
    ok_json(assistant)
}

fn list_assistants(shared: &Shared) -> Reply {
    let store = shared.store.lock().unwrap();
    ok_json(list_of(store.assistants.iter().rev().cloned().collect()))
}

fn delete_assistant(shared: &Shared, id: &str) -> Reply {
    let mut store = shared.store.lock().unwrap();
    let Some(at) = store.assistants.iter().position(|a| a["id"] == id) else {
        return Err(not_found("assistant", id, "assistant_id"));
    };
    store.assistants.remove(at);
    ok_json(json!({"id": id, "object": "assistant.deleted", "deleted": true}))
}

fn message_object(thread_id: &str, role: &str, content: &Value, body: &Map<String, Value>) -> Value {
    let parts: Vec<Value> = match content {
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text").and_then(Value::as_str) {
                Some(text) => json!({"type": "text", "text": {"value": text, "annotations": []}}),
                None => p.clone(),
            })
            .collect(),
        other => vec![json!({"type": "text", "text": {"value": content_text(other), "annotations": []}})],
    };
    json!({
        "id": new_id("msg_"),
        "object": "thread.message",
        "created_at": now(),
        "assistant_id": null,
        "thread_id": thread_id,
        "run_id": null,
        "role": role,
        "content": parts,
        "attachments": body.get("attachments").cloned().unwrap_or(json!([])),
        "metadata": body.get("metadata").cloned().unwrap_or(json!({})),
        "status": "completed",
        "incomplete_details": null,
        "completed_at": now(),
        "incomplete_at": null,
    })
}

fn create_thread(shared: &Shared, req: &Req) -> Reply {
    let body = json_object(req, true)?;
    let id = new_id("thread_");
    let mut messages = Vec::new();
    if let Some(list) = body.get("messages").and_then(Value::as_array) {
        for (i, m) in list.iter().enumerate() {
            let (Some(role), Some(content)) = (m.get("role").and_then(Value::as_str), m.get("content")) else {
                return Err(missing(&format!("messages[{i}].content")));
            };
            let empty = Map::new();
            messages.push(message_object(&id, role, content, m.as_object().unwrap_or(&empty)));
        }
    }
    let thread = json!({
        "id": id,
        "object": "thread",
        "created_at": now(),
        "metadata": body.get("metadata").cloned().unwrap_or(json!({})),
        "tool_resources": body.get("tool_resources").cloned().unwrap_or(json!({})),
    });
    shared.store.lock().unwrap().threads.insert(id, Thread { object: thread.clone(), messages });
    ok_json(thread)
}

fn thread_not_found(id: &str) -> OpenAiError {
    not_found("thread", id, "thread_id")
}

fn get_thread(shared: &Shared, id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.threads.get(id) {
        Some(t) => ok_json(t.object.clone()),
        None => Err(thread_not_found(id)),
    }
}

fn create_message(shared: &Shared, thread_id: &str, req: &Req) -> Reply {
    let body = json_body(req, &["role", "content"])?;
    let role = str_field(&body, "role")?;
    if role != "user" && role != "assistant" {
        return Err(bad_param(
            "role",
            format!("Invalid value: '{role}'. Supported values are: 'user' and 'assistant'."),
        ));
    }
    let mut store = shared.store.lock().unwrap();
    let Some(thread) = store.threads.get_mut(thread_id) else {
        return Err(thread_not_found(thread_id));
    };
    let message = message_object(thread_id, role, &body["content"], &body);
    thread.messages.push(message.clone());
    ok_json(message)
}

fn list_messages(shared: &Shared, thread_id: &str) -> Reply {
    let store = shared.store.lock().unwrap();
    match store.threads.get(thread_id) {
        Some(t) => ok_json(list_of(t.messages.iter().rev().cloned().collect())),
        None => Err(thread_not_found(thread_id)),
    }
}

fn create_run(shared: &Shared, thread_id: &str, req: &Req) -> Reply {
    let body = json_body(req, &["assistant_id"])?;
    let assistant_id = str_field(&body, "assistant_id")?;
    let store = shared.store.lock().unwrap();
    if !store.threads.contains_key(thread_id) {
        return Err(thread_not_found(thread_id));
    }
    let assistant = store.assistants.iter().find(|a| a["id"] == assistant_id);
    let from_assistant = |name: &str, default: Value| {
        body.get(name).or_else(|| assistant.and_then(|a| a.get(name))).cloned().unwrap_or(default)
    };
    let created = now();
    let run = json!({
        "id": new_id("run_"),
        "object": "thread.run",
        "created_at": created,
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "status": "queued",
        "started_at": null,
        "expires_at": created + 600,
        "cancelled_at": null,
        "failed_at": null,
        "completed_at": null,
        "required_action": null,
        "last_error": null,
        "model": from_assistant("model", json!("gpt-4o")),
        "instructions": from_assistant("instructions", json!("")),
        "tools": from_assistant("tools", json!([])),
        "metadata": body.get("metadata").cloned().unwrap_or(json!({})),
        "incomplete_details": null,
        "usage": null,
        "temperature": from_assistant("temperature", json!(1.0)),
        "top_p": from_assistant("top_p", json!(1.0)),
        "max_prompt_tokens": null,
        "max_completion_tokens": null,
        "truncation_strategy": {"type": "auto", "last_messages": null},
        "response_format": "auto",
        "tool_choice": "auto",
        "parallel_tool_calls": true,
    });
    drop(store);
    if !wants_stream(&body) {
        return ok_json(run);
    }
    Ok(sse(vec![
        named_event("thread.run.created", &run),
        named_event("thread.run.queued", &run),
        named_event("done", "[DONE]"),
    ]))
}

// ---------------------------------------------------------------------------------------------
// Vector stores and rerank

fn create_vector_store(shared: &Shared, req: &Req) -> Reply {
    let body = json_object(req, true)?;
    let files = body.get("file_ids").and_then(Value::as_array).map_or(0, Vec::len);
    let created = now();
    let store = json!({
        "id": new_id("vs_"),
        "object": "vector_store",
        "created_at": created,
        "name": body.get("name").cloned().unwrap_or(Value::Null),
        "usage_bytes": 0,
        "file_counts": {"in_progress": 0, "completed": files, "failed": 0, "cancelled": 0, "total": files},
        "status": "completed",
        "expires_after": body.get("expires_after").cloned().unwrap_or(Value::Null),
        "expires_at": null,
        "last_active_at": created,
        "metadata": body.get("metadata").cloned().unwrap_or(json!({})),
    });
    shared.store.lock().unwrap().vector_stores.push(store.clone());
    ok_json(store)
}

fn list_vector_stores(shared: &Shared) -> Reply {
    let store = shared.store.lock().unwrap();
    ok_json(list_of(store.vector_stores.iter().rev().cloned().collect()))
}

fn search_vector_store(shared: &Shared, id: &str, req: &Req) -> Reply {
    let body = json_body(req, &["query"])?;
    if !shared.store.lock().unwrap().vector_stores.iter().any(|v| v["id"] == id) {
        return Err(not_found("vector store", id, "vector_store_id"));
    }
    let queries: Vec<String> = match &body["query"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => return Err(bad_param("query", "Invalid type for 'query': expected a string or an array of strings.")),
    };
    let data: Vec<Value> = queries
        .iter()
        .map(|q| {
            json!({
                "file_id": "file-vectorstorefake",
                "filename": "notes.txt",
                "score": 0.87,
                "attributes": {},
                "content": [{"type": "text", "text": format!("A passage about {q}.")}],
            })
        })
        .collect();
    ok_json(json!({
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": data,
        "has_more": false,
        "next_page": null,
    }))
}

fn rerank(req: &Req) -> Reply {
    let body = json_body(req, &["model", "query", "documents"])?;
    let query = str_field(&body, "query")?.to_lowercase();
    let documents: Vec<String> = body["documents"]
        .as_array()
        .ok_or_else(|| bad_param("documents", "Invalid type for 'documents': expected an array."))?
        .iter()
        .map(|d| match d {
            Value::String(s) => s.clone(),
            other => other.get("text").and_then(Value::as_str).map_or_else(|| other.to_string(), str::to_owned),
        })
        .collect();
    let words: Vec<&str> = query.split_whitespace().collect();
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(index, doc)| {
            let doc = doc.to_lowercase();
            let hits = words.iter().filter(|w| doc.contains(**w)).count();
            // Ties break towards earlier documents by a tiny index penalty.
            let score = hits as f64 / words.len().max(1) as f64 * 0.9 + 0.05 - index as f64 * 1e-4;
            (index, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_n = body.get("top_n").and_then(Value::as_u64).map_or(scored.len(), |n| n as usize);
    let return_documents = body.get("return_documents").and_then(Value::as_bool) == Some(true);
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut result = json!({"index": index, "relevance_score": score});
            if return_documents {
                result["document"] = json!({"text": documents[index]});
            }
            result
        })
        .collect();
    ok_json(json!({
        "id": new_id("rerank-"),
        "results": results,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }))
}

// ---------------------------------------------------------------------------------------------
// Input token counts

/// `POST /v1/responses/input_tokens`: `{"object": "response.input_tokens", "input_tokens"}`
/// with [`input_token_count`]; a last user text containing "server error" gets a 500.
fn count_input_tokens(req: &Req) -> Reply {
    let body = json_object(req, false)?;
    let items = input_items(body.get("input").unwrap_or(&Value::Null));
    let last_user =
        items.iter().rev().find(|i| i["role"] == "user").map(|i| content_text(&i["content"])).unwrap_or_default();
    if last_user.contains("server error") {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error processing your request.",
            None,
            None,
        ));
    }
    ok_json(json!({"object": "response.input_tokens", "input_tokens": input_token_count(&Value::Object(body))}))
}

/// The fake's count of a Responses request: 7, plus one per word of `instructions` and of each
/// input item's text.
pub fn input_token_count(body: &Value) -> u64 {
    let words = |text: &str| text.split_whitespace().count() as u64;
    let items = input_items(body.get("input").unwrap_or(&Value::Null));
    let instructions = body.get("instructions").and_then(Value::as_str).unwrap_or_default();
    7 + words(instructions) + items.iter().map(|i| words(&content_text(&i["content"]))).sum::<u64>()
}
