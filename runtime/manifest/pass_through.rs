//! `general_settings.pass_through_endpoints` as a config writes it (litellm's shape: `path`,
//! `target`, `headers`, `forward_headers`, `include_subpath`), each entry checked; served by
//! `crate::passthrough::configured`.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One entry as the config writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointSpec {
    pub path: String,
    pub target: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub forward_headers: bool,
    #[serde(default)]
    pub include_subpath: bool,
}

/// An entry that cannot be served: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("general_settings.pass_through_endpoints[{index}].{field}: {reason}")]
pub struct SpecError {
    pub index: usize,
    pub field: &'static str,
    pub reason: String,
}

impl SpecError {
    /// The JSON pointer of the field under `/config`.
    pub fn pointer(&self) -> String {
        format!("/config/general_settings/pass_through_endpoints/{}/{}", self.index, self.field)
    }
}

/// The entries of a `general_settings` section ferrolite serves, each checked (secrets are
/// resolved when the app starts: a target given as a reference is checked then). An entry whose
/// target is a Python adapter is left out ([`python_adapters`] says which).
pub fn specs(general: Option<&Value>) -> Result<Vec<EndpointSpec>, SpecError> {
    let Some(list) = general.and_then(|g| g.get("pass_through_endpoints")) else { return Ok(Vec::new()) };
    let fail = |index, field, reason: String| SpecError { index, field, reason };
    let Some(list) = list.as_array() else {
        return Err(fail(0, "path", "pass_through_endpoints must be a list of {path, target, headers}".into()));
    };
    let mut specs: Vec<EndpointSpec> = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let spec: EndpointSpec = serde_json::from_value(entry.clone())
            .map_err(|e| fail(index, "path", format!("expected {{path, target, headers, forward_headers}}: {e}")))?;
        let path = spec.path.strip_prefix('/').ok_or_else(|| fail(index, "path", "must start with '/'".into()))?;
        crate::grammar::url_path(path).map_err(|reason| fail(index, "path", format!("{} {reason}", spec.path)))?;
        if is_python_adapter(&spec.target) {
            continue;
        }
        if specs.iter().any(|s| s.path == spec.path) {
            return Err(fail(index, "path", format!("{} is served by an earlier entry", spec.path)));
        }
        if super::validate::SecretRef::parse(&spec.target).is_none() {
            check_target(&spec.target).map_err(|reason| fail(index, "target", reason))?;
        }
        for name in spec.headers.keys() {
            axum::http::HeaderName::try_from(name.as_str())
                .map_err(|_| fail(index, "headers", format!("{name:?} is not a header name")))?;
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// The entries whose target is a Python adapter (`custom_callbacks.anthropic_adapter`, litellm's
/// custom pass-through handlers): ferrolite cannot run them, so they are left out with a warning
/// and their path is served as if they were absent (by the catalogue, when it has the route).
pub fn python_adapters(general: Option<&Value>) -> Vec<(usize, String)> {
    let list = general.and_then(|g| g.get("pass_through_endpoints")).and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, entry)| {
            let target = entry.get("target")?.as_str()?;
            is_python_adapter(target).then(|| (i, target.to_owned()))
        })
        .collect()
}

/// A dotted Python path (`module.attribute`), which no URL is.
fn is_python_adapter(target: &str) -> bool {
    let ident = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    target.contains('.') && !target.contains("://") && target.split('.').all(ident)
}

/// A target is an absolute http(s) URL without credentials or a fragment.
pub fn check_target(target: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(target).map_err(|e| format!("{target:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{target:?} must be an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(format!("{target:?} may not hold credentials or a fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_checked_with_the_field_that_is_wrong() {
        let general = |entry: Value| json!({"pass_through_endpoints": [entry]});
        let ok = specs(Some(&general(json!({"path": "/v1/rerank", "target": "https://api.cohere.com/v1/rerank",
            "headers": {"Authorization": "bearer os.environ/COHERE_API_KEY"}, "forward_headers": true}))));
        assert_eq!(ok.unwrap()[0].headers["Authorization"], "bearer os.environ/COHERE_API_KEY");
        for (entry, field) in [
            (json!({"path": "v1/x", "target": "https://h/x"}), "path"),
            (json!({"path": "/v1/../x", "target": "https://h/x"}), "path"),
            (json!({"path": "/x", "target": "ftp://h/x"}), "target"),
            (json!({"path": "/x", "target": "https://u:p@h/x"}), "target"),
            (json!({"path": "/x", "target": "https://h/x", "headers": {"bad name": "v"}}), "headers"),
        ] {
            let e = specs(Some(&general(entry.clone()))).unwrap_err();
            assert_eq!(e.field, field, "{entry}: {e}");
        }
        assert!(
            specs(Some(&json!({"pass_through_endpoints": [{"path": "/x", "target": "os.environ/TARGET"}]}))).is_ok()
        );
        // A Python adapter is left out, and said so; a bare word is still no URL.
        let adapter =
            json!({"pass_through_endpoints": [{"path": "/v1/messages", "target": "custom_callbacks.adapter"}]});
        assert!(specs(Some(&adapter)).unwrap().is_empty());
        assert_eq!(python_adapters(Some(&adapter)), [(0, "custom_callbacks.adapter".to_owned())]);
        assert!(specs(Some(&general(json!({"path": "/x", "target": "localhost"})))).is_err());
    }
}
