//! Isolation and the request-forgery guard: no token of another workspace (nor an expired,
//! forged or missing one) gets anything out of, or changes anything in, a workspace; and apps
//! of non-admins may not aim ferrolite at its own network.

use crate::support::{read_json, TestServer};
use ferrolite::catalogue::{BodyKind, HttpMethod, ROUTES};
use ferrolite::http::controller::FUNCTIONS;
use serde_json::{json, Value};
use std::time::Duration;

fn mock_app(service_id: &str) -> Value {
    json!({"name": "Victim", "type": "llm-proxy", "config": {"service_id": service_id, "model_list": [
        {"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "secret answer"}}
    ]}})
}

#[tokio::test]
async fn other_workspaces_tokens_get_nothing_and_change_nothing() {
    let server = TestServer::demo().await;
    let owner = server.token_for("victim");
    server.ok("victim", &owner, "install", json!({"manifest": mock_app("private")})).await;
    let session = server.ok("victim", &owner, "start", json!({"app_id": "victim"})).await;
    server.ok("victim", &owner, "set_env", json!({"key": "K", "value": "v-123456789"})).await;
    let before = (
        server.ok("victim", &owner, "list_apps", json!({})).await,
        server.ok("victim", &owner, "list_running", json!({})).await,
    );

    let other = server.token_for("attacker");
    let expired = server.running.state.tokens.issue("victim", false, Duration::ZERO);
    let forged = ferrolite::auth::Tokens::from_secret(&[9u8; 32]).issue("victim", true, Duration::from_secs(600));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let intruders: [(&str, Option<&str>, u16); 4] = [
        ("other workspace", Some(&other), 403),
        ("expired", Some(&expired), 401),
        ("forged", Some(&forged), 401),
        ("none", None, 401),
    ];

    let kwargs = json!({"app_id": "victim", "session_id": session["id"], "key": "K", "value": "x",
        "manifest": mock_app("hijack"), "overwrite": true});
    for (who, token, expected) in &intruders {
        for function in FUNCTIONS {
            let mut request = server
                .client
                .post(format!("{}/victim/services/server-apps/{function}", server.base))
                .json_body(&kwargs);
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let (status, body) = read_json(request.send().await.unwrap()).await;
            assert_eq!(status, *expected, "{who} calling {function}: {body}");
            assert!(body["error"]["message"].is_string());
        }
        for route in ROUTES.iter() {
            let path =
                route.params.iter().fold(route.path.to_owned(), |p, name| p.replace(&format!("{{{name}}}"), "x"));
            let url = format!("{}/victim/apps/private{path}", server.base);
            let mut request = match route.method {
                HttpMethod::Get => server.client.get(&url),
                HttpMethod::Post => server.client.post(&url),
                HttpMethod::Delete => server.client.delete(&url),
            };
            if route.request == BodyKind::Json {
                request = request.json_body(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
            }
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let (status, body) = read_json(request.send().await.unwrap()).await;
            assert_eq!(status, *expected, "{who} on {:?} {path}: {body}", route.method);
            assert!(!body.to_string().contains("secret answer"));
        }
    }
    let after = (
        server.ok("victim", &owner, "list_apps", json!({})).await,
        server.ok("victim", &owner, "list_running", json!({})).await,
    );
    assert_eq!(before, after, "nothing changed");
    assert_eq!(server.ok("victim", &owner, "get_env", json!({})).await, json!([{"key": "K", "value": "****6789"}]));
}

#[tokio::test]
async fn non_admin_apps_may_not_aim_at_private_addresses() {
    let server = TestServer::start(vec![], |c| c.allow_private_upstreams = false).await;
    let user = server.token_for("team");
    let admin = server.running.state.tokens.issue("team", true, Duration::from_secs(600));
    let aimed = |base: &str| {
        json!({"name": "Aimed", "type": "llm-proxy", "config": {"service_id": "aimed", "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": base, "api_key": "k"}}
        ]}})
    };
    for base in
        ["http://127.0.0.1:6379/v1", "http://169.254.169.254/latest", "http://10.0.0.5/v1", "http://localhost:8080/v1"]
    {
        let (status, err) = server.controller("team", &user, "install", json!({"manifest": aimed(base)})).await;
        assert_eq!(status, 400, "{base}: {err}");
        assert_eq!(err["error"]["param"], "/config/model_list/0/litellm_params/api_base");
        assert!(err["error"]["message"].as_str().unwrap().contains("--allow-private-upstreams"), "{err}");
    }
    assert_eq!(server.ok("team", &user, "list_apps", json!({})).await, json!([]), "nothing stored");

    // A URL hidden in a workspace secret is caught when the app starts.
    let hidden = json!({"name": "Hidden", "type": "llm-proxy", "config": {"service_id": "hidden", "model_list": [
        {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "HYPHA_SECRET:BASE", "api_key": "k"}}
    ]}});
    server.ok("team", &user, "set_env", json!({"key": "BASE", "value": "http://127.0.0.1:9/v1"})).await;
    server.ok("team", &user, "install", json!({"manifest": hidden})).await;
    let (status, err) = server.controller("team", &user, "start", json!({"app_id": "hidden"})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("points at a loopback address"), "{err}");

    // Admins may.
    server.ok("team", &admin, "install", json!({"manifest": aimed("http://127.0.0.1:6379/v1")})).await;
    server.ok("team", &admin, "start", json!({"app_id": "aimed"})).await;
}

