//! The Gemini provider end to end: ferrolite in front of tests/it/fake_gemini.rs, driven by the
//! real `openai` SDK and by plain HTTP, with the fake's log showing what reached the upstream.
//! Also the fake itself: it refuses what the real API refuses, and its streams decode.

use crate::fake_gemini::{FakeGemini, Recorded, EMBEDDING_DIMENSIONS};
use crate::support::{sse_data, TestServer};
use ferrolite::providers::gemini::StreamDecoder;
use ferrolite::providers::translate::{ChunkDecoder, StreamMeta};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const UPSTREAM_KEY: &str = "AIzaSy-fake-gemini-key-0042";

/// The app's model names and the litellm models they are deployed as, in manifest order.
const MODELS: &[(&str, &str)] = &[("gemini", "gemini/gemini-1.5-pro"), ("gemini-embed", "gemini/text-embedding-004")];

fn manifest(dir: &Path, api_base: &str) -> PathBuf {
    let mut model_list: Vec<Value> = MODELS
        .iter()
        .map(|(name, model)| {
            json!({"model_name": name, "litellm_params": {"model": model, "api_base": api_base, "api_key": UPSTREAM_KEY}})
        })
        .collect();
    model_list.push(json!({"model_name": "gemini-bad-key", "litellm_params": {
        "model": "gemini/gemini-1.5-flash", "api_base": api_base, "api_key": "AIzaSy-not-the-right-key"
    }}));
    let doc = json!({
        "name": "Gemini upstream", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": model_list}
    });
    let path = dir.join("gemini-upstream.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

/// A fake Gemini and a ferrolite serving the app in front of it.
async fn setup() -> (FakeGemini, TestServer, tempfile::TempDir) {
    let fake = FakeGemini::start(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url)]).await;
    (fake, server, dir)
}

fn assert_keyed_by_header(r: &Recorded, key: &str) {
    assert_eq!(
        r.headers.get("x-goog-api-key").map(String::as_str),
        Some(key),
        "{} {} must carry the deployment key in x-goog-api-key",
        r.method,
        r.path
    );
    let query = r.query.as_deref().unwrap_or_default();
    assert!(
        !r.path.contains(key) && !query.contains(key) && !query.split('&').any(|p| p.starts_with("key=")),
        "{} {}?{query} put a key in the URL",
        r.method,
        r.path
    );
    assert!(!r.headers.contains_key("authorization"), "{} {} sent an Authorization header", r.method, r.path);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_chats_streams_calls_tools_and_embeds_through_gemini() {
    let (fake, server, _dir) = setup().await;
    crate::python_sdk::run_script("openai_sdk_gemini.py", &server.demo_url("/v1"), &server.token).await;

    let requests = fake.requests();
    let seen: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}{}", r.method, r.path, r.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default()))
        .collect();
    for expected in [
        "POST /v1beta/models/gemini-1.5-pro:generateContent",
        "POST /v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse",
        "POST /v1beta/models/text-embedding-004:batchEmbedContents",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} never reached the upstream; it saw {seen:#?}");
    }
    for r in &requests {
        assert_keyed_by_header(r, UPSTREAM_KEY);
        let leaked = r.headers.values().any(|v| v.contains(&server.token))
            || String::from_utf8_lossy(&r.body).contains(&server.token);
        assert!(!leaked, "{} {} leaked the ferrolite token upstream", r.method, r.path);
    }

    // The tool round trip: the result went back as a functionResponse answering the call.
    let round_trip = requests
        .iter()
        .filter(|r| r.path.ends_with(":generateContent"))
        .map(Recorded::json)
        .find(|b| b.to_string().contains("functionResponse"))
        .expect("a request with the tool result");
    let contents = round_trip["contents"].as_array().unwrap();
    let roles: Vec<&str> = contents.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(contents[1]["parts"][0]["functionCall"]["name"], "get_weather");
    assert_eq!(contents[2]["parts"][0]["functionResponse"]["name"], "get_weather");
    assert_eq!(contents[2]["parts"][0]["functionResponse"]["response"]["content"]["temperature"], 21);

    let embed = fake.last(":batchEmbedContents").unwrap().json();
    assert_eq!(embed["requests"][0]["model"], "models/text-embedding-004");
}

#[tokio::test]
async fn the_upstream_gets_system_instruction_generation_config_and_the_key_in_a_header() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({
                "model": "gemini",
                "temperature": 0.3,
                "max_tokens": 64,
                "stop": ["END"],
                "messages": [
                    {"role": "system", "content": "You are a terse assistant."},
                    {"role": "user", "content": "Hello there"},
                    {"role": "user", "content": "Say hi back"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gemini-1.5-pro");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: Hello there Say hi back");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], 6, "the fake counts a token a word: {usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + 6));

    let recorded = fake.last(":generateContent").expect("the request reached the fake");
    assert_eq!(recorded.path, "/v1beta/models/gemini-1.5-pro:generateContent");
    assert_eq!(recorded.query, None, "nothing in the query string, the key least of all");
    assert_keyed_by_header(&recorded, UPSTREAM_KEY);
    let upstream = recorded.json();
    assert_eq!(upstream["systemInstruction"], json!({"parts": [{"text": "You are a terse assistant."}]}));
    assert_eq!(
        upstream["contents"],
        json!([{"role": "user", "parts": [{"text": "Hello there"}, {"text": "Say hi back"}]}]),
        "consecutive user turns are merged"
    );
    assert_eq!(
        upstream["generationConfig"],
        json!({"maxOutputTokens": 64, "temperature": 0.3, "stopSequences": ["END"]})
    );
}

#[tokio::test]
async fn streams_arrive_as_openai_chunks_with_usage_last() {
    let (_fake, server, _dir) = setup().await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "gemini", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Tell me a short story"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "echo: Tell me a short story");
    let with_text = chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].is_string()).count();
    assert!(with_text >= 3, "one chunk per upstream event: {chunks:#?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let finishes: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0].get("finish_reason")).collect();
    assert_eq!(finishes.iter().filter(|f| !f.is_null()).count(), 1);
}

