//! A chat answer as a Responses `response`: the reasoning (when the provider returned any), the
//! message and each function call become output items; `length` and `content_filter` make it
//! `incomplete`; usage is renamed. [`Shell`] holds what every response of one request shares
//! (its id, what it echoes of the request) for this module and the stream's.

use super::request::ToolNames;
use crate::api::openai::{ChatCompletion, ChatUsage};
use crate::api::responses::{
    IncompleteDetails, InputTokensDetails, OutputContent, OutputItem, OutputTokensDetails, ReasoningConfig, Response,
    ResponseUsage, ResponsesRequest, SummaryText,
};
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// What every form of one request's response shares.
#[derive(Debug)]
pub struct Shell {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub names: ToolNames,
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
    /// The shell of the response to `req` (whose body as sent is `raw`).
    pub fn new(req: &ResponsesRequest, raw: &Value, names: ToolNames, model: &str) -> Shell {
        let id = format!("resp_{:032x}", rand::random::<u128>());
        Shell {
            id,
            created_at: crate::clock::unix_now(),
            model: model.to_owned(),
            names,
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            previous_response_id: req.previous_response_id.clone(),
            reasoning: req.reasoning.clone().unwrap_or_default(),
            store: req.store != Some(false),
            temperature: req.temperature,
            top_p: req.top_p,
            user: req.user.clone(),
            text: raw
                .get("text")
                .filter(|t| t.is_object())
                .cloned()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
            tool_choice: raw.get("tool_choice").cloned().unwrap_or_else(|| Value::String("auto".into())),
            tools: raw.get("tools").and_then(Value::as_array).cloned().unwrap_or_default(),
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

/// A whole chat answer as a `response`.
pub fn to_response<'a>(chat: &'a ChatCompletion, shell: &'a Shell) -> Response<'a> {
    let choice = chat.choices.first();
    let message = choice.map(|c| &c.message);
    let mut output = Vec::new();
    // The reasoning some translations return beside the message (`reasoning_content`).
    if let Some(reasoning) = message.and_then(|m| m.extra.get("reasoning_content")).and_then(Value::as_str) {
        if !reasoning.is_empty() {
            let summary = vec![SummaryText { kind: Cow::Borrowed("summary_text"), text: reasoning.to_owned() }];
            output.push(OutputItem::Reasoning {
                id: Cow::Owned(shell.item_id("rs", output.len())),
                summary,
                encrypted_content: None,
            });
        }
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
