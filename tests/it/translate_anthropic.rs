//! OpenAI chat <-> Anthropic Messages, without a network: insta snapshots of the request bodies
//! ferrolite sends, of what it makes of the fixture answers (tests/fixtures/anthropic-*), and of
//! the chunks its stream decoder emits, fed whole and in small pieces.

use ferrolite::api::openai::ChatRequest;
use ferrolite::apps::session::{Session, SessionSpec};
use ferrolite::manifest::Manifest;
use ferrolite::providers::anthropic::{self, StreamDecoder, PROVIDER, RESPONSE_FORMAT_TOOL};
use ferrolite::providers::translate::{ChatProvider, ChunkDecoder, StreamMeta};
use ferrolite::providers::Deployment;
use serde_json::{json, Value};

const KEY: &str = "sk-ant-test-0123456789abcdef";
const URL: &str = "https://api.anthropic.com/v1/messages";

struct Secrets;

impl ferrolite::apps::session::SecretSource for Secrets {
    fn env(&self, var: &str) -> Option<String> {
        (var == "ANTHROPIC_API_KEY").then(|| KEY.to_owned())
    }

    fn workspace_secret(&self, _key: &str) -> Option<String> {
        None
    }
}

/// A session with one deployment, `claude` = anthropic/claude-3-5-sonnet-20241022, its key
/// from the environment the way a manifest names it.
fn session() -> Session {
    session_of("claude-3-5-sonnet-20241022")
}

/// A session whose deployment `claude` is anthropic/`upstream_model`.
fn session_of(upstream_model: &str) -> Session {
    let manifest: Manifest = serde_json::from_value(json!({
        "name": "Anthropic", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "claude-app", "model_list": [{"model_name": "claude", "litellm_params": {
            "model": format!("anthropic/{upstream_model}"), "api_key": "os.environ/ANTHROPIC_API_KEY"
        }}]}
    }))
    .expect("a valid manifest");
    let spec = SessionSpec {
        id: "s1".into(),
        app_id: "app".into(),
        workspace: "default".into(),
        manifest: &manifest,
        created: 1_700_000_000,
        public_only: false,
        mcp_http: Default::default(),
    };
    Session::build(spec, &Secrets).expect("the session starts")
}

fn chat(body: Value) -> ChatRequest {
    serde_json::from_value(body).expect("a chat request")
}

/// The Messages body for an OpenAI chat body.
fn body(openai: Value) -> Value {
    let s = session();
    crate::support::wire(anthropic::messages_body(&chat(openai), deployment(&s)).expect("translates"))
}

fn deployment(s: &Session) -> &Deployment {
    &s.table.deployments[0]
}

fn refused(openai: Value) -> ferrolite::exchange::ApiError {
    let s = session();
    anthropic::messages_body(&chat(openai), deployment(&s)).expect_err("refused")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(crate::support::repo_root().join("tests/fixtures").join(name)).expect("fixture exists")
}

const WEATHER_TOOL: &str = r#"{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}"#;

fn weather_tool() -> Value {
    serde_json::from_str(WEATHER_TOOL).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Requests

#[test]
fn plain() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "messages": [{"role": "user", "content": "Hello!"}]})));
}

#[test]
fn default_max_tokens_is_4096_and_callers_win() {
    let b = body(json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(b["model"], "claude-3-5-sonnet-20241022");
    let b = body(json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(b["max_tokens"], 10);
    let b = body(
        json!({"model": "claude", "max_completion_tokens": 77, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(b["max_tokens"], 77, "max_completion_tokens is the newer name and wins");
    let e = refused(json!({"model": "claude", "max_tokens": 0, "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("max_tokens")));
}

#[test]
fn system_messages_are_lifted() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello!"},
        {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "developer", "content": "Never use emoji."}
    ]})));
    let one = body(
        json!({"model": "claude", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(one["system"], "Be brief.", "a single system string stays a string");
}

#[test]
fn consecutive_same_role_turns_are_merged() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "messages": [
        {"role": "user", "content": "First question."},
        {"role": "user", "content": [{"type": "text", "text": "Second part."}]},
        {"role": "assistant", "content": "An answer."},
        {"role": "assistant", "content": "More of it."},
        {"role": "user", "content": "Thanks."}
    ]})));
}

