//! Vertex AI: ferrolite in front of tests/it/fake_vertex.rs, which grants tokens at the
//! service account's `token_uri` (verifying the RS256 assertion with the test's public key)
//! and serves Gemini and Claude under the project's and location's path. What reached the fake
//! shows the URLs, the bearer token, and Claude's Vertex body; the token is fetched once and
//! again only shortly before it expires; credentials and values that cannot be used fail with
//! errors naming their field.

use crate::fake_vertex::{self, FakeVertex, CLIENT_EMAIL, KEY_ID, PROJECT, SCOPE};
use crate::support::{sse_data, TestServer};
use ferrolite::apps::session::{SecretSource, Session, SessionSpec, StartError};
use ferrolite::manifest::Manifest;
use serde_json::{json, Value};
use std::path::PathBuf;

const LOCATION: &str = "europe-west4";
const CLAUDE: &str = "claude-sonnet-4@20250514";

fn manifest(dir: &std::path::Path, fake: &FakeVertex, credential: &str) -> PathBuf {
    let deployment = |name: &str, model: &str| {
        json!({"model_name": name, "litellm_params": {"model": model, "api_base": fake.base_url,
            "vertex_project": PROJECT, "vertex_location": LOCATION, "vertex_credentials": credential}})
    };
    let doc = json!({"name": "Vertex", "type": "llm-proxy", "version": "1.0.0", "config": {"service_id": "demo", "model_list": [
        deployment("gemini", "vertex_ai/gemini-2.0-flash"),
        deployment("claude", &format!("vertex_ai/{CLAUDE}")),
    ]}});
    let path = dir.join("vertex.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

async fn serve(fake: &FakeVertex, credential: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), fake, credential)]).await;
    (server, dir)
}

async fn chat(server: &TestServer, model: &str, text: &str) -> (u16, Value) {
    server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": model, "messages": [{"role": "user", "content": text}]}),
        )
        .await
}

async fn streamed_text(server: &TestServer, model: &str, text: &str) -> String {
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": model, "stream": true, "messages": [{"role": "user", "content": text}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn gemini_on_vertex_reaches_the_projects_path_with_one_signed_grant() {
    let fake = FakeVertex::start().await;
    let (server, _dir) = serve(&fake, &fake.credential(&fake_vertex::private_key())).await;
    let (status, body) = chat(&server, "gemini", "Hello there").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: Hello there");
    assert_eq!(streamed_text(&server, "gemini", "Tell me a story").await, "echo: Tell me a story");
    let (status, _) = chat(&server, "gemini", "Again").await;
    assert_eq!(status, 200);

    let requests = fake.requests();
    let base = format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.0-flash");
    let seen: Vec<(String, Option<String>)> = requests.iter().map(|r| (r.path.clone(), r.query.clone())).collect();
    assert_eq!(
        seen,
        [
            (format!("{base}:generateContent"), None),
            (format!("{base}:streamGenerateContent"), Some("alt=sse".to_owned())),
            (format!("{base}:generateContent"), None),
        ]
    );
    assert!(requests.iter().all(|r| r.authorization.as_deref() == Some("Bearer ya29.fake-1")), "{requests:#?}");
    assert_eq!(fake.token_requests(), 1, "the token is cached");
    let grant = &fake.grants()[0];
    assert_eq!(grant.kid.as_deref(), Some(KEY_ID));
    assert_eq!((grant.claims.iss.as_str(), grant.claims.scope.as_str()), (CLIENT_EMAIL, SCOPE));
    assert_eq!(grant.claims.aud, fake.token_uri);
    assert_eq!(grant.claims.exp - grant.claims.iat, 3600);
}

