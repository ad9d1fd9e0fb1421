//! An upstream behind TLS with a private CA (issue 22, point 2): trusted through SSL_CERT_FILE
//! or SSL_CERT_DIR beside the built-in roots, and refused without them.

use crate::support::{blocking_post, read_json, ServeProcess};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A throwaway CA (its PEM) and a server certificate for localhost it signed.
fn certificates() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ferrolite test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca.pem(), leaf.der().clone(), key)
}

/// A test's directory holding the CA's PEM (`ca.pem`, for `SSL_CERT_FILE`), and the upstream's
/// certificate and key.
struct Trusted {
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn trusted() -> Trusted {
    let (ca_pem, cert, key) = certificates();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    Trusted { dir, ca_file, cert, key }
}

/// An OpenAI-style chat upstream over TLS: one answer per connection.
async fn tls_upstream(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it announces.
                loop {
                    let Ok(n) = tls.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let body = json!({
                    "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "over TLS"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_upstream_is_trusted_through_ssl_cert_file_or_dir_only() {
    let Trusted { dir, ca_file, cert, key } = trusted();
    let port = tls_upstream(cert, key).await;
    let ca_dir = dir.path().join("certs");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(&ca_file, ca_dir.join("private-ca.pem")).unwrap();
    let config = dir.path().join("app.json");
    let manifest = json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls", "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("https://localhost:{port}/v1"), "api_key": "sk-upstream"}}
    ]}});
    std::fs::write(&config, manifest.to_string()).unwrap();

    let ask = |env: Vec<(&'static str, String)>, name: &'static str| {
        let (config, data) = (config.clone(), dir.path().join(name));
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let server =
                ServeProcess::spawn_with_env(&["--port", "0", "--config", config.to_str().unwrap()], &data, &env);
            let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]});
            let url = format!("{}/default/apps/tls/v1/chat/completions", server.base);
            blocking_post(&url, &server.token, &body)
        })
    };
    let trusted = |answer: &(u16, Value)| answer.0 == 200 && answer.1["choices"][0]["message"]["content"] == "over TLS";

    let by_file = ask(vec![("SSL_CERT_FILE", ca_file.display().to_string())], "file").await.unwrap();
    assert!(trusted(&by_file), "SSL_CERT_FILE's CA is trusted: {by_file:?}");
    let by_dir = ask(vec![("SSL_CERT_DIR", ca_dir.display().to_string())], "dir").await.unwrap();
    assert!(trusted(&by_dir), "SSL_CERT_DIR's CA is trusted: {by_dir:?}");
    let (status, body) = ask(vec![], "none").await.unwrap();
    assert_eq!(status, 502, "without them the private CA is not trusted: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(message.contains("certificate") || message.contains("issuer"), "{message}");
}

/// What a hyper upstream saw: TCP connections accepted, each request's HTTP version and the
/// connection (numbered as accepted) that carried it, and the connections that carried any.
#[derive(Default)]
struct Seen {
    connections: std::sync::atomic::AtomicUsize,
    versions: std::sync::Mutex<Vec<String>>,
    methods: std::sync::Mutex<Vec<axum::http::Method>>,
    carriers: std::sync::Mutex<Vec<usize>>,
    serving: std::sync::Mutex<std::collections::BTreeSet<usize>>,
}

/// `app` over TLS, offering HTTP/2 and HTTP/1.1 by ALPN and keeping connections alive, served by
/// hyper; what it saw is counted.
async fn h2_capable(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>, app: axum::Router) -> (u16, Arc<Seen>) {
    h2_limited(cert, key, app, None).await
}

/// [`h2_capable`], allowing at most `streams` streams at once on an HTTP/2 connection
/// (SETTINGS_MAX_CONCURRENT_STREAMS; hyper's default, 200, when `None`).
async fn h2_limited(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    app: axum::Router,
    streams: Option<u32>,
) -> (u16, Arc<Seen>) {
    hyper_upstream(cert, key, app, &[b"h2", b"http/1.1"], streams).await
}

