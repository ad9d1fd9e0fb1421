//! A Responses request as an OpenAI chat request: `instructions` and the input items become
//! chat messages (consecutive function calls one assistant turn, their outputs `tool`
//! messages), function tools (and the functions of a namespace, offered flat) chat tools,
//! `text.format` a `response_format`, `max_output_tokens` `max_tokens`, `reasoning.effort`
//! `reasoning_effort`. Hosted tools (`web_search`, ...) follow `drop_params`. A `reasoning` item
//! handed back gives the next assistant turn its `thinking_blocks` (those its
//! `encrypted_content` holds for this deployment's signer).

use super::reasoning;
use crate::api::openai::{ChatMessage, ChatRequest, StreamOptions, ThinkingBlock};
use crate::api::responses::{
    ContentPart, FunctionTool, Input, InputItem, MessageContent, ResponsesRequest, TextFormat, Tool, ToolChoice,
};
use crate::exchange::ApiError;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Joins a namespace and a function into the flat name a provider is offered (a name providers
/// accept: letters, digits, `_` and `-`).
const NAMESPACE_JOIN: &str = "__";

/// The functions offered under a flat name, mapped back to their namespace when called.
#[derive(Debug, Default, Clone)]
pub struct ToolNames {
    /// Flat name -> (namespace, name).
    namespaced: HashMap<String, (String, String)>,
}

impl ToolNames {
    /// The (namespace, name) a provider's call of `flat` is reported with.
    pub fn split<'a>(&'a self, flat: &'a str) -> (Option<&'a str>, &'a str) {
        match self.namespaced.get(flat) {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, flat),
        }
    }
}

/// The chat request, the names of tools, and what `drop_params` dropped.
pub struct Translated {
    pub chat: ChatRequest,
    pub names: ToolNames,
    pub dropped: Vec<String>,
}

/// Translates `req` for a deployment whose thinking `signer` signs; with `drop_params` false, a
/// hosted tool (or a choice of one) is a 400.
pub fn to_chat_request(req: &ResponsesRequest, drop_params: bool, signer: &str) -> Result<Translated, ApiError> {
    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions.as_deref().filter(|i| !i.is_empty()) {
        messages.push(message("system", Some(Value::String(instructions.to_owned()))));
    }
    match &req.input {
        None => {}
        Some(Input::Text(text)) => messages.push(message("user", Some(Value::String(text.clone())))),
        Some(Input::Items(items)) => {
            let mut turns = Turns { messages: &mut messages, thinking: Vec::new(), signer };
            for item in items {
                turns.push(item)?;
            }
        }
    }
    if messages.is_empty() {
        return Err(ApiError::bad_request("`input` (or `instructions`) must say something").with_param("input"));
    }
    let mut extra = Map::new();
    let mut names = ToolNames::default();
    let mut unsupported: Vec<String> = Vec::new();
    let mut tools = Vec::new();
    for tool in &req.tools {
        match tool {
            Tool::Function(f) => tools.push(chat_tool(f, &f.name)),
            Tool::Namespace { name: namespace, tools: functions } => {
                for f in functions {
                    let flat = format!("{namespace}{NAMESPACE_JOIN}{}", f.name);
                    tools.push(chat_tool(f, &flat));
                    names.namespaced.insert(flat, (namespace.clone(), f.name.clone()));
                }
            }
            Tool::Hosted(t) => {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("?");
                unsupported.push(format!("tools[type={kind}]"));
            }
        }
    }
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
    }
    match &req.tool_choice {
        None => {}
        Some(ToolChoice::Mode(mode)) => {
            extra.insert("tool_choice".into(), Value::String(mode.clone()));
        }
        Some(ToolChoice::Function { name }) => {
            extra.insert("tool_choice".into(), json!({"type": "function", "function": {"name": name}}));
        }
        Some(ToolChoice::Other(choice)) => {
            let kind = choice.get("type").and_then(Value::as_str).unwrap_or("?");
            unsupported.push(format!("tool_choice[type={kind}]"));
        }
    }
    if !unsupported.is_empty() && !drop_params {
        return Err(ApiError::bad_request(format!(
            "hosted tools run only on OpenAI's own Responses API; this deployment cannot run {}; set `drop_params: true` in litellm_settings to drop them",
            unsupported.join(", ")
        ))
        .with_param(unsupported[0].clone())
        .with_code("unsupported_parameter"));
    }
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            extra.insert(key.to_owned(), v);
        }
    };
    put("parallel_tool_calls", req.parallel_tool_calls.map(Value::Bool));
    put("max_tokens", req.max_output_tokens.map(Value::from));
    put("temperature", req.temperature.map(Value::from));
    put("top_p", req.top_p.map(Value::from));
    put("user", req.user.clone().map(Value::String));
    put("reasoning_effort", req.reasoning.as_ref().and_then(|r| r.effort.clone()).map(Value::String));
    put("response_format", req.text.as_ref().and_then(|t| t.format.as_ref()).and_then(response_format));
    let stream = req.stream == Some(true);
    let chat = ChatRequest {
        model: req.model.clone(),
        messages,
        stream: stream.then_some(true),
        // Usage comes with every stream: the completed response carries it.
        stream_options: stream.then(|| StreamOptions { include_usage: true, extra: Map::new() }),
        n: None,
        extra,
    };
    Ok(Translated { chat, names, dropped: unsupported })
}

