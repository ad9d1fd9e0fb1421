//! A chat answer as a Responses `response`: the reasoning (when the provider returned any), the
//! message and each function call become output items; `length` and `content_filter` make it
//! `incomplete`; usage is renamed. Each signed (or redacted) thinking block is a `reasoning`
//! item of its own, its summary the block's text, its `encrypted_content` the block sealed
//! (`reasoning.rs`), so handed back it becomes the thinking of its turn again. [`Shell`] holds
//! what every response of one request shares (its id, what it echoes of the request) for this
//! module and the stream's.

use super::reasoning;
use super::request::ToolNames;
use crate::api::openai::{AssistantMessage, ChatCompletion, ChatUsage, ThinkingBlock};
use crate::api::responses::{
    IncompleteDetails, InputTokensDetails, OutputContent, OutputItem, OutputTokensDetails, ReasoningConfig, Response,
    ResponseUsage, ResponsesRequest, SummaryText,
};
use crate::exchange::object_field;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// What every form of one request's response shares.
#[derive(Debug)]
pub struct Shell {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub names: ToolNames,
    /// The family whose signatures the deployment's thinking carries.
    pub signer: &'static str,
    instructions: Option<String>,
    max_output_tokens: Option<u64>,
    parallel_tool_calls: bool,
    previous_response_id: Option<String>,
    reasoning: ReasoningConfig,
    store: bool,
    temperature: Option<f64>,
    top_p: Option<f64>,
    user: Option<String>,
    /// Echoed as the client sent them.
    text: Value,
    tool_choice: Value,
    tools: Vec<Value>,
    metadata: Map<String, Value>,
}

impl Shell {
    /// The shell of the response to `req` (whose body as sent is `raw`) from `model`, whose
    /// thinking `signer` signs.
    pub fn new(req: &ResponsesRequest, raw: &Value, names: ToolNames, model: &str, signer: &'static str) -> Shell {
        let id = format!("resp_{:032x}", rand::random::<u128>());
        Shell {
            id,
            created_at: crate::clock::unix_now(),
            model: model.to_owned(),
            names,
            signer,
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            previous_response_id: req.previous_response_id.clone(),
            reasoning: req.reasoning.clone().unwrap_or_default(),
            store: req.store != Some(false),
            temperature: req.temperature,
            top_p: req.top_p,
            user: req.user.clone(),
            text: object_field(raw, "text")
                .filter(|t| t.is_object())
                .cloned()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
            tool_choice: object_field(raw, "tool_choice").cloned().unwrap_or_else(|| Value::String("auto".into())),
            tools: object_field(raw, "tools").and_then(Value::as_array).cloned().unwrap_or_default(),
            metadata: req.metadata.clone().unwrap_or_default(),
        }
    }

    /// An output item's id: the response's own suffix, a kind and a number.
    pub fn item_id(&self, kind: &str, n: usize) -> String {
        format!("{kind}_{}_{n}", self.id.trim_start_matches("resp_"))
    }

    /// The `response` object in `status` with `output` and `usage`.
    pub fn response<'a>(
        &'a self,
        status: &'static str,
        output: Vec<OutputItem<'a>>,
        usage: Option<ResponseUsage>,
    ) -> Response<'a> {
        let borrowed = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        Response {
            id: Cow::Borrowed(&self.id),
            object: "response",
            created_at: self.created_at,
            status,
            error: None,
            incomplete_details: None,
            instructions: borrowed(&self.instructions),
            max_output_tokens: self.max_output_tokens,
            model: Cow::Borrowed(&self.model),
            output,
            parallel_tool_calls: self.parallel_tool_calls,
            previous_response_id: borrowed(&self.previous_response_id),
            reasoning: self.reasoning.clone(),
            // The gateway keeps it (apps::responses) unless the client said not to.
            store: self.store,
            temperature: self.temperature,
            text: self.text.clone(),
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            top_p: self.top_p,
            truncation: "disabled",
            usage,
            user: borrowed(&self.user),
            metadata: self.metadata.clone(),
        }
    }

    /// A reasoning item: its summary (none for empty text) and its blocks sealed.
    pub fn reasoning<'a>(&self, id: String, text: String, blocks: &[ThinkingBlock]) -> OutputItem<'a> {
        let summary =
            if text.is_empty() { Vec::new() } else { vec![SummaryText { kind: Cow::Borrowed("summary_text"), text }] };
        let encrypted_content = reasoning::seal(self.signer, blocks).map(Cow::Owned);
        OutputItem::Reasoning { id: Cow::Owned(id), summary, encrypted_content }
    }

    /// A function call item, its name mapped back to its namespace.
    pub fn function_call<'a>(
        &'a self,
        id: String,
        call_id: &'a str,
        flat_name: &'a str,
        arguments: Cow<'a, str>,
        status: &'static str,
    ) -> OutputItem<'a> {
        let (namespace, name) = self.names.split(flat_name);
        OutputItem::FunctionCall {
            id: Cow::Owned(id),
            call_id: Cow::Borrowed(call_id),
            name: Cow::Borrowed(name),
            arguments,
            status,
            namespace: namespace.map(Cow::Borrowed),
        }
    }
}

/// Chat usage in the Responses API's words.
pub fn usage(u: &ChatUsage) -> ResponseUsage {
    ResponseUsage {
        input_tokens: u.prompt_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: u.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
        },
        output_tokens: u.completion_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: u.completion_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0),
        },
        total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
    }
}

