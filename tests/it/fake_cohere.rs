//! A fake Cohere v2 API on 127.0.0.1:0: `/v2/chat` (whole, or an SSE stream of typed events),
//! `/v2/embed` and `/v2/rerank`, behind `Authorization: Bearer KEY`.
//!
//! It refuses what the real API refuses, with Cohere's `{"id", "message"}` bodies: no key or a
//! wrong one (401), a field v2 does not have (`top_p`, `return_documents`, ...: 400), a tool
//! message whose `tool_call_id` answers no earlier call, tool-call arguments that are not JSON
//! text, an embed without `input_type`, rerank documents that are not strings (400), and a
//! model it does not serve (any name containing `missing`: 404).
//!
//! Answers are deterministic: `echo: <last user text>`; a `get_weather`-style call of the first
//! tool (`{"location": <the word after "in ">}`, id `<name>_<n>`, with a `tool_plan`) for a
//! weather question with tools or when `tool_choice` is `REQUIRED`; `the tool said: <content>`
//! after a tool message; an example of `response_format.json_schema` (or `{}`) in JSON mode.
//! `max_tokens` cuts the words (`MAX_TOKENS`). Token counts are words (`tokens`), billed the
//! same. Streams are `message-start`, `content-start`, one `content-delta` per word,
//! `content-end`, `message-end`; a call streams as `tool-plan-delta`, `tool-call-start`, its
//! arguments in two `tool-call-delta`s, `tool-call-end`. Each event is written separately.
//! Embeddings are unit vectors of the text (1024 dimensions, or `output_dimension`); rerank
//! scores are the share of the query's words a document has.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct FakeCohere {
    /// `http://127.0.0.1:PORT`: what a deployment's `api_base` is set to.
    pub base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{} body is not JSON: {e}", self.path))
    }
}

struct Shared {
    key: String,
    log: Mutex<Vec<Recorded>>,
    ids: AtomicU64,
}

/// Dimensions of an embedding when the request names none.
pub const EMBEDDING_DIMENSIONS: usize = 1024;

const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "strict_tools",
    "stream",
    "thinking",
    "priority",
];

impl FakeCohere {
    pub async fn start(key: &str) -> FakeCohere {
        let shared = Arc::new(Shared { key: key.to_owned(), log: Mutex::default(), ids: AtomicU64::new(0) });
        let app = Router::new()
            .route("/v2/chat", post(chat))
            .route("/v2/embed", post(embed))
            .route("/v2/rerank", post(rerank))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Cohere binds a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCohere { base_url: format!("http://{addr}"), shared, server }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn last(&self, path: &str) -> Option<Recorded> {
        self.shared.log.lock().unwrap().iter().rev().find(|r| r.path == path).cloned()
    }
}

impl Drop for FakeCohere {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A refusal: Cohere's status and message.
struct Refused(StatusCode, String);

impl Refused {
    fn bad(message: impl Into<String>) -> Refused {
        Refused(StatusCode::BAD_REQUEST, format!("invalid request: {}", message.into()))
    }

    fn into_response(self, shared: &Shared) -> Response {
        let id = format!("{:08x}-0000-4000-8000-000000000000", shared.ids.fetch_add(1, Ordering::Relaxed));
        (self.0, axum::Json(json!({"id": id, "message": self.1}))).into_response()
    }
}

/// Records the request, checks its key, and reads its body as an object with known fields.
fn admit(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &Bytes, fields: &[&str]) -> Result<Value, Refused> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    shared.log.lock().unwrap().push(Recorded {
        path: uri.path().to_owned(),
        authorization: authorization.clone(),
        body: body.to_vec(),
    });
    match authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        None => return Err(Refused(StatusCode::UNAUTHORIZED, "no api key supplied".into())),
        Some(key) if key != shared.key => return Err(Refused(StatusCode::UNAUTHORIZED, "invalid api token".into())),
        Some(_) => {}
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| Refused::bad(format!("body is not valid JSON: {e}")))?;
    let object = body.as_object().ok_or_else(|| Refused::bad("body must be an object"))?;
    if let Some(unknown) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(Refused::bad(format!("unknown field: parameter {unknown} is not a valid field")));
    }
    let model = body["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return Err(Refused::bad("model must be specified"));
    }
    if model.contains("missing") {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("model '{model}' not found, make sure the correct model ID was used and that you have access to the model."),
        ));
    }
    Ok(body)
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

