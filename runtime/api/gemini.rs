//! Gemini's generateContent / streamGenerateContent and batchEmbedContents wire bodies, as serde
//! types: the requests ferrolite sends, and the answers, stream events and errors it reads back.
//! A leaf: the translation from and to OpenAI lives in `providers::gemini`.
//!
//! Requests borrow what they pass on from the client's request; the values ferrolite does not
//! interpret (sampling numbers, descriptions) stay the `Value` the client wrote, so Gemini, not
//! ferrolite, judges them as before. Answers borrow their text from the upstream's bytes when it
//! has no escapes, and skip the members the translation does not read. Fields are declared in
//! the order they go on the wire, so a body's keys keep one order.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;

// ---------------------------------------------------------------------------------------------
// generateContent requests

/// `POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent?alt=sse`, which
/// takes the same body).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content<'a>>,
    pub contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig<'a>>,
}

/// A turn of the conversation (`role` is `user` or `model`), or a role-less list of parts: the
/// system instruction, an embedding's input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Cow<'a, str>>,
    pub parts: Vec<Part<'a>>,
}

/// One part of a request's content: what it holds, and (on a model turn handed back) the
/// signature of the thinking that came with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    #[serde(flatten)]
    pub data: PartData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<Cow<'a, str>>,
}

impl<'a> From<PartData<'a>> for Part<'a> {
    fn from(data: PartData<'a>) -> Part<'a> {
        Part { data, thought_signature: None }
    }
}

/// What a part holds: an object with exactly one of these members.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PartData<'a> {
    Text(Cow<'a, str>),
    InlineData(Blob<'a>),
    FileData(FileData<'a>),
    FunctionCall(FunctionCall<'a>),
    FunctionResponse(FunctionResponse<'a>),
}

/// Media sent inline, base64-encoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    pub mime_type: Cow<'a, str>,
    pub data: Cow<'a, str>,
}

/// Media Gemini fetches from a URI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData<'a> {
    pub mime_type: Cow<'a, str>,
    pub file_uri: Cow<'a, str>,
}

/// A function call: sent back in a `model` turn of a request, read in an answer's parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    /// The arguments, a JSON object (an answer's `null` or missing `args` read as `Null`).
    #[serde(default)]
    pub args: Value,
}

/// A tool's result, answering the function call of the same name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionResponse<'a> {
    pub name: Cow<'a, str>,
    pub response: FunctionResult,
}

/// What a `functionResponse` carries: the tool's output, a JSON object or its text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionResult {
    pub content: Value,
}

/// A set of function declarations.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool<'a> {
    pub function_declarations: Vec<FunctionDeclaration<'a>>,
}

/// One function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDeclaration<'a> {
    pub name: Cow<'a, str>,
    /// As the client wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a Value>,
    /// A JSON Schema in Gemini's subset (absent for a function without parameters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `toolConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig<'a> {
    pub function_calling_config: FunctionCallingConfig<'a>,
}

/// Whether and which functions the model must call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig<'a> {
    /// `AUTO`, `NONE` or `ANY`.
    pub mode: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_function_names: Option<Vec<Cow<'a, str>>>,
}

/// `generationConfig`: the sampling parameters, each as the client wrote it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<Cow<'a, str>>,
    /// A JSON Schema in Gemini's subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

/// `thinkingConfig`: a token budget (Gemini 2.5) or a level (Gemini 3), and whether the
/// answer carries thought summaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// generateContent answers and stream events

/// A whole `generateContent` answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse<'a> {
    #[serde(default, borrow)]
    pub candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default, borrow)]
    pub prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
}

/// One `data:` event of `streamGenerateContent?alt=sse`: a piece of the answer, or an error
/// that ends the stream.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEvent<'a> {
    #[serde(default, borrow)]
    pub candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default, borrow)]
    pub prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default, borrow)]
    pub error: Option<ErrorDetail<'a>>,
}

/// One candidate answer (a choice, in OpenAI's words).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate<'a> {
    #[serde(default, borrow)]
    pub content: Option<CandidateContent<'a>>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`...; absent until the candidate ends.
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub finish_reason: Option<Cow<'a, str>>,
    /// Absent on the first candidate of some answers (its position then).
    #[serde(default)]
    pub index: Option<u32>,
}

/// A candidate's content (its `role` is always `model`, and not read).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CandidateContent<'a> {
    #[serde(default, borrow)]
    pub parts: Option<Vec<CandidatePart<'a>>>,
}

