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
    pub credential_headers: std::sync::OnceLock<Option<std::sync::Arc<axum::http::HeaderMap>>>,
    /// Its id as the value of the header that stamps its answers, made on first use: a clone
    /// of it is a count, not a copy.
    pub id_header: std::sync::OnceLock<axum::http::HeaderValue>,
    /// `upstream_model` as a JSON string, made on first use: what a body sent as the client
    /// wrote it gets as its model member, without writing it again for every request.
    pub upstream_model_json: std::sync::OnceLock<Box<[u8]>>,
    /// Headers sent on every upstream call besides the credentials (litellm's `extra_headers`,
    /// OpenAI's `organization`, Azure's `azure_ad_token`), values resolved.
    pub extra_headers: Vec<(String, Secret)>,
    /// Why it cannot be called, when it cannot: a provider ferrolite does not serve, or
    /// credentials absent from the config and the environment. Its app starts (as litellm's
    /// does) and its group's other deployments serve; alone, its requests get 503 saying this.
    pub unavailable: Option<String>,
    /// In a catch-all group (`model: "*"`), the provider prefix this deployment was built for:
    /// it serves the requested models that name that provider (`claude-*`, `anthropic/...`).
    pub catch_all: Option<&'static str>,
}

impl Deployment {
    /// This wildcard deployment (`model_name: "openai/*"`, `model: "openai/*"`) as it serves
    /// `requested`: what its group's `*`s stand for put in place of the `*`s of its upstream
    /// model, in order (a provider prefix the client repeated taken off). A catch-all's
    /// (`model: "*"`) upstream model is the requested one as its provider knows it. `None` when
    /// it is not a wildcard or the name does not match.
    pub fn for_model(&self, requested: &str) -> Option<Deployment> {
        if !self.upstream_model.contains('*') {
            return None;
        }
        let parts = captures(&self.model_name, requested)?;
        let upstream = match self.catch_all {
            Some(_) => crate::catalogue::providers::resolve_model(&fill(&self.params.model, &parts))?.upstream_model,
            None => {
                let mut parts = parts;
                // `model_name: "*"` over `model: "openai/*"`: a client's `openai/gpt-4o` is `gpt-4o`.
                if let ([part], Some((prefix, _))) = (parts.as_mut_slice(), self.params.model.split_once('/')) {
                    *part = part.strip_prefix(prefix).and_then(|p| p.strip_prefix('/')).unwrap_or(part);
                }
                fill(&self.upstream_model, &parts)
            }
        };
        let mut concrete = self.clone();
        concrete.upstream_model = upstream;
        // Made of the model it replaces, were it made.
        concrete.upstream_model_json = Default::default();
        Some(concrete)
    }

    /// Whether this deployment of a catch-all group (`model: "*"`) serves a requested model
    /// that resolves to `target` ([`Deployment::catch_all_target`]): the provider the model name
    /// tells is the one it was built for.
    pub fn catch_all_serves(&self, target: &crate::catalogue::providers::ResolvedModel) -> bool {
        self.catch_all == Some(target.prefix) && self.provider == target.provider
    }

    /// What a requested model resolves to through this catch-all deployment's entry (the same
    /// for every deployment of the group: they share the entry).
    pub fn catch_all_target(&self, requested: &str) -> Option<crate::catalogue::providers::ResolvedModel> {
        crate::catalogue::providers::resolve_model(&self.catch_all_model(requested)?)
    }

    /// The litellm model string a catch-all's entry stands for when a client names `requested`
    /// (its `model` with the group's captures in place of its `*`s).
    pub fn catch_all_model(&self, requested: &str) -> Option<String> {
        captures(&self.model_name, requested).map(|parts| fill(&self.params.model, &parts))
    }
}

/// What each `*` of a model name pattern stands for in `name`, in order, if `name` matches it
/// (each part non-empty; earlier stars take as much as they can, as litellm's `(.*)` does):
/// `captures("openai/*", "openai/gpt-4o")` is `["gpt-4o"]`. `None` for a name with no `*`.
pub fn captures<'n>(pattern: &str, name: &'n str) -> Option<Vec<&'n str>> {
    let mut literals = pattern.split('*');
    let first = literals.next()?;
    let rest: Vec<&str> = literals.collect();
    if rest.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(rest.len());
    match_from(name.strip_prefix(first)?, &rest, &mut parts).then_some(parts)
}

/// Matches `name` against `*L1*L2...` (the literals after each star), filling `parts`.
fn match_from<'n>(name: &'n str, literals: &[&str], parts: &mut Vec<&'n str>) -> bool {
    let Some((literal, later)) = literals.split_first() else { return name.is_empty() };
    if later.is_empty() {
        // The last star takes all but the final literal.
        return match name.strip_suffix(literal) {
            Some(part) if !part.is_empty() => {
                parts.push(part);
                true
            }
            _ => false,
        };
    }
    // Longest first: each place the literal occurs, from the right.
    for (at, _) in name.rmatch_indices(literal) {
        if at == 0 {
            continue;
        }
        parts.push(&name[..at]);
        if match_from(&name[at + literal.len()..], later, parts) {
            return true;
        }
        parts.pop();
    }
    false
}

/// `pattern` with its `*`s replaced by `parts` in order (a star without a part stays).
pub fn fill(pattern: &str, parts: &[&str]) -> String {
    let mut out = String::with_capacity(pattern.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    let mut parts = parts.iter();
    for (i, literal) in pattern.split('*').enumerate() {
        if i > 0 {
            out.push_str(parts.next().copied().unwrap_or("*"));
        }
        out.push_str(literal);
    }
    out
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
            id_header: Default::default(),
            upstream_model_json: Default::default(),
            extra_headers: Vec::new(),
            unavailable: None,
            catch_all: None,
        }
    }
}
