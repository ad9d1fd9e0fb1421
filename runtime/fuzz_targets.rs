//! Entry points for fuzzing: each takes arbitrary bytes and drives one parser or translation
//! the way untrusted input reaches it. `fuzz/` runs them under libFuzzer (`scripts/fuzz.sh`);
//! `tests/it/fuzz_regressions.rs` replays every input kept in `fuzz/regressions/` through the
//! same functions, so a crash once found stays fixed. None of them may panic.

use crate::api::openai::{ChatChunk, ChatRequest};
use crate::apps::session::{SecretSource, Session, SessionSpec};
use crate::providers::translate::{ChatProvider, StreamMeta};
use crate::providers::Deployment;
use crate::providers::{anthropic, bedrock, cohere, gemini, messages, ollama};
use crate::streaming::chat_chunks::ChunkWriter;
use crate::streaming::sse;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// A fuzz target: arbitrary bytes in, no panic out.
pub type Target = fn(&[u8]);

/// The fuzz targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/regressions/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("sse", sse_decoder),
    ("eventstream", event_stream),
    ("translate_request", translate_request),
    ("translate_response", translate_response),
    ("provider_streams", provider_streams),
    ("anthropic_events", anthropic_events),
    ("openai_chunks", openai_chunks),
    ("json_scan", json_scan),
    ("h1_answer", h1_answer),
    ("h1_request", h1_request),
];

/// Manifest text (JSON or YAML) through parsing and validation.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = crate::manifest::validate::parse_text(text) {
            let _ = crate::manifest::validate::validate(&doc);
            let _ = crate::manifest::litellm::is_litellm_config(&doc)
                .then(|| crate::manifest::litellm::to_manifest(&doc, "x"));
        }
    }
}