/// `app` over TLS offering only HTTP/1.1 by ALPN, served by hyper; what it saw is counted.
async fn h1_only(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>, app: axum::Router) -> (u16, Arc<Seen>) {
    hyper_upstream(cert, key, app, &[b"http/1.1"], None).await
}

/// `app` over TLS offering `alpn`, keeping connections alive, served by hyper (at most `streams`
/// streams at once on an HTTP/2 connection); what it saw is counted.
async fn hyper_upstream(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    app: axum::Router,
    alpn: &[&[u8]],
    streams: Option<u32>,
) -> (u16, Arc<Seen>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let number = counted.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (acceptor, seen, app) = (acceptor.clone(), counted.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else { return };
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    seen.versions.lock().unwrap().push(format!("{:?}", request.version()));
                    seen.carriers.lock().unwrap().push(number);
                    seen.methods.lock().unwrap().push(request.method().clone());
                    seen.serving.lock().unwrap().insert(number);
                    app.clone().oneshot(request.map(axum::body::Body::new))
                });
                let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Some(streams) = streams {
                    server.http2().max_concurrent_streams(streams);
                }
                let _ = server.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (port, seen)
}

/// An OpenAI-style chat upstream: [`h2_capable`] with one route.
async fn h2_capable_upstream(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> (u16, Arc<Seen>) {
    let chat = axum::routing::post(|| async {
        axum::Json(json!({
            "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "kept alive"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        }))
    });
    h2_capable(cert, key, axum::Router::new().route("/v1/chat/completions", chat)).await
}

/// `ferrolite serve` on one I/O thread (every request is served by the lane whose connections it
/// reuses) with `manifest`, trusting the CA in `ca_file`, with `--upstream-http2` or not.
async fn serve_trusting(dir: &Path, name: &str, manifest: &Value, ca_file: &Path, http2: bool) -> ServeProcess {
    serve_trusting_with(dir, name, manifest, ca_file, if http2 { &["--upstream-http2"] } else { &[] }, &[]).await
}

/// [`serve_trusting`] with `extra` arguments.
async fn serve_trusting_with(
    dir: &Path,
    name: &str,
    manifest: &Value,
    ca_file: &Path,
    extra: &[&'static str],
    env: &[(&'static str, String)],
) -> ServeProcess {
    let config = dir.join(format!("{name}.json"));
    std::fs::write(&config, manifest.to_string()).unwrap();
    let (data, ca) = (dir.join(format!("data-{name}")), ca_file.display().to_string());
    let (extra, env) = (extra.to_vec(), env.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["--port", "0", "--io-threads", "1", "--config", config.to_str().unwrap()];
        args.extend(extra);
        let mut env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
        env.push(("SSL_CERT_FILE", &ca));
        ServeProcess::spawn_with_env(&args, &data, &env)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_get_kept_alive_http1_connections_unless_http2_is_asked_for() {
    let Trusted { dir, ca_file, cert, key } = trusted();
    for (http2, expected) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        let (port, seen) = h2_capable_upstream(cert.clone(), key.clone_key()).await;
        let manifest = json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls", "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("https://localhost:{port}/v1"), "api_key": "sk-upstream"}}
        ]}});
        let server = serve_trusting(dir.path(), &format!("chat-{http2}"), &manifest, &ca_file, http2).await;
        let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]});
        let url = format!("{}/default/apps/tls/v1/chat/completions", server.base);
        let client = reqwest::Client::new();
        let mut answers = Vec::new();
        for _ in 0..5 {
            let sent = client.post(&url).bearer_auth(&server.token).header("content-type", "application/json");
            answers.push(read_json(sent.body(body.to_string()).send().await.unwrap()).await);
        }
        for (status, body) in &answers {
            assert_eq!(*status, 200, "http2 {http2}: {body}");
            assert_eq!(body["choices"][0]["message"]["content"], "kept alive");
        }
        let versions = seen.versions.lock().unwrap().clone();
        assert_eq!(versions, vec![expected; 5], "http2 {http2}: every request over {expected}");
        // TLS 1.3 session tickets arrive on the idle connection after the handshake: they must
        // not make it look closed. (Once the first answer came over HTTP/2, the upstream is
        // called through clients that speak only HTTP/2: a second connection carries the rest.)
        let connections = if http2 { 2 } else { 1 };
        assert_eq!(seen.connections.load(std::sync::atomic::Ordering::SeqCst), connections, "http2 {http2}");
        assert_eq!(seen.serving.lock().unwrap().len(), connections, "http2 {http2}");
    }
}

