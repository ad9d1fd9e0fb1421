//! A running service: its resolved deployments, grouped by model name.
//!
//! Built once when an app starts and shared read-only (`Arc<Session>`) by every request, so
//! the request path never clones an app's tables or takes a lock to read them.

use super::logs::LogBuffer;
use crate::grammar;
use crate::manifest::validate::SecretRef;
use crate::manifest::{LitellmParams, LitellmSettings, Manifest, RoutingStrategy, Visibility};
use crate::providers::{resolve_model, Provider};
use foldhash::HashMap;
use serde::Serialize;

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
#[derive(Debug)]
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
    pub mock_response: Option<String>,
    /// The params as written in the manifest (secrets still as references), for /v1/model/info.
    pub params: LitellmParams,
    pub model_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its price per token, worked out on first use (it never changes while the session runs).
    pub price: std::sync::OnceLock<Option<crate::router::prices::Price>>,
    /// The headers that carry its credentials, built on first use; `None` when its key cannot
    /// be a header value.
    pub credential_headers: std::sync::OnceLock<Option<axum::http::HeaderMap>>,
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

impl AwsCredentials {
    /// From `aws_*` params (references resolved), else the standard AWS environment variables.
    fn resolve(p: &LitellmParams, secrets: &dyn SecretSource) -> Result<AwsCredentials, StartError> {
        let pick = |param: &Option<String>, env: &str| -> Result<Option<String>, StartError> {
            match resolve_opt(param, secrets)? {
                Some(v) => Ok(Some(v)),
                None => Ok(secrets.env(env)),
            }
        };
        let missing = |what: &str| StartError::MissingAws(what.to_owned());
        Ok(AwsCredentials {
            access_key_id: Secret::new(
                pick(&p.aws_access_key_id, "AWS_ACCESS_KEY_ID")?.ok_or_else(|| missing("aws_access_key_id"))?,
            ),
            secret_access_key: Secret::new(
                pick(&p.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY")?
                    .ok_or_else(|| missing("aws_secret_access_key"))?,
            ),
            session_token: pick(&p.aws_session_token, "AWS_SESSION_TOKEN")?.map(Secret::new),
            region: pick(&p.aws_region_name, "AWS_REGION")?
                .or(secrets.env("AWS_DEFAULT_REGION"))
                .ok_or_else(|| missing("aws_region_name"))?,
        })
    }
}

/// Why an app could not start.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StartError {
    #[error("secret {0} is not set: os.environ/{0} names a variable missing from the server's environment")]
    MissingEnv(String),
    #[error("secret {0} is not set: HYPHA_SECRET:{0} names a key missing from the workspace's secrets (set it with set_env)")]
    MissingWorkspaceSecret(String),
    #[error("bedrock deployment needs {0} (in litellm_params or the standard AWS environment variables)")]
    MissingAws(String),
    #[error("deployment {0}: {1}; only admin tokens may, or a server started with --allow-private-upstreams")]
    PrivateUpstream(String, String),
    #[error("deployment {0}: litellm_params.{1}: {2}")]
    InvalidValue(String, &'static str, String),
    #[error("cannot tell the provider of model {0:?}")]
    UnknownProvider(String),
    #[error("service id {0:?} is already in use in this workspace")]
    ServiceIdInUse(String),
}

/// Where secret references are looked up when an app starts.
pub trait SecretSource {
    fn env(&self, var: &str) -> Option<String>;
    fn workspace_secret(&self, key: &str) -> Option<String>;
}

/// A running llm-proxy service.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub app_id: String,
    pub workspace: String,
    pub service_id: String,
    pub visibility: Visibility,
    pub created: u64,
    pub settings: LitellmSettings,
    pub strategy: RoutingStrategy,
    pub deployments: Vec<Deployment>,
    /// model_name -> its deployments.
    groups: HashMap<String, ModelGroup>,
    /// The app's spend limit (`max_budget`, `budget_duration`) and its spend this period.
    pub app_budget: Option<crate::router::spend::Budget>,
    pub app_spend: crate::router::spend::Ledger,
    /// Each deployment's limit and spend (same order as `deployments`).
    pub deployment_budgets: Vec<Option<crate::router::spend::Budget>>,
    pub deployment_spend: Vec<crate::router::spend::Ledger>,
    /// Retries, timeouts, cooldowns and fallbacks.
    pub policy: crate::router::failover::Policy,
    /// Live routing figures, one per deployment (same order).
    pub stats: Vec<crate::router::stats::DeploymentStats>,
    /// model names in the order they first appear in the manifest.
    pub model_names: Vec<String>,
    /// litellm's `general_settings.master_key`: also accepted as a token for this service.
    pub master_key: Option<Secret>,
    pub logs: LogBuffer,
    /// Metric label values (workspace, app, each deployment's model name and id), built once.
    pub metric_labels: crate::observability::metrics::SessionLabels,
}

