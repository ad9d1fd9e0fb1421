//! Anthropic's Messages API wire bodies: the request, the `message` answer and the stream
//! events, as serde types that serve both directions. ferrolite sends requests to Anthropic and
//! reads its answers (`providers::anthropic`); the `/v1/messages` front and the mock read
//! clients' requests and write answers and events (`providers::messages`, `providers::mock`).
//!
//! Text is `Cow<'a, str>`, so a body built from another one borrows its strings instead of
//! copying them; read with serde's derive, text is owned (the lenient reader of upstream
//! answers in `providers::anthropic` borrows it). Field order is the order on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// `POST /v1/messages`. Unknown members a client sends stay in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest<'a> {
    /// Empty on Vertex AI, whose URL names the model (and whose body may not): left out then.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub model: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content<'a>>,
    pub messages: Vec<Message<'a>>,
    pub max_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<Cow<'a, str>>>,
    /// A number as the client wrote it (`1` stays `1`, not `1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `thinking`: `enabled` with a `budget_tokens`, `adaptive` (the model decides how much, after
/// `output_config.effort`), or `disabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thinking<'a> {
    #[serde(rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// `summarized` or `omitted` (the thinking text left out, its signature kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<Cow<'a, str>>,
}

impl Thinking<'_> {
    /// Whether it turns thinking on.
    pub fn is_on(&self) -> bool {
        matches!(self.kind.as_ref(), "enabled" | "adaptive")
    }
}

/// `output_config`: how much effort the model spends (`low`, `medium`, `high`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputConfig<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// `user` or `assistant`.
    pub role: Cow<'a, str>,
    pub content: Content<'a>,
}

/// Content written as one string, or as a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<ContentBlock<'a>>),
}

impl Default for Content<'_> {
    fn default() -> Self {
        Content::Text(Cow::Borrowed(""))
    }
}

impl Content<'_> {
    /// The text: the string, or the text blocks' text joined.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.as_ref().to_owned(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::Text { text, .. } => Some(text.as_ref()),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// A content block of a turn or of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    Text {
        #[serde(default)]
        text: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Cow<'a, Value>>,
    },
    Image {
        source: Source<'a>,
    },
    /// A PDF or text document.
    Document {
        source: Source<'a>,
    },
    ToolUse {
        #[serde(default)]
        id: Cow<'a, str>,
        #[serde(default)]
        name: Cow<'a, str>,
        /// The tool's input, an object.
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        tool_use_id: Cow<'a, str>,
        #[serde(default)]
        content: Content<'a>,
    },
    /// The model's thinking (its summary), signed: handed back unchanged in later turns.
    Thinking {
        #[serde(default)]
        thinking: Cow<'a, str>,
        #[serde(default)]
        signature: Cow<'a, str>,
    },
    /// Thinking withheld, encrypted.
    RedactedThinking {
        #[serde(default)]
        data: Cow<'a, str>,
    },
    /// Any other block (server tools, ...), or a known type of another shape,
    /// with its members as they came.
    #[serde(untagged)]
    Other(Map<String, Value>),
}

impl<'a> ContentBlock<'a> {
    /// A text block without cache control.
    pub fn text(text: impl Into<Cow<'a, str>>) -> ContentBlock<'a> {
        ContentBlock::Text { text: text.into(), cache_control: None }
    }
}

/// Where an image's or a document's bytes are: `base64` (`media_type`, `data`) or `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source<'a> {
    #[serde(rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Cow<'a, str>>,
}

/// `metadata`: all Anthropic accepts is the end user's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Cow<'a, str>>,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool<'a> {
    pub name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    /// The JSON Schema of the tool's input (absent for server tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Cow<'a, Value>>,
}

/// `tool_choice`: `auto`, `any`, `none`, or `tool` with a `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice<'a> {
    #[serde(rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// A `message` answer (whole, or the one `message_start` opens a stream with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageResponse<'a> {
    pub id: Cow<'a, str>,
    /// `message`.
    #[serde(rename = "type")]
    pub kind: Cow<'a, str>,
    /// `assistant`.
    pub role: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub content: Vec<ContentBlock<'a>>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`; null
    /// while a stream runs.
    pub stop_reason: Option<Cow<'a, str>>,
    pub stop_sequence: Option<Cow<'a, str>>,
    pub usage: Usage,
}

