//! litellm's pass-through routes: `/{provider}/*` under the app's URL (and at the root of a
//! litellm config) forwarded with the app's own credentials for that provider (Anthropic's key,
//! Gemini's key, a SigV4 signature for Bedrock), streamed, costed and logged; and
//! `general_settings.pass_through_endpoints`. Fakes check the credentials they get.

use crate::fake_anthropic::FakeAnthropic;
use crate::fake_bedrock;
use crate::fake_gemini::FakeGemini;
use crate::support::{read_json, run_cli, TestServer};
use axum::http::HeaderMap;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const BEDROCK_MODEL: &str = "anthropic.claude-3-sonnet-20240229-v1:0";

struct Setup {
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    bedrock: fake_bedrock::FakeBedrock,
    server: TestServer,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// An app with an Anthropic, a Gemini and a Bedrock deployment, each on its fake.
    async fn new() -> Setup {
        let anthropic = FakeAnthropic::start("sk-ant-app").await;
        let gemini = FakeGemini::start("gm-app-key").await;
        let bedrock = fake_bedrock::start("AKIDPASSTHROUGH", "bedrock-secret", "us-east-1").await;
        let doc = json!({
            "name": "pass", "type": "llm-proxy",
            "config": {"service_id": "pass", "model_list": [
                {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-haiku-20241022",
                    "api_base": anthropic.base_url, "api_key": "sk-ant-app",
                    "input_cost_per_token": 0.001, "output_cost_per_token": 0.002}},
                {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-1.5-flash",
                    "api_base": gemini.base_url, "api_key": "gm-app-key"}},
                {"model_name": "sonnet", "litellm_params": {"model": format!("bedrock/{BEDROCK_MODEL}"),
                    "api_base": bedrock.base_url, "aws_access_key_id": "AKIDPASSTHROUGH",
                    "aws_secret_access_key": "bedrock-secret", "aws_region_name": "us-east-1"}}
            ]}
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        // A small body limit, for the refused oversized call.
        let server = TestServer::start(vec![path], |c| c.limits.max_body_bytes = 64 * 1024).await;
        Setup { anthropic, gemini, bedrock, server, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/default/apps/pass{path}", self.server.base)
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
        let mut request =
            self.server.client.post(self.url(path)).header("content-type", "application/json").body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn the_anthropic_sdk_calls_through_the_pass_through_route_with_the_apps_key_and_is_costed() {
    let s = Setup::new().await;
    crate::python_sdk::run_script("anthropic_pass_through.py", &s.url("/anthropic"), &s.server.token).await;

    let recorded = s.anthropic.recorded();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for r in &recorded {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.headers.get("x-api-key").map(String::as_str), Some("sk-ant-app"), "the app's key upstream");
        assert!(r.headers.values().all(|v| !v.contains(&s.server.token)), "the caller's token stays behind: {r:?}");
        let version = r.headers.get("anthropic-version").expect("a version is sent");
        assert!(!version.contains(','), "one version, the SDK's own: {version}");
    }

    // Each call is booked at its reported usage: a spend record each, the app's spend their sum.
    let page = s.server.ok("default", &s.server.token, "get_spend_logs", json!({"limit": 100})).await;
    let records: Vec<&Value> =
        page["items"].as_array().unwrap().iter().filter(|r| r["deployment"] == "claude/0").collect();
    assert_eq!(records.len(), 2, "{page}");
    let mut total = 0.0;
    for r in &records {
        let (input, output) = (r["prompt_tokens"].as_f64().unwrap(), r["completion_tokens"].as_f64().unwrap());
        assert!(input > 0.0 && output > 0.0, "{r}");
        let cost = r["cost"].as_f64().unwrap();
        assert!((cost - (input * 0.001 + output * 0.002)).abs() < 1e-9, "{r}");
        total += cost;
    }
    let running = s.server.ok("default", &s.server.token, "list_running", json!({})).await;
    let usage = s.server.ok("default", &s.server.token, "get_usage", json!({"session_id": running[0]["id"]})).await;
    assert!((usage["spend"].as_f64().unwrap() - total).abs() < 1e-6, "{usage} vs {total}");
}

#[tokio::test]
async fn gemini_takes_the_callers_key_from_the_query_and_streams_with_the_apps_key() {
    let s = Setup::new().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]});
    let path = format!("/gemini/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse&key={}", s.server.token);
    let response = s.post(&path, &[], &body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    // Gemini frames its events with CRLF, passed on as they came.
    let events = crate::support::sse_data(&text.replace("\r\n", "\n"));
    assert!(events.len() >= 2, "{text}");
    assert!(events.iter().any(|e| e.contains("usageMetadata")), "{text}");

    let sent = s.gemini.last(":streamGenerateContent").expect("the call reached Gemini");
    assert_eq!(sent.query.as_deref(), Some("alt=sse"), "the caller's key is not sent on");
    assert_eq!(sent.headers.get("x-goog-api-key").map(String::as_str), Some("gm-app-key"));
}

