//! Bedrock's Converse / ConverseStream wire bodies as serde types: the request ferrolite sends,
//! the whole answer it reads back, and each event of a streamed answer.
//!
//! Field names are the wire's. Requests borrow the text they carry from the OpenAI request they
//! are built from; answers and events borrow text that has no escapes from the upstream's bytes.
//! Answers read only the fields the translation uses: anything else is skipped, not kept, and a
//! block or delta of a kind this file does not name (images, documents, citations...) reads as
//! one with every field absent.

use crate::api::anthropic::{OutputConfig, Thinking};
use crate::exchange::parse_json;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Number, Value};
use std::borrow::Cow;

// ---------------------------------------------------------------------------------------------
// Request: `POST /model/{modelId}/converse` (and `converse-stream`: the same body)

/// A Converse request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest<'a> {
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub system: Option<Vec<SystemContentBlock<'a>>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<AdditionalModelRequestFields<'a>>,
}

/// What goes to the model's own API unchanged: for Claude, its `thinking` (and the effort of
/// adaptive thinking), as Anthropic spells them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdditionalModelRequestFields<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
}

/// Who speaks a message: Converse has no system or tool role (those go in `system` and in
/// `toolResult` blocks of a user message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationRole {
    User,
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message<'a> {
    pub role: ConversationRole,
    #[serde(borrow)]
    pub content: Vec<ContentBlock<'a>>,
}

/// A block of a request message: exactly one key says its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Image(#[serde(borrow)] ImageBlock<'a>),
    ToolUse(#[serde(borrow)] ToolUseBlock<'a>),
    ToolResult(#[serde(borrow)] ToolResultBlock<'a>),
    /// The model's reasoning of an earlier turn, handed back as it came.
    ReasoningContent(#[serde(borrow)] ReasoningBlock<'a>),
}

/// Reasoning: its text with the signature that vouches for it, or withheld (encrypted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningBlock<'a> {
    ReasoningText(#[serde(borrow)] ReasoningTextBlock<'a>),
    /// Base64 of the encrypted bytes.
    RedactedContent(#[serde(borrow)] Cow<'a, str>),
}

/// Reasoning as text, signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningTextBlock<'a> {
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Cow<'a, str>>,
}

/// An image, sent inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock<'a> {
    /// `png`, `jpeg`, `gif` or `webp`.
    #[serde(borrow)]
    pub format: Cow<'a, str>,
    #[serde(borrow)]
    pub source: ImageSource<'a>,
}

/// Where an image's bytes are: here, base64 in the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSource<'a> {
    #[serde(borrow)]
    pub bytes: Cow<'a, str>,
}

/// A tool call the assistant made earlier in the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock<'a> {
    #[serde(borrow)]
    pub tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    pub input: Value,
}

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock<'a> {
    #[serde(borrow)]
    pub tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    pub content: Vec<ToolResultContent<'a>>,
}

/// A piece of a tool result: text, or any JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Json(Value),
}

/// A block of the `system` prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemContentBlock<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
}

/// Sampling parameters; numbers go as the client wrote them (an integer stays an integer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<Cow<'a, str>>>,
}

impl InferenceConfig<'_> {
    /// Whether it sets nothing (and is better left out of the request).
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_none() && self.temperature.is_none() && self.top_p.is_none() && self.stop_sequences.is_none()
    }
}

/// The tools the model may call, and whether it must.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig<'a> {
    #[serde(borrow)]
    pub tools: Vec<Tool<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
}

/// One tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool<'a> {
    ToolSpec(#[serde(borrow)] ToolSpec<'a>),
}

/// A tool's name, description and input schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    pub input_schema: ToolInputSchema,
}

/// A tool's input schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolInputSchema {
    /// A JSON Schema object.
    Json(Value),
}

/// Whether, and which, tool the model must call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice<'a> {
    /// The model decides.
    Auto(AutoToolChoice),
    /// Some tool must be called.
    Any(AnyToolChoice),
    /// This tool must be called.
    Tool(#[serde(borrow)] SpecificToolChoice<'a>),
}

/// `{"auto": {}}`: a braced struct, so it serialises as an empty object (a unit would be null).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoToolChoice {}

/// `{"any": {}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnyToolChoice {}

/// `{"tool": {"name": ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecificToolChoice<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