fn message(role: &str, content: Option<Value>) -> ChatMessage {
    ChatMessage { role: role.to_owned(), content, extra: Map::new() }
}

fn chat_tool(f: &FunctionTool, name: &str) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.to_owned()));
    if let Some(d) = &f.description {
        function.insert("description".into(), Value::String(d.clone()));
    }
    function.insert(
        "parameters".into(),
        f.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if let Some(strict) = f.strict {
        function.insert("strict".into(), Value::Bool(strict));
    }
    json!({"type": "function", "function": function})
}

fn response_format(format: &TextFormat) -> Option<Value> {
    match format {
        TextFormat::Text => None,
        TextFormat::JsonObject => Some(json!({"type": "json_object"})),
        TextFormat::JsonSchema { name, schema, description, strict } => {
            let mut spec = Map::new();
            spec.insert("name".into(), Value::String(name.clone()));
            spec.insert("schema".into(), schema.clone());
            if let Some(d) = description {
                spec.insert("description".into(), Value::String(d.clone()));
            }
            if let Some(s) = strict {
                spec.insert("strict".into(), Value::Bool(*s));
            }
            Some(json!({"type": "json_schema", "json_schema": spec}))
        }
    }
}

/// The chat messages items make, and the thinking handed back for the next assistant turn.
struct Turns<'m, 's> {
    messages: &'m mut Vec<ChatMessage>,
    thinking: Vec<ThinkingBlock>,
    signer: &'s str,
}

impl Turns<'_, '_> {
    fn push(&mut self, item: &InputItem) -> Result<(), ApiError> {
        match item {
            InputItem::Reasoning(r) => {
                let encrypted = r.encrypted_content.as_deref().unwrap_or_default();
                self.thinking.extend(reasoning::open(self.signer, encrypted));
                return Ok(());
            }
            InputItem::Message(m) if m.role != "assistant" => self.thinking.clear(),
            _ => {}
        }
        push_item(item, self.messages)?;
        // Thinking goes with the assistant turn the item made or added to.
        let assistant = matches!(item, InputItem::FunctionCall(_))
            || matches!(item, InputItem::Message(m) if m.role == "assistant");
        if !assistant || self.thinking.is_empty() {
            return Ok(());
        }
        let Some(turn) = self.messages.last_mut() else { return Ok(()) };
        let blocks = turn.extra.entry("thinking_blocks").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(blocks) = blocks {
            blocks.extend(self.thinking.drain(..).filter_map(|b| serde_json::to_value(b).ok()));
        }
        Ok(())
    }
}

