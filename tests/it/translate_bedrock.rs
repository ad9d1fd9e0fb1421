//! Bedrock Converse translation, pinned by insta snapshots: OpenAI requests -> Converse bodies,
//! Converse answers and ConverseStream event-stream frames -> OpenAI objects and chunks, and
//! SigV4 signing checked by the fake's independent verifier.

use crate::fake_bedrock::{self, event_frame, exception_frame, Expected};
use crate::support::wire;
use axum::http::StatusCode;
use ferrolite::api::openai::{ChatCompletion, ChatRequest};
use ferrolite::exchange::ApiError;
use ferrolite::manifest::LitellmParams;
use ferrolite::providers::auth;
use ferrolite::providers::bedrock::{self, ConverseStreamDecoder, PROVIDER};
use ferrolite::providers::deployment::{AwsCredentials, Deployment, Secret};
use ferrolite::providers::translate::{ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use ferrolite::providers::Provider;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MODEL: &str = "anthropic.claude-3-sonnet-20240229-v1:0";
const URL: &str =
    "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse";
/// AWS's documentation example credentials.
const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2024-01-15T12:00:00Z
const SIGNED_AT: u64 = 1_705_320_000;

fn chat(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    }})
}

const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// The representative requests: (snapshot name, OpenAI request).
fn requests() -> Vec<(&'static str, Value)> {
    [conversation_requests(), parameter_requests()].concat()
}

/// Requests that differ in their messages: roles, merged turns, tool calls, images.
fn conversation_requests() -> Vec<(&'static str, Value)> {
    vec![
        ("plain", json!({"model": "m", "messages": [user("Hello!")]})),
        (
            "system",
            json!({"model": "m", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                user("Hello!")
            ]}),
        ),
        (
            "multi_turn_merges",
            json!({"model": "m", "messages": [
                user("First question."),
                user("Second, right after."),
                {"role": "assistant", "content": "First answer."},
                {"role": "assistant", "content": [{"type": "text", "text": "Second answer."}]},
                {"role": "system", "content": "A late system note."},
                user("Thanks!")
            ]}),
        ),
        (
            "tools",
            json!({"model": "m", "tools": [weather_tool(), {"type": "function", "function": {"name": "now"}}], "messages": [user("What is the weather in Paris?")]}),
        ),
        (
            "tool_results",
            json!({"model": "m", "tools": [weather_tool()], "messages": [
                user("What is the weather in Paris?"),
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "22 C and sunny"},
                user("And should I take an umbrella?")
            ]}),
        ),
        (
            "parallel_tool_calls",
            json!({"model": "m", "tools": [weather_tool()], "messages": [
                user("Weather in Paris and Oslo?"),
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "tooluse_p", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                    {"id": "tooluse_o", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "tooluse_p", "content": [{"type": "text", "text": "22 C"}]},
                {"role": "tool", "tool_call_id": "tooluse_o", "content": "3 C"}
            ]}),
        ),
        (
            "images",
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_1X1}")}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg==", "detail": "low"}}
            ]}]}),
        ),
    ]
}

/// Requests that differ in their parameters: stop, response_format, sampling, tool_choice.
fn parameter_requests() -> Vec<(&'static str, Value)> {
    vec![
        ("stop_string", json!({"model": "m", "stop": "END", "messages": [user("Count.")]})),
        ("stop_list", json!({"model": "m", "stop": ["\n\n", "Human:"], "messages": [user("Count.")]})),
        (
            "json_schema",
            json!({"model": "m", "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {
                "type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}}, "required": ["name"]
            }}}, "messages": [user("Largest city in France?")]}),
        ),
        (
            "json_object",
            json!({"model": "m", "response_format": {"type": "json_object"}, "messages": [user("A JSON object, please.")]}),
        ),
        (
            "sampling",
            json!({"model": "m", "temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "messages": [user("Hi")]}),
        ),
        (
            "max_completion_tokens_wins",
            json!({"model": "m", "max_tokens": 64, "max_completion_tokens": 128, "temperature": null, "messages": [user("Hi")]}),
        ),
        (
            "stream_include_usage",
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 10, "messages": [user("Hi")]}),
        ),
        (
            "tool_choice_auto",
            json!({"model": "m", "tools": [weather_tool()], "tool_choice": "auto", "messages": [user("Hi")]}),
        ),
        (
            "tool_choice_required",
            json!({"model": "m", "tools": [weather_tool()], "tool_choice": "required", "messages": [user("Hi")]}),
        ),
        (
            "tool_choice_named",
            json!({"model": "m", "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "messages": [user("Hi")]}),
        ),
        (
            "tool_choice_none",
            json!({"model": "m", "tools": [weather_tool()], "tool_choice": "none", "messages": [user("Hi")]}),
        ),
        (
            "tool_choice_none_with_tool_history",
            json!({"model": "m", "tools": [weather_tool()], "tool_choice": "none", "messages": [
                user("Weather in Paris?"),
                {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "{\"temp\": 22}"}
            ]}),
        ),
    ]
}