/// The JSON scan that reads an answer's usage, against serde_json: both must accept and refuse
/// the same texts, and where a valid text spells its keys plainly (no escapes) both must read
/// the same usage from it, and the stream event reader must tell OpenAI's usage-only chunk as
/// the parsed value shows it. The body reader that finds a layout (`json_edit::read`) must read
/// every text as serde_json does (the same value, or the same error), and members spliced into
/// bytes it found a layout in must read back as the value with those members set.
pub fn json_scan(data: &[u8]) {
    let scanned = crate::json_scan::members(data, |_, _| {});
    let serde = serde_json::from_slice::<serde::de::IgnoredAny>(data);
    assert_eq!(scanned.is_ok(), serde.is_ok(), "scan {scanned:?}, serde_json {serde:?}");
    if let (Ok(()), Ok(value)) = (scanned, serde_json::from_slice::<Value>(data)) {
        if !data.contains(&b'\\') {
            let usage = crate::exchange::usage::from_answer(data).ok().flatten();
            assert_eq!(usage, crate::exchange::usage::from_json(&value));
            let (event_usage, usage_only) = crate::exchange::usage::from_event(data).expect("a valid text");
            assert_eq!(event_usage, usage);
            let parsed_usage_only = value["choices"].as_array().is_some_and(Vec::is_empty)
                && value.get("usage").is_some_and(Value::is_object);
            assert_eq!(usage_only, parsed_usage_only);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    text_check(text);
    let read = crate::json_edit::read(text);
    match serde_json::from_str::<Value>(text) {
        Ok(value) => assert_eq!(read.as_ref().ok().map(|(v, _)| v), Some(&value)),
        Err(e) => assert_eq!(read.as_ref().err().map(ToString::to_string), Some(e.to_string())),
    }
    if let Ok((value, Some(layout))) = read {
        let sets: [(&str, &[u8]); 2] = [("model", b"\"fz\""), ("stream_options", b"{\"include_usage\":true}")];
        let spliced = crate::json_edit::set_members(data, &layout, &sets).expect("a layout takes two edits");
        let mut expected = value;
        if let Value::Object(map) = &mut expected {
            map.insert("model".into(), "fz".into());
            map.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
        }
        let read: Value = serde_json::from_slice(&spliced).expect("spliced bytes are JSON");
        assert_eq!(read, expected);
    }
}

/// The request-body check over text (`schema_check::text`) against the reader it stands in
/// for: a text it admits reads as a `Value` with the members it found, which the chat route's
/// schema accepts, and each member's tokens count over its text as over its value.
fn text_check(text: &str) {
    static CHAT: OnceLock<(crate::schema_check::text::Plan, jsonschema::Validator)> = OnceLock::new();
    let (plan, validator) = CHAT.get_or_init(|| {
        let schema = crate::catalogue::Operation::ChatCompletions.route().request_schema.unwrap_or("{}");
        let schema: Value = serde_json::from_str(schema).unwrap_or_default();
        let plan = crate::schema_check::text::Plan::compile(&schema).expect("the chat schema is walked");
        (plan, crate::schema_check::compile(&schema).expect("the chat schema compiles"))
    });
    let Some(found) = plan.check(text) else { return };
    let value: Value = serde_json::from_str(text).expect("an admitted text reads as a value");
    assert!(validator.is_valid(&value), "admitted, but jsonschema refuses");
    let fields = value.as_object().expect("an admitted text is an object");
    assert_eq!(found.members.len(), fields.len());
    for ((key, span), (name, field)) in found.members.iter().zip(fields) {
        assert_eq!(&text[key.clone()], name);
        assert_eq!(&serde_json::from_str::<Value>(&text[span.clone()]).expect("a member reads"), field);
        // A budget estimates an unread body's prompt over its text, as it would over its value.
        let counted = crate::tokenizer::count_json(&text[span.clone()]);
        assert_eq!(counted.tokens, crate::tokenizer::count_value(field), "{name}'s tokens");
        assert_eq!(counted.items, field.as_array().map(Vec::len), "{name}'s items");
    }
    // Each member read alone, as a request's fields are while its body stays unread.
    let body = crate::exchange::JsonBody::checked(bytes::Bytes::copy_from_slice(text.as_bytes()), found);
    for (name, field) in fields {
        assert_eq!(body.field(name), Some(field), "{name} read alone");
    }
}

/// Splits input at a point chosen by its first byte: the second half arrives as a later read.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let at = data.first().map(|b| *b as usize % (data.len() + 1)).unwrap_or(0);
    data.split_at(at.min(data.len()))
}

/// The SSE parser: two reads, and one byte at a time, give the events of one read.
pub fn sse_decoder(data: &[u8]) {
    let read = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut decoder = sse::Decoder::new();
        let mut events: Vec<sse::Event> = pieces.flat_map(|piece| decoder.feed(piece)).collect();
        events.extend(decoder.finish());
        events
    };
    let whole = read(&mut std::iter::once(data));
    let (a, b) = split(data);
    assert_eq!(read(&mut [a, b].into_iter()), whole, "two reads");
    assert_eq!(read(&mut data.chunks(1)), whole, "one byte at a time");
}

fn meta() -> StreamMeta {
    StreamMeta { id: "chatcmpl-fuzz".into(), created: 1, model: "m".into() }
}

/// Bedrock's binary event-stream decoder, fed in two reads.
pub fn event_stream(data: &[u8]) {
    let (a, b) = split(data);
    let mut decoder = bedrock::ConverseStreamDecoder::new(meta());
    use crate::providers::translate::ChunkDecoder;
    let _ = decoder.feed(a);
    let _ = decoder.feed(b);
    let _ = decoder.finish();
}

struct NoSecrets;

impl SecretSource for NoSecrets {
    fn env(&self, _: &str) -> Option<String> {
        None
    }
    fn workspace_secret(&self, _: &str) -> Option<String> {
        None
    }
}

