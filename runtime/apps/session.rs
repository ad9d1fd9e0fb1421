//! A running service: an app's deployments resolved (secrets read, values checked against
//! their grammars) and handed to the router's table, with who may call it.
//!
//! Built once when an app starts and shared read-only (`Arc<Session>`) by every request, so
//! the request path never clones an app's tables or takes a lock to read them.

use crate::catalogue::providers::resolve_model;
use crate::catalogue::Provider;
use crate::grammar;
use crate::manifest::validate::SecretRef;
use crate::manifest::{LitellmParams, Manifest, Visibility};
use crate::providers::deployment::{AwsCredentials, Deployment, Secret, VertexAccess, DEFAULT_AZURE_API_VERSION};
use crate::providers::google_auth::{ServiceAccount, TokenSource};
use crate::router::table::{Ident, Table};
use serde::Serialize;
use std::sync::Arc;

/// AWS credentials from `aws_*` params (references resolved), else the standard AWS
/// environment variables.
fn resolve_aws(p: &LitellmParams, secrets: &dyn SecretSource) -> Result<AwsCredentials, StartError> {
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
            pick(&p.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY")?.ok_or_else(|| missing("aws_secret_access_key"))?,
        ),
        session_token: pick(&p.aws_session_token, "AWS_SESSION_TOKEN")?.map(Secret::new),
        region: pick(&p.aws_region_name, "AWS_REGION")?
            .or(secrets.env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| missing("aws_region_name"))?,
    })
}

/// Largest service-account credential file read (Google's are ~2.4 KB).
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// Vertex AI's project, location and service account: the `vertex_*` params (references
/// resolved), else the credential's own project and the environment litellm reads.
fn resolve_vertex(
    p: &LitellmParams,
    secrets: &dyn SecretSource,
    public_only: bool,
    id: &str,
) -> Result<VertexAccess, StartError> {
    let invalid = |field: &'static str, reason: String| StartError::InvalidValue(id.to_owned(), field, reason);
    let credential = match resolve_opt(&p.vertex_credentials, secrets)? {
        Some(credential) => credential,
        None => secrets.env("GOOGLE_APPLICATION_CREDENTIALS").ok_or(StartError::MissingVertex("vertex_credentials"))?,
    };
    // JSON text, or the path of its file.
    let json = if credential.trim_start().starts_with('{') {
        credential
    } else {
        read_credential_file(&credential, public_only).map_err(|r| invalid("vertex_credentials", r))?
    };
    let account =
        ServiceAccount::parse(&json).map_err(|e| invalid("vertex_credentials", format!("the credential {e}")))?;
    let project = match resolve_opt(&p.vertex_project, secrets)? {
        Some(project) => project,
        None => account
            .project_id
            .clone()
            .or_else(|| secrets.env("VERTEXAI_PROJECT"))
            .ok_or(StartError::MissingVertex("vertex_project"))?,
    };
    grammar::gcp_project(&project).map_err(|r| invalid("vertex_project", r))?;
    let location = resolve_opt(&p.vertex_location, secrets)?
        .or_else(|| secrets.env("VERTEXAI_LOCATION"))
        .unwrap_or_else(|| crate::providers::vertex::DEFAULT_LOCATION.to_owned());
    grammar::gcp_location(&location).map_err(|r| invalid("vertex_location", r))?;
    Ok(VertexAccess { project, location, tokens: Arc::new(TokenSource::new(account)) })
}

