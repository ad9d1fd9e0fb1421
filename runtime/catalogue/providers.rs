//! The provider table, compiled from `providers.yaml` by `build.rs`: each provider's auth scheme,
//! the OpenAI chat parameters it honours and the translators it runs, and how a litellm `model`
//! string names a provider.

use super::Translator;

/// How a provider takes a deployment's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// The key in a header of its own (Azure's `api-key`, Gemini's `x-goog-api-key`).
    Header(&'static str),
    /// `x-api-key: KEY` and `anthropic-version` (the client's own, when it names one).
    Anthropic { version: &'static str },
    /// AWS Signature Version 4 for `service`, from the deployment's AWS credentials.
    SigV4 { service: &'static str },
    /// `Authorization: Bearer TOKEN`, the token a Google service account's credential earns
    /// (`providers::google_auth`).
    GoogleOAuth,
    /// No credentials: ferrolite answers itself.
    None,
}

/// One provider's row of the table.
#[derive(Debug)]
pub struct ProviderSpec {
    pub provider: Provider,
    pub auth: AuthScheme,
    /// The OpenAI chat parameters it honours; a request with another one is refused (400) unless
    /// `drop_params` is set, which drops it.
    pub chat_params: &'static [&'static str],
    /// The catalogue's translators that run for it.
    pub translators: &'static [Translator],
}

impl Provider {
    /// This provider's row of the table.
    pub fn spec(self) -> &'static ProviderSpec {
        &SPECS[self as usize]
    }
}

/// A `provider/` prefix of a litellm model string and what it means.
#[derive(Debug)]
pub struct Prefix {
    pub prefix: &'static str,
    pub provider: Provider,
    /// The base URL used when the deployment sets no `api_base`; `None` means it must set one.
    pub default_api_base: Option<&'static str>,
    /// Chat completions but no Responses API (Responses requests are translated to chat).
    pub chat_only: bool,
    /// The entry applies to models starting with this only (`vertex_ai/claude-*`).
    pub model_starts_with: Option<&'static str>,
    /// Where litellm reads the key when the deployment sets none: the first variable set.
    pub api_key_env: &'static [&'static str],
    /// Where litellm reads the base URL when the deployment sets none.
    pub api_base_env: Option<&'static str>,
}

/// What a litellm model string resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub provider: Provider,
    /// The prefix written (or implied), e.g. `hosted_vllm`.
    pub prefix: &'static str,
    /// The model name the upstream knows, prefix removed.
    pub upstream_model: String,
    pub default_api_base: Option<&'static str>,
    /// Chat completions but no Responses API.
    pub chat_only: bool,
    /// Where the key is read from the environment when the deployment sets none.
    pub api_key_env: &'static [&'static str],
    /// Where the base URL is read from the environment when the deployment sets none.
    pub api_base_env: Option<&'static str>,
}

/// Resolves a litellm `model` string to its provider, or `None` when no rule matches: a known
/// prefix (`anthropic/claude-3`, `hosted_vllm/llama`), else the model family (`gpt-*`, `claude-*`).
pub fn resolve_model(model: &str) -> Option<ResolvedModel> {
    // The first entry of the prefix whose model filter, if any, the rest of the name passes.
    let by_prefix = |name: &str, rest: &str| {
        PREFIXES.iter().find(|p| p.prefix == name && p.model_starts_with.is_none_or(|start| rest.starts_with(start)))
    };
    if let Some((prefix, rest)) = model.split_once('/') {
        if is_prefix(prefix) {
            let p = by_prefix(prefix, rest)?;
            return (!rest.is_empty()).then(|| ResolvedModel {
                provider: p.provider,
                prefix: p.prefix,
                upstream_model: rest.to_owned(),
                default_api_base: p.default_api_base,
                chat_only: p.chat_only,
                api_key_env: p.api_key_env,
                api_base_env: p.api_base_env,
            });
        }
    }
    let (_, prefix) = FAMILIES.iter().find(|(family, _)| model.starts_with(family))?;
    let p = by_prefix(prefix, model)?;
    Some(ResolvedModel {
        provider: p.provider,
        prefix: p.prefix,
        upstream_model: model.to_owned(),
        default_api_base: p.default_api_base,
        chat_only: p.chat_only,
        api_key_env: p.api_key_env,
        api_base_env: p.api_base_env,
    })
}

