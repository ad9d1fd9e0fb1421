//! A request's `{"type": "mcp"}` tools, read and checked against the app's MCP servers: which
//! server each names, which of its tools it lets the model use, which need the client's
//! approval. Only servers the app configured can be named: a `server_url` would turn the
//! gateway into a fetcher of any URL a client writes, and per-request headers would replace
//! the credentials the app set.

use super::{AgentError, Dialect};
use crate::mcp::Scoped;
use rmcp::model::Tool;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One `mcp` tool of a request, as sent (OpenAI's `Mcp` tool param).
#[derive(Debug, Deserialize)]
struct Wire {
    server_label: String,
    #[serde(default)]
    allowed_tools: Option<Allowed>,
    #[serde(default)]
    require_approval: Option<RequireApproval>,
    #[serde(default)]
    server_url: Option<String>,
    #[serde(default)]
    connector_id: Option<String>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    authorization: Option<String>,
    /// `type`, `server_description`, ...: nothing ferrolite acts on.
    #[serde(flatten)]
    _rest: Map<String, Value>,
}

/// `allowed_tools`: a list of names, or a filter.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Allowed {
    Names(Vec<String>),
    Filter(ToolFilter),
}

/// `require_approval`: `always`, `never`, or filters naming the tools of each.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RequireApproval {
    Mode(Mode),
    Filters {
        #[serde(default)]
        always: Option<ToolFilter>,
        #[serde(default)]
        never: Option<ToolFilter>,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Always,
    Never,
}

/// OpenAI's tool filter: tool names, and/or the tools annotated read-only (or not). Each
/// criterion given must hold; an empty filter takes every tool.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolFilter {
    #[serde(default)]
    tool_names: Option<Vec<String>>,
    #[serde(default)]
    read_only: Option<bool>,
}

impl ToolFilter {
    fn matches(&self, tool: &Tool) -> bool {
        let named = self.tool_names.as_ref().is_none_or(|names| names.iter().any(|n| *n == tool.name));
        let read_only = tool.annotations.as_ref().and_then(|a| a.read_only_hint).unwrap_or(false);
        named && self.read_only.is_none_or(|wanted| wanted == read_only)
    }
}

/// Which calls wait for the client's approval.
#[derive(Debug, Clone)]
pub enum Approval {
    Always,
    Never,
    /// Tools the `never` filter takes run at once; those the `always` filter takes wait; the
    /// rest wait too, as with OpenAI's default, unless only an `always` filter was given
    /// (then it names the ones that wait).
    Filters {
        always: Option<ToolFilter>,
        never: Option<ToolFilter>,
    },
}

impl Approval {
    pub fn needed(&self, tool: &Tool) -> bool {
        match self {
            Approval::Always => true,
            Approval::Never => false,
            Approval::Filters { always, never } => {
                if never.as_ref().is_some_and(|f| f.matches(tool)) {
                    false
                } else if always.as_ref().is_some_and(|f| f.matches(tool)) {
                    true
                } else {
                    never.is_some() || always.is_none()
                }
            }
        }
    }
}

/// One `mcp` tool of a request, checked.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its index in `tools`, where its functions take its place.
    pub index: usize,
    pub server: String,
    allowed: Option<ToolFilter>,
    pub approval: Approval,
}

impl Spec {
    /// Whether the request lets the model use `tool` (the app's own lists are the gateway's).
    pub fn allows(&self, tool: &Tool) -> bool {
        self.allowed.as_ref().is_none_or(|f| f.matches(tool))
    }
}

/// Whether `tool` (an item of a request's `tools`) is an `mcp` tool.
pub fn is_mcp(tool: &Value) -> bool {
    tool.get("type").and_then(Value::as_str) == Some("mcp")
}

