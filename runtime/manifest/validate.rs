//! Manifest validation: the JSON Schema first, then the checks a schema cannot express.
//!
//! Every problem is reported, not only the first, each with the JSON pointer of the value it
//! concerns. Errors block install; warnings (a literal API key in the file) do not.

use super::Manifest;
use crate::catalogue::providers::{known_prefixes, prefix_models, resolve_model};
use crate::grammar;
use crate::schema_check::{self, Violation};
use jsonschema::Validator;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() { "/" } else { &self.pointer };
        match self.severity {
            Severity::Error => write!(f, "{at}: {}", self.message),
            Severity::Warning => write!(f, "{at}: warning: {}", self.message),
        }
    }
}

impl From<Violation> for Finding {
    fn from(v: Violation) -> Self {
        Finding { severity: Severity::Error, pointer: v.pointer, message: v.reason }
    }
}

/// A manifest that passed validation, with the warnings it raised.
#[derive(Debug, Clone)]
pub struct Validated {
    pub manifest: Manifest,
    pub warnings: Vec<Finding>,
}

/// Why a manifest was refused: every finding, errors first.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid manifest: {}", summary(.findings))]
pub struct Invalid {
    pub findings: Vec<Finding>,
}

fn summary(findings: &[Finding]) -> String {
    findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.to_string()).collect::<Vec<_>>().join("; ")
}

/// Reading a manifest file failed before validation could start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not valid JSON or YAML: {0}")]
    Parse(String),
}

/// Parses manifest text as JSON, or as YAML when it is not JSON (its scalars read as litellm's
/// YAML 1.1 reader reads them where the schema wants numbers or booleans).
pub fn parse_text(text: &str) -> Result<Value, LoadError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            if text.trim_start().starts_with('{') {
                return Err(LoadError::Parse(format!("JSON: {json_err}")));
            }
            let mut doc: Value = serde_yaml::from_str(text).map_err(|e| LoadError::Parse(format!("YAML: {e}")))?;
            let litellm_config = super::litellm::is_litellm_config(&doc);
            super::yaml11::coerce(&mut doc, litellm_config);
            Ok(doc)
        }
    }
}

/// Reads and parses a manifest file (`.json`, `.yaml`, `.yml`, or either by content).
pub fn load_file(path: &Path) -> Result<Value, LoadError> {
    parse_text(&std::fs::read_to_string(path)?)
}

/// [`load_file`], with a litellm proxy config turned into the manifest it stands for, as
/// `serve --config` runs it.
pub fn load_manifest_file(path: &Path) -> Result<Value, LoadError> {
    let doc = load_file(path)?;
    Ok(if super::litellm::is_litellm_config(&doc) { super::litellm::to_manifest(&doc, "litellm") } else { doc })
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| schema_check::compile(&super::json_schema()).expect("the generated manifest schema compiles"))
}

/// Validates a parsed manifest: schema, then semantic checks; all findings at once.
pub fn validate(doc: &Value) -> Result<Validated, Invalid> {
    let mut findings: Vec<Finding> =
        schema_check::violations(validator(), doc).into_iter().map(Finding::from).collect();
    semantic_checks(doc, &mut findings);
    if findings.iter().any(|f| f.severity == Severity::Error) {
        findings.sort_by_key(|f| f.severity == Severity::Warning);
        return Err(Invalid { findings });
    }
    match serde_json::from_value::<Manifest>(doc.clone()) {
        Ok(manifest) => Ok(Validated { manifest, warnings: findings }),
        Err(e) => Err(Invalid {
            findings: vec![Finding { severity: Severity::Error, pointer: String::new(), message: e.to_string() }],
        }),
    }
}

/// Keys whose values are credentials: literal values there draw a warning.
const SECRET_KEYS: &[&str] = &["api_key", "aws_secret_access_key", "aws_session_token", "aws_access_key_id"];