/// One deployment per translating provider, built once.
fn deployments() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| {
        let params = |model: &str| {
            json!({"model": model, "api_key": "k", "api_base": "https://example.invalid",
            "aws_access_key_id": "AKID", "aws_secret_access_key": "secret", "aws_region_name": "us-east-1"})
        };
        let doc = json!({"name": "fuzz", "type": "llm-proxy", "config": {"model_list": [
            {"model_name": "a", "litellm_params": params("anthropic/claude-3-5-sonnet-20241022")},
            {"model_name": "g", "litellm_params": params("gemini/gemini-1.5-pro")},
            {"model_name": "b", "litellm_params": params("bedrock/anthropic.claude-3-sonnet-20240229-v1:0")},
            {"model_name": "oc", "litellm_params": params("ollama_chat/llama3.1")},
            {"model_name": "og", "litellm_params": params("ollama/llama3.1")},
            {"model_name": "co", "litellm_params": params("cohere/command-r-plus")},
        ]}});
        let manifest = serde_json::from_value(doc).expect("a fixed, valid manifest");
        let spec = SessionSpec {
            id: "fuzz".into(),
            app_id: "fuzz".into(),
            workspace: "w".into(),
            manifest: &manifest,
            created: 1,
            public_only: false,
            mcp_http: Default::default(),
        };
        Session::build(spec, &NoSecrets).expect("a fixed, valid session")
    })
}

fn deployment(i: usize) -> &'static Deployment {
    &deployments().table.deployments[i]
}

/// An OpenAI chat request (JSON) through each provider's request translation, and an
/// Anthropic Messages request through the /v1/messages front.
pub fn translate_request(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(req) = <crate::api::anthropic::MessagesRequest as serde::Deserialize>::deserialize(&value) {
        let _ = messages::to_chat_request(&req);
    }
    let Ok(req) = serde_json::from_value::<ChatRequest>(value) else { return };
    let _ = anthropic::messages_body(&req, deployment(0));
    let _ = gemini::generate_content_body(&req, "gemini-2.5-flash");
    let _ = bedrock::converse_body(&req, "anthropic.claude-sonnet-4-5");
    for (i, provider) in [
        (0, &anthropic::PROVIDER as &dyn ChatProvider),
        (1, &gemini::PROVIDER),
        (2, &bedrock::PROVIDER),
        (3, &ollama::CHAT),
        (4, &ollama::GENERATE),
        (5, &cohere::PROVIDER),
    ] {
        let _ =
            provider.chat_request(&req, deployment(i), "https://example.invalid/x".into(), req.stream == Some(true));
    }
}

/// A provider answer (JSON) through each response translation and error mapping.
pub fn translate_response(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let _ = anthropic::to_openai(&value, "m");
    let _ = gemini::to_openai(data, "m", "id", 1);
    let _ = bedrock::to_openai(data, "m", "id", 1);
    let _ = ollama::to_openai(data, "m", "id", 1);
    let _ = cohere::to_openai(data, "m", "id", 1);
    if let Ok(chat) = <crate::api::openai::ChatCompletion as serde::Deserialize>::deserialize(&value) {
        let _ = messages::to_anthropic_message(&chat);
    }
    let status = axum::http::StatusCode::BAD_REQUEST;
    for (i, provider) in [
        (0, &anthropic::PROVIDER as &dyn ChatProvider),
        (1, &gemini::PROVIDER),
        (2, &bedrock::PROVIDER),
        (3, &ollama::CHAT),
        (4, &ollama::GENERATE),
        (5, &cohere::PROVIDER),
    ] {
        let _ = provider.chat_response(data, deployment(i));
        let _ = provider.upstream_error(status, data, deployment(i));
    }
}

