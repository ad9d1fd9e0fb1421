//! Spend logs: one record per request served (whole answers, streams, failures), with the
//! tokens, cost and status the client got; read back through `get_spend_logs` (HTTP and RPC)
//! with filters and paging, printed by `ferrolite spend logs`, and kept across a restart.

use crate::support::{read_json, run_cli, sse_data, TestServer};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ferrolite::rpc::codec::{self, map, Frame};
use futures::{SinkExt as _, StreamExt as _};
use rmpv::Value as Msgpack;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The usage every answer of the upstream reports: 11 prompt tokens (4 of them cached), 5
/// completion tokens.
const PROMPT: u64 = 11;
const COMPLETION: u64 = 5;
const CACHED: u64 = 4;
/// `gpt`'s price per token, in and out.
const GPT_IN: f64 = 0.01;
const GPT_OUT: f64 = 0.02;

/// An OpenAI-compatible upstream: the model `broken` fails with a 500, `slow` streams a chunk
/// every 20 ms for a minute, any other answers with the usage above (streamed, when asked).
async fn start_upstream() -> String {
    async fn chat(body: axum::body::Bytes) -> Response {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let model = body["model"].as_str().unwrap_or("m").to_owned();
        let usage = json!({"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION,
            "prompt_tokens_details": {"cached_tokens": CACHED}});
        let chunk = |choices: Value| json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": choices});
        let sse = |frames: Vec<String>, every: Duration| {
            let stream = futures::stream::iter(frames).then(move |frame| async move {
                tokio::time::sleep(every).await;
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(frame))
            });
            ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response()
        };
        match model.as_str() {
            "broken" => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}})),
            )
                .into_response(),
            "slow" => {
                let delta = chunk(json!([{"index": 0, "delta": {"content": "."}, "finish_reason": null}]));
                sse(vec![format!("data: {delta}\n\n"); 3000], Duration::from_millis(20))
            }
            _ if body["stream"] == true => {
                let frames = [
                    chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": null}])),
                    chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
                    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage}),
                ];
                let mut frames: Vec<String> = frames.iter().map(|f| format!("data: {f}\n\n")).collect();
                frames.push("data: [DONE]\n\n".into());
                sse(frames, Duration::from_millis(2))
            }
            _ => axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": usage}))
            .into_response(),
        }
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

/// The app: `cheap` (a priced mock), `gpt`, `broken` and `slow` on the upstream at `base`.
fn write_manifest(dir: &Path, base: &str) -> PathBuf {
    let upstream = |model: &str| json!({"model": format!("openai/{model}"), "api_base": base, "api_key": "sk-up"});
    let mut gpt = upstream("gpt-4o");
    gpt["input_cost_per_token"] = json!(GPT_IN);
    gpt["output_cost_per_token"] = json!(GPT_OUT);
    let manifest = json!({"name": "spender", "type": "llm-proxy", "config": {"service_id": "spender",
        "model_list": [
            {"model_name": "cheap", "litellm_params": {"model": "gpt-4o", "mock_response": "four words of answer",
                "input_cost_per_token": 0.001, "output_cost_per_token": 0.002}},
            {"model_name": "gpt", "litellm_params": gpt},
            {"model_name": "broken", "litellm_params": upstream("broken")},
            {"model_name": "slow", "litellm_params": upstream("slow")},
        ],
        "litellm_settings": {"num_retries": 0}}});
    let path = dir.join("spender.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    path
}

async fn spender() -> (TestServer, tempfile::TempDir) {
    let base = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &base);
    (TestServer::with_configs(vec![manifest]).await, dir)
}

fn url(server: &TestServer, path: &str) -> String {
    format!("{}/default/apps/spender/v1{path}", server.base)
}