/// What a catch-all deployment (`model: "*"`) stands for, one model string per provider a
/// prefix names: `openai/*`, `vertex_ai/claude*`, `vertex_ai/gemini*`, ... with its prefix.
pub fn catch_all_models() -> impl Iterator<Item = (&'static str, String)> {
    PREFIXES
        .iter()
        .filter(|p| p.provider != Provider::Mock)
        .map(|p| (p.prefix, format!("{}/{}*", p.prefix, p.model_starts_with.unwrap_or_default())))
}

/// The base URL a prefix's deployments use when they set none.
pub fn default_api_base(prefix: &str) -> Option<&'static str> {
    PREFIXES.iter().find(|p| p.prefix == prefix).and_then(|p| p.default_api_base)
}

/// Whether `name` is a known `provider/` prefix.
pub fn is_prefix(name: &str) -> bool {
    PREFIXES.iter().any(|p| p.prefix == name)
}

/// The model-name starts a prefix serves, when it serves some models only (`vertex_ai`: claude,
/// gemini); empty when it serves any.
pub fn prefix_models(name: &str) -> Vec<&'static str> {
    let entries: Vec<&Prefix> = PREFIXES.iter().filter(|p| p.prefix == name).collect();
    if entries.iter().any(|p| p.model_starts_with.is_none()) {
        return Vec::new();
    }
    entries.iter().filter_map(|p| p.model_starts_with).collect()
}

/// The prefixes, comma-separated, for error messages.
pub fn known_prefixes() -> String {
    let mut names: Vec<&str> = PREFIXES.iter().map(|p| p.prefix).collect();
    names.dedup();
    names.join(", ")
}

