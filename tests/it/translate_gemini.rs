//! The Gemini translation's exact wire shapes (insta snapshots): OpenAI chat requests to
//! `generateContent` bodies, `GenerateContentResponse`s and `alt=sse` streams back to OpenAI,
//! errors, and embeddings. Pure functions only: no network.

use crate::support::repo_root;
use axum::http::StatusCode;
use base64::Engine as _;
use ferrolite::api::openai::{ChatRequest, EmbeddingRequest};
use ferrolite::manifest::LitellmParams;
use ferrolite::providers::auth;
use ferrolite::providers::deployment::{Deployment, Secret};
use ferrolite::providers::gemini::{self, StreamDecoder};
use ferrolite::providers::translate::{ChatProvider, ChunkDecoder, StreamMeta};
use ferrolite::providers::Provider;
use serde_json::{json, Value};

const KEY: &str = "AIzaSy-test-key-0123456789";
const ID: &str = "chatcmpl-gemini-fixed";
const CREATED: u64 = 1_700_000_000;

fn deployment(upstream_model: &str) -> Deployment {
    Deployment {
        id: "gemini/0".into(),
        model_name: "gemini".into(),
        provider: Provider::Gemini,
        upstream_model: upstream_model.into(),
        api_base: Some(gemini::DEFAULT_API_BASE.into()),
        public_only: false,
        api_key: Some(Secret::new(KEY.into())),
        api_version: None,
        aws: None,
        vertex: None,
        mock_response: None,
        chat_only: false,
        params: LitellmParams { model: format!("gemini/{upstream_model}"), ..LitellmParams::default() },
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

fn body_of(body: Value) -> Value {
    let req = chat(body);
    crate::support::wire(
        gemini::generate_content_body(&req, "gemini-1.5-pro").unwrap_or_else(|e| panic!("translation failed: {e}")),
    )
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"],
            "additionalProperties": false
        }
    }})
}