/// Token counts. Each is optional: a stream's `message_delta` reports only some of them, and
/// a later report replaces an earlier one count by count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Input and output counts only.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Usage {
        Usage { input_tokens: Some(input_tokens), output_tokens: Some(output_tokens), ..Usage::default() }
    }

    /// Takes every count `later` reports (Anthropic's counts are cumulative).
    pub fn update(&mut self, later: &Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }
}

/// One event of a Messages stream; its SSE event name is [`StreamEvent::name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    MessageStart { message: MessageResponse<'a> },
    ContentBlockStart { index: u64, content_block: ContentBlock<'a> },
    Ping,
    ContentBlockDelta { index: u64, delta: BlockDelta<'a> },
    ContentBlockStop { index: u64 },
    MessageDelta { delta: MessageDelta<'a>, usage: Usage },
    MessageStop,
    Error { error: ErrorDetail<'a> },
}

impl StreamEvent<'_> {
    /// The SSE event name, the same as its `type`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// What a `content_block_delta` adds to its block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta<'a> {
    TextDelta {
        text: Cow<'a, str>,
    },
    /// A piece of a tool_use block's input, as JSON text.
    InputJsonDelta {
        partial_json: Cow<'a, str>,
    },
    /// A piece of a thinking block's text.
    ThinkingDelta {
        thinking: Cow<'a, str>,
    },
    /// A thinking block's signature, sent whole just before the block stops.
    SignatureDelta {
        signature: Cow<'a, str>,
    },
    /// citations_delta, ...
    #[serde(untagged)]
    Other(Map<String, Value>),
}

/// The message-level change of a `message_delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDelta<'a> {
    #[serde(default)]
    pub stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stop_sequence: Option<Cow<'a, str>>,
}

/// An error: the `error` of an error body (`{"type": "error", "error": ...}`) or event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail<'a> {
    /// `invalid_request_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: Cow<'a, str>,
    pub message: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_blocks_and_known_blocks_of_another_shape_pass_through() {
        let content = json!([
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "image", "source": 5},
            {"type": "server_tool_use", "id": "x"},
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "18C"}]}
        ]);
        let read: Content = serde_json::from_value(content.clone()).unwrap();
        let Content::Blocks(blocks) = &read else { panic!("blocks: {read:?}") };
        assert!(matches!(&blocks[0], ContentBlock::Text { cache_control: Some(_), .. }));
        assert!(
            matches!(&blocks[1], ContentBlock::Thinking { thinking, signature } if thinking == "hmm" && signature == "s")
        );
        assert!(matches!(&blocks[2], ContentBlock::Other(m) if m["source"] == 5), "{:?}", blocks[2]);
        assert!(matches!(&blocks[3], ContentBlock::Other(m) if m["id"] == "x"));
        assert!(matches!(&blocks[4], ContentBlock::ToolResult { content: Content::Blocks(_), .. }));
        assert_eq!(serde_json::to_value(&read).unwrap(), content);
    }

    #[test]
    fn events_are_named_by_their_type() {
        let events = [
            StreamEvent::Ping,
            StreamEvent::MessageStop,
            StreamEvent::ContentBlockStop { index: 2 },
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: BlockDelta::InputJsonDelta { partial_json: Cow::Borrowed("{") },
            },
            StreamEvent::ContentBlockDelta { index: 1, delta: BlockDelta::SignatureDelta { signature: "sig".into() } },
            StreamEvent::MessageDelta { delta: MessageDelta::default(), usage: Usage::new(1, 2) },
        ];
        for event in events {
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(value["type"], event.name(), "{value}");
            assert_eq!(serde_json::from_value::<StreamEvent>(value).unwrap(), event);
        }
    }

    #[test]
    fn later_usage_replaces_only_what_it_reports() {
        let mut usage = Usage { cache_read_input_tokens: Some(10), ..Usage::new(4, 1) };
        usage.update(&Usage { output_tokens: Some(30), ..Usage::default() });
        assert_eq!(usage, Usage { cache_read_input_tokens: Some(10), ..Usage::new(4, 30) });
    }
}