#[tokio::test]
async fn claude_on_vertex_goes_through_raw_predict_with_vertexs_version_and_no_model() {
    let fake = FakeVertex::start().await;
    let (server, _dir) = serve(&fake, &fake.credential(&fake_vertex::private_key())).await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "claude", "max_tokens": 100, "messages": [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello Claude"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake Claude! You said: Hello Claude");
    let raw = fake.requests().pop().unwrap();
    assert_eq!(
        raw.path,
        format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{CLAUDE}:rawPredict")
    );
    insta::assert_json_snapshot!("claude_raw_predict_body", raw.body);

    let text = streamed_text(&server, "claude", "Stream to me").await;
    assert_eq!(text, "Hello from fake Claude! You said: Stream to me");
    let raw = fake.requests().pop().unwrap();
    assert!(raw.path.ends_with(&format!("{CLAUDE}:streamRawPredict")), "{}", raw.path);
    assert_eq!((raw.body["stream"].as_bool(), raw.body.get("model")), (Some(true), None));

    // The Anthropic front and the Responses API reach it through the same translation.
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/messages"),
            &json!({"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["text"], "Hello from fake Claude! You said: Hi");
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn a_token_is_fetched_once_for_concurrent_requests_and_again_shortly_before_it_expires() {
    // Tokens of two seconds: replaced one second before they expire.
    let fake = FakeVertex::with_token_lifetime(2).await;
    let (server, _dir) = serve(&fake, &fake.credential(&fake_vertex::private_key())).await;
    let answers =
        futures::future::join_all((0..8).map(|i| chat(&server, "gemini", if i % 2 == 0 { "a" } else { "b" }))).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    assert_eq!(fake.token_requests(), 1, "concurrent requests share one grant");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = chat(&server, "gemini", "later").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.requests().pop().unwrap().authorization.as_deref(), Some("Bearer ya29.fake-2"));
}

#[tokio::test]
async fn a_credential_google_refuses_is_a_401_naming_the_grants_error() {
    let fake = FakeVertex::start().await;
    let (server, _dir) = serve(&fake, &fake.credential(&fake_vertex::other_private_key())).await;
    let (status, body) = chat(&server, "gemini", "Hi").await;
    assert_eq!(status, 401, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.ends_with("Google refused the service account's token request: invalid_grant: Invalid JWT Signature."),
        "{message}"
    );
    assert_eq!(body["error"]["code"], "google_token_refused");
    assert!(fake.requests().is_empty(), "no model request without a token");
    assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
}

#[tokio::test]
async fn a_credential_file_is_read_for_trusted_apps() {
    let fake = FakeVertex::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("service-account.json");
    std::fs::write(&file, fake.credential(&fake_vertex::private_key())).unwrap();
    let (server, _d) = serve(&fake, file.to_str().unwrap()).await;
    let (status, body) = chat(&server, "claude", "From a file").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.token_requests(), 1);
}

// ---------------------------------------------------------------------------------------------
// What cannot start

struct Env(Vec<(&'static str, String)>);

impl SecretSource for Env {
    fn env(&self, var: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone())
    }
    fn workspace_secret(&self, _: &str) -> Option<String> {
        None
    }
}

fn start(params: Value, env: &Env, public_only: bool) -> Result<Session, StartError> {
    let manifest: Manifest = serde_json::from_value(json!({"name": "v", "type": "llm-proxy", "version": "1.0.0",
        "config": {"model_list": [{"model_name": "v", "litellm_params": params}]}}))
    .unwrap();
    let spec = SessionSpec {
        id: "s".into(),
        app_id: "v".into(),
        workspace: "w".into(),
        manifest: &manifest,
        created: 0,
        public_only,
        mcp_http: Default::default(),
    };
    Session::build(spec, env)
}

#[test]
fn vertex_values_are_checked_at_start_and_name_their_field() {
    let credential =
        json!({"type": "service_account", "client_email": CLIENT_EMAIL, "private_key": fake_vertex::private_key(),
        "project_id": PROJECT, "token_uri": "https://oauth2.googleapis.com/token"})
        .to_string();
    let env = Env(vec![("CREDENTIAL", credential.clone()), ("BAD_LOCATION", "x.attacker.net#".into())]);
    let base = json!({"model": "vertex_ai/gemini-2.0-flash", "vertex_credentials": "os.environ/CREDENTIAL"});
    let with = |extra: Value| {
        let mut params = base.clone();
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        params
    };

    // The credential's project, the default location, the location's host.
    let session = start(base.clone(), &env, false).expect("starts");
    let d = &session.table.deployments[0];
    let vertex = d.vertex.as_ref().unwrap();
    assert_eq!((vertex.project.as_str(), vertex.location.as_str()), (PROJECT, "us-central1"));
    assert_eq!(d.api_base.as_deref(), Some("https://us-central1-aiplatform.googleapis.com"));
    let global = start(with(json!({"vertex_location": "global"})), &env, false).expect("starts");
    assert_eq!(global.table.deployments[0].api_base.as_deref(), Some("https://aiplatform.googleapis.com"));

    let refused = |params: Value, public_only: bool| {
        start(params, &env, public_only).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let e = refused(with(json!({"vertex_location": "os.environ/BAD_LOCATION"})), false);
    assert!(e.contains("litellm_params.vertex_location") && e.contains("not a Vertex AI location"), "{e}");
    let e = refused(with(json!({"vertex_project": "Not_A_Project"})), false);
    assert!(e.contains("litellm_params.vertex_project") && e.contains("not a Google Cloud project"), "{e}");
    let e = refused(with(json!({"vertex_credentials": "{\"type\": \"authorized_user\"}"})), false);
    assert!(e.contains("litellm_params.vertex_credentials") && e.contains("only service_account"), "{e}");
    let e = refused(with(json!({"vertex_credentials": "/etc/hostname"})), true);
    assert!(e.contains("litellm_params.vertex_credentials") && e.contains("admin token only"), "{e}");
    // No credential at all: the app starts (as litellm's does) with the deployment left out.
    let started = start(json!({"model": "vertex_ai/gemini-2.0-flash"}), &env, false).expect("starts");
    let reason = started.table.deployments[0].unavailable.as_deref().unwrap_or_default();
    assert!(reason.contains("vertex_ai deployment needs vertex_credentials"), "{reason}");
}

#[test]
fn install_checks_vertex_literals_and_models() {
    let doc = |params: Value| {
        json!({"name": "v", "type": "llm-proxy", "version": "1.0.0",
            "config": {"model_list": [{"model_name": "v", "litellm_params": params}]}})
    };
    let findings = |params: Value| match ferrolite::manifest::validate::validate(&doc(params)) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.findings.into_iter().map(|f| (f.pointer, f.message)).collect(),
    };
    assert_eq!(
        findings(
            json!({"model": "vertex_ai/gemini-2.0-flash", "vertex_project": "my-project", "vertex_location": "us-east5"})
        ),
        vec![]
    );
    let found = findings(
        json!({"model": "vertex_ai/gemini-2.0-flash", "vertex_project": "x/../y", "vertex_location": "evil.com/"}),
    );
    let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        pointers,
        ["/config/model_list/0/litellm_params/vertex_project", "/config/model_list/0/litellm_params/vertex_location"],
        "{found:?}"
    );
    // A Vertex model ferrolite does not serve is left out, as litellm starts such configs.
    let warnings = ferrolite::manifest::validate::validate(&doc(json!({"model": "vertex_ai/meta/llama-3.1-405b"})))
        .expect("starts")
        .warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("vertex_ai/ serves models starting with claude or gemini"), "{warnings:?}");
}
