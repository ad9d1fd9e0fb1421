//! MCP tools from the LLM routes: a Responses or chat request with `{"type": "mcp",
//! "server_label": ...}` naming the app's MCP server has ferrolite run the tool loop, as
//! OpenAI's Responses API does with remote MCP servers. The upstream MCP server is rmcp's, in
//! this test; the models are the fake OpenAI (Responses passed through, chat) and the fake
//! Anthropic (both translated), which call the first function they are given for a weather
//! question and answer with the tool's result they were sent, so an answer that holds the
//! result proves the result reached the model.

use crate::fake_anthropic::{FakeAnthropic, Scripted};
use crate::fake_openai::FakeOpenAi;
use crate::support::{sse_data, TestServer};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const OPENAI_KEY: &str = "sk-fake-mcp-tools-1";
const ANTHROPIC_KEY: &str = "sk-ant-fake-mcp-tools-1";
const SERVER: &str = "weather.svc";
const QUESTION: &str = "What is the weather in Paris?";
const RESULT: &str = "Sunny and 21C in Paris";

/// The upstream: `weather.lookup` (read-only, answers for its `city`), `broken` (the server
/// refuses every call) and `secret` (disallowed by the app). It counts the lookups it ran.
#[derive(Clone)]
struct Weather {
    lookups: Arc<AtomicUsize>,
}

impl ServerHandler for Weather {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let city = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        let schema = |v: &Value| Arc::new(v.as_object().cloned().unwrap_or_default());
        let mut lookup = Tool::new("weather.lookup", "Current weather of a city.", schema(&city));
        lookup.annotations = Some(ToolAnnotations::new().read_only(true));
        Ok(ListToolsResult::with_all_items(vec![
            lookup,
            Tool::new("broken", "A station that is down.", schema(&city)),
            Tool::new("secret", "Disallowed by the app.", schema(&json!({"type": "object"}))),
        ]))
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let city = params.arguments.as_ref().and_then(|a| a.get("city")).and_then(Value::as_str).map(str::to_owned);
        match (params.name.as_ref(), city) {
            ("weather.lookup", Some(city)) => {
                self.lookups.fetch_add(1, Ordering::SeqCst);
                let text = format!("Sunny and 21C in {city}");
                Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(text)])))
            }
            ("broken", _) => Err(ErrorData::internal_error("the weather station is down", None)),
            _ => Err(ErrorData::invalid_params("weather.lookup needs a string `city`", None)),
        }
    }
}

struct Setup {
    server: TestServer,
    openai: FakeOpenAi,
    anthropic: FakeAnthropic,
    _looper: FakeAnthropic,
    lookups: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let lookups = Arc::new(AtomicUsize::new(0));
    let upstream = Weather { lookups: lookups.clone() };
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    let service =
        StreamableHttpService::new(move || Ok(upstream.clone()), Arc::new(LocalSessionManager::default()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await });

    let openai = FakeOpenAi::start(OPENAI_KEY).await;
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    // A model that never stops calling the tool.
    let looper = FakeAnthropic::start_scripted(ANTHROPIC_KEY, |_| Scripted::ToolUse {
        name: "weather_lookup".into(),
        input: json!({"city": "Rome"}),
    })
    .await;
    let models = json!([
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": openai.base_url, "api_key": OPENAI_KEY}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": anthropic.base_url, "api_key": ANTHROPIC_KEY}},
        {"model_name": "looper", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": looper.base_url, "api_key": ANTHROPIC_KEY}},
    ]);
    let tools = json!({"name": "MCP tools", "type": "llm-proxy", "config": {
        "service_id": "tools",
        "model_list": models,
        "mcp_servers": {SERVER: {"url": format!("http://{address}/mcp"), "disallowed_tools": ["secret"]}},
    }});
    let plain =
        json!({"name": "No tools", "type": "llm-proxy", "config": {"service_id": "plain", "model_list": models}});
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, manifest) in [("tools.json", tools), ("plain.json", plain)] {
        let path = dir.path().join(name);
        std::fs::write(&path, manifest.to_string()).unwrap();
        paths.push(path);
    }
    let server = TestServer::with_configs(paths).await;
    Setup { server, openai, anthropic, _looper: looper, lookups, _dir: dir }
}

