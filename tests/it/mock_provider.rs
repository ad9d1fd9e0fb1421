//! The mock provider's exact wire shapes (insta snapshots), and the same answers through
//! the running server.

use crate::support::{sse_data, TestServer};
use ferrolite::api::anthropic::MessagesRequest;
use ferrolite::api::openai::{ChatRequest, CompletionRequest, EmbeddingRequest};
use ferrolite::providers::mock::{self, MockAnswer};
use serde_json::{json, Value};

const TEXT: &str = "This is a test response";

fn answer() -> MockAnswer<'static> {
    MockAnswer { text: TEXT, model: "gpt-3.5-turbo", id: "chatcmpl-fixed", created: 1_700_000_000 }
}

fn frames_text(frames: &[axum::body::Bytes]) -> String {
    frames.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
}

fn chat(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn chat_completion_shape() {
    let req = chat(
        json!({"model": "test-model", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]}),
    );
    insta::assert_json_snapshot!(mock::chat_response(&answer(), &req));
}

#[test]
fn chat_stream_framing_with_usage() {
    let req = chat(
        json!({"model": "test-model", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Hello!"}]}),
    );
    insta::assert_snapshot!(frames_text(&mock::chat_stream(&answer(), &req)));
}

#[test]
fn chat_stream_without_usage_has_no_usage_field() {
    let req = chat(json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}));
    let frames = mock::chat_stream(&answer(), &req);
    let text = frames_text(&frames);
    assert!(!text.contains("usage"), "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // role first chunk, one per word, finish chunk, [DONE]
    assert_eq!(data.len(), 1 + mock::deltas(TEXT).len() + 1 + 1);
    let joined: String = data[..data.len() - 1]
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(joined, TEXT);
}

#[test]
fn completion_shapes() {
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": "m", "prompt": "Once upon a time", "max_tokens": 50})).unwrap();
    insta::assert_json_snapshot!("completion_response", mock::completion_response(&answer(), &req));
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": "m", "prompt": "Once", "stream": true})).unwrap();
    insta::assert_snapshot!("completion_stream", frames_text(&mock::completion_stream(&answer(), &req)));
}

#[test]
fn anthropic_messages_shapes() {
    let req: MessagesRequest = serde_json::from_value(json!({"model": "m", "max_tokens": 100, "system": "Be brief.", "messages": [{"role": "user", "content": "Hello!"}]})).unwrap();
    let a = MockAnswer { id: "msg_fixed", ..answer() };
    insta::assert_json_snapshot!("messages_response", mock::messages_response(&a, &req));
    insta::assert_snapshot!("messages_stream", frames_text(&mock::messages_stream(&a, &req)));
}

#[test]
fn usage_is_counted_not_zero() {
    let req =
        chat(json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a long story about a dragon."}]}));
    let u = mock::chat_usage(&req, TEXT);
    assert!(u.prompt_tokens > 8 && u.completion_tokens >= 5, "{u:?}");
    let longer = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a long story about a dragon, a knight, and a castle by the sea."}]}),
    );
    assert!(mock::chat_usage(&longer, TEXT).prompt_tokens > u.prompt_tokens);
}

#[test]
fn embeddings_are_deterministic_unit_vectors() {
    let a = mock::embed("hello", 64);
    assert_eq!(a, mock::embed("hello", 64));
    assert_ne!(a, mock::embed("hello!", 64));
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);

    let req: EmbeddingRequest = serde_json::from_value(
        json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 4}),
    )
    .unwrap();
    let body = mock::embedding_response("text-embedding-3-small", &req).unwrap();
    insta::assert_json_snapshot!("embeddings_base64", body);
}

#[tokio::test]
async fn server_streams_chat_and_answers_messages() {
    let server = TestServer::demo().await;
    let response = server.post(server.demo_url("/v1/chat/completions"), &json!({"model": "demo-chat", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let data = sse_data(&response.text().await.unwrap());
    assert!(data.len() > 4, "several chunks: {data:?}");
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/messages"),
            &json!({"model": "demo-chat", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message");
    assert_eq!(
        body["content"][0]["text"],
        "Hello from ferrolite! This is the demo model answering without calling any provider."
    );
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let (status, body) = server
        .post_json(&server.demo_url("/completions"), &json!({"model": "demo-chat", "prompt": "Once upon a time"}))
        .await;
    assert_eq!(status, 200, "bare alias serves too: {body}");
    assert_eq!(body["object"], "text_completion");
}
