//! OpenAI's Responses API (`POST /v1/responses`): the request with its input items and tools,
//! the `response` object with its output items, and the stream's events. Unknown fields of a
//! request stay in `extra`, so what a newer client sends can be checked against `drop_params`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

// ---------------------------------------------------------------------------------------------
// Request

/// `POST /v1/responses`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: a user message's text, or a list of items.
#[derive(Debug, Clone)]
pub enum Input {
    Text(String),
    Items(Vec<InputItem>),
}

impl<'de> Deserialize<'de> for Input {
    /// Read by hand rather than `untagged`, so a bad item's own error reaches the client.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Input, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Input::Text(text)),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| InputItem::deserialize(item).map_err(|e| D::Error::custom(format!("input[{i}]: {e}"))))
                .collect::<Result<_, _>>()
                .map(Input::Items),
            _ => Err(D::Error::custom("`input` must be a string or a list of items")),
        }
    }
}

/// One item of `input`. An item without a `type` is a message (the Agents SDK sends these).
#[derive(Debug, Clone)]
pub enum InputItem {
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    Reasoning(ReasoningItem),
    /// Another kind of item (a hosted tool's call, ...), by its type.
    Other(String),
}

/// The items whose `type` says what they are.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TypedItem {
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    Reasoning(ReasoningItem),
}

impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<InputItem, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let kind = match value.get("type") {
            None | Some(Value::Null) => {
                return MessageItem::deserialize(value).map(InputItem::Message).map_err(D::Error::custom)
            }
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => return Err(D::Error::custom("an input item's `type` must be a string")),
        };
        if !matches!(kind.as_str(), "message" | "function_call" | "function_call_output" | "reasoning") {
            return Ok(InputItem::Other(kind));
        }
        Ok(match TypedItem::deserialize(value).map_err(|e| D::Error::custom(format!("a {kind} item: {e}")))? {
            TypedItem::Message(m) => InputItem::Message(m),
            TypedItem::FunctionCall(c) => InputItem::FunctionCall(c),
            TypedItem::FunctionCallOutput(o) => InputItem::FunctionCallOutput(o),
            TypedItem::Reasoning(r) => InputItem::Reasoning(r),
        })
    }
}

/// A message item: `user`, `system`, `developer` or `assistant`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageItem {
    pub role: String,
    pub content: MessageContent,
}

/// A message's content: text, or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    InputText {
        text: String,
    },
    /// An earlier assistant turn's text, handed back.
    OutputText {
        text: String,
    },
    InputImage {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    },
    InputFile {
        #[serde(default)]
        file_data: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        filename: Option<String>,
        #[serde(default)]
        file_url: Option<String>,
    },
    Refusal {
        refusal: String,
    },
    #[serde(other)]
    Other,
}

/// A function call the model made in an earlier turn, handed back.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallItem {
    pub call_id: String,
    pub name: String,
    #[serde(default)]
    pub arguments: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A function's result for a call of an earlier turn.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallOutputItem {
    pub call_id: String,
    pub output: MessageContent,
}

/// A reasoning item of an earlier turn, handed back.
#[derive(Debug, Clone, Deserialize)]
pub struct ReasoningItem {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub summary: Vec<SummaryText>,
    #[serde(default)]
    pub encrypted_content: Option<String>,
}

/// A tool the model may call.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    Function(FunctionTool),
    /// Functions nested under a name (Codex's MCP servers).
    Namespace {
        name: String,
        #[serde(default)]
        tools: Vec<FunctionTool>,
    },
    /// A tool the provider runs itself (`web_search`, `file_search`, ...).
    #[serde(untagged)]
    Hosted(Map<String, Value>),
}

/// A function tool.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `tool_choice`: `auto`, `none`, `required`, or one function.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Function { name: String },
    Other(Value),
}

/// `text`: the output's format.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    #[serde(default)]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        strict: Option<bool>,
    },
}

/// `reasoning`: how hard the model thinks, and whether it summarises.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReasoningConfig {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The response