fn semantic_checks(doc: &Value, out: &mut Vec<Finding>) {
    let mut error =
        |pointer: String, message: String| out.push(Finding { severity: Severity::Error, pointer, message });
    let config = &doc["config"];

    let mut model_names = Vec::new();
    match config["model_list"].as_array() {
        Some(list) if list.is_empty() => error("/config/model_list".into(), "is empty: list at least one model".into()),
        Some(list) => {
            for (i, entry) in list.iter().enumerate() {
                if let Some(name) = entry["model_name"].as_str() {
                    model_names.push(name.to_owned());
                }
                check_params(&format!("/config/model_list/{i}/litellm_params"), &entry["litellm_params"], &mut error);
            }
        }
        None => {}
    }

    const FALLBACK_LISTS: [&str; 3] = ["fallbacks", "context_window_fallbacks", "content_policy_fallbacks"];
    for settings in ["litellm_settings", "router_settings"] {
        for list in FALLBACK_LISTS {
            for (i, rule) in config[settings][list].as_array().into_iter().flatten().enumerate() {
                for (from, targets) in rule.as_object().into_iter().flatten() {
                    for target in
                        targets.as_array().into_iter().flatten().filter_map(Value::as_str).chain(Some(from.as_str()))
                    {
                        if !model_names.iter().any(|m| m == target) {
                            error(
                                format!("/config/{settings}/{list}/{i}"),
                                format!("{target:?} is not a model_name of this app"),
                            );
                        }
                    }
                }
            }
        }
        for (alias, target) in config[settings]["model_group_alias"].as_object().into_iter().flatten() {
            let group = target.as_str().or_else(|| target["model"].as_str()).unwrap_or_default();
            if !model_names.iter().any(|m| m == group) {
                error(
                    format!("/config/{settings}/model_group_alias/{}", escape_pointer(alias)),
                    format!("{group:?} is not a model_name of this app"),
                );
            }
        }
    }

    if let Err(e) = super::pass_through::specs(config.get("general_settings")) {
        error(e.pointer(), e.to_string());
    }
    for (i, target) in super::pass_through::python_adapters(config.get("general_settings")) {
        out.push(Finding {
            severity: Severity::Warning,
            pointer: format!("/config/general_settings/pass_through_endpoints/{i}/target"),
            message: format!(
                "{target:?} is a Python adapter (or a URL without its scheme): ferrolite runs no Python, so this \
                 endpoint is left out and its path answered as if it were absent"
            ),
        });
    }

    // Warnings last, so they never hide an error.
    ignored_settings(config, out);
    cache_params(config, out);
    unknown_providers(config, out);
    for (i, entry) in config["model_list"].as_array().into_iter().flatten().enumerate() {
        for key in SECRET_KEYS {
            if let Some(v) = entry["litellm_params"][*key].as_str() {
                if !v.is_empty() && !v.starts_with("os.environ/") && !v.starts_with("HYPHA_SECRET:") {
                    out.push(Finding {
                        severity: Severity::Warning,
                        pointer: format!("/config/model_list/{i}/litellm_params/{key}"),
                        message:
                            "a literal credential is written in the manifest; prefer os.environ/VAR or HYPHA_SECRET:KEY"
                                .into(),
                    });
                }
            }
        }
    }
}