// ---------------------------------------------------------------------------------------------
// Answer: a whole Converse response

/// A Converse answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse<'a> {
    #[serde(default, borrow)]
    pub output: Option<ConverseOutput<'a>>,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, `guardrail_intervened`...
    #[serde(default, borrow, deserialize_with = "text")]
    pub stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// What the model produced.
#[derive(Debug, Default, Deserialize)]
pub struct ConverseOutput<'a> {
    #[serde(default, borrow)]
    pub message: Option<OutputMessage<'a>>,
}

/// The assistant's message.
#[derive(Debug, Default, Deserialize)]
pub struct OutputMessage<'a> {
    #[serde(default, borrow)]
    pub content: Option<Vec<OutputBlock<'a>>>,
}

/// A block of an answer. A struct of options rather than an enum, so that kinds of block the
/// translation does not read are skipped instead of refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputBlock<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tool_use: Option<OutputToolUse<'a>>,
    #[serde(default, borrow)]
    pub reasoning_content: Option<ReasoningContent<'a>>,
}

/// A tool call of an answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputToolUse<'a> {
    #[serde(default, borrow)]
    pub tool_use_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    /// The call's arguments, a JSON object.
    #[serde(default)]
    pub input: Option<Value>,
}

/// The model's reasoning: as text, or withheld (`redactedContent`, base64).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningContent<'a> {
    #[serde(default, borrow)]
    pub reasoning_text: Option<ReasoningText<'a>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub redacted_content: Option<Cow<'a, str>>,
}

/// Reasoning as text, with the signature a later turn hands back.
#[derive(Debug, Default, Deserialize)]
pub struct ReasoningText<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub signature: Option<Cow<'a, str>>,
}

/// Token counts, of an answer or (in its `metadata` event) of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// Absent: their sum.
    #[serde(default)]
    pub total_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Stream: the events of a ConverseStream answer

/// One event of a ConverseStream answer. The event's kind is not in its JSON but in the
/// frame's `:event-type` header, so [`StreamEvent::parse`] takes both.
#[derive(Debug)]
pub enum StreamEvent<'a> {
    MessageStart(MessageStart<'a>),
    ContentBlockStart(ContentBlockStart<'a>),
    ContentBlockDelta(ContentBlockDelta<'a>),
    ContentBlockStop(ContentBlockStop),
    MessageStop(MessageStop<'a>),
    Metadata(Metadata),
    /// An event of a kind this file does not name (its payload was JSON).
    Other,
}

impl<'a> StreamEvent<'a> {
    /// The event of kind `event_type` whose payload is `payload` (an empty payload reads as
    /// `{}`).
    pub fn parse(event_type: &str, payload: &'a [u8]) -> serde_json::Result<StreamEvent<'a>> {
        let payload: &'a [u8] = if payload.is_empty() { b"{}" } else { payload };
        Ok(match event_type {
            "messageStart" => StreamEvent::MessageStart(parse_json(payload)?),
            "contentBlockStart" => StreamEvent::ContentBlockStart(parse_json(payload)?),
            "contentBlockDelta" => StreamEvent::ContentBlockDelta(parse_json(payload)?),
            "contentBlockStop" => StreamEvent::ContentBlockStop(parse_json(payload)?),
            "messageStop" => StreamEvent::MessageStop(parse_json(payload)?),
            "metadata" => StreamEvent::Metadata(parse_json(payload)?),
            _ => {
                parse_json::<serde::de::IgnoredAny>(payload)?;
                StreamEvent::Other
            }
        })
    }
}

/// `messageStart`: the assistant's message begins.
#[derive(Debug, Default, Deserialize)]
pub struct MessageStart<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub role: Option<Cow<'a, str>>,
}

/// `contentBlockStart`: a block that is not text begins (a text block starts with its first
/// delta).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStart<'a> {
    #[serde(default)]
    pub content_block_index: u64,
    #[serde(default, borrow)]
    pub start: Option<BlockStart<'a>>,
}

/// What kind of block starts.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStart<'a> {
    #[serde(default, borrow)]
    pub tool_use: Option<ToolUseStart<'a>>,
}

/// A tool call begins: its id and name (its input follows in deltas).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart<'a> {
    #[serde(default, borrow)]
    pub tool_use_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
}