/// A chat request with its own request id: the status, headers and body the client got.
async fn chat(server: &TestServer, id: &str, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    let response = server
        .client
        .post(url(server, "/chat/completions"))
        .bearer_auth(&server.token)
        .header("x-request-id", id)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Every record of `workspace` the server token may read, by request id.
async fn records_by_id(server: &TestServer) -> HashMap<String, Value> {
    let page = server.ok("default", &server.token, "get_spend_logs", json!({"limit": 1000})).await;
    let items = page["items"].as_array().unwrap();
    let by_id: HashMap<String, Value> =
        items.iter().map(|r| (r["request_id"].as_str().unwrap().to_owned(), r.clone())).collect();
    assert_eq!(by_id.len(), items.len(), "one record per request id: {page}");
    by_id
}

fn header_cost(headers: &reqwest::header::HeaderMap) -> f64 {
    headers["x-ferrolite-cost"].to_str().unwrap().parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn every_request_served_has_one_record_with_the_tokens_cost_and_status_the_client_got() {
    let (server, _dir) = spender().await;
    let before = ferrolite::clock::now_ms();

    let mut whole = HashMap::new();
    for (id, body) in [
        ("r-cheap-1", ask("cheap", "Hello")),
        ("r-cheap-2", ask("cheap", "Hello there, how are you today?")),
        ("r-gpt", ask("gpt", "Hi")),
    ] {
        let (status, headers, text) = chat(&server, id, body).await;
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        whole.insert(id, (answer["usage"].clone(), header_cost(&headers)));
    }
    let mut streamed = ask("gpt", "Stream it");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = chat(&server, "r-stream", streamed).await;
    assert_eq!(status, 200);
    let last: Value =
        sse_data(&text).iter().rev().find(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).unwrap();
    let stream_usage = last["usage"].clone();
    assert_eq!(stream_usage["prompt_tokens"], PROMPT, "{text}");
    let (broken_status, _, broken) = chat(&server, "r-broken", ask("broken", "Hi")).await;
    assert!(broken_status >= 500, "{broken_status} {broken}");
    let (unknown_status, _, _) = chat(&server, "r-unknown", ask("nope", "Hi")).await;
    assert_eq!(unknown_status, 404);
    // A local route serves nothing through a provider: no record.
    let (status, _) = server.get_json(&url(&server, "/models")).await;
    assert_eq!(status, 200);

    let records = records_by_id(&server).await;
    let mut ids: Vec<&str> = records.keys().map(String::as_str).collect();
    ids.sort();
    assert_eq!(ids, ["r-broken", "r-cheap-1", "r-cheap-2", "r-gpt", "r-stream", "r-unknown"]);
    for record in records.values() {
        assert_eq!((record["workspace"].as_str(), record["service_id"].as_str()), (Some("default"), Some("spender")));
        assert_eq!((&record["key_id"], &record["user"]), (&Value::Null, &Value::Null), "no API key yet");
        let at = ferrolite::clock::parse_instant(record["time"].as_str().unwrap()).unwrap();
        assert!(at >= before - 1 && at <= ferrolite::clock::now_ms(), "{record}");
        assert!(record["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    for (id, (usage, cost)) in &whole {
        let r = &records[*id];
        assert_eq!((r["status"].as_u64(), r["outcome"].as_str()), (Some(200), Some("ok")), "{r}");
        assert_eq!(r["prompt_tokens"], usage["prompt_tokens"], "{r}");
        assert_eq!(r["completion_tokens"], usage["completion_tokens"], "{r}");
        assert!(close(r["cost"].as_f64().unwrap(), *cost), "the x-ferrolite-cost the client got: {cost} vs {r}");
    }
    assert_eq!(
        (records["r-cheap-1"]["model"].as_str(), records["r-cheap-1"]["deployment"].as_str()),
        (Some("cheap"), Some("cheap/0"))
    );
    let gpt = &records["r-gpt"];
    assert_eq!(
        (gpt["model"].as_str(), gpt["deployment"].as_str(), gpt["cached_tokens"].as_u64()),
        (Some("gpt"), Some("gpt/0"), Some(CACHED))
    );

    let stream = &records["r-stream"];
    assert_eq!((stream["status"].as_u64(), stream["outcome"].as_str()), (Some(200), Some("ok")));
    assert_eq!(
        (stream["prompt_tokens"].as_u64(), stream["completion_tokens"].as_u64()),
        (Some(PROMPT), Some(COMPLETION))
    );
    assert_eq!(stream["cached_tokens"].as_u64(), Some(CACHED));
    let priced = stream_usage["prompt_tokens"].as_f64().unwrap() * GPT_IN
        + stream_usage["completion_tokens"].as_f64().unwrap() * GPT_OUT;
    assert!(close(stream["cost"].as_f64().unwrap(), priced), "the stream's usage, priced: {priced} vs {stream}");

    let failed = &records["r-broken"];
    assert_eq!(
        (failed["status"].as_u64(), failed["outcome"].as_str()),
        (Some(u64::from(broken_status)), Some("error"))
    );
    assert_eq!(
        (failed["cost"].as_f64(), failed["prompt_tokens"].as_u64(), failed["model"].as_str()),
        (Some(0.0), Some(0), Some("broken"))
    );
    let unknown = &records["r-unknown"];
    assert_eq!(
        (unknown["status"].as_u64(), unknown["outcome"].as_str(), unknown["model"].as_str()),
        (Some(404), Some("error"), Some("nope"))
    );

    // What the records cost is what the app spent.
    let session = server.running.state.controller.registry().get("default", "spender").unwrap();
    let usage = server.ok("default", &server.token, "get_usage", json!({"session_id": session.id})).await;
    let logged: f64 = records.values().map(|r| r["cost"].as_f64().unwrap()).sum();
    assert!((usage["spend"].as_f64().unwrap() - logged).abs() < 1e-6, "{usage} vs {logged}");
}

#[tokio::test]
async fn a_stream_the_client_leaves_is_recorded_as_client_disconnected() {
    let (server, _dir) = spender().await;
    let mut body = ask("slow", "Take your time");
    body["stream"] = json!(true);
    let mut response = server
        .client
        .post(url(&server, "/chat/completions"))
        .bearer_auth(&server.token)
        .header("x-request-id", "r-left")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some(), "the stream began");
    drop(response);
    // The server learns of it at its next write; the record follows the stream's end.
    let mut waited = 0;
    let record = loop {
        if let Some(record) = records_by_id(&server).await.remove("r-left") {
            break record;
        }
        waited += 1;
        assert!(waited < 500, "no record for the stream the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((record["status"].as_u64(), record["outcome"].as_str()), (Some(200), Some("client_disconnected")));
    assert_eq!((record["model"].as_str(), record["deployment"].as_str()), (Some("slow"), Some("slow/0")));
}

#[tokio::test]
async fn spend_logs_filter_page_newest_first_and_stay_in_their_workspace() {
    let (server, _dir) = spender().await;
    for (i, model) in ["cheap", "gpt", "cheap", "broken", "gpt", "cheap"].into_iter().enumerate() {
        chat(&server, &format!("r{i}"), ask(model, "Hi")).await;
    }
    let t = server.token.clone();
    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_owned()).collect()
    };
    let all = server.ok("default", &t, "get_spend_logs", json!({})).await;
    assert_eq!(ids(&all).len(), 6);
    let times: Vec<u64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ferrolite::clock::parse_instant(r["time"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    assert_eq!(all["next_cursor"], Value::Null);

    let count = |kwargs: Value| {
        let server = &server;
        let t = t.clone();
        async move { server.ok("default", &t, "get_spend_logs", kwargs).await["items"].as_array().unwrap().len() }
    };
    assert_eq!(count(json!({"model": "cheap"})).await, 3);
    assert_eq!(count(json!({"model": "gpt"})).await, 2);
    assert_eq!(count(json!({"status": "5xx"})).await, 1);
    assert_eq!(count(json!({"status": 200})).await, 5);
    assert_eq!(count(json!({"status": "ok"})).await, 5);
    assert_eq!(count(json!({"status": "error"})).await, 1);
    assert_eq!(count(json!({"app": "spender"})).await, 6);
    assert_eq!(count(json!({"app": "someone-else"})).await, 0);
    assert_eq!(count(json!({"key": "k-1"})).await, 0);
    assert_eq!(count(json!({"user": "ann"})).await, 0);
    let oldest = times[times.len() - 1];
    let newest = times[0];
    assert_eq!(count(json!({"start": ferrolite::clock::rfc3339_ms(oldest)})).await, 6);
    assert_eq!(count(json!({"end": ferrolite::clock::rfc3339_ms(oldest)})).await, 0, "end is exclusive");
    assert_eq!(count(json!({"start": (newest / 1000 + 60)})).await, 0);
    assert_eq!(count(json!({"start": (oldest / 1000), "end": (newest / 1000 + 1), "model": "gpt"})).await, 2);

    // Pages of 4 then 2: every record once, in the same order as one page.
    let first = server.ok("default", &t, "get_spend_logs", json!({"limit": 4})).await;
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = server.ok("default", &t, "get_spend_logs", json!({"limit": 4, "cursor": cursor})).await;
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!([ids(&first), ids(&second)].concat(), ids(&all));

    // Query strings work as JSON does; bad values are 400s naming their argument.
    let (status, page) = server
        .get_json(&format!("{}/default/services/server-apps/get_spend_logs?model=cheap&limit=2", server.base))
        .await;
    assert_eq!((status, ids(&page).len()), (200, 2), "{page}");
    for (kwargs, param) in [
        (json!({"start": "yesterday"}), "start"),
        (json!({"limit": 5000}), "limit"),
        (json!({"status": "teapot"}), "status"),
        (json!({"cursor": "somewhere"}), "cursor"),
        (json!({"modle": "cheap"}), "modle"),
    ] {
        let (status, error) = server.controller("default", &t, "get_spend_logs", kwargs.clone()).await;
        assert_eq!((status, error["error"]["param"].as_str()), (400, Some(param)), "{kwargs}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(param), "{error}");
    }

    // Another workspace sees its own (none), cannot name this one; an admin may.
    let bob = server.token_for("bob");
    assert_eq!(server.ok("public", &bob, "get_spend_logs", json!({})).await["items"], json!([]));
    let (status, _) = server.controller("default", &bob, "get_spend_logs", json!({})).await;
    assert_eq!(status, 403);
    let admin = server.running.state.tokens.issue("ops", true, Duration::from_secs(600));
    assert_eq!(ids(&server.ok("default", &admin, "get_spend_logs", json!({})).await), ids(&all));

    // Over RPC, the same function and arguments.
    let rpc = rpc_call(&server, "get_spend_logs", json!({"model": "gpt"})).await;
    assert_eq!(ids(&rpc), ids(&server.ok("default", &t, "get_spend_logs", json!({"model": "gpt"})).await));
}

/// Calls a server-apps function over `/ws` as hypha-rpc packs it: keyword arguments last.
async fn rpc_call(server: &TestServer, function: &str, kwargs: Value) -> Value {
    let url = format!("{}/ws", server.base.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let auth =
        json!({"client_id": "spend-client", "workspace": "default", "token": server.token, "reconnection_token": null});
    socket.send(tokio_tungstenite::tungstenite::Message::text(auth.to_string())).await.unwrap();
    let main = map([
        ("type", Msgpack::from("method")),
        ("to", Msgpack::from("default/ferrolite-server")),
        ("method", Msgpack::from(format!("services.server-apps.{function}").as_str())),
        ("session", Msgpack::from("s1")),
    ]);
    let extra = map([
        ("args", Msgpack::Array(vec![codec::from_json(&kwargs)])),
        ("with_kwargs", Msgpack::Boolean(true)),
        ("promise", Msgpack::from("*")),
    ]);
    socket
        .send(tokio_tungstenite::tungstenite::Message::binary(codec::encode_message(main, Some(extra))))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message else { continue };
        let frame = Frame::decode(&bytes).unwrap();
        match frame.str("method") {
            Some("s1.resolve") => match frame.get("args") {
                Some(Msgpack::Array(args)) => return codec::to_json(&args[0]),
                other => panic!("{other:?}"),
            },
            Some("s1.reject") => panic!("{function} refused: {:?}", frame.get("args")),
            _ => continue,
        }
    }
}

/// `ferrolite ARGS` off the test's runtime (the server runs on it).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

#[tokio::test]
async fn the_cli_prints_spend_logs_as_a_table_csv_and_json() {
    let (server, _dir) = spender().await;
    chat(&server, "r-cheap", ask("cheap", "Hello, \"friend\"")).await;
    chat(&server, "r-gpt", ask("gpt", "Hi")).await;
    chat(&server, "r-broken", ask("broken", "Hi")).await;
    let spend = |extra: &[&str]| {
        let mut args: Vec<String> =
            ["spend", "logs", "--server", &server.base, "--data-dir"].map(str::to_owned).to_vec();
        args.push(server.data_dir().display().to_string());
        args.extend(["--workspace", "default"].map(str::to_owned));
        args.extend(extra.iter().map(|a| a.to_string()));
        cli(args)
    };

    let (code, out, err) = spend(&["--output", "csv"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "time,request_id,key_id,user,workspace,app_id,service_id,model,deployment,prompt_tokens,completion_tokens,cached_tokens,cost,status,outcome,latency_ms");
    assert_eq!(lines.len(), 4, "{out}");
    let gpt: Vec<&str> = lines.iter().find(|l| l.contains(",r-gpt,")).unwrap().split(',').collect();
    assert_eq!((gpt[7], gpt[8], gpt[9], gpt[10], gpt[11]), ("gpt", "gpt/0", "11", "5", "4"));
    assert_eq!((gpt[2], gpt[3], gpt[13], gpt[14]), ("", "", "200", "ok"));
    assert!(close(gpt[12].parse().unwrap(), PROMPT as f64 * GPT_IN + COMPLETION as f64 * GPT_OUT), "{out}");
    assert!(lines[1..].iter().any(|l| l.contains(",r-broken,") && l.contains(",error,")), "{out}");

    let (code, out, err) = spend(&["--output", "json", "--model", "gpt", "--since", "1h"]).await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(
        (page["items"][0]["request_id"].as_str(), page["items"][0]["cached_tokens"].as_u64()),
        (Some("r-gpt"), Some(4))
    );

    let (code, out, err) = spend(&["--limit", "2"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap().starts_with("TIME"), "a table: {out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.starts_with("more records: --cursor "), "the way on: {err}");

    for (bad, option) in [
        (["--status", "teapot"], "--status"),
        (["--since", "soon"], "--since"),
        (["--start", "yesterday"], "--start"),
        (["--limit", "5000"], "--limit"),
    ] {
        let (code, _, err) = spend(&bad).await;
        assert_ne!(code, 0);
        assert!(err.contains(option), "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn spend_records_written_at_shutdown_are_there_after_a_restart() {
    let base = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = write_manifest(dir.path(), &base);
    let start = || {
        let mut config = ferrolite::server::ServerConfig::new(data.clone());
        config.port = 0;
        config.configs = vec![manifest.clone()];
        config.allow_private_upstreams = true;
        ferrolite::server::start(config)
    };
    let running = start().await.unwrap();
    let chat_url = format!("http://{}/default/apps/spender/v1/chat/completions", running.addr);
    let client = reqwest::Client::new();
    for id in ["r1", "r2", "r3"] {
        let response = client
            .post(&chat_url)
            .bearer_auth(&running.token)
            .header("x-request-id", id)
            .header("content-type", "application/json")
            .body(ask("cheap", "Hi").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(read_json(response).await.0, 200);
    }
    // Still queued (the writer's next flush is a second away): shutdown writes them.
    running.shutdown().await.unwrap();

    let restarted = start().await.unwrap();
    let page =
        restarted.state.spend_logs.page(&ferrolite::store::spend_logs::SpendQuery::workspace("default")).unwrap();
    let ids: Vec<&str> = page.items.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["r3", "r2", "r1"]);
    restarted.shutdown().await.unwrap();
}
