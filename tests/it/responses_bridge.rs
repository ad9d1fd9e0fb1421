//! OpenAI's Responses API on every provider: `POST /v1/responses` translated through each
//! deployment's chat translation (Anthropic, Gemini, Bedrock, a chat-only OpenAI-compatible
//! server, mock) and passed through to an OpenAI upstream that has the route; JSON, the
//! event stream, a function call round trip, `drop_params` for hosted tools, and the real
//! `openai` SDK's `responses.create` / `responses.stream`.

use crate::fake_anthropic::FakeAnthropic;
use crate::fake_bedrock::FakeBedrock;
use crate::fake_gemini::FakeGemini;
use crate::fake_openai::FakeOpenAi;
use crate::support::TestServer;
use serde_json::{json, Value};

const ANTHROPIC_KEY: &str = "sk-ant-fake-responses-1";
const GEMINI_KEY: &str = "AIzaSy-fake-responses-0001";
const OPENAI_KEY: &str = "sk-fake-responses-openai-1";
const AWS_KEY_ID: &str = "AKIAFAKERESPONSES001";
const AWS_SECRET: &str = "fAkE/responsesSecret+0123456789abcdefEXAMPLE";
const REGION: &str = "us-east-1";

/// Every kind of deployment behind one app, and the upstreams they call.
struct Setup {
    server: TestServer,
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    bedrock: FakeBedrock,
    openai: FakeOpenAi,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let gemini = FakeGemini::start(GEMINI_KEY).await;
    let bedrock = crate::fake_bedrock::start(AWS_KEY_ID, AWS_SECRET, REGION).await;
    let openai = FakeOpenAi::start(OPENAI_KEY).await;
    let v1 = openai.base_url.clone();
    let doc = json!({"name": "Responses everywhere", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "mock", "litellm_params": {"model": "gpt-4o", "mock_response": "Hello from the mock"}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": anthropic.base_url, "api_key": ANTHROPIC_KEY}},
        {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-1.5-pro", "api_base": gemini.base_url, "api_key": GEMINI_KEY}},
        {"model_name": "bedrock", "litellm_params": {"model": "bedrock/anthropic.claude-3-sonnet-20240229-v1:0", "api_base": bedrock.base_url,
            "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET, "aws_region_name": REGION}},
        {"model_name": "vllm", "litellm_params": {"model": "hosted_vllm/llama-3", "api_base": v1, "api_key": OPENAI_KEY}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": v1, "api_key": OPENAI_KEY}}
    ]}});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("responses.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    Setup { server, anthropic, gemini, bedrock, openai, _dir: dir }
}

/// What each translated deployment answers "Hello there" with.
const TRANSLATED: &[(&str, &str)] = &[
    ("mock", "Hello from the mock"),
    ("claude", "Hello from fake Claude! You said: Hello there"),
    ("gemini", "echo: Hello there"),
    ("bedrock", "echo: Hello there"),
    ("vllm", "echo: Hello there"),
];

async fn create(s: &Setup, body: Value) -> (u16, Value) {
    s.server.post_json(&s.server.demo_url("/v1/responses"), &body).await
}

/// The text of a response's message items.
fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().into_iter().flatten())
        .filter_map(|part| part["text"].as_str())
        .collect()
}

/// A stream's events as (SSE event name, data).
async fn events(s: &Setup, mut body: Value) -> Vec<(String, Value)> {
    body["stream"] = json!(true);
    let response = s.server.post(s.server.demo_url("/v1/responses"), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).expect("a named event").to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
            (name, serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}")))
        })
        .collect()
}

/// Checks what every Responses stream must hold and returns the completed response.
fn check_sequence(model: &str, events: &[(String, Value)]) -> Value {
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["response.created", "response.in_progress"], "{model}: {names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{model}: {names:?}");
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "{model}: the event name is its type");
        assert_eq!(data["sequence_number"], i, "{model}: sequence numbers count up from 0");
    }
    let completed = events.last().unwrap().1["response"].clone();
    assert_eq!(completed["status"], "completed", "{model}");
    assert_eq!(completed["id"], events[0].1["response"]["id"], "{model}: one id throughout");
    completed
}

