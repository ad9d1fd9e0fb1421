//! Bedrock embeddings end to end: `POST /v1/embeddings` on `bedrock/` Titan and Cohere embed
//! deployments, ferrolite in front of tests/it/fake_bedrock.rs (which verifies every SigV4
//! signature and checks each InvokeModel body against the model's schema), with the fake's log
//! showing what reached the upstream; the translated bodies as insta snapshots.

use crate::fake_bedrock::{self, FakeBedrock, Recorded, COHERE_DIMENSIONS, TITAN_V1_DIMENSIONS};
use crate::support::TestServer;
use ferrolite::api::openai::EmbeddingRequest;
use ferrolite::providers::bedrock_embedding::{self, Family};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const KEY_ID: &str = "AKIAFAKEBEDROCK00002";
const SECRET: &str = "fAkE/bedrockEmbedSecret+0123456789abcdefEX";
const REGION: &str = "eu-central-1";

/// An app `demo` with one deployment per embedding model (and a chat model, and a Titan that
/// signs with the wrong secret), all pointed at the fake.
fn manifest(dir: &Path, api_base: &str) -> PathBuf {
    let deployment = |name: &str, model: &str, secret: &str| {
        json!({"model_name": name, "litellm_params": {
            "model": format!("bedrock/{model}"), "api_base": api_base,
            "aws_access_key_id": KEY_ID, "aws_secret_access_key": secret, "aws_region_name": REGION,
        }})
    };
    let doc = json!({
        "name": "Bedrock embeddings", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": [
            deployment("titan-v1", "amazon.titan-embed-text-v1", SECRET),
            deployment("titan-v2", "amazon.titan-embed-text-v2:0", SECRET),
            deployment("cohere-en", "cohere.embed-english-v3", SECRET),
            deployment("cohere-multi", "cohere.embed-multilingual-v3", SECRET),
            deployment("claude", "anthropic.claude-3-haiku-20240307-v1:0", SECRET),
            deployment("titan-wrong-secret", "amazon.titan-embed-text-v1", "not/the+secret"),
        ]}
    });
    let path = dir.join("bedrock-embeddings.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

async fn setup() -> (FakeBedrock, TestServer, tempfile::TempDir) {
    let fake = fake_bedrock::start(KEY_ID, SECRET, REGION).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url)]).await;
    (fake, server, dir)
}

async fn embed(server: &TestServer, body: Value) -> (u16, Value) {
    server.post_json(&server.demo_url("/v1/embeddings"), &body).await
}

/// The InvokeModel calls the fake has seen.
fn invocations(fake: &FakeBedrock) -> Vec<Recorded> {
    fake.requests().into_iter().filter(|r| r.path.ends_with("/invoke")).collect()
}