/// Representative OpenAI requests, each snapshotted as the `generateContent` body it becomes.
fn request_cases() -> Vec<(&'static str, Value)> {
    vec![
        ("plain", json!({"model": "gemini", "messages": [{"role": "user", "content": "Hello!"}]})),
        (
            "system",
            json!({"model": "gemini", "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello!"}
            ]}),
        ),
        (
            "multi_turn_merged",
            json!({"model": "gemini", "messages": [
                {"role": "user", "content": "Hi."},
                {"role": "user", "content": [{"type": "text", "text": "Are you there?"}]},
                {"role": "assistant", "content": "Yes."},
                {"role": "assistant", "content": "How can I help?"},
                {"role": "user", "content": "Tell me a joke."}
            ]}),
        ),
        (
            "tools",
            json!({"model": "gemini", "tool_choice": "auto", "tools": [
                weather_tool(),
                {"type": "function", "function": {"name": "get_time", "description": "The time now.", "parameters": {"type": "object", "properties": {}}}}
            ], "messages": [{"role": "user", "content": "What's the weather in Paris?"}]}),
        ),
        (
            "tool_choice_named",
            json!({"model": "gemini", "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "messages": [{"role": "user", "content": "Paris?"}]}),
        ),
        (
            "tool_choice_required",
            json!({"model": "gemini", "tools": [weather_tool()], "tool_choice": "required",
                "messages": [{"role": "user", "content": "Paris?"}]}),
        ),
        (
            "tool_results",
            json!({"model": "gemini", "tools": [weather_tool()], "messages": [
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "{\"temperature\": 21, \"unit\": \"celsius\"}"},
                {"role": "user", "content": "Should I take a coat?"}
            ]}),
        ),
        (
            "parallel_tool_calls",
            json!({"model": "gemini", "tools": [weather_tool()], "messages": [
                {"role": "user", "content": "Weather in Paris and Oslo?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Oslo\",\"unit\":\"celsius\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "{\"sky\": \"snow\", \"temperature\": -3}"}]}
            ]}),
        ),
        (
            "images",
            json!({"model": "gemini", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cats/tabby.WEBP?size=large", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/render"}}
            ]}]}),
        ),
        (
            "stop",
            json!({"model": "gemini", "stop": ["\n\n", "END"], "messages": [{"role": "user", "content": "Count to ten."}]}),
        ),
        (
            "stop_string",
            json!({"model": "gemini", "stop": "END", "messages": [{"role": "user", "content": "Count to ten."}]}),
        ),
        (
            "json_schema",
            json!({"model": "gemini", "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "nickname": {"type": ["string", "null"]},
                    "additionalProperties": {"type": "string", "description": "a property that happens to be named like the keyword"},
                    "landmarks": {"type": "array", "items": {"type": "object", "properties": {"title": {"type": "string"}}, "additionalProperties": false}}
                },
                "required": ["name"],
                "additionalProperties": false
            }}}, "messages": [{"role": "user", "content": "Describe Paris."}]}),
        ),
        (
            "json_object",
            json!({"model": "gemini", "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "A JSON list of colours."}]}),
        ),
        (
            "sampling",
            json!({"model": "gemini", "temperature": 0.2, "top_p": 0.9, "max_tokens": 256, "presence_penalty": 0.5, "frequency_penalty": -0.25,
                "messages": [{"role": "user", "content": "Write a haiku."}]}),
        ),
        (
            "max_completion_tokens_wins",
            json!({"model": "gemini", "max_tokens": 100, "max_completion_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        (
            "stream_include_usage",
            json!({"model": "gemini", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Stream please."}]}),
        ),
        (
            "n_and_seed",
            json!({"model": "gemini", "n": 2, "seed": 42, "messages": [{"role": "user", "content": "Pick a number."}]}),
        ),
    ]
}

#[test]
fn requests_translate_to_generate_content_bodies() {
    let cases = request_cases();
    assert!(cases.len() >= 12);
    for (name, request) in cases {
        insta::assert_json_snapshot!(format!("request_{name}"), body_of(request));
    }
}

#[test]
fn tool_choice_modes() {
    let with_choice = |choice: Value| {
        body_of(
            json!({"model": "g", "tools": [weather_tool()], "tool_choice": choice, "messages": [{"role": "user", "content": "x"}]}),
        )
    };
    assert_eq!(with_choice(json!("auto"))["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
    assert_eq!(with_choice(json!("none"))["toolConfig"], json!({"functionCallingConfig": {"mode": "NONE"}}));
    assert_eq!(with_choice(json!("required"))["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    let err = gemini::generate_content_body(
        &chat(json!({"model": "g", "tool_choice": "sometimes", "messages": [{"role": "user", "content": "x"}]})),
        "gemini-1.5-pro",
    )
    .unwrap_err();
    assert_eq!((err.status, err.param.as_deref()), (StatusCode::BAD_REQUEST, Some("tool_choice")));
}

#[test]
fn invalid_conversations_are_refused_naming_the_field() {
    let refuse = |body: Value| gemini::generate_content_body(&chat(body), "gemini-1.5-pro").unwrap_err();
    let err = refuse(json!({"model": "g", "messages": [{"role": "narrator", "content": "x"}]}));
    assert_eq!(err.param.as_deref(), Some("messages[0].role"), "{err}");
    let err = refuse(json!({"model": "g", "messages": [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "call_missing", "content": "42"}
    ]}));
    assert_eq!(err.param.as_deref(), Some("messages[1].tool_call_id"), "{err}");
    assert!(err.message.contains("call_missing"), "{err}");
    let err = refuse(json!({"model": "g", "messages": [{"role": "system", "content": "only a system prompt"}]}));
    assert_eq!(err.param.as_deref(), Some("messages"), "{err}");
    let err = refuse(json!({"model": "g", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}
    ]}));
    assert_eq!(err.param.as_deref(), Some("messages[0].tool_calls[0].function.arguments"), "{err}");
    let err = refuse(
        json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}]}),
    );
    assert_eq!(err.param.as_deref(), Some("messages[0].content[0].type"), "{err}");
}

#[test]
fn mime_types_are_guessed_from_the_url_path() {
    assert_eq!(gemini::guess_mime_type("https://x.test/a/b.png"), "image/png");
    assert_eq!(gemini::guess_mime_type("https://x.test/a/b.JPG#frag"), "image/jpeg");
    assert_eq!(gemini::guess_mime_type("https://x.test/a/b.gif?v=1.2"), "image/gif");
    assert_eq!(gemini::guess_mime_type("https://x.test/doc.pdf"), "application/pdf");
    assert_eq!(gemini::guess_mime_type("https://x.test/image"), "image/jpeg");
}