/// What a new session needs besides the manifest.
pub struct SessionSpec<'a> {
    pub id: String,
    pub app_id: String,
    pub workspace: String,
    pub manifest: &'a Manifest,
    pub created: u64,
    /// Its deployments may call public addresses only (see `providers::upstream::guard`).
    pub public_only: bool,
}

/// The deployments sharing one model_name.
#[derive(Debug, Default)]
struct ModelGroup {
    /// Indices into the session's `deployments`, in manifest order.
    indices: Vec<usize>,
    /// The distinct providers among them, in order of first appearance.
    providers: Vec<Provider>,
}

impl Session {
    /// Resolves secrets and builds the deployment table.
    pub fn build(spec: SessionSpec<'_>, secrets: &dyn SecretSource) -> Result<Session, StartError> {
        let config = &spec.manifest.config;
        let mut deployments = Vec::with_capacity(config.model_list.len());
        let mut groups: HashMap<String, ModelGroup> = HashMap::default();
        let mut model_names = Vec::new();
        for entry in &config.model_list {
            let p = &entry.litellm_params;
            let (provider, upstream_model, default_base) = if p.mock_response.is_some() {
                (Provider::Mock, p.model.clone(), None)
            } else {
                let r = resolve_model(&p.model).ok_or_else(|| StartError::UnknownProvider(p.model.clone()))?;
                (r.provider, r.upstream_model, r.default_api_base)
            };
            let group = groups.entry(entry.model_name.clone()).or_default();
            if group.indices.is_empty() {
                model_names.push(entry.model_name.clone());
            }
            let index = group.indices.len();
            group.indices.push(deployments.len());
            if !group.providers.contains(&provider) {
                group.providers.push(provider);
            }
            let id = format!("{}/{index}", entry.model_name);
            // Values that end up in the upstream URL keep to their grammars once resolved (a
            // secret may hold any text): none may move a request to another host or path.
            let invalid = |field: &'static str, reason: String| StartError::InvalidValue(id.clone(), field, reason);
            let aws = if provider == Provider::Bedrock { Some(AwsCredentials::resolve(p, secrets)?) } else { None };
            if let Some(aws) = &aws {
                grammar::aws_region(&aws.region).map_err(|r| invalid("aws_region_name", r))?;
            }
            let api_version = resolve_opt(&p.api_version, secrets)?
                .or_else(|| (provider == Provider::Azure).then(|| DEFAULT_AZURE_API_VERSION.to_owned()));
            if let Some(version) = &api_version {
                grammar::api_version(version).map_err(|r| invalid("api_version", r))?;
            }
            if provider != Provider::Mock {
                grammar::upstream_model(&upstream_model).map_err(|r| invalid("model", r))?;
            }
            let api_base = match (resolve_opt(&p.api_base, secrets)?, &aws) {
                (Some(base), _) => Some(base),
                (None, Some(aws)) => Some(format!("https://bedrock-runtime.{}.amazonaws.com", aws.region)),
                (None, None) => default_base.map(str::to_owned),
            };
            deployments.push(Deployment {
                id,
                model_name: entry.model_name.clone(),
                provider,
                upstream_model,
                api_base,
                public_only: spec.public_only,
                // A mock deployment never calls out, so its key is never needed (nor resolved).
                api_key: if provider == Provider::Mock {
                    None
                } else {
                    resolve_opt(&p.api_key, secrets)?.map(Secret::new)
                },
                api_version,
                aws,
                mock_response: p.mock_response.clone(),
                params: p.clone(),
                model_info: entry.model_info.clone(),
                price: Default::default(),
                credential_headers: Default::default(),
            });
        }
        let service_id = config.service_id.clone().unwrap_or_else(|| format!("llm-{}", spec.id));
        let master_key = config
            .extra
            .get("general_settings")
            .and_then(|g| g.get("master_key"))
            .and_then(serde_json::Value::as_str)
            .map(|k| resolve_opt(&Some(k.to_owned()), secrets))
            .transpose()?
            .flatten()
            .map(Secret::new);
        let settings = config.litellm_settings.clone();
        let app_budget = budget_of(
            settings.max_budget,
            settings
                .extra
                .get("budget_duration")
                .or_else(|| config.router_settings.as_ref().and_then(|r| r.get("budget_duration"))),
        );
        let deployment_budgets: Vec<_> =
            deployments.iter().map(|d| budget_of(d.params.max_budget, d.params.extra.get("budget_duration"))).collect();
        // litellm takes the strategy from litellm_settings or router_settings (validated at install).
        let strategy = settings
            .routing_strategy
            .or_else(|| {
                let router = config.router_settings.as_ref()?;
                RoutingStrategy::from_wire(router.get("routing_strategy")?.as_str()?)
            })
            .unwrap_or(RoutingStrategy::SimpleShuffle);
        let metric_labels = crate::observability::metrics::SessionLabels::new(
            &spec.workspace,
            &spec.app_id,
            deployments.iter().map(|d| (d.model_name.as_str(), d.id.as_str())),
        );
        Ok(Session {
            metric_labels,
            id: spec.id,
            app_id: spec.app_id,
            workspace: spec.workspace,
            service_id,
            visibility: config.visibility.unwrap_or_default(),
            created: spec.created,
            settings,
            strategy,
            app_spend: crate::router::spend::Ledger::new(app_budget.and_then(|b| b.period)),
            app_budget,
            deployment_spend: deployment_budgets
                .iter()
                .map(|b| crate::router::spend::Ledger::new(b.and_then(|b| b.period)))
                .collect(),
            deployment_budgets,
            policy: crate::router::failover::Policy::from_config(config),
            stats: (0..deployments.len()).map(|_| Default::default()).collect(),
            deployments,
            groups,
            model_names,
            master_key,
            logs: LogBuffer::default(),
        })
    }

