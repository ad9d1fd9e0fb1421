//! The wire bodies of token counting: the providers' counting calls (Anthropic's
//! `POST /v1/messages/count_tokens`, Gemini's `:countTokens`, OpenAI's
//! `POST /responses/input_tokens`) and the answers of ferrolite's two counting routes, which
//! are Anthropic's and OpenAI's own.

use super::gemini::GenerateContentRequest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Messages prompt as Anthropic's count_tokens takes it (and as a client sends it to
/// `/v1/messages/count_tokens`). The parts ferrolite reads are named; anything else a newer
/// client sends (`mcp_servers`, `output_config`, ...) stays in `extra` and goes upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesCountRequest {
    pub model: String,
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Members of a Messages request that only steer generation: count_tokens refuses them
/// ("Extra inputs are not permitted"), and they change no input token.
pub const GENERATION_ONLY: &[&str] =
    &["max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata", "service_tier"];

impl MessagesCountRequest {
    /// The request without the members count_tokens refuses.
    pub fn without_generation_settings(mut self) -> MessagesCountRequest {
        self.extra.retain(|key, _| !GENERATION_ONLY.contains(&key.as_str()));
        self
    }
}

/// Anthropic's count_tokens answer, and the answer of `/v1/messages/count_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesTokenCount {
    pub input_tokens: u64,
}

/// OpenAI's `/responses/input_tokens` answer, and the answer of `/v1/responses/input_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokenCount {
    /// Always `response.input_tokens` (read leniently: a compatible server may leave it out).
    #[serde(default)]
    pub object: String,
    pub input_tokens: u64,
}

impl InputTokenCount {
    pub const OBJECT: &'static str = "response.input_tokens";

    pub fn new(input_tokens: u64) -> InputTokenCount {
        InputTokenCount { object: Self::OBJECT.to_owned(), input_tokens }
    }
}

/// Gemini's `models/{model}:countTokens` body, counting a whole `generateContent` request (the
/// bare `contents` form would leave out the system instruction and the tools).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeminiCountRequest<'a> {
    pub generate_content_request: CountedContent<'a>,
}

/// A `generateContent` request with the model it is for (`models/NAME`), which countTokens
/// requires inside `generateContentRequest`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountedContent<'a> {
    pub model: String,
    #[serde(flatten)]
    pub request: GenerateContentRequest<'a>,
}

/// Gemini's countTokens answer. Proto3 JSON leaves zero counts out, so a missing
/// `totalTokens` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeminiTokenCount {
    #[serde(default)]
    pub total_tokens: u64,
}