/// A credential file's text. Only apps installed with an admin token may name one: a path lets
/// an app read the server's files, the server's own service accounts among them.
fn read_credential_file(path: &str, public_only: bool) -> Result<String, String> {
    use std::io::Read as _;
    if public_only {
        return Err("a credential file is read for apps installed with an admin token only: give the JSON itself (e.g. from a workspace secret, HYPHA_SECRET:KEY)".into());
    }
    let cannot = |e: std::io::Error| format!("cannot read the credential file {}: {e}", grammar::quoted(path));
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_CREDENTIAL_FILE + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(format!("the credential file {} is larger than 64 KiB", grammar::quoted(path)));
    }
    Ok(text)
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
    #[error("vertex_ai deployment needs {0}: set vertex_credentials (a service account's JSON, or its file) and vertex_project in litellm_params, or GOOGLE_APPLICATION_CREDENTIALS and VERTEXAI_PROJECT in the environment")]
    MissingVertex(&'static str),
    #[error("deployment {0}: {1}; only admin tokens may, or a server started with --allow-private-upstreams")]
    PrivateUpstream(String, String),
    #[error("deployment {0}: litellm_params.{1}: {2}")]
    InvalidValue(String, &'static str, String),
    #[error("cannot tell the provider of model {0:?}")]
    UnknownProvider(String),
    #[error("MCP server {0}: {1}; only admin tokens may, or a server started with --allow-private-upstreams")]
    PrivateMcpServer(String, String),
    #[error("MCP server {0}: {1}")]
    InvalidMcpServer(String, String),
    #[error("service id {0:?} is already in use in this workspace")]
    ServiceIdInUse(String),
    #[error(transparent)]
    InvalidPassThrough(#[from] crate::passthrough::configured::SpecError),
    #[error(
        "pass-through endpoint {0}: {1}; only admin tokens may, or a server started with --allow-private-upstreams"
    )]
    PrivatePassThrough(String, String),
}

/// Credentials the config and the environment do not give at all leave the deployment
/// unavailable (noted in `unavailable`); any other failure, an explicit reference that does not
/// resolve included, still fails the start.
fn absent_is_unavailable<T>(
    resolved: Result<T, StartError>,
    unavailable: &mut Option<String>,
) -> Result<Option<T>, StartError> {
    match resolved {
        Ok(value) => Ok(Some(value)),
        Err(e @ (StartError::MissingAws(_) | StartError::MissingVertex(_))) => {
            unavailable.get_or_insert(e.to_string());
            Ok(None)
        }
        Err(e) => Err(e),
    }
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
    /// The three names above as spend records share them.
    pub spend_names: crate::observability::spend_log::SpendNames,
    pub visibility: Visibility,
    pub created: u64,
    /// litellm's `general_settings.master_key`: also accepted as a token for this service.
    pub master_key: Option<Secret>,
    /// Its deployments by model group, as the router chooses among them.
    pub table: Arc<Table>,
    /// `/mcp`: the app's MCP servers as one, when it has any.
    pub mcp: Option<Arc<crate::mcp::Endpoint>>,
    /// The response cache, when the app turns it on (`litellm_settings.cache`).
    pub cache: Option<Arc<crate::cache::ResponseCache>>,
    /// `general_settings.pass_through_endpoints`, resolved.
    pub pass_through: Vec<crate::passthrough::configured::Endpoint>,
}

/// What a new session needs besides the manifest.
pub struct SessionSpec<'a> {
    pub id: String,
    pub app_id: String,
    pub workspace: String,
    pub manifest: &'a Manifest,
    pub created: u64,
    /// Its deployments may call public addresses only (see `transport::guard`).
    pub public_only: bool,
    /// What its MCP servers are called through: one client (and pool) for every app's.
    pub mcp_http: Arc<crate::transport::UpstreamClient>,
}

impl Session {
    /// Resolves secrets and builds the deployment table.
    pub fn build(spec: SessionSpec<'_>, secrets: &dyn SecretSource) -> Result<Session, StartError> {
        let config = &spec.manifest.config;
        let mut deployments: Vec<Deployment> = Vec::with_capacity(config.model_list.len());
        // Deployments are numbered within their model group: `gpt-4/0`, `gpt-4/1`, ...
        let mut numbered: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for entry in &config.model_list {
            // Every reference must resolve, whatever the provider: a typo in a mock deployment's
            // key must not surface only once the mock is swapped for a real model.
            check_references(&entry.litellm_params, secrets)?;
            let number = numbered.entry(entry.model_name.as_str()).or_default();
            if is_catch_all(&entry.litellm_params) {
                let built = catch_all(entry, &spec, secrets, *number)?;
                *number += built.len();
                deployments.extend(built);
                continue;
            }
            let id = format!("{}/{number}", entry.model_name);
            *number += 1;
            let d = deployment(entry, &entry.litellm_params.model, id, &spec, secrets)?;
            if let Some(reason) = &d.unavailable {
                tracing::warn!(app = %spec.app_id, deployment = %d.id, "left out: {reason}; its requests get 503");
            }
            deployments.push(d);
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
        let ident = Ident {
            workspace: spec.workspace.clone(),
            app_id: spec.app_id.clone(),
            session_id: spec.id.clone(),
            service_id: service_id.clone(),
        };
        let table = Arc::new(Table::new(ident, deployments, config));
        let mcp = mcp_endpoint(config, &spec, secrets, &table)?;
        let cache = crate::cache::ResponseCache::new(&table.settings).map(Arc::new);
        let pass_through = pass_through_endpoints(config, spec.public_only, secrets)?;
        Ok(Session {
            spend_names: crate::observability::spend_log::SpendNames::new(&spec.workspace, &spec.app_id, &service_id),
            id: spec.id,
            app_id: spec.app_id,
            workspace: spec.workspace,
            service_id,
            visibility: config.visibility.unwrap_or_default(),
            created: spec.created,
            master_key,
            table,
            mcp,
            cache,
            pass_through,
        })
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
            models: self.table.model_names.clone(),
            status: "running",
        }
    }
}