#[test]
fn tools_and_named_tool_choice() {
    insta::assert_json_snapshot!(body(json!({"model": "claude",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool(), {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    })));
}

#[test]
fn tool_choice_values() {
    let choices: Vec<Value> = ["auto", "required", "none"]
        .into_iter()
        .map(|c| {
            body(json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "tools": [weather_tool()], "tool_choice": c}))
                ["tool_choice"]
                .clone()
        })
        .collect();
    assert_eq!(choices, vec![json!({"type": "auto"}), json!({"type": "any"}), json!({"type": "none"})]);
    let no_choice =
        body(json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "tools": [weather_tool()]}));
    assert!(no_choice.get("tool_choice").is_none(), "Anthropic's default is auto: {no_choice}");
    let e = refused(
        json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "tools": [weather_tool()], "tool_choice": "sometimes"}),
    );
    assert_eq!(e.param.as_deref(), Some("tool_choice"), "{e:?}");
}

#[test]
fn tool_results_go_back_as_user_turns() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C and sunny"},
        {"role": "user", "content": "And should I take an umbrella?"}
    ]})));
}

#[test]
fn parallel_tool_calls() {
    insta::assert_json_snapshot!(body(
        json!({"model": "claude", "tools": [weather_tool()], "parallel_tool_calls": false,
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "24 C"}]}
            ]
        })
    ));
}

#[test]
fn image_data_url() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}}
    ]}]})));
}

#[test]
fn image_https_url() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "text", "text": "Describe it."}
    ]}]})));
    let e = refused(
        json!({"model": "claude", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
    );
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url.url"), "{e:?}");
}

#[test]
fn stop_sequences() {
    insta::assert_json_snapshot!(
        "stop_list",
        body(
            json!({"model": "claude", "stop": ["END", "\n\nHuman:"], "messages": [{"role": "user", "content": "Count."}]})
        )
    );
    let one = body(json!({"model": "claude", "stop": "END", "messages": [{"role": "user", "content": "Count."}]}));
    assert_eq!(one["stop_sequences"], json!(["END"]));
}

#[test]
fn json_schema_response_format() {
    insta::assert_json_snapshot!(body(json!({"model": "claude",
        "messages": [{"role": "user", "content": "Describe Paris."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"], "additionalProperties": false
        }}}
    })));
}

