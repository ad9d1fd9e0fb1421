//! Token counting on every provider: `POST /v1/messages/count_tokens` and
//! `POST /v1/responses/input_tokens` answered by the provider's own counting call (Anthropic's
//! count_tokens, Gemini's countTokens, OpenAI's input_tokens) where it has one, by ferrolite's
//! estimate elsewhere and whenever that call fails, with `x-ferrolite-token-count` saying which;
//! and the real SDKs' `messages.count_tokens` and `responses.input_tokens.count`.

use crate::fake_anthropic::{self, FakeAnthropic};
use crate::fake_gemini::{self, FakeGemini};
use crate::fake_openai::{self, FakeOpenAi};
use crate::support::{read_json, DeadPort, TestServer};
use serde_json::{json, Value};

const ANTHROPIC_KEY: &str = "sk-ant-fake-count-1";
const GEMINI_KEY: &str = "AIzaSy-fake-count-0001";
const OPENAI_KEY: &str = "sk-fake-count-openai-1";

/// A deployment of every kind behind one app, and the upstreams they call.
struct Setup {
    server: TestServer,
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    openai: FakeOpenAi,
    _nowhere: DeadPort,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let gemini = FakeGemini::start(GEMINI_KEY).await;
    let openai = FakeOpenAi::start(OPENAI_KEY).await;
    let v1 = openai.base_url.clone();
    // Nothing listens there: the estimate never calls it, and a count asked of it fails.
    let dead = DeadPort::new();
    let nowhere = dead.url("");
    let doc = json!({"name": "Counting everywhere", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": anthropic.base_url, "api_key": ANTHROPIC_KEY}},
        {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-1.5-pro", "api_base": gemini.base_url, "api_key": GEMINI_KEY}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": v1, "api_key": OPENAI_KEY}},
        {"model_name": "vllm", "litellm_params": {"model": "hosted_vllm/llama-3", "api_base": v1, "api_key": OPENAI_KEY}},
        {"model_name": "bedrock", "litellm_params": {"model": "bedrock/anthropic.claude-3-sonnet-20240229-v1:0", "api_base": nowhere,
            "aws_access_key_id": "AKIAFAKECOUNT0000001", "aws_secret_access_key": "fAkE/countSecret+0123456789abcdefEXAMPLE", "aws_region_name": "us-east-1"}},
        {"model_name": "mock", "litellm_params": {"model": "gpt-4o", "mock_response": "Hello from the mock"}},
        {"model_name": "claude-down", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": nowhere, "api_key": ANTHROPIC_KEY}}
    ]}});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counting.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    Setup { server, anthropic, gemini, openai, _nowhere: dead, _dir: dir }
}

/// A counting route's answer: status, body, and what `x-ferrolite-token-count` and
/// `x-ferrolite-token-count-fallback` say.
struct Counted {
    status: u16,
    body: Value,
    source: Option<String>,
    fallback: Option<String>,
    cost: Option<f64>,
}

async fn count(s: &Setup, path: &str, body: Value) -> Counted {
    let response = s.server.post(s.server.demo_url(path), &body).await;
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (source, fallback) = (header("x-ferrolite-token-count"), header("x-ferrolite-token-count-fallback"));
    let cost = header("x-ferrolite-cost").and_then(|c| c.parse().ok());
    let (status, body) = read_json(response).await;
    Counted { status, body, source, fallback, cost }
}

fn from(source: &str) -> Option<String> {
    Some(source.to_owned())
}