#[test]
fn request_bodies() {
    let cases = requests();
    assert!(cases.len() >= 12);
    for (name, openai) in cases {
        let req = chat(openai.clone());
        let bedrock = bedrock::converse_body(&req, MODEL).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_json_snapshot!(format!("body_{name}"), json!({"openai": openai, "bedrock": bedrock}));
    }
}

#[test]
fn streaming_does_not_change_the_body() {
    let plain = chat(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}));
    let stream = chat(
        json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(bedrock::converse_body(&plain, MODEL).unwrap(), bedrock::converse_body(&stream, MODEL).unwrap());
}

#[test]
fn requests_bedrock_cannot_take_are_400s_naming_the_field() {
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
            "messages[0].content[0].image_url.url",
            "data URLs",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}),
            "messages[0].content[0].image_url.url",
            "image/png, image/jpeg",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{not json"}}]}]}),
            "messages[1].tool_calls[0].function.arguments",
            "not JSON",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
            "tool_call_id",
        ),
        (
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "messages[0].role",
            "function",
        ),
        (
            json!({"model": "m", "tool_choice": "sometimes", "tools": [weather_tool()], "messages": [{"role": "user", "content": "x"}]}),
            "tool_choice",
            "sometimes",
        ),
        (json!({"model": "m", "stop": 5, "messages": [{"role": "user", "content": "x"}]}), "stop", "stop"),
        (
            json!({"model": "m", "tools": [{"type": "code_interpreter"}], "messages": [{"role": "user", "content": "x"}]}),
            "tools[0].type",
            "function",
        ),
    ];
    for (body, param, says) in cases {
        let e = bedrock::converse_body(&chat(body), MODEL).unwrap_err();
        assert_eq!((e.status, e.kind), (StatusCode::BAD_REQUEST, "invalid_request_error"));
        assert_eq!(e.param.as_deref(), Some(param), "{e}");
        assert!(e.message.starts_with("bedrock: ") && e.message.contains(says), "{e}");
    }
}

#[test]
fn supported_params_and_stop_reasons() {
    let supported = Provider::Bedrock.spec().chat_params;
    for p in [
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
    ] {
        assert!(supported.contains(&p), "{p}");
    }
    let table: Vec<(&str, &str)> =
        bedrock::FINISH_REASON_KEYS.iter().map(|k| (*k, bedrock::finish_reason(k))).collect();
    insta::assert_json_snapshot!("finish_reasons", table);
    assert_eq!(bedrock::finish_reason("something_new"), "stop");
}

// ---------------------------------------------------------------------------------------------
// Responses

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(crate::support::repo_root().join("tests/fixtures").join(name)).unwrap()
}

/// A Converse answer, written as JSON, through the translation.
fn to_openai(body: &Value, model: &str, id: &str, created: u64) -> Result<ChatCompletion, ApiError> {
    bedrock::to_openai(&serde_json::to_vec(body).unwrap(), model, id, created)
}