#[test]
fn the_key_goes_in_a_header_never_the_url() {
    let d = deployment("gemini-1.5-pro");
    let url = format!("{}/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse", gemini::DEFAULT_API_BASE);
    let req = chat(json!({"model": "gemini", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}));
    let upstream = auth::authorize(gemini::PROVIDER.chat_request(&req, &d, url.clone(), true).unwrap(), &d).unwrap();
    assert_eq!(upstream.method, reqwest::Method::POST);
    assert_eq!(upstream.url, url, "the URL is the caller's, untouched");
    assert!(!upstream.url.contains(KEY) && !upstream.url.contains("key="));
    let header = |name: &str| upstream.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("x-goog-api-key"), Some(KEY));
    assert_eq!(header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(body, body_of(json!({"model": "gemini", "messages": [{"role": "user", "content": "Hi"}]})));
    for param in ["temperature", "tools", "response_format", "seed", "n", "stop", "max_completion_tokens"] {
        assert!(ferrolite::providers::Provider::Gemini.spec().chat_params.contains(&param), "{param}");
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures").join(name)).unwrap()
}

fn to_openai(body: Value) -> Value {
    crate::support::wire(gemini::to_openai(body.to_string().as_bytes(), "gemini-1.5-pro", ID, CREATED).unwrap())
}

#[test]
fn response_fixture_translates() {
    let body: Value = serde_json::from_slice(&fixture("gemini-generate-content.json")).unwrap();
    let answer = to_openai(body);
    assert_eq!(answer["choices"][0]["message"]["content"], "Hallo from Gemini");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    insta::assert_json_snapshot!("response_fixture", answer);
}

#[test]
fn function_call_response_translates() {
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me check both cities."},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"location": "Oslo", "unit": "celsius"}}}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "totalTokenCount": 52, "cachedContentTokenCount": 32},
        "modelVersion": "gemini-1.5-pro-002"
    });
    let answer = to_openai(body);
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let calls = answer["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["id"].as_str().unwrap().starts_with("call_")));
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
    insta::assert_json_snapshot!("response_function_call", answer);

    let only_call = to_openai(json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_time", "args": {}}}
    ]}, "finishReason": "STOP"}]}));
    assert_eq!(only_call["choices"][0]["message"]["content"], Value::Null, "no text: content is null as OpenAI has it");
    assert_eq!(only_call["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
}

#[test]
fn safety_blocked_responses_translate() {
    let blocked_prompt = json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}
    });
    let answer = to_openai(blocked_prompt);
    assert_eq!(answer["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(answer["choices"][0]["message"]["content"], "");
    insta::assert_json_snapshot!("response_prompt_blocked", answer);

    for (reason, expected) in [
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MAX_TOKENS", "length"),
        ("STOP", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ] {
        let answer =
            to_openai(json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": reason}]}));
        assert_eq!(answer["choices"][0]["finish_reason"], expected, "{reason}");
    }
    let err = gemini::to_openai(b"{}", "m", ID, CREATED).unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_GATEWAY);
}

#[test]
fn candidates_become_choices_and_thoughts_their_reasoning() {
    let answer = to_openai(json!({
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "thinking...", "thought": true}, {"text": "One"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"role": "model", "parts": [{"text": "Two"}]}, "finishReason": "STOP", "index": 1}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 5, "totalTokenCount": 10}
    }));
    assert_eq!(answer["choices"][0]["message"]["content"], "One");
    assert_eq!(answer["choices"][0]["message"]["reasoning_content"], "thinking...");
    assert_eq!(answer["choices"][0]["message"].get("thinking_blocks"), None, "nothing signed to hand back");
    assert_eq!(answer["choices"][1]["message"]["content"], "Two");
    assert_eq!(answer["choices"][1]["index"], 1);
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 5}})
    );
}

fn meta() -> StreamMeta {
    StreamMeta { id: ID.into(), created: CREATED, model: "gemini-1.5-pro".into() }
}

/// Feeds `bytes` in pieces of `piece` bytes; returns every chunk and how many came out before
/// `finish`.
fn decode(bytes: &[u8], piece: usize) -> (Vec<Value>, usize) {
    let mut decoder = StreamDecoder::new(meta());
    let mut chunks = Vec::new();
    for part in bytes.chunks(piece) {
        chunks.extend(crate::support::wires(decoder.feed(part).unwrap()));
    }
    let before_finish = chunks.len();
    chunks.extend(crate::support::wires(decoder.finish().unwrap()));
    (chunks, before_finish)
}

