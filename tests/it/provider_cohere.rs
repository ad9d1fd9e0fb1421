//! The Cohere provider: ferrolite in front of tests/it/fake_cohere.rs (Cohere's v2 API) for
//! chat (whole, streamed, tools), embeddings and rerank on both rerank routes, with the fake's
//! log showing what reached the upstream; the translations' exact shapes as insta snapshots.

use crate::fake_cohere::FakeCohere;
use crate::support::{sse_data, wire, wires, TestServer};
use ferrolite::api::cohere::RerankQuery;
use ferrolite::api::openai::ChatRequest;
use ferrolite::manifest::LitellmParams;
use ferrolite::providers::cohere::{self, StreamDecoder};
use ferrolite::providers::deployment::{Deployment, Secret};
use ferrolite::providers::translate::{ChunkDecoder, StreamMeta};
use ferrolite::providers::Provider;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const KEY: &str = "co-fake-key-0042";

fn manifest(dir: &Path, api_base: &str) -> PathBuf {
    let deployment = |name: &str, model: &str, key: &str| json!({"model_name": name, "litellm_params": {"model": model, "api_base": api_base, "api_key": key}});
    let doc = json!({
        "name": "Cohere upstream", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": [
            deployment("command", "command-r-plus", KEY),
            deployment("embed", "cohere/embed-english-v3.0", KEY),
            deployment("rerank", "rerank-v3.5", KEY),
            deployment("bad-key", "cohere/command-r", "co-wrong-key-9999"),
            deployment("missing", "cohere_chat/command-missing", KEY),
        ]}
    });
    let path = dir.join("cohere.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

async fn setup() -> (FakeCohere, TestServer, tempfile::TempDir) {
    let fake = FakeCohere::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url)]).await;
    (fake, server, dir)
}

fn pinned(mut answer: Value) -> Value {
    answer["id"] = json!("chatcmpl-pinned");
    answer["created"] = json!(0);
    answer
}

fn chat_text(sse_body: &str) -> (Vec<Value>, String) {
    let data = sse_data(sse_body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{sse_body}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    (chunks, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_chats_streams_calls_tools_and_embeds_through_cohere() {
    let (fake, server, _dir) = setup().await;
    crate::python_sdk::run_script("openai_sdk_cohere.py", &server.demo_url("/v1"), &server.token).await;
    for r in fake.requests() {
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()), "{}", r.path);
    }
}

#[tokio::test]
async fn a_chat_reaches_v2_chat_with_cohere_names_and_comes_back_with_its_tokens() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "temperature": 0.3, "top_p": 0.8, "max_completion_tokens": 100, "stop": ["END"],
                "seed": 3, "safety_mode": "CONTEXTUAL", "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Describe this"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}]}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    insta::assert_json_snapshot!("chat_answer", pinned(body));
    insta::assert_json_snapshot!("chat_upstream_request", fake.last("/v2/chat").unwrap().json());
}

#[tokio::test]
async fn a_stream_of_cohere_events_arrives_as_openai_chunks_with_usage_last() {
    let (_fake, server, _dir) = setup().await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 4,
                "messages": [{"role": "user", "content": "Tell me a long story please"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (chunks, text) = chat_text(&response.text().await.unwrap());
    assert_eq!(text, "echo: Tell me a");
    let finishes: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0].get("finish_reason")).filter(|f| !f.is_null()).collect();
    assert_eq!(finishes, [&json!("length")]);
    assert_eq!(
        chunks.last().unwrap()["usage"],
        json!({"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17})
    );
}

#[tokio::test]
async fn tool_calls_keep_cohere_ids_and_their_results_go_back_by_id() {
    let (fake, server, _dir) = setup().await;
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    ]);
    let question = json!({"role": "user", "content": "What is the weather in Oslo?"});
    let (status, called) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "tools": tools, "messages": [question]}),
        )
        .await;
    assert_eq!(status, 200, "{called}");
    let message = called["choices"][0]["message"].clone();
    assert_eq!(called["choices"][0]["finish_reason"], "tool_calls");
    let id = message["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("get_weather_"), "Cohere's own id: {id}");
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{\"location\":\"Oslo\"}");
    let (status, answered) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "tools": tools, "messages": [
                question, message, {"role": "tool", "tool_call_id": id, "content": "12 degrees"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["choices"][0]["message"]["content"], "the tool said: 12 degrees");
    let mut sent = fake.last("/v2/chat").unwrap().json();
    sent["messages"][1]["tool_calls"][0]["id"] = json!("get_weather_N");
    sent["messages"][2]["tool_call_id"] = json!("get_weather_N");
    insta::assert_json_snapshot!("tool_result_upstream_request", sent);

    // Streamed: the call's head, then its arguments in pieces that join to the JSON.
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "stream": true, "tools": tools, "messages": [question]}),
        )
        .await;
    let (chunks, _) = chat_text(&response.text().await.unwrap());
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert!(calls.len() >= 3, "{chunks:#?}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    assert_eq!(arguments, "{\"location\":\"Oslo\"}");

    // A named tool_choice: that tool alone, required.
    let (status, forced) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_time"}},
                "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_time");
    let sent = fake.last("/v2/chat").unwrap().json();
    assert_eq!((sent["tool_choice"].as_str(), sent["tools"].as_array().map(Vec::len)), (Some("REQUIRED"), Some(1)));
}

