//! Token counting, `POST /v1/messages/count_tokens` and `POST /v1/responses/input_tokens`:
//! asked of the deployment's provider where it has a counting call (Anthropic's count_tokens,
//! Gemini's countTokens, OpenAI's input_tokens), estimated by ferrolite's tokenizer everywhere
//! else. A provider's call that fails (down, slow, any non-2xx, an answer without a count) is
//! answered with the estimate too: a count is advice, and should not fail for the upstream's
//! sake. [`SOURCE_HEADER`] says which answered; a fallback names its cause in
//! [`FALLBACK_HEADER`] and in the session log.
//!
//! A count reports no usage, so the router books no tokens and no cost for it.

mod estimate;
mod upstream;

use super::translate::{upstream_url, ChatProvider as _, UpstreamRequest};
use super::ProviderCall;
use crate::api::count_tokens::{InputTokenCount, MessagesTokenCount};
use crate::catalogue::{Operation, Translator};
use crate::exchange::{ApiError, Outcome, Payload};
use crate::observability::session_log::LogType;
use crate::transport::ReadError;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use std::time::Duration;

/// Where a count came from: `provider` (the deployment's provider counted) or `estimate`.
pub const SOURCE_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-token-count");
/// Why a count is an estimate although the provider has a counting call: its failure, as
/// `STATUS CODE` (`500 api_error`, `502 upstream_unreachable`, `504 timeout`, ...).
pub const FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-token-count-fallback");

/// Longest wait for a provider's count before the estimate answers instead.
const COUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// The request and answer shapes of the two counting routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An Anthropic Messages prompt, answered `{"input_tokens"}`.
    Messages,
    /// A Responses request, answered `{"object": "response.input_tokens", "input_tokens"}`.
    Responses,
}

impl Shape {
    fn of(op: Operation) -> Result<Shape, ApiError> {
        match op {
            Operation::CountTokens => Ok(Shape::Messages),
            Operation::CountInputTokens => Ok(Shape::Responses),
            other => Err(ApiError::internal(format!("the catalogue names a token counter for {}", other.as_str()))),
        }
    }

    fn answer(self, input_tokens: u64) -> Response {
        match self {
            Shape::Messages => Json(MessagesTokenCount { input_tokens }).into_response(),
            Shape::Responses => Json(InputTokenCount::new(input_tokens)).into_response(),
        }
    }
}

/// Who counts for a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Anthropic,
    Gemini,
    OpenAi,
    Estimate,
}

/// Serves a counting route with the catalogue's counting translator for the deployment.
pub async fn serve(call: ProviderCall<'_>, translator: Translator) -> Result<Outcome, ApiError> {
    let shape = Shape::of(call.route.op)?;
    let Payload::Json(body) = &call.payload else {
        return Err(ApiError::bad_request("this route takes a JSON body"));
    };
    let d = call.deployment;
    let counter = match translator {
        Translator::CountTokensAnthropic => Counter::Anthropic,
        Translator::CountTokensGemini => Counter::Gemini,
        // A server with chat completions only has no Responses API to count with.
        Translator::CountTokensOpenai if !d.chat_only => Counter::OpenAi,
        _ => Counter::Estimate,
    };
    if shape == Shape::Responses && counter != Counter::OpenAi {
        no_unknown_previous(body, d)?;
    }
    if counter == Counter::Estimate {
        return Ok(counted(shape.answer(estimate::tokens(shape, body)), None));
    }
    // Built before anything is sent: a prompt the provider's translation refuses is the
    // client's error (400), not a reason to estimate.
    let request = provider_request(&call, counter, shape, body)?;
    let asked = tokio::time::timeout(COUNT_TIMEOUT, ask(&call, counter, request)).await;
    let failure = match asked {
        Ok(Ok(tokens)) => {
            let mut response = shape.answer(tokens);
            response.headers_mut().insert(SOURCE_HEADER, HeaderValue::from_static("provider"));
            return Ok(Outcome { response, deployment: None, usage: None });
        }
        Ok(Err(e)) => super::auth::scrub(e, d),
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            format!("deployment {} did not count within {}s", d.id, COUNT_TIMEOUT.as_secs()),
        )
        .with_code("timeout"),
    };
    call.logs.push(
        LogType::Error,
        format!("token count on deployment {} fell back to the estimate: {}", d.id, failure.message),
    );
    let reason = format!("{} {}", failure.status.as_u16(), failure.code.as_deref().unwrap_or(failure.kind));
    Ok(counted(shape.answer(estimate::tokens(shape, body)), Some(&reason)))
}

/// The gateway's store resolved the `previous_response_id`s it knows before routing (as for
/// `POST /v1/responses`); one left is one only an OpenAI deployment's own store may know.
fn no_unknown_previous(body: &Value, d: &super::Deployment) -> Result<(), ApiError> {
    match body.get("previous_response_id").and_then(Value::as_str) {
        None => Ok(()),
        Some(id) => Err(ApiError::not_found(format!(
            "previous_response_id {id:?}: no such response is stored in this workspace, and {} deployment {} has no store of its own",
            d.provider, d.id
        ))
        .with_param("previous_response_id")
        .with_code("response_not_found")),
    }
}

/// An estimated count's outcome, with the reason it stands in for the provider's, if any.
fn counted(mut response: Response, fallback: Option<&str>) -> Outcome {
    let headers = response.headers_mut();
    headers.insert(SOURCE_HEADER, HeaderValue::from_static("estimate"));
    if let Some(value) = fallback.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert(FALLBACK_HEADER, value);
    }
    Outcome { response, deployment: None, usage: None }
}

/// The provider's counting call for this prompt, credentials not yet on it.
fn provider_request(
    call: &ProviderCall<'_>,
    counter: Counter,
    shape: Shape,
    body: &Value,
) -> Result<UpstreamRequest, ApiError> {
    let d = call.deployment;
    let template = call.provider_route.upstream.ok_or_else(|| {
        ApiError::internal(format!("the catalogue gives {} no counting upstream for {}", d.provider, call.route.path))
    })?;
    let url = upstream_url(d, template.path, call.params)?;
    match counter {
        Counter::Anthropic => upstream::anthropic(shape, body, d, url, call.headers),
        Counter::Gemini => upstream::gemini(shape, body, d, url),
        Counter::OpenAi => Ok(upstream::openai(body, d, url)),
        Counter::Estimate => Err(ApiError::internal("the estimate asks no provider")),
    }
}

/// Sends the counting call and reads the count from a 2xx answer.
async fn ask(call: &ProviderCall<'_>, counter: Counter, request: UpstreamRequest) -> Result<u64, ApiError> {
    let d = call.deployment;
    let response = super::chat::send(call.upstream, request, d, None).await?;
    let status = response.status;
    let body = response.bytes(call.answer_limit).await.map_err(|e| {
        let message = match e {
            ReadError::TooLarge => e.to_string(),
            ReadError::Broken(cause) => format!("reading the count of deployment {}: {cause}", d.id),
        };
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    })?;
    if !status.is_success() {
        return Err(match counter {
            Counter::Anthropic => super::anthropic::PROVIDER.upstream_error(status, &body, d),
            Counter::Gemini => super::gemini::upstream_error(status, &body),
            _ => super::chat::openai_error(status, &body, &d.id),
        });
    }
    let tokens = match counter {
        Counter::Anthropic => upstream::read_anthropic(&body),
        Counter::Gemini => upstream::read_gemini(&body),
        _ => upstream::read_openai(&body),
    };
    tokens.map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("deployment {} answered no count: {e}", d.id))
            .with_code("bad_upstream_answer")
    })
}