fn body_of(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// The fake's vector for `text`, as JSON numbers (f32 printed as serde prints it).
fn fake_vector(text: &str, dimensions: usize, normalize: bool) -> Value {
    json!(fake_bedrock::embed_text(text, dimensions, normalize))
}

#[tokio::test]
async fn titan_embeds_each_input_in_its_own_signed_call_and_keeps_their_order() {
    let (fake, server, _dir) = setup().await;
    let inputs = ["the quick brown fox", "hello"];
    let (status, body) = embed(&server, json!({"model": "titan-v1", "input": inputs})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "titan-v1", "the model the client named");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, (item, text)) in data.iter().zip(inputs).enumerate() {
        assert_eq!((item["object"].as_str(), item["index"].as_u64()), (Some("embedding"), Some(i as u64)));
        assert_eq!(item["embedding"], fake_vector(text, TITAN_V1_DIMENSIONS, false), "input {i} keeps its place");
    }
    // Titan counts 4 and 1 tokens (the fake counts words): the usage is their sum.
    assert_eq!(body["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));

    let calls = invocations(&fake);
    assert_eq!(calls.len(), 2, "one InvokeModel call per input");
    for call in &calls {
        assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/model/amazon.titan-embed-text-v1/invoke"));
        assert_eq!(call.status, 200, "the fake verified the SigV4 signature");
        assert!(call.headers["authorization"].contains(&format!("/{REGION}/bedrock/aws4_request")));
    }
    let mut sent: Vec<Value> = calls.iter().map(body_of).collect();
    sent.sort_by_key(|b| b["inputText"].as_str().map(str::to_owned));
    insta::assert_json_snapshot!("titan_upstream_requests", sent);
}

#[tokio::test]
async fn titan_v2_takes_dimensions_and_normalize_and_answers_base64() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = embed(
        &server,
        json!({"model": "titan-v2", "input": "a single text", "dimensions": 256, "normalize": false,
            "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let encoded = body["data"][0]["embedding"].as_str().expect("base64 when asked");
    assert_eq!(encoded.len(), 1368, "base64 of 256 little-endian f32s");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let floats: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(floats, fake_bedrock::embed_text("a single text", 256, false));
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let calls = invocations(&fake);
    assert_eq!(calls[0].path, "/model/amazon.titan-embed-text-v2%3A0/invoke", "the model id's `:` escaped");
    assert_eq!(body_of(&calls[0]), json!({"inputText": "a single text", "dimensions": 256, "normalize": false}));

    // v1 has one size: `dimensions` is refused here (drop_params is off) before any call.
    let (status, body) = embed(&server, json!({"model": "titan-v1", "input": "x", "dimensions": 256})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "dimensions", "{body}");
    assert_eq!(invocations(&fake).len(), 1);
}

#[tokio::test]
async fn cohere_embeds_every_input_in_one_call_with_an_input_type() {
    let (fake, server, _dir) = setup().await;
    let inputs = ["Carson City is the capital of Nevada.", "What is the capital of Nevada?"];
    let (status, body) =
        embed(&server, json!({"model": "cohere-en", "input": inputs, "input_type": "search_query", "truncate": "END"}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "cohere-en");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, text) in inputs.iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        assert_eq!(data[i]["embedding"], fake_vector(text, COHERE_DIMENSIONS, false));
    }
    // From the x-amzn-bedrock-input-token-count header: 7 + 6 words.
    assert_eq!(body["usage"], json!({"prompt_tokens": 13, "total_tokens": 13}));
    let calls = invocations(&fake);
    assert_eq!(calls.len(), 1, "Cohere takes every text at once");
    assert_eq!(calls[0].path, "/model/cohere.embed-english-v3/invoke");
    assert_eq!(calls[0].status, 200);
    insta::assert_json_snapshot!("cohere_upstream_request", body_of(&calls[0]));

    // Without an input_type: search_document, as litellm sends.
    let (status, body) = embed(&server, json!({"model": "cohere-multi", "input": "Guten Tag"})).await;
    assert_eq!(status, 200, "{body}");
    let last = invocations(&fake).pop().unwrap();
    assert_eq!(last.path, "/model/cohere.embed-multilingual-v3/invoke");
    assert_eq!(body_of(&last), json!({"texts": ["Guten Tag"], "input_type": "search_document"}));
}

#[tokio::test]
async fn upstream_errors_come_back_as_openai_errors() {
    let (fake, server, _dir) = setup().await;
    // Titan refuses an empty text: Bedrock's ValidationException, as a 400 invalid_request_error.
    let (status, body) = embed(&server, json!({"model": "titan-v1", "input": ["fine", ""]})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("bedrock: Malformed input request: #/inputText: expected minLength: 1"), "{message}");

    // Cohere takes at most 96 texts a call.
    let many: Vec<String> = (0..97).map(|i| format!("text {i}")).collect();
    let (status, body) = embed(&server, json!({"model": "cohere-en", "input": many})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expected maxItems: 96"), "{body}");

    // A bad signature: AWS's 403, as a permission_error, and the secret nowhere in it.
    let (status, body) = embed(&server, json!({"model": "titan-wrong-secret", "input": "hello"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("signature"), "{body}");
    assert!(!body.to_string().contains("not/the+secret"));

    // A model Bedrock embeds nothing with here: refused before any call.
    let before = invocations(&fake).len();
    let (status, body) = embed(&server, json!({"model": "claude", "input": "hello"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "model", "{body}");
    assert_eq!(invocations(&fake).len(), before);
}

#[tokio::test]
async fn token_id_inputs_are_refused_naming_input() {
    let (fake, server, _dir) = setup().await;
    for input in [json!([1, 2, 3]), json!([[1, 2], [3]]), json!(["text", [4, 5]])] {
        for model in ["titan-v2", "cohere-en"] {
            let (status, body) = embed(&server, json!({"model": model, "input": input})).await;
            assert_eq!(status, 400, "{model} {input}: {body}");
            assert_eq!(body["error"]["param"], "input", "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("token ids"), "{body}");
        }
    }
    let (status, body) = embed(&server, json!({"model": "titan-v2", "input": []})).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("input")), "{body}");
    assert!(invocations(&fake).is_empty(), "nothing went upstream");
}

#[test]
fn the_model_id_picks_the_body() {
    assert_eq!(Family::of("amazon.titan-embed-text-v1"), Some(Family::TitanV1));
    assert_eq!(Family::of("amazon.titan-embed-text-v2:0"), Some(Family::TitanV2));
    assert_eq!(Family::of("cohere.embed-english-v3"), Some(Family::Cohere));
    assert_eq!(Family::of("us.cohere.embed-multilingual-v3"), Some(Family::Cohere));
    assert_eq!(Family::of("anthropic.claude-3-haiku-20240307-v1:0"), None);
    let req: EmbeddingRequest =
        serde_json::from_value(json!({"model": "m", "input": ["a", "b"], "normalize": true, "dimensions": 512}))
            .unwrap();
    let texts = bedrock_embedding::texts(&req).unwrap();
    assert_eq!(texts, ["a", "b"]);
    let v2 = bedrock_embedding::titan_body(&req, Family::TitanV2, texts[0]).unwrap();
    assert_eq!(crate::support::wire(v2), json!({"inputText": "a", "dimensions": 512, "normalize": true}));
    let err = bedrock_embedding::titan_body(&req, Family::TitanV1, texts[0]).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("normalize"));
}

/// The real `openai` SDK (which asks for base64 and decodes it) reads the answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_reads_bedrock_embeddings() {
    let (_fake, server, _dir) = setup().await;
    crate::python_sdk::run_script("bedrock_embeddings.py", &server.demo_url("/v1"), &server.token).await;
}
