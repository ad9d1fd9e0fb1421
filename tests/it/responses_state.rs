//! The Responses API's state: `store` keeps each answer (translated or passed through) with its
//! input; `previous_response_id` continues a conversation on any deployment of any provider;
//! `GET /v1/responses/{id}`, `.../input_items` and `DELETE` read the store; everything is
//! scoped to the caller's workspace, survives a restart, and is shared through Redis.

use crate::fake_anthropic::FakeAnthropic;
use crate::fake_gemini::FakeGemini;
use crate::fake_openai::FakeOpenAi;
use crate::support::{read_json, TestServer};
use serde_json::{json, Value};

const ANTHROPIC_KEY: &str = "sk-ant-fake-state-1";
const GEMINI_KEY: &str = "AIzaSy-fake-state-0001";
const OPENAI_KEY: &str = "sk-fake-state-openai-1";

struct Setup {
    server: TestServer,
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    openai: FakeOpenAi,
    _dir: tempfile::TempDir,
}

fn manifest(anthropic: &str, gemini: &str, openai: &str) -> Value {
    json!({"name": "Stored conversations", "type": "llm-proxy", "config": {"service_id": "demo", "visibility": "public", "model_list": [
        {"model_name": "mock", "litellm_params": {"model": "gpt-4o", "mock_response": "Hello from the mock"}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": anthropic, "api_key": ANTHROPIC_KEY}},
        {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-1.5-pro", "api_base": gemini, "api_key": GEMINI_KEY}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": openai, "api_key": OPENAI_KEY}}
    ]}})
}

async fn setup() -> Setup {
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let gemini = FakeGemini::start(GEMINI_KEY).await;
    let openai = FakeOpenAi::start(OPENAI_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, manifest(&anthropic.base_url, &gemini.base_url, &openai.base_url).to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    Setup { server, anthropic, gemini, openai, _dir: dir }
}

async fn create(s: &Setup, body: Value) -> (u16, Value) {
    s.server.post_json(&s.server.demo_url("/v1/responses"), &body).await
}

async fn create_ok(s: &Setup, body: Value) -> Value {
    let (status, answer) = create(s, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The completed response of a streamed create.
async fn create_streamed(s: &Setup, mut body: Value) -> (Vec<Value>, Value) {
    body["stream"] = json!(true);
    let response = s.server.post(s.server.demo_url("/v1/responses"), &body).await;
    assert_eq!(response.status(), 200);
    let events: Vec<Value> = crate::support::sse_data(&response.text().await.unwrap())
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("not JSON ({e}): {d}")))
        .collect();
    let completed = events.last().expect("events")["response"].clone();
    assert_eq!(events.last().unwrap()["type"], "response.completed", "{events:?}");
    (events, completed)
}

async fn get(s: &Setup, path: &str, token: &str) -> (u16, Value) {
    s.server.get_json_with(&s.server.demo_url(path), token).await
}

fn text_of(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().into_iter().flatten())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// The (role, text) turns of the Anthropic fake's last request.
fn claude_turns(s: &Setup) -> Vec<(String, String)> {
    let last = s.anthropic.requests().pop().expect("Claude was called");
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(t) => t.clone(),
                parts => parts.as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect(),
            };
            (m["role"].as_str().unwrap().to_owned(), text)
        })
        .collect()
}

/// POSTs JSON with `token` (to a server of another process).
async fn post_to(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let request = reqwest::Client::new().post(url).bearer_auth(token).header("content-type", "application/json");
    read_json(request.body(body.to_string()).send().await.unwrap()).await
}

/// The body of the OpenAI fake's last create request.
fn sent_to_openai(s: &Setup) -> Value {
    serde_json::from_slice(&s.openai.last("/v1/responses").expect("the OpenAI upstream was called").body).unwrap()
}