#[tokio::test]
async fn no_value_pasted_into_an_upstream_url_can_move_it_inside() {
    let server = TestServer::start(vec![], |c| c.allow_private_upstreams = false).await;
    let user = server.token_for("team");
    let admin = server.running.state.tokens.issue("team", true, Duration::from_secs(600));
    // A listener that would see any connection the forged URLs make.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = trap.local_addr().unwrap().port();
    let bedrock = |region: &str| {
        json!({"name": "Forged", "type": "llm-proxy", "config": {"service_id": "forged", "model_list": [
            {"model_name": "m", "litellm_params": {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                "aws_region_name": region, "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s"}}
        ]}})
    };
    let forged =
        [format!("x@127.0.0.1:{port}/#"), format!("x@127.0.0.1:{port}/?"), format!("us-east-1.x@127.0.0.1:{port}")];
    for region in &forged {
        // Refused at install whoever installs it: no region looks like that.
        for token in [&user, &admin] {
            let (status, err) = server.controller("team", token, "install", json!({"manifest": bedrock(region)})).await;
            assert_eq!(status, 400, "{region}: {err}");
            assert_eq!(err["error"]["param"], "/config/model_list/0/litellm_params/aws_region_name", "{err}");
            assert!(err["error"]["message"].as_str().unwrap().contains("is not an AWS region"), "{err}");
        }
    }
    // The same value in a workspace secret is refused when the app starts.
    server.ok("team", &user, "set_env", json!({"key": "REGION", "value": forged[0]})).await;
    server.ok("team", &user, "install", json!({"manifest": bedrock("HYPHA_SECRET:REGION")})).await;
    let (status, err) = server.controller("team", &user, "start", json!({"app_id": "forged"})).await;
    assert_eq!(status, 400, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("aws_region_name") && message.contains("is not an AWS region"), "{err}");

    // An API version and a model name are held to theirs too (they land in a query and a path).
    let azure = |version: &str, model: &str| {
        json!({"name": "Az", "type": "llm-proxy", "config": {"service_id": "az", "model_list": [
            {"model_name": "m", "litellm_params": {"model": format!("azure/{model}"), "api_version": version,
                "api_base": "https://example.openai.azure.com", "api_key": "k"}}
        ]}})
    };
    let (status, err) =
        server.controller("team", &admin, "install", json!({"manifest": azure("2024-10-21&x=1", "gpt")})).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("/config/model_list/0/litellm_params/api_version"))
    );
    let (status, err) =
        server.controller("team", &admin, "install", json!({"manifest": azure("2024-10-21", "..")})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("/config/model_list/0/litellm_params/model")));

    assert_eq!(
        server.ok("team", &user, "list_apps", json!({})).await.as_array().unwrap().len(),
        1,
        "only the one with a secret"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), trap.accept()).await;
    assert!(accepted.is_err(), "ferrolite connected to the trap");
}

