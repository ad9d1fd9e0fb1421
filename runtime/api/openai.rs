//! OpenAI's wire bodies: the chat, completion and embedding requests, and the chat answer and
//! its stream chunks, as serde types. Unknown fields stay in `extra` maps, so what a newer
//! client or upstream sends passes through.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message; `content` is a string, a list of parts, or null (tool-calling turns).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// The message's text: the string content, or its text parts joined.
    pub fn text(&self) -> String {
        text_of(self.content.as_ref())
    }

    /// The `thinking_blocks` of an assistant message handed back (none when absent).
    pub fn thinking_blocks(&self) -> serde_json::Result<Vec<ThinkingBlock>> {
        match self.extra.get("thinking_blocks") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(blocks) => Vec::<ThinkingBlock>::deserialize(blocks),
        }
    }
}

/// The text in a content value: a string, or the `text` of each part of a list.
pub fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    /// A string, a list of strings, or token arrays.
    #[serde(default)]
    pub prompt: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    /// A string, a list of strings, or token arrays.
    pub input: Value,
    /// `float` (default) or `base64` (what the OpenAI Python SDK asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbeddingRequest {
    /// Each input as text: strings as written, token arrays as their numbers joined.
    pub fn inputs(&self) -> Vec<String> {
        fn one(v: &Value) -> String {
            match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        }
        match &self.input {
            Value::Array(items) if items.iter().all(Value::is_number) => vec![one(&self.input)],
            Value::Array(items) => items.iter().map(one).collect(),
            other => vec![one(other)],
        }
    }
}

/// Serde helper for `Option<Option<T>>` fields that tell an absent field (`None`) from an
/// explicit `null` (`Some(None)`): with `#[serde(default, deserialize_with = "nullable")]` and
/// `skip_serializing_if = "Option::is_none"`, what was absent stays absent and a `null` stays.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Serde helper for an `Arc<str>` read in one allocation (serde's own reads a `String`, then
/// copies it into the `Arc`).
pub fn shared_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Arc<str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E>(self, text: &str) -> Result<Arc<str>, E> {
            Ok(Arc::from(text))
        }
    }
    d.deserialize_str(Text)
}

/// A `chat.completion` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub system_fingerprint: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One choice of a whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub logprobs: Option<Option<Value>>,
    /// `stop`, `length`, `tool_calls`, `content_filter` (null while unknown).
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The assistant's message of a whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub content: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub refusal: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The model's thinking as text (litellm's name for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The thinking a later turn must hand back, signed by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AssistantMessage {
    /// An assistant message of `content` and `tool_calls`, with no refusal and no thinking.
    pub fn new(content: Option<String>, tool_calls: Option<Vec<ToolCall>>) -> AssistantMessage {
        AssistantMessage {
            role: "assistant".into(),
            content: Some(content),
            refusal: Some(None),
            tool_calls,
            reasoning_content: None,
            thinking_blocks: None,
            extra: Map::new(),
        }
    }

    /// With the thinking the provider returned (none of either is left out).
    pub fn thinking(mut self, text: String, blocks: Vec<ThinkingBlock>) -> AssistantMessage {
        self.reasoning_content = (!text.is_empty()).then_some(text);
        self.thinking_blocks = (!blocks.is_empty()).then_some(blocks);
        self
    }
}

/// A block of thinking in litellm's shape (`thinking_blocks`): what a provider signed, to be
/// handed back unchanged in the assistant turn it came with. In a stream, a block comes in
/// pieces: its text, then its signature alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Thinking the provider withheld, encrypted.
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    /// A block of another kind, as it came (read leniently: an upstream's new kind never fails
    /// an answer).
    #[serde(untagged)]
    Other(Map<String, Value>),
}

impl ThinkingBlock {
    /// A thinking block's text, unsigned (or a piece of it, in a stream).
    pub fn text(thinking: impl Into<String>) -> ThinkingBlock {
        ThinkingBlock::Thinking { thinking: thinking.into(), signature: None }
    }

    /// A signed thinking block (in a stream, the signature with empty text).
    pub fn signed(thinking: impl Into<String>, signature: impl Into<String>) -> ThinkingBlock {
        ThinkingBlock::Thinking { thinking: thinking.into(), signature: Some(signature.into()) }
    }
}

/// A function call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

/// A function's name and its arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// Token usage of an answer or a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// How many of the prompt's tokens came from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// How many of the completion's tokens were reasoning (thinking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatUsage {
    /// Prompt and completion counts, with their total.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> ChatUsage {
        ChatUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            ..ChatUsage::default()
        }
    }

    /// With `cached` of the prompt's tokens read from the provider's cache.
    pub fn cached(mut self, cached: u64) -> ChatUsage {
        self.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens: Some(cached), extra: Map::new() });
        self
    }

    /// With `reasoning` of the completion's tokens spent thinking.
    pub fn reasoning(mut self, reasoning: u64) -> ChatUsage {
        let details = CompletionTokensDetails { reasoning_tokens: Some(reasoning), extra: Map::new() };
        self.completion_tokens_details = Some(details);
        self
    }
}

/// One `chat.completion.chunk` of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Shared by every chunk of a stream a translation makes, as `model` is: each would
    /// otherwise copy both.
    #[serde(deserialize_with = "shared_text")]
    pub id: Arc<str>,
    /// `chat.completion.chunk`.
    pub object: Cow<'static, str>,
    pub created: u64,
    #[serde(deserialize_with = "shared_text")]
    pub model: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub system_fingerprint: Option<Option<String>>,
    pub choices: Vec<ChunkChoice>,
    /// Absent, `null` (every chunk but the last when the client asks for usage), or the usage.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub usage: Option<Option<ChatUsage>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatChunk {
    /// Whether this is the usage-only chunk a stream ends with (`choices: []`).
    pub fn is_usage_only(&self) -> bool {
        self.choices.is_empty() && matches!(self.usage, Some(Some(_)))
    }

    /// Its usage, when it carries one.
    pub fn usage(&self) -> Option<&ChatUsage> {
        self.usage.as_ref().and_then(Option::as_ref)
    }
}

/// One choice of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub logprobs: Option<Option<Value>>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a chunk adds to the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub content: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A piece of the model's thinking as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Pieces of the blocks of thinking: text as it comes, then the block's signature alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A piece of a tool call: its id, type and name come first, its arguments in pieces after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

/// A piece of a function call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// A `text_completion` answer, whole or one chunk of a stream (OpenAI uses one shape for both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextCompletion {
    pub id: String,
    /// `text_completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    /// The usage of a whole answer; in a stream, absent, `null` (every chunk but the last when
    /// the client asks for usage), or the usage.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub usage: Option<Option<ChatUsage>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One choice of a `text_completion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub logprobs: Option<Option<Value>>,
    /// `stop` or `length` (null until the last chunk of a stream).
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An embeddings answer: a `list` of `embedding`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingList {
    /// `list`.
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One input's embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// `embedding`.
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

/// An embedding as numbers (`encoding_format: float`), or as base64 of little-endian f32s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f64>),
    Base64(String),
}

/// Token usage of an embeddings answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// A tool the model may call, `{"type": "function", "function": {...}}`, borrowed from the
/// client's request: what the providers that take OpenAI's tool shape (Cohere v2, Ollama) are sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionTool<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionDeclaration<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDeclaration<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a Value>,
}