#[tokio::test]
async fn embeddings_go_through_v2_embed_with_an_input_type() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(&server.demo_url("/v1/embeddings"), &json!({"model": "embed", "input": ["the quick fox", "hello"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][1]["embedding"].as_array().unwrap().len(), crate::fake_cohere::EMBEDDING_DIMENSIONS);
    assert_eq!(body["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));
    assert_eq!(
        fake.last("/v2/embed").unwrap().json(),
        json!({"model": "embed-english-v3.0", "texts": ["the quick fox", "hello"], "input_type": "search_document",
            "embedding_types": ["float"]})
    );
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/embeddings"),
            &json!({"model": "embed", "input": "a query", "input_type": "search_query", "dimensions": 256, "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["embedding"].as_str().map(str::len), Some(1368), "base64 of 256 f32s");
    let sent = fake.last("/v2/embed").unwrap().json();
    assert_eq!((sent["input_type"].as_str(), sent["output_dimension"].as_u64()), (Some("search_query"), Some(256)));
}

#[tokio::test]
async fn rerank_is_served_on_both_routes_through_v2_rerank() {
    let (fake, server, _dir) = setup().await;
    let documents = json!([
        "Carson City is the capital of Nevada.",
        {"title": "Washington", "text": "Washington, D.C. is the capital of the United States."},
        "Capital punishment exists in the United States."
    ]);
    for route in ["/v1/rerank", "/v2/rerank", "/rerank"] {
        let (status, body) = server
            .post_json(
                &server.demo_url(route),
                &json!({"model": "rerank", "query": "capital of the United States", "documents": documents, "top_n": 2,
                    "return_documents": true}),
            )
            .await;
        assert_eq!(status, 200, "{route}: {body}");
        let indexes: Vec<u64> =
            body["results"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, [1, 2], "{route}: {body}");
        assert_eq!(body["results"][0]["document"]["title"], "Washington", "{route}: the document as it was sent");
        assert_eq!(body["results"][1]["document"], json!({"text": "Capital punishment exists in the United States."}));
        assert!(body["id"].is_string() && body["meta"]["billed_units"]["search_units"] == 1, "{body}");
    }
    insta::assert_json_snapshot!("rerank_upstream_request", fake.last("/v2/rerank").unwrap().json());
}

#[tokio::test]
async fn cohere_errors_are_openai_errors_with_its_status() {
    let (_fake, server, _dir) = setup().await;
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = server.post_json(&server.demo_url("/v1/chat/completions"), &chat("bad-key")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["message"], "cohere: invalid api token");
    assert!(!body.to_string().contains("co-wrong-key"), "{body}");
    let (status, body) = server.post_json(&server.demo_url("/v1/chat/completions"), &chat("missing")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("cohere: model 'command-missing' not found"),
        "{body}"
    );
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "command", "messages": [{"role": "tool", "content": "orphan"}]}),
        )
        .await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("messages[0].tool_call_id")), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Pure translations

fn deployment() -> Deployment {
    Deployment {
        id: "command/0".into(),
        model_name: "command".into(),
        provider: Provider::Cohere,
        upstream_model: "command-a-03-2025".into(),
        api_base: Some(cohere::DEFAULT_API_BASE.into()),
        public_only: false,
        api_key: Some(Secret::new(KEY.into())),
        api_version: None,
        aws: None,
        vertex: None,
        mock_response: None,
        chat_only: false,
        params: LitellmParams { model: "cohere/command-a-03-2025".into(), ..LitellmParams::default() },
        model_info: None,
        credential_headers: Default::default(),
        id_header: Default::default(),
        upstream_model_json: Default::default(),
        extra_headers: Vec::new(),
        unavailable: None,
        catch_all: None,
    }
}

#[test]
fn chat_requests_become_v2_chat_bodies() {
    let d = deployment();
    let req: ChatRequest = serde_json::from_value(json!({"model": "command", "tool_choice": "none",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        "tools": [{"type": "function", "function": {"name": "f", "description": "F.", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "JSON."},
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "f_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "f_1", "content": "done"}
        ]}))
    .unwrap();
    insta::assert_json_snapshot!("request_tools_and_json", wire(cohere::chat_body(&req, &d, true).unwrap()));
    let query: RerankQuery =
        serde_json::from_value(json!({"model": "rerank", "query": "q", "rank_fields": ["title", "year"],
        "documents": [{"title": "A", "year": 1999, "body": "left out"}, "plain"]}))
        .unwrap();
    let upstream = cohere::rerank_request(&query, &d, "https://x/v2/rerank".into()).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&upstream.body).unwrap()["documents"],
        json!(["title: A\nyear: 1999", "plain"])
    );
}

#[test]
fn answers_and_streams_become_openai_shapes() {
    let answer = json!({"id": "x", "finish_reason": "TOOL_CALL", "message": {"role": "assistant",
        "content": [{"type": "thinking", "thinking": "Weather needs a tool."}],
        "tool_plan": "I will call get_weather.",
        "tool_calls": [{"id": "get_weather_7", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Oslo\"}"}}]},
        "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 9}, "tokens": {"input_tokens": 40, "output_tokens": 9}}});
    let whole =
        cohere::to_openai(answer.to_string().as_bytes(), "command-a-03-2025", "chatcmpl-fixed", 1_700_000_000).unwrap();
    insta::assert_json_snapshot!("response_tool_call", wire(whole));

    let events = [
        json!({"type": "message-start", "id": "x", "delta": {"message": {"role": "assistant", "content": [], "tool_calls": []}}}),
        json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hello"}}}}),
        json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": " there"}}}}),
        json!({"type": "content-end", "index": 0}),
        json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {"billed_units": {"input_tokens": 3.0, "output_tokens": 2.0}}}}),
    ];
    let text: String =
        events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect();
    let meta = StreamMeta { id: "chatcmpl-fixed".into(), created: 1_700_000_000, model: "command-a-03-2025".into() };
    let mut decoder = StreamDecoder::new(meta);
    let (a, b) = text.as_bytes().split_at(text.len() / 3);
    let mut chunks = wires(decoder.feed(a).unwrap());
    chunks.extend(wires(decoder.feed(b).unwrap()));
    chunks.extend(wires(decoder.finish().unwrap()));
    insta::assert_json_snapshot!("stream_text", chunks);
}

