//! The OpenAI provider end to end: ferrolite in front of tests/it/fake_openai.rs, driven by the
//! real `openai` SDK and by plain HTTP, with the fake's log showing what reached the upstream.

use crate::fake_openai::{fnv64_hex, speech_bytes, FakeOpenAi, Recorded};
use crate::support::{read_json, sse_data, TestServer};
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const UPSTREAM_KEY: &str = "sk-fake-upstream-123";

/// The app's model names and the upstream models they are deployed as, in manifest order.
const MODELS: &[(&str, &str)] = &[
    ("gpt-4o", "openai/gpt-4o-2024-08-06"),
    ("embed", "openai/text-embedding-3-small"),
    ("tts", "openai/tts-1"),
    ("whisper", "openai/whisper-1"),
    ("dall-e", "openai/dall-e-3"),
    ("moderation", "openai/omni-moderation-latest"),
];

fn manifest(dir: &Path, api_base: &str) -> PathBuf {
    let model_list: Vec<Value> = MODELS
        .iter()
        .map(|(name, model)| {
            json!({"model_name": name, "litellm_params": {
                "model": model, "api_base": api_base, "api_key": UPSTREAM_KEY
            }})
        })
        .collect();
    let doc = json!({
        "name": "OpenAI upstream", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": model_list}
    });
    let path = dir.join("openai-upstream.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

/// A fake upstream and a ferrolite serving the six-model app in front of it.
async fn setup() -> (FakeOpenAi, TestServer, tempfile::TempDir) {
    let fake = FakeOpenAi::start(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url)]).await;
    (fake, server, dir)
}

fn json_body(recorded: &Recorded) -> Value {
    serde_json::from_slice(&recorded.body).unwrap_or_else(|e| {
        panic!(
            "{} {} body is not JSON ({e}): {}",
            recorded.method,
            recorded.path,
            String::from_utf8_lossy(&recorded.body)
        )
    })
}

/// A multipart part as it arrived upstream.
struct Part {
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
}

async fn multipart_parts(recorded: &Recorded) -> Vec<Part> {
    let content_type =
        recorded.headers.get("content-type").unwrap_or_else(|| panic!("{} has no content-type", recorded.path));
    let boundary = multer::parse_boundary(content_type)
        .unwrap_or_else(|e| panic!("{}: no multipart boundary in {content_type:?}: {e}", recorded.path));
    let body = axum::body::Bytes::from(recorded.body.clone());
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.expect("a well-formed multipart body") {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let data = field.bytes().await.expect("a multipart field").to_vec();
        parts.push(Part { name, file_name, data });
    }
    parts
}

fn text_of<'a>(parts: &'a [Part], name: &str) -> Option<&'a str> {
    parts.iter().find(|p| p.name == name).and_then(|p| std::str::from_utf8(&p.data).ok())
}