#[tokio::test]
async fn bedrock_calls_are_signed_anew_with_the_apps_aws_credentials() {
    let s = Setup::new().await;
    let body = json!({"messages": [{"role": "user", "content": [{"text": "Hello"}]}]});
    let path = format!("/bedrock/model/{}/converse", BEDROCK_MODEL.replace(':', "%3A"));
    let auth = format!("Bearer {}", s.server.token);
    let response = s.post(&path, &[("authorization", &auth), ("x-amz-date", "20000101T000000Z")], &body).await;
    let (status, answer) = read_json(response).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["output"]["message"]["content"][0]["text"].is_string(), "{answer}");
    let sent = s.bedrock.requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].headers["authorization"].contains("Credential=AKIDPASSTHROUGH/"), "{:?}", sent[0].headers);
    assert_ne!(sent[0].headers["x-amz-date"], "20000101T000000Z", "the client's signing headers are replaced");
}

#[tokio::test]
async fn pass_through_refuses_callers_paths_and_providers_it_cannot_serve() {
    let s = Setup::new().await;
    let hello =
        json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
    let auth = format!("Bearer {}", s.server.token);

    let (status, body) = read_json(s.post("/anthropic/v1/messages", &[], &hello).await).await;
    assert_eq!(status, 401, "no token: {body}");
    let other = s.server.token_for("elsewhere");
    let (status, body) =
        read_json(s.post("/anthropic/v1/messages", &[("authorization", &format!("Bearer {other}"))], &hello).await)
            .await;
    assert_eq!(status, 403, "another workspace's token: {body}");

    let (status, body) = read_json(s.post("/cohere/v2/chat", &[("authorization", &auth)], &hello).await).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no cohere deployment"), "{body}");

    // An escaped '/' (URL parsers keep it), and a raw '..' (they would resolve it: sent as is).
    let (status, body) = read_json(s.post("/anthropic/v1/a%2Fb", &[("authorization", &auth)], &hello).await).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("escaped '/'"), "{body}");
    let raw = raw_post(&s.server.base, "/default/apps/pass/anthropic/v1/../../admin", &auth, &hello).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("'..'"), "{raw}");
    // Over the server's body limit: the same 413 as on litellm's routes.
    let long = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 8,
        "messages": [{"role": "user", "content": "x".repeat(100 * 1024)}]});
    let (status, body) = read_json(s.post("/anthropic/v1/messages", &[("authorization", &auth)], &long).await).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(body["error"]["message"], "request body is larger than the 65536 byte limit", "{body}");
    assert!(s.anthropic.recorded().is_empty(), "nothing refused reached the upstream");

    // A key's budget holds the call's worst case (8 output tokens at $0.002 and the prompt).
    let key = s.server.ok("default", &s.server.token, "create_key", json!({"max_budget": 0.01})).await;
    let key = key["key"].as_str().unwrap();
    let (status, body) = read_json(s.post("/anthropic/v1/messages", &[("x-api-key", key)], &hello).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    let limited = s.server.ok("default", &s.server.token, "create_key", json!({"models": ["flash"]})).await;
    let limited = limited["key"].as_str().unwrap();
    let (status, body) = read_json(s.post("/anthropic/v1/messages", &[("x-api-key", limited)], &hello).await).await;
    assert_eq!(status, 403, "a key limited to other models: {body}");

    // The client's own Anthropic version goes on, once, in place of the deployment's default.
    let version = [("authorization", auth.as_str()), ("anthropic-version", "2024-10-22")];
    let (status, body) = read_json(s.post("/anthropic/v1/messages", &version, &hello).await).await;
    assert_eq!(status, 200, "{body}");
    let sent = s.anthropic.recorded().pop().unwrap();
    assert_eq!(sent.headers.get("anthropic-version").map(String::as_str), Some("2024-10-22"));
}