/// Upstream stream bytes through each provider's stream decoder, and the chunks through the
/// Anthropic event encoder.
pub fn provider_streams(data: &[u8]) {
    let (a, b) = split(data);
    for provider in [
        &anthropic::PROVIDER as &dyn ChatProvider,
        &gemini::PROVIDER,
        &crate::providers::openai::CHAT,
        &ollama::CHAT,
        &cohere::PROVIDER,
    ] {
        let mut decoder = provider.stream_decoder(meta());
        let mut events = messages::AnthropicEvents::new("m");
        // The chunks as OpenAI events: the writer that keeps a stream's head writes what serde does.
        let mut writer = ChunkWriter::new();
        let mut write = |chunks: &[ChatChunk]| {
            for chunk in chunks {
                assert_eq!(writer.event(chunk), sse::data(chunk), "{chunk:?}");
            }
        };
        for part in [a, b] {
            if let Ok(chunks) = decoder.feed(part) {
                write(&chunks);
                for chunk in &chunks {
                    let _ = events.push(chunk);
                }
            }
        }
        if let Ok(chunks) = decoder.finish() {
            write(&chunks);
        }
        let _ = events.finish();
    }
}

/// Anthropic stream events (each line's text after an optional `data:`, and the whole input as
/// one) through the hand reader of text deltas: what it reads, serde's reader reads the same.
pub fn anthropic_events(data: &[u8]) {
    for text in event_texts(data) {
        if let Some(fast) = anthropic::read_text_delta(text) {
            match anthropic::StreamEvent::read_with_serde(text) {
                Ok(slow) => assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text}"),
                Err(e) => panic!("the hand reader took what serde refuses ({e}): {text}"),
            }
        }
    }
}

/// OpenAI stream events (each line's text after an optional `data:`, and the whole input as
/// one) through the hand reader of chunks: what it reads, serde reads the same; and a stream's
/// id and model shared from one chunk to the next are the ones its text names.
pub fn openai_chunks(data: &[u8]) {
    let mut names = crate::providers::openai::ChunkNames::default();
    for text in event_texts(data) {
        if let Some(fast) = crate::providers::openai::read_chunk(text, &mut names) {
            match serde_json::from_str::<ChatChunk>(text) {
                Ok(slow) => assert_eq!(fast, slow, "{text}"),
                Err(e) => panic!("the hand reader took what serde refuses ({e}): {text}"),
            }
        }
    }
}

/// The event texts in fuzzed bytes: each UTF-8 line's text after an optional `data:`, and the
/// whole input as one.
fn event_texts(data: &[u8]) -> impl Iterator<Item = &str> {
    data.split(|&b| b == b'\n').chain(std::iter::once(data)).filter_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        Some(line.strip_prefix("data:").map_or(line, |t| t.strip_prefix(' ').unwrap_or(t)))
    })
}

/// An upstream's answer (status line, headers, a body framed by length, chunks with extensions
/// and trailers, or the close) through the reader of the lanes' own HTTP/1.1 client, as a GET's
/// and as a HEAD's answer, keeping every header and a provider's few. `tests/it/h1_differential.rs`
/// holds the same reader to hyper's.
pub fn h1_answer(data: &[u8]) {
    use crate::transport::{read_answer, AnswerHeaders};
    for method in [axum::http::Method::GET, axum::http::Method::HEAD] {
        let all = read_answer(data, &method, AnswerHeaders::All);
        if let Ok((status, body)) = &all {
            assert!(body.len() <= data.len(), "a body longer than the answer");
            assert!(method != axum::http::Method::HEAD || body.is_empty(), "a HEAD answer with a body ({status})");
        }
        // Keeping only a provider's few headers changes nothing of what is read, nor whether.
        let few = read_answer(data, &method, crate::providers::translate::READ_ANSWER_HEADERS);
        assert_eq!(all.as_ref().ok(), few.as_ref().ok(), "every header {all:?}, a provider's few {few:?}");
    }
}

/// A client's request (request line, headers, a body framed by length or chunks with extensions
/// and trailers) through the reader of ferrolite's own HTTP/1.1 server, as if the connection
/// ended where the bytes do. `tests/it/h1_server_differential.rs` holds the same reader to
/// hyper's server.
pub fn h1_request(data: &[u8]) {
    if let Ok((_, body)) = crate::http::h1::read_request(data) {
        assert!(body.len() <= data.len(), "a body longer than the request");
    }
}
