//! Vertex AI: Gemini models (`vertex_ai/gemini-*`) through `generateContent` /
//! `streamGenerateContent?alt=sse`, and Claude (`vertex_ai/claude-*`) through Anthropic's
//! Messages API at `rawPredict` / `streamRawPredict`, both under
//! `/v1/projects/{project}/locations/{location}/publishers/...` at the location's host, with a
//! service account's OAuth token (`google_auth`).
//!
//! The bodies are Gemini's and Anthropic's own, so the translations are theirs; what Vertex
//! changes is here: the model goes in the URL and out of Claude's body, which names
//! `anthropic_version: "vertex-2023-10-16"` instead of a header, and errors are Google's.

use super::anthropic;
use super::gemini;
use super::translate::{error_kind, error_message, ChatProvider, ChunkDecoder, StreamMeta, UpstreamRequest};
use crate::api::anthropic::MessagesRequest;
use crate::api::gemini::ErrorBody;
use crate::api::openai::{ChatCompletion, ChatRequest};
use crate::exchange::{parse_json, ApiError};
use crate::providers::deployment::Deployment;
use axum::http::StatusCode;
use serde::Serialize;
use std::borrow::Cow;

/// The Messages API version Claude on Vertex takes, in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The location a deployment without `vertex_location` runs in (litellm's default).
pub const DEFAULT_LOCATION: &str = "us-central1";

/// The Vertex AI host of a location: regional, or the global endpoint.
pub fn api_base(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// Gemini on Vertex AI.
pub struct VertexGemini;
/// Claude on Vertex AI.
pub struct VertexAnthropic;

pub static GEMINI: VertexGemini = VertexGemini;
pub static ANTHROPIC: VertexAnthropic = VertexAnthropic;

/// A Vertex error: Google's `{"error": {"code", "message", "status"}}`, or (from Claude's
/// publisher) Anthropic's `{"error": {"type", "message"}}`; the status kept.
pub fn upstream_error(status: StatusCode, body: &[u8]) -> ApiError {
    let google: Option<ErrorBody<'_>> = parse_json(body).ok();
    let detail = google.as_ref().and_then(ErrorBody::detail);
    let message = detail.and_then(|d| d.message.as_deref()).map(str::to_owned).unwrap_or_else(|| error_message(body));
    let message = if message.is_empty() { format!("upstream answered {status}") } else { message };
    let error = ApiError::new(status, error_kind(status), format!("vertex_ai: {message}"));
    match detail.and_then(|d| d.status.as_deref()) {
        Some(code) => error.with_code(code),
        None => error,
    }
}

impl ChatProvider for VertexGemini {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        gemini::PROVIDER.chat_request(req, d, url, stream)
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        gemini::PROVIDER.chat_response(body, d)
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        gemini::PROVIDER.stream_decoder(meta)
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        upstream_error(status, body)
    }
}

/// Claude's `rawPredict` body: the Messages body without its model, with Vertex's version.
#[derive(Serialize)]
pub struct RawPredictBody<'a> {
    pub anthropic_version: &'static str,
    #[serde(flatten)]
    pub messages: MessagesRequest<'a>,
}

/// The `rawPredict` / `streamRawPredict` body for an OpenAI chat request.
pub fn raw_predict_body<'a>(
    req: &'a ChatRequest,
    d: &'a Deployment,
    stream: bool,
) -> Result<RawPredictBody<'a>, ApiError> {
    let mut messages = anthropic::messages_body(req, d)?;
    // The URL names the model; an empty one is left out of the body.
    messages.model = Cow::Borrowed("");
    messages.stream = stream.then_some(true);
    Ok(RawPredictBody { anthropic_version: ANTHROPIC_VERSION, messages })
}

impl ChatProvider for VertexAnthropic {
    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        url: String,
        stream: bool,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest::post_json(url, &raw_predict_body(req, d, stream)?))
    }

    fn chat_response(&self, body: &[u8], d: &Deployment) -> Result<ChatCompletion, ApiError> {
        anthropic::PROVIDER.chat_response(body, d)
    }

    fn stream_decoder(&self, meta: StreamMeta) -> Box<dyn ChunkDecoder> {
        anthropic::PROVIDER.stream_decoder(meta)
    }

    fn upstream_error(&self, status: StatusCode, body: &[u8], _d: &Deployment) -> ApiError {
        upstream_error(status, body)
    }
}