/// An OpenAI-style chat upstream answering JSON, or a short event stream when asked for one.
fn chat_or_stream() -> axum::Router {
    use axum::response::IntoResponse;
    let chat = axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
        if body["stream"] == true {
            let chunk = json!({"id": "chatcmpl-tls", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "streamed"}, "finish_reason": "stop"}]});
            let events = format!("data: {chunk}\n\ndata: [DONE]\n\n");
            ([("content-type", "text/event-stream")], events).into_response()
        } else {
            axum::Json(json!({
                "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            }))
            .into_response()
        }
    });
    axum::Router::new().route("/v1/chat/completions", chat)
}

/// A chat app whose one deployment is the OpenAI-style upstream on `port` over TLS.
fn chat_app(port: u16) -> Value {
    json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls", "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("https://localhost:{port}/v1"), "api_key": "sk-upstream"}}
    ]}})
}

/// Sends `server` each call in turn (a path under the app, a JSON body), checking that each
/// answer is a 200 saying "streamed" when its body asked for a stream and "whole" when not; the
/// answers' text.
async fn in_turn(server: &ServeProcess, calls: &[(&str, Value)]) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut texts = Vec::new();
    for (path, body) in calls {
        let sent = client.post(format!("{}/default/apps/tls{path}", server.base)).bearer_auth(&server.token);
        let answer = sent.header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path} {body}");
        let text = answer.text().await.unwrap();
        let expected = if body["stream"] == true { "streamed" } else { "whole" };
        assert!(text.contains(expected), "{path} {body}: {text}");
        texts.push(text);
    }
    texts
}

/// Sends `server` one chat call after another, streamed or not as `streams` says, checking each
/// answer whole.
async fn chats(server: &ServeProcess, streams: &[bool]) {
    let chat = |stream| json!({"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});
    let calls: Vec<_> = streams.iter().map(|&stream| ("/v1/chat/completions", chat(stream))).collect();
    for (text, stream) in in_turn(server, &calls).await.iter().zip(streams) {
        assert_eq!(text.ends_with("data: [DONE]\n\n"), *stream, "{text}");
    }
}

/// By default a call whose answer streams takes HTTP/2 where the TLS upstream offers it (one
/// connection carries many streams), while JSON calls keep the lane's HTTP/1.1 connection. An
/// upstream that settles on HTTP/1.1 gets its later streams on the lane's connections too, and
/// `--upstream-http2 never` keeps every call there.
#[tokio::test(flavor = "multi_thread")]
async fn by_default_streams_take_http2_where_offered_and_json_calls_the_lanes_http1() {
    let Trusted { dir, ca_file, cert, key } = trusted();
    let (json_call, stream) = (false, true);
    let calls = [json_call, stream, stream, json_call];

    let (port, seen) = h2_capable(cert.clone(), key.clone_key(), chat_or_stream()).await;
    let server = serve_trusting(dir.path(), "h2-default", &chat_app(port), &ca_file, false).await;
    chats(&server, &calls).await;
    let versions = seen.versions.lock().unwrap().clone();
    assert_eq!(versions, ["HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/1.1"]);
    let carriers = seen.carriers.lock().unwrap().clone();
    assert_eq!(carriers[0], carriers[3], "JSON calls share the lane's kept-alive connection: {carriers:?}");

    // ALPN settles on HTTP/1.1: the first stream learns it on a connection of hyper's, the next
    // rides the lane's kept-alive connection the JSON call opened.
    let (port, seen) = h1_only(cert.clone(), key.clone_key(), chat_or_stream()).await;
    let server = serve_trusting(dir.path(), "h1-only", &chat_app(port), &ca_file, false).await;
    chats(&server, &calls).await;
    assert!(seen.versions.lock().unwrap().iter().all(|v| v == "HTTP/1.1"));
    assert_eq!(*seen.carriers.lock().unwrap(), [0, 1, 0, 0]);

    let (port, seen) = h2_capable(cert, key, chat_or_stream()).await;
    let never = ["--upstream-http2", "never"];
    let server = serve_trusting_with(dir.path(), "h2-never", &chat_app(port), &ca_file, &never, &[]).await;
    chats(&server, &calls).await;
    assert!(seen.versions.lock().unwrap().iter().all(|v| v == "HTTP/1.1"));
    assert_eq!(*seen.carriers.lock().unwrap(), [0, 0, 0, 0], "one kept-alive connection");
}

/// An Anthropic-style messages upstream answering JSON, or a short event stream when asked for one.
fn messages_or_stream() -> axum::Router {
    use axum::response::IntoResponse;
    let messages = axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
        let model = "claude-3-5-sonnet-20241022";
        if body["stream"] == true {
            let events = [
                (
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_tls", "type": "message",
                    "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 3, "output_tokens": 1}}}),
                ),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "streamed"}}),
                ),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                (
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 2}}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ];
            let text: String = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
            ([("content-type", "text/event-stream")], text).into_response()
        } else {
            axum::Json(json!({"id": "msg_tls", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "whole"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 3, "output_tokens": 2}}))
            .into_response()
        }
    });
    axum::Router::new().route("/v1/messages", messages)
}