/// The settings keys ferrolite reads are the typed fields of its settings (as the generated
/// schema lists them); every other key of these sections is kept but ignored, which install and
/// `validate` say, one warning each.
fn ignored_settings(config: &Value, out: &mut Vec<Finding>) {
    static SECTIONS: OnceLock<[(&str, Vec<String>); 3]> = OnceLock::new();
    let sections = SECTIONS.get_or_init(|| {
        let schema = super::json_schema();
        let fields = |def: &str| -> Vec<String> {
            schema["$defs"][def]["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
        };
        [
            ("litellm_settings", fields("LitellmSettings")),
            ("router_settings", fields("RoutingSettings")),
            (
                "general_settings",
                ["master_key", "background_health_checks", "health_check_interval", "pass_through_endpoints"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ]
    });
    for (section, honoured) in sections {
        for key in config[*section].as_object().into_iter().flat_map(|m| m.keys()) {
            if !honoured.contains(key) {
                let hint = hint(key).map(|h| format!(" ({h})")).unwrap_or_default();
                out.push(Finding {
                    severity: Severity::Warning,
                    pointer: format!("/config/{section}/{}", escape_pointer(key)),
                    message: format!("{section}.{key} is not a setting ferrolite honours; it is ignored{hint}"),
                });
            }
        }
    }
    // A litellm config's other top-level sections (guardrails, credential_list, ...) come
    // along into `config`; ferrolite reads none of them.
    const READ: &[&str] = &[
        "service_id",
        "visibility",
        "model_list",
        "litellm_settings",
        "router_settings",
        "general_settings",
        "environment_variables",
        "mcp_servers",
    ];
    for key in config.as_object().into_iter().flat_map(|m| m.keys()) {
        if !READ.contains(&key.as_str()) {
            let hint = hint(key).map(|h| format!(" ({h})")).unwrap_or_default();
            out.push(Finding {
                severity: Severity::Warning,
                pointer: format!("/config/{}", escape_pointer(key)),
                message: format!("{key} is not a section ferrolite honours; it is ignored{hint}"),
            });
        }
    }
}

/// `cache_params` keys the response cache does not read: Redis connection fields (the cache
/// uses the server's `--redis-url`) and litellm's other options, one warning each.
fn cache_params(config: &Value, out: &mut Vec<Finding>) {
    static READ: OnceLock<Vec<String>> = OnceLock::new();
    let read = READ.get_or_init(|| {
        let schema = super::json_schema();
        schema["$defs"]["CacheParams"]["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    });
    let params = &config["litellm_settings"]["cache_params"];
    for key in params.as_object().into_iter().flat_map(|m| m.keys()) {
        if read.contains(key) {
            continue;
        }
        let why = match key.as_str() {
            "host" | "port" | "password" | "username" | "url" | "redis_url" | "ssl" => {
                "the redis cache uses the server's --redis-url"
            }
            _ => "ferrolite's cache does not read it",
        };
        out.push(Finding {
            severity: Severity::Warning,
            pointer: format!("/config/litellm_settings/cache_params/{}", escape_pointer(key)),
            message: format!("cache_params.{key} is ignored: {why}"),
        });
    }
    if let Some(kind) = params["type"].as_str() {
        let served =
            serde_json::from_value::<super::CacheType>(Value::from(kind)).is_ok_and(super::CacheType::is_served);
        if !served {
            out.push(Finding {
                severity: Severity::Warning,
                pointer: "/config/litellm_settings/cache_params/type".into(),
                message: format!(
                    "a {kind} cache is not supported: answers are cached in memory by exact match instead (type local, or redis to share them)"
                ),
            });
        }
    }
    for (i, kind) in params["supported_call_types"].as_array().into_iter().flatten().enumerate() {
        let cached = serde_json::from_value::<super::CallType>(kind.clone()).is_ok_and(super::CallType::is_cached);
        if !cached {
            out.push(Finding {
                severity: Severity::Warning,
                pointer: format!("/config/litellm_settings/cache_params/supported_call_types/{i}"),
                message: format!(
                    "{kind} calls are not cached: ferrolite caches completion, text_completion and embedding calls"
                ),
            });
        }
    }
}

/// What to use instead of a litellm setting ferrolite does not honour, where there is something.
fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "success_callback" | "failure_callback" | "callbacks" | "service_callback" | "callback_settings" => {
            "callbacks are not supported: traces go to --otlp-endpoint, spend to the spend log, read by get_spend_logs"
        }
        "database_url" => "ferrolite keeps its state in --data-dir (or --database-url), shared state in --redis-url",
        "guardrails" => "guardrails are not supported",
        "alerting" | "alerting_threshold" => "alerting is not supported; scrape /metrics",
        "store_model_in_db" | "credential_list" => "models and credentials come from the config and secrets only",
        _ => return None,
    })
}

/// Deployments whose provider ferrolite cannot tell: litellm starts such a config and fails
/// the deployment's requests, and so does ferrolite (503 naming it); the rest of the app serves.
fn unknown_providers(config: &Value, out: &mut Vec<Finding>) {
    for (i, entry) in config["model_list"].as_array().into_iter().flatten().enumerate() {
        let params = &entry["litellm_params"];
        let Some(model) = params["model"].as_str() else { continue };
        if params.get("mock_response").is_some_and(|v| !v.is_null()) || resolve_model(model).is_some() {
            continue;
        }
        if model == "*" {
            continue; // a catch-all: served through the providers it finds credentials for
        }
        let serves_some = model.split_once('/').map(|(prefix, _)| (prefix, prefix_models(prefix)));
        let message = match serves_some.filter(|(_, starts)| !starts.is_empty()) {
            Some((prefix, starts)) => format!(
                "{prefix}/ serves models starting with {} here; {model:?} is not one of them (others are not built): this deployment is left out and its requests get 503",
                starts.join(" or ")
            ),
            None => format!(
                "cannot tell the provider of {model:?}: this deployment is left out and its requests get 503 (prefix it with one of {}, e.g. openai/{model}, or use a known model name such as gpt-*, claude-*, gemini-*)",
                known_prefixes()
            ),
        };
        out.push(Finding {
            severity: Severity::Warning,
            pointer: format!("/config/model_list/{i}/litellm_params/model"),
            message,
        });
    }
}

/// A key as a JSON pointer token (RFC 6901).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn check_params(at: &str, params: &Value, error: &mut impl FnMut(String, String)) {
    let Some(map) = params.as_object() else {
        return;
    };
    for (key, value) in map {
        if let Some(s) = value.as_str() {
            if let Err(reason) = check_reference(s) {
                error(format!("{at}/{key}"), reason);
            }
        }
    }
    let mocked = map.get("mock_response").is_some_and(|v| !v.is_null());
    let Some(model) = map.get("model").and_then(Value::as_str) else {
        return;
    };
    if mocked {
        return; // a mock deployment never calls a provider, so any model string will do
    }
    // Values pasted into upstream URLs keep to their grammars (references are checked once
    // resolved, at start).
    let literal = |key: &str| map.get(key).and_then(Value::as_str).filter(|v| SecretRef::parse(v).is_none());
    if let Some(region) = literal("aws_region_name") {
        if let Err(reason) = grammar::aws_region(region) {
            error(format!("{at}/aws_region_name"), reason);
        }
    }
    if let Some(version) = literal("api_version") {
        if let Err(reason) = grammar::api_version(version) {
            error(format!("{at}/api_version"), reason);
        }
    }
    if let Some(project) = literal("vertex_project") {
        if let Err(reason) = grammar::gcp_project(project) {
            error(format!("{at}/vertex_project"), reason);
        }
    }
    if let Some(location) = literal("vertex_location") {
        if let Err(reason) = grammar::gcp_location(location) {
            error(format!("{at}/vertex_location"), reason);
        }
    }
    // A model of no provider ferrolite knows is a warning (see `unknown_providers`).
    let Some(resolved) = resolve_model(model) else { return };
    if let Err(reason) = grammar::upstream_model(&resolved.upstream_model) {
        error(format!("{at}/model"), reason);
    }
    // Bedrock's and Vertex AI's bases are built from their region or location.
    use crate::catalogue::Provider;
    let builds_base = matches!(resolved.provider, Provider::Bedrock | Provider::VertexAi | Provider::VertexAiAnthropic);
    let needs_base = resolved.default_api_base.is_none() && !builds_base;
    if needs_base && map.get("api_base").and_then(Value::as_str).is_none_or(str::is_empty) {
        error(format!("{at}/api_base"), format!("{} models need an api_base", resolved.prefix));
    }
}

/// A reference to a secret, resolved when the app starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef<'a> {
    /// `os.environ/VAR`: the server's environment.
    Env(&'a str),
    /// `HYPHA_SECRET:KEY`: the workspace's secret store.
    Workspace(&'a str),
}

impl<'a> SecretRef<'a> {
    /// The reference `value` makes, if it is a well-formed one.
    pub fn parse(value: &'a str) -> Option<SecretRef<'a>> {
        if let Some(var) = value.strip_prefix("os.environ/") {
            return is_identifier(var).then_some(SecretRef::Env(var));
        }
        if let Some(key) = value.strip_prefix("HYPHA_SECRET:") {
            return is_identifier(key).then_some(SecretRef::Workspace(key));
        }
        None
    }
}

/// Checks that a value written as a reference is a well-formed one.
fn check_reference(value: &str) -> Result<(), String> {
    if (value.starts_with("os.environ/") || value.starts_with("HYPHA_SECRET:")) && SecretRef::parse(value).is_none() {
        let (kind, name) = value.split_once(['/', ':']).unwrap_or((value, ""));
        return Err(format!(
            "malformed {kind} reference {name:?}: the name must be letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(doc: Value) -> Vec<String> {
        match validate(&doc) {
            Ok(_) => vec![],
            Err(e) => e.findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let found = errors(json!({
            "name": "x", "type": "llm-proxy",
            "config": {
                "service_id": "bad id/slash",
                "model_list": [
                    {"model_name": "a", "litellm_params": {"model": "gpt-4", "api_key": "os.environ/1BAD"}},
                    {"model_name": "b", "litellm_params": {}},
                    {"model_name": "c", "litellm_params": {"model": "mystery"}}
                ],
                "litellm_settings": {"routing_strategy": "fastest"},
                "router_settings": {"model_group_alias": {"gpt-4": "a", "old": {"model": "gone", "hidden": true}}}
            }
        }));
        assert!(
            found.contains(
                &"/config/router_settings/model_group_alias/old: \"gone\" is not a model_name of this app".to_owned()
            ),
            "{found:?}"
        );
        assert!(
            found.contains(&"/config/model_list/1/litellm_params/model: required property missing".to_owned()),
            "{found:?}"
        );
        assert!(found.iter().any(|e| e.starts_with("/config/litellm_settings/routing_strategy: unknown value \"fastest\"; valid values: simple-shuffle, least-busy")), "{found:?}");
        assert!(
            found.iter().any(|e| e.starts_with("/config/service_id: \"bad id/slash\" is not URL-safe")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|e| e
                .starts_with("/config/model_list/0/litellm_params/api_key: malformed os.environ reference \"1BAD\"")),
            "{found:?}"
        );
        assert!(!found.iter().any(|e| e.contains("mystery")), "an unknown provider is a warning, not an error");
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn empty_model_list_and_wrong_type_are_errors() {
        let found = errors(json!({"name": "x", "type": "docker", "config": {"model_list": []}}));
        assert!(found.contains(&"/config/model_list: is empty: list at least one model".to_owned()), "{found:?}");
        assert!(
            found.iter().any(|e| e.starts_with("/type: unknown value \"docker\"; valid values: llm-proxy")),
            "{found:?}"
        );
    }

    #[test]
    fn a_model_of_no_known_provider_is_a_warning_naming_it() {
        let ok = validate(&json!({
            "name": "x", "type": "llm-proxy",
            "config": {"model_list": [
                {"model_name": "g", "litellm_params": {"model": "runwayml/gen4_turbo"}},
                {"model_name": "m", "litellm_params": {"model": "mystery", "mock_response": "hi"}}
            ]}
        }))
        .expect("valid: litellm starts it");
        assert_eq!(ok.warnings.len(), 1, "{:?}", ok.warnings);
        assert_eq!(ok.warnings[0].pointer, "/config/model_list/0/litellm_params/model");
        assert!(ok.warnings[0].message.starts_with(
            "cannot tell the provider of \"runwayml/gen4_turbo\": this deployment is left out and its requests get 503"
        ));
    }

    #[test]
    fn literal_key_is_a_warning_not_an_error() {
        let ok = validate(&json!({
            "name": "x", "type": "llm-proxy",
            "config": {"model_list": [{"model_name": "g", "litellm_params": {"model": "gpt-4", "api_key": "sk-live-123"}}]}
        }))
        .expect("valid");
        assert_eq!(ok.warnings.len(), 1);
        assert_eq!(ok.warnings[0].pointer, "/config/model_list/0/litellm_params/api_key");
        assert!(!ok.warnings[0].message.contains("sk-live"), "the key itself is never echoed");
    }

    #[test]
    fn references_parse() {
        assert_eq!(SecretRef::parse("os.environ/OPENAI_API_KEY"), Some(SecretRef::Env("OPENAI_API_KEY")));
        assert_eq!(SecretRef::parse("HYPHA_SECRET:openai"), Some(SecretRef::Workspace("openai")));
        assert_eq!(SecretRef::parse("os.environ/"), None);
        assert_eq!(SecretRef::parse("sk-123"), None);
    }
}
