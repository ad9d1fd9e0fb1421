//! `/mcp-rest/tools/*`: the app's MCP tools over plain JSON in litellm's shapes, against an
//! upstream MCP server built on rmcp (Streamable HTTP, as the gateway's other tests use the
//! Python SDK's).

use crate::support::{read_json, DeadPort, TestServer};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer};
use serde_json::{json, Value};
use std::sync::Arc;

/// An upstream with `echo` (answers its `text`, refuses a call without one) and `hidden`
/// (disallowed by the app).
#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = |v: Value| Arc::new(v.as_object().cloned().unwrap_or_default());
        let text = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("echo", "Echoes text.", schema(text)),
            Tool::new("hidden", "Disallowed by the app.", schema(json!({"type": "object"}))),
        ]))
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(text) = params.arguments.as_ref().and_then(|a| a.get("text")).and_then(Value::as_str) else {
            return Err(ErrorData::invalid_params("echo needs a string `text`", None));
        };
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(format!("echo: {text}"))])))
    }
}

async fn start_upstream() -> String {
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    let service = StreamableHttpService::new(|| Ok(Echo), Arc::new(LocalSessionManager::default()), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/mcp")
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_rest_lists_and_calls_tools_as_litellm_does() {
    let url = start_upstream().await;
    let down = DeadPort::new();
    let manifest = json!({
        "name": "Tools",
        "type": "llm-proxy",
        "config": {
            "service_id": "tools",
            "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
            "mcp_servers": {
                "echo": {"url": url, "disallowed_tools": ["hidden"]},
                "down": {"url": down.url("/mcp")},
            },
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let base = format!("{}/default/apps/tools/mcp-rest", server.base);

    let (status, listed) = server.get_json(&format!("{base}/tools/list")).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["error"], Value::Null, "a down server does not fail the list: {listed}");
    assert_eq!(
        listed["tools"],
        json!([{
            "name": "echo-echo",
            "description": "Echoes text.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            "mcp_info": {"server_name": "echo"},
        }])
    );
    let (status, only) = server.get_json(&format!("{base}/tools/list?server_id=down")).await;
    assert_eq!((status, only["tools"].clone()), (200, json!([])), "{only}");
    let (status, error) = server.get_json(&format!("{base}/tools/list?server_id=nope")).await;
    assert_eq!((status, error["error"]["param"].clone()), (404, json!("server_id")), "{error}");

    let call = |body: Value| {
        let server = &server;
        let url = format!("{base}/tools/call");
        async move { server.post_json(&url, &body).await }
    };
    let (status, result) = call(json!({"name": "echo-echo", "arguments": {"text": "hi"}})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["content"], json!([{"type": "text", "text": "echo: hi"}]), "{result}");
    assert_ne!(result["isError"], json!(true), "{result}");
    // litellm also takes the server's own tool name with server_id.
    let (status, result) = call(json!({"name": "echo", "server_id": "echo", "arguments": {"text": "yo"}})).await;
    assert_eq!((status, result["content"][0]["text"].clone()), (200, json!("echo: yo")), "{result}");

    let (status, error) = call(json!({"name": "echo-hidden", "arguments": {}})).await;
    assert_eq!((status, error["error"]["param"].clone()), (400, json!("name")), "{error}");
    assert!(error["error"]["message"].as_str().unwrap_or("").contains("not allowed"), "{error}");
    let (status, error) = call(json!({"name": "echo-echo", "arguments": {}})).await;
    assert_eq!((status, error["error"]["param"].clone()), (400, json!("arguments")), "the upstream's refusal: {error}");
    assert!(error["error"]["message"].as_str().unwrap_or("").contains("needs a string"), "{error}");
    let (status, error) = call(json!({"arguments": {}})).await;
    assert_eq!((status, error["error"]["param"].clone()), (400, json!("name")), "{error}");
    let (status, error) = call(json!({"name": "down-x"})).await;
    assert_eq!(status, 502, "{error}");
    assert!(error["error"]["message"].as_str().unwrap_or("").contains("\"down\""), "{error}");

    let response = reqwest::Client::new().get(format!("{base}/tools/list")).send().await.unwrap();
    assert_eq!(read_json(response).await.0, 401, "the LLM routes' tokens guard it");

    // A key with its own lists sees and calls only what they name, at every door.
    let limited = server
        .ok("default", &server.token, "create_key", json!({"mcp_servers": ["echo"], "mcp_tools": ["echo-none"]}))
        .await;
    let limited = limited["key"].as_str().unwrap().to_owned();
    let (status, listed) = server.get_json_with(&format!("{base}/tools/list"), &limited).await;
    assert_eq!((status, listed["tools"].clone()), (200, json!([])), "{listed}");
    let response = server
        .client
        .post(format!("{base}/tools/call"))
        .bearer_auth(&limited)
        .header("content-type", "application/json")
        .body(json!({"name": "echo-echo", "arguments": {"text": "hi"}}).to_string())
        .send()
        .await
        .unwrap();
    let (status, refused) = read_json(response).await;
    assert_eq!((status, refused["error"]["param"].clone()), (403, json!("name")), "{refused}");
    let mcp_url = format!("{}/default/apps/tools/mcp", server.base);
    let rpc = |key: String, body: Value| {
        let (client, url) = (server.client.clone(), mcp_url.clone());
        async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .header("mcp-protocol-version", "2025-06-18")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            read_json(response).await.1
        }
    };
    let listed = rpc(limited.clone(), json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(listed["result"]["tools"], json!([]), "{listed}");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo-echo", "arguments": {"text": "x"}}});
    let refused = rpc(limited.clone(), call.clone()).await;
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("may not call")), "{refused}");
    let open = server.ok("default", &server.token, "create_key", json!({"mcp_tools": ["echo-echo"]})).await;
    let answered = rpc(open["key"].as_str().unwrap().to_owned(), call).await;
    assert_eq!(answered["result"]["content"][0]["text"], "echo: x", "{answered}");

    // A key's rpm counts MCP messages too.
    let slow = server.ok("default", &server.token, "create_key", json!({"rpm": 2})).await;
    let slow = slow["key"].as_str().unwrap().to_owned();
    let ping = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    crate::support::inside_a_minute().await;
    assert!(rpc(slow.clone(), ping.clone()).await["result"].is_object());
    assert!(rpc(slow.clone(), ping.clone()).await["result"].is_object());
    let refused = rpc(slow, ping).await;
    assert_eq!(refused["error"]["code"], "rate_limit_exceeded", "{refused}");

    // /health reports each MCP server; the down one with why.
    let (status, health) = server.get_json(&format!("{}/default/apps/tools/health", server.base)).await;
    assert_eq!(status, 200, "{health}");
    let servers = health["mcp_servers"].as_array().expect("mcp_servers in the health report");
    let named = |name: &str| servers.iter().find(|s| s["server"] == name).cloned().unwrap_or_default();
    assert_eq!(named("echo"), json!({"server": "echo", "healthy": true, "tools": 1}), "hidden is not counted");
    assert_eq!(named("down")["healthy"], json!(false), "{health}");
    assert!(named("down")["error"].as_str().is_some_and(|e| e.contains("cannot connect")), "{health}");

    // The same tools over /ws: `list_mcp_tools` and `call_mcp_tool` of the LLM service.
    let service = ("FERROLITE_SERVICE", "tools".to_owned());
    crate::rpc::run_hypha_script("hypha_rpc_mcp.py", &server, &[service]).await;
}

const LITELLM_CONFIG: &str = r#"
model_list:
  - model_name: m
    litellm_params:
      model: m
      mock_response: hi
mcp_servers:
  echo:
    url: ECHO_URL
    transport: http
general_settings:
  master_key: sk-mcp
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_litellm_config_serves_its_mcp_servers_at_the_root() {
    let url = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, LITELLM_CONFIG.replace("ECHO_URL", &url)).unwrap();
    let server = TestServer::with_configs(vec![path]).await;

    // litellm's URLs and master key: the MCP endpoint and its REST door at the root.
    let init = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    });
    let response = server
        .client
        .post(format!("{}/mcp", server.base))
        .bearer_auth("sk-mcp")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "ferrolite", "{body}");

    let (status, listed) = server.get_json_with(&format!("{}/mcp-rest/tools/list", server.base), "sk-mcp").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tools"][0]["name"], "echo-echo", "{listed}");

    let response = server.client.post(format!("{}/mcp", server.base)).bearer_auth("sk-wrong").send().await.unwrap();
    assert_eq!(read_json(response).await.0, 401, "a wrong key is refused at the root too");
}
