//! The catalogue drives the server: every route in endpoints/ is mounted and answers, and a
//! malformed entry is refused with its file, route and reason.

use crate::support::{repo_root, TestServer};
use ferrolite::catalogue::{BodyKind, HttpMethod, ROUTES};
use serde_json::Value;

/// build.rs itself, so its checker can be run on broken catalogues.
#[allow(dead_code)]
#[path = "../../build.rs"]
mod build_script;

#[tokio::test]
async fn mounted_routes_equal_the_catalogue() {
    let server = TestServer::demo().await;
    let aliases = ROUTES.iter().filter(|r| r.bare_path.is_some()).count();
    assert!(ROUTES.len() >= 50, "the catalogue covers litellm's surface: {} routes", ROUTES.len());
    assert_eq!(server.running.mounted_routes, ROUTES.len() + aliases);
}

#[tokio::test]
async fn every_catalogue_route_answers() {
    let server = TestServer::demo().await;
    for route in ROUTES.iter() {
        for path in std::iter::once(route.path).chain(route.bare_path) {
            let mut concrete = path.to_owned();
            for p in route.params {
                let value = if *p == "model" { "demo-chat" } else { "x1" };
                concrete = concrete.replace(&format!("{{{p}}}"), value);
            }
            let url = server.demo_url(&concrete);
            let request = match route.method {
                HttpMethod::Get => server.client.get(&url),
                HttpMethod::Post => server.client.post(&url),
                HttpMethod::Delete => server.client.delete(&url),
            }
            .bearer_auth(&server.token);
            let request = match route.request {
                BodyKind::Json => request.header("content-type", "application/json").body("{\"model\": \"demo-chat\"}"),
                BodyKind::Multipart => request
                    .header("content-type", "multipart/form-data; boundary=XyZ")
                    .body("--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndemo-chat\r\n--XyZ--\r\n"),
                BodyKind::None => request,
            };
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let body: Value = response.json_body().await;
            // A stored response the gateway answers for itself is looked up: its 404 names the
            // missing response, not a missing route.
            let unknown_response = status == 404 && body["error"]["code"] == "response_not_found";
            assert!(
                (status != 404 || unknown_response) && status != 405,
                "{:?} {path} answered {status}: {body}",
                route.method
            );
            assert!(body.is_object() || body.is_string(), "{path}: JSON body expected, got {body}");
        }
    }
}

#[tokio::test]
async fn openapi_document_is_served_and_lists_every_route() {
    let server = TestServer::demo().await;
    let response = server.client.get(format!("{}/openapi.json", server.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json_body().await;
    assert_eq!(doc["openapi"], "3.1.0");
    for route in ROUTES.iter() {
        let method = format!("{:?}", route.method).to_lowercase();
        let op = &doc["paths"][route.path][&method];
        assert_eq!(op["operationId"], route.op.as_str(), "{} {}", method, route.path);
        if let Some(bare) = route.bare_path {
            assert!(doc["paths"][bare][&method].is_object(), "bare alias {bare} documented");
        }
    }
    let chat = &doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(chat["required"], serde_json::json!(["model", "messages"]));
}

fn broken_catalogue(file: &str, yaml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), yaml).unwrap();
    match build_script::load_catalogue(dir.path(), &repo_root().join("schema/catalogue.schema.json")) {
        Ok(_) => vec![],
        Err(errors) => errors,
    }
}

#[test]
fn a_malformed_entry_names_file_route_and_reason() {
    let errors = broken_catalogue(
        "chat.yaml",
        r#"
family: chat
description: broken on purpose
routes:
  - op: chat_completions
    summary: Create a chat completion
    method: PATCH
    path: /v1/chat/completions
    request: { kind: json, schema: { type: object } }
    response: { kind: json, schema: { type: object } }
    providers:
      mock: { translate: mock_chat }
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.contains("chat.yaml") && e.contains("route chat_completions") && e.contains("/method"), "{e}");
    assert!(e.contains("PATCH"), "the reason names the bad value: {e}");
}

#[test]
fn cross_entry_rules_are_checked() {
    let errors = broken_catalogue(
        "files.yaml",
        r##"
family: files
description: broken on purpose
routes:
  - op: get_file
    summary: one
    method: GET
    path: /v1/files/{file_id}
    request: { kind: none }
    response: { kind: json, schema: { type: object } }
    providers:
      openai: { upstream: "GET /files/{fileid}", translate: passthrough }
  - op: get_file
    summary: two
    method: GET
    path: /v1/files/{file_id}
    request: { kind: none }
    response: { kind: json, schema: { type: object, properties: { a: { $ref: "#/x" } } } }
    local: list_models
"##,
    );
    let all = errors.join("\n");
    assert!(all.contains("route get_file: provider openai: upstream \"GET /files/{fileid}\" names {fileid}"), "{all}");
    assert!(all.contains("operation name used twice"), "{all}");
    assert!(all.contains("GET /v1/files/{file_id} is served twice"), "{all}");
    assert!(all.contains("response schema uses $ref"), "{all}");
}

#[test]
fn the_shipped_catalogue_passes_its_own_checks() {
    let loaded =
        build_script::load_catalogue(&repo_root().join("endpoints"), &repo_root().join("schema/catalogue.schema.json"));
    let (routes, families) = loaded.unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(routes.len(), ROUTES.len());
    assert!(families.len() >= 15);
}

/// Reads a JSON body (or panics with the text).
trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}
