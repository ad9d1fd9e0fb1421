//! Cohere's v2 API wire bodies, as serde types: `/v2/chat` (its answer and its SSE events),
//! `/v2/embed`, `/v2/rerank`, the rerank request ferrolite's `/v1/rerank` and `/v2/rerank` take
//! (Cohere's own shape, as litellm exposes it), and Cohere's `{"message"}` error body. A leaf:
//! the translation lives in `providers::cohere`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// Tools as Cohere v2 takes them: OpenAI's shape.
pub use super::openai::{FunctionDeclaration, FunctionTool as Tool};

// ---------------------------------------------------------------------------------------------
// /v2/chat

/// `POST /v2/chat` (streams with `"stream": true`, at the same URL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    /// `REQUIRED` or `NONE` (absent: the model chooses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    /// Nucleus sampling (OpenAI's `top_p`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<Number>,
    pub stream: bool,
    /// Cohere's own parameters the client wrote (`k`, `safety_mode`, `documents`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message: `system`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message<'a> {
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

/// Text, or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<ContentPart<'a>>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl<'a> {
    pub url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// A call the assistant made, handed back: its arguments stay JSON text, as OpenAI's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: CalledFunction<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalledFunction<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

/// `{"type": "json_object"}`, with a `json_schema` to follow when one is given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<&'a Value>,
}

/// A whole `/v2/chat` answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: Option<String>,
    /// `COMPLETE`, `STOP_SEQUENCE`, `MAX_TOKENS`, `TOOL_CALL`, `ERROR`, `TIMEOUT`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub message: Option<AnswerMessage>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnswerMessage {
    #[serde(default)]
    pub content: Option<Vec<AnswerContent>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<AnswerToolCall>>,
    /// What the model says it will do with its tools (not passed on).
    #[serde(default)]
    pub tool_plan: Option<String>,
}

/// A content item: `{"type": "text", "text"}` or `{"type": "thinking", "thinking"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnswerContent {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub thinking: Option<String>,
}

/// A tool call of an answer, or (in a stream) a piece of one.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnswerToolCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<AnswerFunction>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnswerFunction {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// Token counts: what was billed, and what the model saw (`tokens`, read first).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub billed_units: Option<Units>,
    #[serde(default)]
    pub tokens: Option<Units>,
}

/// Counts come as JSON numbers that may be written `12.0`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Units {
    #[serde(default)]
    pub input_tokens: Option<f64>,
    #[serde(default)]
    pub output_tokens: Option<f64>,
}

/// One SSE event of a `/v2/chat` stream, by its `type`; the ones the translation does not read
/// (`message-start`, `content-start`, `citation-*`, ...) are `Other`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StreamEvent {
    ContentDelta {
        #[serde(default)]
        delta: Option<ContentDeltaBody>,
    },
    ToolCallStart {
        #[serde(default)]
        delta: Option<ToolCallDeltaBody>,
    },
    ToolCallDelta {
        #[serde(default)]
        delta: Option<ToolCallDeltaBody>,
    },
    MessageEnd {
        #[serde(default)]
        delta: Option<MessageEndBody>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentDeltaBody {
    #[serde(default)]
    pub message: Option<ContentDeltaMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentDeltaMessage {
    #[serde(default)]
    pub content: Option<AnswerContent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolCallDeltaBody {
    #[serde(default)]
    pub message: Option<ToolCallDeltaMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolCallDeltaMessage {
    #[serde(default)]
    pub tool_calls: Option<AnswerToolCall>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageEndBody {
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Set when the stream ends in a failure.
    #[serde(default)]
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// /v2/embed

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedRequest<'a> {
    pub model: &'a str,
    pub texts: Vec<String>,
    /// `search_document`, `search_query`, `classification` or `clustering`.
    pub input_type: Cow<'a, str>,
    pub embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimension: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<&'a str>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbedResponse {
    pub embeddings: EmbeddingsByType,
    #[serde(default)]
    pub meta: Option<Meta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsByType {
    #[serde(default)]
    pub float: Option<Vec<Vec<f32>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub billed_units: Option<Units>,
}

// ---------------------------------------------------------------------------------------------
// /v2/rerank

/// The rerank request ferrolite's rerank routes take (Cohere's v1 shape, which litellm serves).
#[derive(Debug, Clone, Deserialize)]
pub struct RerankQuery {
    pub model: String,
    pub query: String,
    /// Strings, or objects (their `text`, or the fields `rank_fields` names).
    pub documents: Vec<Value>,
    #[serde(default)]
    pub top_n: Option<u64>,
    #[serde(default)]
    pub return_documents: Option<bool>,
    #[serde(default)]
    pub rank_fields: Option<Vec<String>>,
    #[serde(default)]
    pub max_chunks_per_doc: Option<u64>,
    #[serde(default)]
    pub max_tokens_per_doc: Option<u64>,
}

/// `POST /v2/rerank`: documents are text in v2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RerankRequest<'a> {
    pub model: &'a str,
    pub query: &'a str,
    pub documents: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_n: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_doc: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RerankResponse {
    #[serde(default)]
    pub id: Option<String>,
    pub results: Vec<RerankResult>,
    #[serde(default)]
    pub meta: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RerankResult {
    pub index: usize,
    pub relevance_score: f64,
}

/// A failure: `{"id": "...", "message": "invalid api token"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}