/// tests/python/openai_sdk_upstream.py's `audio_clip`: an LCG's high bytes.
fn audio_clip(size: usize) -> Vec<u8> {
    let mut x: u64 = 12345;
    (0..size)
        .map(|_| {
            x = (x * 1_103_515_245 + 12_345) & 0x7fff_ffff;
            ((x >> 16) & 0xff) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_runs_every_route_family_through_to_the_upstream() {
    let (fake, server, _dir) = setup().await;
    crate::python_sdk::run_script("openai_sdk_upstream.py", &server.demo_url("/v1"), &server.token).await;

    let requests = fake.requests();
    let paths: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    for expected in [
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/embeddings",
        "POST /v1/moderations",
        "POST /v1/audio/speech",
        "POST /v1/audio/transcriptions",
        "POST /v1/audio/translations",
        "POST /v1/images/generations",
        "POST /v1/files",
        "GET /v1/files",
        "POST /v1/batches",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected} never reached the upstream; it saw {paths:#?}");
    }
    for r in &requests {
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str()),
            "{} {} must carry the deployment key",
            r.method,
            r.path
        );
        let leaked = r.headers.values().any(|v| v.contains(&server.token))
            || r.query.as_deref().is_some_and(|q| q.contains(&server.token))
            || String::from_utf8_lossy(&r.body).contains(&server.token);
        assert!(!leaked, "{} {} leaked the ferrolite token upstream", r.method, r.path);
    }

    // JSON bodies: the model group name becomes the deployment's upstream model.
    let rewritten = [
        ("/v1/chat/completions", "gpt-4o-2024-08-06"),
        ("/v1/completions", "gpt-4o-2024-08-06"),
        ("/v1/embeddings", "text-embedding-3-small"),
        ("/v1/moderations", "omni-moderation-latest"),
        ("/v1/audio/speech", "tts-1"),
        ("/v1/images/generations", "dall-e-3"),
    ];
    for (path, model) in rewritten {
        for r in requests.iter().filter(|r| r.path == path) {
            assert_eq!(json_body(r)["model"], model, "{path}");
        }
    }
    let chat = json_body(&fake.last("/v1/chat/completions").unwrap());
    assert_eq!(chat["model"], "gpt-4o-2024-08-06");
    assert_eq!(chat["stream"], true, "the last chat request was the stream");
    assert_eq!(chat["messages"][0]["content"], "Hello!");

    // Multipart bodies: the file arrives byte for byte (the model field is checked at the end).
    let clip = audio_clip(200 * 1024);
    let transcription = fake.last("/v1/audio/transcriptions").unwrap();
    let transcription_parts = multipart_parts(&transcription).await;
    let file = transcription_parts.iter().find(|p| p.name == "file").expect("a file part");
    assert_eq!(file.file_name.as_deref(), Some("clip.mp3"));
    assert_eq!(file.data.len(), clip.len());
    assert_eq!(fnv64_hex(&file.data), fnv64_hex(&clip));
    assert!(file.data == clip, "the audio file arrived intact");
    assert_eq!(text_of(&transcription_parts, "response_format"), Some("json"));

    let listed = fake.last("/v1/files").filter(|r| r.method == "GET");
    assert!(listed.is_some(), "the file list went upstream");
    let upload = requests.iter().rfind(|r| r.method == "POST" && r.path == "/v1/files").unwrap();
    let parts = multipart_parts(upload).await;
    assert_eq!(text_of(&parts, "purpose"), Some("batch"));
    let jsonl = parts.iter().find(|p| p.name == "file").unwrap();
    assert_eq!(jsonl.file_name.as_deref(), Some("requests.jsonl"));
    assert_eq!(String::from_utf8_lossy(&jsonl.data).lines().count(), 3, "the batch input arrived whole");

    let batch = json_body(&fake.last("/v1/batches").unwrap());
    assert_eq!(batch["endpoint"], "/v1/chat/completions");
    assert_eq!(batch["completion_window"], "24h");
    assert!(batch["input_file_id"].as_str().is_some_and(|id| id.starts_with("file-")));

    // Last, as it is the newest behaviour: the multipart `model` field is rewritten like JSON's.
    let translation_parts = multipart_parts(&fake.last("/v1/audio/translations").unwrap()).await;
    for (route, parts) in [("transcription", &transcription_parts), ("translation", &translation_parts)] {
        assert_eq!(
            text_of(parts, "model"),
            Some("whisper-1"),
            "the {route}'s multipart model field names the upstream model"
        );
    }
}

#[tokio::test]
async fn speech_comes_back_byte_for_byte_as_audio_mpeg() {
    let (fake, server, _dir) = setup().await;
    let input = "Binary bodies pass through untouched: \u{00e9}\u{00e8} \r\n\0 done.";
    let response = server
        .post(server.demo_url("/v1/audio/speech"), &json!({"model": "tts", "input": input, "voice": "alloy"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("audio/mpeg"));
    let audio = response.bytes().await.unwrap();
    let expected = speech_bytes(input);
    assert_eq!(audio.len(), expected.len());
    assert!(audio[..] == expected[..], "speech bytes differ");

    let upstream = json_body(&fake.last("/v1/audio/speech").unwrap());
    assert_eq!(upstream["model"], "tts-1");
    assert_eq!(upstream["input"], input);
    assert_eq!(upstream["voice"], "alloy");
}

#[tokio::test]
async fn an_upstream_404_for_an_unknown_file_is_a_404_openai_error() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server.get_json(&server.demo_url("/v1/files/file-doesnotexist")).await;
    assert_eq!(status, 404, "{body}");
    let error = &body["error"];
    assert!(error.is_object(), "an OpenAI error object: {body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("file-doesnotexist"), "the message names the file: {body}");
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    for field in ["param", "code"] {
        assert!(error.get(field).is_some(), "{field} is present (maybe null): {body}");
    }
    assert!(!body.to_string().contains(UPSTREAM_KEY));

    let upstream = fake.last("/v1/files/file-doesnotexist").unwrap();
    assert_eq!(upstream.method, "GET");
    assert!(upstream.body.is_empty());
}

#[tokio::test]
async fn streaming_chat_delivers_every_sse_event() {
    let (fake, server, _dir) = setup().await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({
                "model": "gpt-4o",
                "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Tell me a short story"}]
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let mut frames = 0;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
        frames += 1;
    }
    let body = String::from_utf8(body).unwrap();
    assert!(frames > 1, "events arrive as the upstream sends them, not in one buffered piece");

    let data = sse_data(&body);
    let data_lines = body.lines().filter(|l| l.starts_with("data: ")).count();
    assert_eq!(data.len(), data_lines, "one data line per event: {body}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"))).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<&str> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).filter(|s| !s.is_empty()).collect();
    assert!(content.len() >= 3, "{content:?}");
    assert_eq!(content.concat(), "echo: Tell me a short story");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{body}");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]), "{body}");
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0, "{body}");
    // role + one per delta + finish + usage + [DONE]
    assert_eq!(data.len(), content.len() + 4, "{body}");

    let upstream = json_body(&fake.last("/v1/chat/completions").unwrap());
    assert_eq!(upstream["model"], "gpt-4o-2024-08-06");
    assert_eq!(upstream["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn target_model_names_routes_a_model_less_request_upstream() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server.get_json(&server.demo_url("/v1/files?target_model_names=gpt-4o")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list", "{body}");
    assert!(body["data"].is_array(), "{body}");
    let upstream = fake.last("/v1/files").expect("the list reached the fake");
    assert_eq!(upstream.method, "GET");
    assert_eq!(
        upstream.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );

    // A name the app does not serve is refused before anything goes upstream.
    let before = fake.requests().len();
    let response = server
        .client
        .get(server.demo_url("/v1/files?target_model_names=no-such-model"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("no-such-model")), "{body}");
    assert_eq!(fake.requests().len(), before, "nothing went upstream");
}

