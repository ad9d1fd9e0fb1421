//! A fake Ollama server on 127.0.0.1:0, speaking Ollama's native API: `/api/chat`,
//! `/api/generate` and `/api/embed`.
//!
//! As the real server: a request without `"stream": false` is answered as a stream of
//! newline-delimited JSON (`application/x-ndjson`), one object a line, the last `done: true`
//! with `done_reason`, `prompt_eval_count` and `eval_count`; failures are `{"error": "..."}`
//! with the status Ollama gives them: 400 for a body it cannot read (tool-call arguments that
//! are not an object, images that are not base64, a missing model), 404 for a model that is
//! not pulled (any name starting with `missing`), 500 when the runner dies (`crash`), and an
//! `{"error"}` line in the middle of a stream (`flaky`, after its first piece). It has no
//! authentication of its own, so it takes whatever headers come and records them.
//!
//! Answers are deterministic: `echo: <last user text>` (`echo: <prompt>` on /api/generate),
//! one line per word when streamed; a call of the first tool (`{"location": <the word after
//! "in ">}`) for a weather question with tools; `<tool_name> says: <content>` after a tool
//! message; `{"answer": "echo"}` in JSON mode; a thought first when `think` is true. Token
//! counts are words. `options.num_predict` cuts the answer (`done_reason: "length"`).
//! Embeddings are unit vectors of the text (`dimensions`, else 4).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running fake Ollama. The server stops when this is dropped.
pub struct FakeOllama {
    /// `http://127.0.0.1:PORT`: what a deployment's `api_base` is set to.
    pub base_url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {}", self.path, String::from_utf8_lossy(&self.body)))
    }
}

/// Dimensions of an embedding when the request names none.
pub const EMBEDDING_DIMENSIONS: usize = 4;

/// Ollama's timestamp in every answer (fixed, so answers are exact).
const CREATED_AT: &str = "2024-07-22T20:33:28.123648Z";

impl FakeOllama {
    pub async fn start() -> FakeOllama {
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let app = Router::new()
            .route("/api/chat", post(chat))
            .route("/api/generate", post(generate))
            .route("/api/embed", post(embed))
            .fallback(unknown_route)
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Ollama binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOllama { base_url: format!("http://{addr}"), log, server }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// The most recent request to `path` (e.g. `/api/chat`).
    pub fn last(&self, path: &str) -> Option<Recorded> {
        self.log.lock().unwrap().iter().rev().find(|r| r.path == path).cloned()
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Log = Arc<Mutex<Vec<Recorded>>>;

fn record(log: &Log, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    let headers = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    log.lock().unwrap().push(Recorded { path: uri.path().to_owned(), headers, body: body.to_vec() });
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// A refusal before any answer: Ollama's status and `error` message.
struct Refused(StatusCode, String);

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Refused {
        Refused(status, message.into())
    }

    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

async fn unknown_route(State(log): State<Log>, _method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    record(&log, &uri, &headers, &body);
    // Ollama's router answers unknown paths with Go's plain-text 404.
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

/// The body as an object, and its model as one Ollama has pulled; or the error Ollama gives.
fn read(body: &Bytes) -> Result<(Value, String), Refused> {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                "json: cannot unmarshal array into Go value of type api.ChatRequest",
            ))
        }
        Err(e) => return Err(Refused::new(StatusCode::BAD_REQUEST, format!("invalid character: {e}"))),
    };
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if model.is_empty() {
        return Err(Refused::new(StatusCode::BAD_REQUEST, "model is required"));
    }
    if model.starts_with("missing") {
        return Err(Refused::new(StatusCode::NOT_FOUND, format!("model \"{model}\" not found, try pulling it first")));
    }
    if model.starts_with("crash") {
        return Err(Refused::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "llama runner process has terminated: exit status 2",
        ));
    }
    Ok((body, model))
}

/// Go's decoding of base64 images: anything else is refused before the model runs.
fn check_images(images: &Value) -> Result<(), Refused> {
    for image in images.as_array().map(Vec::as_slice).unwrap_or_default() {
        let text = image.as_str().unwrap_or_default();
        if base64::engine::general_purpose::STANDARD.decode(text).is_err() {
            return Err(Refused::new(StatusCode::BAD_REQUEST, "illegal base64 data at input byte 0"));
        }
    }
    Ok(())
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The word after the last " in " of `text`, letters only.
fn place_in(text: &str) -> String {
    let after = text.rsplit_once(" in ").map(|(_, rest)| rest).unwrap_or_default();
    let place: String = after.chars().take_while(|c| c.is_alphabetic()).collect();
    if place.is_empty() {
        "Paris".to_owned()
    } else {
        place
    }
}

fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) != Some(false)
}