fn place_in(text: &str) -> String {
    let after = text.rsplit_once(" in ").map(|(_, rest)| rest).unwrap_or_default();
    let place: String = after.chars().take_while(|c| c.is_alphabetic()).collect();
    if place.is_empty() {
        "Paris".to_owned()
    } else {
        place
    }
}

fn sse(events: Vec<Value>) -> Response {
    let frames = futures::stream::iter(events).then(|event| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        Ok::<_, std::io::Error>(Bytes::from(format!("event: {kind}\ndata: {event}\n\n")))
    });
    let mut response = Response::new(Body::from_stream(frames));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    response
}

// ---------------------------------------------------------------------------------------------
// /v2/chat

enum Reply {
    Text(String),
    Call { id: String, name: String, arguments: String, plan: String },
}

fn check_messages(messages: &[Value]) -> Result<(), Refused> {
    if messages.is_empty() {
        return Err(Refused::bad("messages must not be empty"));
    }
    let mut call_ids: Vec<&str> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "user" => {}
            "assistant" => {
                for call in m["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let arguments = call.pointer("/function/arguments").and_then(Value::as_str);
                    if arguments.is_none_or(|a| serde_json::from_str::<Value>(a).is_err()) {
                        return Err(Refused::bad(format!(
                            "messages[{i}].tool_calls: function arguments must be a JSON string"
                        )));
                    }
                    call_ids.extend(call["id"].as_str());
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                if !call_ids.contains(&id) {
                    return Err(Refused::bad(format!("tool call id {id:?} not found in previous tool calls")));
                }
            }
            other => return Err(Refused::bad(format!("invalid role {other:?} in messages[{i}]"))),
        }
        for part in m["content"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let kind = part["type"].as_str().unwrap_or_default();
            if !["text", "image_url", "document"].contains(&kind) {
                return Err(Refused::bad(format!("invalid content type {kind:?} in messages[{i}]")));
            }
        }
    }
    Ok(())
}

fn chat_reply(shared: &Shared, body: &Value) -> Reply {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    if last["role"] == "tool" {
        return Reply::Text(format!("the tool said: {}", text_of(&last["content"])));
    }
    let text = messages.iter().rev().find(|m| m["role"] == "user").map(|m| text_of(&m["content"])).unwrap_or_default();
    let tool = body.pointer("/tools/0/function/name").and_then(Value::as_str);
    let forced = body["tool_choice"] == "REQUIRED";
    if let (Some(name), true) = (tool, forced || text.to_lowercase().contains("weather")) {
        if body["tool_choice"] != "NONE" {
            let n = shared.ids.fetch_add(1, Ordering::Relaxed);
            let place = place_in(&text);
            return Reply::Call {
                id: format!("{name}_{n}"),
                name: name.to_owned(),
                arguments: json!({"location": place}).to_string(),
                plan: format!("I will look up the weather in {place}."),
            };
        }
    }
    if body.pointer("/response_format/type").and_then(Value::as_str) == Some("json_object") {
        let schema = body.pointer("/response_format/json_schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
        return Reply::Text(crate::support::schema_example(&schema).to_string());
    }
    Reply::Text(format!("echo: {text}"))
}

async fn chat(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let body = match admit(&shared, &uri, &headers, &raw, CHAT_FIELDS) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(&shared),
    };
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if let Err(refused) = check_messages(&messages) {
        return refused.into_response(&shared);
    }
    let prompt: u64 = messages.iter().map(|m| words(&text_of(&m["content"]))).sum::<u64>().max(1);
    let id = format!("msg-{:04}", shared.ids.fetch_add(1, Ordering::Relaxed));
    let (reply, mut finish) = match chat_reply(&shared, &body) {
        Reply::Text(text) => match body["max_tokens"].as_u64() {
            Some(max) if words(&text) > max => {
                (Reply::Text(text.split_whitespace().take(max as usize).collect::<Vec<_>>().join(" ")), "MAX_TOKENS")
            }
            _ => (Reply::Text(text), "COMPLETE"),
        },
        call => (call, "TOOL_CALL"),
    };
    let output = match &reply {
        Reply::Text(text) => words(text).max(1),
        Reply::Call { .. } => 10,
    };
    let usage = json!({"billed_units": {"input_tokens": prompt, "output_tokens": output},
        "tokens": {"input_tokens": prompt + 7, "output_tokens": output}});
    if body["stream"] != true {
        let message = match &reply {
            Reply::Text(text) => json!({"role": "assistant", "content": [{"type": "text", "text": text}]}),
            Reply::Call { id, name, arguments, plan } => json!({"role": "assistant", "tool_plan": plan,
                "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}),
        };
        return axum::Json(json!({"id": id, "message": message, "finish_reason": finish, "usage": usage}))
            .into_response();
    }
    let mut events = vec![json!({"type": "message-start", "id": id, "delta": {"message": {"role": "assistant",
        "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})];
    match reply {
        Reply::Text(text) => {
            events.push(json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}));
            for (i, word) in text.split(' ').enumerate() {
                let piece = if i == 0 { word.to_owned() } else { format!(" {word}") };
                events.push(
                    json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}),
                );
            }
            events.push(json!({"type": "content-end", "index": 0}));
        }
        Reply::Call { id, name, arguments, plan } => {
            for piece in plan.split_inclusive(' ') {
                events.push(json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}));
            }
            events.push(json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                "id": id, "type": "function", "function": {"name": name, "arguments": ""}}}}}));
            let (a, b) = arguments.split_at(arguments.len() / 2);
            for piece in [a, b] {
                events.push(json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {
                    "function": {"arguments": piece}}}}}));
            }
            events.push(json!({"type": "tool-call-end", "index": 0}));
            finish = "TOOL_CALL";
        }
    }
    events.push(json!({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}));
    sse(events)
}