/// The request's `mcp` tools, checked; empty when it has none.
pub fn read(dialect: Dialect, tools: &[Value], gateway: Option<Scoped<'_>>) -> Result<Vec<Spec>, AgentError> {
    let mut specs: Vec<Spec> = Vec::new();
    for (index, tool) in tools.iter().enumerate().filter(|(_, t)| is_mcp(t)) {
        let param = |field: &str| format!("tools[{index}].{field}");
        let wire = Wire::deserialize(tool)
            .map_err(|e| AgentError::BadTool { param: format!("tools[{index}]"), reason: e.to_string() })?;
        if wire.server_url.is_some() || wire.connector_id.is_some() {
            let field = if wire.server_url.is_some() { "server_url" } else { "connector_id" };
            return Err(AgentError::RemoteServer { param: param(field) });
        }
        let has = |v: &Option<Map<String, Value>>| v.as_ref().is_some_and(|m| !m.is_empty());
        if has(&wire.headers) || wire.authorization.as_deref().is_some_and(|a| !a.is_empty()) {
            let field = if has(&wire.headers) { "headers" } else { "authorization" };
            return Err(AgentError::OwnCredentials { param: param(field) });
        }
        let Some(gateway) = gateway else {
            return Err(AgentError::NoServers { param: param("server_label") });
        };
        if !gateway.has_server(&wire.server_label) {
            let known = gateway.server_names().collect::<Vec<_>>().join(", ");
            return Err(AgentError::UnknownServer { param: param("server_label"), server: wire.server_label, known });
        }
        if specs.iter().any(|s| s.server == wire.server_label) {
            return Err(AgentError::DuplicateServer { param: param("server_label"), server: wire.server_label });
        }
        let approval = match (wire.require_approval, dialect) {
            (Some(RequireApproval::Mode(Mode::Never)), _) => Approval::Never,
            // Chat has no item to carry an approval request: its tools run, or the client says
            // they may not.
            (None, Dialect::Chat) => Approval::Never,
            (Some(_), Dialect::Chat) => return Err(AgentError::ApprovalInChat { param: param("require_approval") }),
            (None | Some(RequireApproval::Mode(Mode::Always)), Dialect::Responses) => Approval::Always,
            (Some(RequireApproval::Filters { always, never }), Dialect::Responses) => {
                Approval::Filters { always, never }
            }
        };
        let allowed = wire.allowed_tools.map(|a| match a {
            Allowed::Names(names) => ToolFilter { tool_names: Some(names), read_only: None },
            Allowed::Filter(filter) => filter,
        });
        specs.push(Spec { index, server: wire.server_label, allowed, approval });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn tool(name: &str, read_only: bool) -> Tool {
        let mut tool = Tool::new(name.to_owned(), "", Arc::new(Map::new()));
        tool.annotations = Some(rmcp::model::ToolAnnotations::new().read_only(read_only));
        tool
    }

    fn approval(v: Value) -> Approval {
        match RequireApproval::deserialize(v).unwrap() {
            RequireApproval::Mode(Mode::Always) => Approval::Always,
            RequireApproval::Mode(Mode::Never) => Approval::Never,
            RequireApproval::Filters { always, never } => Approval::Filters { always, never },
        }
    }

    #[test]
    fn approval_filters_follow_openai() {
        let (read, write) = (tool("read", true), tool("write", false));
        let never_read = approval(json!({"never": {"tool_names": ["read"]}}));
        assert!(!never_read.needed(&read) && never_read.needed(&write), "the rest wait");
        let always_write = approval(json!({"always": {"tool_names": ["write"]}}));
        assert!(
            !always_write.needed(&read) && always_write.needed(&write),
            "an always filter names the ones that wait"
        );
        let read_only = approval(json!({"never": {"read_only": true}}));
        assert!(!read_only.needed(&read) && read_only.needed(&write));
        assert!(approval(json!("always")).needed(&read) && !approval(json!("never")).needed(&write));
    }

    #[test]
    fn allowed_tools_take_names_or_a_filter() {
        let filter = |v: Value| match Allowed::deserialize(v).unwrap() {
            Allowed::Names(names) => ToolFilter { tool_names: Some(names), read_only: None },
            Allowed::Filter(f) => f,
        };
        assert!(filter(json!(["read"])).matches(&tool("read", false)));
        assert!(!filter(json!({"tool_names": ["read"]})).matches(&tool("write", false)));
        assert!(filter(json!({"read_only": true})).matches(&tool("write", true)));
    }
}