#[test]
fn json_object_response_format() {
    let b = body(json!({"model": "claude", "messages": [{"role": "user", "content": "Some JSON please."}],
        "response_format": {"type": "json_object"}}));
    assert_eq!(b["tools"][0]["name"], RESPONSE_FORMAT_TOOL);
    assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(b["tool_choice"], json!({"type": "tool", "name": RESPONSE_FORMAT_TOOL}));
    let text = body(
        json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"}}),
    );
    assert!(text.get("tools").is_none(), "{text}");
    let e = refused(json!({"model": "claude", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": RESPONSE_FORMAT_TOOL}}]}));
    assert_eq!(e.param.as_deref(), Some("tools[0].function.name"), "the response_format tool name is reserved");
}

#[test]
fn sampling_params_and_user() {
    insta::assert_json_snapshot!(body(json!({"model": "claude", "temperature": 0.2, "top_p": 0.9, "max_tokens": 256,
        "user": "user-42", "metadata": {"user_id": "ignored-because-user-is-set", "team": "x"},
        "messages": [{"role": "user", "content": "Hi"}]})));
}

#[test]
fn stream_with_include_usage() {
    insta::assert_json_snapshot!(body(
        json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Stream please."}]})
    ));
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (json!([{"role": "system", "content": "only system"}]), "messages"),
        (json!([{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (json!([{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
        (
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
            "messages[0].content[0].type",
        ),
    ];
    for (messages, param) in cases {
        let e = refused(json!({"model": "claude", "messages": messages}));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{messages}: {e:?}");
    }
}

#[test]
fn upstream_request_headers_url_and_stream_flag() {
    let s = session();
    let d = deployment(&s);
    let req = chat(json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}));
    let up = ferrolite::providers::auth::authorize(PROVIDER.chat_request(&req, d, URL.to_owned(), true).unwrap(), d)
        .unwrap();
    assert_eq!((up.method.as_str(), up.url.as_str()), ("POST", URL));
    let key = up.headers.iter().find(|(k, _)| k == "x-api-key").map(|(_, v)| v.as_str());
    assert_eq!(key, Some(KEY), "the deployment's key, resolved from os.environ/ANTHROPIC_API_KEY");
    let shown: Vec<(String, String)> = up
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), if k == "x-api-key" { "<deployment key>".to_owned() } else { v.clone() }))
        .collect();
    insta::assert_json_snapshot!(shown);
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(sent["stream"], true, "the stream template sets stream");
    let up = PROVIDER
        .chat_request(
            &chat(json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]})),
            d,
            URL.to_owned(),
            false,
        )
        .unwrap();
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert!(sent.get("stream").is_none(), "the JSON template never streams: {sent}");
    for param in [
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "response_format",
        "user",
        "parallel_tool_calls",
        "metadata",
    ] {
        assert!(ferrolite::providers::Provider::Anthropic.spec().chat_params.contains(&param), "{param}");
    }
    assert!(
        !ferrolite::providers::Provider::Anthropic.spec().chat_params.contains(&"n"),
        "Anthropic answers one choice"
    );
}

// ---------------------------------------------------------------------------------------------
// Responses

const CREATED: u64 = 1_700_000_000;

#[test]
fn message_to_chat_completion() {
    let body: Value = serde_json::from_slice(&fixture("anthropic-messages.json")).unwrap();
    let out = crate::support::wire(anthropic::to_openai_at(&body, "fallback-model", CREATED).unwrap());
    insta::assert_json_snapshot!(out);
    assert_eq!(out["choices"][0]["message"]["content"], "Bonjour from Claude");
}

#[test]
fn tool_use_message_to_tool_calls() {
    let body: Value = serde_json::from_slice(&fixture("anthropic-messages-tool-use.json")).unwrap();
    let out = crate::support::wire(anthropic::to_openai_at(&body, "fallback-model", CREATED).unwrap());
    insta::assert_json_snapshot!(out);
    let arguments = out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(arguments).unwrap(), json!({"city": "Paris"}));
}

#[test]
fn chat_response_through_the_provider() {
    let s = session();
    let out =
        crate::support::wire(PROVIDER.chat_response(&fixture("anthropic-messages.json"), deployment(&s)).unwrap());
    assert_eq!(out["id"], "chatcmpl-msg_1");
    assert_eq!(out["object"], "chat.completion");
    assert!(out["created"].as_u64().unwrap() > CREATED);
    let e = PROVIDER.chat_response(b"<html>", deployment(&s)).unwrap_err();
    assert_eq!(e.status.as_u16(), 502);
}

#[test]
fn stop_reasons_usage_and_json_answers() {
    let message = |content: Value, stop: &str, usage: Value| {
        json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20241022",
               "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage})
    };
    let text = json!([{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]);
    let usage = json!({"input_tokens": 5, "output_tokens": 3});
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let out = crate::support::wire(
            anthropic::to_openai_at(&message(text.clone(), stop, usage.clone()), "m", CREATED).unwrap(),
        );
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        assert_eq!(out["choices"][0]["message"]["content"], "Hi there", "text blocks are joined");
    }
    let cached = json!({"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 3});
    let out = crate::support::wire(anthropic::to_openai_at(&message(text, "end_turn", cached), "m", CREATED).unwrap());
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 2105, "completion_tokens": 3, "total_tokens": 2108, "prompt_tokens_details": {"cached_tokens": 2000}})
    );
    let json_answer = json!([{"type": "tool_use", "id": "toolu_9", "name": RESPONSE_FORMAT_TOOL, "input": {"name": "Paris", "population": 2102650}}]);
    let out =
        crate::support::wire(anthropic::to_openai_at(&message(json_answer, "tool_use", usage), "m", CREATED).unwrap());
    insta::assert_json_snapshot!("json_answer", out);
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    assert!(out["choices"][0]["message"].get("tool_calls").is_none());
}