#[tokio::test(flavor = "multi_thread")]
async fn every_provider_answers_a_responses_request() {
    let s = setup().await;
    for (model, text) in TRANSLATED {
        let (status, body) =
            create(&s, json!({"model": model, "input": "Hello there", "instructions": "Be kind."})).await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(
            (body["object"].as_str(), body["status"].as_str()),
            (Some("response"), Some("completed")),
            "{model}"
        );
        assert!(body["id"].as_str().unwrap().starts_with("resp_"), "{model}: {body}");
        assert_eq!(output_text(&body), *text, "{model}: {body}");
        assert_eq!(body["output"][0]["role"], "assistant");
        assert_eq!(body["instructions"], "Be kind.", "{model}: the request is echoed");
        let usage = &body["usage"];
        assert!(
            usage["input_tokens"].as_u64().unwrap() > 0 && usage["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {usage}"
        );
        assert_eq!(
            usage["total_tokens"],
            usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
        );
    }
    // The chat-only server was asked through chat completions, with the instructions as a system turn.
    let chat = s.openai.last("/v1/chat/completions").expect("vllm went through chat completions");
    let sent: Value = serde_json::from_slice(&chat.body).unwrap();
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Be kind."}));
    assert!(s.openai.last("/v1/responses").is_none(), "nothing reached the upstream's /responses yet");
    // An OpenAI deployment that has the route is passed through.
    let (status, body) = create(&s, json!({"model": "gpt", "input": "Hello there"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.openai.last("/v1/responses").is_some(), "gpt went to the upstream's /responses");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_provider_streams_the_responses_event_sequence() {
    let s = setup().await;
    for (model, text) in TRANSLATED {
        let events = events(&s, json!({"model": model, "input": "Hello there"})).await;
        let completed = check_sequence(model, &events);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        let message_events =
            ["response.output_item.added", "response.content_part.added", "response.output_text.delta"];
        assert_eq!(names[2..5], message_events, "{model}: {names:?}");
        let deltas: Vec<&Value> =
            events.iter().filter(|(n, _)| n == "response.output_text.delta").map(|(_, d)| d).collect();
        let joined: String = deltas.iter().filter_map(|d| d["delta"].as_str()).collect();
        assert_eq!(joined, *text, "{model}: the deltas add up to the text");
        if *model != "mock" {
            assert!(deltas.len() >= 2, "{model}: one delta per upstream chunk, never merged ({})", deltas.len());
        }
        let done = |name: &str| events.iter().find(|(n, _)| n == name).map(|(_, d)| d.clone()).unwrap();
        assert_eq!(done("response.output_text.done")["text"], *text, "{model}");
        assert_eq!(done("response.content_part.done")["part"]["text"], *text, "{model}");
        let item = done("response.output_item.done")["item"].clone();
        assert_eq!((item["type"].as_str(), item["status"].as_str()), (Some("message"), Some("completed")), "{model}");
        let item_id = item["id"].clone();
        for (name, data) in &events[2..events.len() - 1] {
            let id = if name.starts_with("response.output_item") { &data["item"]["id"] } else { &data["item_id"] };
            assert_eq!(id, &item_id, "{model}: {name} names its item");
            assert_eq!(data["output_index"], 0, "{model}: {name}");
        }
        assert_eq!(output_text(&completed), *text, "{model}: the completed response holds the output");
        assert!(completed["usage"]["output_tokens"].as_u64().unwrap() > 0, "{model}: {completed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_call_round_trip_on_every_translating_provider() {
    let s = setup().await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let question = "What is the weather in Oslo?";
    for (model, after) in
        [("claude", "The tool said: rain"), ("gemini", "get_weather says: rain"), ("bedrock", "The tool said: rain")]
    {
        let (status, first) = create(&s, json!({"model": model, "input": question, "tools": tools})).await;
        assert_eq!(status, 200, "{model}: {first}");
        let call = first["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").cloned();
        let call = call.unwrap_or_else(|| panic!("{model}: no function call in {first}"));
        assert_eq!(
            (call["name"].as_str(), call["status"].as_str()),
            (Some("get_weather"), Some("completed")),
            "{model}"
        );
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(arguments.is_object(), "{model}: {arguments}");
        let input = json!([
            {"role": "user", "content": question},
            {"type": "function_call", "call_id": call["call_id"], "name": "get_weather", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "rain"}
        ]);
        let (status, second) = create(&s, json!({"model": model, "input": input, "tools": tools})).await;
        assert_eq!(status, 200, "{model}: {second}");
        assert_eq!(output_text(&second), after, "{model}: {second}");

        // The same call, streamed: its item, its argument deltas, its done events.
        let events = events(&s, json!({"model": model, "input": question, "tools": tools})).await;
        let completed = check_sequence(model, &events);
        let added =
            events.iter().find(|(n, d)| n == "response.output_item.added" && d["item"]["type"] == "function_call");
        let (_, added) = added.unwrap_or_else(|| panic!("{model}: no function call item in {events:?}"));
        assert_eq!(
            (added["item"]["name"].as_str(), added["item"]["arguments"].as_str()),
            (Some("get_weather"), Some(""))
        );
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        let done = events.iter().find(|(n, _)| n == "response.function_call_arguments.done").unwrap();
        assert_eq!(done.1["arguments"].as_str(), Some(deltas.as_str()), "{model}");
        let item =
            completed["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").unwrap().clone();
        assert_eq!(item["arguments"].as_str(), Some(deltas.as_str()), "{model}");
        assert_eq!(item["call_id"], added["item"]["call_id"], "{model}");
    }
    let sent = s.anthropic.requests().last().cloned().unwrap();
    assert_eq!(sent["tools"][0]["name"], "get_weather", "tools reach the provider in its own shape: {sent}");
    assert!(!s.gemini.requests().is_empty() && !s.bedrock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn hosted_tools_and_malformed_items_are_refused_clearly() {
    let s = setup().await;
    let (status, err) = create(&s, json!({"model": "claude", "input": "hi", "tools": [{"type": "web_search"}]})).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "tools[type=web_search]");
    assert!(err["error"]["message"].as_str().unwrap().contains("drop_params"), "{err}");
    let (status, err) = create(&s, json!({"model": "mock", "input": [{"type": "function_call"}]})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("input[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_speaks_responses_to_every_provider() {
    let s = setup().await;
    crate::python_sdk::run_script("openai_sdk_responses.py", &s.server.demo_url("/v1"), &s.server.token).await;
}

#[test]
fn a_responses_request_becomes_a_chat_request() {
    let body = json!({
        "model": "claude", "instructions": "Be brief.", "max_output_tokens": 300, "temperature": 0.1, "top_p": 0.9,
        "parallel_tool_calls": false, "user": "u-1", "reasoning": {"effort": "medium"}, "stream": true,
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}},
        "tools": [
            {"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "namespace", "name": "mcp__files", "tools": [{"type": "function", "name": "read", "parameters": {"type": "object"}}]}
        ],
        "tool_choice": "required",
        "input": [
            {"role": "developer", "content": "Use the tools."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is here, and the weather?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
            ]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "read", "namespace": "mcp__files", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "a file"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thought"}]},
            {"role": "user", "content": "Thanks!"}
        ]
    });
    let req = serde_json::from_value(body).expect("a Responses request");
    let translated = ferrolite::providers::responses::request::to_chat_request(&req, false, "claude").unwrap();
    insta::assert_json_snapshot!(serde_json::to_value(&translated.chat).unwrap());
}

/// A shell with a fixed id and time, so snapshots hold still.
fn fixed_shell(body: &Value) -> ferrolite::providers::responses::answer::Shell {
    let req = serde_json::from_value(body.clone()).unwrap();
    let names = ferrolite::providers::responses::request::to_chat_request(&req, true, "claude").unwrap().names;
    let mut shell = ferrolite::providers::responses::answer::Shell::new(&req, body, names, "upstream-model", "claude");
    shell.id = "resp_0123".into();
    shell.created_at = 1_700_000_000;
    shell
}

#[test]
fn a_chat_answer_becomes_a_response() {
    let body = json!({"model": "m", "input": "hi", "tools": [{"type": "namespace", "name": "mcp__git", "tools": [{"type": "function", "name": "log"}]}]});
    let chat = serde_json::from_value(json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "upstream-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "reasoning_content": "The log will tell.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "mcp__git__log", "arguments": "{}"}}]
        }}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}}
    }))
    .unwrap();
    let shell = fixed_shell(&body);
    insta::assert_json_snapshot!(ferrolite::providers::responses::answer::to_response(&chat, &shell));
}