/// Adds one input item to the chat messages.
fn push_item(item: &InputItem, messages: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    match item {
        InputItem::Message(m) => {
            // Chat-only servers and the translating providers know `system`, not `developer`.
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            if !matches!(role, "system" | "user" | "assistant") {
                return Err(ApiError::bad_request(format!(
                    "a message's role must be user, assistant, system or developer, not {:?}",
                    m.role
                ))
                .with_param("input"));
            }
            messages.push(message(role, Some(content(&m.content))));
        }
        InputItem::FunctionCall(call) => {
            let name = match &call.namespace {
                Some(namespace) => format!("{namespace}{NAMESPACE_JOIN}{}", call.name),
                None => call.name.clone(),
            };
            let tool_call = json!({"id": call.call_id, "type": "function",
                "function": {"name": name, "arguments": if call.arguments.is_empty() { "{}" } else { call.arguments.as_str() }}});
            // Consecutive calls (and the text before them) are one assistant turn.
            match messages.last_mut() {
                Some(last) if last.role == "assistant" && !last.extra.contains_key("tool_call_id") => {
                    let calls = last.extra.entry("tool_calls").or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(calls) = calls {
                        calls.push(tool_call);
                    }
                }
                _ => {
                    let mut turn = message("assistant", None);
                    turn.extra.insert("tool_calls".into(), Value::Array(vec![tool_call]));
                    messages.push(turn);
                }
            }
        }
        InputItem::FunctionCallOutput(output) => {
            let text = match &output.output {
                MessageContent::Text(text) => text.clone(),
                MessageContent::Parts(parts) => parts.iter().filter_map(part_text).collect::<Vec<_>>().join(""),
            };
            let mut result = message("tool", Some(Value::String(text)));
            result.extra.insert("tool_call_id".into(), Value::String(output.call_id.clone()));
            messages.push(result);
        }
        // Reasoning handed back goes with its turn (`Turns`); hosted tools' items have no chat form.
        InputItem::Reasoning(_) | InputItem::Other(_) => {}
    }
    Ok(())
}

fn part_text(part: &ContentPart) -> Option<&str> {
    match part {
        ContentPart::InputText { text } | ContentPart::OutputText { text } => Some(text),
        ContentPart::Refusal { refusal } => Some(refusal),
        _ => None,
    }
}

/// A message's content in chat's words: text stays text; parts with an image or a file become
/// chat content parts.
fn content(content: &MessageContent) -> Value {
    let parts = match content {
        MessageContent::Text(text) => return Value::String(text.clone()),
        MessageContent::Parts(parts) => parts,
    };
    let only_text = parts.iter().all(|p| part_text(p).is_some() || matches!(p, ContentPart::Other));
    if only_text {
        return Value::String(parts.iter().filter_map(part_text).collect::<Vec<_>>().join(""));
    }
    let chat_parts = parts
        .iter()
        .filter_map(|part| match part {
            ContentPart::InputText { text } | ContentPart::OutputText { text } => {
                Some(json!({"type": "text", "text": text}))
            }
            ContentPart::Refusal { refusal } => Some(json!({"type": "text", "text": refusal})),
            ContentPart::InputImage { image_url, file_id, detail } => {
                let url = image_url.clone().or_else(|| file_id.clone())?;
                let mut image = json!({"url": url});
                if let Some(d) = detail {
                    image["detail"] = Value::String(d.clone());
                }
                Some(json!({"type": "image_url", "image_url": image}))
            }
            ContentPart::InputFile { file_data, file_id, filename, file_url } => {
                let mut file = Map::new();
                for (key, value) in [("file_data", file_data), ("file_id", file_id), ("filename", filename)] {
                    if let Some(v) = value {
                        file.insert(key.into(), Value::String(v.clone()));
                    }
                }
                if let (Some(url), true) = (file_url, file.is_empty()) {
                    file.insert("file_id".into(), Value::String(url.clone()));
                }
                Some(json!({"type": "file", "file": file}))
            }
            ContentPart::Other => None,
        })
        .collect();
    Value::Array(chat_parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Translated {
        to_chat_request(&serde_json::from_value(body).unwrap(), false, "claude").unwrap()
    }

    #[test]
    fn items_become_chat_turns() {
        let t = translate(json!({"model": "m", "instructions": "be brief", "input": [
            {"role": "developer", "content": "use tools"},
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call", "call_id": "c2", "name": "time", "arguments": ""},
            {"type": "function_call_output", "call_id": "c1", "output": "rain"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
            {"type": "reasoning", "summary": []}
        ]}));
        let messages = serde_json::to_value(&t.chat.messages).unwrap();
        assert_eq!(
            messages,
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "system", "content": "use tools"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}
                ]},
                {"role": "tool", "content": "rain", "tool_call_id": "c1"},
                {"role": "tool", "content": "noon", "tool_call_id": "c2"}
            ])
        );
    }

    #[test]
    fn options_tools_and_formats_map_to_chat() {
        let t = translate(json!({"model": "m", "input": "hi", "max_output_tokens": 50, "temperature": 0.2,
            "reasoning": {"effort": "low"}, "parallel_tool_calls": false, "stream": true,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                      {"type": "namespace", "name": "mcp__git", "tools": [{"type": "function", "name": "log"}]}],
            "tool_choice": {"type": "function", "name": "f"}}));
        let chat = serde_json::to_value(&t.chat).unwrap();
        assert_eq!(chat["max_tokens"], 50);
        assert_eq!(chat["reasoning_effort"], "low");
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(chat["tools"][1]["function"]["name"], "mcp__git__log");
        assert_eq!(chat["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
        assert_eq!(t.names.split("mcp__git__log"), (Some("mcp__git"), "log"));
        assert_eq!(t.names.split("f"), (None, "f"));
    }

    #[test]
    fn hosted_tools_follow_drop_params() {
        let req: ResponsesRequest =
            serde_json::from_value(json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})).unwrap();
        let e = to_chat_request(&req, false, "claude").err().unwrap();
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("tools[type=web_search]")));
        let t = to_chat_request(&req, true, "claude").unwrap();
        assert_eq!(t.dropped, vec!["tools[type=web_search]".to_owned()]);
        assert!(!t.chat.extra.contains_key("tools"));
    }
}

