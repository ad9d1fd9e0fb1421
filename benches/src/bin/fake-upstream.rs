//! A fast fake LLM upstream for the benchmarks: OpenAI `/v1/chat/completions` (JSON and SSE),
//! `/v1/models`, and Anthropic `/v1/messages` (JSON and SSE in Anthropic's event framing).
//!
//! It runs on its own small tokio runtime (`--workers`, default 1) so that the load tool and the
//! gateway under test keep the machine's other cores. Answers are fixed text; streams send
//! `--chunks` content chunks `--gap-ms` apart, after `--latency-ms` of fixed latency.
//!
//! Under `/real` the same routes answer with the headers OpenAI's API sends besides
//! ([`PROVIDER_HEADERS`]).
//!
//! With `--tls-cert` and `--tls-key` it serves the same routes over TLS only (rustls; HTTP/1.1 or
//! HTTP/2 as ALPN settles, `--tls-alpn`), and `GET /tls-stats` tells what it saw over TLS.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use ferrolite_bench::real_headers::PROVIDER_HEADERS;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Bytes of text in each streamed chunk: `t{i} ` padded with dots to this length (0: no
    /// padding, the default; a longer `t{i} ` is never cut).
    #[arg(long, default_value_t = 0)]
    chunk_bytes: usize,
    /// Serve HTTPS with this certificate chain (PEM; the leaf first) instead of plain HTTP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With TLS: the protocols offered by ALPN, in order of preference (h2, http/1.1).
    #[arg(long, value_delimiter = ',', default_value = "h2,http/1.1")]
    tls_alpn: Vec<String>,
}

/// Adds OpenAI's headers ([`PROVIDER_HEADERS`]) to an answer: every route under `/real` (`/real/v1/chat/completions`,
/// ...) is the same route answering with them, where the fake's own answers carry their content
/// type alone. What a gateway reads past on real traffic.
async fn provider_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in PROVIDER_HEADERS {
        headers.append(header::HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
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
        CHUNK_BYTES.store(args.chunk_bytes, std::sync::atomic::Ordering::Relaxed);
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

/// `--chunk-bytes`, set once at the start (the chunk builders are plain `fn`s).
static CHUNK_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The word sent as chunk `i` of a stream: its number, so a client can check order and count
/// (padded with dots to `--chunk-bytes`).
fn token(i: usize) -> String {
    let mut word = format!("t{i} ");
    let bytes = CHUNK_BYTES.load(std::sync::atomic::Ordering::Relaxed);
    while word.len() < bytes {
        word.push('.');
    }
    word
}

/// Chunk `i` of a stream; with `include_usage` asked, it carries `"usage": null` as OpenAI's do
/// (every chunk but the last, which holds the counts).
fn openai_chunk(i: usize, created: u64, include_usage: bool) -> Bytes {
    let delta = if i == 0 {
        serde_json::json!({"role": "assistant", "content": token(i)})
    } else {
        serde_json::json!({"content": token(i)})
    };
    let mut chunk = serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": created,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]
    });
    if include_usage {
        chunk["usage"] = serde_json::Value::Null;
    }
    Bytes::from(format!("data: {chunk}\n\n"))
}