/// One deployment of `entry`, calling `model` (the entry's own, or one a catch-all stands for).
/// One that cannot be called is kept with the reason in `unavailable`.
fn deployment(
    entry: &crate::manifest::ModelEntry,
    model: &str,
    id: String,
    spec: &SessionSpec<'_>,
    secrets: &dyn SecretSource,
) -> Result<Deployment, StartError> {
    let p = &entry.litellm_params;
    // A deployment that cannot be called (as litellm, which starts such a config and
    // fails the deployment's requests) is kept with the reason, and the app starts.
    let mut unavailable = None;
    // Where litellm reads a key or base URL the deployment does not set: the server's
    // environment, for apps the operator trusts (never a workspace's own app).
    let (mut key_env, mut base_env): (&[&str], Option<&str>) = (&[], None);
    let (provider, upstream_model, default_base, chat_only) = if p.mock_response.is_some() {
        (Provider::Mock, model.to_owned(), None, false)
    } else if let Some(r) = resolve_model(model) {
        if !spec.public_only {
            (key_env, base_env) = (r.api_key_env, r.api_base_env);
        }
        (r.provider, r.upstream_model, r.default_api_base, r.chat_only)
    } else {
        unavailable = Some(StartError::UnknownProvider(model.to_owned()).to_string());
        (Provider::OpenAi, model.to_owned(), None, false)
    };
    // Values that end up in the upstream URL keep to their grammars once resolved (a
    // secret may hold any text): none may move a request to another host or path.
    let invalid = |field: &'static str, reason: String| StartError::InvalidValue(id.clone(), field, reason);
    let aws = match provider {
        Provider::Bedrock => absent_is_unavailable(resolve_aws(p, secrets), &mut unavailable)?,
        _ => None,
    };
    if let Some(aws) = &aws {
        grammar::aws_region(&aws.region).map_err(|r| invalid("aws_region_name", r))?;
    }
    let azure = provider == Provider::Azure;
    let api_version = resolve_opt(&p.api_version, secrets)?
        .or_else(|| azure.then(|| secrets.env("AZURE_API_VERSION")).flatten().filter(|_| !spec.public_only))
        .or_else(|| azure.then(|| DEFAULT_AZURE_API_VERSION.to_owned()));
    if let Some(version) = &api_version {
        grammar::api_version(version).map_err(|r| invalid("api_version", r))?;
    }
    if provider != Provider::Mock && unavailable.is_none() {
        grammar::upstream_model(&upstream_model).map_err(|r| invalid("model", r))?;
    }
    let vertex = if matches!(provider, Provider::VertexAi | Provider::VertexAiAnthropic) {
        absent_is_unavailable(resolve_vertex(p, secrets, spec.public_only, &id), &mut unavailable)?
    } else {
        None
    };
    let api_base = match (resolve_opt(&p.api_base, secrets)?, &aws, &vertex) {
        (Some(base), _, _) => Some(base),
        (None, Some(aws), _) => Some(format!("https://bedrock-runtime.{}.amazonaws.com", aws.region)),
        (None, None, Some(vertex)) => Some(crate::providers::vertex::api_base(&vertex.location)),
        (None, None, None) => base_env.and_then(|v| secrets.env(v)).or(default_base.map(str::to_owned)),
    };
    let extra_headers = upstream_headers(p, provider, secrets, &id)?;
    Ok(Deployment {
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
            let from_env = || key_env.iter().find_map(|v| secrets.env(v));
            resolve_opt(&p.api_key, secrets)?.or_else(from_env).map(Secret::new)
        },
        api_version,
        aws,
        vertex,
        mock_response: p.mock_response.clone(),
        chat_only: p.use_chat_completions_api.unwrap_or(chat_only),
        params: p.clone(),
        model_info: entry.model_info.clone(),
        credential_headers: Default::default(),
        id_header: Default::default(),
        upstream_model_json: Default::default(),
        extra_headers,
        unavailable,
        catch_all: None,
    })
}