/// The `response` object (also inside `response.created`, `.in_progress`, `.completed`).
#[derive(Debug, Clone, Serialize)]
pub struct Response<'a> {
    pub id: Cow<'a, str>,
    pub object: &'static str,
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete`, `failed`.
    pub status: &'static str,
    pub error: Option<ResponseError<'a>>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<Cow<'a, str>>,
    pub max_output_tokens: Option<u64>,
    pub model: Cow<'a, str>,
    pub output: Vec<OutputItem<'a>>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<Cow<'a, str>>,
    pub reasoning: ReasoningConfig,
    pub store: bool,
    pub temperature: Option<f64>,
    pub text: Value,
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    pub top_p: Option<f64>,
    pub truncation: &'static str,
    pub usage: Option<ResponseUsage>,
    pub user: Option<Cow<'a, str>>,
    pub metadata: Map<String, Value>,
}

/// Why a response stopped short.
#[derive(Debug, Clone, Serialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: &'static str,
}

/// What failed a response.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseError<'a> {
    pub code: Cow<'a, str>,
    pub message: Cow<'a, str>,
}

/// Token usage, in the Responses API's words.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

/// One item of `output`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem<'a> {
    Message {
        id: Cow<'a, str>,
        /// `in_progress` or `completed`.
        status: &'static str,
        role: &'static str,
        content: Vec<OutputContent<'a>>,
    },
    FunctionCall {
        id: Cow<'a, str>,
        call_id: Cow<'a, str>,
        name: Cow<'a, str>,
        arguments: Cow<'a, str>,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<Cow<'a, str>>,
    },
    Reasoning {
        id: Cow<'a, str>,
        summary: Vec<SummaryText>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<Cow<'a, str>>,
    },
}

/// A part of an output message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent<'a> {
    OutputText { text: Cow<'a, str>, annotations: [Value; 0], logprobs: [Value; 0] },
    Refusal { refusal: Cow<'a, str> },
}

impl<'a> OutputContent<'a> {
    pub fn text(text: impl Into<Cow<'a, str>>) -> OutputContent<'a> {
        OutputContent::OutputText { text: text.into(), annotations: [], logprobs: [] }
    }
}

/// A reasoning summary's text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryText {
    #[serde(rename = "type", default = "summary_text")]
    pub kind: Cow<'static, str>,
    pub text: String,
}

fn summary_text() -> Cow<'static, str> {
    Cow::Borrowed("summary_text")
}

// ---------------------------------------------------------------------------------------------
// Stream events

/// One event of a streamed response; sent as `event: TYPE` + `data:` with its
/// `sequence_number` (see [`Sequenced`]).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum StreamEvent<'a> {
    #[serde(rename = "response.created")]
    Created { response: Response<'a> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: Response<'a> },
    #[serde(rename = "response.completed")]
    Completed { response: Response<'a> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Response<'a> },
    #[serde(rename = "response.failed")]
    Failed { response: Response<'a> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: u64, item: OutputItem<'a> },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: u64, item: OutputItem<'a> },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded { item_id: Cow<'a, str>, output_index: u64, content_index: u64, part: OutputContent<'a> },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone { item_id: Cow<'a, str>, output_index: u64, content_index: u64, part: OutputContent<'a> },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: Cow<'a, str>,
        output_index: u64,
        content_index: u64,
        delta: Cow<'a, str>,
        logprobs: [Value; 0],
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: Cow<'a, str>,
        output_index: u64,
        content_index: u64,
        text: Cow<'a, str>,
        logprobs: [Value; 0],
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta { item_id: Cow<'a, str>, output_index: u64, delta: Cow<'a, str> },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone { item_id: Cow<'a, str>, output_index: u64, arguments: Cow<'a, str> },
    #[serde(rename = "response.reasoning_summary_part.added")]
    ReasoningSummaryPartAdded { item_id: Cow<'a, str>, output_index: u64, summary_index: u64, part: SummaryText },
    #[serde(rename = "response.reasoning_summary_text.delta")]
    ReasoningSummaryTextDelta { item_id: Cow<'a, str>, output_index: u64, summary_index: u64, delta: Cow<'a, str> },
    #[serde(rename = "response.reasoning_summary_text.done")]
    ReasoningSummaryTextDone { item_id: Cow<'a, str>, output_index: u64, summary_index: u64, text: Cow<'a, str> },
    #[serde(rename = "response.reasoning_summary_part.done")]
    ReasoningSummaryPartDone { item_id: Cow<'a, str>, output_index: u64, summary_index: u64, part: SummaryText },
    #[serde(rename = "error")]
    Error { code: Cow<'a, str>, message: Cow<'a, str>, param: Option<Cow<'a, str>> },
}

impl StreamEvent<'_> {
    /// The event's `type`, which is also its SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Created { .. } => "response.created",
            StreamEvent::InProgress { .. } => "response.in_progress",
            StreamEvent::Completed { .. } => "response.completed",
            StreamEvent::Incomplete { .. } => "response.incomplete",
            StreamEvent::Failed { .. } => "response.failed",
            StreamEvent::OutputItemAdded { .. } => "response.output_item.added",
            StreamEvent::OutputItemDone { .. } => "response.output_item.done",
            StreamEvent::ContentPartAdded { .. } => "response.content_part.added",
            StreamEvent::ContentPartDone { .. } => "response.content_part.done",
            StreamEvent::OutputTextDelta { .. } => "response.output_text.delta",
            StreamEvent::OutputTextDone { .. } => "response.output_text.done",
            StreamEvent::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            StreamEvent::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            StreamEvent::ReasoningSummaryPartAdded { .. } => "response.reasoning_summary_part.added",
            StreamEvent::ReasoningSummaryTextDelta { .. } => "response.reasoning_summary_text.delta",
            StreamEvent::ReasoningSummaryTextDone { .. } => "response.reasoning_summary_text.done",
            StreamEvent::ReasoningSummaryPartDone { .. } => "response.reasoning_summary_part.done",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// An event with its place in the stream.
#[derive(Debug, Serialize)]
pub struct Sequenced<'e, 'a> {
    #[serde(flatten)]
    pub event: &'e StreamEvent<'a>,
    pub sequence_number: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_items_read_with_and_without_a_type() {
        let req: ResponsesRequest = serde_json::from_value(json!({"model": "m", "input": [
            {"role": "user", "content": "untyped is a message"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "42"}]},
            {"type": "web_search_call", "id": "ws_1"}
        ]}))
        .unwrap();
        let Some(Input::Items(items)) = req.input else { panic!("items") };
        assert!(matches!(&items[0], InputItem::Message(m) if m.role == "user"));
        assert!(
            matches!(&items[1], InputItem::Message(m) if matches!(&m.content, MessageContent::Parts(p) if p.len() == 1))
        );
        assert!(matches!(&items[2], InputItem::FunctionCall(c) if c.call_id == "c1"));
        assert!(matches!(&items[3], InputItem::FunctionCallOutput(o) if matches!(o.output, MessageContent::Parts(_))));
        assert!(matches!(&items[4], InputItem::Other(kind) if kind == "web_search_call"));
        let bad =
            serde_json::from_value::<ResponsesRequest>(json!({"model": "m", "input": [{"type": "function_call"}]}));
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("input[0]: a function_call item") && e.contains("call_id"), "{e}");
    }

    #[test]
    fn tools_read_functions_namespaces_and_hosted_ones() {
        let tools: Vec<Tool> = serde_json::from_value(json!([
            {"type": "function", "name": "f", "parameters": {"type": "object"}},
            {"type": "namespace", "name": "mcp__s", "tools": [{"type": "function", "name": "g"}]},
            {"type": "web_search"}
        ]))
        .unwrap();
        assert!(matches!(&tools[0], Tool::Function(f) if f.name == "f"));
        assert!(matches!(&tools[1], Tool::Namespace { name, tools } if name == "mcp__s" && tools[0].name == "g"));
        assert!(matches!(&tools[2], Tool::Hosted(t) if t["type"] == "web_search"));
    }

    #[test]
    fn events_carry_their_type_and_sequence_number() {
        let event = StreamEvent::OutputTextDelta {
            item_id: "msg_1".into(),
            output_index: 0,
            content_index: 0,
            delta: "Hi".into(),
            logprobs: [],
        };
        let v = serde_json::to_value(Sequenced { event: &event, sequence_number: 4 }).unwrap();
        assert_eq!(
            v,
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hi", "logprobs": [], "sequence_number": 4})
        );
        assert_eq!(event.name(), "response.output_text.delta");
    }
}