fn turns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(r, t)| (r.to_string(), t.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_response_is_read_listed_continued_and_deleted() {
    let s = setup().await;
    let first =
        create_ok(&s, json!({"model": "claude", "input": "My name is Ada.", "instructions": "Be brief."})).await;
    assert_eq!(first["store"], true, "{first}");
    let id = first["id"].as_str().unwrap();
    let token = s.server.token.clone();

    let (status, read) = get(&s, &format!("/v1/responses/{id}"), &token).await;
    assert_eq!((status, &read), (200, &first), "GET gives back the response as it was answered");

    // The next turn continues from it: Claude is sent the whole conversation.
    let second =
        create_ok(&s, json!({"model": "claude", "input": "What is my name?", "previous_response_id": id})).await;
    assert_eq!(second["previous_response_id"], id, "{second}");
    assert_eq!(
        claude_turns(&s),
        turns(&[
            ("user", "My name is Ada."),
            ("assistant", "Hello from fake Claude! You said: My name is Ada."),
            ("user", "What is my name?")
        ])
    );
    let last = s.anthropic.requests().pop().unwrap();
    assert_eq!(last.get("system"), None, "instructions are not carried over from the earlier turn: {last}");

    // Its input items: the earlier turn's input and output, then its own input, newest first.
    let second_id = second["id"].as_str().unwrap();
    let (status, items) = get(&s, &format!("/v1/responses/{second_id}/input_items"), &token).await;
    assert_eq!(status, 200, "{items}");
    let texts: Vec<&str> =
        items["data"].as_array().unwrap().iter().map(|i| i["content"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["What is my name?", "Hello from fake Claude! You said: My name is Ada.", "My name is Ada."]);
    assert_eq!((items["object"].as_str(), items["has_more"].as_bool()), (Some("list"), Some(false)));
    assert!(items["data"].as_array().unwrap().iter().all(|i| i["id"].is_string() && i["type"] == "message"), "{items}");
    let (_, page) = get(&s, &format!("/v1/responses/{second_id}/input_items?order=asc&limit=1"), &token).await;
    assert_eq!(
        (page["data"][0]["content"][0]["text"].as_str(), page["has_more"].as_bool()),
        (Some("My name is Ada."), Some(true))
    );
    let (status, bad) = get(&s, &format!("/v1/responses/{second_id}/input_items?limit=500"), &token).await;
    assert_eq!((status, bad["error"]["param"].as_str()), (400, Some("limit")), "{bad}");

    // Deleted: gone for reading and for continuing, and the later turn's chain says which
    // earlier turn is missing.
    let url = s.server.demo_url(&format!("/v1/responses/{id}"));
    let (status, deleted) = read_json(s.server.client.delete(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((status, deleted), (200, json!({"id": id, "object": "response", "deleted": true})));
    let (status, gone) = get(&s, &format!("/v1/responses/{id}"), &token).await;
    assert_eq!((status, gone["error"]["param"].as_str()), (404, Some("response_id")), "{gone}");
    assert!(gone["error"]["message"].as_str().unwrap().contains(id), "{gone}");
    let (status, err) =
        create(&s, json!({"model": "claude", "input": "again", "previous_response_id": second_id})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (404, Some("previous_response_id")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains(id), "names the missing turn: {err}");
    let (status, _) = read_json(s.server.client.delete(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 404, "deleting twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_moves_between_providers_and_streams() {
    let s = setup().await;
    // Started on Claude (streamed: recorded when its last event goes by) ...
    let (_, first) = create_streamed(&s, json!({"model": "claude", "input": "Remember: blue."})).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    // ... continued at once on Gemini, with the earlier turn in the request Gemini gets ...
    let second =
        create_ok(&s, json!({"model": "gemini", "input": "Which colour?", "previous_response_id": first_id})).await;
    let sent: Value = serde_json::from_slice(&s.gemini.requests().pop().unwrap().body).unwrap();
    let contents: Vec<(&str, &str)> = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["role"].as_str().unwrap(), c["parts"][0]["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        contents,
        [
            ("user", "Remember: blue."),
            ("model", "Hello from fake Claude! You said: Remember: blue."),
            ("user", "Which colour?")
        ]
    );
    // ... then streamed on the mock, whose events echo the continued id, and on an OpenAI
    // upstream, which is sent the conversation as input rather than an id it never saw.
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (events, third) =
        create_streamed(&s, json!({"model": "mock", "input": "And now?", "previous_response_id": second_id})).await;
    assert!(
        events
            .iter()
            .filter(|e| e.get("response").is_some())
            .all(|e| e["response"]["previous_response_id"] == second_id.as_str()),
        "{events:?}"
    );
    assert_eq!(text_of(&third), "Hello from the mock");
    let fourth = create_ok(&s, json!({"model": "gpt", "input": "Last one", "previous_response_id": third["id"]})).await;
    assert_eq!(fourth["previous_response_id"], third["id"]);
    let sent = sent_to_openai(&s);
    assert_eq!(sent.get("previous_response_id"), None, "{sent}");
    let roles: Vec<&str> = sent["input"].as_array().unwrap().iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user", "assistant", "user"], "{sent}");
    assert!(
        sent["input"].as_array().unwrap().iter().all(|i| i.get("id").is_none()),
        "no ids the upstream never made: {sent}"
    );
    // The pass-through's own answer is stored here too: read back, and continued on Claude.
    let fourth_id = fourth["id"].as_str().unwrap();
    let (status, read) = get(&s, &format!("/v1/responses/{fourth_id}"), &s.server.token).await;
    assert_eq!((status, read["id"].as_str()), (200, Some(fourth_id)));
    create_ok(&s, json!({"model": "claude", "input": "Done?", "previous_response_id": fourth_id})).await;
    assert_eq!(claude_turns(&s).len(), 9, "four turns and the new input: {:?}", claude_turns(&s));
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_responses_belong_to_the_callers_workspace() {
    let s = setup().await;
    let mine = create_ok(&s, json!({"model": "mock", "input": "secret plans"})).await;
    let id = mine["id"].as_str().unwrap();
    // A token of another workspace may call this public app, but never sees the response.
    let other = s.server.token_for("other-team");
    let (status, err) = get(&s, &format!("/v1/responses/{id}"), &other).await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = get(&s, &format!("/v1/responses/{id}/input_items"), &other).await;
    assert_eq!(status, 404);
    let url = s.server.demo_url("/v1/responses");
    let body = json!({"model": "mock", "input": "more", "previous_response_id": id});
    let response = s
        .server
        .client
        .post(&url)
        .bearer_auth(&other)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (status, err) = read_json(response).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("response_not_found")), "{err}");
    // `store: false` keeps nothing; an unknown id is a 404 naming it.
    let unstored = create_ok(&s, json!({"model": "claude", "input": "forget me", "store": false})).await;
    assert_eq!(unstored["store"], false);
    let (status, _) = get(&s, &format!("/v1/responses/{}", unstored["id"].as_str().unwrap()), &s.server.token).await;
    assert_eq!(status, 404);
    let (status, err) =
        create(&s, json!({"model": "gemini", "input": "hi", "previous_response_id": "resp_nope"})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (404, Some("previous_response_id")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("resp_nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_only_the_openai_upstream_knows_is_forwarded_to_it() {
    let s = setup().await;
    // A response stored upstream but not here (made before the gateway stood in front).
    let url = format!("{}/responses", s.openai.base_url);
    let made: Value = reqwest::Client::new()
        .post(&url)
        .bearer_auth(OPENAI_KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "gpt-4o", "input": "made upstream"}).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let id = made["id"].as_str().unwrap();
    let answer = create_ok(&s, json!({"model": "gpt", "input": "continue", "previous_response_id": id})).await;
    let sent = sent_to_openai(&s);
    assert_eq!((sent["previous_response_id"].as_str(), &sent["input"]), (Some(id), &json!("continue")), "{sent}");
    // Not recorded here: the conversation stays with the upstream's store.
    let (status, _) = get(&s, &format!("/v1/responses/{}", answer["id"].as_str().unwrap()), &s.server.token).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_responses_survive_a_graceful_restart() {
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, manifest(&anthropic.base_url, "http://127.0.0.1:9", "http://127.0.0.1:9").to_string())
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = crate::support::free_port().to_string();
    let args = ["--port", &port, "--config", path.to_str().unwrap(), "--allow-private-upstreams"];
    let first = crate::support::ServeProcess::spawn(&args, data.path());
    let body = json!({"model": "claude", "input": "Keep this."});
    let (status, answer) =
        post_to(&format!("{}/default/apps/demo/v1/responses", first.base), &first.token, &body).await;
    assert_eq!(status, 200, "{answer}");
    // Stopped as a service manager stops it: what is held in memory is written out on the way.
    let mut first = first;
    let pid = first.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(first.child.wait().unwrap().success(), "{}", first.stderr());
    let second = crate::support::ServeProcess::spawn(&args, data.path());
    let body = json!({"model": "claude", "input": "Still there?", "previous_response_id": answer["id"]});
    let (status, next) =
        post_to(&format!("{}/default/apps/demo/v1/responses", second.base), &second.token, &body).await;
    assert_eq!((status, &next["previous_response_id"]), (200, &answer["id"]), "{next}");
    assert_eq!(anthropic.requests().pop().unwrap()["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_sharing_redis_continue_each_others_conversations() {
    let redis = crate::support::Redis::start();
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let start = |url: String| TestServer::start(Vec::new(), move |c| c.redis_url = Some(url));
    let a = start(redis.url.clone()).await;
    let b = start(redis.url.clone()).await;
    // Installed and started through A (two instances starting one config would each install it).
    let token = a.token.clone();
    // Beside the embedded demo app each instance runs.
    let mut app = manifest(&anthropic.base_url, "http://127.0.0.1:9", "http://127.0.0.1:9");
    app["config"]["service_id"] = json!("stored");
    let url = |server: &TestServer, path: &str| format!("{}/default/apps/stored{path}", server.base);
    let installed = a.ok("default", &token, "install", json!({"manifest": app})).await;
    a.ok("default", &token, "start", json!({"app_id": installed["id"]})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while b.get_json(&url(&b, "/v1/models")).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "B never served the app started on A");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, first) = a.post_json(&url(&a, "/v1/responses"), &json!({"model": "claude", "input": "On A."})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap();
    let key = format!("ferrolite:response:default\u{1f}{id}");
    let ttl: i64 = redis.query(redis::cmd("TTL").arg(&key));
    assert!(ttl > 29 * 24 * 3600, "kept in Redis for the default 30 days: {ttl}");
    // B reads it and continues it (its token is A's: the instances share the signing secret).
    let (status, read) = b.get_json(&url(&b, &format!("/v1/responses/{id}"))).await;
    assert_eq!((status, &read["id"]), (200, &first["id"]), "{read}");
    let body = json!({"model": "claude", "input": "On B.", "previous_response_id": id});
    let (status, second) = b.post_json(&url(&b, "/v1/responses"), &body).await;
    assert_eq!((status, &second["previous_response_id"]), (200, &first["id"]), "{second}");
    assert_eq!(anthropic.requests().pop().unwrap()["messages"].as_array().unwrap().len(), 3);
    // Deleted through B: gone on A.
    let target = url(&b, &format!("/v1/responses/{id}"));
    let (status, _) = read_json(b.client.delete(&target).bearer_auth(&b.token).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = a.get_json(&url(&a, &format!("/v1/responses/{id}"))).await;
    assert_eq!(status, 404, "deleted everywhere");
}
