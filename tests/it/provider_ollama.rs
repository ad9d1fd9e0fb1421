//! The Ollama provider: ferrolite in front of tests/it/fake_ollama.rs (Ollama's native API),
//! driven by the real `openai` SDK and by plain HTTP, with the fake's log showing what reached
//! the upstream; the translations' exact shapes as insta snapshots; and the fake itself.

use crate::fake_ollama::{FakeOllama, Recorded};
use crate::support::{sse_data, wire, wires, TestServer};
use ferrolite::api::openai::ChatRequest;
use ferrolite::manifest::LitellmParams;
use ferrolite::providers::deployment::{Deployment, Secret};
use ferrolite::providers::ollama::{self, StreamDecoder};
use ferrolite::providers::translate::{ChunkDecoder, StreamMeta};
use ferrolite::providers::Provider;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const KEY: &str = "ollama-proxy-key-0042";

fn manifest(dir: &Path, api_base: &str) -> PathBuf {
    let deployment = |name: &str, model: &str, extra: Value| {
        let mut params = json!({"model": model, "api_base": api_base});
        params.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        json!({"model_name": name, "litellm_params": params})
    };
    let doc = json!({
        "name": "Ollama upstream", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": [
            deployment("llama", "ollama_chat/llama3.1", json!({})),
            deployment("llama-generate", "ollama/llama3.1", json!({})),
            deployment("embed", "ollama/nomic-embed-text", json!({})),
            deployment("tuned", "ollama_chat/llama3.1", json!({"num_ctx": 8192, "keep_alive": "10m", "api_key": KEY})),
            deployment("missing", "ollama_chat/missing-model", json!({})),
            deployment("crash", "ollama_chat/crash-model", json!({})),
            deployment("flaky", "ollama_chat/flaky-model", json!({})),
        ]}
    });
    let path = dir.join("ollama.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

async fn setup() -> (FakeOllama, TestServer, tempfile::TempDir) {
    let fake = FakeOllama::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url)]).await;
    (fake, server, dir)
}

/// A chat answer with its random id and clock made fixed, for snapshots.
fn pinned(mut answer: Value) -> Value {
    answer["id"] = json!("chatcmpl-pinned");
    answer["created"] = json!(0);
    let calls = answer.pointer_mut("/choices/0/message/tool_calls").and_then(Value::as_array_mut);
    for call in calls.into_iter().flatten() {
        call["id"] = json!("call_pinned");
    }
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_chats_streams_calls_tools_generates_and_embeds_through_ollama() {
    let (fake, server, _dir) = setup().await;
    crate::python_sdk::run_script("openai_sdk_ollama.py", &server.demo_url("/v1"), &server.token).await;
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    for path in ["/api/chat", "/api/generate", "/api/embed"] {
        assert!(paths.iter().any(|p| p == path), "{path} never reached Ollama: {paths:?}");
    }
    for r in fake.requests() {
        assert!(!r.headers.contains_key("authorization"), "no key set, none sent: {:?}", r.headers);
        assert!(!String::from_utf8_lossy(&r.body).contains(&server.token), "the ferrolite token leaked upstream");
    }
}

#[tokio::test]
async fn a_chat_reaches_api_chat_with_options_and_comes_back_with_ollamas_counts() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({
                "model": "tuned", "temperature": 0.2, "top_p": 0.9, "seed": 7, "max_tokens": 50, "stop": "END",
                "top_k": 20,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "What is in "}, {"type": "text", "text": "this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
                ]
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    insta::assert_json_snapshot!("chat_answer", pinned(body));
    let recorded = fake.last("/api/chat").unwrap();
    assert_eq!(recorded.headers.get("authorization").map(String::as_str), Some(format!("Bearer {KEY}").as_str()));
    insta::assert_json_snapshot!("chat_upstream_request", recorded.json());
}

#[tokio::test]
async fn a_stream_of_ndjson_lines_arrives_as_openai_chunks_with_usage_last() {
    let (_fake, server, _dir) = setup().await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Tell me a story please"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "echo: Tell me a story please");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finishes: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0].get("finish_reason")).filter(|f| !f.is_null()).collect();
    assert_eq!(finishes, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}));
}