#[test]
fn converse_fixture_response() {
    let out =
        wire(bedrock::to_openai(&fixture("bedrock-converse.json"), MODEL, "chatcmpl-fixed", 1_700_000_000).unwrap());
    assert_eq!(out["usage"], json!({"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}));
    insta::assert_json_snapshot!("response_fixture", out);
}

#[test]
fn tool_use_response() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me check both cities."},
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"location": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_Qx2", "name": "get_weather", "input": {"location": "Oslo", "unit": "celsius"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 410, "outputTokens": 96, "totalTokens": 506},
        "metrics": {"latencyMs": 1203}
    });
    insta::assert_json_snapshot!(
        "response_tool_use",
        to_openai(&body, MODEL, "chatcmpl-fixed", 1_700_000_000).unwrap()
    );
}

#[test]
fn json_answer_and_content_filter_responses() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_j", "name": bedrock::JSON_TOOL, "input": {"name": "Paris", "population": 2102650}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 20, "outputTokens": 10, "totalTokens": 30}
    });
    let out = to_openai(&body, MODEL, "chatcmpl-fixed", 1_700_000_000).unwrap();
    insta::assert_json_snapshot!("response_json_answer", out);
    let blocked = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, the model cannot answer this question."}]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14}
    });
    let out = to_openai(&blocked, MODEL, "id", 1).unwrap();
    assert_eq!(out.choices[0].finish_reason.as_deref(), Some("content_filter"));
    let e = to_openai(&json!({"message": "nope"}), MODEL, "id", 1).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_GATEWAY);
}

#[test]
fn reasoning_and_unknown_blocks_and_unreadable_answers() {
    // Reasoning comes back as `reasoning_content`, and signed or redacted as `thinking_blocks`;
    // a block of a kind not read (an image) is skipped; no totalTokens means their sum.
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Think \"twice\".", "signature": "s"}}},
            {"image": {"format": "png", "source": {"bytes": "AAAA"}}},
            {"reasoningContent": {"redactedContent": "c2VjcmV0"}},
            {"text": "Done."}
        ]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 4, "outputTokens": 5}
    });
    let out = wire(to_openai(&body, MODEL, "id", 1).unwrap());
    assert_eq!(
        out["choices"][0]["message"],
        json!({"role": "assistant", "content": "Done.", "refusal": null, "reasoning_content": "Think \"twice\".",
            "thinking_blocks": [{"type": "thinking", "thinking": "Think \"twice\".", "signature": "s"},
                                {"type": "redacted_thinking", "data": "c2VjcmV0"}]})
    );
    assert_eq!(out["usage"], json!({"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}));
    // Not JSON, and JSON of another shape, are both the upstream's fault, said apart.
    let e = bedrock::to_openai(b"<html>", MODEL, "id", 1).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    assert!(e.message.contains("the answer is not JSON"), "{e}");
    let e = to_openai(&json!({"output": {"message": {"content": [{"text": 5}]}}}), MODEL, "id", 1).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    assert!(e.message.contains("not of the expected shape"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Streams

fn meta() -> StreamMeta {
    StreamMeta { id: "chatcmpl-fixed".into(), created: 1_700_000_000, model: MODEL.into() }
}

/// Feeds `bytes` in `size`-byte pieces; returns the chunks and, for each, the feed that made it.
fn decode_in_pieces(bytes: &[u8], size: usize) -> (Vec<Value>, Vec<usize>) {
    let mut decoder = PROVIDER.stream_decoder(meta());
    let (mut chunks, mut at) = (Vec::new(), Vec::new());
    for (i, piece) in bytes.chunks(size).enumerate() {
        for chunk in crate::support::wires(decoder.feed(piece).unwrap()) {
            chunks.push(chunk);
            at.push(i);
        }
    }
    let pieces = bytes.len().div_ceil(size);
    for chunk in crate::support::wires(decoder.finish().unwrap()) {
        chunks.push(chunk);
        at.push(pieces);
    }
    (chunks, at)
}

#[test]
fn converse_stream_fixture_in_7_byte_pieces() {
    let bytes = fixture("bedrock-converse-stream.eventstream");
    let (whole, _) = decode_in_pieces(&bytes, bytes.len());
    let (pieced, at) = decode_in_pieces(&bytes, 7);
    assert_eq!(whole, pieced);
    let pieces = bytes.len().div_ceil(7);
    // Each chunk comes out with the piece that completes its frame, long before the end.
    assert!(at[0] < pieces / 4, "the role chunk waited: {at:?}");
    assert!(at.windows(2).filter(|w| w[0] < w[1]).count() >= 4, "chunks came out together: {at:?}");
    assert!(at[..at.len() - 1].iter().all(|&i| i < pieces), "{at:?}");
    let text: String =
        pieced.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "Hola from Bedrock");
    insta::assert_json_snapshot!("stream_fixture", pieced);
}

fn tool_stream() -> Vec<u8> {
    [
        event_frame("messageStart", &json!({"role": "assistant"})),
        event_frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Checking."}})),
        event_frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
        event_frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}}),
        ),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"location\": "}}}),
        ),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        ),
        event_frame("contentBlockStop", &json!({"contentBlockIndex": 1})),
        event_frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather"}}}),
        ),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"location\": \"Oslo\"}"}}}),
        ),
        event_frame("contentBlockStop", &json!({"contentBlockIndex": 2})),
        event_frame("messageStop", &json!({"stopReason": "tool_use"})),
        event_frame(
            "metadata",
            &json!({"usage": {"inputTokens": 50, "outputTokens": 20, "totalTokens": 70}, "metrics": {"latencyMs": 9}}),
        ),
    ]
    .concat()
}