fn weather_tool_anthropic() -> Value {
    json!({"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

#[tokio::test]
async fn anthropic_counts_a_messages_prompt_with_its_count_tokens() {
    let s = setup().await;
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let prompt = json!({"model": "claude", "max_tokens": 64, "temperature": 0.5, "system": "You are terse.",
                        "messages": [question], "tools": [weather_tool_anthropic()]});
    let c = count(&s, "/v1/messages/count_tokens", prompt).await;
    // 10, a turn (4 and 6 words), the system prompt (3), the tool (name 1, description 5, required 1).
    assert_eq!((c.status, &c.body), (200, &json!({"input_tokens": 30})));
    assert_eq!((c.source, c.fallback), (from("provider"), None));
    assert_eq!(c.cost, Some(0.0), "a count books no tokens");

    let sent = s.anthropic.recorded().pop().expect("the fake was asked");
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.headers.get("x-api-key").map(String::as_str), Some(ANTHROPIC_KEY));
    assert!(sent.headers.contains_key("anthropic-version"));
    // The deployment's model; generation settings, which count_tokens refuses, left out.
    assert_eq!(
        sent.body,
        json!({"model": "claude-3-5-sonnet-20241022", "system": "You are terse.", "messages": [question],
               "tools": [weather_tool_anthropic()]})
    );
}

#[tokio::test]
async fn anthropic_counts_a_responses_prompt_translated_to_messages() {
    let s = setup().await;
    let prompt = json!({"model": "claude", "instructions": "You are terse.", "max_output_tokens": 50,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}],
        "tools": [{"type": "function", "name": "get_weather", "description": "Current weather for a city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]});
    for path in ["/v1/responses/input_tokens", "/responses/input_tokens"] {
        let c = count(&s, path, prompt.clone()).await;
        assert_eq!(
            (c.status, &c.body),
            (200, &json!({"object": "response.input_tokens", "input_tokens": 30})),
            "{path}"
        );
        assert_eq!((c.source, c.fallback), (from("provider"), None));
    }
    let sent = s.anthropic.recorded().pop().expect("the fake was asked");
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    // What `POST /v1/responses` would send, less what count_tokens refuses (`max_tokens`, ...).
    assert_eq!(
        sent.body,
        json!({"model": "claude-3-5-sonnet-20241022", "system": "You are terse.",
               "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
               "tools": [weather_tool_anthropic()]})
    );
}

#[tokio::test]
async fn gemini_counts_both_prompts_with_count_tokens() {
    let s = setup().await;
    let expected = json!({"generateContentRequest": {
        "model": "models/gemini-1.5-pro",
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
    }});
    let messages = json!({"model": "gemini", "system": "You are terse.", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "Hello there"}]});
    let c = count(&s, "/v1/messages/count_tokens", messages).await;
    // 5, two words of contents, three of the system instruction.
    assert_eq!((c.status, &c.body), (200, &json!({"input_tokens": 10})));
    assert_eq!((c.source, c.fallback), (from("provider"), None));
    let sent = s.gemini.last(":countTokens").expect("the fake was asked");
    assert_eq!(sent.path, "/v1beta/models/gemini-1.5-pro:countTokens");
    assert_eq!(sent.headers.get("x-goog-api-key").map(String::as_str), Some(GEMINI_KEY));
    assert_eq!(sent.json(), expected);
    assert_eq!(fake_gemini::count_of(&sent.json()["generateContentRequest"]), 10);

    let responses = json!({"model": "gemini", "instructions": "You are terse.", "input": "Hello there"});
    let c = count(&s, "/v1/responses/input_tokens", responses).await;
    assert_eq!((c.status, &c.body), (200, &json!({"object": "response.input_tokens", "input_tokens": 10})));
    assert_eq!(c.source, from("provider"));
    assert_eq!(s.gemini.last(":countTokens").unwrap().json(), expected);
}

#[tokio::test]
async fn openai_counts_responses_prompts_itself_and_messages_prompts_are_estimated() {
    let s = setup().await;
    let prompt = json!({"model": "gpt", "instructions": "You are terse.", "input": "Hello there"});
    let c = count(&s, "/v1/responses/input_tokens", prompt).await;
    // 7, three words of instructions, two of input.
    assert_eq!((c.status, &c.body), (200, &json!({"object": "response.input_tokens", "input_tokens": 12})));
    assert_eq!((c.source, c.fallback), (from("provider"), None));
    let sent = s.openai.last("/v1/responses/input_tokens").expect("the fake was asked");
    assert_eq!(sent.headers.get("authorization").map(String::as_str), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body, json!({"model": "gpt-4o", "instructions": "You are terse.", "input": "Hello there"}));
    assert_eq!(fake_openai::input_token_count(&body), 12);

    let asked = s.openai.requests().len();
    let messages = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hello there"}]});
    let c = count(&s, "/v1/messages/count_tokens", messages).await;
    assert_eq!((c.status, &c.body, c.source), (200, &json!({"input_tokens": 8}), from("estimate")));
    assert_eq!(s.openai.requests().len(), asked, "OpenAI has no count of Messages prompts");
}

#[tokio::test]
async fn deployments_without_a_counting_call_get_the_estimate() {
    let s = setup().await;
    // "Hello there": 3 for the turn, 2 for its words, 3 to prime the reply.
    for model in ["vllm", "bedrock", "mock"] {
        let messages = json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]});
        let c = count(&s, "/v1/messages/count_tokens", messages).await;
        assert_eq!((c.status, &c.body), (200, &json!({"input_tokens": 8})), "{model}");
        assert_eq!((c.source, c.fallback), (from("estimate"), None), "{model}");
        let responses = json!({"model": model, "input": "Hello there"});
        let c = count(&s, "/v1/responses/input_tokens", responses).await;
        assert_eq!(
            (c.status, &c.body),
            (200, &json!({"object": "response.input_tokens", "input_tokens": 8})),
            "{model}"
        );
        assert_eq!((c.source, c.fallback), (from("estimate"), None), "{model}");
    }
    assert!(s.openai.requests().is_empty(), "a chat-only server was not asked to count");
}