#[test]
fn stream_fixture_translates_the_same_in_any_pieces() {
    let sse = fixture("gemini-stream-generate-content.sse");
    let (whole, _) = decode(&sse, sse.len());
    let (pieces, before_finish) = decode(&sse, 7);
    assert_eq!(whole, pieces, "7-byte pieces make the same chunks as the whole body");
    assert!(before_finish >= 3, "chunks come out as their events complete, not at the end: {before_finish}");
    // role once, text deltas, finish_reason, then the usage chunk.
    assert_eq!(whole[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(whole[1..].iter().all(|c| c["choices"][0]["delta"].get("role").is_none()));
    let text: String =
        whole.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().join("");
    assert_eq!(text, "Hallo from Gemini");
    let last = whole.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}));
    insta::assert_json_snapshot!("stream_fixture", whole);
}

fn sse_of(events: &[Value]) -> Vec<u8> {
    events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect::<String>().into_bytes()
}

#[test]
fn stream_function_calls_are_whole_tool_call_deltas() {
    let sse = sse_of(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking."}]}, "index": 0}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"location": "Oslo"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 10, "totalTokenCount": 30}}),
    ]);
    let (whole, _) = decode(&sse, sse.len());
    let (pieces, _) = decode(&sse, 7);
    assert_eq!(whole, pieces);
    let calls: Vec<&Value> = whole.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0]["index"].as_u64(), calls[1]["index"].as_u64()), (Some(0), Some(1)));
    assert_eq!(calls[1]["function"]["arguments"], "{\"location\":\"Oslo\"}");
    let finish: Vec<&Value> = whole.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    insta::assert_json_snapshot!("stream_function_call", whole);
}

#[test]
fn stream_blocks_errors_and_unfinished_ends() {
    // A prompt blocked outright: one choice, finished by the content filter.
    let (chunks, _) = decode(&sse_of(&[json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})]), 7);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));

    // A body that ends without a finishReason (and without a final blank line) still finishes.
    let mut decoder = StreamDecoder::new(meta());
    let chunks = decoder.feed(b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}]}}]}").unwrap();
    assert!(chunks.is_empty());
    let chunks = crate::support::wires(decoder.finish().unwrap());
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "Hi"}));
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");

    // An error event mid-stream ends it with the upstream's error.
    let mut decoder = StreamDecoder::new(meta());
    let err = decoder
        .feed(&sse_of(&[
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
        ]))
        .unwrap_err();
    assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((err.message.as_str(), err.code.as_deref()), ("gemini: The model is overloaded.", Some("UNAVAILABLE")));
}

