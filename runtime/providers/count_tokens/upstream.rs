//! The providers' counting calls, built from a counting request, and their answers read: pure
//! functions, no network. A Responses prompt reaches Anthropic and Gemini through the same
//! translations as `POST /v1/responses` (to chat, then to the provider's request), so a count
//! covers what the real request would send.

use super::Shape;
use crate::api::anthropic::MessagesRequest;
use crate::api::count_tokens::{
    CountedContent, GeminiCountRequest, GeminiTokenCount, InputTokenCount, MessagesCountRequest, MessagesTokenCount,
};
use crate::api::openai::ChatRequest;
use crate::api::responses::ResponsesRequest;
use crate::exchange::{parse_json, ApiError};
use crate::providers::translate::UpstreamRequest;
use crate::providers::{anthropic, gemini, messages, responses, Deployment};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

fn invalid(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("invalid request: {e}"))
}

/// Anthropic's `POST /v1/messages/count_tokens` for the prompt. A client's `anthropic-beta`
/// goes along: a beta feature in the prompt counts only with its header.
pub fn anthropic(
    shape: Shape,
    body: &Value,
    d: &Deployment,
    url: String,
    client: &HeaderMap,
) -> Result<UpstreamRequest, ApiError> {
    let count = match shape {
        Shape::Messages => MessagesCountRequest::deserialize(body).map_err(invalid)?,
        Shape::Responses => {
            let chat = responses_chat(body, d)?;
            let request = anthropic::messages_body(&chat, d)?;
            // The same members, read back as the count's: what count_tokens refuses is dropped below.
            serde_json::to_value(&request)
                .and_then(MessagesCountRequest::deserialize)
                .map_err(|e| ApiError::internal(format!("the Anthropic request of a count: {e}")))?
        }
    };
    let count = MessagesCountRequest { model: d.upstream_model.clone(), ..count }.without_generation_settings();
    let request = UpstreamRequest::post_json(url, &count);
    Ok(match client.get("anthropic-beta").and_then(|v| v.to_str().ok()) {
        Some(beta) => request.header("anthropic-beta", beta),
        None => request,
    })
}

/// Gemini's `POST /v1beta/models/{model}:countTokens` for the prompt, as a whole
/// `generateContentRequest` so the system instruction and the tools count.
pub fn gemini(shape: Shape, body: &Value, d: &Deployment, url: String) -> Result<UpstreamRequest, ApiError> {
    let chat = match shape {
        Shape::Messages => messages::to_chat_request(&messages_request(body)?),
        Shape::Responses => responses_chat(body, d)?,
    };
    let mut request = gemini::generate_content_body(&chat, &d.upstream_model)?;
    // Generation settings count no input token (and a Messages prompt's are placeholders).
    request.generation_config = None;
    let count = GeminiCountRequest {
        generate_content_request: CountedContent { model: format!("models/{}", d.upstream_model), request },
    };
    Ok(UpstreamRequest::post_json(url, &count))
}

/// OpenAI's `POST /responses/input_tokens`: the client's request as sent, for the deployment's model.
pub fn openai(body: &Value, d: &Deployment, url: String) -> UpstreamRequest {
    let mut fields: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    fields.insert("model".into(), Value::String(d.upstream_model.clone()));
    UpstreamRequest::post_json(url, &fields)
}

/// A count prompt as a Messages request, which the chat translation reads. count_tokens takes
/// no `max_tokens`, which a Messages request must have; counting never reads it.
fn messages_request(body: &Value) -> Result<MessagesRequest<'static>, ApiError> {
    let mut request = body.clone();
    if let Value::Object(members) = &mut request {
        members.entry("max_tokens").or_insert(Value::from(anthropic::DEFAULT_MAX_TOKENS));
    }
    MessagesRequest::deserialize(request).map_err(invalid)
}

/// A Responses prompt as the chat request `POST /v1/responses` would send.
fn responses_chat(body: &Value, d: &Deployment) -> Result<ChatRequest, ApiError> {
    let request = ResponsesRequest::deserialize(body).map_err(invalid)?;
    // Hosted tools run only on OpenAI: the count leaves them out rather than refusing it.
    let signer = responses::reasoning::signer(d.provider);
    Ok(responses::request::to_chat_request(&request, true, signer)?.chat)
}

/// The count of Anthropic's answer.
pub fn read_anthropic(answer: &[u8]) -> Result<u64, serde_json::Error> {
    parse_json::<MessagesTokenCount>(answer).map(|c| c.input_tokens)
}

/// The count of Gemini's answer.
pub fn read_gemini(answer: &[u8]) -> Result<u64, serde_json::Error> {
    parse_json::<GeminiTokenCount>(answer).map(|c| c.total_tokens)
}

/// The count of OpenAI's answer.
pub fn read_openai(answer: &[u8]) -> Result<u64, serde_json::Error> {
    parse_json::<InputTokenCount>(answer).map(|c| c.input_tokens)
}
