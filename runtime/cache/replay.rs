//! Streams and whole answers turned into each other, so one entry serves both: a streamed chat
//! or text completion is assembled into the answer a non-streamed request gets, and an entry is
//! replayed as the chunks (and usage chunk, and `[DONE]`) a streamed request expects.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Which stream format an answer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `chat.completion` / `chat.completion.chunk`.
    Chat,
    /// `text_completion`, streamed as `text_completion` chunks.
    Text,
}

/// The whole answer a stream's `data` chunks (parsed, in order) add up to; `None` when they
/// hold no choice.
pub fn assemble(shape: Shape, chunks: &[Value]) -> Option<Value> {
    let first = chunks.iter().find(|c| c.get("choices").is_some())?;
    let mut choices: Vec<Map<String, Value>> = Vec::new();
    let mut usage = None;
    for chunk in chunks {
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let index = choice["index"].as_u64().unwrap_or(0) as usize;
            // Indices come from the upstream: a choice past any sane `n` is not kept.
            if index > 128 {
                continue;
            }
            while choices.len() <= index {
                let mut fresh = Map::new();
                fresh.insert("index".into(), json!(choices.len()));
                choices.push(fresh);
            }
            let into = &mut choices[index];
            if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
                into.insert("finish_reason".into(), reason.clone());
            }
            match shape {
                Shape::Chat => merge_delta(into, &choice["delta"]),
                Shape::Text => append_text(into, "text", &choice["text"]),
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|mut c| {
            c.entry("finish_reason").or_insert(Value::Null);
            if shape == Shape::Chat {
                let message = c.entry("message").or_insert_with(|| json!({"role": "assistant", "content": null}));
                if let Some(m) = message.as_object_mut() {
                    m.entry("content").or_insert(Value::Null);
                }
            }
            Value::Object(c)
        })
        .collect();
    let object = match shape {
        Shape::Chat => "chat.completion",
        Shape::Text => "text_completion",
    };
    let mut answer = Map::new();
    for field in ["id", "created", "model", "system_fingerprint"] {
        if let Some(v) = first.get(field).filter(|v| !v.is_null()) {
            answer.insert(field.into(), v.clone());
        }
    }
    answer.insert("object".into(), json!(object));
    answer.insert("choices".into(), Value::Array(choices));
    if let Some(usage) = usage {
        answer.insert("usage".into(), usage);
    }
    Some(Value::Object(answer))
}

fn append_text(into: &mut Map<String, Value>, field: &str, piece: &Value) {
    if let Some(piece) = piece.as_str() {
        let slot = into.entry(field).or_insert_with(|| json!(""));
        match slot.as_str() {
            Some(so_far) => *slot = Value::String(format!("{so_far}{piece}")),
            None => *slot = json!(piece),
        }
    }
}

