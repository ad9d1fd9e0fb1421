//! The conformance matrix: every ingress API (chat completions, Anthropic's messages, OpenAI's
//! Responses) against every kind of deployment (OpenAI, an OpenAI-compatible chat-only server,
//! Azure, Anthropic, Gemini, Bedrock, mock) in every mode (JSON, stream, a tool call round trip,
//! structured output), through one app over the fakes.
//!
//! A cell checks the answer's shape for its ingress, the text the fake answers, usage, the tool
//! call and its result in the ingress's own shapes, and the schema reaching the upstream in the
//! provider's own form; what its upstream received and the event names of its streams are one
//! insta snapshot (`snapshots/it__conformance__INGRESS__EGRESS__MODE.snap`). The matrix is data:
//! [`EGRESS`] rows, [`INGRESS`] columns, [`MODES`]; README's Conformance table says the same.

use crate::fake_anthropic::FakeAnthropic;
use crate::fake_bedrock::FakeBedrock;
use crate::fake_gemini::FakeGemini;
use crate::fake_openai::FakeOpenAi;
use crate::support::{sse_data, TestServer};
use serde_json::{json, Value};
use std::fmt;
use std::sync::{Arc, Mutex};

const OPENAI_KEY: &str = "sk-fake-conformance-openai-1";
const AZURE_KEY: &str = "azure-conformance-key-1";
const ANTHROPIC_KEY: &str = "sk-ant-fake-conformance-1";
const GEMINI_KEY: &str = "AIzaSy-fake-conformance-001";
const AWS_KEY_ID: &str = "AKIAFAKECONFORMANCE1";
const AWS_SECRET: &str = "fAkE/conformanceSecret+0123456789abcdEXAMPLE";
const REGION: &str = "us-east-1";
const MOCK_TEXT: &str = "Hello from the mock";

/// What the weather tool answers; the final text of every round trip must hold it.
const TOOL_OUTPUT: &str = "light rain";

/// A check a cell fails because of a bug in ferrolite. The check is kept out of the assertions
/// (its outcome is still noted: a gap that passes must be taken off the list); a failing check
/// that is not listed fails the test. A new gap turns its failing assertion into a named [`check`].
struct Gap {
    cell: &'static str,
    check: &'static str,
    bug: &'static str,
}

/// None at present: a bug the matrix finds is listed here (cell, check, what is wrong) until fixed.
const KNOWN_GAPS: &[Gap] = &[];

