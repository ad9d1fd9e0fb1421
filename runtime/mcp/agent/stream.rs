//! The loop's answer for a client that asked to stream: the turns ran whole, so the final
//! answer is written as the stream its API has. For the Responses API: `response.created` and
//! `.in_progress`, then per output item its `output_item.added`, its own events (text deltas,
//! call arguments, and OpenAI's `response.mcp_list_tools.*` and `response.mcp_call.*` for the
//! MCP items) and its `output_item.done`, and `response.completed` (or `.incomplete`) last.
//! For chat: the message as chunks, `[DONE]` last.

use crate::api::openai::{ChatChunk, ChatCompletion, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
use crate::streaming::sse;
use axum::body::Bytes;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// One Responses stream event; items and responses as the answer holds them.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Event<'a> {
    #[serde(rename = "response.created")]
    Created { response: &'a Value },
    #[serde(rename = "response.in_progress")]
    InProgress { response: &'a Value },
    #[serde(rename = "response.completed")]
    Completed { response: &'a Value },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: &'a Value },
    #[serde(rename = "response.failed")]
    Failed { response: &'a Value },
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: usize, item: Value },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: usize, item: &'a Value },
    #[serde(rename = "response.content_part.added")]
    PartAdded { item_id: &'a str, output_index: usize, content_index: usize, part: Value },
    #[serde(rename = "response.content_part.done")]
    PartDone { item_id: &'a str, output_index: usize, content_index: usize, part: &'a Value },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { item_id: &'a str, output_index: usize, content_index: usize, delta: &'a str, logprobs: [Value; 0] },
    #[serde(rename = "response.output_text.done")]
    TextDone { item_id: &'a str, output_index: usize, content_index: usize, text: &'a str, logprobs: [Value; 0] },
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta { item_id: &'a str, output_index: usize, content_index: usize, delta: &'a str },
    #[serde(rename = "response.refusal.done")]
    RefusalDone { item_id: &'a str, output_index: usize, content_index: usize, refusal: &'a str },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { item_id: &'a str, output_index: usize, delta: &'a str },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone { item_id: &'a str, output_index: usize, arguments: &'a str },
    #[serde(rename = "response.mcp_list_tools.in_progress")]
    ListToolsInProgress { item_id: &'a str, output_index: usize },
    #[serde(rename = "response.mcp_list_tools.completed")]
    ListToolsCompleted { item_id: &'a str, output_index: usize },
    #[serde(rename = "response.mcp_list_tools.failed")]
    ListToolsFailed { item_id: &'a str, output_index: usize },
    #[serde(rename = "response.mcp_call.in_progress")]
    CallInProgress { item_id: &'a str, output_index: usize },
    #[serde(rename = "response.mcp_call_arguments.delta")]
    CallArgumentsDelta { item_id: &'a str, output_index: usize, delta: &'a str },
    #[serde(rename = "response.mcp_call_arguments.done")]
    CallArgumentsDone { item_id: &'a str, output_index: usize, arguments: &'a str },
    #[serde(rename = "response.mcp_call.completed")]
    CallCompleted { item_id: &'a str, output_index: usize },
    #[serde(rename = "response.mcp_call.failed")]
    CallFailed { item_id: &'a str, output_index: usize },
}

/// The frames written so far, numbered.
#[derive(Default)]
struct Writer {
    frames: Vec<Bytes>,
    sequence: u64,
}

impl Writer {
    fn emit(&mut self, event: Event<'_>) {
        let Ok(Value::Object(mut data)) = serde_json::to_value(&event) else { return };
        data.insert("sequence_number".into(), Value::from(self.sequence));
        self.sequence += 1;
        let name = data.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        self.frames.push(sse::named(&name, &data));
    }
}

fn str_of<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `item` with `changes` applied: how it looks when it is added, before its events fill it.
fn opening(item: &Value, changes: Value) -> Value {
    let mut item = item.clone();
    if let (Some(object), Value::Object(changes)) = (item.as_object_mut(), changes) {
        object.extend(changes);
    }
    item
}

/// The Responses event stream of a whole `response`.
pub fn responses(response: &Value) -> Vec<Bytes> {
    let mut w = Writer::default();
    let mut shell: Map<String, Value> = response.as_object().cloned().unwrap_or_default();
    shell.insert("status".into(), json!("in_progress"));
    shell.insert("output".into(), json!([]));
    shell.insert("usage".into(), Value::Null);
    shell.insert("incomplete_details".into(), Value::Null);
    let shell = Value::Object(shell);
    w.emit(Event::Created { response: &shell });
    w.emit(Event::InProgress { response: &shell });
    let output = response.get("output").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (output_index, item) in output.iter().enumerate() {
        item_events(&mut w, output_index, item);
    }
    match str_of(response, "status") {
        "incomplete" => w.emit(Event::Incomplete { response }),
        "failed" => w.emit(Event::Failed { response }),
        _ => w.emit(Event::Completed { response }),
    }
    w.frames
}

fn item_events(w: &mut Writer, output_index: usize, item: &Value) {
    let item_id = str_of(item, "id");
    match str_of(item, "type") {
        "message" => {
            let added = opening(item, json!({"status": "in_progress", "content": []}));
            w.emit(Event::ItemAdded { output_index, item: added });
            let parts = item.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for (content_index, part) in parts.iter().enumerate() {
                match str_of(part, "type") {
                    "output_text" => {
                        let text = str_of(part, "text");
                        let empty = opening(part, json!({"text": ""}));
                        w.emit(Event::PartAdded { item_id, output_index, content_index, part: empty });
                        w.emit(Event::TextDelta { item_id, output_index, content_index, delta: text, logprobs: [] });
                        w.emit(Event::TextDone { item_id, output_index, content_index, text, logprobs: [] });
                    }
                    "refusal" => {
                        let refusal = str_of(part, "refusal");
                        let empty = opening(part, json!({"refusal": ""}));
                        w.emit(Event::PartAdded { item_id, output_index, content_index, part: empty });
                        w.emit(Event::RefusalDelta { item_id, output_index, content_index, delta: refusal });
                        w.emit(Event::RefusalDone { item_id, output_index, content_index, refusal });
                    }
                    _ => w.emit(Event::PartAdded { item_id, output_index, content_index, part: part.clone() }),
                }
                w.emit(Event::PartDone { item_id, output_index, content_index, part });
            }
        }
        "function_call" => {
            let arguments = str_of(item, "arguments");
            w.emit(Event::ItemAdded {
                output_index,
                item: opening(item, json!({"status": "in_progress", "arguments": ""})),
            });
            w.emit(Event::ArgumentsDelta { item_id, output_index, delta: arguments });
            w.emit(Event::ArgumentsDone { item_id, output_index, arguments });
        }
        "mcp_list_tools" => {
            w.emit(Event::ItemAdded { output_index, item: opening(item, json!({"tools": []})) });
            w.emit(Event::ListToolsInProgress { item_id, output_index });
            if item.get("error").is_some_and(|e| !e.is_null()) {
                w.emit(Event::ListToolsFailed { item_id, output_index });
            } else {
                w.emit(Event::ListToolsCompleted { item_id, output_index });
            }
        }
        "mcp_call" => {
            let arguments = str_of(item, "arguments");
            let added = opening(item, json!({"status": "in_progress", "arguments": "", "output": null, "error": null}));
            w.emit(Event::ItemAdded { output_index, item: added });
            w.emit(Event::CallInProgress { item_id, output_index });
            w.emit(Event::CallArgumentsDelta { item_id, output_index, delta: arguments });
            w.emit(Event::CallArgumentsDone { item_id, output_index, arguments });
            if str_of(item, "status") == "failed" {
                w.emit(Event::CallFailed { item_id, output_index });
            } else {
                w.emit(Event::CallCompleted { item_id, output_index });
            }
        }
        // Approval requests, reasoning, hosted tools' items: added whole.
        _ => w.emit(Event::ItemAdded { output_index, item: item.clone() }),
    }
    w.emit(Event::ItemDone { output_index, item });
}

/// The chat chunks of a whole `completion`: per choice its message in one chunk and its
/// finish in another; with `include_usage`, the usage in a last chunk of its own.
pub fn chat(completion: &ChatCompletion, include_usage: bool) -> Vec<Bytes> {
    let chunk = |choices: Vec<ChunkChoice>| ChatChunk {
        id: completion.id.as_str().into(),
        object: "chat.completion.chunk".into(),
        created: completion.created,
        model: completion.model.as_str().into(),
        system_fingerprint: completion.system_fingerprint.clone(),
        choices,
        usage: include_usage.then_some(None),
        extra: Map::new(),
    };
    let choice = |index: u32, delta: Delta, finish_reason: Option<String>| ChunkChoice {
        index,
        delta,
        logprobs: None,
        finish_reason,
        extra: Map::new(),
    };
    let mut frames = Vec::new();
    for c in &completion.choices {
        let message = &c.message;
        let tool_calls = message.tool_calls.as_ref().map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, call)| ToolCallDelta {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    id: Some(call.id.clone()),
                    kind: Some(call.kind.clone()),
                    function: Some(FunctionDelta {
                        name: Some(call.function.name.clone()),
                        arguments: Some(call.function.arguments.clone()),
                    }),
                })
                .collect()
        });
        let delta = Delta {
            role: Some(message.role.clone()),
            content: message.content.clone(),
            tool_calls,
            reasoning_content: message.reasoning_content.clone(),
            thinking_blocks: message.thinking_blocks.clone(),
            extra: Map::new(),
        };
        frames.push(sse::data(&chunk(vec![choice(c.index, delta, None)])));
        frames.push(sse::data(&chunk(vec![choice(c.index, Delta::default(), c.finish_reason.clone())])));
    }
    if include_usage {
        let mut last = chunk(Vec::new());
        last.usage = Some(completion.usage.clone());
        frames.push(sse::data(&last));
    }
    frames.push(sse::done());
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[Bytes]) -> Vec<Value> {
        frames
            .iter()
            .filter_map(|f| std::str::from_utf8(f).ok())
            .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn a_response_streams_each_item_with_its_own_events() {
        let response = json!({"id": "resp_1", "object": "response", "status": "completed", "output": [
            {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "s", "tools": [{"name": "t", "input_schema": {}}]},
            {"type": "mcp_call", "id": "mcp_1", "server_label": "s", "name": "t", "arguments": "{}", "output": "42",
             "error": null, "status": "completed"},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "It is 42", "annotations": []}]}
        ], "usage": {"input_tokens": 3}});
        let events = events(&responses(&response));
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.mcp_list_tools.in_progress",
                "response.mcp_list_tools.completed",
                "response.output_item.done",
                "response.output_item.added",
                "response.mcp_call.in_progress",
                "response.mcp_call_arguments.delta",
                "response.mcp_call_arguments.done",
                "response.mcp_call.completed",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let numbers: Vec<u64> = events.iter().filter_map(|e| e["sequence_number"].as_u64()).collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        assert_eq!(events[0]["response"]["output"], json!([]));
        assert_eq!(events[14]["delta"], "It is 42");
        assert_eq!(events.last().unwrap()["response"], response);
    }
}
