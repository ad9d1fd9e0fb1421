//! Ollama's native API wire bodies, as serde types: `/api/chat`, `/api/generate` and
//! `/api/embed` requests, their answers and stream lines (one type reads both endpoints'
//! lines: `/api/chat` puts the text in `message`, `/api/generate` in `response`), and the
//! `{"error": "..."}` body of a failure. A leaf: the translation lives in `providers::ollama`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Tools as Ollama takes them: OpenAI's shape.
pub use super::openai::{FunctionDeclaration, FunctionTool as Tool};

/// `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    /// `"json"`, or a JSON Schema the answer must follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Sampling and runtime options (`num_predict`, `temperature`, `num_ctx`, ...).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    /// Always written: Ollama streams unless told not to.
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<bool>,
}

/// One message of a chat: `system`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message<'a> {
    pub role: &'static str,
    pub content: Cow<'a, str>,
    /// Images as base64, without a data-URL prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall<'a>>,
    /// On a `tool` message: the function whose result it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<&'a str>,
}

/// A function the model called (or, handed back, had called).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall<'a> {
    pub function: CalledFunction<'a>,
}

/// A called function's name and its arguments as a JSON object (not text, as OpenAI has them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalledFunction<'a> {
    pub name: &'a str,
    pub arguments: Value,
}

/// `POST /api/generate`: one prompt, the model's own template around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerateRequest<'a> {
    pub model: &'a str,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<bool>,
}

/// A whole answer or one stream line, of `/api/chat` or `/api/generate`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Answer {
    /// `/api/chat`'s piece of the message.
    #[serde(default)]
    pub message: Option<AnswerMessage>,
    /// `/api/generate`'s piece of the text.
    #[serde(default)]
    pub response: Option<String>,
    /// `/api/generate`'s piece of the thinking.
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length`, `load`, `unload`.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Prompt tokens (absent when the whole prompt came from Ollama's cache).
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Tokens generated.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// A failure inside a stream.
    #[serde(default)]
    pub error: Option<String>,
}

/// The assistant's message (or a piece of it) in an `/api/chat` answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnswerMessage {
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<AnswerToolCall>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AnswerToolCall {
    pub function: AnswerFunction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AnswerFunction {
    pub name: String,
    /// An object (some builds send the JSON as text).
    #[serde(default)]
    pub arguments: Value,
}

/// `POST /api/embed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedRequest<'a> {
    pub model: &'a str,
    pub input: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// `/api/embed`'s answer: one vector per input.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbedResponse {
    pub embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
}

/// A failure: `{"error": "model \"x\" not found, try pulling it first"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
