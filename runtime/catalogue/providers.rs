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
}

/// Resolves a litellm `model` string to its provider, or `None` when no rule matches: a known
/// prefix (`anthropic/claude-3`, `hosted_vllm/llama`), else the model family (`gpt-*`, `claude-*`).
pub fn resolve_model(model: &str) -> Option<ResolvedModel> {
    let by_prefix = |name: &str| PREFIXES.iter().find(|p| p.prefix == name);
    if let Some((prefix, rest)) = model.split_once('/') {
        if let Some(p) = by_prefix(prefix) {
            return (!rest.is_empty()).then(|| ResolvedModel {
                provider: p.provider,
                prefix: p.prefix,
                upstream_model: rest.to_owned(),
                default_api_base: p.default_api_base,
                chat_only: p.chat_only,
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
        chat_only: p.chat_only,
    })
}

/// The prefixes, comma-separated, for error messages.
pub fn known_prefixes() -> String {
    PREFIXES.iter().map(|p| p.prefix).collect::<Vec<_>>().join(", ")
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