#[tokio::test]
async fn the_fake_refuses_what_cohere_refuses() {
    let fake = FakeCohere::start(KEY).await;
    let post = |path: &str, key: Option<&str>, body: Value| {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", fake.base_url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), serde_json::from_str::<Value>(&response.text().await.unwrap()).unwrap())
        }
    };
    let hello = json!({"model": "command-r", "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        ("/v2/chat", None, hello.clone(), 401, "no api key supplied"),
        ("/v2/chat", Some("nope"), hello.clone(), 401, "invalid api token"),
        (
            "/v2/chat",
            Some(KEY),
            json!({"model": "command-r", "top_p": 0.5, "messages": []}),
            400,
            "top_p is not a valid field",
        ),
        (
            "/v2/chat",
            Some(KEY),
            json!({"model": "command-r", "messages": [{"role": "tool", "tool_call_id": "x", "content": "y"}]}),
            400,
            "not found in previous tool calls",
        ),
        ("/v2/embed", Some(KEY), json!({"model": "embed-english-v3.0", "texts": ["a"]}), 400, "valid input_type"),
        (
            "/v2/rerank",
            Some(KEY),
            json!({"model": "rerank-v3.5", "query": "q", "documents": [{"text": "a"}]}),
            400,
            "list of strings",
        ),
        (
            "/v2/rerank",
            Some(KEY),
            json!({"model": "rerank-v3.5", "query": "q", "documents": ["a"], "return_documents": true}),
            400,
            "not a valid field",
        ),
        ("/v2/chat", Some(KEY), json!({"model": "command-missing", "messages": []}), 404, "not found"),
    ];
    for (path, key, body, status, message) in cases {
        let (got, answer) = post(path, key, body.clone()).await;
        assert_eq!(got, status, "{path} {body} -> {answer}");
        assert!(answer["message"].as_str().unwrap().contains(message), "{answer}");
        assert!(answer["id"].is_string(), "{answer}");
    }
    let (status, answer) = post("/v2/chat", Some(KEY), hello).await;
    assert_eq!((status, answer["message"]["content"][0]["text"].as_str()), (200, Some("echo: hi")));
    assert_eq!(answer["finish_reason"], "COMPLETE");
}