impl Setup {
    fn url(&self, app: &str, path: &str) -> String {
        format!("{}/default/apps/{app}/v1{path}", self.server.base)
    }

    async fn create(&self, body: Value) -> (u16, Value) {
        self.server.post_json(&self.url("tools", "/responses"), &body).await
    }

    async fn chat(&self, body: Value) -> (u16, Value) {
        self.server.post_json(&self.url("tools", "/chat/completions"), &body).await
    }

    /// The bodies the fake OpenAI got at `path`, oldest first.
    fn sent(&self, path: &str) -> Vec<Value> {
        let requests = self.openai.requests();
        requests.iter().filter(|r| r.path == path).map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
    }
}

fn mcp_tool(extra: Value) -> Value {
    let mut tool = json!({"type": "mcp", "server_label": SERVER});
    if let (Some(tool), Some(extra)) = (tool.as_object_mut(), extra.as_object()) {
        tool.extend(extra.clone());
    }
    tool
}

fn types(response: &Value) -> Vec<String> {
    let output = response["output"].as_array().cloned().unwrap_or_default();
    output.iter().map(|i| i["type"].as_str().unwrap_or_default().to_owned()).collect()
}

fn text_of(response: &Value) -> String {
    let output = response["output"].as_array().cloned().unwrap_or_default();
    let messages = output.iter().filter(|i| i["type"] == "message");
    let parts = messages.flat_map(|i| i["content"].as_array().cloned().unwrap_or_default());
    parts.filter_map(|p| p["text"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_run_in_a_responses_request_and_the_result_reaches_the_model() {
    let s = setup().await;
    let client_function = json!({"type": "function", "name": "local_clock", "parameters": {"type": "object"}});
    let body = json!({
        "model": "gpt",
        "input": QUESTION,
        "tools": [mcp_tool(json!({"require_approval": "never"})), client_function],
    });
    let (status, response) = s.create(body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(types(&response), ["mcp_list_tools", "mcp_call", "message"], "{response}");
    assert_eq!(response["status"], "completed");

    let listed = &response["output"][0];
    assert_eq!(listed["server_label"], SERVER);
    assert!(listed["id"].as_str().unwrap().starts_with("mcpl_"), "{listed}");
    let names: Vec<&str> = listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["weather.lookup", "broken"], "the app's disallowed tool is not listed");
    assert_eq!(listed["tools"][0]["description"], "Current weather of a city.");
    assert_eq!(listed["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(listed["tools"][0]["annotations"]["readOnlyHint"], true);

    let call = &response["output"][1];
    assert_eq!(
        (&call["server_label"], &call["name"], &call["status"], &call["output"], &call["error"]),
        (&json!(SERVER), &json!("weather.lookup"), &json!("completed"), &json!(RESULT), &Value::Null),
        "{call}"
    );
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    assert!(call["id"].as_str().unwrap().starts_with("mcp_"), "{call}");
    assert_eq!(text_of(&response), format!("echo: the tool said {RESULT}"), "the tool's result reached the model");
    assert_eq!(response["tools"][0]["type"], "mcp", "the request's own tools are echoed");
    assert_eq!(s.lookups.load(Ordering::SeqCst), 1);

    // Two turns upstream, neither stored there, both given the tool as a function under a
    // name OpenAI takes, next to the client's own function.
    let sent = s.sent("/v1/responses");
    assert_eq!(sent.len(), 2, "{sent:?}");
    for turn in &sent {
        assert_eq!((&turn["store"], &turn["stream"]), (&json!(false), &json!(false)), "{turn}");
        let names: Vec<&str> = turn["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["weather_lookup", "broken", "local_clock"], "{turn}");
        assert_eq!(turn["tools"][0]["parameters"]["required"], json!(["city"]));
    }
    let second = sent[1]["input"].as_array().unwrap();
    let kinds: Vec<&str> = second.iter().map(|i| i["type"].as_str().unwrap_or("message")).collect();
    assert_eq!(kinds, ["message", "function_call", "function_call_output"], "{second:?}");
    assert_eq!(second[1]["name"], "weather_lookup");
    assert_eq!((&second[2]["call_id"], &second[2]["output"]), (&second[1]["call_id"], &json!(RESULT)));
    // Usage adds up over the turns: each read the question once.
    let (_, plain) = s.create(json!({"model": "gpt", "input": QUESTION})).await;
    let once = plain["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(response["usage"]["input_tokens"].as_u64(), Some(2 * once), "{}", response["usage"]);

    // The stored response keeps the items, and reads back whole.
    let id = response["id"].as_str().unwrap();
    let (status, stored) = s.server.get_json(&s.url("tools", &format!("/responses/{id}"))).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(types(&stored), ["mcp_list_tools", "mcp_call", "message"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_mcp_tool_is_an_mcp_call_with_its_error_that_the_model_is_told() {
    let s = setup().await;
    let body = json!({
        "model": "gpt",
        "input": QUESTION,
        "tools": [mcp_tool(json!({"require_approval": "never", "allowed_tools": {"tool_names": ["broken"]}}))],
    });
    let (status, response) = s.create(body).await;
    assert_eq!(status, 200, "a tool's failure is not the request's: {response}");
    assert_eq!(types(&response), ["mcp_list_tools", "mcp_call", "message"], "{response}");
    let listed: Vec<&Value> = response["output"][0]["tools"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "allowed_tools narrows the listing: {listed:?}");
    let call = &response["output"][1];
    assert_eq!((&call["name"], &call["status"], &call["output"]), (&json!("broken"), &json!("failed"), &Value::Null));
    assert_eq!(call["error"]["type"], "mcp_protocol_error", "{call}");
    assert_eq!(call["error"]["message"], "the weather station is down", "{call}");
    assert!(text_of(&response).contains("the weather station is down"), "the model was told: {response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_request_waits_for_the_client_and_the_continuation_runs_the_tool_once() {
    let s = setup().await;
    // OpenAI's default: every call waits for approval.
    let tools = json!([mcp_tool(json!({}))]);
    let (status, first) = s.create(json!({"model": "gpt", "input": QUESTION, "tools": tools})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(types(&first), ["mcp_list_tools", "mcp_approval_request"], "{first}");
    let request = &first["output"][1];
    assert_eq!((&request["server_label"], &request["name"]), (&json!(SERVER), &json!("weather.lookup")));
    assert_eq!(
        serde_json::from_str::<Value>(request["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(s.lookups.load(Ordering::SeqCst), 0, "nothing ran before the approval");

    let approval = json!({"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": true});
    let body = json!({"model": "gpt", "previous_response_id": first["id"], "input": [approval], "tools": tools});
    let (status, second) = s.create(body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(types(&second), ["mcp_call", "message"], "listed already, so not listed again: {second}");
    assert_eq!(second["output"][0]["approval_request_id"], request["id"]);
    assert_eq!(second["output"][0]["output"], RESULT);
    assert_eq!(second["previous_response_id"], first["id"]);
    assert_eq!(text_of(&second), format!("echo: the tool said {RESULT}"));
    assert_eq!(s.lookups.load(Ordering::SeqCst), 1);

    // A later turn sees the call as made and does not run it again.
    let body = json!({"model": "gpt", "previous_response_id": second["id"], "input": "thanks", "tools": tools});
    let (status, third) = s.create(body).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(types(&third), ["message"], "{third}");
    assert_eq!(s.lookups.load(Ordering::SeqCst), 1, "the approved call ran once");
    let last = s.sent("/v1/responses").pop().unwrap();
    let kinds: Vec<&str> = last["input"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["message", "function_call", "function_call_output", "message", "message"], "{last}");

    // Declined, the model is told so and nothing runs.
    let (_, asked) = s.create(json!({"model": "gpt", "input": QUESTION, "tools": tools})).await;
    let id = asked["output"][1]["id"].clone();
    let decline = json!({"type": "mcp_approval_response", "approval_request_id": id, "approve": false});
    let body = json!({"model": "gpt", "previous_response_id": asked["id"], "input": [decline], "tools": tools});
    let (status, declined) = s.create(body).await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(types(&declined), ["message"], "{declined}");
    assert!(text_of(&declined).contains("declined"), "{declined}");
    assert_eq!(s.lookups.load(Ordering::SeqCst), 1);

    // `never` for the tool: it runs at once.
    let never = json!([mcp_tool(json!({"require_approval": {"never": {"tool_names": ["weather.lookup"]}}}))]);
    let (_, direct) = s.create(json!({"model": "gpt", "input": QUESTION, "tools": never})).await;
    assert_eq!(types(&direct), ["mcp_list_tools", "mcp_call", "message"], "{direct}");

    // An approval of a request the conversation does not hold.
    let stray = json!({"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": true});
    let body = json!({"model": "gpt", "previous_response_id": first["id"], "input": [stray], "tools": tools});
    let (status, error) = s.create(body).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("mcpr_nope"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_responses_request_gets_the_mcp_events_and_the_whole_answer() {
    let s = setup().await;
    let body = json!({
        "model": "gpt",
        "input": QUESTION,
        "stream": true,
        "tools": [mcp_tool(json!({"require_approval": "never"}))],
    });
    let response = s.server.post(s.url("tools", "/responses"), &body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events: Vec<Value> =
        sse_data(&response.text().await.unwrap()).iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in [
        "response.created",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_text.delta",
        "response.output_item.done",
    ] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    assert_eq!(kinds.last(), Some(&"response.completed"));
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .map(|e| e["item"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["mcp_list_tools", "mcp_call", "message"]);
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, format!("echo: the tool said {RESULT}"));
    let completed = &events.last().unwrap()["response"];
    assert_eq!(types(completed), ["mcp_list_tools", "mcp_call", "message"]);
    // Recorded at the stream's end, as any stream.
    let id = completed["id"].as_str().unwrap();
    let (status, stored) = s.server.get_json(&s.url("tools", &format!("/responses/{id}"))).await;
    assert_eq!((status, types(&stored).len()), (200, 3), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_run_in_a_chat_request_streamed_or_not() {
    let s = setup().await;
    let body = json!({
        "model": "gpt",
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [mcp_tool(json!({}))],
    });
    let (status, completion) = s.chat(body.clone()).await;
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["object"], "chat.completion");
    let message = &completion["choices"][0]["message"];
    assert_eq!(message["content"], format!("echo: the tool said {RESULT}"), "{completion}");
    assert_eq!(message.get("tool_calls"), None, "the MCP calls are not the client's: {completion}");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let sent = s.sent("/v1/chat/completions");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["tools"][0]["function"]["name"], "weather_lookup");
    let roles: Vec<&str> =
        sent[1]["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
    assert_eq!(sent[1]["messages"][2]["content"], RESULT);
    let (_, plain) = s.chat(json!({"model": "gpt", "messages": [{"role": "user", "content": QUESTION}]})).await;
    let once = plain["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(completion["usage"]["prompt_tokens"].as_u64().unwrap() > 2 * once, "both turns: {completion}");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = s.server.post(s.url("tools", "/chat/completions"), &streamed).await;
    assert_eq!(response.status(), 200);
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, format!("echo: the tool said {RESULT}"));
    assert!(chunks.last().unwrap()["usage"]["total_tokens"].as_u64().unwrap() > 0, "{chunks:?}");
    assert_eq!(s.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_run_on_a_translated_provider() {
    let s = setup().await;
    let question = "What is the weather in Oslo?";
    let tools = json!([mcp_tool(json!({"require_approval": "never"}))]);
    let (status, response) = s.create(json!({"model": "claude", "input": question, "tools": tools})).await;
    assert_eq!(status, 200, "{response}");
    // Claude says a word before its call: every turn's output is kept, in order.
    assert_eq!(types(&response), ["mcp_list_tools", "message", "mcp_call", "message"], "{response}");
    assert_eq!(response["output"][2]["output"], "Sunny and 21C in Oslo");
    assert_eq!(response["output"][3]["content"][0]["text"], "The tool said: Sunny and 21C in Oslo");

    let chat = json!({"model": "claude", "messages": [{"role": "user", "content": question}], "tools": tools});
    let (status, completion) = s.chat(chat).await;
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["choices"][0]["message"]["content"], "The tool said: Sunny and 21C in Oslo");
    // Claude was given the tool under its function name, and its result as a tool_result.
    let sent = s.anthropic.requests();
    assert_eq!(sent.len(), 4, "two turns each");
    assert_eq!(sent[0]["tools"][0]["name"], "weather_lookup");
    let last_turn = sent[3]["messages"].as_array().unwrap();
    assert_eq!(last_turn.last().unwrap()["content"][0]["type"], "tool_result", "{last_turn:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_keeps_calling_tools_is_stopped_after_eight_turns() {
    let s = setup().await;
    let tools = json!([mcp_tool(json!({"require_approval": "never"}))]);
    let (status, response) = s.create(json!({"model": "looper", "input": QUESTION, "tools": tools})).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "incomplete", "{response}");
    assert_eq!(response["incomplete_details"]["reason"], "max_tool_calls");
    assert_eq!(types(&response).iter().filter(|t| *t == "mcp_call").count(), 8, "{response}");
    assert_eq!(s.lookups.load(Ordering::SeqCst), 8);

    let chat = json!({"model": "looper", "messages": [{"role": "user", "content": QUESTION}], "tools": tools});
    let (status, error) = s.chat(chat).await;
    assert_eq!((status, &error["error"]["code"]), (422, &json!("mcp_max_turns")), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_that_name_no_server_of_the_app_are_refused() {
    let s = setup().await;
    let refused = |body: Value, app: &'static str, route: &'static str| {
        let s = &s;
        async move { s.server.post_json(&s.url(app, route), &body).await }
    };
    let cases = [
        (json!({"type": "mcp", "server_label": "nope"}), "tools", "tools[1].server_label", "weather.svc"),
        (
            json!({"type": "mcp", "server_label": SERVER, "server_url": "https://mcp.example.com/sse"}),
            "tools",
            "tools[1].server_url",
            "only this app's configured MCP servers",
        ),
        (
            json!({"type": "mcp", "server_label": SERVER, "headers": {"Authorization": "Bearer x"}}),
            "tools",
            "tools[1].headers",
            "credentials",
        ),
        (json!({"type": "mcp", "server_label": SERVER}), "plain", "tools[1].server_label", "no MCP servers"),
    ];
    for (tool, app, param, message) in cases {
        let tools = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}, tool]);
        let (status, error) = refused(json!({"model": "gpt", "input": "hi", "tools": tools}), app, "/responses").await;
        assert_eq!((status, &error["error"]["param"]), (400, &json!(param)), "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(message), "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
    let always = json!([{"type": "mcp", "server_label": SERVER, "require_approval": "always"}]);
    let chat = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "tools": always});
    let (status, error) = refused(chat, "tools", "/chat/completions").await;
    assert_eq!((status, &error["error"]["param"]), (400, &json!("tools[0].require_approval")), "{error}");
    assert!(s.openai.requests().is_empty(), "no model was asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_runs_mcp_tools_through_the_responses_api() {
    let s = setup().await;
    crate::python_sdk::run_script("openai_sdk_mcp_tools.py", &s.url("tools", ""), &s.server.token).await;
    assert!(s.lookups.load(Ordering::SeqCst) >= 3, "the script's calls reached the MCP server");
}