/// The answer cut to `options.num_predict` words, and its `done_reason`.
fn limit(text: String, body: &Value) -> (String, &'static str) {
    match body.pointer("/options/num_predict").and_then(Value::as_u64) {
        Some(max) if words(&text) > max => {
            (text.split_whitespace().take(max as usize).collect::<Vec<_>>().join(" "), "length")
        }
        _ => (text, "stop"),
    }
}

fn timings(prompt: u64, eval: u64) -> Value {
    json!({
        "total_duration": 5_043_500_667u64, "load_duration": 5_025_959, "prompt_eval_count": prompt,
        "prompt_eval_duration": 325_953_000, "eval_count": eval, "eval_duration": 4_709_213_000u64
    })
}

/// Splits an answer into stream pieces: one per word, each after the first with its space.
fn pieces(text: &str) -> Vec<String> {
    text.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_owned() } else { format!(" {w}") }).collect()
}

/// An NDJSON stream of `lines`, each written a moment after the one before.
fn ndjson(lines: Vec<Value>) -> Response {
    let frames = futures::stream::iter(lines).then(|line| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, std::io::Error>(Bytes::from(format!("{line}\n")))
    });
    let mut response = Response::new(Body::from_stream(frames));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/x-ndjson"));
    response
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

// ---------------------------------------------------------------------------------------------
// /api/chat

enum Reply {
    Text(String),
    Call { name: String, arguments: Value },
}

fn chat_reply(body: &Value) -> Result<Reply, Refused> {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    for m in messages {
        let role = m["role"].as_str().unwrap_or_default();
        if !["system", "user", "assistant", "tool"].contains(&role) {
            return Err(Refused::new(StatusCode::BAD_REQUEST, format!("invalid role: {role}")));
        }
        if !m["content"].is_string() && !m["content"].is_null() {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                "json: cannot unmarshal array into Go struct field Message.messages.content of type string",
            ));
        }
        check_images(&m["images"])?;
        for call in m["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if !call.pointer("/function/arguments").is_some_and(Value::is_object) {
                return Err(Refused::new(StatusCode::BAD_REQUEST, "json: cannot unmarshal string into Go struct field ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments"));
            }
        }
    }
    let last = messages.last().cloned().unwrap_or_default();
    if last["role"] == "tool" {
        let name = last["tool_name"].as_str().unwrap_or("tool");
        return Ok(Reply::Text(format!("{name} says: {}", last["content"].as_str().unwrap_or_default())));
    }
    let text =
        messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or_default();
    let first_tool = body.pointer("/tools/0/function/name").and_then(Value::as_str);
    if let (Some(name), true) = (first_tool, text.to_lowercase().contains("weather")) {
        return Ok(Reply::Call { name: name.to_owned(), arguments: json!({"location": place_in(text)}) });
    }
    if body.get("format").is_some_and(|f| !f.is_null()) {
        return Ok(Reply::Text(json!({"answer": "echo"}).to_string()));
    }
    Ok(Reply::Text(format!("echo: {text}")))
}

fn thinking(body: &Value) -> Option<&'static str> {
    (body["think"] == true).then_some("Let me think about that.")
}