/// Streams take HTTP/2 by default whichever way they reach the upstream: translated (OpenAI chat
/// in, Anthropic messages out) or passed through (`/anthropic/v1/messages`); their JSON twins
/// keep the lane's HTTP/1.1.
#[tokio::test(flavor = "multi_thread")]
async fn translated_and_passed_through_streams_take_http2_by_default_too() {
    let Trusted { dir, ca_file, cert, key } = trusted();
    let (port, seen) = h2_capable(cert, key, messages_or_stream()).await;
    let manifest = json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls", "model_list": [
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022",
            "api_base": format!("https://localhost:{port}"), "api_key": "sk-upstream"}}
    ]}});
    let server = serve_trusting(dir.path(), "anthropic", &manifest, &ca_file, false).await;
    let calls = [
        ("/v1/chat/completions", json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]})),
        (
            "/v1/chat/completions",
            json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        (
            "/anthropic/v1/messages",
            json!({"model": "claude-3-5-sonnet-20241022", "max_tokens": 16, "stream": true,
            "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        (
            "/anthropic/v1/messages",
            json!({"model": "claude-3-5-sonnet-20241022", "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hi"}]}),
        ),
    ];
    in_turn(&server, &calls).await;
    let versions = seen.versions.lock().unwrap().clone();
    assert_eq!(versions, ["HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/1.1"]);
}

/// An MCP server with one tool, `ping`.
#[derive(Clone)]
struct Ping;

impl rmcp::handler::server::ServerHandler for Ping {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(rmcp::model::ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<rmcp::model::PaginatedRequestParams>,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
        let schema = Arc::new(json!({"type": "object"}).as_object().cloned().unwrap_or_default());
        Ok(rmcp::model::ListToolsResult::with_all_items(vec![rmcp::model::Tool::new("ping", "Pings.", schema)]))
    }
}