#[test]
fn upstream_errors() {
    let s = session();
    let d = deployment(&s);
    let e = PROVIDER.upstream_error(
        axum::http::StatusCode::UNAUTHORIZED,
        br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        d,
    );
    assert_eq!(
        (e.status.as_u16(), e.kind, e.message.as_str(), e.code.as_deref()),
        (401, "authentication_error", "anthropic: invalid x-api-key", Some("authentication_error"))
    );
    let e = PROVIDER.upstream_error(
        axum::http::StatusCode::from_u16(529).unwrap(),
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        d,
    );
    assert_eq!((e.status.as_u16(), e.code.as_deref()), (529, Some("overloaded_error")));
    let e = PROVIDER.upstream_error(axum::http::StatusCode::BAD_GATEWAY, b"upstream connect error", d);
    assert_eq!((e.message.as_str(), e.code), ("anthropic: upstream connect error", None));
    let echoed = format!(r#"{{"type":"error","error":{{"type":"authentication_error","message":"bad key {KEY}"}}}}"#);
    let e = PROVIDER.upstream_error(axum::http::StatusCode::UNAUTHORIZED, echoed.as_bytes(), d);
    let e = ferrolite::providers::auth::scrub(e, d);
    assert!(!e.message.contains(KEY) && !format!("{e:?}").contains(KEY), "the key never shows: {e:?}");
}

// ---------------------------------------------------------------------------------------------
// Streams

fn meta() -> StreamMeta {
    StreamMeta { id: "chatcmpl-stream1".into(), created: CREATED, model: "claude-3-5-sonnet-20241022".into() }
}

/// Every chunk the decoder makes from `bytes` fed `size` bytes at a time.
fn decode(bytes: &[u8], size: usize) -> Vec<Value> {
    let mut d = StreamDecoder::new(meta());
    let mut chunks = Vec::new();
    for piece in bytes.chunks(size) {
        chunks.extend(crate::support::wires(d.feed(piece).expect("decodes")));
    }
    chunks.extend(crate::support::wires(d.finish().expect("finishes")));
    chunks
}

fn check_stream(name: &str) -> Vec<Value> {
    let bytes = fixture(name);
    let whole = decode(&bytes, bytes.len());
    assert_eq!(decode(&bytes, 7), whole, "7-byte reads make the same chunks");
    assert_eq!(decode(&bytes, 1), whole, "1-byte reads make the same chunks");
    // Chunks come out as their events complete, not at the end.
    let mut d = StreamDecoder::new(meta());
    let early = crate::support::wires(d.feed(&bytes[..bytes.len() / 2]).unwrap());
    assert!(early.len() >= 2, "half the stream already makes chunks: {early:?}");
    assert_eq!(early[..], whole[..early.len()]);
    for chunk in &whole {
        assert_eq!(chunk["id"], "chatcmpl-stream1");
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    let roles: Vec<usize> = whole
        .iter()
        .enumerate()
        .filter(|(_, c)| c.pointer("/choices/0/delta/role").is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(roles, vec![0], "role only on the first chunk");
    let last = whole.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}));
    whole
}

#[test]
fn text_stream_chunks() {
    let chunks = check_stream("anthropic-messages-stream.sse");
    let text: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "Bonjour from Claude");
    insta::assert_json_snapshot!(chunks);
}

#[test]
fn tool_use_stream_chunks() {
    let chunks = check_stream("anthropic-messages-tool-use-stream.sse");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris"}));
    insta::assert_json_snapshot!(chunks);
}