#[test]
fn tool_use_stream() {
    let bytes = tool_stream();
    let (chunks, _) = decode_in_pieces(&bytes, 5);
    assert_eq!(chunks, decode_in_pieces(&bytes, bytes.len()).0);
    insta::assert_json_snapshot!("stream_tool_use", chunks);
}

#[test]
fn json_answer_stream_is_content() {
    let bytes = [
        event_frame("messageStart", &json!({"role": "assistant"})),
        event_frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": bedrock::JSON_TOOL}}}),
        ),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"name\": "}}}),
        ),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        ),
        event_frame("messageStop", &json!({"stopReason": "tool_use"})),
    ]
    .concat();
    let (chunks, _) = decode_in_pieces(&bytes, 11);
    let content: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(content, "{\"name\": \"Paris\"}");
    assert!(chunks.iter().all(|c| c.pointer("/choices/0/delta/tool_calls").is_none()));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn usage_before_stop_follows_the_finish_chunk() {
    let bytes = [
        event_frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}})),
        event_frame("metadata", &json!({"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}})),
        event_frame("messageStop", &json!({"stopReason": "end_turn"})),
    ]
    .concat();
    let (chunks, _) = decode_in_pieces(&bytes, 3);
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    // No messageStart: the first content chunk carries the role.
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "Hi"}));
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[2]["choices"], json!([]));
    assert_eq!(chunks[2]["usage"], json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}));
}

#[test]
fn reasoning_streams_as_reasoning_content_and_thinking_blocks() {
    let bytes = [
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}}),
        ),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}}),
        ),
        event_frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"text": "Yes."}})),
        event_frame("messageStop", &json!({})),
    ]
    .concat();
    let (chunks, _) = decode_in_pieces(&bytes, bytes.len());
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "reasoning_content": "Hmm.", "thinking_blocks": [{"type": "thinking", "thinking": "Hmm."}]}),
            &json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "s"}]}),
            &json!({"content": "Yes."}),
            &json!({})
        ]
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    // A known event of the wrong shape is the upstream's fault.
    let e = ConverseStreamDecoder::new(meta())
        .feed(&event_frame("contentBlockDelta", &json!({"contentBlockIndex": "one"})))
        .unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    assert!(e.message.contains("contentBlockDelta event is not of the expected shape"), "{e}");
}