/// One part of an answer: text (a thought summary when `thought` is true) or a function call,
/// either with the signature of the thinking behind it. Kinds the translation does not read
/// come with none of these members.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidatePart<'a> {
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default, borrow)]
    pub function_call: Option<FunctionCall<'a>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub thought_signature: Option<Cow<'a, str>>,
}

/// Why a prompt was refused outright.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback<'a> {
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub block_reason: Option<Cow<'a, str>>,
}

/// Token counts of an answer (a stream's last event carries the totals).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: Option<u64>,
    #[serde(default)]
    pub candidates_token_count: Option<u64>,
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    #[serde(default)]
    pub total_token_count: Option<u64>,
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A Google error body: `{"error": {...}}`, or (a stream's, without `alt=sse`) a list of it.
/// The list is tried first: serde would also read a struct from a list, member by position.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ErrorBody<'a> {
    List(#[serde(borrow)] Vec<ErrorEnvelope<'a>>),
    One(#[serde(borrow)] ErrorEnvelope<'a>),
}

impl<'a> ErrorBody<'a> {
    /// The error it describes (the first, for a list).
    pub fn detail(&self) -> Option<&ErrorDetail<'a>> {
        match self {
            ErrorBody::List(envelopes) => envelopes.first().and_then(|e| e.error.as_ref()),
            ErrorBody::One(envelope) => envelope.error.as_ref(),
        }
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ErrorEnvelope<'a> {
    #[serde(default, borrow)]
    pub error: Option<ErrorDetail<'a>>,
}

/// A Google error: its HTTP status as a number, its message, its status name
/// (`INVALID_ARGUMENT`, `UNAVAILABLE`...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ErrorDetail<'a> {
    #[serde(default)]
    pub code: Option<u64>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub message: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub status: Option<Cow<'a, str>>,
}

// ---------------------------------------------------------------------------------------------
// batchEmbedContents

/// `POST /v1beta/models/{model}:batchEmbedContents`: one request per input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchEmbedContentsRequest<'a> {
    pub requests: Vec<EmbedContentRequest<'a>>,
}

/// The embedding of one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedContentRequest<'a> {
    /// `models/{model}`.
    pub model: Cow<'a, str>,
    pub content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<usize>,
}

/// A `batchEmbedContents` answer: an embedding per request, in order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BatchEmbedContentsResponse {
    #[serde(default)]
    pub embeddings: Option<Vec<ContentEmbedding>>,
}

/// One embedding.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ContentEmbedding {
    #[serde(default)]
    pub values: Option<Vec<f32>>,
}

// ---------------------------------------------------------------------------------------------
// Borrowed text

/// A string borrowed from the input when it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

/// An optional string, borrowed where it can be: serde borrows a `Cow<str>` only when it is a
/// field's whole type, not inside an `Option`.
fn optional_text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|text| text.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_text_is_borrowed_unless_escaped() {
        let body = br#"{"candidates": [{"content": {"parts": [{"text": "plain"}, {"text": "a\nb"}]},
            "finishReason": "STOP"}], "modelVersion": "x"}"#;
        let answer: GenerateContentResponse = serde_json::from_slice(body).unwrap();
        let candidate = &answer.candidates.as_deref().unwrap_or_default()[0];
        let parts = candidate.content.as_ref().and_then(|c| c.parts.as_deref()).unwrap_or_default();
        assert!(matches!(parts[0].text, Some(Cow::Borrowed("plain"))));
        assert!(matches!(&parts[1].text, Some(Cow::Owned(text)) if text == "a\nb"));
        assert!(matches!(candidate.finish_reason, Some(Cow::Borrowed("STOP"))));
    }

    #[test]
    fn error_bodies_come_alone_or_listed() {
        let one = br#"{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}"#;
        let listed = br#"[{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}]"#;
        for body in [&one[..], &listed[..]] {
            let parsed: ErrorBody = serde_json::from_slice(body).unwrap();
            let detail = parsed.detail().cloned().unwrap_or_default();
            assert_eq!((detail.code, detail.message.as_deref()), (Some(400), Some("bad")));
            assert_eq!(detail.status.as_deref(), Some("INVALID_ARGUMENT"));
        }
    }

    #[test]
    fn request_parts_are_objects_of_one_member() {
        let content = Content {
            role: Some("model".into()),
            parts: vec![
                PartData::Text("hi".into()).into(),
                Part {
                    data: PartData::FunctionCall(FunctionCall { name: "f".into(), args: serde_json::json!({"a": 1}) }),
                    thought_signature: Some("sig".into()),
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&content).unwrap_or_default(),
            r#"{"role":"model","parts":[{"text":"hi"},{"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"sig"}]}"#
        );
    }
}
