//! The MCP tools of one request: each named server's tools listed through the gateway (the
//! app's lists, then the request's `allowed_tools`), given function names the model can call,
//! and called through the gateway (so each call is logged and counted as `/mcp`'s are).
//! A call that fails is an `mcp_call` with its error, which the model is told: never the
//! request's failure.

use super::items::{self, Call, CallError, CallStatus, ListTools, ListedTool};
use super::names::Names;
use super::spec::Spec;
use super::AgentError;
use crate::mcp::{prefixed, GatewayError, Scoped};
use rmcp::model::{CallToolRequestParams, CallToolResponse, ErrorCode, Tool};
use serde_json::{Map, Value};

/// One server a request names, and the tools of it the model may use.
#[derive(Debug)]
pub struct Server {
    pub spec: Spec,
    pub tools: Vec<Tool>,
}

/// A function the model is given for an MCP tool.
#[derive(Debug)]
pub struct Function<'t> {
    pub name: &'t str,
    pub description: Option<&'t str>,
    pub parameters: Value,
}

/// The request's MCP servers and their tools' function names.
#[derive(Debug)]
pub struct Toolbox<'g> {
    gateway: Scoped<'g>,
    servers: Vec<Server>,
    names: Names,
}

impl<'g> Toolbox<'g> {
    /// Lists the servers of `specs` (at once); `taken` are the request's own function names.
    pub async fn open(
        gateway: Scoped<'g>,
        specs: Vec<Spec>,
        taken: impl IntoIterator<Item = String>,
    ) -> Result<Toolbox<'g>, AgentError> {
        let lists = futures::future::join_all(specs.iter().map(|s| gateway.server_tools(&s.server))).await;
        let mut names = Names::new(taken);
        let mut servers = Vec::with_capacity(specs.len());
        for (spec, listed) in specs.into_iter().zip(lists) {
            let listed =
                listed.map_err(|e| AgentError::ListFailed { server: spec.server.clone(), reason: e.to_string() })?;
            let tools: Vec<Tool> = listed.into_iter().filter(|t| spec.allows(t)).collect();
            for tool in &tools {
                names.assign(&spec.server, &tool.name);
            }
            servers.push(Server { spec, tools });
        }
        Ok(Toolbox { gateway, servers, names })
    }

    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The `mcp_list_tools` item of a server.
    pub fn listing(&self, server: &Server) -> ListTools {
        ListTools {
            id: items::new_id("mcpl"),
            server_label: server.spec.server.clone(),
            tools: server.tools.iter().map(ListedTool::of).collect(),
            error: None,
        }
    }

    /// The request's `tools` with each `mcp` tool replaced by its server's functions, written
    /// by `shape` (each API has its own function tool).
    pub fn tools_for_model(&mut self, tools: &[Value], shape: impl Fn(&Function<'_>) -> Value) -> Vec<Value> {
        let mut out = Vec::with_capacity(tools.len());
        for (index, tool) in tools.iter().enumerate() {
            let Some(server) = self.servers.iter().find(|s| s.spec.index == index) else {
                out.push(tool.clone());
                continue;
            };
            for t in &server.tools {
                let name = self.names.assign(&server.spec.server, &t.name);
                let description = t.description.as_deref().or(t.title.as_deref());
                let parameters = Value::Object(t.input_schema.as_ref().clone());
                out.push(shape(&Function { name: &name, description, parameters }));
            }
        }
        out
    }

    /// The function name of a server's tool (a tool no longer listed gets one too, for the
    /// conversation's earlier calls of it).
    pub fn function_name(&mut self, server: &str, tool: &str) -> String {
        self.names.assign(server, tool)
    }

    /// What an `mcp` `tool_choice` (`{"type": "mcp", "server_label", "name"?}`) asks of the
    /// model: `None` for another kind of choice; the function of the tool it names, or none
    /// (then any tool) when it names no tool of the server.
    pub fn chosen_function(&mut self, choice: &Value) -> Option<Option<String>> {
        if choice.get("type").and_then(Value::as_str) != Some("mcp") {
            return None;
        }
        let server = choice.get("server_label").and_then(Value::as_str).unwrap_or_default();
        let name = choice.get("name").and_then(Value::as_str).filter(|name| self.find(server, name).is_some());
        Some(name.map(|name| self.names.assign(server, name)))
    }

    /// The server and tool a function the model called stands for, if it is one this request
    /// gave it.
    pub fn resolve(&self, function: &str) -> Option<(&Server, &Tool)> {
        let (server, tool) = self.names.tool(function)?;
        self.find(server, tool)
    }

    /// A tool of a server this request names and lets the model use.
    pub fn find(&self, server: &str, tool: &str) -> Option<(&Server, &Tool)> {
        let server = self.servers.iter().find(|s| s.spec.server == server)?;
        Some((server, server.tools.iter().find(|t| t.name == tool)?))
    }

    /// Calls `tool` of `server` with the model's `arguments` (JSON text).
    pub async fn call(&self, server: &str, tool: &str, arguments: &str, approval_request_id: Option<String>) -> Call {
        let mut call = Call {
            id: items::new_id("mcp"),
            server_label: server.to_owned(),
            name: tool.to_owned(),
            arguments: arguments.to_owned(),
            output: None,
            error: None,
            status: Some(CallStatus::Completed),
            approval_request_id,
        };
        let invalid =
            |message: String| CallError::McpProtocolError { code: ErrorCode::INVALID_PARAMS.0.into(), message };
        let result = if self.find(server, tool).is_none() {
            Err(invalid(format!("tool {tool:?} of MCP server {server:?} is not one this request lets the model call")))
        } else {
            match parse_arguments(arguments) {
                Ok(parsed) => {
                    let mut params = CallToolRequestParams::new(prefixed(server, tool));
                    params.arguments = parsed;
                    self.gateway.call(params).await.map_err(gateway_error).and_then(completed)
                }
                Err(message) => Err(invalid(message)),
            }
        };
        match result {
            Ok(output) => call.output = Some(output),
            Err(error) => {
                call.error = Some(error);
                call.status = Some(CallStatus::Failed);
            }
        }
        call
    }
}

/// The model's arguments as the object a tool call takes (none when it wrote none).
fn parse_arguments(arguments: &str) -> Result<Option<Map<String, Value>>, String> {
    if arguments.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err("the arguments must be a JSON object".to_owned()),
        Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
    }
}

fn completed(response: CallToolResponse) -> Result<String, CallError> {
    match response {
        CallToolResponse::Complete(result) if result.is_error == Some(true) => {
            Err(CallError::McpToolExecutionError { content: serde_json::to_value(&result.content).unwrap_or_default() })
        }
        CallToolResponse::Complete(result) => Ok(items::result_text(&result)),
        // Sampling, elicitation and tasks need a client that answers the server: the loop
        // has none to ask.
        _ => Err(CallError::McpProtocolError {
            code: ErrorCode::INVALID_REQUEST.0.into(),
            message: "the tool asked for input or started a task, which this gateway's tool loop cannot answer"
                .to_owned(),
        }),
    }
}

fn gateway_error(error: GatewayError) -> CallError {
    match error {
        GatewayError::Upstream(e) => CallError::McpProtocolError { code: e.code.0.into(), message: e.message.into() },
        GatewayError::Unavailable { .. } => CallError::HttpError { code: 502, message: error.to_string() },
        other => CallError::McpProtocolError { code: ErrorCode::INVALID_PARAMS.0.into(), message: other.to_string() },
    }
}