#[test]
fn exception_frames_and_broken_streams_are_errors() {
    let mut decoder = ConverseStreamDecoder::new(meta());
    let first = decoder.feed(&event_frame("messageStart", &json!({"role": "assistant"}))).unwrap();
    assert_eq!(first.len(), 1);
    let e = decoder
        .feed(&exception_frame("throttlingException", "Too many requests, please wait before trying again."))
        .unwrap_err();
    assert_eq!((e.status, e.kind), (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"));
    assert_eq!(e.message, "bedrock: throttlingException: Too many requests, please wait before trying again.");

    let e = ConverseStreamDecoder::new(meta()).feed(&exception_frame("validationException", "Bad input")).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);

    // A flipped payload byte fails the message CRC.
    let mut corrupt = event_frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}));
    let n = corrupt.len();
    corrupt[n - 10] ^= 0x20;
    let e = ConverseStreamDecoder::new(meta()).feed(&corrupt).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    assert!(e.message.contains("malformed event stream"), "{e}");

    // A body that stops inside a frame.
    let whole = fixture("bedrock-converse-stream.eventstream");
    let mut decoder = ConverseStreamDecoder::new(meta());
    assert!(!decoder.feed(&whole[..200]).unwrap().is_empty());
    let e = decoder.finish().unwrap_err();
    assert!(e.message.contains("ended inside a frame"), "{e}");
    // A clean end never fails.
    let mut decoder = ConverseStreamDecoder::new(meta());
    decoder.feed(&whole).unwrap();
    assert!(decoder.finish().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// SigV4

fn credentials(secret: &str, token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: Secret::new(KEY_ID.into()),
        secret_access_key: Secret::new(secret.into()),
        session_token: token.map(|t| Secret::new(t.into())),
        region: "us-east-1".into(),
    }
}

/// The request as the upstream receives it: lowercase headers, `host` added from the URL.
fn received(request: &UpstreamRequest) -> (String, HashMap<String, String>) {
    let rest = request.url.split_once("://").unwrap().1;
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut headers: HashMap<String, String> =
        request.headers.iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect();
    headers.insert("host".into(), host.to_owned());
    (path.to_owned(), headers)
}

fn expected(secret: &str, now: SystemTime) -> Expected<'_> {
    Expected { access_key_id: KEY_ID, secret, region: "us-east-1", service: "bedrock", now }
}

