//! A fast fake LLM upstream for the benchmarks: OpenAI `/v1/chat/completions` (JSON and SSE),
//! `/v1/models`, and Anthropic `/v1/messages` (JSON and SSE in Anthropic's event framing).
//!
//! It runs on its own small tokio runtime (`--workers`, default 1) so that the load tool and the
//! gateway under test keep the machine's other cores. Answers are fixed text; streams send
//! `--chunks` content chunks `--gap-ms` apart, after `--latency-ms` of fixed latency.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fake OpenAI / Anthropic upstream for benchmarks (listens on 127.0.0.1 only).
#[derive(Debug, Parser, Clone)]
#[command(name = "fake-upstream")]
struct Args {
    #[arg(long, default_value_t = 8100)]
    port: u16,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Fixed latency before every answer (and before a stream's first chunk), in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks in a streamed answer.
    #[arg(long, default_value_t = 200)]
    chunks: usize,
    /// Pause between two streamed chunks, in milliseconds (0: sent back to back).
    #[arg(long, default_value_t = 1)]
    gap_ms: u64,
}

struct Fake {
    latency: Duration,
    chunks: usize,
    gap: Duration,
    chat_json: Bytes,
    messages_json: Bytes,
    models_json: Bytes,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The only fields of a request the fake looks at.
#[derive(Deserialize, Default)]
struct Request {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

const ANSWER: &str = "This is a fake answer from the benchmark upstream.";
const PROMPT_TOKENS: u64 = 9;
const COMPLETION_TOKENS: u64 = 10;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Fake {
    fn new(args: &Args) -> Fake {
        let chat = serde_json::json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": now(),
            "model": "gpt-4o-2024-08-06",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
            },
            "system_fingerprint": "fp_fake"
        });
        let messages = serde_json::json!({
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-20241022",
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
        });
        let models = serde_json::json!({
            "object": "list",
            "data": [
                {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "fake"},
                {"id": "claude-3-5-sonnet-20241022", "object": "model", "created": 0, "owned_by": "fake"}
            ]
        });
        Fake {
            latency: Duration::from_millis(args.latency_ms),
            chunks: args.chunks,
            gap: Duration::from_millis(args.gap_ms),
            chat_json: Bytes::from(serde_json::to_vec(&chat).expect("json")),
            messages_json: Bytes::from(serde_json::to_vec(&messages).expect("json")),
            models_json: Bytes::from(serde_json::to_vec(&models).expect("json")),
        }
    }

    async fn wait(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn bad_request(message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}});
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// An SSE response whose body comes from `events`, sent as they are produced.
fn sse(events: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        // nginx must not buffer a stream (what real SSE upstreams send too).
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(events))
        .expect("response")
}

/// The word sent as chunk `i` of a stream: its number, so a client can check order and count.
fn token(i: usize) -> String {
    format!("t{i} ")
}

fn openai_chunk(i: usize, created: u64) -> Bytes {
    let delta = if i == 0 {
        serde_json::json!({"role": "assistant", "content": token(i)})
    } else {
        serde_json::json!({"content": token(i)})
    };
    let chunk = serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": created,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

fn openai_tail(created: u64, chunks: usize, include_usage: bool) -> Bytes {
    let last = serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": created,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]
    });
    let mut out = format!("data: {last}\n\n");
    if include_usage {
        let usage = serde_json::json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": chunks as u64,
                "total_tokens": PROMPT_TOKENS + chunks as u64
            }
        });
        out += &format!("data: {usage}\n\n");
    }
    out += "data: [DONE]\n\n";
    Bytes::from(out)
}

fn anthropic_event(name: &str, data: serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_head() -> Bytes {
    let mut out = anthropic_event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20241022",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}
        }}),
    );
    out += &anthropic_event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    out += &anthropic_event("ping", serde_json::json!({"type": "ping"}));
    Bytes::from(out)
}

fn anthropic_chunk(i: usize) -> Bytes {
    Bytes::from(anthropic_event(
        "content_block_delta",
        serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token(i)}}),
    ))
}

fn anthropic_tail(chunks: usize) -> Bytes {
    let mut out = anthropic_event("content_block_stop", serde_json::json!({"type": "content_block_stop", "index": 0}));
    out += &anthropic_event(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": chunks}}),
    );
    out += &anthropic_event("message_stop", serde_json::json!({"type": "message_stop"}));
    Bytes::from(out)
}

/// `head`, then `chunks` pieces `gap` apart, then `tail`.
fn paced(
    fake: Arc<Fake>,
    head: Option<Bytes>,
    chunk: fn(usize, u64) -> Bytes,
    tail: Bytes,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let created = now();
    futures::stream::unfold(0usize, move |i| {
        let fake = fake.clone();
        let head = head.clone();
        let tail = tail.clone();
        async move {
            let n = fake.chunks;
            if i > n {
                return None;
            }
            if i == n {
                return Some((Ok(tail), i + 1));
            }
            if i > 0 && !fake.gap.is_zero() {
                tokio::time::sleep(fake.gap).await;
            }
            let piece = chunk(i, created);
            let piece = match (i, head) {
                (0, Some(head)) => {
                    let mut joined = Vec::with_capacity(head.len() + piece.len());
                    joined.extend_from_slice(&head);
                    joined.extend_from_slice(&piece);
                    Bytes::from(joined)
                }
                _ => piece,
            };
            Some((Ok(piece), i + 1))
        }
    })
}

async fn chat(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("body is not a chat request: {e}")),
    };
    fake.wait().await;
    if !request.stream {
        return json(fake.chat_json.clone());
    }
    let usage = request.stream_options.unwrap_or_default().include_usage;
    let tail = openai_tail(now(), fake.chunks, usage);
    sse(paced(fake.clone(), None, openai_chunk, tail))
}

async fn messages(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("body is not a messages request: {e}")),
    };
    fake.wait().await;
    if !request.stream {
        return json(fake.messages_json.clone());
    }
    let tail = anthropic_tail(fake.chunks);
    sse(paced(fake.clone(), Some(anthropic_head()), |i, _| anthropic_chunk(i), tail))
}

async fn models(State(fake): State<Arc<Fake>>) -> Response {
    json(fake.models_json.clone())
}

fn main() {
    let args = Args::parse();
    let fake = Arc::new(Fake::new(&args));
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .with_state(fake);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fake-upstream: cannot listen on 127.0.0.1:{}: {e}", args.port);
                std::process::exit(1);
            }
        };
        println!("fake-upstream listening on http://127.0.0.1:{}", args.port);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let sigterm = async {
            #[cfg(unix)]
            if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                s.recv().await;
            }
        };
        let stop = async {
            tokio::select! { _ = shutdown => {}, _ = sigterm => {} }
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            eprintln!("fake-upstream: {e}");
        }
    });
}