#[tokio::test]
async fn every_name_a_user_gives_keeps_to_its_grammar_and_nothing_is_stored_otherwise() {
    let server = TestServer::demo().await;
    let token = server.token_for("team");
    let app = |id: &str, model_name: &str| {
        json!({"id": id, "name": "Named", "type": "llm-proxy", "config": {"model_list": [
            {"model_name": model_name, "litellm_params": {"model": "gpt-4o", "mock_response": "hi"}}
        ]}})
    };
    let long = "x".repeat(5000);
    for bad in ["a\nb", "a\0b", "a\u{1f}b", "\u{1b}[31mred", long.as_str(), "../../b/apps/x", ""] {
        let (status, err) = server.controller("team", &token, "install", json!({"manifest": app(bad, "m")})).await;
        assert_eq!(status, 400, "{bad:?}: {err}");
        assert_eq!(err["error"]["param"], "/id", "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("is not URL-safe"), "{message}");
        assert!(message.len() < 400 && !message.contains('\u{1b}') && !message.contains('\n'), "{message:?}");
    }
    let (status, err) = server.controller("team", &token, "install", json!({"manifest": app("ok", "bad\nname")})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("/config/model_list/0/model_name")), "{err}");
    let (status, err) =
        server.controller("team", &token, "install", json!({"manifest": {"name": "x", "type": "llm-proxy",
            "config": {"service_id": "../up", "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "x"}}]}}})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("/config/service_id")), "{err}");
    for key in ["BAD-KEY", "1KEY", "K\u{1f}", ""] {
        let (status, err) = server.controller("team", &token, "set_env", json!({"key": key, "value": "v"})).await;
        assert_eq!(status, 400, "{key:?}: {err}");
    }
    // A name derived from a long app name is cut to the grammar's length, and works.
    let named = json!({"name": "A very long app name ".repeat(20), "type": "llm-proxy", "config": {"model_list": [
        {"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "hi"}}]}});
    let info = server.ok("team", &token, "install", json!({"manifest": named})).await;
    let id = info["id"].as_str().unwrap();
    assert!(id.len() <= 64 && ferrolite::grammar::name(id).is_ok(), "{id}");
    server.ok("team", &token, "start", json!({"app_id": id})).await;
    assert_eq!(server.ok("team", &token, "list_apps", json!({})).await.as_array().unwrap().len(), 1);
    assert_eq!(server.ok("team", &token, "get_env", json!({})).await, json!([]));
    // The command line refuses such a workspace for a token.
    let (code, _, stderr) = crate::support::run_cli(&["token", "--workspace", "a/b"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--workspace \"a/b\" is not URL-safe"), "{stderr}");
}

/// `json_body` for reqwest without its `json` feature.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json").body(body.to_string())
    }
}

/// A Hypha server's token (HS256 with its JWT secret, its workspaces in `scope`).
fn hypha_token(secret: &[u8], scope: &str) -> String {
    let claims = serde_json::json!({"iss": "https://amun.ai/", "sub": "alice", "aud": "https://amun-ai.eu.auth0.com/api/v2/",
        "iat": 1, "exp": ferrolite::clock::unix_now() + 600, "scope": scope, "gty": "client-credentials"});
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

#[tokio::test]
async fn hypha_tokens_pass_with_the_hypha_servers_secret_and_keep_workspaces_apart() {
    const SECRET: &str = "the hypha server's jwt secret for this test";
    let server = TestServer::start(Vec::new(), |c| c.hypha_jwt_secret = Some(SECRET.into())).await;
    let body = serde_json::json!({"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]});
    let call = |token: String| {
        let request = server.client.post(server.demo_url("/v1/chat/completions")).bearer_auth(token);
        let body = body.to_string();
        async move { read_json(request.header("content-type", "application/json").body(body).send().await.unwrap()).await }
    };
    let (status, answer) = call(hypha_token(SECRET.as_bytes(), "ws:default#rw wid:default")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(hypha_token(SECRET.as_bytes(), "ws:team-b#rw wid:team-b")).await;
    assert_eq!(status, 403, "another workspace's Hypha token on a protected service: {answer}");
    let (status, _) = call(hypha_token(b"some other server's secret", "ws:default#rw wid:default")).await;
    assert_eq!(status, 401);
    // Without the secret, a Hypha token is nobody's.
    let plain = TestServer::demo().await;
    let request = plain
        .client
        .post(plain.demo_url("/v1/chat/completions"))
        .bearer_auth(hypha_token(SECRET.as_bytes(), "ws:default#rw"));
    let (status, _) =
        read_json(request.header("content-type", "application/json").body(body.to_string()).send().await.unwrap())
            .await;
    assert_eq!(status, 401);
}

/// A stand-in for a Hypha server's `GET /{workspace}/info`: 200 when the bearer token is one
/// it issued for that workspace; the number of questions it was asked.
async fn fake_hypha_info(grants: Vec<(String, String)>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/{workspace}/info",
        axum::routing::get(move |Path(workspace): Path<String>, headers: HeaderMap| {
            let grants = grants.clone();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let known = grants.iter().any(|(t, w)| token == format!("Bearer {t}") && *w == workspace);
                if known {
                    (StatusCode::OK, "{}")
                } else {
                    (StatusCode::FORBIDDEN, "{\"success\": false}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

#[tokio::test]
async fn without_its_secret_a_hypha_servers_tokens_are_checked_by_asking_it_once() {
    // Signed with a secret ferrolite does not know: only the server can vouch for them.
    let mine = hypha_token(b"unknown to ferrolite", "ws:default#rw wid:default");
    let foreign = hypha_token(b"unknown to ferrolite", "ws:team-b#rw wid:team-b");
    let grants = vec![(mine.clone(), "default".to_owned()), (foreign.clone(), "team-b".to_owned())];
    let (hypha, asked) = fake_hypha_info(grants).await;
    let server = TestServer::start(Vec::new(), |c| c.hypha_token_server = Some(format!("{hypha}/"))).await;
    let body = serde_json::json!({"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let call = |token: String| {
        let request = server.client.post(server.demo_url("/v1/chat/completions")).bearer_auth(token);
        let request = request.header("content-type", "application/json").body(body.clone());
        async move { read_json(request.send().await.unwrap()).await }
    };
    for _ in 0..3 {
        let (status, answer) = call(mine.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "asked once, then remembered");
    let (status, answer) = call(foreign).await;
    assert_eq!(status, 403, "a token of another workspace on a protected service: {answer}");
    let (status, _) = call(hypha_token(b"unknown to ferrolite", "ws:nobody#rw wid:nobody")).await;
    assert_eq!(status, 401, "a token the server does not vouch for");
}