fn openai_tail(created: u64, chunks: usize, include_usage: bool) -> Bytes {
    let mut last = serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": created,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]
    });
    if include_usage {
        last["usage"] = serde_json::Value::Null;
    }
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
    chunk: impl Fn(usize, u64) -> Bytes + Clone + Send + Sync + 'static,
    tail: Bytes,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let created = now();
    futures::stream::unfold(0usize, move |i| {
        let fake = fake.clone();
        let head = head.clone();
        let tail = tail.clone();
        let chunk = chunk.clone();
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
    sse(paced(fake.clone(), None, move |i, created| openai_chunk(i, created, usage), tail))
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls_acceptor(cert, key, &args.tls_alpn) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("fake-upstream: {e}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    let fake = Arc::new(Fake::new(&args));
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .with_state(fake);
    let app = app.clone().nest("/real", app.layer(axum::middleware::from_fn(provider_headers)));
    let app = if tls.is_some() { tls_counted(app) } else { app };
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
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("fake-upstream listening on {scheme}://127.0.0.1:{}", args.port);
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
        if let Some(acceptor) = tls {
            serve_tls(listener, app, acceptor, stop).await;
            return;
        }
        // Chunks go out as written, as a provider's server sends them: without TCP_NODELAY a
        // stream's first chunk after the head waited for the reader's delayed ACK (up to 40 ms)
        // on a kept-alive connection.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            eprintln!("fake-upstream: {e}");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// HTTPS (--tls-cert and --tls-key): the same routes over rustls, HTTP/1.1 or HTTP/2 by ALPN

/// Completed TLS handshakes by protocol version, cipher suite, ALPN protocol and whether the
/// session was resumed.
static HANDSHAKES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static FAILED_HANDSHAKES: AtomicU64 = AtomicU64::new(0);
/// Requests served over TLS (but `/tls-stats`): HTTP/1.x, HTTP/2, other.
static REQUESTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// The TLS server configuration: the chain and key of the PEM files, ring, TLS 1.2 and 1.3,
/// and `alpn` offered.
fn tls_acceptor(cert: &Path, key: &Path, alpn: &[String]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// `app` with `GET /tls-stats` (what the fake saw over TLS, so the harness can tell which
/// protocol each client negotiated) and every other request counted by its HTTP version.
fn tls_counted(app: Router) -> Router {
    async fn count(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
        if request.uri().path() != "/tls-stats" {
            let slot = match request.version() {
                axum::http::Version::HTTP_10 | axum::http::Version::HTTP_11 => 0,
                axum::http::Version::HTTP_2 => 1,
                _ => 2,
            };
            REQUESTS[slot].fetch_add(1, Ordering::Relaxed);
        }
        next.run(request).await
    }
    async fn stats() -> Response {
        let handshakes = HANDSHAKES.lock().map(|h| h.clone()).unwrap_or_default();
        let [h1, h2, other] = &REQUESTS;
        let body = serde_json::json!({
            "handshakes": handshakes,
            "failed_handshakes": FAILED_HANDSHAKES.load(Ordering::Relaxed),
            "requests": {"HTTP/1.1": h1.load(Ordering::Relaxed), "HTTP/2": h2.load(Ordering::Relaxed),
                "other": other.load(Ordering::Relaxed)},
        });
        json(Bytes::from(body.to_string()))
    }
    app.route("/tls-stats", get(stats)).layer(axum::middleware::from_fn(count))
}

/// Accepts connections until `stop`, each served over TLS by hyper (HTTP/1.1 or HTTP/2, whichever
/// the client speaks after ALPN).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    stop: impl std::future::Future<Output = ()>,
) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new()));
    let mut stop = std::pin::pin!(stop);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    eprintln!("fake-upstream: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let _ = socket.set_nodelay(true);
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(socket).await {
                Ok(tls) => tls,
                Err(e) => {
                    FAILED_HANDSHAKES.fetch_add(1, Ordering::Relaxed);
                    eprintln!("fake-upstream: TLS handshake: {e}");
                    return;
                }
            };
            let session = tls.get_ref().1;
            let alpn = session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
            let seen = format!(
                "{} {} alpn={} {}",
                session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
                session.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
                alpn.as_deref().unwrap_or("none"),
                match session.handshake_kind() {
                    Some(rustls::HandshakeKind::Resumed) => "resumed",
                    _ => "full",
                }
            );
            if let Ok(mut all) = HANDSHAKES.lock() {
                *all.entry(seen).or_default() += 1;
            }
            let io = hyper_util::rt::TokioIo::new(tls);
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = builder.serve_connection(io, service).await;
        });
    }
}
