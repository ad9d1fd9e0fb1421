//! OpenAI's Responses API (`POST /v1/responses`) in front of every provider that does not speak
//! it: Anthropic, Gemini, Bedrock, mock, and OpenAI-compatible servers with chat completions
//! only. The request becomes a chat request (`request.rs`), runs through the deployment's chat
//! translation (`providers::chat::execute`, so parameters, errors and usage behave as chat's),
//! and the answer comes back as a `response` (`answer.rs`) or as the Responses event stream
//! (`events.rs`; its most frequent events written by `delta_frames.rs`). OpenAI deployments
//! that have the route are passed through untouched.
//! `reasoning.effort` rides along as chat's `reasoning_effort`; the thinking that comes back is
//! `reasoning` items whose `encrypted_content` (`reasoning.rs`) brings it back to the provider.

pub mod answer;
mod delta_frames;
pub mod events;
pub mod reasoning;
pub mod request;

use super::auth::Scrubber;
use super::chat::{execute, front_frames, usage_of, ChatOutput, FrontEvents, StreamEnds};
use super::translate::ChatProvider;
use super::ProviderCall;
use crate::api::openai::{ChatChunk, ChatRequest};
use crate::api::responses::ResponsesRequest;
use crate::catalogue::Operation;
use crate::exchange::{ApiError, Outcome, Payload};
use crate::observability::session_log::LogType;
use crate::streaming::sse;
use answer::Shell;
use axum::body::Bytes;
use axum::response::IntoResponse;
use events::ResponsesEvents;
use serde::Deserialize;

/// The request, its chat translation, and the shell of its response.
struct Prepared {
    chat: ChatRequest,
    shell: Shell,
}

fn prepare(call: &ProviderCall<'_>) -> Result<Prepared, ApiError> {
    let Payload::Json(body) = &call.payload else {
        return Err(ApiError::bad_request("this route takes a JSON body"));
    };
    let req = ResponsesRequest::deserialize(body.as_ref())
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?;
    // The gateway's store resolves the ids it knows before routing (`apps::responses`); one
    // left here is one it does not know, kept for an OpenAI deployment's own store.
    if let Some(id) = &req.previous_response_id {
        return Err(ApiError::not_found(format!(
            "previous_response_id {id:?}: no such response is stored in this workspace, and {} deployment {} has no store of its own",
            call.deployment.provider, call.deployment.id
        ))
        .with_param("previous_response_id")
        .with_code("response_not_found"));
    }
    let settings = call.settings;
    let signer = reasoning::signer(call.deployment.provider);
    let translated = request::to_chat_request(&req, settings.drop_params, signer)?;
    if !translated.dropped.is_empty() && (settings.debug || settings.detailed_debug) {
        let d = call.deployment;
        call.logs.push(
            LogType::Log,
            format!("drop_params: dropped {} for {} deployment {}", translated.dropped.join(", "), d.provider, d.id),
        );
    }
    let shell = Shell::new(&req, body, translated.names, &call.deployment.upstream_model, signer);
    Ok(Prepared { chat: translated.chat, shell })
}

/// `POST /v1/responses` through the deployment's chat translation.
pub async fn serve(call: ProviderCall<'_>, provider: &dyn ChatProvider) -> Result<Outcome, ApiError> {
    let Prepared { chat, shell } = prepare(&call)?;
    match execute(&call, provider, chat).await? {
        ChatOutput::Complete(chat) => {
            let usage = chat.usage.as_ref().map(usage_of);
            let body = answer::to_response(&chat, &shell);
            Ok(Outcome { response: axum::Json(body).into_response(), deployment: None, usage })
        }
        ChatOutput::Stream(chunks) => {
            let ends = StreamEnds { logs: call.logs.clone(), scrubber: Scrubber::of(call.deployment) };
            Ok(Outcome {
                response: sse::response(front_frames(chunks, ResponsesEvents::new(shell), ends)),
                deployment: None,
                usage: None,
            })
        }
    }
}

/// `POST /v1/responses` on an OpenAI-compatible deployment: passed through, unless it has chat
/// completions only, then through its chat route.
pub async fn serve_openai(mut call: ProviderCall<'_>) -> Result<Outcome, ApiError> {
    if !call.deployment.chat_only {
        return super::openai::forward(call).await;
    }
    let provider = call.deployment.provider;
    call.provider_route = Operation::ChatCompletions
        .route()
        .provider_route(provider)
        .ok_or_else(|| ApiError::internal(format!("the catalogue gives {provider} no chat completions route")))?;
    serve(call, &super::openai::CHAT).await
}

/// A mock deployment's answer, in the Responses API's shape.
pub fn serve_mock(call: ProviderCall<'_>) -> Result<Outcome, ApiError> {
    let Prepared { chat, shell } = prepare(&call)?;
    let (chat_answer, chunks) = super::mock::chat_answer(call.deployment, &chat);
    let usage = super::mock::chat_usage(&chat, call.deployment.mock_response.as_deref().unwrap_or_default());
    let response = match chunks {
        None => axum::Json(answer::to_response(&chat_answer, &shell)).into_response(),
        Some(chunks) => {
            let mut events = ResponsesEvents::new(shell);
            let mut frames = events.start();
            for chunk in &chunks {
                frames.extend(events.push(chunk));
            }
            frames.extend(events.finish());
            sse::response(futures::stream::iter(frames.into_iter().map(Ok)))
        }
    };
    Ok(Outcome { response, deployment: None, usage: Some(usage) })
}

/// Chat chunks as Responses events, each sent as soon as its chunk arrives.
impl FrontEvents for ResponsesEvents {
    fn start(&mut self) -> Vec<Bytes> {
        ResponsesEvents::start(self)
    }

    fn chunk(&mut self, chunk: &ChatChunk) -> Vec<Bytes> {
        self.push(chunk)
    }

    fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        ResponsesEvents::fail(self, e)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        ResponsesEvents::finish(self)
    }
}