    /// Indices (into `deployments`) of the group serving `model_name`.
    pub fn group_indices(&self, model_name: &str) -> Option<&[usize]> {
        self.groups.get(model_name).map(|g| g.indices.as_slice())
    }

    /// The distinct providers of `model_name`'s deployments: what a route's support is asked
    /// of, once per provider rather than once per deployment.
    pub fn group_providers(&self, model_name: &str) -> Option<&[Provider]> {
        self.groups.get(model_name).map(|g| g.providers.as_slice())
    }

    /// The deployments serving `model_name`, if this app has that model.
    pub fn group(&self, model_name: &str) -> Option<impl Iterator<Item = &Deployment> + Clone> {
        self.groups.get(model_name).map(|g| g.indices.iter().map(|&i| &self.deployments[i]))
    }

    /// Whether `token` is this service's litellm master key (compared in constant time).
    pub fn accepts_master_key(&self, token: &str) -> bool {
        self.master_key.as_ref().is_some_and(|k| {
            let (a, b) = (k.expose().as_bytes(), token.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }

    /// What `start` and `list_running` report about this session.
    pub fn info(&self, base_url: &str) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            app_id: self.app_id.clone(),
            workspace: self.workspace.clone(),
            service_id: self.service_id.clone(),
            url: format!("{base_url}/{}/apps/{}/v1", self.workspace, self.service_id),
            models: self.model_names.clone(),
            status: "running",
        }
    }
}

/// A session as the controller reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub app_id: String,
    pub workspace: String,
    pub service_id: String,
    pub url: String,
    pub models: Vec<String>,
    pub status: &'static str,
}

fn budget_of(max: Option<f64>, duration: Option<&serde_json::Value>) -> Option<crate::router::spend::Budget> {
    let period = duration.and_then(serde_json::Value::as_str).and_then(crate::router::spend::parse_duration);
    max.map(|max_usd| crate::router::spend::Budget { max_usd, period })
}

fn resolve_opt(value: &Option<String>, secrets: &dyn SecretSource) -> Result<Option<String>, StartError> {
    let Some(v) = value else { return Ok(None) };
    match SecretRef::parse(v) {
        Some(SecretRef::Env(var)) => secrets.env(var).map(Some).ok_or_else(|| StartError::MissingEnv(var.to_owned())),
        Some(SecretRef::Workspace(key)) => {
            secrets.workspace_secret(key).map(Some).ok_or_else(|| StartError::MissingWorkspaceSecret(key.to_owned()))
        }
        None => Ok(Some(v.clone())),
    }
}
