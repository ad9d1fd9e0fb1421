//! Providers: who a deployment's requests go to, and how each one is spoken to.
//!
//! A deployment's provider comes from its `model` string the way litellm decides it: a known
//! prefix (`anthropic/claude-3`, `hosted_vllm/llama`), else the model family (`gpt-*`, `claude-*`),
//! and `mock_response` overrides both. Each provider has a module of its own.

pub mod anthropic;
pub mod bedrock;
pub mod chat;
pub mod gemini;
pub mod messages;
pub mod mock;
pub mod openai;
pub mod translate;
pub mod upstream;

use crate::apps::session::{Deployment, Session};
use crate::catalogue::{ProviderRoute, Route, Translator};
use crate::http::dispatch::{Outcome, Payload};
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::http::HeaderMap;
use ferrolite_codegen::wire_enum;
use std::sync::Arc;

wire_enum! {
    /// The wire protocols ferrolite speaks upstream.
    pub enum Provider {
        /// OpenAI and every OpenAI-compatible server (vLLM, Ollama, LM Studio, Groq, ...).
        OpenAi = "openai",
        /// Azure OpenAI: deployment-path URLs and an `api-key` header.
        Azure = "azure",
        /// Anthropic's Messages API.
        Anthropic = "anthropic",
        /// Google AI Studio's Gemini API.
        Gemini = "gemini",
        /// AWS Bedrock's Converse API.
        Bedrock = "bedrock",
        /// litellm's `mock_response`: answered by ferrolite itself.
        Mock = "mock",
    }
}

/// One request on its way to a deployment.
pub struct ProviderCall<'a> {
    pub state: &'a AppState,
    pub session: &'a Arc<Session>,
    pub deployment: &'a Deployment,
    pub route: &'static Route,
    pub provider_route: &'static ProviderRoute,
    pub params: &'a [(&'static str, String)],
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub payload: Payload,
}

/// Runs the translator the catalogue names for this (route, provider).
///
/// The match is exhaustive over the generated `Translator` enum: a translator named in
/// `endpoints/` that no provider implements fails the build here.
pub async fn serve(call: ProviderCall<'_>) -> Result<Outcome, ApiError> {
    let translator = call.provider_route.translate;
    match translator {
        Translator::Passthrough => openai::forward(call).await,
        Translator::AnthropicChat | Translator::GeminiChat | Translator::BedrockChat => chat::serve_openai(call).await,
        Translator::MessagesViaChat => messages::serve(call).await,
        Translator::GeminiEmbedding => {
            let req: crate::api::openai::EmbeddingRequest = match &call.payload {
                Payload::Json(v) => {
                    <crate::api::openai::EmbeddingRequest as serde::Deserialize>::deserialize(v.as_ref())
                        .map_err(|e| crate::http::error::ApiError::bad_request(format!("invalid request: {e}")))?
                }
                _ => return Err(crate::http::error::ApiError::bad_request("this route takes a JSON body")),
            };
            let d = call.deployment;
            chat::one_shot(
                &call,
                |url| gemini::embedding_request(&req, d, url),
                |body| gemini::embedding_response(body, &req, d),
                |status, body| translate::ChatProvider::upstream_error(&gemini::PROVIDER, status, body, d),
            )
            .await
        }
        Translator::MockChat | Translator::MockCompletion | Translator::MockMessages | Translator::MockEmbedding => {
            mock::serve(call, translator)
        }
    }
}

/// The OpenAI request parameters each provider accepts (litellm's `supported_openai_params`).
pub fn supported_openai_params(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Mock => &[
            "max_tokens",
            "max_completion_tokens",
            "n",
            "stream",
            "stream_options",
            "temperature",
            "top_p",
            "stop",
            "user",
        ],
        other => chat_provider(other).map(|p| p.supported_params()).unwrap_or(&[]),
    }
}

/// The chat translation of each provider that has one.
pub fn chat_provider(provider: Provider) -> Option<&'static dyn translate::ChatProvider> {
    match provider {
        Provider::OpenAi | Provider::Azure => Some(&openai::CHAT),
        Provider::Anthropic => Some(&anthropic::PROVIDER),
        Provider::Gemini => Some(&gemini::PROVIDER),
        Provider::Bedrock => Some(&bedrock::PROVIDER),
        Provider::Mock => None,
    }
}

/// A `provider/` prefix of a litellm model string and what it means.
pub struct Prefix {
    pub prefix: &'static str,
    pub provider: Provider,
    /// The base URL used when the deployment sets no `api_base`; `None` means it must set one.
    pub default_api_base: Option<&'static str>,
}