#[tokio::test]
async fn tool_calls_get_ids_and_their_results_go_back_with_the_function_name() {
    let (fake, server, _dir) = setup().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let question = json!({"role": "user", "content": "What is the weather in Oslo?"});
    let (status, called) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama", "tools": tools, "messages": [question]}),
        )
        .await;
    assert_eq!(status, 200, "{called}");
    insta::assert_json_snapshot!("tool_call_answer", pinned(called.clone()));
    let message = called["choices"][0]["message"].clone();
    let id = message["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    let (status, answered) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama", "tools": tools, "messages": [
                question, message, {"role": "tool", "tool_call_id": id, "content": "12 degrees"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["choices"][0]["message"]["content"], "get_weather says: 12 degrees");
    insta::assert_json_snapshot!("tool_result_upstream_request", fake.last("/api/chat").unwrap().json());

    // A forced call is something Ollama cannot be asked for: refused before it goes out.
    let before = fake.requests().len();
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama", "tools": tools, "tool_choice": "required", "messages": [question]}),
        )
        .await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("tool_choice")), "{body}");
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test]
async fn ollama_models_go_through_api_generate_as_one_prompt() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama-generate", "max_tokens": 3, "messages": [
                {"role": "system", "content": "You are a poet."},
                {"role": "user", "content": "Write about the sea"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: Write about");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "num_predict cut it");
    assert_eq!(
        fake.last("/api/generate").unwrap().json(),
        json!({"model": "llama3.1", "prompt": "Write about the sea", "system": "You are a poet.",
            "options": {"num_predict": 3}, "stream": false})
    );

    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama-generate", "stream": true, "messages": [
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Again"}
            ]}),
        )
        .await;
    let data = sse_data(&response.text().await.unwrap());
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    let prompt = "### User:\nHi\n\n### Assistant:\nHello!\n\n### User:\nAgain\n\n### Assistant:\n";
    assert_eq!(fake.last("/api/generate").unwrap().json()["prompt"], prompt);
    assert_eq!(text, format!("echo: {prompt}"));
}

#[tokio::test]
async fn embeddings_go_through_api_embed_with_ollamas_count() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/embeddings"),
            &json!({"model": "embed", "input": ["the quick fox", "hello"], "dimensions": 8}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(body["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));
    assert_eq!(
        fake.last("/api/embed").unwrap().json(),
        json!({"model": "nomic-embed-text", "input": ["the quick fox", "hello"], "dimensions": 8})
    );
}

#[tokio::test]
async fn ollamas_errors_are_openai_errors_and_a_broken_stream_ends_with_an_error_event() {
    let (_fake, server, _dir) = setup().await;
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "one two three"}]});
    let (status, body) = server.post_json(&server.demo_url("/v1/chat/completions"), &chat("missing")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["message"], "ollama: model \"missing-model\" not found, try pulling it first");
    let (status, body) = server.post_json(&server.demo_url("/v1/chat/completions"), &chat("crash")).await;
    assert_eq!(status, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("ollama: llama runner process has terminated: exit status 2"), "{body}");

    let mut flaky = chat("flaky");
    flaky["stream"] = json!(true);
    let text = server.post(server.demo_url("/v1/chat/completions"), &flaky).await.text().await.unwrap();
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("ollama: an error was encountered while running the model: unexpected EOF"), "{text}");
    assert!(!text.contains("[DONE]"), "an error ends the stream: {text}");

    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "llama", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages[0].content[0].image_url.url");
}