/// Whether an entry is litellm's catch-all, `model: "*"`: any model a client names, sent to the
/// provider its name tells (`claude-3-5-haiku` to Anthropic, `groq/llama-3` to Groq).
fn is_catch_all(p: &LitellmParams) -> bool {
    p.model == "*" && p.mock_response.is_none()
}

/// A catch-all entry as deployments: one per provider prefix the entry or (for an app the
/// operator trusts) the server's environment holds credentials for, each serving the requested
/// models that name its provider (`Deployment::catch_all_serves`). With none, one deployment
/// that says so, so that the app starts and its requests get 503.
fn catch_all(
    entry: &crate::manifest::ModelEntry,
    spec: &SessionSpec<'_>,
    secrets: &dyn SecretSource,
    first: usize,
) -> Result<Vec<Deployment>, StartError> {
    let mut built = Vec::new();
    for (prefix, model) in crate::catalogue::providers::catch_all_models() {
        let id = format!("{}/{}", entry.model_name, first + built.len());
        match deployment(entry, &model, id, spec, secrets) {
            Ok(mut d) if d.unavailable.is_none() && reachable(&d, prefix) => {
                d.catch_all = Some(prefix);
                built.push(d);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(app = %spec.app_id, model = %entry.model_name, "catch-all: {prefix}/ left out: {e}")
            }
        }
    }
    if built.is_empty() {
        let id = format!("{}/{first}", entry.model_name);
        let mut d = deployment(entry, "*", id, spec, secrets)?;
        let reason =
            "a catch-all (model: \"*\") with no provider's credentials in the config or the server's environment";
        tracing::warn!(app = %spec.app_id, deployment = %d.id, "left out: {reason}; its requests get 503");
        d.unavailable = Some(reason.to_owned());
        built.push(d);
    }
    let prefixes: Vec<&str> = built.iter().filter_map(|d| d.catch_all).collect();
    tracing::info!(app = %spec.app_id, model = %entry.model_name, "catch-all serves the models of: {}", prefixes.join(", "));
    Ok(built)
}

