//! The loop in the Responses API's terms. The conversation (a continued one's earlier turns
//! included) is read once: its `mcp_call`s become the function call and output the model
//! made and saw, an `mcp_approval_request` the client approved runs now (declined, the model
//! is told so), and servers an `mcp_list_tools` already shows are not shown again. Then each
//! turn's calls of MCP tools run and go back to the model as `function_call` and
//! `function_call_output` items, until it answers, calls a function of the client's, or calls
//! a tool that waits for approval (the answer then ends with an `mcp_approval_request`).
//!
//! The client's answer is the last turn's response with every turn's output in order (the
//! `mcp_*` items in place of the model's calls of MCP tools), the usage of all turns, and the
//! request's own `tools`.

use super::items::{self, ApprovalRequest, ApprovalResponse, Call, McpItem};
use super::model::{Answer, Model, Totals};
use super::spec::Spec;
use super::toolbox::{Function, Toolbox};
use super::{forces, stream, AgentError, MAX_TURNS};
use crate::exchange::{ApiError, Outcome};
use crate::mcp::Scoped;
use crate::streaming::sse;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// An item of the conversation as read, before the approvals are settled.
enum Entry {
    Item(Value),
    Call(Call),
    Approval(ApprovalRequest),
}

/// The conversation read: its items, the servers already listed, the approvals answered by a
/// call and those the client decided.
struct Conversation {
    entries: Vec<Entry>,
    listed: HashSet<String>,
    answered: HashSet<String>,
    decisions: HashMap<String, ApprovalResponse>,
}

fn read_conversation(input: Vec<Value>) -> Result<Conversation, AgentError> {
    let mut conversation = Conversation {
        entries: Vec::with_capacity(input.len()),
        listed: HashSet::new(),
        answered: HashSet::new(),
        decisions: HashMap::new(),
    };
    for (i, item) in input.into_iter().enumerate() {
        if !item.get("type").and_then(Value::as_str).is_some_and(McpItem::is_mcp) {
            conversation.entries.push(Entry::Item(item));
            continue;
        }
        let mcp = McpItem::deserialize(&item)
            .map_err(|e| AgentError::BadItem { param: format!("input[{i}]"), reason: e.to_string() })?;
        match mcp {
            McpItem::McpListTools(list) if list.error.is_none() => {
                conversation.listed.insert(list.server_label);
            }
            McpItem::McpListTools(_) => {}
            McpItem::McpCall(call) => {
                conversation.answered.extend(call.approval_request_id.clone());
                conversation.entries.push(Entry::Call(call));
            }
            McpItem::McpApprovalRequest(request) => conversation.entries.push(Entry::Approval(request)),
            McpItem::McpApprovalResponse(response) => {
                conversation.decisions.insert(response.approval_request_id.clone(), response);
            }
        }
    }
    for id in conversation.decisions.keys() {
        let asked = conversation.entries.iter().any(|e| matches!(e, Entry::Approval(r) if r.id == *id));
        if !asked {
            return Err(AgentError::UnknownApproval(id.clone()));
        }
    }
    Ok(conversation)
}

/// The function call and its output, as the model sees a call of an MCP tool.
fn call_pair(context: &mut Vec<Value>, function: &str, call_id: &str, arguments: &str, output: String) {
    context.push(json!({"type": "function_call", "call_id": call_id, "name": function, "arguments": arguments}));
    context.push(json!({"type": "function_call_output", "call_id": call_id, "output": output}));
}

/// An output item as the next turn's input: without the id and status only the upstream's
/// store would know.
fn as_input(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(object) = item.as_object_mut() {
        object.remove("id");
        object.remove("status");
    }
    item
}

/// The conversation as the model's input: each `mcp_call` as the call and output the model
/// made and saw; each approved request run now (its `mcp_call` added to `output`), each
/// declined one told as such; requests left unanswered dropped, as the calls never happened.
async fn settle(conversation: Conversation, toolbox: &mut Toolbox<'_>, output: &mut Vec<Value>) -> Vec<Value> {
    let mut context = Vec::with_capacity(conversation.entries.len());
    for entry in conversation.entries {
        match entry {
            Entry::Item(item) => context.push(item),
            Entry::Call(call) => {
                let function = toolbox.function_name(&call.server_label, &call.name);
                call_pair(&mut context, &function, &call.id, &call.arguments, call.result_text());
            }
            // Already run: its `mcp_call` stands for it.
            Entry::Approval(request) if conversation.answered.contains(&request.id) => {}
            Entry::Approval(request) => {
                let Some(decision) = conversation.decisions.get(&request.id) else { continue };
                let function = toolbox.function_name(&request.server_label, &request.name);
                if decision.approve {
                    let call = toolbox
                        .call(&request.server_label, &request.name, &request.arguments, Some(request.id.clone()))
                        .await;
                    call_pair(&mut context, &function, &request.id, &request.arguments, call.result_text());
                    output.push(McpItem::McpCall(call).to_value());
                } else {
                    let reason = decision.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                    let told = format!("error: the user declined to run this tool{reason}");
                    call_pair(&mut context, &function, &request.id, &request.arguments, told);
                }
            }
        }
    }
    context
}

/// `tool_choice` for the model: an `mcp` choice becomes its function.
fn tool_choice(choice: Option<&Value>, toolbox: &mut Toolbox<'_>) -> Option<Value> {
    let choice = choice?;
    Some(match toolbox.chosen_function(choice) {
        None => choice.clone(),
        Some(Some(name)) => json!({"type": "function", "name": name}),
        Some(None) => json!("required"),
    })
}