/// `contentBlockDelta`: the next piece of a block.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDelta<'a> {
    #[serde(default)]
    pub content_block_index: u64,
    #[serde(default, borrow)]
    pub delta: Option<BlockDelta<'a>>,
}

/// A piece of text, of a tool call's input (JSON text, in pieces), or of reasoning.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDelta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tool_use: Option<ToolUseDelta<'a>>,
    #[serde(default, borrow)]
    pub reasoning_content: Option<ReasoningDelta<'a>>,
}

/// A piece of a tool call's input.
#[derive(Debug, Default, Deserialize)]
pub struct ToolUseDelta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub input: Option<Cow<'a, str>>,
}

/// A piece of reasoning: text, the signature that ends a block of it, or a withheld block.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub signature: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub redacted_content: Option<Cow<'a, str>>,
}

/// `contentBlockStop`: a block is complete.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStop {
    #[serde(default)]
    pub content_block_index: u64,
}

/// `messageStop`: the message is complete, and why.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStop<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub stop_reason: Option<Cow<'a, str>>,
}

/// `metadata`: the stream's token counts (its `metrics` are not read).
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error: the body of a non-2xx answer, and the payload of a ConverseStream exception frame
/// (`throttlingException`, `validationException`...), both `{"message": ...}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody<'a> {
    /// Some AWS front ends spell it `Message`.
    #[serde(default, borrow, alias = "Message", deserialize_with = "text")]
    pub message: Option<Cow<'a, str>>,
    /// `{"error": {"message": ...}}`: what an OpenAI-compatible proxy in front of Bedrock sends.
    #[serde(default, borrow)]
    pub error: Option<NestedError<'a>>,
}

/// The `error` object of an OpenAI-style error body.
#[derive(Debug, Default, Deserialize)]
pub struct NestedError<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub message: Option<Cow<'a, str>>,
}

/// Reads an optional string, borrowing it from the input when it has no escapes. (Serde
/// borrows a `Cow<str>` field itself, but not one inside an `Option`: that one it copies.)
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_borrow_text_without_escapes() {
        let body = br#"{"output": {"message": {"content": [{"text": "plain"}, {"text": "a\"quote"}]}}, "stopReason": "end_turn"}"#;
        let answer: ConverseResponse = serde_json::from_slice(body).unwrap();
        let blocks = answer.output.and_then(|o| o.message).and_then(|m| m.content).unwrap();
        assert!(matches!(blocks[0].text, Some(Cow::Borrowed("plain"))));
        assert!(matches!(&blocks[1].text, Some(Cow::Owned(t)) if t == "a\"quote"));
        assert!(matches!(answer.stop_reason, Some(Cow::Borrowed("end_turn"))));
    }

    #[test]
    fn stream_events_read_by_their_header() {
        let delta = br#"{"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}, "p": "abc"}"#;
        let Ok(StreamEvent::ContentBlockDelta(event)) = StreamEvent::parse("contentBlockDelta", delta) else {
            panic!("not a delta")
        };
        assert_eq!(event.content_block_index, 2);
        let input = event.delta.and_then(|d| d.tool_use).and_then(|t| t.input);
        assert!(matches!(input, Some(Cow::Borrowed("{}"))));
        assert!(matches!(
            StreamEvent::parse("messageStop", b""),
            Ok(StreamEvent::MessageStop(MessageStop { stop_reason: None }))
        ));
        assert!(matches!(StreamEvent::parse("somethingNew", b"[1]"), Ok(StreamEvent::Other)));
        assert!(StreamEvent::parse("somethingNew", b"{").is_err());
    }

    #[test]
    fn requests_serialise_as_the_wire_spells_them() {
        let request = ConverseRequest {
            messages: vec![Message { role: ConversationRole::User, content: vec![ContentBlock::Text("Hi".into())] }],
            system: None,
            inference_config: Some(InferenceConfig { max_tokens: Some(5), ..Default::default() }),
            tool_config: Some(ToolConfig {
                tools: vec![Tool::ToolSpec(ToolSpec {
                    name: "f".into(),
                    description: None,
                    input_schema: ToolInputSchema::Json(serde_json::json!({"type": "object"})),
                })],
                tool_choice: Some(ToolChoice::Auto(AutoToolChoice {})),
            }),
            additional_model_request_fields: None,
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":5},"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{"type":"object"}}}}],"toolChoice":{"auto":{}}}}"#
        );
    }
}