/// The status a chat `finish_reason` gives a response, and why it is incomplete.
pub fn status_of(finish_reason: Option<&str>) -> (&'static str, Option<IncompleteDetails>) {
    match finish_reason {
        Some("length") => ("incomplete", Some(IncompleteDetails { reason: "max_output_tokens" })),
        Some("content_filter") => ("incomplete", Some(IncompleteDetails { reason: "content_filter" })),
        _ => ("completed", None),
    }
}

/// The reasoning of a message as items: one per block to hand back, then one for the text no
/// block holds (all of it, from a provider that signs nothing).
fn reasoning_items<'a>(message: &AssistantMessage, shell: &'a Shell, output: &mut Vec<OutputItem<'a>>) {
    let mut told = 0;
    let text = message.reasoning_content.as_deref().unwrap_or_default();
    for block in message.thinking_blocks.iter().flatten().filter(|b| reasoning::kept(b)) {
        let said = match block {
            ThinkingBlock::Thinking { thinking, .. } => thinking.clone(),
            _ => String::new(),
        };
        if text[told..].starts_with(&said) {
            told += said.len();
        }
        let id = shell.item_id("rs", output.len());
        output.push(shell.reasoning(id, said, std::slice::from_ref(block)));
    }
    if told < text.len() {
        let id = shell.item_id("rs", output.len());
        output.push(shell.reasoning(id, text[told..].to_owned(), &[]));
    }
}

/// A whole chat answer as a `response`.
pub fn to_response<'a>(chat: &'a ChatCompletion, shell: &'a Shell) -> Response<'a> {
    let choice = chat.choices.first();
    let message = choice.map(|c| &c.message);
    let mut output = Vec::new();
    if let Some(message) = message {
        reasoning_items(message, shell, &mut output);
    }
    let text = message.and_then(|m| m.content.as_ref()).and_then(Option::as_deref).filter(|t| !t.is_empty());
    let refusal = message.and_then(|m| m.refusal.as_ref()).and_then(Option::as_deref).filter(|t| !t.is_empty());
    if text.is_some() || refusal.is_some() {
        let mut content: Vec<OutputContent<'a>> = text.map(OutputContent::text).into_iter().collect();
        content.extend(refusal.map(|r| OutputContent::Refusal { refusal: Cow::Borrowed(r) }));
        output.push(OutputItem::Message {
            id: Cow::Owned(shell.item_id("msg", output.len())),
            status: "completed",
            role: "assistant",
            content,
        });
    }
    for call in message.and_then(|m| m.tool_calls.as_ref()).into_iter().flatten() {
        let id = shell.item_id("fc", output.len());
        let arguments = Cow::Borrowed(call.function.arguments.as_str());
        output.push(shell.function_call(id, &call.id, &call.function.name, arguments, "completed"));
    }
    let (status, incomplete) = status_of(choice.and_then(|c| c.finish_reason.as_deref()));
    let mut response = shell.response(status, output, chat.usage.as_ref().map(usage));
    response.incomplete_details = incomplete;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> Shell {
        let req: ResponsesRequest = serde_json::from_value(json!({"model": "m", "input": "hi"})).unwrap();
        Shell::new(&req, &json!({}), ToolNames::default(), "m", "claude")
    }

    fn answer(message: Value) -> ChatCompletion {
        serde_json::from_value(json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}]}))
        .unwrap()
    }

    #[test]
    fn each_block_to_hand_back_is_a_reasoning_item_before_the_message_and_calls() {
        let chat = answer(json!({"role": "assistant", "content": "Checking.",
            "reasoning_content": "Paris.Then a tool.",
            "thinking_blocks": [
                {"type": "thinking", "thinking": "Paris.", "signature": "s1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "thinking", "thinking": "Then a tool.", "signature": "s2"}],
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}));
        let shell = shell();
        let output = serde_json::to_value(to_response(&chat, &shell).output).unwrap();
        let kinds: Vec<&str> = output.as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "reasoning", "reasoning", "message", "function_call"]);
        assert_eq!(output[0]["summary"], json!([{"type": "summary_text", "text": "Paris."}]));
        assert_eq!(output[1]["summary"], json!([]));
        let sealed = output[2]["encrypted_content"].as_str().unwrap();
        assert_eq!(reasoning::open("claude", sealed), vec![ThinkingBlock::signed("Then a tool.", "s2")]);
        assert!(output[0]["id"].as_str().unwrap().starts_with("rs_"));
    }

    #[test]
    fn unsigned_reasoning_is_one_item_without_encrypted_content() {
        let chat = answer(json!({"role": "assistant", "content": "Hi.", "reasoning_content": "Easy."}));
        let shell = shell();
        let output = serde_json::to_value(to_response(&chat, &shell).output).unwrap();
        assert_eq!(output[0]["summary"], json!([{"type": "summary_text", "text": "Easy."}]));
        assert_eq!(output[0].get("encrypted_content"), None);
        // Text no block holds (thought after the last signature) is an item of its own.
        let chat = answer(json!({"role": "assistant", "content": "Hi.", "reasoning_content": "Signed. Loose.",
            "thinking_blocks": [{"type": "thinking", "thinking": "Signed.", "signature": "s"}]}));
        let output = serde_json::to_value(to_response(&chat, &shell).output).unwrap();
        assert_eq!(output[1]["summary"][0]["text"], " Loose.");
        assert_eq!(output[1].get("encrypted_content"), None);
    }
}