pub async fn run(
    model: Model<'_>,
    gateway: Scoped<'_>,
    specs: Vec<Spec>,
    mut body: Map<String, Value>,
) -> Result<Outcome, ApiError> {
    let client_tools = body.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let client_choice = body.get("tool_choice").cloned();
    let client_stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let client_store = body.get("store").and_then(Value::as_bool) != Some(false);
    let taken = client_tools
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned));
    let mut toolbox = Toolbox::open(gateway, specs, taken).await?;

    let input = match body.remove("input") {
        Some(Value::String(text)) => vec![json!({"type": "message", "role": "user", "content": text})],
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let conversation = read_conversation(input)?;
    let mut output: Vec<Value> = toolbox
        .servers()
        .iter()
        .filter(|s| !conversation.listed.contains(&s.spec.server))
        .map(|s| McpItem::McpListTools(toolbox.listing(s)).to_value())
        .collect();
    let mut context = settle(conversation, &mut toolbox, &mut output).await;

    let tools = toolbox.tools_for_model(&client_tools, function_tool);
    let mut choice = tool_choice(client_choice.as_ref(), &mut toolbox);
    let mut totals = Totals::default();
    let mut last = Value::Null;
    let mut out_of_turns = false;
    loop {
        if totals.turns == MAX_TURNS {
            out_of_turns = true;
            break;
        }
        let mut turn = body.clone();
        turn.insert("input".into(), Value::Array(context.clone()));
        turn.insert("tools".into(), Value::Array(tools.clone()));
        // The gateway records the client's answer; the upstream keeps none of the turns.
        turn.insert("store".into(), Value::Bool(false));
        if let Some(choice) = &choice {
            turn.insert("tool_choice".into(), choice.clone());
        }
        let answer = match model.ask(turn, &mut totals).await? {
            Answer::Json(answer) => answer,
            Answer::Other(outcome) => return Ok(outcome),
        };
        let items = answer.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
        let (mut ran, mut stop) = (false, false);
        for item in items {
            match item.get("type").and_then(Value::as_str) {
                Some("function_call") => {
                    let resolved = FunctionCall::deserialize(&item).ok().and_then(|c| {
                        let found = toolbox.resolve(&c.name)?;
                        Some((c, found))
                    });
                    let Some((call, (server, tool))) = resolved else {
                        // The client's own function: its call goes back to the client.
                        output.push(item);
                        stop = true;
                        continue;
                    };
                    let (server_label, name) = (server.spec.server.clone(), tool.name.to_string());
                    if server.spec.approval.needed(tool) {
                        let request = ApprovalRequest {
                            id: items::new_id("mcpr"),
                            server_label,
                            name,
                            arguments: call.arguments.clone(),
                        };
                        output.push(McpItem::McpApprovalRequest(request).to_value());
                        stop = true;
                        continue;
                    }
                    let done = toolbox.call(&server_label, &name, &call.arguments, None).await;
                    call_pair(&mut context, &call.name, &call.call_id, &call.arguments, done.result_text());
                    output.push(McpItem::McpCall(done).to_value());
                    ran = true;
                }
                Some("message") => {
                    context.push(as_input(&item));
                    output.push(item);
                }
                // Reasoning goes back only with its content (see `apps::responses::items`).
                Some("reasoning") => {
                    if item.get("encrypted_content").is_some_and(Value::is_string) {
                        let mut reasoning = item.clone();
                        if let Some(object) = reasoning.as_object_mut() {
                            object.remove("status");
                        }
                        context.push(reasoning);
                    }
                    output.push(item);
                }
                _ => output.push(item),
            }
        }
        let completed = answer.get("status").and_then(Value::as_str).is_none_or(|s| s == "completed");
        last = answer;
        if stop || !ran || !completed {
            break;
        }
        if choice.as_ref().is_some_and(forces) {
            choice = Some(json!("auto"));
        }
    }

    let mut response = match last {
        Value::Object(response) => response,
        _ => Map::new(),
    };
    response.insert("output".into(), Value::Array(output));
    response.insert("usage".into(), totals.usage_json.clone().unwrap_or(Value::Null));
    response.insert("tools".into(), Value::Array(client_tools));
    response.insert("tool_choice".into(), client_choice.unwrap_or_else(|| json!("auto")));
    response.insert("store".into(), Value::Bool(client_store));
    if out_of_turns {
        // OpenAI's reason for a response cut short by its tool calls.
        response.insert("status".into(), json!("incomplete"));
        response.insert("incomplete_details".into(), json!({"reason": "max_tool_calls"}));
    }
    let response = Value::Object(response);
    let answer = if client_stream {
        let frames = stream::responses(&response);
        sse::response(futures::stream::iter(frames.into_iter().map(Ok)))
    } else {
        axum::Json(response).into_response()
    };
    Ok(totals.outcome(answer))
}

/// A Responses function tool for an MCP tool. Not `strict`: MCP schemas are not written for
/// strict mode.
fn function_tool(f: &Function<'_>) -> Value {
    let mut tool = json!({"type": "function", "name": f.name, "parameters": f.parameters, "strict": false});
    if let Some(description) = f.description {
        tool["description"] = json!(description);
    }
    tool
}

/// A `function_call` output item.
#[derive(Debug, Deserialize)]
struct FunctionCall {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: String,
}