#[test]
fn upstream_errors_keep_status_and_google_status_code() {
    let d = deployment("gemini-1.5-pro");
    let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}});
    let err = gemini::PROVIDER.upstream_error(StatusCode::BAD_REQUEST, body.to_string().as_bytes(), &d);
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
    assert_eq!(err.kind, "invalid_request_error");
    assert_eq!(err.message, "gemini: API key not valid. Please pass a valid API key.");
    assert_eq!(err.code.as_deref(), Some("INVALID_ARGUMENT"));

    let quoting =
        json!({"error": {"code": 403, "message": format!("key {KEY} is suspended"), "status": "PERMISSION_DENIED"}});
    let err = gemini::PROVIDER.upstream_error(StatusCode::FORBIDDEN, quoting.to_string().as_bytes(), &d);
    let err = auth::scrub(err, &d);
    assert_eq!(err.kind, "permission_error");
    assert!(!err.message.contains(KEY), "the key is never echoed: {}", err.message);

    let err = gemini::PROVIDER.upstream_error(StatusCode::TOO_MANY_REQUESTS, b"slow down", &d);
    assert_eq!((err.kind, err.message.as_str()), ("rate_limit_error", "gemini: slow down"));

    // A stream called without alt=sse fails with a list of one error.
    let listed = json!([{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]);
    let err = gemini::PROVIDER.upstream_error(StatusCode::SERVICE_UNAVAILABLE, listed.to_string().as_bytes(), &d);
    assert_eq!((err.message.as_str(), err.code.as_deref()), ("gemini: The model is overloaded.", Some("UNAVAILABLE")));

    // A body of another shape still gives its text.
    let odd = br#"{"error": "quota exhausted"}"#;
    let err = gemini::PROVIDER.upstream_error(StatusCode::TOO_MANY_REQUESTS, odd, &d);
    assert_eq!((err.message.as_str(), err.code), (r#"gemini: {"error": "quota exhausted"}"#, None));
}

#[test]
fn answers_that_are_not_generate_content_responses_are_bad_gateways() {
    let d = deployment("gemini-1.5-pro");
    for (body, said) in [
        (&b"not json"[..], "is not JSON"),
        (br#"{"candidates": {"text": "not a list"}}"#, "is not of the expected shape"),
        (br#"{"candidates": [{"content": {"parts": [{"text": 42}]}}]}"#, "is not of the expected shape"),
    ] {
        let err = gemini::PROVIDER.chat_response(body, &d).unwrap_err();
        assert_eq!((err.status, err.code.as_deref()), (StatusCode::BAD_GATEWAY, Some("bad_upstream_response")));
        assert!(err.message.contains(said), "{}", err.message);
    }
    let mut decoder = StreamDecoder::new(meta());
    let err = decoder.feed(b"data: {\"candidates\": 7}\n\n").unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_GATEWAY);
    assert!(err.message.starts_with("gemini: a stream event"), "{}", err.message);
}

#[test]
fn escaped_text_and_arguments_come_through() {
    let body = br#"{"candidates": [{"content": {"parts": [{"text": "line\none \"quoted\" \u00e9"},
        {"functionCall": {"name": "f", "args": null}}]}, "finishReason": "STOP"}]}"#;
    let answer = crate::support::wire(gemini::to_openai(body, "m", ID, CREATED).unwrap());
    assert_eq!(answer["choices"][0]["message"]["content"], "line\none \"quoted\" \u{e9}");
    assert_eq!(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn embeddings_translate_both_ways() {
    let d = deployment("text-embedding-004");
    let req: EmbeddingRequest = serde_json::from_value(
        json!({"model": "gemini-embed", "input": ["hello", "world"], "dimensions": 3, "encoding_format": "base64"}),
    )
    .unwrap();
    let url = format!("{}/v1beta/models/text-embedding-004:batchEmbedContents", gemini::DEFAULT_API_BASE);
    let upstream = auth::authorize(gemini::embedding_request(&req, &d, url.clone()).unwrap(), &d).unwrap();
    assert_eq!(upstream.url, url);
    assert!(upstream.headers.contains(&("x-goog-api-key".to_owned(), KEY.to_owned())));
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    insta::assert_json_snapshot!("embedding_request", body);

    let answer = json!({"embeddings": [{"values": [0.5, -0.25, 1.0]}, {"values": [0.0, 0.125, -2.0]}]});
    let out = gemini::embedding_response(answer.to_string().as_bytes(), &req, &d).unwrap();
    insta::assert_json_snapshot!("embedding_response_base64", out);
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(out["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let floats: Vec<f32> = decoded.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(floats, vec![0.5, -0.25, 1.0]);

    let float_req: EmbeddingRequest =
        serde_json::from_value(json!({"model": "gemini-embed", "input": ["hello", "world"]})).unwrap();
    let out = gemini::embedding_response(answer.to_string().as_bytes(), &float_req, &d).unwrap();
    assert_eq!(out["data"][1]["embedding"], json!([0.0, 0.125, -2.0]));
    assert_eq!(out["model"], "text-embedding-004");
    assert!(out["usage"]["prompt_tokens"].as_u64().unwrap() >= 2);

    let short = json!({"embeddings": [{"values": [0.5]}]});
    let err = gemini::embedding_response(short.to_string().as_bytes(), &float_req, &d).unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_GATEWAY);
    let bad_format: EmbeddingRequest =
        serde_json::from_value(json!({"model": "e", "input": "x", "encoding_format": "int8"})).unwrap();
    let err = gemini::embedding_request(&bad_format, &d, "http://x".into()).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("encoding_format"));
}

// ---------------------------------------------------------------------------------------------
// Thinking

fn thinking_config(model: &str, effort: &str) -> Value {
    let req = chat(json!({"model": "g", "reasoning_effort": effort, "messages": [{"role": "user", "content": "Hi"}]}));
    let body = crate::support::wire(gemini::generate_content_body(&req, model).unwrap());
    body["generationConfig"]["thinkingConfig"].clone()
}

#[test]
fn reasoning_effort_becomes_a_thinking_budget_or_level() {
    let budget = |b: u64| json!({"thinkingBudget": b, "includeThoughts": true});
    assert_eq!(thinking_config("gemini-2.5-flash", "minimal"), budget(512));
    assert_eq!(thinking_config("gemini-2.5-flash", "low"), budget(1024));
    assert_eq!(thinking_config("gemini-2.5-pro", "medium"), budget(2048));
    assert_eq!(thinking_config("gemini-2.5-pro", "high"), budget(4096));
    assert_eq!(thinking_config("gemini-2.5-flash", "none"), json!({"thinkingBudget": 0, "includeThoughts": false}));
    let level = |l: &str| json!({"thinkingLevel": l, "includeThoughts": true});
    assert_eq!(thinking_config("gemini-3-pro-preview", "minimal"), level("low"));
    assert_eq!(thinking_config("gemini-3-pro-preview", "medium"), level("high"));
    assert_eq!(thinking_config("gemini-3-flash-preview", "minimal"), level("minimal"));
    assert_eq!(thinking_config("gemini-3-flash-preview", "medium"), level("medium"));
    assert_eq!(
        thinking_config("gemini-3-pro-preview", "none"),
        json!({"thinkingLevel": "low", "includeThoughts": false})
    );
    // litellm's `thinking` param, as Anthropic spells it.
    let req = chat(json!({"model": "g", "thinking": {"type": "enabled", "budget_tokens": 3000},
        "messages": [{"role": "user", "content": "Hi"}]}));
    let body = crate::support::wire(gemini::generate_content_body(&req, "gemini-2.5-pro").unwrap());
    assert_eq!(body["generationConfig"]["thinkingConfig"], budget(3000));
    let e = gemini::generate_content_body(
        &chat(json!({"model": "g", "reasoning_effort": "max", "messages": [{"role": "user", "content": "Hi"}]})),
        "gemini-2.5-pro",
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn thought_signatures_go_back_on_the_first_call_or_the_last_text() {
    let req = chat(json!({"model": "g", "reasoning_effort": "low", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.",
         "thinking_blocks": [{"type": "thinking", "thinking": "Two cities.", "signature": "c2lnLTE="},
                             {"type": "redacted_thinking", "data": "not Gemini's"}],
         "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "25C"},
        {"role": "assistant", "content": "Mild in both.", "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "c2lnLTI="}]},
        {"role": "user", "content": "Thanks"}
    ]}));
    let body = crate::support::wire(gemini::generate_content_body(&req, "gemini-2.5-flash").unwrap());
    insta::assert_json_snapshot!("thinking_request_round_trip", body);
    let parts = &body["contents"][1]["parts"];
    assert_eq!(parts[0], json!({"text": "Checking."}));
    assert_eq!(parts[1]["thoughtSignature"], "c2lnLTE=");
    assert_eq!(parts[2].get("thoughtSignature"), None, "only the first call of a step is signed");
    assert_eq!(body["contents"][3]["parts"], json!([{"text": "Mild in both.", "thoughtSignature": "c2lnLTI="}]));
}

#[test]
fn thoughts_and_signatures_come_back_as_reasoning_and_thinking_blocks() {
    let answer = to_openai(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "The user wants", "thought": true},
            {"text": " the weather.", "thought": true},
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2lnLTE="}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 5, "thoughtsTokenCount": 12, "totalTokenCount": 25}
    }));
    insta::assert_json_snapshot!("thinking_answer", answer);
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "The user wants the weather.");
    assert_eq!(
        message["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "The user wants the weather.", "signature": "c2lnLTE="}])
    );
    assert_eq!(answer["usage"]["completion_tokens_details"]["reasoning_tokens"], 12);
}