/// An app's MCP servers are called like its LLM upstreams: requests over the lane's HTTP/1.1
/// connections and the session's event stream (a GET) over HTTP/2 by default, every call over
/// one or the other with `--upstream-http2 never` or `always`.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_servers_over_https_follow_upstream_http2() {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let Trusted { dir, ca_file, cert, key } = trusted();
    for (http2, posts, gets) in
        [("never", "HTTP/1.1", "HTTP/1.1"), ("streams", "HTTP/1.1", "HTTP/2.0"), ("always", "HTTP/2.0", "HTTP/2.0")]
    {
        let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
        let mcp = StreamableHttpService::new(|| Ok(Ping), Arc::new(LocalSessionManager::default()), config);
        let (port, seen) =
            h2_capable(cert.clone(), key.clone_key(), axum::Router::new().nest_service("/mcp", mcp)).await;
        let manifest = json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls",
            "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
            "mcp_servers": {"ping": {"url": format!("https://localhost:{port}/mcp")}}}});
        let flag = ["--upstream-http2", http2];
        let server = serve_trusting_with(dir.path(), &format!("mcp-{http2}"), &manifest, &ca_file, &flag, &[]).await;
        let url = format!("{}/default/apps/tls/mcp-rest/tools/list", server.base);
        let answer = reqwest::Client::new().get(&url).bearer_auth(&server.token).send().await.unwrap();
        let (_, listed) = read_json(answer).await;
        assert_eq!(listed["tools"][0]["name"], "ping-ping", "http2 {http2}: {listed}");
        // rmcp opens the session's event stream beside its first calls: wait for it.
        let has_get = || seen.methods.lock().unwrap().contains(&axum::http::Method::GET);
        for _ in 0..100 {
            if has_get() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let versions = seen.versions.lock().unwrap().clone();
        let methods = seen.methods.lock().unwrap().clone();
        assert!(methods.contains(&axum::http::Method::POST) && has_get(), "http2 {http2}: {methods:?}");
        for (method, version) in methods.iter().zip(&versions) {
            let expected = if method == axum::http::Method::GET { gets } else { posts };
            assert_eq!(version, expected, "http2 {http2}: {method} in {methods:?} {versions:?}");
        }
    }
}

/// A chat stream from an upstream that holds it open: its first event at once, the rest when
/// `release` turns true.
fn held_stream(release: tokio::sync::watch::Receiver<bool>) -> axum::response::Response {
    let event = |delta: Value, finish: Value| {
        let chunk = json!({"id": "chatcmpl-held", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let first = event(json!({"role": "assistant", "content": "first"}), Value::Null);
    let rest = event(json!({}), json!("stop")) + "data: [DONE]\n\n";
    let events = futures::stream::unfold((0, release), move |(step, mut release)| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            let text = match step {
                0 => first,
                1 => {
                    let _ = release.wait_for(|go| *go).await;
                    rest
                }
                _ => return None,
            };
            Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(text)), (step + 1, release)))
        }
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(events))
        .unwrap()
}

/// hyper's pool keeps one HTTP/2 connection per upstream and queues a request past the server's
/// stream limit until a stream on it ends: long streams would wait for each other. Past
/// `--upstream-http2-streams` ferrolite opens another connection, so all of them run at once.
/// Streams take HTTP/2 by default; with `--upstream-http2` (every call) they are spread alike.
#[tokio::test(flavor = "multi_thread")]
async fn streams_past_an_http2_connections_limit_get_another_connection_instead_of_waiting() {
    held_streams_are_spread(&["--upstream-http2-streams", "2"], &[], 3).await;
    held_streams_are_spread(&["--upstream-http2", "--upstream-http2-streams", "2"], &[], 3).await;
}

/// Behind an environment proxy, calls go through reqwest, whose pool is hyper's: they are
/// spread over connections (tunnels) the same way, HTTP/2 taken where the upstream offers it.
#[tokio::test(flavor = "multi_thread")]
async fn streams_through_an_https_proxy_are_spread_over_tunnels_as_well() {
    let (proxy, tunnels) = connect_proxy().await;
    let env = [("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}")), ("NO_PROXY", String::new())];
    // reqwest tells nothing of a connection before its answer: the first burst negotiates on
    // a connection per stream.
    held_streams_are_spread(&["--upstream-http2-streams", "2"], &env, 5).await;
    assert!(tunnels.load(std::sync::atomic::Ordering::SeqCst) >= 6, "every upstream connection went through the proxy");
}