/// litellm prefixes ferrolite understands. OpenAI-compatible hosts share the OpenAI protocol.
pub const PREFIXES: &[Prefix] = &[
    Prefix { prefix: "openai", provider: Provider::OpenAi, default_api_base: Some("https://api.openai.com/v1") },
    Prefix {
        prefix: "text-completion-openai",
        provider: Provider::OpenAi,
        default_api_base: Some("https://api.openai.com/v1"),
    },
    Prefix { prefix: "hosted_vllm", provider: Provider::OpenAi, default_api_base: None },
    Prefix { prefix: "lm_studio", provider: Provider::OpenAi, default_api_base: Some("http://localhost:1234/v1") },
    Prefix { prefix: "groq", provider: Provider::OpenAi, default_api_base: Some("https://api.groq.com/openai/v1") },
    Prefix { prefix: "together_ai", provider: Provider::OpenAi, default_api_base: Some("https://api.together.xyz/v1") },
    Prefix { prefix: "mistral", provider: Provider::OpenAi, default_api_base: Some("https://api.mistral.ai/v1") },
    Prefix { prefix: "deepseek", provider: Provider::OpenAi, default_api_base: Some("https://api.deepseek.com/v1") },
    Prefix { prefix: "openrouter", provider: Provider::OpenAi, default_api_base: Some("https://openrouter.ai/api/v1") },
    Prefix {
        prefix: "fireworks_ai",
        provider: Provider::OpenAi,
        default_api_base: Some("https://api.fireworks.ai/inference/v1"),
    },
    Prefix { prefix: "xai", provider: Provider::OpenAi, default_api_base: Some("https://api.x.ai/v1") },
    Prefix { prefix: "perplexity", provider: Provider::OpenAi, default_api_base: Some("https://api.perplexity.ai") },
    Prefix { prefix: "azure", provider: Provider::Azure, default_api_base: None },
    Prefix { prefix: "anthropic", provider: Provider::Anthropic, default_api_base: Some("https://api.anthropic.com") },
    Prefix {
        prefix: "gemini",
        provider: Provider::Gemini,
        default_api_base: Some("https://generativelanguage.googleapis.com"),
    },
    Prefix { prefix: "bedrock", provider: Provider::Bedrock, default_api_base: None },
];

/// Model-name families recognised without a prefix, as litellm's model map does.
const FAMILIES: &[(&str, &str)] = &[
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-", "openai"),
    ("text-moderation-", "openai"),
    ("omni-moderation-", "openai"),
    ("dall-e-", "openai"),
    ("tts-", "openai"),
    ("whisper-", "openai"),
    ("davinci-", "openai"),
    ("babbage-", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
];

/// What a litellm model string resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub provider: Provider,
    /// The prefix written (or implied), e.g. `hosted_vllm`.
    pub prefix: &'static str,
    /// The model name the upstream knows, prefix removed.
    pub upstream_model: String,
    pub default_api_base: Option<&'static str>,
}

/// Resolves a litellm `model` string to its provider, or `None` when no rule matches.
pub fn resolve_model(model: &str) -> Option<ResolvedModel> {
    let by_prefix = |name: &str| PREFIXES.iter().find(|p| p.prefix == name);
    if let Some((prefix, rest)) = model.split_once('/') {
        if let Some(p) = by_prefix(prefix) {
            return (!rest.is_empty()).then(|| ResolvedModel {
                provider: p.provider,
                prefix: p.prefix,
                upstream_model: rest.to_owned(),
                default_api_base: p.default_api_base,
            });
        }
    }
    let (_, prefix) = FAMILIES.iter().find(|(family, _)| model.starts_with(family))?;
    let p = by_prefix(prefix)?;
    Some(ResolvedModel {
        provider: p.provider,
        prefix: p.prefix,
        upstream_model: model.to_owned(),
        default_api_base: p.default_api_base,
    })
}

/// The prefixes, comma-separated, for error messages.
pub fn known_prefixes() -> String {
    PREFIXES.iter().map(|p| p.prefix).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_families_resolve_like_litellm() {
        let r = resolve_model("anthropic/claude-3-opus").unwrap();
        assert_eq!((r.provider, r.upstream_model.as_str()), (Provider::Anthropic, "claude-3-opus"));
        assert_eq!(resolve_model("claude-3-opus-20240229").unwrap().provider, Provider::Anthropic);
        assert_eq!(resolve_model("gpt-3.5-turbo").unwrap().provider, Provider::OpenAi);
        assert_eq!(resolve_model("gemini-pro").unwrap().provider, Provider::Gemini);
        let b = resolve_model("bedrock/anthropic.claude-3-sonnet-20240229-v1:0").unwrap();
        assert_eq!(b.provider, Provider::Bedrock);
        assert_eq!(b.upstream_model, "anthropic.claude-3-sonnet-20240229-v1:0");
        let v = resolve_model("hosted_vllm/meta-llama/Llama-3-8B").unwrap();
        assert_eq!((v.provider, v.upstream_model.as_str()), (Provider::OpenAi, "meta-llama/Llama-3-8B"));
        assert_eq!(resolve_model("mystery-model"), None);
        assert_eq!(resolve_model("nosuchprefix/model"), None);
        assert_eq!(resolve_model("openai/"), None);
    }
}
