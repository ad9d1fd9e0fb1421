//! The Responses API's MCP items as OpenAI writes them: `mcp_list_tools`, `mcp_call`,
//! `mcp_approval_request` in a response's `output`, and `mcp_approval_response` in a request's
//! `input` (shapes from the `openai` SDK's `ResponseOutputItem` and `ResponseInputItem`).

use rmcp::model::{CallToolResult, ContentBlock, Tool};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One MCP item, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum McpItem {
    McpListTools(ListTools),
    McpCall(Call),
    McpApprovalRequest(ApprovalRequest),
    McpApprovalResponse(ApprovalResponse),
}

impl McpItem {
    /// Whether an item of type `kind` is one of these.
    pub fn is_mcp(kind: &str) -> bool {
        matches!(kind, "mcp_list_tools" | "mcp_call" | "mcp_approval_request" | "mcp_approval_response")
    }

    pub fn to_value(&self) -> Value {
        // Strings, numbers and JSON values only: serialising cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `mcp_list_tools`: the tools of one server the model was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListTools {
    pub id: String,
    pub server_label: String,
    pub tools: Vec<ListedTool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One tool of an `mcp_list_tools` item, under the server's own name for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_schema: Value,
    #[serde(default)]
    pub annotations: Option<Value>,
}

impl ListedTool {
    pub fn of(tool: &Tool) -> ListedTool {
        ListedTool {
            name: tool.name.to_string(),
            description: tool.description.as_ref().map(|d| d.to_string()),
            input_schema: Value::Object(tool.input_schema.as_ref().clone()),
            annotations: tool.annotations.as_ref().and_then(|a| serde_json::to_value(a).ok()),
        }
    }
}

/// `mcp_call`: one tool call and what it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub server_label: String,
    /// The tool's own name on its server.
    pub name: String,
    /// The arguments as JSON text, as the model wrote them.
    pub arguments: String,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub error: Option<CallError>,
    #[serde(default)]
    pub status: Option<CallStatus>,
    /// The approval request this call ran after, if it needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_request_id: Option<String>,
}

impl Call {
    /// What the model is told the call gave: its output, or its error.
    pub fn result_text(&self) -> String {
        match (&self.error, &self.output) {
            (Some(error), _) => format!("error: {}", error.text()),
            (None, Some(output)) => output.clone(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    InProgress,
    Completed,
    Incomplete,
    Calling,
    Failed,
}

/// Why a call failed, in OpenAI's current tagged shape; a plain string (the shape OpenAI
/// wrote before, which clients may still hand back) is read too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallError {
    /// The server refused the call (a JSON-RPC error).
    McpProtocolError { code: i64, message: String },
    /// The tool ran and reported an error (`isError`): its content.
    McpToolExecutionError { content: Value },
    /// The server could not be reached.
    HttpError { code: i64, message: String },
    #[serde(untagged)]
    Text(String),
}

impl CallError {
    pub fn text(&self) -> String {
        match self {
            CallError::McpProtocolError { message, .. } | CallError::HttpError { message, .. } => message.clone(),
            CallError::McpToolExecutionError { content } => match content {
                Value::String(text) => text.clone(),
                Value::Array(blocks) => blocks
                    .iter()
                    .map(|b| b.get("text").and_then(Value::as_str).map_or_else(|| b.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => other.to_string(),
            },
            CallError::Text(text) => text.clone(),
        }
    }
}

/// A tool's result as text: its text blocks joined, other blocks as their JSON, and the
/// structured result when there are no blocks.
pub fn result_text(result: &CallToolResult) -> String {
    if result.content.is_empty() {
        return result.structured_content.as_ref().map(Value::to_string).unwrap_or_default();
    }
    let block = |b: &ContentBlock| match b.as_text() {
        Some(text) => text.text.clone(),
        None => serde_json::to_string(b).unwrap_or_default(),
    };
    result.content.iter().map(block).collect::<Vec<_>>().join("\n")
}

/// `mcp_approval_request`: a call waiting for the client's word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: String,
    pub server_label: String,
    pub name: String,
    pub arguments: String,
}

/// `mcp_approval_response`: the client's word on an approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub approval_request_id: String,
    pub approve: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A fresh item id with OpenAI's prefix for its kind (`mcpl`, `mcp`, `mcpr`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_read_and_write_openai_shapes() {
        let call = McpItem::McpCall(Call {
            id: "mcp_1".into(),
            server_label: "docs".into(),
            name: "search".into(),
            arguments: "{}".into(),
            output: None,
            error: Some(CallError::McpProtocolError { code: -32602, message: "bad".into() }),
            status: Some(CallStatus::Failed),
            approval_request_id: None,
        });
        assert_eq!(
            call.to_value(),
            json!({"type": "mcp_call", "id": "mcp_1", "server_label": "docs", "name": "search", "arguments": "{}",
                   "output": null, "error": {"type": "mcp_protocol_error", "code": -32602, "message": "bad"},
                   "status": "failed"})
        );
        let legacy: McpItem = serde_json::from_value(json!({"type": "mcp_call", "id": "mcp_2", "server_label": "s",
            "name": "t", "arguments": "{}", "error": "it broke"}))
        .unwrap();
        let McpItem::McpCall(legacy) = legacy else { panic!("a call") };
        assert_eq!(legacy.result_text(), "error: it broke");
        let response: McpItem = serde_json::from_value(
            json!({"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": true}),
        )
        .unwrap();
        assert!(matches!(response, McpItem::McpApprovalResponse(r) if r.approve));
        assert!(McpItem::is_mcp("mcp_list_tools") && !McpItem::is_mcp("message"));
    }
}