/// POSTs JSON to the demo app and expects a 200.
async fn post_ok(server: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = server.post_json(&server.demo_url(path), &body).await;
    assert_eq!(status, 200, "POST {path}: {answer}");
    answer
}

/// GETs from the demo app and expects a 200.
async fn get_ok(server: &TestServer, path: &str) -> Value {
    let (status, answer) = server.get_json(&server.demo_url(path)).await;
    assert_eq!(status, 200, "GET {path}: {answer}");
    answer
}

#[tokio::test]
async fn stateful_route_families_round_trip_through_the_upstream() {
    let (fake, server, _dir) = setup().await;

    // Responses: create, read back, list its input, delete.
    let response = post_ok(&server, "/v1/responses", json!({"model": "gpt-4o", "input": "Hi there"})).await;
    assert_eq!(response["object"], "response");
    assert_eq!(response["output"][0]["content"][0]["text"], "echo: Hi there");
    let id = response["id"].as_str().unwrap();
    assert_eq!(get_ok(&server, &format!("/v1/responses/{id}")).await["id"], id);
    let items = get_ok(&server, &format!("/v1/responses/{id}/input_items")).await;
    assert_eq!(items["data"][0]["content"][0]["text"], "Hi there");
    let url = server.demo_url(&format!("/v1/responses/{id}"));
    let deleted = server.client.delete(&url).bearer_auth(&server.token).send().await.unwrap();
    let (status, deleted) = read_json(deleted).await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)), "{deleted}");
    assert_eq!(json_body(&fake.last("/v1/responses").unwrap())["model"], "gpt-4o-2024-08-06");

    // Fine-tuning: create, list, get, events, cancel.
    let job = post_ok(&server, "/v1/fine_tuning/jobs", json!({"model": "gpt-4o", "training_file": "file-train"})).await;
    assert_eq!(job["object"], "fine_tuning.job");
    let job_id = job["id"].as_str().unwrap();
    assert_eq!(get_ok(&server, "/v1/fine_tuning/jobs").await["data"][0]["id"], job_id);
    assert_eq!(get_ok(&server, &format!("/v1/fine_tuning/jobs/{job_id}")).await["training_file"], "file-train");
    let events = get_ok(&server, &format!("/v1/fine_tuning/jobs/{job_id}/events")).await;
    assert_eq!(events["data"][0]["object"], "fine_tuning.job.event");
    let cancelled = post_ok(&server, &format!("/v1/fine_tuning/jobs/{job_id}/cancel"), json!({})).await;
    assert_eq!(cancelled["status"], "cancelled");

    // Assistants and threads: an assistant, a thread with a message, a run.
    let assistant = post_ok(&server, "/v1/assistants", json!({"model": "gpt-4o", "name": "helper"})).await;
    assert_eq!(assistant["object"], "assistant");
    let assistant_id = assistant["id"].as_str().unwrap();
    assert_eq!(get_ok(&server, "/v1/assistants").await["data"][0]["id"], assistant_id);
    let thread = post_ok(&server, "/v1/threads", json!({})).await;
    assert_eq!(thread["object"], "thread");
    let thread_id = thread["id"].as_str().unwrap();
    assert_eq!(get_ok(&server, &format!("/v1/threads/{thread_id}")).await["id"], thread_id);
    let message = post_ok(
        &server,
        &format!("/v1/threads/{thread_id}/messages"),
        json!({"role": "user", "content": "What is 2+2?"}),
    )
    .await;
    assert_eq!(message["content"][0]["text"]["value"], "What is 2+2?");
    let messages = get_ok(&server, &format!("/v1/threads/{thread_id}/messages")).await;
    assert_eq!(messages["data"][0]["id"], message["id"]);
    let run = post_ok(&server, &format!("/v1/threads/{thread_id}/runs"), json!({"assistant_id": assistant_id})).await;
    assert_eq!((&run["object"], &run["status"]), (&json!("thread.run"), &json!("queued")));
    let url = server.demo_url(&format!("/v1/assistants/{assistant_id}"));
    let deleted = server.client.delete(&url).bearer_auth(&server.token).send().await.unwrap();
    let (status, deleted) = read_json(deleted).await;
    assert_eq!((status, &deleted["object"]), (200, &json!("assistant.deleted")), "{deleted}");

    // Vector stores and rerank.
    let store = post_ok(&server, "/v1/vector_stores", json!({"name": "notes"})).await;
    assert_eq!(store["object"], "vector_store");
    let store_id = store["id"].as_str().unwrap();
    assert_eq!(get_ok(&server, "/v1/vector_stores").await["data"][0]["id"], store_id);
    let found = post_ok(&server, &format!("/v1/vector_stores/{store_id}/search"), json!({"query": "gardening"})).await;
    assert_eq!(found["object"], "vector_store.search_results.page");
    let ranked = post_ok(
        &server,
        "/v1/rerank",
        json!({"model": "gpt-4o", "query": "red fox", "documents": ["a blue whale", "the red fox runs"], "top_n": 1}),
    )
    .await;
    assert_eq!(ranked["results"], json!([{"index": 1, "relevance_score": ranked["results"][0]["relevance_score"]}]));

    for r in fake.requests() {
        assert_eq!(r.headers.get("authorization").map(String::as_str), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
    }
}