#[test]
fn the_verifier_matches_aws_published_example() {
    // AWS's SigV4 test suite, "get-vanilla".
    let headers: HashMap<String, String> = [("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    let creq = fake_bedrock::canonical_request("GET", "/", None, &headers, &["host", "x-amz-date"], b"");
    assert_eq!(
        fake_bedrock::signature(SECRET, "20150830T123600Z", "us-east-1", "service", &creq),
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
}

#[test]
fn sigv4_signature_is_stable_and_verifies() {
    let at = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
    let req = chat(json!({"model": "m", "messages": [{"role": "user", "content": "Hello!"}]}));
    let body = bedrock::converse_body(&req, MODEL).unwrap();
    let signed =
        auth::sign_sigv4(UpstreamRequest::post_json(URL.into(), &body), &credentials(SECRET, None), "bedrock", at)
            .unwrap();
    let headers: Vec<(String, String)> = signed.headers.clone();
    insta::assert_json_snapshot!("sigv4_headers", headers);
    let authorization = &signed.headers.iter().find(|(k, _)| k == "authorization").unwrap().1;
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/bedrock/aws4_request, ")
    );
    assert_eq!(signed.body, serde_json::to_vec(&body).unwrap(), "signing leaves the body alone");

    let (path, received) = received(&signed);
    assert_eq!(path, "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse");
    fake_bedrock::verify_sigv4("POST", &path, &received, &signed.body, &expected(SECRET, at)).unwrap();
    // The same time and credentials sign the same way.
    let again =
        auth::sign_sigv4(UpstreamRequest::post_json(URL.into(), &body), &credentials(SECRET, None), "bedrock", at)
            .unwrap();
    assert_eq!(again, signed);

    // What AWS would refuse, the verifier refuses.
    let refused = |secret: &str, path: &str, body: &[u8], now: SystemTime| {
        fake_bedrock::verify_sigv4("POST", path, &received, body, &expected(secret, now)).unwrap_err()
    };
    assert!(refused("wrong-secret", &path, &signed.body, at)
        .starts_with("The request signature we calculated does not match"));
    assert!(
        refused(SECRET, "/model/other/converse", &signed.body, at).starts_with("The request signature we calculated")
    );
    assert!(refused(SECRET, &path, b"{}", at).contains("x-amz-content-sha256"));
    assert!(refused(SECRET, &path, &signed.body, at + Duration::from_secs(16 * 60)).starts_with("Signature expired"));
    let mut other_region = expected(SECRET, at);
    other_region.region = "eu-west-1";
    let e = fake_bedrock::verify_sigv4("POST", &path, &received, &signed.body, &other_region).unwrap_err();
    assert!(e.contains("valid region"), "{e}");
}

#[test]
fn session_tokens_are_sent_and_signed() {
    let at = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
    let request = UpstreamRequest::post_json(URL.into(), &json!({"messages": []}));
    let signed =
        auth::sign_sigv4(request, &credentials(SECRET, Some("FwoGZXIvYXdzEXAMPLETOKEN")), "bedrock", at).unwrap();
    let (path, received) = received(&signed);
    assert_eq!(received["x-amz-security-token"], "FwoGZXIvYXdzEXAMPLETOKEN");
    assert!(received["authorization"]
        .contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    fake_bedrock::verify_sigv4("POST", &path, &received, &signed.body, &expected(SECRET, at)).unwrap();
}

fn deployment(secret: &str) -> Deployment {
    Deployment {
        id: "bedrock-claude/0".into(),
        model_name: "bedrock-claude".into(),
        provider: Provider::Bedrock,
        upstream_model: MODEL.into(),
        api_base: Some("https://bedrock-runtime.us-east-1.amazonaws.com".into()),
        public_only: false,
        api_key: None,
        api_version: None,
        aws: Some(credentials(secret, Some("FwoGZXIvYXdzEXAMPLETOKEN"))),
        vertex: None,
        mock_response: None,
        chat_only: false,
        params: LitellmParams::default(),
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
fn the_provider_signs_now_and_maps_answers_and_errors() {
    let d = deployment(SECRET);
    let req = chat(json!({"model": "bedrock-claude", "messages": [{"role": "user", "content": "Hello!"}]}));
    let signed = auth::authorize(PROVIDER.chat_request(&req, &d, URL.into(), false).unwrap(), &d).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&signed.body).unwrap(),
        wire(bedrock::converse_body(&req, MODEL).unwrap())
    );
    let (path, received) = received(&signed);
    fake_bedrock::verify_sigv4("POST", &path, &received, &signed.body, &expected(SECRET, SystemTime::now())).unwrap();

    let answer = wire(PROVIDER.chat_response(&fixture("bedrock-converse.json"), &d).unwrap());
    assert_eq!(answer["model"], MODEL);
    assert_eq!(answer["choices"][0]["message"]["content"], "Hola from Bedrock");
    assert!(answer["id"].as_str().unwrap().starts_with("chatcmpl-"));

    let body = br#"{"message":"The request signature we calculated does not match the signature you provided."}"#;
    let e = PROVIDER.upstream_error(StatusCode::FORBIDDEN, body, &d);
    assert_eq!((e.status, e.kind), (StatusCode::FORBIDDEN, "permission_error"));
    assert_eq!(e.message, "bedrock: The request signature we calculated does not match the signature you provided.");
    let e = PROVIDER.upstream_error(StatusCode::TOO_MANY_REQUESTS, br#"{"message":"Too many requests"}"#, &d);
    assert_eq!((e.status.as_u16(), e.kind), (429, "rate_limit_error"));
    // Other shapes of error body: AWS's capitalised `Message`, a proxy's OpenAI-style error,
    // and a body that is not JSON at all.
    let message = |body: &[u8]| PROVIDER.upstream_error(StatusCode::BAD_GATEWAY, body, &d).message;
    assert_eq!(message(br#"{"Message":"Capitalised"}"#), "bedrock: Capitalised");
    assert_eq!(message(br#"{"message":"outer","error":{"message":"inner"}}"#), "bedrock: inner");
    assert_eq!(message(b"  <html>Bad gateway</html>\n"), "bedrock: <html>Bad gateway</html>");
    // An upstream that quotes the credentials it saw never gets them echoed (the one scrubber
    // every attempt's error goes through).
    let leaky = format!(r#"{{"message":"bad token FwoGZXIvYXdzEXAMPLETOKEN for {KEY_ID} / {SECRET}"}}"#);
    let e = auth::scrub(PROVIDER.upstream_error(StatusCode::BAD_REQUEST, leaky.as_bytes(), &d), &d);
    assert!(
        !e.message.contains("FwoGZXIvYXdzEXAMPLETOKEN") && !e.message.contains(SECRET) && !e.message.contains(KEY_ID),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Thinking

#[test]
fn claude_thinks_through_additional_model_request_fields() {
    let openai = json!({"model": "m", "reasoning_effort": "high", "max_tokens": 1000, "temperature": 0.3,
        "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "",
         "thinking_blocks": [{"type": "thinking", "thinking": "Paris.", "signature": "sig-1"},
                             {"type": "redacted_thinking", "data": "c2VjcmV0"},
                             {"type": "thinking", "thinking": "unsigned"}],
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "18C"}
    ]});
    let body = wire(bedrock::converse_body(&chat(openai.clone()), MODEL).unwrap());
    insta::assert_json_snapshot!("thinking_request", body);
    assert_eq!(body["additionalModelRequestFields"], json!({"thinking": {"type": "enabled", "budget_tokens": 4096}}));
    assert_eq!(body["inferenceConfig"], json!({"maxTokens": 5096}), "above the budget; no temperature");
    assert_eq!(
        body["messages"][1]["content"].as_array().unwrap()[..2],
        [
            json!({"reasoningContent": {"reasoningText": {"text": "Paris.", "signature": "sig-1"}}}),
            json!({"reasoningContent": {"redactedContent": "c2VjcmV0"}})
        ]
    );
    assert_eq!(body["messages"][1]["content"][2]["toolUse"]["toolUseId"], "t1");
    // Claude 4.6 and later think adaptively; other models' reasoning is not mapped.
    let adaptive = wire(bedrock::converse_body(&chat(openai.clone()), "us.anthropic.claude-opus-4-7").unwrap());
    assert_eq!(
        adaptive["additionalModelRequestFields"],
        json!({"thinking": {"type": "adaptive", "display": "summarized"}, "output_config": {"effort": "high"}})
    );
    let nova = wire(bedrock::converse_body(&chat(openai.clone()), "amazon.nova-pro-v1:0").unwrap());
    assert_eq!(
        (nova.get("additionalModelRequestFields"), nova["inferenceConfig"]["maxTokens"].clone()),
        (None, json!(1000))
    );
    // A tool turn handed back without its reasoning: Claude would refuse the budget.
    let mut unsigned = openai;
    unsigned["messages"][1].as_object_mut().unwrap().remove("thinking_blocks");
    let body = wire(bedrock::converse_body(&chat(unsigned), MODEL).unwrap());
    assert_eq!(
        (body.get("additionalModelRequestFields"), body["inferenceConfig"]["temperature"].clone()),
        (None, json!(0.3))
    );
    // A forced tool cannot go with thinking; the JSON-answer tool is then offered instead.
    let e = bedrock::converse_body(
        &chat(json!({"model": "m", "reasoning_effort": "low", "tools": [weather_tool()], "tool_choice": "required",
            "messages": [{"role": "user", "content": "x"}]})),
        MODEL,
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("tool_choice"));
    let json_answer = wire(
        bedrock::converse_body(
            &chat(json!({"model": "m", "reasoning_effort": "low", "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": "x"}]})),
            MODEL,
        )
        .unwrap(),
    );
    assert_eq!(json_answer["toolConfig"]["toolChoice"], json!({"auto": {}}));
}

#[test]
fn reasoning_with_a_tool_call_comes_back_signed() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Paris.", "signature": "sig-1"}}},
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"location": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 20}
    });
    let out = wire(to_openai(&body, MODEL, "chatcmpl-fixed", 1_700_000_000).unwrap());
    insta::assert_json_snapshot!("thinking_answer", out);
    assert_eq!(out["choices"][0]["message"]["thinking_blocks"][0]["signature"], "sig-1");
}
