//! Providers: how each upstream is spoken to. Which provider a deployment has, its auth scheme,
//! the parameters it honours and the translators it runs are data (`providers.yaml`, compiled
//! into `catalogue::providers`); this module is the code those translators name, one module per
//! provider, and the one place a catalogue translator selects its code ([`serve`]).
//!
//! Providers sit below the router and above the transport: a call brings everything it needs
//! (the upstream client, limits, the deployment, the session's settings and log) as arguments.

pub mod anthropic;
pub mod auth;
pub mod bedrock;
pub mod bedrock_embedding;
pub mod chat;
pub mod cohere;
pub mod count_tokens;
pub mod deployment;
pub mod gemini;
pub mod google_auth;
pub mod health;
pub mod messages;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod reasoning;
pub mod responses;
pub mod translate;
pub mod vertex;

pub use crate::catalogue::Provider;
pub use deployment::Deployment;

use crate::catalogue::{ProviderRoute, Route, Translator};
use crate::exchange::{ApiError, Outcome, Payload};
use crate::manifest::LitellmSettings;
use crate::observability::session_log::LogBuffer;
use crate::transport::UpstreamClient;
use axum::http::HeaderMap;
use std::sync::Arc;

/// One request on its way to a deployment.
pub struct ProviderCall<'a> {
    /// The client every upstream call goes through.
    pub upstream: &'a UpstreamClient,
    /// Largest upstream answer read whole into memory.
    pub answer_limit: usize,
    /// The body limit of the route's family (a multipart upload streamed on).
    pub body_limit: usize,
    pub deployment: &'a Deployment,
    /// The session's `litellm_settings` (`drop_params`, `debug`).
    pub settings: &'a LitellmSettings,
    /// The session's log, for what a provider notes (dropped parameters, a stream's failure).
    pub logs: &'a Arc<LogBuffer>,
    pub route: &'static Route,
    pub provider_route: &'static ProviderRoute,
    pub params: &'a [(&'static str, String)],
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub payload: Payload,
    /// Whether the request asks for a stream (`stream: true`), read once by the router.
    pub stream: bool,
}

/// Runs the code the catalogue's translator names for this (route, provider).
///
/// The match is exhaustive over the generated `Translator` enum, so a translator named in
/// `endpoints/` that no code implements fails the build here; build.rs has already checked that
/// each is one its provider runs (`providers.yaml`).
pub async fn serve(call: ProviderCall<'_>) -> Result<Outcome, ApiError> {
    match call.provider_route.translate {
        Translator::Passthrough => openai::forward(call).await,
        Translator::AnthropicChat => chat::serve_openai(call, &anthropic::PROVIDER).await,
        Translator::GeminiChat => chat::serve_openai(call, &gemini::PROVIDER).await,
        Translator::BedrockChat => chat::serve_openai(call, &bedrock::PROVIDER).await,
        Translator::BedrockEmbedding => bedrock_embedding::serve(call).await,
        Translator::MessagesViaChat => {
            let provider = chat_provider(call.deployment.provider).ok_or_else(|| {
                ApiError::not_built(format!("/v1/messages for {} deployments", call.deployment.provider))
            })?;
            messages::serve(call, provider).await
        }
        Translator::ResponsesOrChat => responses::serve_openai(call).await,
        Translator::ResponsesViaChat => {
            let provider = chat_provider(call.deployment.provider).ok_or_else(|| {
                ApiError::not_built(format!("/v1/responses for {} deployments", call.deployment.provider))
            })?;
            responses::serve(call, provider).await
        }
        Translator::MockResponses => responses::serve_mock(call),
        Translator::GeminiEmbedding => gemini::serve_embedding(call).await,
        Translator::CohereChat => chat::serve_openai(call, &cohere::PROVIDER).await,
        Translator::CohereEmbedding => cohere::serve_embedding(call).await,
        Translator::CohereRerank => cohere::serve_rerank(call).await,
        Translator::VertexGeminiChat => chat::serve_openai(call, &vertex::GEMINI).await,
        Translator::VertexAnthropicChat => chat::serve_openai(call, &vertex::ANTHROPIC).await,
        Translator::OllamaChat => chat::serve_openai(call, &ollama::CHAT).await,
        Translator::OllamaGenerate => chat::serve_openai(call, &ollama::GENERATE).await,
        Translator::OllamaEmbedding => ollama::serve_embedding(call).await,
        translator @ (Translator::CountTokensAnthropic
        | Translator::CountTokensGemini
        | Translator::CountTokensOpenai
        | Translator::CountTokensEstimate) => count_tokens::serve(call, translator).await,
        translator @ (Translator::MockChat
        | Translator::MockCompletion
        | Translator::MockMessages
        | Translator::MockEmbedding) => mock::serve(call, translator),
    }
}

/// The chat translation of each provider that has one (what `/v1/messages` and health probes
/// speak to a deployment).
pub fn chat_provider(provider: Provider) -> Option<&'static dyn translate::ChatProvider> {
    match provider {
        Provider::OpenAi | Provider::Azure => Some(&openai::CHAT),
        Provider::Anthropic => Some(&anthropic::PROVIDER),
        Provider::Gemini => Some(&gemini::PROVIDER),
        Provider::Bedrock => Some(&bedrock::PROVIDER),
        Provider::Cohere => Some(&cohere::PROVIDER),
        Provider::Ollama => Some(&ollama::GENERATE),
        Provider::VertexAi => Some(&vertex::GEMINI),
        Provider::VertexAiAnthropic => Some(&vertex::ANTHROPIC),
        Provider::OllamaChat => Some(&ollama::CHAT),
        Provider::Mock => None,
    }
}