#[tokio::test]
async fn a_rejected_key_is_an_openai_error_without_the_key() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "gemini-bad-key", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["message"], "gemini: API key not valid. Please pass a valid API key.");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
    assert!(!body.to_string().contains("AIzaSy"), "no key in the answer: {body}");
    assert_keyed_by_header(&fake.last(":generateContent").unwrap(), "AIzaSy-not-the-right-key");
}

// ---------------------------------------------------------------------------------------------
// The fake itself

async fn post_fake(fake: &FakeGemini, path: &str, key: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("x-goog-api-key", key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hello there friend"}]}]})
}

#[tokio::test]
async fn the_fake_refuses_what_the_real_api_refuses() {
    let fake = FakeGemini::start(UPSTREAM_KEY).await;
    let generate = "/v1beta/models/gemini-1.5-pro:generateContent";

    let (status, body) = post_fake(&fake, generate, Some("wrong"), &hello()).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}})
    );
    let (status, body) = post_fake(&fake, generate, None, &hello()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("PERMISSION_DENIED"), "{body}");

    let refused = [
        (json!({"contents": []}), "contents is not specified"),
        (json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}), "valid role"),
        (json!({"contents": [{"role": "user", "parts": []}]}), "must not be empty"),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generation_config": {}}), "Unknown name"),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}}),
            "Unknown name",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "application/json",
                "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}}),
            "additionalProperties",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}),
            "function response turn",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "%%"}}]}]}),
            "Base64",
        ),
    ];
    for (body, expected) in refused {
        let (status, answer) = post_fake(&fake, generate, Some(UPSTREAM_KEY), &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer.contains(expected), "{body}: expected {expected:?} in {answer}");
        assert!(answer.contains("INVALID_ARGUMENT"), "{answer}");
    }

    let (status, answer) =
        post_fake(&fake, "/v1beta/models/gemini-1.5-pro:streamGenerateContent", Some(UPSTREAM_KEY), &hello()).await;
    assert_eq!(status, 400, "streams need alt=sse: {answer}");
    let (status, _) =
        post_fake(&fake, "/v1beta/models/gemini-1.5-pro:countTokensPlease", Some(UPSTREAM_KEY), &hello()).await;
    assert_eq!(status, 404);
    let (status, _) = post_fake(&fake, "/v1/chat/completions", Some(UPSTREAM_KEY), &hello()).await;
    assert_eq!(status, 404);

    let (status, answer) = post_fake(&fake, generate, Some(UPSTREAM_KEY), &hello()).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["candidates"][0]["content"]["parts"][0]["text"], "echo: Hello there friend");
    assert_eq!(fake.requests().len(), 14, "every request is recorded, refused ones too");
}

#[tokio::test]
async fn the_fake_stream_decodes_into_the_same_text_as_the_whole_answer() {
    let fake = FakeGemini::start(UPSTREAM_KEY).await;
    let (_, whole) =
        post_fake(&fake, "/v1beta/models/gemini-1.5-pro:generateContent", Some(UPSTREAM_KEY), &hello()).await;
    let whole: Value = serde_json::from_str(&whole).unwrap();

    let response = reqwest::Client::new()
        .post(format!("{}/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse", fake.base_url))
        .header("x-goog-api-key", UPSTREAM_KEY)
        .body(hello().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let meta = StreamMeta { id: "chatcmpl-x".into(), created: 1, model: "gemini-1.5-pro".into() };
    let mut decoder = StreamDecoder::new(meta);
    let mut chunks = Vec::new();
    let mut reads = 0;
    let mut response = response;
    while let Some(bytes) = response.chunk().await.unwrap() {
        reads += 1;
        chunks.extend(crate::support::wires(decoder.feed(&bytes).unwrap()));
    }
    chunks.extend(crate::support::wires(decoder.finish().unwrap()));
    assert!(reads >= 3, "events arrive separately: {reads} reads");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, whole["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], whole["usageMetadata"]["totalTokenCount"]);

    let weather = json!({
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Oslo?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]}]
    });
    let (_, answer) =
        post_fake(&fake, "/v1beta/models/gemini-1.5-pro:generateContent", Some(UPSTREAM_KEY), &weather).await;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"location": "Oslo"}})
    );

    let embed = json!({"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 8}
    ]});
    let (status, answer) =
        post_fake(&fake, "/v1beta/models/text-embedding-004:batchEmbedContents", Some(UPSTREAM_KEY), &embed).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["embeddings"][0]["values"].as_array().unwrap().len(), EMBEDDING_DIMENSIONS);
    assert_eq!(answer["embeddings"][1]["values"].as_array().unwrap().len(), 8);
}