/// A POST to `path` exactly as written (no client resolves its dot segments), its answer's text.
async fn raw_post(base: &str, path: &str, auth: &str, body: &Value) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// What the echo upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: String,
}

/// An upstream that answers every request with `{"ok": true}` and keeps what it saw.
async fn echo_upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            let query = uri.query().map(str::to_owned);
            log.lock().unwrap().push(Seen { path: uri.path().to_owned(), query, headers, body });
            axum::Json(json!({"ok": true, "results": [{"index": 0, "relevance_score": 0.9}]}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, seen)
}

#[tokio::test]
async fn configured_pass_through_endpoints_answer_at_the_root_with_their_own_headers() {
    let (upstream, seen) = echo_upstream().await;
    std::env::set_var("FERROLITE_TEST_PASS_THROUGH_KEY", "cohere-secret");
    let config = format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: gpt-4o, mock_response: hi}}
general_settings:
  master_key: sk-1234
  pass_through_endpoints:
    - path: "/v1/rerank"
      target: "{upstream}/v1/rerank"
      headers:
        Authorization: "bearer os.environ/FERROLITE_TEST_PASS_THROUGH_KEY"
        content-type: application/json
      forward_headers: true
    - path: /custom
      target: "{upstream}/base?v=1"
      include_subpath: true
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &config).unwrap();
    let (code, out, err) = run_cli(&["validate", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!format!("{out}{err}").contains("pass_through_endpoints is not a setting"), "{out}{err}");
    let server = TestServer::with_configs(vec![path]).await;

    // litellm's example: /v1/rerank goes to the target, not to the catalogue's rerank route.
    let rerank = json!({"model": "rerank-english-v3.0", "query": "q", "documents": ["a", "b"]});
    let response = server
        .client
        .post(format!("{}/v1/rerank", server.base))
        .bearer_auth("sk-1234")
        .header("x-team", "search")
        .header("content-type", "application/json")
        .body(rerank.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.path, "/v1/rerank");
    assert_eq!(first.headers["authorization"], "bearer cohere-secret", "the config's header, not the caller's");
    assert_eq!(first.headers["x-team"], "search", "forward_headers sends the client's own");
    assert_eq!(serde_json::from_str::<Value>(&first.body).unwrap(), rerank);

    // include_subpath: what is under the path goes under the target, queries joined.
    let response = server
        .client
        .get(format!("{}/default/apps/litellm/custom/a/b?x=2", server.base))
        .bearer_auth(&server.token)
        .header("x-team", "search")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second = seen.lock().unwrap()[1].clone();
    assert_eq!((second.path.as_str(), second.query.as_deref()), ("/base/a/b", Some("v=1&x=2")));
    assert!(second.headers.get("x-team").is_none(), "no forward_headers: the client's stay behind");
    assert!(second.headers.get("authorization").is_none(), "the caller's token is never sent on");

    // A path that could leave the target is refused at validate, naming the entry.
    std::fs::write(dir.path().join("bad.yaml"), config.replace("path: /custom", "path: /custom/../x")).unwrap();
    let (code, out, err) = run_cli(&["validate", dir.path().join("bad.yaml").to_str().unwrap()]);
    assert_ne!(code, 0);
    let said = format!("{out}{err}");
    assert!(said.contains("/config/general_settings/pass_through_endpoints/1/path"), "{said}");
}