// ---------------------------------------------------------------------------------------------
// /v2/embed

/// A unit vector derived from the text alone.
pub fn embed_text(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state =
        text.bytes().fold(0x6c62_272e_07bb_0142_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) | 1;
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

async fn embed(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    const FIELDS: &[&str] = &[
        "model",
        "texts",
        "images",
        "inputs",
        "input_type",
        "embedding_types",
        "truncate",
        "output_dimension",
        "max_tokens",
    ];
    let body = match admit(&shared, &uri, &headers, &raw, FIELDS) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(&shared),
    };
    let texts: Vec<&str> =
        body["texts"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if texts.is_empty() {
        return Refused::bad("texts must not be empty").into_response(&shared);
    }
    if !["search_document", "search_query", "classification", "clustering"]
        .contains(&body["input_type"].as_str().unwrap_or_default())
    {
        return Refused::bad("valid input_type must be provided with the provided model").into_response(&shared);
    }
    let dimensions = body["output_dimension"].as_u64().map_or(EMBEDDING_DIMENSIONS, |d| d as usize);
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embed_text(t, dimensions)).collect();
    let mut embeddings = serde_json::Map::new();
    for kind in body["embedding_types"].as_array().cloned().unwrap_or_else(|| vec![json!("float")]) {
        embeddings.insert(kind.as_str().unwrap_or("float").to_owned(), json!(vectors));
    }
    let tokens: u64 = texts.iter().map(|t| words(t)).sum();
    let id = format!("emb-{:04}", shared.ids.fetch_add(1, Ordering::Relaxed));
    axum::Json(json!({"id": id, "embeddings": embeddings, "texts": texts, "response_type": "embeddings_by_type",
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}}))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// /v2/rerank

async fn rerank(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let body =
        match admit(&shared, &uri, &headers, &raw, &["model", "query", "documents", "top_n", "max_tokens_per_doc"]) {
            Ok(body) => body,
            Err(refused) => return refused.into_response(&shared),
        };
    let Some(documents) = body["documents"].as_array().filter(|d| d.iter().all(Value::is_string)) else {
        return Refused::bad("documents must be a list of strings").into_response(&shared);
    };
    let query: Vec<String> =
        body["query"].as_str().unwrap_or_default().split_whitespace().map(str::to_lowercase).collect();
    let mut results: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = d.as_str().unwrap_or_default().to_lowercase();
            let hits = query
                .iter()
                .filter(|w| {
                    text.split_whitespace().any(|t| t.trim_matches(|c: char| !c.is_alphanumeric()) == w.as_str())
                })
                .count();
            (i, hits as f64 / query.len().max(1) as f64)
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = body["top_n"].as_u64() {
        results.truncate(n as usize);
    }
    let results: Vec<Value> = results.iter().map(|(i, score)| json!({"index": i, "relevance_score": score})).collect();
    let id = format!("rr-{:04}", shared.ids.fetch_add(1, Ordering::Relaxed));
    axum::Json(json!({"id": id, "results": results, "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}}))
        .into_response()
}
