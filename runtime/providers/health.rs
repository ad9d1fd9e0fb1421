//! Whether a deployment answers: what `/health` reports and background health checks act on.

use super::{auth, Deployment, Provider};
use crate::transport::UpstreamClient;
use std::time::Duration;

/// One deployment's health: mock ones always answer; OpenAI-compatible ones must list models;
/// one that cannot be called says why; a wildcard is asked about its `health_check_model`.
pub async fn probe(upstream: &UpstreamClient, d: &Deployment) -> Result<(), String> {
    if let Some(reason) = &d.unavailable {
        return Err(reason.clone());
    }
    // A wildcard names no model to ask for: it is probed through the one its `model_info`
    // names (`health_check_model`, as litellm's), else counted healthy without a call.
    if d.upstream_model.contains('*') && d.provider != Provider::OpenAi {
        let model = d.model_info.as_ref().and_then(|i| i.get("health_check_model")).and_then(|m| m.as_str());
        return match model.and_then(|m| d.for_model(m)) {
            Some(concrete) => Box::pin(probe(upstream, &concrete)).await,
            None => Ok(()),
        };
    }
    match d.provider {
        Provider::Mock => Ok(()),
        Provider::OpenAi => {
            let base = d.api_base.as_deref().ok_or("no api_base")?.trim_end_matches('/');
            let url = reqwest::Url::parse(&format!("{base}/models")).map_err(|_| "api_base is not a URL")?;
            let headers = auth::credential_headers(d, None).map_err(|_| "the api_key cannot be sent in a header")?;
            let request = crate::transport::Request {
                method: axum::http::Method::GET,
                url: url.into(),
                headers,
                body: crate::transport::RequestBody::empty(),
                timeout: Some(Duration::from_secs(10)),
                public_only: d.public_only,
                streamed: false,
                answer_headers: crate::transport::AnswerHeaders::All,
            };
            crate::transport::answers_ok(upstream.send(request).await)
        }
        // Providers without a free listing call get what litellm's check sends: a one-token chat.
        Provider::Azure
        | Provider::Anthropic
        | Provider::Gemini
        | Provider::Bedrock
        | Provider::Cohere
        | Provider::Ollama
        | Provider::OllamaChat
        | Provider::VertexAi
        | Provider::VertexAiAnthropic => super::chat::probe(upstream, d).await,
    }
}