/// `/health` lists OpenAI-compatible deployments healthy or not, in litellm's shape.
#[tokio::test]
async fn health_reports_each_openai_deployment() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    let dead_port = crate::support::DeadPort::new();
    let dead = dead_port.url("/v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("health.json");
    let manifest = serde_json::json!({"name": "h", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "up", "litellm_params": {"model": "openai/gpt-4o", "api_base": fake.base_url, "api_key": "sk-fake-upstream-123"}},
        {"model_name": "down", "litellm_params": {"model": "openai/gpt-4o", "api_base": dead, "api_key": "k"}}
    ]}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let (status, health) = server.get_json(&server.demo_url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(health["healthy_endpoints"][0]["model_name"], "up");
    assert_eq!(health["unhealthy_endpoints"][0]["model_name"], "down");
    assert_eq!(health["unhealthy_endpoints"][0]["error"], "upstream unreachable");
    assert_eq!((health["healthy_count"].as_u64(), health["unhealthy_count"].as_u64()), (Some(1), Some(1)));
    let (_, ready) = server.get_json(&server.demo_url("/health/readiness")).await;
    assert_eq!(ready["status"], "healthy", "readiness never calls upstreams");
}

#[tokio::test]
async fn a_path_parameter_of_dots_cannot_step_up_the_upstreams_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (fake, server, _dir) = setup().await;
    // Escaped, so no client or server in between collapses it first; axum decodes it to `..`.
    for escaped in ["%2E%2E", "%2e", "..%2F.."] {
        let mut socket = tokio::net::TcpStream::connect(server.running.addr).await.unwrap();
        let head = format!(
            "GET /default/apps/demo/v1/files/{escaped} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            server.token
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        let status_line = answer.lines().next().unwrap_or_default().to_owned();
        if escaped == "..%2F.." {
            // Not only dots: it goes upstream as one escaped segment, as the files route asks.
            assert!(status_line.contains(" 404 ") || status_line.contains(" 200 "), "{answer}");
            continue;
        }
        assert!(status_line.contains(" 400 "), "{escaped}: {answer}");
        assert!(answer.contains("`file_id` may not be"), "{answer}");
    }
    assert!(fake.requests().iter().all(|r| r.path.starts_with("/v1/files/")), "{:?}", fake.requests());
}