#[test]
fn thoughts_stream_as_reasoning_deltas_and_signatures_before_their_part() {
    let sse = sse_of(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "The user wants", "thought": true}]}, "index": 0}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " the weather.", "thought": true}]}, "index": 0}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2lnLTE="}]},
            "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 5, "thoughtsTokenCount": 12, "totalTokenCount": 25}}),
    ]);
    let (chunks, _) = decode(&sse, 11);
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(deltas[0]["reasoning_content"], "The user wants");
    assert_eq!(deltas[1]["reasoning_content"], " the weather.");
    assert_eq!(deltas[2], &json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "c2lnLTE="}]}));
    assert_eq!(deltas[3]["tool_calls"][0]["function"]["name"], "get_weather");
    insta::assert_json_snapshot!("thinking_stream", chunks);
}

#[test]
fn gemini_3_calls_without_a_signature_are_vouched_for() {
    let req = chat(json!({"model": "g", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}
    ]}));
    let signature = |model: &str| {
        let body = crate::support::wire(gemini::generate_content_body(&req, model).unwrap());
        body["contents"][1]["parts"][0].get("thoughtSignature").cloned()
    };
    assert_eq!(signature("gemini-3-pro-preview"), Some(json!(gemini::UNSIGNED_CALL_SIGNATURE)));
    assert_eq!(signature("gemini-2.5-flash"), None, "only Gemini 3 insists");
}