/// Whether a catch-all's deployment for `prefix` can be called at all: it has a base URL and
/// credentials, or (a local server such as Ollama) a base URL the config or environment set.
fn reachable(d: &Deployment, prefix: &str) -> bool {
    let default_base = crate::catalogue::providers::default_api_base(prefix);
    let bearer = d.extra_headers.iter().any(|(name, _)| name == "authorization"); // Azure's AD token
    let credentials = d.api_key.is_some() || d.aws.is_some() || d.vertex.is_some() || bearer;
    d.api_base.is_some() && (credentials || d.api_base.as_deref() != default_base)
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

/// The app's MCP endpoint: each server's `url`, `auth_value` and header values resolved,
/// and its final `url` checked against the address guard when the app is untrusted.
fn mcp_endpoint(
    config: &crate::manifest::ProxyConfig,
    spec: &SessionSpec<'_>,
    secrets: &dyn SecretSource,
    table: &Table,
) -> Result<Option<Arc<crate::mcp::Endpoint>>, StartError> {
    if config.mcp_servers.is_empty() {
        return Ok(None);
    }
    let mut upstreams = Vec::with_capacity(config.mcp_servers.len());
    let public_only = spec.public_only;
    for (name, server) in &config.mcp_servers {
        let url = resolve_opt(&Some(server.url.clone()), secrets)?.unwrap_or_default();
        if public_only {
            crate::transport::guard::check_url(&url).map_err(|r| StartError::PrivateMcpServer(name.clone(), r))?;
        }
        let auth_value = resolve_opt(&server.auth_value, secrets)?;
        let mut headers = Vec::with_capacity(server.headers.len());
        for (key, value) in &server.headers {
            headers.push((key.clone(), resolve_opt(&Some(value.clone()), secrets)?.unwrap_or_default()));
        }
        let upstream = crate::mcp::Upstream::new(name, server, url, auth_value, headers)
            .map_err(|e| StartError::InvalidMcpServer(name.clone(), e.to_string()))?;
        upstreams.push(upstream);
    }
    let gateway = crate::mcp::Gateway::new(
        upstreams,
        spec.mcp_http.clone(),
        public_only,
        table.logs.clone(),
        table.labels.owner(),
    );
    Ok(Some(Arc::new(crate::mcp::Endpoint::new(gateway))))
}

/// The headers litellm puts on a deployment's every call besides its key: `extra_headers`,
/// OpenAI's `organization`, and Azure's `azure_ad_token` (as a bearer token, when no key is
/// set). A header name HTTP does not allow is left out with a warning, as litellm's client
/// would fail on it at request time.
fn upstream_headers(
    p: &LitellmParams,
    provider: Provider,
    secrets: &dyn SecretSource,
    id: &str,
) -> Result<Vec<(String, Secret)>, StartError> {
    let text = |key: &str| p.extra.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
    let mut headers = Vec::new();
    for (name, value) in p.extra.get("extra_headers").and_then(serde_json::Value::as_object).into_iter().flatten() {
        let Some(value) = value.as_str().map(str::to_owned).or_else(|| value.as_number().map(|n| n.to_string())) else {
            continue;
        };
        let value = resolve_opt(&Some(value), secrets)?.unwrap_or_default();
        let valid = axum::http::HeaderName::try_from(name.as_str()).is_ok()
            && axum::http::HeaderValue::from_str(&value).is_ok();
        if valid {
            headers.push((name.to_ascii_lowercase(), Secret::new(value)));
        } else {
            tracing::warn!(deployment = %id, "extra_headers.{name}: not a valid HTTP header; left out");
        }
    }
    if matches!(provider, Provider::OpenAi | Provider::Azure) {
        if let Some(org) = resolve_opt(&text("organization"), secrets)? {
            headers.push(("openai-organization".into(), Secret::new(org)));
        }
    }
    if provider == Provider::Azure && p.api_key.is_none() {
        if let Some(token) = resolve_opt(&text("azure_ad_token"), secrets)? {
            headers.push(("authorization".into(), Secret::new(format!("Bearer {token}"))));
        }
    }
    Ok(headers)
}

/// `general_settings.pass_through_endpoints` with their secrets resolved, and each target
/// checked against the address guard when the app is untrusted.
fn pass_through_endpoints(
    config: &crate::manifest::ProxyConfig,
    public_only: bool,
    secrets: &dyn SecretSource,
) -> Result<Vec<crate::passthrough::configured::Endpoint>, StartError> {
    use crate::passthrough::configured;
    let specs = configured::specs(config.extra.get("general_settings"))?;
    if !specs.is_empty() {
        configured::note_some();
    }
    let mut endpoints = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let target = resolve_opt(&Some(spec.target.clone()), secrets)?.unwrap_or_default();
        configured::check_target(&target).map_err(|reason| configured::SpecError { index, field: "target", reason })?;
        if public_only {
            crate::transport::guard::check_url(&target)
                .map_err(|r| StartError::PrivatePassThrough(spec.path.clone(), r))?;
        }
        let mut headers = Vec::with_capacity(spec.headers.len());
        for (name, value) in &spec.headers {
            let value = match SecretRef::parse(value) {
                Some(_) => resolve_opt(&Some(value.clone()), secrets)?.unwrap_or_default(),
                None => configured::resolve_embedded(value, |var| secrets.env(var)).map_err(StartError::MissingEnv)?,
            };
            headers.push((name.to_ascii_lowercase(), value));
        }
        endpoints.push(configured::Endpoint {
            path: spec.path,
            target,
            headers,
            forward_headers: spec.forward_headers,
            include_subpath: spec.include_subpath,
            public_only,
        });
    }
    Ok(endpoints)
}

/// Resolves every secret reference of `p` (and forgets the values): one that names a missing
/// variable or workspace secret fails the start, naming it.
fn check_references(p: &LitellmParams, secrets: &dyn SecretSource) -> Result<(), StartError> {
    let Ok(serde_json::Value::Object(params)) = serde_json::to_value(p) else { return Ok(()) };
    for value in params.values().filter_map(serde_json::Value::as_str) {
        resolve_opt(&Some(value.to_owned()), secrets)?;
    }
    Ok(())
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