/// The outcomes of the listed gaps' checks: (cell, check, passed).
static GAP_OUTCOMES: Mutex<Vec<(String, &'static str, bool)>> = Mutex::new(Vec::new());

/// A check that may be a known gap: asserted, unless [`KNOWN_GAPS`] lists it for this cell.
fn check(cell: Cell, name: &'static str, passed: bool, failure: impl FnOnce() -> String) {
    let name_of_cell = cell.to_string();
    if KNOWN_GAPS.iter().any(|g| g.cell == name_of_cell && g.check == name) {
        GAP_OUTCOMES.lock().unwrap().push((name_of_cell, name, passed));
    } else {
        assert!(passed, "{cell}: {name}: {}", failure());
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

/// The upstreams behind the app.
struct Fakes {
    openai: FakeOpenAi,
    azure: FakeOpenAi,
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    bedrock: FakeBedrock,
}

/// Which fake a deployment calls, so which log holds its requests and how they are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    /// Answered by ferrolite itself.
    None,
}

/// One kind of deployment: a row of the matrix.
struct Egress {
    /// The model group, and the cell names' middle part.
    model: &'static str,
    upstream: Upstream,
    /// The deployment's `litellm_params`.
    params: fn(&Fakes) -> Value,
    /// What the deployment answers a plain text.
    hello: fn(&str) -> String,
    /// Whether it acts on tools and schemas; the mock answers its fixed text whatever is asked.
    obeys: bool,
}

fn echo(text: &str) -> String {
    format!("echo: {text}")
}

fn claude(text: &str) -> String {
    crate::fake_anthropic::text_answer(text, &[])
}

fn mock(_: &str) -> String {
    MOCK_TEXT.to_owned()
}

const EGRESS: &[Egress] = &[
    Egress {
        model: "openai",
        upstream: Upstream::OpenAi,
        params: |f| json!({"model": "openai/gpt-4o", "api_base": f.openai.base_url, "api_key": OPENAI_KEY}),
        hello: echo,
        obeys: true,
    },
    Egress {
        model: "compat",
        upstream: Upstream::OpenAi,
        params: |f| json!({"model": "hosted_vllm/llama-3", "api_base": f.openai.base_url, "api_key": OPENAI_KEY}),
        hello: echo,
        obeys: true,
    },
    Egress {
        model: "azure",
        upstream: Upstream::Azure,
        params: |f| {
            json!({"model": "azure/my-gpt4o", "api_base": f.azure.base_url, "api_key": AZURE_KEY,
                   "api_version": "2024-06-01"})
        },
        hello: echo,
        obeys: true,
    },
    Egress {
        model: "anthropic",
        upstream: Upstream::Anthropic,
        params: |f| {
            json!({"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": f.anthropic.base_url,
                   "api_key": ANTHROPIC_KEY})
        },
        hello: claude,
        obeys: true,
    },
    Egress {
        model: "gemini",
        upstream: Upstream::Gemini,
        params: |f| json!({"model": "gemini/gemini-1.5-pro", "api_base": f.gemini.base_url, "api_key": GEMINI_KEY}),
        hello: echo,
        obeys: true,
    },
    Egress {
        model: "bedrock",
        upstream: Upstream::Bedrock,
        params: |f| {
            json!({"model": "bedrock/anthropic.claude-3-sonnet-20240229-v1:0", "api_base": f.bedrock.base_url,
                   "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET, "aws_region_name": REGION})
        },
        hello: echo,
        obeys: true,
    },
    Egress {
        model: "mock",
        upstream: Upstream::None,
        params: |_| json!({"model": "gpt-4o", "mock_response": MOCK_TEXT}),
        hello: mock,
        obeys: false,
    },
];

/// The API a client speaks to ferrolite: a column group of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ingress {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/responses`.
    Responses,
}

const INGRESS: &[Ingress] = &[Ingress::Chat, Ingress::Messages, Ingress::Responses];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Json,
    Stream,
    /// The model calls a tool; its result goes back; the final text holds it.
    Tools,
    /// A JSON schema the answer must follow.
    Structured,
}

const MODES: &[Mode] = &[Mode::Json, Mode::Stream, Mode::Tools, Mode::Structured];

#[derive(Clone, Copy)]
struct Cell {
    ingress: Ingress,
    egress: &'static Egress,
    mode: Mode,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ingress = match self.ingress {
            Ingress::Chat => "chat",
            Ingress::Messages => "messages",
            Ingress::Responses => "responses",
        };
        let mode = match self.mode {
            Mode::Json => "json",
            Mode::Stream => "stream",
            Mode::Tools => "tools",
            Mode::Structured => "structured",
        };
        write!(f, "{ingress}/{}/{mode}", self.egress.model)
    }
}

impl Cell {
    /// Written into every prompt of the cell, so its requests are found in a shared fake's log.
    fn tag(&self) -> String {
        format!("(cell {self})")
    }
}

/// What a cell's client saw: how many of its requests were answered (each one upstream call,
/// unless the deployment is the mock) and the event names of its streams.
struct Seen {
    answered: usize,
    streams: Vec<Vec<String>>,
}

impl Seen {
    fn new(answered: usize, streams: Vec<Vec<String>>) -> Seen {
        Seen { answered, streams }
    }
}

// ---------------------------------------------------------------------------------------------
// The test

/// The app holding every deployment, and the fakes behind it.
struct World {
    server: TestServer,
    fakes: Fakes,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let fakes = Fakes {
            openai: FakeOpenAi::start(OPENAI_KEY).await,
            azure: FakeOpenAi::start_azure(AZURE_KEY).await,
            anthropic: FakeAnthropic::start(ANTHROPIC_KEY).await,
            gemini: FakeGemini::start(GEMINI_KEY).await,
            bedrock: crate::fake_bedrock::start(AWS_KEY_ID, AWS_SECRET, REGION).await,
        };
        let models: Vec<Value> =
            EGRESS.iter().map(|e| json!({"model_name": e.model, "litellm_params": (e.params)(&fakes)})).collect();
        let doc =
            json!({"name": "Conformance", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": models}});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conformance.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let server = TestServer::with_configs(vec![path]).await;
        World { server, fakes, _dir: dir }
    }

    /// The requests one cell made upstream, oldest first: `METHOD path[?query]` and the body.
    fn upstream_requests(&self, upstream: Upstream, tag: &str) -> Vec<(String, Value)> {
        let f = &self.fakes;
        let line = |method: &str, path: &str, query: Option<&str>| match query {
            Some(q) => format!("{method} {path}?{q}"),
            None => format!("{method} {path}"),
        };
        let body = |bytes: &[u8]| serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let tagged = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains(tag);
        match upstream {
            Upstream::OpenAi | Upstream::Azure => {
                let fake = if upstream == Upstream::Azure { &f.azure } else { &f.openai };
                let requests = fake.requests().into_iter().filter(|r| tagged(&r.body));
                requests.map(|r| (line(&r.method, &r.path, r.query.as_deref()), body(&r.body))).collect()
            }
            Upstream::Anthropic => {
                let requests = f.anthropic.recorded().into_iter().filter(|r| r.body.to_string().contains(tag));
                requests.map(|r| (line("POST", &r.path, None), r.body)).collect()
            }
            Upstream::Gemini => {
                let requests = f.gemini.requests().into_iter().filter(|r| tagged(&r.body));
                requests.map(|r| (line(&r.method, &r.path, r.query.as_deref()), body(&r.body))).collect()
            }
            Upstream::Bedrock => {
                let requests = f.bedrock.requests().into_iter().filter(|r| tagged(&r.body));
                requests.map(|r| (line(&r.method, &r.path, None), body(&r.body))).collect()
            }
            Upstream::None => Vec::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_ingress_meets_every_egress_in_every_mode() {
    let world = Arc::new(World::start().await);
    let cells: Vec<Cell> = EGRESS
        .iter()
        .flat_map(|egress| {
            INGRESS.iter().flat_map(move |&ingress| MODES.iter().map(move |&mode| Cell { ingress, egress, mode }))
        })
        .collect();
    for gap in KNOWN_GAPS {
        assert!(cells.iter().any(|c| c.to_string() == gap.cell), "KNOWN_GAPS names no cell {}", gap.cell);
    }
    // Every cell at once, each in its own task: a failed check is that task's panic.
    let runs: Vec<_> = cells
        .iter()
        .map(|&cell| {
            let world = world.clone();
            tokio::spawn(async move { run(&world, cell).await })
        })
        .collect();
    let mut failures = Vec::new();
    let mut snapshots = Vec::new();
    for (cell, run) in cells.iter().zip(runs) {
        match run.await {
            Ok(snapshot) => snapshots.push((cell.to_string(), snapshot)),
            Err(e) => failures.push(format!("{cell}: {}", panic_message(e))),
        }
    }
    let outcomes = GAP_OUTCOMES.lock().unwrap().clone();
    for gap in KNOWN_GAPS {
        let seen: Vec<bool> =
            outcomes.iter().filter(|(c, n, _)| c == gap.cell && *n == gap.check).map(|(_, _, p)| *p).collect();
        if seen.is_empty() {
            failures.push(format!("{}: the known gap's check {:?} never ran", gap.cell, gap.check));
        } else if seen.iter().all(|passed| *passed) {
            failures.push(format!("{}: {} passes now; take it off KNOWN_GAPS ({})", gap.cell, gap.check, gap.bug));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
    // The mock's JSON cells have nothing to show.
    for (name, snapshot) in snapshots.into_iter().filter(|(_, s)| s != &json!({"upstream": []})) {
        insta::assert_json_snapshot!(name.replace('/', "__"), snapshot);
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(panic) => match panic.downcast::<String>() {
            Ok(message) => *message,
            Err(panic) => panic.downcast::<&str>().map(|m| (*m).to_owned()).unwrap_or_else(|_| "a panic".into()),
        },
        Err(e) => e.to_string(),
    }
}

/// Runs one cell and returns its snapshot: what reached the upstream and the streams' event names.
async fn run(world: &World, cell: Cell) -> Value {
    let seen = match cell.ingress {
        Ingress::Chat => chat(world, cell).await,
        Ingress::Messages => messages(world, cell).await,
        Ingress::Responses => responses(world, cell).await,
    };
    let upstream = world.upstream_requests(cell.egress.upstream, &cell.tag());
    let calls = if cell.egress.upstream == Upstream::None { 0 } else { seen.answered };
    assert_eq!(upstream.len(), calls, "{cell}: one upstream call per request: {upstream:?}");
    if cell.mode == Mode::Structured {
        for (line, body) in &upstream {
            if body.to_string().contains(BY_OUTPUT_CONFIG) {
                let sent = structured_form_sent(cell, Asked::Schema, line, body);
                check(cell, "output_config", sent, || format!("output_config is dropped on the way to {line}: {body}"));
            } else {
                let asked = if cell.ingress == Ingress::Messages { Asked::ForcedTool } else { Asked::Schema };
                let sent = structured_form_sent(cell, asked, line, body);
                assert!(sent, "{cell}: the schema reaches {line} in the provider's form: {body}");
            }
        }
    }
    let mut ids = Vec::new();
    let upstream: Vec<Value> = upstream
        .into_iter()
        .map(|(line, mut body)| {
            redact(&mut body, &mut ids);
            json!({"request": line, "body": body})
        })
        .collect();
    let mut snapshot = json!({"upstream": upstream});
    if !seen.streams.is_empty() {
        snapshot["streams"] = json!(seen.streams);
    }
    snapshot
}

// ---------------------------------------------------------------------------------------------
// What every ingress is asked

fn weather_question(cell: Cell) -> String {
    format!("What is the weather in Oslo? {}", cell.tag())
}

fn hello_text(cell: Cell) -> String {
    format!("Hello there {}", cell.tag())
}

fn structured_question(cell: Cell) -> String {
    format!("Describe Oslo as JSON {}", cell.tag())
}

/// What the weather tool is for.
const WEATHER: &str = "The weather in a city";

/// What the structured-output tool of `/v1/messages` is for.
const REPORT: &str = "Record a weather report";

/// The parameters of the weather tool.
fn weather_parameters() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

/// The schema structured output asks for (strict, as OpenAI's strict mode wants it).
fn report_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
        "required": ["city", "temperature_c"],
        "additionalProperties": false
    })
}

/// Checks an answer follows [`report_schema`].
fn check_report(cell: Cell, report: &Value) {
    assert!(
        report["city"].is_string()
            && report["temperature_c"].is_i64()
            && report.as_object().is_some_and(|o| o.len() == 2),
        "{cell}: the answer follows the schema: {report}"
    );
}

/// The JSON of a structured answer's text.
fn parse_report(cell: Cell, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{cell}: the answer is not JSON ({e}): {text:?}"))
}

/// Written into the question of the request asking with Anthropic's `output_config.format`.
const BY_OUTPUT_CONFIG: &str = "by output_config";

/// How a client asked for structured output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A JSON schema: chat's `response_format`, Responses' `text.format`, Anthropic's
    /// `output_config.format`.
    Schema,
    /// A tool the model must call (`record_weather`), Anthropic's classic way.
    ForcedTool,
}

/// Whether the schema reached the upstream in the provider's own form: its JSON mode where it
/// has one, else a forced tool (`json_tool_call`); a forced tool as the provider's forced tool.
fn structured_form_sent(cell: Cell, asked: Asked, line: &str, sent: &Value) -> bool {
    let properties = report_schema()["properties"].clone();
    let forced_tool = asked == Asked::ForcedTool;
    match cell.egress.upstream {
        Upstream::OpenAi | Upstream::Azure if forced_tool => {
            sent["tool_choice"] == json!({"type": "function", "function": {"name": "record_weather"}})
                && sent["tools"][0]["function"]["parameters"]["properties"] == properties
        }
        Upstream::OpenAi if line.ends_with("/v1/responses") => {
            sent["text"]["format"]["type"] == "json_schema" && sent["text"]["format"]["schema"] == report_schema()
        }
        Upstream::OpenAi | Upstream::Azure => {
            sent["response_format"]["type"] == "json_schema"
                && sent["response_format"]["json_schema"]["schema"] == report_schema()
        }
        // Anthropic's ingress passes its own `output_config` through.
        Upstream::Anthropic if cell.ingress == Ingress::Messages && !forced_tool => {
            sent["output_config"]["format"]["schema"] == report_schema()
        }
        Upstream::Anthropic => {
            let name = if forced_tool { "record_weather" } else { "json_tool_call" };
            sent["tool_choice"] == json!({"type": "tool", "name": name})
                && sent["tools"][0]["name"] == name
                && sent["tools"][0]["input_schema"]["properties"] == properties
        }
        Upstream::Gemini if forced_tool => {
            sent.pointer("/toolConfig/functionCallingConfig")
                == Some(&json!({"mode": "ANY", "allowedFunctionNames": ["record_weather"]}))
        }
        Upstream::Gemini => {
            let config = &sent["generationConfig"];
            config["responseMimeType"] == "application/json"
                && config["responseSchema"]["properties"].as_object().is_some_and(|p| p.len() == 2)
        }
        Upstream::Bedrock => {
            let name = if forced_tool { "record_weather" } else { "json_tool_call" };
            let spec = &sent["toolConfig"]["tools"][0]["toolSpec"];
            sent["toolConfig"]["toolChoice"] == json!({"tool": {"name": name}})
                && spec["name"] == name
                && spec["inputSchema"]["json"]["properties"] == properties
        }
        Upstream::None => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Chat completions

async fn chat(world: &World, cell: Cell) -> Seen {
    let server = &world.server;
    let url = server.demo_url("/v1/chat/completions");
    let model = cell.egress.model;
    let user = |text: String| json!({"role": "user", "content": text});
    let post = |body: Value| {
        let url = url.clone();
        async move {
            let (status, answer) = server.post_json(&url, &body).await;
            assert_eq!(status, 200, "{cell}: {answer}");
            check_chat_completion(cell, &answer);
            answer
        }
    };
    match cell.mode {
        Mode::Json => {
            let text = hello_text(cell);
            let answer = post(json!({"model": model, "messages": [user(text.clone())]})).await;
            let choice = &answer["choices"][0];
            assert_eq!(choice["message"]["content"], (cell.egress.hello)(&text), "{cell}: {answer}");
            assert_eq!(choice["finish_reason"], "stop", "{cell}: {answer}");
            Seen::new(1, Vec::new())
        }
        Mode::Stream => {
            let text = hello_text(cell);
            let body = json!({"model": model, "messages": [user(text.clone())]});
            let (chunks, names) = chat_stream(world, cell, body).await;
            assert_eq!(chunk_text(&chunks), (cell.egress.hello)(&text), "{cell}: the deltas add up to the text");
            assert_eq!(finish_reason(&chunks), "stop", "{cell}");
            Seen::new(1, vec![names])
        }
        Mode::Tools => {
            let function = json!({"name": "get_weather", "description": WEATHER, "parameters": weather_parameters()});
            let tools = json!([{"type": "function", "function": function}]);
            let question = user(weather_question(cell));
            let first = post(json!({"model": model, "messages": [question], "tools": tools})).await;
            let message = &first["choices"][0]["message"];
            let call = if cell.egress.obeys {
                assert_eq!(first["choices"][0]["finish_reason"], "tool_calls", "{cell}: {first}");
                let call = &message["tool_calls"][0];
                assert_eq!(
                    (call["type"].as_str(), call["function"]["name"].as_str()),
                    (Some("function"), Some("get_weather")),
                    "{cell}: {first}"
                );
                assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()), "{cell}: a call has an id: {first}");
                parse_arguments(cell, &call["function"]["arguments"]);
                call.clone()
            } else {
                assert_eq!(message["content"], MOCK_TEXT, "{cell}: {first}");
                let function = json!({"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"});
                json!({"id": "call_made_up", "type": "function", "function": function})
            };
            let assistant = json!({"role": "assistant", "content": message["content"], "tool_calls": [call]});
            let result = json!({"role": "tool", "tool_call_id": call["id"], "content": TOOL_OUTPUT});
            let second = post(json!({"model": model, "messages": [question, assistant, result], "tools": tools})).await;
            let text = second["choices"][0]["message"]["content"].as_str().unwrap_or_default();
            let expected = if cell.egress.obeys { TOOL_OUTPUT } else { MOCK_TEXT };
            assert!(text.contains(expected), "{cell}: the final text holds {expected:?}: {second}");

            let (chunks, names) =
                chat_stream(world, cell, json!({"model": model, "messages": [question], "tools": tools})).await;
            if cell.egress.obeys {
                let calls: Vec<&Value> = chunks
                    .iter()
                    .flat_map(|c| {
                        c.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array).into_iter().flatten()
                    })
                    .collect();
                let head = calls.first().unwrap_or_else(|| panic!("{cell}: no tool call chunk in {chunks:?}"));
                assert_eq!(head["function"]["name"], "get_weather", "{cell}: the first piece names the call: {head}");
                assert!(head["id"].as_str().is_some_and(|id| !id.is_empty()), "{cell}: and has its id: {head}");
                let arguments: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
                parse_arguments(cell, &json!(arguments));
                assert_eq!(finish_reason(&chunks), "tool_calls", "{cell}");
            } else {
                assert_eq!(chunk_text(&chunks), MOCK_TEXT, "{cell}");
            }
            Seen::new(3, vec![names])
        }
        Mode::Structured => {
            let spec = json!({"name": "weather_report", "strict": true, "schema": report_schema()});
            let format = json!({"type": "json_schema", "json_schema": spec});
            let body =
                json!({"model": model, "messages": [user(structured_question(cell))], "response_format": format});
            let answer = post(body.clone()).await;
            let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
            let (chunks, names) = chat_stream(world, cell, body).await;
            if cell.egress.obeys {
                check_report(cell, &parse_report(cell, text));
                assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{cell}: {answer}");
                check_report(cell, &parse_report(cell, &chunk_text(&chunks)));
                assert_eq!(finish_reason(&chunks), "stop", "{cell}");
            } else {
                assert_eq!((text, chunk_text(&chunks).as_str()), (MOCK_TEXT, MOCK_TEXT), "{cell}");
            }
            Seen::new(2, vec![names])
        }
    }
}

/// What every `chat.completion` holds: its object, an id, one assistant choice, and usage.
fn check_chat_completion(cell: Cell, answer: &Value) {
    assert_eq!(answer["object"], "chat.completion", "{cell}: {answer}");
    assert!(answer["id"].as_str().is_some_and(|id| !id.is_empty()), "{cell}: {answer}");
    assert!(answer["created"].is_u64() && answer["model"].is_string(), "{cell}: {answer}");
    let choice = &answer["choices"][0];
    assert!(
        ["index", "message", "logprobs", "finish_reason"].iter().all(|k| choice.get(k).is_some()),
        "{cell}: {choice}"
    );
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant", "{cell}: {answer}");
    assert!(message.get("content").is_some(), "{cell}: a message always has content, null or not: {message}");
    check(cell, "refusal", message.get("refusal").is_some(), || format!("a message always has refusal: {message}"));
    check_chat_usage(cell, &answer["usage"]);
}

fn check_chat_usage(cell: Cell, usage: &Value) {
    let (prompt, completion) = (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64());
    assert!(prompt.is_some_and(|n| n > 0) && completion.is_some_and(|n| n > 0), "{cell}: usage {usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt.unwrap() + completion.unwrap()), "{cell}: {usage}");
}

/// A chat stream with usage asked for: its chunks, checked for the framing, and their kinds.
async fn chat_stream(world: &World, cell: Cell, mut body: Value) -> (Vec<Value>, Vec<String>) {
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = world.server.post(world.server.demo_url("/v1/chat/completions"), &body).await;
    assert_eq!(response.status(), 200, "{cell}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{cell}: {content_type}");
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{cell}: a chat stream ends with [DONE]: {data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{cell}: a chunk is not JSON ({e}): {d}")))
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{cell}: {chunk}");
        assert_eq!(chunk["id"], chunks[0]["id"], "{cell}: one id for the whole stream");
        let choices = chunk["choices"].as_array().into_iter().flatten();
        let complete = |c: &Value| ["index", "delta", "finish_reason"].iter().all(|k| c.get(k).is_some());
        assert!(choices.clone().all(complete), "{cell}: a choice has index, delta and finish_reason: {chunk}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{cell}: the first chunk says the role");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "{cell}: the usage chunk comes last: {usage}");
    check_chat_usage(cell, &usage["usage"]);
    let mut kinds: Vec<String> = chunks.iter().map(chunk_kind).collect();
    kinds.push("[DONE]".into());
    (chunks, collapse(kinds))
}

/// What a chunk carries: `role`, `content`, `tool_calls`, `finish:REASON`, `usage`, joined by `+`.
fn chunk_kind(chunk: &Value) -> String {
    let delta = chunk.pointer("/choices/0/delta").cloned().unwrap_or(Value::Null);
    let mut kind = Vec::new();
    if delta["role"].is_string() {
        kind.push("role".to_owned());
    }
    if delta["content"].as_str().is_some_and(|t| !t.is_empty()) {
        kind.push("content".to_owned());
    }
    if delta["tool_calls"].is_array() {
        kind.push("tool_calls".to_owned());
    }
    if let Some(reason) = chunk.pointer("/choices/0/finish_reason").and_then(Value::as_str) {
        kind.push(format!("finish:{reason}"));
    }
    if chunk["usage"].is_object() {
        kind.push("usage".to_owned());
    }
    if kind.is_empty() {
        "empty".to_owned()
    } else {
        kind.join("+")
    }
}

fn chunk_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect()
}

fn finish_reason(chunks: &[Value]) -> String {
    let reasons: Vec<&str> =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/finish_reason").and_then(Value::as_str)).collect();
    assert_eq!(reasons.len(), 1, "one finish_reason per stream: {reasons:?}");
    reasons[0].to_owned()
}

/// A call's `arguments`: a string holding a JSON object.
fn parse_arguments(cell: Cell, arguments: &Value) -> Value {
    let text = arguments.as_str().unwrap_or_else(|| panic!("{cell}: arguments are a string: {arguments}"));
    let parsed: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{cell}: arguments not JSON ({e}): {text}"));
    assert!(parsed.is_object(), "{cell}: arguments are an object: {parsed}");
    parsed
}

// ---------------------------------------------------------------------------------------------
// Anthropic messages

async fn post_messages(world: &World, body: &Value) -> reqwest::Response {
    let server = &world.server;
    server
        .client
        .post(server.demo_url("/v1/messages"))
        .header("x-api-key", &server.token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent")
}

async fn messages(world: &World, cell: Cell) -> Seen {
    let model = cell.egress.model;
    let user = |content: Value| json!({"role": "user", "content": content});
    let post = |body: Value| async move {
        let (status, message) = crate::support::read_json(post_messages(world, &body).await).await;
        assert_eq!(status, 200, "{cell}: {message}");
        check_message(cell, &message);
        message
    };
    match cell.mode {
        Mode::Json => {
            let text = hello_text(cell);
            let message = post(json!({"model": model, "max_tokens": 256, "messages": [user(json!(text))]})).await;
            assert_eq!(
                message["content"],
                json!([{"type": "text", "text": (cell.egress.hello)(&text)}]),
                "{cell}: {message}"
            );
            assert_eq!(message["stop_reason"], "end_turn", "{cell}: {message}");
            Seen::new(1, Vec::new())
        }
        Mode::Stream => {
            let text = hello_text(cell);
            let body = json!({"model": model, "max_tokens": 256, "messages": [user(json!(text))]});
            let (events, names) = messages_stream(world, cell, body).await;
            assert_eq!(event_text(&events), (cell.egress.hello)(&text), "{cell}: the deltas add up to the text");
            assert_eq!(stop_reason(&events), "end_turn", "{cell}");
            Seen::new(1, vec![names])
        }
        Mode::Tools => {
            let tools = json!([{"name": "get_weather", "description": WEATHER, "input_schema": weather_parameters()}]);
            let question = user(json!(weather_question(cell)));
            let first = post(json!({"model": model, "max_tokens": 256, "messages": [question], "tools": tools})).await;
            let use_block = if cell.egress.obeys {
                assert_eq!(first["stop_reason"], "tool_use", "{cell}: {first}");
                let block = tool_use(&first).unwrap_or_else(|| panic!("{cell}: no tool_use block in {first}"));
                assert_eq!(block["name"], "get_weather", "{cell}: {first}");
                assert!(
                    block["id"].as_str().is_some_and(|id| !id.is_empty()) && block["input"].is_object(),
                    "{cell}: {block}"
                );
                block
            } else {
                assert_eq!(message_text(&first), MOCK_TEXT, "{cell}: {first}");
                json!({"type": "tool_use", "id": "toolu_made_up", "name": "get_weather", "input": {"city": "Oslo"}})
            };
            let mut said = first["content"].as_array().cloned().unwrap_or_default();
            said.retain(|b| b["type"] == "text");
            said.push(use_block.clone());
            let result = json!([{"type": "tool_result", "tool_use_id": use_block["id"], "content": TOOL_OUTPUT}]);
            let turns = json!([question, {"role": "assistant", "content": said}, user(result)]);
            let second = post(json!({"model": model, "max_tokens": 256, "messages": turns, "tools": tools})).await;
            let expected = if cell.egress.obeys { TOOL_OUTPUT } else { MOCK_TEXT };
            assert!(message_text(&second).contains(expected), "{cell}: the final text holds {expected:?}: {second}");
            assert_eq!(second["stop_reason"], "end_turn", "{cell}: {second}");

            let body = json!({"model": model, "max_tokens": 256, "messages": [question], "tools": tools});
            let (events, names) = messages_stream(world, cell, body).await;
            if cell.egress.obeys {
                let (name, _) = streamed_tool_use(cell, &events);
                assert_eq!(name, "get_weather", "{cell}");
                assert_eq!(stop_reason(&events), "tool_use", "{cell}");
            } else {
                assert_eq!(event_text(&events), MOCK_TEXT, "{cell}");
            }
            Seen::new(3, vec![names])
        }
        Mode::Structured => {
            let tools = json!([{"name": "record_weather", "description": REPORT, "input_schema": report_schema()}]);
            let body = json!({"model": model, "max_tokens": 256, "messages": [user(json!(structured_question(cell)))],
                "tools": tools, "tool_choice": {"type": "tool", "name": "record_weather"}});
            let message = post(body.clone()).await;
            let (events, names) = messages_stream(world, cell, body).await;
            if cell.egress.obeys {
                let block = tool_use(&message).unwrap_or_else(|| panic!("{cell}: no tool_use block in {message}"));
                assert_eq!(block["name"], "record_weather", "{cell}: {message}");
                check_report(cell, &block["input"]);
                assert_eq!(message["stop_reason"], "tool_use", "{cell}: {message}");
                let (name, input) = streamed_tool_use(cell, &events);
                assert_eq!(name, "record_weather", "{cell}");
                check_report(cell, &input);
                assert_eq!(stop_reason(&events), "tool_use", "{cell}");
            } else {
                assert_eq!(
                    (message_text(&message), event_text(&events)),
                    (MOCK_TEXT.into(), MOCK_TEXT.into()),
                    "{cell}"
                );
                return Seen::new(2, vec![names]);
            }
            // Anthropic's own JSON mode, `output_config.format`: it must reach the upstream in
            // the provider's form (checked with the others in `run`), or be refused clearly.
            let question = format!("Describe Oslo as JSON {BY_OUTPUT_CONFIG} {}", cell.tag());
            let format = json!({"type": "json_schema", "schema": report_schema()});
            let body = json!({"model": model, "max_tokens": 256, "messages": [user(json!(question))],
                "output_config": {"format": format}});
            let (status, answer) = crate::support::read_json(post_messages(world, &body).await).await;
            match status {
                200 => Seen::new(3, vec![names]),
                400..=499 => {
                    let named = answer.to_string().contains("output_config");
                    check(cell, "output_config", named, || format!("a refusal names output_config: {answer}"));
                    Seen::new(2, vec![names])
                }
                _ => panic!("{cell}: output_config: {status} {answer}"),
            }
        }
    }
}

/// What every Anthropic `message` holds: its type, a `msg_` id, the assistant's content, usage.
fn check_message(cell: Cell, message: &Value) {
    assert_eq!(
        (message["type"].as_str(), message["role"].as_str()),
        (Some("message"), Some("assistant")),
        "{cell}: {message}"
    );
    assert!(message["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{cell}: {message}");
    assert!(message["model"].is_string() && message["content"].is_array(), "{cell}: {message}");
    let members = ["stop_reason", "stop_sequence"];
    assert!(members.iter().all(|k| message.get(k).is_some()), "{cell}: a message has {members:?}: {message}");
    let usage = &message["usage"];
    assert!(
        usage["input_tokens"].as_u64().is_some_and(|n| n > 0) && usage["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{cell}: usage {usage}"
    );
}

/// The streamed tool_use block: its name and its input, from the `input_json_delta` pieces.
fn streamed_tool_use(cell: Cell, events: &[(String, Value)]) -> (String, Value) {
    let start = events
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("{cell}: no tool_use block in {events:?}"));
    let block = &start.1["content_block"];
    assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "{cell}: a tool_use block has an id: {block}");
    assert_eq!(block["input"], json!({}), "{cell}: the input comes in deltas: {block}");
    let partial: String = events
        .iter()
        .filter(|(_, d)| d["index"] == start.1["index"] && d["delta"]["type"] == "input_json_delta")
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    (block["name"].as_str().unwrap_or_default().to_owned(), parse_arguments(cell, &json!(partial)))
}

fn tool_use(message: &Value) -> Option<Value> {
    message["content"].as_array()?.iter().find(|b| b["type"] == "tool_use").cloned()
}

fn message_text(message: &Value) -> String {
    let blocks = message["content"].as_array().into_iter().flatten();
    blocks.filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect()
}

/// An Anthropic stream: its events (name, data), checked for the sequence, and their names.
async fn messages_stream(world: &World, cell: Cell, mut body: Value) -> (Vec<(String, Value)>, Vec<String>) {
    body["stream"] = json!(true);
    let response = post_messages(world, &body).await;
    assert_eq!(response.status(), 200, "{cell}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{cell}: {content_type}");
    let events = named_events(cell, &response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{cell}: {names:?}");
    assert_eq!(names[names.len().saturating_sub(2)..], ["message_delta", "message_stop"], "{cell}: {names:?}");
    // Blocks open and close in turn, with indexes counting up from 0.
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (name, data) in &events {
        let index = data["index"].as_u64();
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none() && index == Some(next), "{cell}: {names:?}");
                open = index;
                next += 1;
            }
            "content_block_delta" => assert!(open.is_some() && index == open, "{cell}: {names:?}"),
            "content_block_stop" => {
                assert!(index == open, "{cell}: {names:?}");
                open = None;
            }
            _ => {}
        }
    }
    assert!(open.is_none() && next > 0, "{cell}: {names:?}");
    let start = &events[0].1["message"];
    let delta = &events[events.len() - 2].1;
    assert!(start["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{cell}: {start}");
    let input = start["usage"]["input_tokens"].as_u64().max(delta["usage"]["input_tokens"].as_u64());
    assert!(input.is_some_and(|n| n > 0), "{cell}: input tokens in message_start or message_delta: {start} {delta}");
    assert!(delta["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0), "{cell}: {delta}");
    let names = events
        .iter()
        .map(|(name, data)| match name.as_str() {
            "content_block_start" => format!("{name}({})", data["content_block"]["type"].as_str().unwrap_or("?")),
            "content_block_delta" => format!("{name}({})", data["delta"]["type"].as_str().unwrap_or("?")),
            _ => name.clone(),
        })
        .collect();
    (events, collapse(names))
}

fn event_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "text_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect()
}

fn stop_reason(events: &[(String, Value)]) -> String {
    let delta = events.iter().find(|(n, _)| n == "message_delta").map(|(_, d)| d);
    delta.and_then(|d| d["delta"]["stop_reason"].as_str()).unwrap_or_default().to_owned()
}

/// The events of an SSE body whose events are all named, each data's `type` its name.
fn named_events(cell: Cell, body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("{cell}: an unnamed event {e:?}"));
            let data =
                e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("{cell}: no data in {e:?}"));
            let data: Value =
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{cell}: not JSON ({err}): {data}"));
            assert_eq!(data["type"], name, "{cell}: an event's type is its name");
            (name.to_owned(), data)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Responses

async fn responses(world: &World, cell: Cell) -> Seen {
    let server = &world.server;
    let url = server.demo_url("/v1/responses");
    let model = cell.egress.model;
    let post = |body: Value| {
        let url = url.clone();
        async move {
            let (status, response) = server.post_json(&url, &body).await;
            assert_eq!(status, 200, "{cell}: {response}");
            check_response(cell, &response);
            response
        }
    };
    match cell.mode {
        Mode::Json => {
            let text = hello_text(cell);
            let response = post(json!({"model": model, "input": text})).await;
            assert_eq!(output_text(&response), (cell.egress.hello)(&text), "{cell}: {response}");
            Seen::new(1, Vec::new())
        }
        Mode::Stream => {
            let text = hello_text(cell);
            let (events, names) = responses_stream(world, cell, json!({"model": model, "input": text})).await;
            let deltas = responses_text_deltas(&events);
            assert_eq!(deltas, (cell.egress.hello)(&text), "{cell}: the deltas add up to the text");
            let completed = &events.last().unwrap().1["response"];
            assert_eq!(output_text(completed), deltas, "{cell}: the completed response holds the text");
            Seen::new(1, vec![names])
        }
        Mode::Tools => {
            let parameters = weather_parameters();
            let tools =
                json!([{"type": "function", "name": "get_weather", "description": WEATHER, "parameters": parameters}]);
            let question = json!({"role": "user", "content": weather_question(cell)});
            let first = post(json!({"model": model, "input": [question], "tools": tools})).await;
            let call = if cell.egress.obeys {
                let call = function_call(&first).unwrap_or_else(|| panic!("{cell}: no function_call item in {first}"));
                assert_eq!(call["name"], "get_weather", "{cell}: {call}");
                assert!(call["call_id"].as_str().is_some_and(|id| !id.is_empty()), "{cell}: {call}");
                parse_arguments(cell, &call["arguments"]);
                call
            } else {
                assert_eq!(output_text(&first), MOCK_TEXT, "{cell}: {first}");
                let arguments = "{\"city\":\"Oslo\"}";
                json!({"type": "function_call", "call_id": "call_made_up", "name": "get_weather",
                       "arguments": arguments})
            };
            let input = json!([
                question,
                {"type": "function_call", "call_id": call["call_id"], "name": "get_weather",
                 "arguments": call["arguments"]},
                {"type": "function_call_output", "call_id": call["call_id"], "output": TOOL_OUTPUT}
            ]);
            let second = post(json!({"model": model, "input": input, "tools": tools})).await;
            let expected = if cell.egress.obeys { TOOL_OUTPUT } else { MOCK_TEXT };
            assert!(output_text(&second).contains(expected), "{cell}: the final text holds {expected:?}: {second}");

            let (events, names) =
                responses_stream(world, cell, json!({"model": model, "input": [question], "tools": tools})).await;
            let completed = &events.last().unwrap().1["response"];
            if cell.egress.obeys {
                let added = events
                    .iter()
                    .find(|(n, d)| n == "response.output_item.added" && d["item"]["type"] == "function_call")
                    .unwrap_or_else(|| panic!("{cell}: no function_call item in {names:?}"));
                assert_eq!(added.1["item"]["name"], "get_weather", "{cell}: {}", added.1);
                let deltas: String = events
                    .iter()
                    .filter(|(n, _)| n == "response.function_call_arguments.delta")
                    .filter_map(|(_, d)| d["delta"].as_str())
                    .collect();
                let done = events.iter().find(|(n, _)| n == "response.function_call_arguments.done");
                let done = done.unwrap_or_else(|| panic!("{cell}: no function_call_arguments.done in {names:?}"));
                assert_eq!(done.1["arguments"].as_str(), Some(deltas.as_str()), "{cell}: the deltas add up");
                parse_arguments(cell, &json!(deltas));
                let item = function_call(completed).unwrap_or_else(|| panic!("{cell}: {completed}"));
                assert_eq!(item["arguments"].as_str(), Some(deltas.as_str()), "{cell}: {item}");
                assert_eq!(item["call_id"], added.1["item"]["call_id"], "{cell}: one call id");
            } else {
                assert_eq!(output_text(completed), MOCK_TEXT, "{cell}");
            }
            Seen::new(3, vec![names])
        }
        Mode::Structured => {
            let format =
                json!({"type": "json_schema", "name": "weather_report", "strict": true, "schema": report_schema()});
            let body = json!({"model": model, "input": structured_question(cell), "text": {"format": format}});
            let response = post(body.clone()).await;
            let (events, names) = responses_stream(world, cell, body).await;
            let streamed = output_text(&events.last().unwrap().1["response"]);
            assert_eq!(streamed, responses_text_deltas(&events), "{cell}: the deltas add up to the text");
            if cell.egress.obeys {
                check_report(cell, &parse_report(cell, &output_text(&response)));
                check_report(cell, &parse_report(cell, &streamed));
            } else {
                assert_eq!((output_text(&response), streamed), (MOCK_TEXT.into(), MOCK_TEXT.into()), "{cell}");
            }
            Seen::new(2, vec![names])
        }
    }
}

/// What every completed `response` holds: its object, a `resp_` id, output, and usage.
fn check_response(cell: Cell, response: &Value) {
    assert_eq!(
        (response["object"].as_str(), response["status"].as_str()),
        (Some("response"), Some("completed")),
        "{cell}: {response}"
    );
    assert!(response["id"].as_str().is_some_and(|id| id.starts_with("resp_")), "{cell}: {response}");
    assert!(response["created_at"].is_u64() && response["output"].is_array(), "{cell}: {response}");
    let members = ["model", "tools", "tool_choice", "parallel_tool_calls", "text", "error", "incomplete_details"];
    assert!(members.iter().all(|k| response.get(k).is_some()), "{cell}: a response has {members:?}: {response}");
    let usage = &response["usage"];
    let (input, output) = (usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64());
    assert!(input.is_some_and(|n| n > 0) && output.is_some_and(|n| n > 0), "{cell}: usage {usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(input.unwrap() + output.unwrap()), "{cell}: {usage}");
}

/// The text of a response's message items.
fn output_text(response: &Value) -> String {
    let items = response["output"].as_array().into_iter().flatten().filter(|i| i["type"] == "message");
    let parts = items.flat_map(|i| i["content"].as_array().into_iter().flatten());
    parts.filter(|p| p["type"] == "output_text").filter_map(|p| p["text"].as_str()).collect()
}

fn responses_text_deltas(events: &[(String, Value)]) -> String {
    let deltas = events.iter().filter(|(n, _)| n == "response.output_text.delta");
    deltas.filter_map(|(_, d)| d["delta"].as_str()).collect()
}

fn function_call(response: &Value) -> Option<Value> {
    response["output"].as_array()?.iter().find(|i| i["type"] == "function_call").cloned()
}

/// A Responses stream: its events, checked for the sequence, and their names.
async fn responses_stream(world: &World, cell: Cell, mut body: Value) -> (Vec<(String, Value)>, Vec<String>) {
    body["stream"] = json!(true);
    let response = world.server.post(world.server.demo_url("/v1/responses"), &body).await;
    assert_eq!(response.status(), 200, "{cell}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{cell}: {content_type}");
    let events = named_events(cell, &response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2.min(names.len())], ["response.created", "response.in_progress"], "{cell}: {names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{cell}: {names:?}");
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i, "{cell}: {name} is number {i}");
    }
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["id"], events[0].1["response"]["id"], "{cell}: one id throughout");
    check_response(cell, completed);
    let names = events
        .iter()
        .map(|(name, data)| match name.as_str() {
            "response.output_item.added" | "response.output_item.done" => {
                format!("{name}({})", data["item"]["type"].as_str().unwrap_or("?"))
            }
            _ => name.clone(),
        })
        .collect();
    (events, collapse(names))
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/// Runs of one name as `name ×N`, so a snapshot says the sequence without every delta.
fn collapse(names: Vec<String>) -> Vec<String> {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for name in names {
        match runs.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => runs.push((name, 1)),
        }
    }
    runs.into_iter().map(|(name, n)| if n == 1 { name } else { format!("{name} ×{n}") }).collect()
}

/// Replaces what changes from run to run: ids (numbered in order of appearance, so a reference
/// to an earlier id still shows) and times.
fn redact(value: &mut Value, ids: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), &*v) {
                    (
                        "id" | "call_id" | "tool_call_id" | "tool_use_id" | "toolUseId" | "item_id",
                        Value::String(id),
                    ) => {
                        let n = ids.iter().position(|seen| seen == id).unwrap_or_else(|| {
                            ids.push(id.clone());
                            ids.len() - 1
                        });
                        *v = json!(format!("[id {}]", n + 1));
                    }
                    ("created" | "created_at", Value::Number(_)) => *v = json!("[time]"),
                    ("signature", Value::String(_)) => *v = json!("[signature]"),
                    _ => redact(v, ids),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, ids)),
        _ => {}
    }
}