/// A CONNECT proxy on 127.0.0.1 that tunnels each connection to the host it names, counting
/// the tunnels.
async fn connect_proxy() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let Some(target) = head.strip_prefix("CONNECT ").and_then(|rest| rest.split(' ').next()) else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else { return };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (port, tunnels)
}

/// Bursts of five streams held open by an upstream that allows two per HTTP/2 connection, through
/// ferrolite started with `extra` arguments and `env`: each stream gets its first event while
/// the others are open, and connections open two streams apiece, none wasted once the upstream
/// is known to speak HTTP/2. The first burst, to the upstream still unknown, makes
/// `first_connections`.
async fn held_streams_are_spread(extra: &[&'static str], env: &[(&'static str, String)], first_connections: usize) {
    use futures::StreamExt;
    let Trusted { dir, ca_file, cert, key } = trusted();
    let (release, held) = tokio::sync::watch::channel(false);
    let chat = axum::routing::post(move || {
        let held = held.clone();
        async move { held_stream(held) }
    });
    // The upstream allows two streams at once per connection.
    let app = axum::Router::new().route("/v1/chat/completions", chat);
    let (port, seen) = h2_limited(cert, key, app, Some(2)).await;
    let manifest = json!({"name": "tls", "type": "llm-proxy", "config": {"service_id": "tls", "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("https://localhost:{port}/v1"), "api_key": "sk-upstream"}}
    ]}});
    let server = serve_trusting_with(dir.path(), "held", &manifest, &ca_file, extra, env).await;
    let url = format!("{}/default/apps/tls/v1/chat/completions", server.base);
    let body = json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}).to_string();

    let client = reqwest::Client::new();
    let accepted = || seen.connections.load(std::sync::atomic::Ordering::SeqCst);
    let serving = || seen.serving.lock().unwrap().len();
    // Five streams at once, held open upstream: each gets its first event while none has ended
    // (before, past the upstream's two, they waited for a stream to end), then they are let go.
    let burst = || async {
        release.send_replace(false);
        let first_events = (0..5).map(|_| {
            let sent = client.post(&url).bearer_auth(&server.token).header("content-type", "application/json");
            let body = body.clone();
            async move {
                let answer = sent.body(body).send().await.unwrap();
                assert_eq!(answer.status(), 200);
                let mut events = answer.bytes_stream();
                let first = events.next().await.unwrap().unwrap();
                assert!(String::from_utf8_lossy(&first).contains("first"), "{first:?}");
                events
            }
        });
        let all = futures::future::join_all(first_events);
        let open = tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .expect("every stream's first event arrives while the others are open");
        let counts = (accepted(), serving());
        release.send_replace(true);
        for mut events in open {
            let mut text = String::new();
            while let Some(chunk) = events.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        }
        counts
    };

    // The upstream is new: the first stream's connection learns by ALPN that it speaks HTTP/2
    // while the others wait (hyper would open a connection per request until ALPN settles),
    // then they go two to a connection.
    let (first_accepted, first_serving) = burst().await;
    assert_eq!(first_serving, 3, "two streams per connection");
    assert_eq!(first_accepted, first_connections, "connections opened by the first burst");
    assert!(seen.versions.lock().unwrap().iter().all(|v| v == "HTTP/2.0"));

    // Known to speak HTTP/2, it is called through clients that speak only that, whose pools open
    // one connection at a time: five streams on three connections, and every connection opened
    // for them carries some (with a scout, two of the three were opened by the first burst).
    let (before, from) = (accepted(), seen.carriers.lock().unwrap().len());
    let (after, _) = burst().await;
    let carriers: std::collections::BTreeSet<usize> = seen.carriers.lock().unwrap()[from..].iter().copied().collect();
    assert_eq!(carriers.len(), 3, "two streams per connection: {carriers:?}");
    assert!((before..after).all(|c| carriers.contains(&c)), "no connection wasted: {carriers:?} {before}..{after}");

    // The places are given back when streams end: the next burst finds them on open connections.
    let (again, _) = burst().await;
    assert_eq!(again, after, "no new connection");
}