#[tokio::test]
async fn a_provider_count_that_fails_falls_back_to_the_estimate() {
    let s = setup().await;
    // "Say server error": 3 for the turn, 3 for its words, 3 to prime the reply.
    let failing = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Say server error"}]});
    let c = count(&s, "/v1/messages/count_tokens", failing("claude")).await;
    assert_eq!((c.status, &c.body), (200, &json!({"input_tokens": 9})));
    assert_eq!((c.source, c.fallback), (from("estimate"), from("500 api_error")));
    assert_eq!(s.anthropic.recorded().len(), 1, "Anthropic was asked first");

    let c = count(&s, "/v1/messages/count_tokens", failing("gemini")).await;
    assert_eq!((c.status, &c.body["input_tokens"]), (200, &json!(9)));
    assert_eq!((c.source, c.fallback), (from("estimate"), from("500 INTERNAL")));

    let c = count(&s, "/v1/responses/input_tokens", json!({"model": "gpt", "input": "Say server error"})).await;
    assert_eq!((c.status, &c.body), (200, &json!({"object": "response.input_tokens", "input_tokens": 9})));
    assert_eq!((c.source, c.fallback), (from("estimate"), from("500 upstream_error")));

    let c = count(&s, "/v1/messages/count_tokens", failing("claude-down")).await;
    assert_eq!((c.status, &c.body["input_tokens"]), (200, &json!(9)));
    assert_eq!((c.source, c.fallback), (from("estimate"), from("502 upstream_unreachable")));
}

#[tokio::test]
async fn a_bad_counting_body_is_a_400_naming_the_field() {
    let s = setup().await;
    let c = count(&s, "/v1/messages/count_tokens", json!({"model": "claude"})).await;
    assert_eq!((c.status, &c.body["error"]["param"]), (400, &json!("messages")), "{}", c.body);
    let c = count(&s, "/v1/responses/input_tokens", json!({"model": "claude", "input": 5})).await;
    assert_eq!((c.status, &c.body["error"]["param"]), (400, &json!("input")), "{}", c.body);
    let c = count(&s, "/v1/responses/input_tokens", json!({"input": "Hello there"})).await;
    assert_eq!((c.status, &c.body["error"]["param"]), (400, &json!("model")), "{}", c.body);
    // What the provider's translation refuses is the client's error too, not a reason to estimate.
    let c = count(&s, "/v1/responses/input_tokens", json!({"model": "claude", "input": []})).await;
    assert_eq!((c.status, &c.body["error"]["param"]), (400, &json!("input")), "{}", c.body);
    assert!(s.anthropic.recorded().is_empty(), "nothing bad went upstream");
}

#[tokio::test]
async fn a_continued_conversation_counts_its_earlier_turns() {
    let s = setup().await;
    let (status, first) = s
        .server
        .post_json(&s.server.demo_url("/v1/responses"), &json!({"model": "claude", "input": "Hello there"}))
        .await;
    assert_eq!(status, 200, "{first}");
    let continued = json!({"model": "claude", "previous_response_id": first["id"], "input": "And again"});
    let c = count(&s, "/v1/responses/input_tokens", continued).await;
    assert_eq!((c.status, c.source), (200, from("provider")), "{}", c.body);
    let sent = s.anthropic.recorded().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    let roles: Vec<&str> =
        sent.body["messages"].as_array().unwrap().iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(c.body["input_tokens"], json!(fake_anthropic::count_of(&sent.body)));

    let unknown = json!({"model": "claude", "previous_response_id": "resp_unknown", "input": "Hi"});
    let c = count(&s, "/v1/responses/input_tokens", unknown).await;
    assert_eq!((c.status, &c.body["error"]["param"]), (404, &json!("previous_response_id")), "{}", c.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_count_tokens_through_ferrolite() {
    let s = setup().await;
    crate::python_sdk::run_script("sdk_token_counting.py", &s.server.demo_url(""), &s.server.token).await;
    let counted = |path: &str| s.anthropic.recorded().iter().filter(|r| r.path == path).count();
    assert_eq!(counted("/v1/messages/count_tokens"), 2, "the anthropic and the openai SDK's counts of claude");
    assert!(s.gemini.last(":countTokens").is_some());
    assert!(s.openai.last("/v1/responses/input_tokens").is_some());
}
