//! One deployment as the providers see it: the upstream model, where it lives and the
//! credentials it is called with, resolved when its app starts.

use super::google_auth::TokenSource;
use super::Provider;
use crate::manifest::LitellmParams;
use std::sync::Arc;

/// A credential resolved at start. Its `Debug` shows at most the last four characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `****abcd`: enough to tell two keys apart, never enough to use one.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Masks a secret to its last four characters (none at all when it is short).
pub fn redact(value: &str) -> String {
    let n = value.chars().count();
    if n <= 8 {
        return "****".to_owned();
    }
    let tail: String = value.chars().skip(n - 4).collect();
    format!("****{tail}")
}

/// One deployment of a model group, ready to serve.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `model_name/index`: stable within the session, used in logs and headers.
    pub id: String,
    pub model_name: String,
    pub provider: Provider,
    /// The model name the upstream knows.
    pub upstream_model: String,
    /// Where its requests go: `api_base`, else the provider's default (Bedrock's is built from
    /// the region). The address guard checks this, the final origin of every upstream URL.
    pub api_base: Option<String>,
    /// Its requests may reach public addresses only (an app installed without an admin token).
    pub public_only: bool,
    pub api_key: Option<Secret>,
    pub api_version: Option<String>,
    /// AWS credentials and region (Bedrock), from the params or the standard AWS environment.
    pub aws: Option<AwsCredentials>,
    /// Vertex AI's project, location and service account.
    pub vertex: Option<VertexAccess>,
    pub mock_response: Option<String>,
    /// An OpenAI-compatible server without the Responses API: `/v1/responses` goes through its
    /// chat completions (`use_chat_completions_api`, or its prefix's default).
    pub chat_only: bool,
    /// The params as written in the manifest (secrets still as references), for /v1/model/info.
    pub params: LitellmParams,
    pub model_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// The headers that carry its credentials, built on first use; `None` when its key cannot
    /// be a header value.
    pub credential_headers: std::sync::OnceLock<Option<axum::http::HeaderMap>>,
    /// Why it cannot be called, when it cannot: a provider ferrolite does not serve, or
    /// credentials absent from the config and the environment. Its app starts (as litellm's
    /// does) and its group's other deployments serve; alone, its requests get 503 saying this.
    pub unavailable: Option<String>,
}

impl Deployment {
    /// This wildcard deployment (`model_name: "openai/*"`, `model: "openai/*"`) as it serves
    /// `requested`: the part of the name its group's `*` stands for put in place of the `*` of
    /// its upstream model (a provider prefix the client repeated taken off). `None` when it is
    /// not a wildcard or the name does not match.
    pub fn for_model(&self, requested: &str) -> Option<Deployment> {
        if !self.upstream_model.contains('*') {
            return None;
        }
        let part = capture(&self.model_name, requested)?;
        let prefix = self.params.model.split_once('/').map(|(p, _)| p);
        let part = prefix.and_then(|p| part.strip_prefix(p)?.strip_prefix('/')).unwrap_or(part);
        let mut concrete = self.clone();
        concrete.upstream_model = self.upstream_model.replacen('*', part, 1);
        Some(concrete)
    }
}

/// What a model name pattern's one `*` stands for in `name`, if `name` matches it (and is not
/// empty): `capture("openai/*", "openai/gpt-4o")` is `gpt-4o`.
pub fn capture<'n>(pattern: &str, name: &'n str) -> Option<&'n str> {
    let (prefix, suffix) = pattern.split_once('*')?;
    let rest = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!rest.is_empty()).then_some(rest)
}

/// The Azure OpenAI API version used when a deployment names none.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// AWS credentials for SigV4 signing, resolved at start.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub region: String,
}

/// Where a Vertex AI deployment's models live and whose tokens its requests carry, resolved at
/// start.
#[derive(Debug, Clone)]
pub struct VertexAccess {
    pub project: String,
    pub location: String,
    pub tokens: Arc<TokenSource>,
}

impl Deployment {
    /// A deployment answered by ferrolite itself (`mock_response`), nothing else set: the
    /// smallest one a router or provider test can hold.
    pub fn mock(id: &str, model_name: &str) -> Deployment {
        Deployment {
            id: id.to_owned(),
            model_name: model_name.to_owned(),
            provider: Provider::Mock,
            upstream_model: model_name.to_owned(),
            api_base: None,
            public_only: false,
            api_key: None,
            api_version: None,
            aws: None,
            vertex: None,
            mock_response: Some(String::new()),
            chat_only: false,
            params: LitellmParams::default(),
            model_info: None,
            credential_headers: Default::default(),
            unavailable: None,
        }
    }
}
