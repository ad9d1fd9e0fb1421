//! WebSocket RPC with the real `hypha-rpc` client (tests/python/hypha_rpc_client.py): connect,
//! the controller, LLM services and their streams, chunked messages, heartbeats, relays between
//! clients, and workspace isolation.

use crate::support::{repo_root, TestServer};
use axum::routing::post;
use axum::Router;
use ferrolite::rpc::codec::{self, map, Frame};
use futures::{SinkExt as _, StreamExt as _};
use rmpv::Value as Msgpack;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` and sends the auth frame.
async fn hello(server: &TestServer, workspace: &str, token: Option<&str>) -> Socket {
    let url = format!("{}/ws", server.base.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket opens");
    let auth = json!({"client_id": "raw-client", "workspace": workspace, "token": token, "reconnection_token": null});
    socket.send(Message::text(auth.to_string())).await.expect("auth frame sent");
    socket
}

async fn next_text(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON text frame"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn next_frame(socket: &mut Socket) -> Frame {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame in time") {
            Some(Ok(Message::Binary(bytes))) => return Frame::decode(&bytes).expect("msgpack frame"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_refuses_a_bad_token_with_the_http_message_and_close_1008() {
    let server = TestServer::demo().await;
    for (token, workspace) in [(None, "default"), (Some("not-a-token"), "default")] {
        let (_, http) = server.get_json_with(&server.demo_url("/v1/models"), token.unwrap_or("")).await;
        let mut socket = hello(&server, workspace, token).await;
        let refused = next_text(&mut socket).await;
        assert_eq!(refused["type"], "error");
        assert_eq!(refused["message"], http["error"]["message"], "the same words as the HTTP 401");
        match socket.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1008),
            other => panic!("expected close 1008, got {other:?}"),
        }
    }
    let other = server.token_for("bob");
    let mut socket = hello(&server, "default", Some(&other)).await;
    let refused = next_text(&mut socket).await;
    assert_eq!(refused["message"], "a token of workspace \"bob\" cannot enter workspace \"default\"");
}

#[tokio::test]
async fn ws_answers_connection_info_pongs_and_replies_from_the_address_called() {
    let server = TestServer::demo().await;
    let mut socket = hello(&server, "default", Some(&server.token)).await;
    let info = next_text(&mut socket).await;
    assert_eq!(info["type"], "connection_info");
    assert_eq!(info["workspace"], "default");
    assert_eq!(info["client_id"], "raw-client");
    let manager = format!("*/{}", info["manager_id"].as_str().expect("manager_id"));
    socket.send(Message::text(r#"{"type": "ping"}"#)).await.unwrap();
    assert_eq!(next_text(&mut socket).await, json!({"type": "pong"}));

    // echo, as the client packs a call: main, then extra with the arguments.
    let main = map([
        ("type", Msgpack::from("method")),
        ("from", Msgpack::from("forged/someone-else")),
        ("to", Msgpack::from(manager.as_str())),
        ("method", Msgpack::from("services.default.echo")),
        ("session", Msgpack::from("s1")),
    ]);
    let extra = map([
        ("args", Msgpack::Array(vec![codec::from_json(&json!({"data": [1, "two"]}))])),
        ("with_kwargs", Msgpack::Boolean(true)),
        ("promise", Msgpack::from("*")),
        ("t", Msgpack::F64(15.0)),
    ]);
    socket.send(Message::binary(codec::encode_message(main, Some(extra)))).await.unwrap();
    let reply = next_frame(&mut socket).await;
    assert_eq!(reply.str("method"), Some("s1.resolve"));
    assert_eq!(reply.str("from"), Some(manager.as_str()), "from must be the address the caller used");
    assert_eq!(reply.str("to"), Some("default/raw-client"), "the server stamps the caller's real identity");
    match reply.get("args") {
        Some(Msgpack::Array(args)) => {
            assert_eq!(args.iter().map(codec::to_json).collect::<Vec<_>>(), [json!([1, "two"])])
        }
        other => panic!("a reply carries exactly one argument: {other:?}"),
    }

    // A function nobody serves: a reject the client raises as RemoteException.
    let main = map([
        ("type", Msgpack::from("method")),
        ("to", Msgpack::from("default/ferrolite-server")),
        ("method", Msgpack::from("services.demo.no_such_function")),
        ("session", Msgpack::from("s2")),
    ]);
    socket.send(Message::binary(codec::encode_message(main, None))).await.unwrap();
    let reject = next_frame(&mut socket).await;
    assert_eq!(reject.str("method"), Some("s2.reject"));
    let error = match reject.get("args") {
        Some(Msgpack::Array(args)) => codec::to_json(&args[0]),
        other => panic!("{other:?}"),
    };
    assert_eq!(error["_rtype"], "error");
    assert!(error["_rvalue"].as_str().unwrap().contains("no_such_function"), "{error}");
}

/// How long the slow upstream takes: past the script's 3 s method_timeout.
const SLOW_SECONDS: u64 = 6;

/// An OpenAI-compatible upstream that answers every chat after [`SLOW_SECONDS`].
async fn start_slow_upstream() -> String {
    async fn chat() -> axum::Json<serde_json::Value> {
        tokio::time::sleep(Duration::from_secs(SLOW_SECONDS)).await;
        axum::Json(json!({
            "id": "chatcmpl-slow", "object": "chat.completion", "created": 0, "model": "slow",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "finally"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
        }))
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn python() -> String {
    std::env::var("FERROLITE_PYTHON").unwrap_or_else(|_| {
        panic!("FERROLITE_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python SDKs into a virtualenv")
    })
}

/// Runs a hypha-rpc script of tests/python against `server`; it must print "all checks passed".
pub(crate) async fn run_hypha_script(script: &str, server: &TestServer, extra: &[(&str, String)]) {
    let script = repo_root().join("tests/python").join(script);
    let mut envs: Vec<(String, String)> = vec![
        ("FERROLITE_BASE_URL".into(), server.base.clone()),
        ("FERROLITE_TOKEN".into(), server.token.clone()),
        ("FERROLITE_OTHER_TOKEN".into(), server.token_for("intruder")),
        // websockets honours proxy variables; the server is on loopback.
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
        ("no_proxy".into(), "127.0.0.1,localhost".into()),
    ];
    envs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(&python);
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            command.env_remove(var);
        }
        command.arg(&script).envs(envs).output().unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hypha-rpc checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hypha_rpc_quick_start_installs_starts_chats_streams_and_stops() {
    let server = TestServer::demo().await;
    run_hypha_script("hypha_rpc_quick_start.py", &server, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hypha_rpc_chunks_big_messages_heartbeats_long_calls_and_relays_between_clients() {
    let server = TestServer::demo().await;
    let slow = start_slow_upstream().await;
    run_hypha_script("hypha_rpc_transport.py", &server, &[("FERROLITE_SLOW_API_BASE", slow)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hypha_rpc_client_of_another_workspace_cannot_see_or_call_protected_services() {
    let server = TestServer::demo().await;
    run_hypha_script("hypha_rpc_isolation.py", &server, &[]).await;
}