#[test]
fn chat_chunks_become_the_responses_event_sequence() {
    use ferrolite::api::openai::ChatChunk;
    let mut chunks: Vec<ChatChunk> = crate::support::fixture_chat_chunks();
    let chunk = |delta: Value, finish: Value| -> ChatChunk {
        serde_json::from_value(json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
        .unwrap()
    };
    // Reasoning first, then the fixture's text, then a tool call in two pieces.
    chunks.insert(0, chunk(json!({"role": "assistant", "reasoning_content": "Thinking it over."}), Value::Null));
    chunks.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}), Value::Null));
    chunks.push(chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Oslo\"}"}}]}),
        json!("tool_calls"),
    ));
    chunks.push(
        serde_json::from_value(
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}),
        )
        .unwrap(),
    );
    let body = json!({"model": "m", "input": "hi", "stream": true});
    let mut events = ferrolite::providers::responses::events::ResponsesEvents::new(fixed_shell(&body));
    let mut frames = events.start();
    for chunk in &chunks {
        frames.extend(events.push(chunk));
    }
    frames.extend(events.finish());
    let out: String = frames.iter().map(|f| std::str::from_utf8(f).unwrap()).collect();
    insta::assert_snapshot!(out);
}

#[tokio::test(flavor = "multi_thread")]
async fn translated_responses_are_priced_and_booked_like_chat() {
    let s = setup().await;
    let session = s.server.running.state.controller.list_running("default")[0].id.clone();
    let spend = || {
        let usage = s.server.running.state.controller.get_usage("default", &session).unwrap();
        usage["spend"].as_f64().unwrap()
    };
    // Claude has a price in the table: a JSON answer says its cost, and the spend grows by it.
    let before = spend();
    let response =
        s.server.post(s.server.demo_url("/v1/responses"), &json!({"model": "claude", "input": "Hello there"})).await;
    assert_eq!(response.status(), 200);
    let cost: f64 = response.headers()["x-ferrolite-cost"].to_str().unwrap().parse().unwrap();
    assert!(cost > 0.0);
    assert!((spend() - before - cost).abs() < 1e-6, "the JSON answer was booked");
    // A stream is booked from its response.completed usage once it ends.
    let before = spend();
    let streamed = events(&s, json!({"model": "claude", "input": "Hello there"})).await;
    let usage = streamed.last().unwrap().1["response"]["usage"].clone();
    assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(spend() > before, "the stream was booked");
    let logs = s.server.running.state.controller.get_logs("default", &session, None, 0, None).unwrap();
    let lines = serde_json::to_string(&logs.items).unwrap();
    assert!(lines.contains("/v1/responses"), "the session log has the requests: {lines}");
}