include!(concat!(env!("OUT_DIR"), "/providers.rs"));

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

    #[test]
    fn one_prefix_names_a_provider_per_model_family() {
        let claude = resolve_model("vertex_ai/claude-3-5-sonnet-v2@20241022").unwrap();
        assert_eq!(
            (claude.provider, claude.upstream_model.as_str()),
            (Provider::VertexAiAnthropic, "claude-3-5-sonnet-v2@20241022")
        );
        assert_eq!(resolve_model("vertex_ai/gemini-2.0-flash").unwrap().provider, Provider::VertexAi);
        assert_eq!(resolve_model("vertex_ai/meta/llama-3.1-405b-instruct-maas"), None);
        assert_eq!(prefix_models("vertex_ai"), ["claude", "gemini"]);
        assert!(prefix_models("openai").is_empty());
        assert_eq!(known_prefixes().matches("vertex_ai").count(), 1);
    }

    #[test]
    fn bare_model_names_resolve_by_the_family_table() {
        let cases = [
            ("gpt-4o-mini", Provider::OpenAi, "openai"),
            ("o1-preview", Provider::OpenAi, "openai"),
            ("o3-mini", Provider::OpenAi, "openai"),
            ("claude-3-5-sonnet-20241022", Provider::Anthropic, "anthropic"),
            ("gemini-2.0-flash", Provider::Gemini, "gemini"),
            ("anthropic.claude-3-sonnet-20240229-v1:0", Provider::Bedrock, "bedrock"),
            ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", Provider::Bedrock, "bedrock"),
            ("amazon.nova-pro-v1:0", Provider::Bedrock, "bedrock"),
            ("meta.llama3-1-70b-instruct-v1:0", Provider::Bedrock, "bedrock"),
            ("mistral.mistral-large-2402-v1:0", Provider::Bedrock, "bedrock"),
            ("mistral-large-latest", Provider::OpenAi, "mistral"),
            ("codestral-latest", Provider::OpenAi, "mistral"),
            ("open-mixtral-8x22b", Provider::OpenAi, "mistral"),
            ("deepseek-chat", Provider::OpenAi, "deepseek"),
            ("grok-2-latest", Provider::OpenAi, "xai"),
            ("command-r-plus", Provider::Cohere, "cohere"),
            ("command-a-03-2025", Provider::Cohere, "cohere"),
            ("embed-english-v3.0", Provider::Cohere, "cohere"),
            ("rerank-v3.5", Provider::Cohere, "cohere"),
            ("cohere.command-r-v1:0", Provider::Bedrock, "bedrock"),
        ];
        for (name, provider, prefix) in cases {
            let r = resolve_model(name).unwrap_or_else(|| panic!("{name} resolves"));
            assert_eq!((r.provider, r.prefix, r.upstream_model.as_str()), (provider, prefix, name), "{name}");
        }
        // A family lends its prefix's default base: a bare Mistral name reaches Mistral.
        assert_eq!(resolve_model("mistral-small-latest").unwrap().default_api_base, Some("https://api.mistral.ai/v1"));
        for unknown in ["llama3", "my-finetune", "claude", "gemini"] {
            assert_eq!(resolve_model(unknown), None, "{unknown} has no family");
        }
    }

    #[test]
    fn openai_compatible_hosts_have_their_default_bases() {
        let cases = [
            ("openrouter/anthropic/claude-3.5-sonnet", "anthropic/claude-3.5-sonnet", "https://openrouter.ai/api/v1"),
            (
                "deepinfra/meta-llama/Meta-Llama-3-8B-Instruct",
                "meta-llama/Meta-Llama-3-8B-Instruct",
                "https://api.deepinfra.com/v1/openai",
            ),
            (
                "fireworks_ai/accounts/fireworks/models/llama-v3-70b-instruct",
                "accounts/fireworks/models/llama-v3-70b-instruct",
                "https://api.fireworks.ai/inference/v1",
            ),
            (
                "together_ai/meta-llama/Llama-3-8b-chat-hf",
                "meta-llama/Llama-3-8b-chat-hf",
                "https://api.together.xyz/v1",
            ),
            ("perplexity/sonar-pro", "sonar-pro", "https://api.perplexity.ai"),
            ("xai/grok-2", "grok-2", "https://api.x.ai/v1"),
            ("cerebras/llama3.1-8b", "llama3.1-8b", "https://api.cerebras.ai/v1"),
            ("sambanova/Meta-Llama-3.1-8B-Instruct", "Meta-Llama-3.1-8B-Instruct", "https://api.sambanova.ai/v1"),
            ("nvidia_nim/meta/llama3-70b-instruct", "meta/llama3-70b-instruct", "https://integrate.api.nvidia.com/v1"),
            (
                "huggingface/meta-llama/Llama-3.1-8B-Instruct",
                "meta-llama/Llama-3.1-8B-Instruct",
                "https://router.huggingface.co/v1",
            ),
            (
                "anyscale/mistralai/Mistral-7B-Instruct-v0.1",
                "mistralai/Mistral-7B-Instruct-v0.1",
                "https://api.endpoints.anyscale.com/v1",
            ),
            ("github/gpt-4o", "gpt-4o", "https://models.inference.ai.azure.com"),
            ("deepseek/deepseek-chat", "deepseek-chat", "https://api.deepseek.com/v1"),
            ("mistral/mistral-large-latest", "mistral-large-latest", "https://api.mistral.ai/v1"),
        ];
        for (model, upstream, base) in cases {
            let r = resolve_model(model).unwrap_or_else(|| panic!("{model} resolves"));
            assert_eq!(
                (r.provider, r.upstream_model.as_str(), r.default_api_base),
                (Provider::OpenAi, upstream, Some(base))
            );
        }
    }

    #[test]
    fn every_provider_has_its_row_and_runs_what_the_catalogue_asks_of_it() {
        for p in Provider::ALL {
            assert_eq!(p.spec().provider, p, "SPECS is indexed by Provider");
        }
        for route in super::super::ROUTES.iter() {
            if let super::super::Serve::Providers(table) = route.serve {
                for (provider, r) in table {
                    assert!(provider.spec().translators.contains(&r.translate), "{provider} {}", route.path);
                }
            }
        }
    }
}