#[cfg(test)]
mod reasoning_tests {
    use super::*;
    use crate::api::openai::ThinkingBlock;

    fn sealed(signer: &str, blocks: &[ThinkingBlock]) -> String {
        reasoning::seal(signer, blocks).unwrap()
    }

    #[test]
    fn reasoning_handed_back_is_the_thinking_of_the_next_assistant_turn() {
        let first = sealed("claude", &[ThinkingBlock::signed("Paris.", "s1")]);
        let second = sealed("claude", &[ThinkingBlock::RedactedThinking { data: "opaque".into() }]);
        let foreign = sealed("gemini", &[ThinkingBlock::signed("x", "g")]);
        let req: ResponsesRequest = serde_json::from_value(json!({"model": "m", "input": [
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Paris."}], "encrypted_content": first},
            {"type": "reasoning", "summary": [], "encrypted_content": second},
            {"type": "reasoning", "summary": [], "encrypted_content": foreign},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-openai-own"},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "rain"},
            {"type": "reasoning", "summary": [], "encrypted_content": sealed("claude", &[ThinkingBlock::signed("Rain.", "s2")])},
            {"role": "assistant", "content": [{"type": "output_text", "text": "It rains."}]},
            {"type": "reasoning", "summary": [], "encrypted_content": sealed("claude", &[ThinkingBlock::signed("Dropped.", "s3")])},
            {"role": "user", "content": "thanks"}
        ]}))
        .unwrap();
        let t = to_chat_request(&req, false, "claude").unwrap();
        let messages = serde_json::to_value(&t.chat.messages).unwrap();
        assert_eq!(
            messages[1]["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "Paris.", "signature": "s1"}, {"type": "redacted_thinking", "data": "opaque"}])
        );
        assert_eq!(messages[1]["tool_calls"][0]["id"], "c1");
        assert_eq!(
            messages[3]["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "Rain.", "signature": "s2"}])
        );
        assert_eq!(
            messages[4],
            json!({"role": "user", "content": "thanks"}),
            "reasoning before a user turn goes nowhere"
        );
        assert_eq!(messages.as_array().unwrap().len(), 5);
    }
}
