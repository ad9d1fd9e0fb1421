//! Bedrock end to end: ferrolite in front of tests/it/fake_bedrock.rs (which verifies every
//! SigV4 signature), driven by the real `openai` SDK and by plain HTTP.

use crate::fake_bedrock::{self, FakeBedrock};
use crate::python_sdk::run_script;
use crate::support::{read_json, sse_data, TestServer};
use ferrolite::api::openai::ChatRequest;
use ferrolite::providers::auth;
use ferrolite::providers::bedrock::{self, PROVIDER};
use ferrolite::providers::deployment::{AwsCredentials, Deployment, Secret};
use ferrolite::providers::translate::{ChatProvider, StreamMeta};
use ferrolite::providers::Provider;
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const KEY_ID: &str = "AKIAFAKEBEDROCK00001";
const SECRET: &str = "fAkE/bedrockSecret+0123456789abcdefEXAMPLE";
const REGION: &str = "us-west-2";
const UPSTREAM_MODEL: &str = "anthropic.claude-3-sonnet-20240229-v1:0";

/// An llm-proxy app with one Bedrock model, `bedrock-claude`, whose api_base is the fake.
fn manifest(dir: &Path, api_base: &str, secret: &str) -> PathBuf {
    let doc = json!({
        "name": "Bedrock app", "type": "llm-proxy", "version": "1.0.0",
        "config": {
            "service_id": "bedrock-app",
            "model_list": [{
                "model_name": "bedrock-claude",
                "litellm_params": {
                    "model": format!("bedrock/{UPSTREAM_MODEL}"),
                    "api_base": api_base,
                    "aws_access_key_id": KEY_ID,
                    "aws_secret_access_key": secret,
                    "aws_region_name": REGION
                }
            }],
            "litellm_settings": {"drop_params": true}
        }
    });
    let path = dir.join("bedrock-app.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

struct Setup {
    fake: FakeBedrock,
    server: TestServer,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A fake Bedrock, and a ferrolite whose deployment signs with `secret`.
    async fn new(secret: &str) -> Setup {
        let fake = fake_bedrock::start(KEY_ID, SECRET, REGION).await;
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url, secret)]).await;
        Setup { fake, server, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/default/apps/bedrock-app/v1{path}", self.server.base)
    }

    async fn stream(&self, body: Value) -> (u16, String) {
        let response = self
            .server
            .client
            .post(self.url("/chat/completions"))
            .bearer_auth(&self.server.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

fn deployment(api_base: &str, secret: &str) -> Deployment {
    Deployment {
        id: "bedrock-claude/0".into(),
        model_name: "bedrock-claude".into(),
        provider: Provider::Bedrock,
        upstream_model: UPSTREAM_MODEL.into(),
        api_base: Some(api_base.into()),
        public_only: false,
        api_key: None,
        api_version: None,
        aws: Some(AwsCredentials {
            access_key_id: Secret::new(KEY_ID.into()),
            secret_access_key: Secret::new(secret.into()),
            session_token: None,
            region: REGION.into(),
        }),
        vertex: None,
        mock_response: None,
        chat_only: false,
        params: Default::default(),
        model_info: None,
        credential_headers: Default::default(),
        id_header: Default::default(),
        upstream_model_json: Default::default(),
        extra_headers: Vec::new(),
        unavailable: None,
        catch_all: None,
    }
}

/// The provider's own functions over real HTTP, without the server: what `providers::chat`
/// does with them, so the signing (host with a port, the encoded model id) and the stream
/// decoding are checked against the fake whatever the wiring.
#[tokio::test]
async fn the_provider_speaks_to_the_fake_directly() {
    let fake = fake_bedrock::start(KEY_ID, SECRET, REGION).await;
    let d = deployment(&fake.base_url, SECRET);
    let client = reqwest::Client::new();
    let send = |request: ferrolite::providers::translate::UpstreamRequest| {
        let mut builder = client.request(request.method, &request.url).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        builder.send()
    };
    let url = |op: &str| format!("{}/model/anthropic.claude-3-sonnet-20240229-v1%3A0/{op}", fake.base_url);
    let req: ChatRequest =
        serde_json::from_value(json!({"model": "bedrock-claude", "tools": [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "messages": [{"role": "user", "content": "What is the weather in Oslo?"}]}))
        .unwrap();

    let response = send(auth::authorize(PROVIDER.chat_request(&req, &d, url("converse"), false).unwrap(), &d).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = crate::support::wire(PROVIDER.chat_response(&response.bytes().await.unwrap(), &d).unwrap());
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls", "{answer}");
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["arguments"], r#"{"location":"Oslo"}"#);

    let response =
        send(auth::authorize(PROVIDER.chat_request(&req, &d, url("converse-stream"), true).unwrap(), &d).unwrap())
            .await
            .unwrap();
    assert_eq!(response.headers()["content-type"], "application/vnd.amazon.eventstream");
    let meta = StreamMeta { id: "chatcmpl-x".into(), created: 1, model: UPSTREAM_MODEL.into() };
    let mut decoder = PROVIDER.stream_decoder(meta);
    let (mut chunks, mut reads) = (Vec::new(), 0);
    let mut body = response.bytes_stream();
    while let Some(bytes) = body.next().await {
        reads += 1;
        chunks.extend(crate::support::wires(decoder.feed(&bytes.unwrap()).unwrap()));
    }
    chunks.extend(crate::support::wires(decoder.finish().unwrap()));
    assert!(reads >= 5, "each frame is flushed on its own: {reads} reads");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str))
        .collect();
    assert_eq!(arguments, r#"{"location":"Oslo"}"#);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);

    // The wrong secret: the fake's 403, as the provider maps it.
    let wrong = deployment(&fake.base_url, "wrong-secret-wrong-secret");
    let response =
        send(auth::authorize(PROVIDER.chat_request(&req, &wrong, url("converse"), false).unwrap(), &wrong).unwrap())
            .await
            .unwrap();
    let status = response.status();
    let e = PROVIDER.upstream_error(status, &response.bytes().await.unwrap(), &wrong);
    assert_eq!((e.status.as_u16(), e.kind), (403, "permission_error"));
    assert!(e.message.starts_with("bedrock: The request signature we calculated does not match"), "{e}");
    assert_eq!(fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200, 403]);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_chats_streams_and_calls_tools_through_bedrock() {
    let s = Setup::new(SECRET).await;
    run_script("openai_sdk_bedrock.py", &s.url(""), &s.server.token).await;
    let requests = s.fake.requests();
    assert!(requests.len() >= 5, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 200), "the fake refused some: {requests:?}");
}

#[tokio::test]
async fn upstream_requests_are_signed_converse_calls() {
    let s = Setup::new(SECRET).await;
    let body = json!({"model": "bedrock-claude", "max_tokens": 50, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"}
    ]});
    let (status, answer) = s.server.post_json(&s.url("/chat/completions"), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: Hello there");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let usage = &answer["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap())
    );

    let sent = s.fake.requests().pop().unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse");
    assert!(sent.headers["authorization"].starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/")), "{sent:?}");
    assert!(sent.headers["authorization"].contains(&format!("/{REGION}/bedrock/aws4_request")));
    let req = serde_json::from_value::<ChatRequest>(body).unwrap();
    let expected_body = crate::support::wire(bedrock::converse_body(&req, UPSTREAM_MODEL).unwrap());
    assert_eq!(serde_json::from_slice::<Value>(&sent.body).unwrap(), expected_body);
    assert!(!String::from_utf8_lossy(&sent.body).contains(SECRET));
}

#[tokio::test]
async fn streams_arrive_as_openai_chunks_with_usage() {
    let s = Setup::new(SECRET).await;
    let (status, text) = s
        .stream(json!({"model": "bedrock-claude", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Tell me about the sea"}]}))
        .await;
    assert_eq!(status, 200, "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(content, "echo: Tell me about the sea");
    let finish: Vec<&Value> =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/finish_reason")).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = chunks.iter().find_map(|c| c.get("usage").filter(|u| !u.is_null())).expect("a usage chunk");
    assert!(
        usage["prompt_tokens"].as_u64().unwrap() > 0 && usage["completion_tokens"].as_u64().unwrap() == 6,
        "{usage}"
    );
    assert_eq!(
        s.fake.requests().pop().unwrap().path,
        "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse-stream"
    );
}

#[tokio::test]
async fn json_schema_answers_come_back_as_content() {
    let s = Setup::new(SECRET).await;
    let body = json!({"model": "bedrock-claude", "messages": [{"role": "user", "content": "Largest city in France?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {
            "type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}}}}}});
    let (status, answer) = s.server.post_json(&s.url("/chat/completions"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let content: Value = serde_json::from_str(answer["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"name": "fake", "population": 1}));
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(answer["choices"][0]["message"].get("tool_calls").is_none(), "{answer}");
}

#[tokio::test]
async fn a_wrong_secret_gets_bedrocks_403_as_an_openai_error() {
    let s = Setup::new("not-the-right-secret-at-all").await;
    let body = json!({"model": "bedrock-claude", "messages": [{"role": "user", "content": "Hello"}]});
    let response = s
        .server
        .client
        .post(s.url("/chat/completions"))
        .bearer_auth(&s.server.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (status, error) = read_json(response).await;
    assert_eq!(status, 403, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("bedrock: The request signature we calculated does not match"), "{error}");
    assert_eq!(error["error"]["type"], "permission_error");
    assert!(!error.to_string().contains("not-the-right-secret-at-all"));
    assert_eq!(s.fake.requests().pop().unwrap().status, 403);
}

#[tokio::test]
async fn a_stream_exception_reaches_the_client() {
    let s = Setup::new(SECRET).await;
    let (_, text) = s.stream(json!({"model": "bedrock-claude", "stream": true, "messages": [{"role": "user", "content": "please throttle me"}]})).await;
    // The chunks before the exception frame arrived; then the error, as an OpenAI error.
    let data = sse_data(&text);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant", "{text}");
    let error: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error", "{text}");
    assert_eq!(
        error["error"]["message"],
        "bedrock: throttlingException: Too many requests, please wait before trying again."
    );
}
