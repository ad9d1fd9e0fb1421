//! `general_settings.pass_through_endpoints`, as litellm reads it: each entry a `path` the app
//! answers (under its URL, and at the root for a litellm config), the `target` URL it is sent
//! to, `headers` put on it (values may name secrets: `os.environ/VAR`, also inside a value such
//! as `bearer os.environ/KEY`), `forward_headers` to send the client's own headers too, and
//! `include_subpath` to serve every path under `path`.
//!
//! Unlike litellm, where such an endpoint is open unless it sets `auth: true`, ferrolite asks
//! for the same token as the app's other routes: a target's credentials are never handed to
//! callers the app does not know.

use super::{checked_path, PassThroughError};
pub use crate::manifest::pass_through::{check_target, specs, EndpointSpec, SpecError};

/// An entry ready to serve: its target and header values resolved.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub path: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub forward_headers: bool,
    pub include_subpath: bool,
    /// Only public addresses may be connected to (an untrusted app's).
    pub public_only: bool,
}

impl Endpoint {
    /// The part of `path` under this endpoint (`""` for the path itself), if it serves it.
    pub fn serves<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(self.path.trim_end_matches('/'))?;
        match rest.strip_prefix('/') {
            None if rest.is_empty() => Some(""),
            Some(sub) if self.include_subpath && !sub.is_empty() => Some(sub),
            _ => None,
        }
    }

    /// The URL a call to `sub` (see [`Endpoint::serves`]) goes to, with the client's `query`
    /// after the target's own.
    pub fn url(&self, sub: &str, query: Option<&str>) -> Result<String, PassThroughError> {
        let mut url = self.target.clone();
        if !sub.is_empty() {
            let sub = checked_path(sub)?;
            let (stem, own_query) = match url.split_once('?') {
                Some((stem, q)) => (stem.trim_end_matches('/').to_owned(), Some(q.to_owned())),
                None => (url.trim_end_matches('/').to_owned(), None),
            };
            url = format!("{stem}/{sub}");
            if let Some(q) = own_query {
                url = format!("{url}?{q}");
            }
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            if q.contains('#') {
                return Err(PassThroughError::BadPath { path: q.to_owned(), reason: "a query may not hold '#'" });
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(q);
        }
        Ok(url)
    }
}

/// Whether any app ever started with pass-through endpoints: until one does, the front door
/// does not look for them.
static ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn any() -> bool {
    ANY.load(std::sync::atomic::Ordering::Relaxed)
}

/// Notes that an app has pass-through endpoints (see [`any`]).
pub fn note_some() {
    ANY.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The endpoint of `endpoints` that serves `path`, with the part of the path under it.
pub fn find<'e, 'p>(endpoints: &'e [Endpoint], path: &'p str) -> Option<(&'e Endpoint, &'p str)> {
    endpoints.iter().find_map(|e| e.serves(path).map(|sub| (e, sub)))
}

/// `value` with every `os.environ/NAME` in it replaced by the variable `env` gives (NAME:
/// letters, digits and `_`); `Err(NAME)` for one it does not have.
pub fn resolve_embedded(value: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    const MARK: &str = "os.environ/";
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let name = &after[..end];
        out.push_str(&env(name).ok_or_else(|| name.to_owned())?);
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_serves_its_path_and_with_include_subpath_what_is_under_it() {
        let mut e = Endpoint {
            path: "/custom".into(),
            target: "https://h/base?v=1".into(),
            headers: vec![],
            forward_headers: false,
            include_subpath: false,
            public_only: true,
        };
        assert_eq!(e.serves("/custom"), Some(""));
        assert_eq!(e.serves("/custom/x"), None);
        assert_eq!(e.serves("/customer"), None);
        e.include_subpath = true;
        assert_eq!(e.serves("/custom/a/b"), Some("a/b"));
        assert_eq!(e.url("a/b", Some("q=2")).unwrap(), "https://h/base/a/b?v=1&q=2");
        assert!(e.url("../x", None).is_err());
    }

    #[test]
    fn secrets_inside_a_value_are_resolved_and_a_missing_one_is_named() {
        let env = |n: &str| (n == "KEY").then(|| "sk-1".to_owned());
        assert_eq!(resolve_embedded("bearer os.environ/KEY", env).unwrap(), "bearer sk-1");
        assert_eq!(resolve_embedded("plain", env).unwrap(), "plain");
        assert_eq!(resolve_embedded("x os.environ/NOPE y", env).unwrap_err(), "NOPE");
    }
}