async fn chat(State(log): State<Log>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    record(&log, &uri, &headers, &raw);
    let (body, model) = match read(&raw) {
        Ok(read) => read,
        Err(refused) => return refused.into_response(),
    };
    let reply = match chat_reply(&body) {
        Ok(reply) => reply,
        Err(refused) => return refused.into_response(),
    };
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let prompt: u64 = messages.iter().map(|m| words(m["content"].as_str().unwrap_or_default())).sum::<u64>().max(1);
    let head = json!({"model": model, "created_at": CREATED_AT});
    let message = |content: &str| json!({"role": "assistant", "content": content});
    let (text, done_reason, calls) = match reply {
        Reply::Text(text) => {
            let (text, reason) = limit(text, &body);
            (text, reason, None)
        }
        Reply::Call { name, arguments } => {
            (String::new(), "stop", Some(json!([{"function": {"name": name, "arguments": arguments}}])))
        }
    };
    let eval = words(&text).max(1);
    let done = merge(merge(head.clone(), json!({"done_reason": done_reason, "done": true})), timings(prompt, eval));
    if !wants_stream(&body) {
        let mut whole = message(&text);
        if let Some(calls) = &calls {
            whole["tool_calls"] = calls.clone();
        }
        if let Some(thought) = thinking(&body) {
            whole["thinking"] = json!(thought);
        }
        let mut answer = done;
        answer["message"] = whole;
        return axum::Json(answer).into_response();
    }
    let mut lines = Vec::new();
    if let Some(thought) = thinking(&body) {
        for piece in pieces(thought) {
            let mut m = message("");
            m["thinking"] = json!(piece);
            lines.push(merge(head.clone(), json!({"message": m, "done": false})));
        }
    }
    if let Some(calls) = calls {
        let mut m = message("");
        m["tool_calls"] = calls;
        lines.push(merge(head.clone(), json!({"message": m, "done": false})));
    } else {
        for (i, piece) in pieces(&text).into_iter().enumerate() {
            if model.starts_with("flaky") && i == 1 {
                lines.push(json!({"error": "an error was encountered while running the model: unexpected EOF"}));
                return ndjson(lines);
            }
            lines.push(merge(head.clone(), json!({"message": message(&piece), "done": false})));
        }
    }
    let mut last = done;
    last["message"] = message("");
    lines.push(last);
    ndjson(lines)
}

// ---------------------------------------------------------------------------------------------
// /api/generate

async fn generate(State(log): State<Log>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    record(&log, &uri, &headers, &raw);
    let (body, model) = match read(&raw) {
        Ok(read) => read,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = check_images(&body["images"]) {
        return refused.into_response();
    }
    let Some(prompt) = body["prompt"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "json: cannot unmarshal into Go struct field GenerateRequest.prompt of type string",
        );
    };
    let answer = if body.get("format").is_some_and(|f| !f.is_null()) {
        json!({"answer": "echo"}).to_string()
    } else {
        format!("echo: {prompt}")
    };
    let (text, done_reason) = limit(answer, &body);
    let prompt_tokens = (words(prompt) + words(body["system"].as_str().unwrap_or_default())).max(1);
    let head = json!({"model": model, "created_at": CREATED_AT});
    let done = merge(
        merge(head.clone(), json!({"done": true, "done_reason": done_reason, "context": [1, 2, 3]})),
        timings(prompt_tokens, words(&text).max(1)),
    );
    if !wants_stream(&body) {
        let mut answer = done;
        answer["response"] = json!(text);
        if let Some(thought) = thinking(&body) {
            answer["thinking"] = json!(thought);
        }
        return axum::Json(answer).into_response();
    }
    let mut lines: Vec<Value> = Vec::new();
    if let Some(thought) = thinking(&body) {
        lines.push(merge(head.clone(), json!({"response": "", "thinking": thought, "done": false})));
    }
    lines.extend(pieces(&text).into_iter().map(|piece| merge(head.clone(), json!({"response": piece, "done": false}))));
    let mut last = done;
    last["response"] = json!("");
    lines.push(last);
    ndjson(lines)
}

// ---------------------------------------------------------------------------------------------
// /api/embed

/// A unit vector derived from the text alone.
pub fn embed_text(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) | 1;
    let mut v: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

async fn embed(State(log): State<Log>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    record(&log, &uri, &headers, &raw);
    let (body, model) = match read(&raw) {
        Ok(read) => read,
        Err(refused) => return refused.into_response(),
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        _ => return error(StatusCode::BAD_REQUEST, "invalid input type"),
    };
    let dimensions = body["dimensions"].as_u64().map_or(EMBEDDING_DIMENSIONS, |d| d as usize);
    let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| embed_text(t, dimensions)).collect();
    let tokens: u64 = inputs.iter().map(|t| words(t)).sum();
    axum::Json(json!({
        "model": model, "embeddings": embeddings,
        "total_duration": 14_143_917, "load_duration": 1_019_500, "prompt_eval_count": tokens
    }))
    .into_response()
}