#[tokio::test]
async fn the_anthropic_front_reaches_ollama_through_its_chat_translation() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/messages"),
            &json!({"model": "llama", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi Claude"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["text"], "echo: Hi Claude");
    assert_eq!(fake.last("/api/chat").unwrap().json()["options"], json!({"num_predict": 64}));
}

// ---------------------------------------------------------------------------------------------
// Pure translations

fn deployment(provider: Provider, model: &str) -> Deployment {
    Deployment {
        id: "llama/0".into(),
        model_name: "llama".into(),
        provider,
        upstream_model: model.into(),
        api_base: Some(ollama::DEFAULT_API_BASE.into()),
        public_only: false,
        api_key: Some(Secret::new(KEY.into())),
        api_version: None,
        aws: None,
        vertex: None,
        mock_response: None,
        chat_only: false,
        params: LitellmParams { model: format!("ollama_chat/{model}"), ..LitellmParams::default() },
        model_info: None,
        credential_headers: Default::default(),
        id_header: Default::default(),
        upstream_model_json: Default::default(),
        extra_headers: Vec::new(),
        unavailable: None,
        catch_all: None,
    }
}

fn chat(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn chat_requests_become_api_chat_bodies() {
    let d = deployment(Provider::OllamaChat, "llama3.1");
    let cases = [
        (
            "json_schema",
            json!({"model": "llama", "response_format": {"type": "json_schema", "json_schema": {"name": "x",
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
            "reasoning_effort": "low", "messages": [{"role": "developer", "content": "JSON only."}, {"role": "user", "content": "Go"}]}),
        ),
        (
            "tool_history",
            json!({"model": "llama", "tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [
                {"role": "user", "content": "Use f"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": [1, 2]}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_2", "content": "g done"},
                {"role": "tool", "tool_call_id": "call_1", "content": "f done"}
            ]}),
        ),
    ];
    for (name, request) in cases {
        let req = chat(request);
        insta::assert_json_snapshot!(format!("request_{name}"), wire(ollama::chat_body(&req, &d, true).unwrap()));
    }
    let bad = chat(json!({"model": "llama", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}));
    let e = ollama::chat_body(&bad, &d, false).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[0].tool_calls[0].function.arguments"), "{}", e.message);
}

#[test]
fn answers_and_streams_become_openai_shapes() {
    let answer = json!({"model": "llama3.1", "created_at": "2024-07-22T20:33:28Z", "message": {"role": "assistant",
        "content": "", "thinking": "Hmm.", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "Oslo"}}}]},
        "done_reason": "stop", "done": true, "prompt_eval_count": 12, "eval_count": 7});
    let whole = ollama::to_openai(answer.to_string().as_bytes(), "llama3.1", "chatcmpl-fixed", 1_700_000_000).unwrap();
    insta::assert_json_snapshot!("response_tool_call", wire(whole));

    let lines = [
        json!({"model": "llama3.1", "message": {"role": "assistant", "content": "", "thinking": "Let me see."}, "done": false}),
        json!({"model": "llama3.1", "message": {"role": "assistant", "content": "It is"}, "done": false}),
        json!({"model": "llama3.1", "message": {"role": "assistant", "content": " sunny."}, "done": false}),
        json!({"model": "llama3.1", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "length",
            "prompt_eval_count": 9, "eval_count": 3}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let meta = StreamMeta { id: "chatcmpl-fixed".into(), created: 1_700_000_000, model: "llama3.1".into() };
    // Cut at an awkward place: in the middle of a line.
    let (first, second) = text.as_bytes().split_at(text.len() / 2 + 3);
    let mut decoder = StreamDecoder::new(meta);
    let mut chunks = wires(decoder.feed(first).unwrap());
    chunks.extend(wires(decoder.feed(second).unwrap()));
    chunks.extend(wires(decoder.finish().unwrap()));
    insta::assert_json_snapshot!("stream_thinking_then_text", chunks);
}

// ---------------------------------------------------------------------------------------------
// The fake itself

async fn post_fake(fake: &FakeOllama, path: &str, body: &Value) -> (u16, String, String) {
    let response =
        reqwest::Client::new().post(format!("{}{path}", fake.base_url)).body(body.to_string()).send().await.unwrap();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (response.status().as_u16(), content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn the_fake_speaks_ollamas_wire_format() {
    let fake = FakeOllama::start().await;
    let hello = json!({"model": "llama3.1", "messages": [{"role": "user", "content": "hello there"}]});
    // No `stream: false`: a stream of NDJSON lines, the last one done with the counts.
    let (status, content_type, text) = post_fake(&fake, "/api/chat", &hello).await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 3, "{text}");
    let last = lines.last().unwrap();
    assert_eq!((last["done"].as_bool(), last["eval_count"].as_u64()), (Some(true), Some(3)));

    let mut string_arguments = hello.clone();
    string_arguments["messages"] = json!([{"role": "assistant", "content": "",
        "tool_calls": [{"function": {"name": "f", "arguments": "{\"x\": 1}"}}]}]);
    let refused = [
        (json!({"model": "missing-x", "messages": []}), 404, "model \"missing-x\" not found, try pulling it first"),
        (json!({"messages": []}), 400, "model is required"),
        (string_arguments, 400, "cannot unmarshal string"),
        (
            json!({"model": "llama3.1", "stream": false, "messages": [{"role": "user", "content": "x", "images": ["%%"]}]}),
            400,
            "illegal base64",
        ),
    ];
    for (body, status, message) in refused {
        let (got, _, text) = post_fake(&fake, "/api/chat", &body).await;
        assert_eq!(got, status, "{body} -> {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert!(error["error"].as_str().unwrap().contains(message), "{text}");
    }
    let (status, _, text) = post_fake(&fake, "/v1/chat/completions", &hello).await;
    assert_eq!((status, text.as_str()), (404, "404 page not found"));
    assert_eq!(fake.requests().len(), 6, "every request is recorded, refused ones too");
    assert!(fake.requests().iter().all(|r: &Recorded| !r.body.is_empty()));
}