fn sse(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn stream_json_answer_text_then_tools_and_cache_usage() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_3", "type": "message", "role": "assistant", "model": "m", "content": [],
               "usage": {"input_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":\"Rome\"}"}}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":\"Oslo\"}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
        json!({"type": "message_stop"}),
    ];
    let chunks = decode(&sse(&events), 5);
    let calls: Vec<(u64, Option<&str>)> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .map(|t| (t["index"].as_u64().unwrap(), t["id"].as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![(0, Some("toolu_a")), (0, None), (1, Some("toolu_b")), (1, None)],
        "tool call indices, not block indices"
    );
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        chunks.last().unwrap()["usage"],
        json!({"prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44, "prompt_tokens_details": {"cached_tokens": 10}})
    );

    let events = [
        json!({"type": "message_start", "message": {"id": "msg_4", "usage": {"input_tokens": 4, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_j", "name": RESPONSE_FORMAT_TOOL, "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"name\": "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ];
    let chunks = decode(&sse(&events), 64);
    let content: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(content, "{\"name\": \"Paris\"}", "a response_format answer streams as content");
    assert!(chunks.iter().all(|c| c.pointer("/choices/0/delta/tool_calls").is_none()));
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn stream_error_event_is_an_error() {
    let mut bytes = fixture("anthropic-messages-stream.sse");
    bytes.truncate(bytes.windows(13).position(|w| w == b"event: conten").unwrap());
    bytes.extend_from_slice(
        b"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    );
    let mut d = StreamDecoder::new(meta());
    let e = d.feed(&bytes).unwrap_err();
    assert_eq!(
        (e.status.as_u16(), e.message.as_str(), e.code.as_deref()),
        (529, "anthropic: Overloaded", Some("overloaded_error"))
    );
    let mut d = StreamDecoder::new(meta());
    let e = d.feed(b"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"api_error\", \"message\": \"boom\"}}\n\n").unwrap_err();
    assert_eq!(e.status.as_u16(), 500);
    let mut d = StreamDecoder::new(meta());
    let e = d
        .feed(b"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"mystery\", \"message\": \"?\"}}\n\n")
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 502);
}

#[test]
fn a_stream_cut_short_still_reports_usage_at_finish() {
    let bytes = fixture("anthropic-messages-stream.sse");
    let cut = bytes.windows(20).position(|w| w == b"event: message_stop\n").unwrap();
    let chunks = decode(&bytes[..cut], 9);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 7);
    assert_eq!(chunks.iter().filter(|c| c.get("usage").is_some()).count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Thinking

/// The Messages body for an OpenAI chat body sent to `upstream_model`.
fn body_for(upstream_model: &str, openai: Value) -> Result<Value, ferrolite::exchange::ApiError> {
    let s = session_of(upstream_model);
    anthropic::messages_body(&chat(openai), deployment(&s)).map(crate::support::wire)
}

#[test]
fn reasoning_effort_becomes_a_thinking_budget_within_claudes_limits() {
    // max_tokens at or under the budget gets the budget on top; a temperature other than 1 and a
    // top_p under 0.95 are dropped; the response_format tool is offered, not forced.
    let b = body(json!({"model": "claude", "reasoning_effort": "medium", "max_tokens": 500, "temperature": 0.2,
        "top_p": 0.5, "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "Hi"}]}));
    insta::assert_json_snapshot!("thinking_request_effort", b);
    assert_eq!(b["thinking"], json!({"type": "enabled", "budget_tokens": 2048}));
    assert_eq!(b["max_tokens"], 2548);
    assert_eq!((b.get("temperature"), b.get("top_p")), (None, None));
    assert_eq!(b["tool_choice"], json!({"type": "auto"}));
    // Claude's own limits pass: temperature 1, top_p 0.95, max_tokens above the budget.
    let b = body(json!({"model": "claude", "reasoning_effort": "high", "max_tokens": 9000, "temperature": 1,
        "top_p": 0.95, "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(
        (b["max_tokens"].clone(), b["temperature"].clone(), b["top_p"].clone()),
        (json!(9000), json!(1), json!(0.95))
    );
    assert_eq!(b["thinking"]["budget_tokens"], 4096);
    // minimal is litellm's 128, raised to Claude's 1024; none asks for nothing.
    let b = body(
        json!({"model": "claude", "reasoning_effort": "minimal", "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!((b["thinking"]["budget_tokens"].clone(), b["max_tokens"].clone()), (json!(1024), json!(1024 + 4096)));
    let b = body(
        json!({"model": "claude", "reasoning_effort": "none", "temperature": 0.2, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!((b.get("thinking"), b["temperature"].clone(), b["max_tokens"].clone()), (None, json!(0.2), json!(4096)));
}

#[test]
fn litellms_thinking_param_passes_as_written_and_wins() {
    let b = body(
        json!({"model": "claude", "reasoning_effort": "low", "thinking": {"type": "enabled", "budget_tokens": 3000},
        "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(b["thinking"], json!({"type": "enabled", "budget_tokens": 3000}));
    assert_eq!(b["max_tokens"], 3000 + 4096);
    let b = body(
        json!({"model": "claude", "thinking": {"type": "disabled"}, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!((b["thinking"].clone(), b["max_tokens"].clone()), (json!({"type": "disabled"}), json!(4096)));
    let e = refused(
        json!({"model": "claude", "thinking": {"budget_tokens": 3}, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("thinking")));
    let e =
        refused(json!({"model": "claude", "reasoning_effort": "max", "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("reasoning_effort")));
}

#[test]
fn claude_4_6_and_later_think_adaptively() {
    let b = body_for(
        "claude-opus-4-7",
        json!({"model": "claude", "reasoning_effort": "high", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .unwrap();
    insta::assert_json_snapshot!("thinking_request_adaptive", b);
    assert_eq!(b["thinking"], json!({"type": "adaptive", "display": "summarized"}));
    assert_eq!(b["output_config"], json!({"effort": "high"}));
    assert_eq!(b["max_tokens"], 100, "no budget to stay above");
}

#[test]
fn a_forced_tool_while_thinking_is_refused_naming_tool_choice() {
    let e = refused(
        json!({"model": "claude", "reasoning_effort": "low", "tools": [weather_tool()], "tool_choice": "required",
        "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("tool_choice")));
    assert!(e.message.contains("reasoning_effort none"), "{e}");
    // Without thinking the same request forces the tool.
    let b = body(json!({"model": "claude", "tools": [weather_tool()], "tool_choice": "required",
        "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(b["tool_choice"], json!({"type": "any"}));
}

/// A tool round trip whose assistant turn hands back its thinking.
fn round_trip(effort: &str) -> Value {
    json!({"model": "claude", "reasoning_effort": effort, "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.",
         "thinking_blocks": [
            {"type": "thinking", "thinking": "The user wants Paris.", "signature": "sig-1"},
            {"type": "thinking", "thinking": "unsigned, from another provider"},
            {"type": "redacted_thinking", "data": "opaque"}
         ],
         "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
    ]})
}

#[test]
fn thinking_blocks_handed_back_come_first_in_their_turn() {
    let b = body(round_trip("low"));
    insta::assert_json_snapshot!("thinking_request_round_trip", b);
    assert_eq!(
        b["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "The user wants Paris.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ]),
        "signed and redacted blocks, in order, before the text; the unsigned one left out"
    );
    // Without thinking, earlier turns keep theirs (Claude ignores them) ...
    let b = body(round_trip("none"));
    assert_eq!(b["messages"][1]["content"][0]["type"], "thinking");
    // ... but a final assistant turn (a prefill) may not hold any.
    let b = body(json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Well,", "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}]}));
    assert_eq!(b["messages"][1]["content"], json!([{"type": "text", "text": "Well,"}]));
    // thinking_blocks of the wrong shape are the caller's to fix.
    let e = refused(json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "x", "thinking_blocks": "nope"}, {"role": "user", "content": "Hi"}]}));
    assert_eq!(e.param.as_deref(), Some("messages[1].thinking_blocks"));
}

#[test]
fn thinking_answers_carry_reasoning_content_and_signed_blocks() {
    let answer = json!({"id": "msg_t", "type": "message", "role": "assistant", "model": "claude-3-7-sonnet-20250219",
        "content": [
            {"type": "thinking", "thinking": "Paris, so the weather tool.", "signature": "EqQBCgIYAhIM"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 40}});
    let out = crate::support::wire(anthropic::to_openai_at(&answer, "m", CREATED).unwrap());
    insta::assert_json_snapshot!("thinking_answer", out);
    let message = &out["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "Paris, so the weather tool.");
    assert_eq!(message["thinking_blocks"][1], json!({"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}));
}

#[test]
fn thinking_streams_as_reasoning_deltas_and_a_signature() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant", "model": "m", "content": [],
               "usage": {"input_tokens": 4, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris,"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": " so the tool."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwK"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Sunny."}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}}),
        json!({"type": "message_stop"}),
    ];
    let chunks = decode(&sse(&events), 9);
    assert_eq!(chunks, decode(&sse(&events), 1000), "the same whatever the reads");
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas[1..5],
        [
            &json!({"reasoning_content": "Paris,", "thinking_blocks": [{"type": "thinking", "thinking": "Paris,"}]}),
            &json!({"reasoning_content": " so the tool.", "thinking_blocks": [{"type": "thinking", "thinking": " so the tool."}]}),
            &json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqQBCgIYAhIM"}]}),
            &json!({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwK"}]}),
        ]
    );
    insta::assert_json_snapshot!("thinking_stream", chunks);
}

#[test]
fn a_tool_turn_handed_back_without_its_thinking_turns_budgeted_thinking_off() {
    // Most chat clients drop thinking_blocks: Claude would refuse the budget, so none is asked for.
    let mut openai = round_trip("low");
    openai["messages"][1].as_object_mut().unwrap().remove("thinking_blocks");
    openai["temperature"] = json!(0.3);
    let b = body(openai.clone());
    assert_eq!((b.get("thinking"), b["temperature"].clone()), (None, json!(0.3)));
    // Adaptive thinking may have thought nothing before a call: it stays.
    let b = body_for("claude-sonnet-4-6", openai).unwrap();
    assert_eq!(b["thinking"]["type"], "adaptive");
}