/// Adds a chat delta to its choice's message: text appended, tool calls merged by index.
fn merge_delta(choice: &mut Map<String, Value>, delta: &Value) {
    let Some(delta) = delta.as_object() else { return };
    let message = choice.entry("message").or_insert_with(|| json!({"role": "assistant"}));
    let Some(message) = message.as_object_mut() else { return };
    for (field, value) in delta {
        match field.as_str() {
            "role" => {
                message.insert("role".into(), value.clone());
            }
            "content" | "reasoning_content" | "refusal" => append_text(message, field, value),
            "tool_calls" => {
                let calls = message.entry("tool_calls").or_insert_with(|| json!([]));
                let Some(calls) = calls.as_array_mut() else { continue };
                for call in value.as_array().into_iter().flatten() {
                    let index = call["index"].as_u64().unwrap_or(calls.len() as u64) as usize;
                    let slot = match calls.iter_mut().position(|c| c["index"].as_u64() == Some(index as u64)) {
                        Some(i) => &mut calls[i],
                        None => {
                            calls.push(json!({"index": index, "function": {"arguments": ""}}));
                            let last = calls.len() - 1;
                            &mut calls[last]
                        }
                    };
                    let Some(slot) = slot.as_object_mut() else { continue };
                    for key in ["id", "type"] {
                        if let Some(v) = call.get(key).filter(|v| !v.is_null()) {
                            slot.insert(key.into(), v.clone());
                        }
                    }
                    let function = slot.entry("function").or_insert_with(|| json!({}));
                    if let Some(function) = function.as_object_mut() {
                        for key in ["name", "arguments"] {
                            append_text(function, key, &call["function"][key]);
                        }
                    }
                }
            }
            _ if value.is_null() => {}
            _ => {
                message.entry(field.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

/// The SSE events that replay `answer` as a stream: per choice its content and then its finish,
/// the usage chunk when the client asked for one (`stream_options.include_usage`), then `[DONE]`.
pub fn replay(shape: Shape, answer: &Value, include_usage: bool) -> Vec<Bytes> {
    let object = match shape {
        Shape::Chat => "chat.completion.chunk",
        Shape::Text => "text_completion",
    };
    let chunk = |choices: Value| {
        let mut c = Map::new();
        for field in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = answer.get(field) {
                c.insert(field.into(), v.clone());
            }
        }
        c.insert("object".into(), json!(object));
        c.insert("choices".into(), choices);
        Value::Object(c)
    };
    let mut events = Vec::new();
    for (i, choice) in answer["choices"].as_array().into_iter().flatten().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let body = match shape {
            Shape::Chat => {
                let mut delta = choice["message"].as_object().cloned().unwrap_or_default();
                if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                    for (n, call) in calls.iter_mut().enumerate() {
                        if let Some(call) = call.as_object_mut() {
                            call.entry("index").or_insert(json!(n));
                        }
                    }
                }
                json!({"index": index, "delta": delta, "finish_reason": null})
            }
            Shape::Text => json!({"index": index, "text": choice["text"], "finish_reason": null}),
        };
        events.push(crate::streaming::sse::data(&chunk(json!([body]))));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        let end = match shape {
            Shape::Chat => json!({"index": index, "delta": {}, "finish_reason": finish}),
            Shape::Text => json!({"index": index, "text": "", "finish_reason": finish}),
        };
        events.push(crate::streaming::sse::data(&chunk(json!([end]))));
    }
    if include_usage {
        let mut last = chunk(json!([]));
        let usage = answer
            .get("usage")
            .cloned()
            .unwrap_or_else(|| json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}));
        last["usage"] = usage;
        events.push(crate::streaming::sse::data(&last));
    }
    events.push(crate::streaming::sse::done());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_stream_assembles_into_its_answer_and_replays_back() {
        let chunks = vec![
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]}),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": null}]}),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}, "finish_reason": null}]}),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
        ];
        let answer = assemble(Shape::Chat, &chunks).unwrap();
        assert_eq!(
            answer,
            json!({"id": "c1", "created": 5, "model": "m", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello", "tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}", "name": "f"}, "id": "t", "type": "function"}]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
        );
        let events = replay(Shape::Chat, &answer, true);
        let mut decoder = crate::streaming::sse::Decoder::new();
        let data: Vec<String> = events.iter().flat_map(|e| decoder.feed(e)).map(|e| e.data).collect();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let parsed: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        assert_eq!(assemble(Shape::Chat, &parsed).unwrap(), answer);
        assert_eq!(parsed.last().unwrap()["usage"]["total_tokens"], 5);
    }

    #[test]
    fn a_replay_without_usage_asked_has_no_usage_chunk() {
        let answer = json!({"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}], "usage": {"total_tokens": 1}});
        let events = replay(Shape::Text, &answer, false);
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| !String::from_utf8_lossy(e).contains("usage")));
        let mut decoder = crate::streaming::sse::Decoder::new();
        let parsed: Vec<Value> =
            events[..2].iter().flat_map(|e| decoder.feed(e)).map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        assert_eq!(assemble(Shape::Text, &parsed).unwrap()["choices"][0]["text"], "hi");
    }
}
