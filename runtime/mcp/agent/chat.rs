//! The loop in chat completions' terms: each turn's calls of MCP tools run, and go back to the
//! model as the assistant message that made them and one `tool` message per call, until the
//! model answers or calls a function of the client's. The client gets the last turn's
//! completion with the usage of all turns, in the standard shape: chat has no items for the
//! calls made on the way, so none are added (the session's log and metrics record them).
//! A turn that calls both MCP tools and the client's functions runs the MCP calls and hands the
//! client its own calls only.

use super::model::{Answer, Model, Totals};
use super::spec::Spec;
use super::toolbox::{Function, Toolbox};
use super::{forces, stream, AgentError, MAX_TURNS};
use crate::api::openai::{AssistantMessage, ChatCompletion, ChatUsage};
use crate::exchange::{ApiError, Outcome};
use crate::mcp::Scoped;
use crate::streaming::sse;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub async fn run(
    model: Model<'_>,
    gateway: Scoped<'_>,
    specs: Vec<Spec>,
    mut body: Map<String, Value>,
) -> Result<Outcome, ApiError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(AgentError::ManyChoices.into());
    }
    let client_tools = body.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let client_stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage =
        body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
    let taken =
        client_tools.iter().filter_map(|t| t.pointer("/function/name").and_then(Value::as_str).map(str::to_owned));
    let mut toolbox = Toolbox::open(gateway, specs, taken).await?;
    let tools = toolbox.tools_for_model(&client_tools, function_tool);
    let mut choice = body.get("tool_choice").map(|c| tool_choice(c, &mut toolbox));
    let mut messages = match body.remove("messages") {
        Some(Value::Array(messages)) => messages,
        _ => Vec::new(),
    };

    let mut totals = Totals::default();
    let mut completion = loop {
        if totals.turns == MAX_TURNS {
            return Err(AgentError::TooManyTurns.into());
        }
        let mut turn = body.clone();
        turn.insert("messages".into(), Value::Array(messages.clone()));
        turn.insert("tools".into(), Value::Array(tools.clone()));
        if let Some(choice) = &choice {
            turn.insert("tool_choice".into(), choice.clone());
        }
        let answer = match model.ask(turn, &mut totals).await? {
            Answer::Json(answer) => answer,
            Answer::Other(outcome) => return Ok(outcome),
        };
        let mut completion =
            ChatCompletion::deserialize(&answer).map_err(|e| ApiError::from(AgentError::Answer(e.to_string())))?;
        let Some(first) = completion.choices.first_mut() else { break completion };
        let calls = first.message.tool_calls.take().unwrap_or_default();
        let (mcp, own): (Vec<_>, Vec<_>) = calls.into_iter().partition(|c| toolbox.resolve(&c.function.name).is_some());
        if mcp.is_empty() {
            first.message.tool_calls = (!own.is_empty()).then_some(own);
            break completion;
        }
        let mut results = Vec::with_capacity(mcp.len());
        for call in &mcp {
            let Some((server, tool)) = toolbox.resolve(&call.function.name) else { continue };
            let (server, tool) = (server.spec.server.clone(), tool.name.to_string());
            let done = toolbox.call(&server, &tool, &call.function.arguments, None).await;
            results.push(json!({"role": "tool", "tool_call_id": call.id, "content": done.result_text()}));
        }
        if !own.is_empty() {
            first.message.tool_calls = Some(own);
            break completion;
        }
        // The assistant message with the calls that ran, and its thinking (which Claude wants
        // back); the answer's own fields (`annotations`, ...) are not a request's.
        let said = &first.message;
        let assistant = AssistantMessage::new(said.content.clone().flatten(), Some(mcp)).thinking(
            said.reasoning_content.clone().unwrap_or_default(),
            said.thinking_blocks.clone().unwrap_or_default(),
        );
        messages.push(serde_json::to_value(&assistant).unwrap_or(Value::Null));
        messages.extend(results);
        if choice.as_ref().is_some_and(forces) {
            choice = Some(json!("auto"));
        }
    };
    if let Some(usage) = totals.usage_json.as_ref().and_then(|u| ChatUsage::deserialize(u).ok()) {
        completion.usage = Some(usage);
    }
    let answer = if client_stream {
        let frames = stream::chat(&completion, include_usage);
        sse::response(futures::stream::iter(frames.into_iter().map(Ok)))
    } else {
        axum::Json(completion).into_response()
    };
    Ok(totals.outcome(answer))
}

/// A chat function tool for an MCP tool.
fn function_tool(f: &Function<'_>) -> Value {
    let mut function = json!({"name": f.name, "parameters": f.parameters});
    if let Some(description) = f.description {
        function["description"] = json!(description);
    }
    json!({"type": "function", "function": function})
}

/// `tool_choice` for the model: an `mcp` choice becomes its function.
fn tool_choice(choice: &Value, toolbox: &mut Toolbox<'_>) -> Value {
    match toolbox.chosen_function(choice) {
        None => choice.clone(),
        Some(Some(name)) => json!({"type": "function", "function": {"name": name}}),
        Some(None) => json!("required"),
    }
}
