//! litellm's pass-through routes. A client calls a provider's own API through the app
//! (`/anthropic/v1/messages`, `/gemini/v1beta/models/M:generateContent`,
//! `/bedrock/model/M/converse`, ...) and the app sends the call on as it came, but for the
//! credentials: the caller's token is taken off and the credentials of one of the app's
//! deployments of that provider are put on (a SigV4 signature made anew for Bedrock, a Google
//! token for Vertex AI). And `general_settings.pass_through_endpoints` (`configured.rs`): fixed
//! paths forwarded to a target URL with the headers the config sets.
//!
//! This module decides where a call goes and what it carries; the door (`http/passthrough.rs`)
//! admits, budgets, sends and accounts.

pub mod configured;

use crate::exchange::ApiError;
use crate::providers::{Deployment, Provider};
use crate::router::table::Table;
use axum::http::{HeaderMap, StatusCode};

/// The provider routes, as litellm names them (`/{name}/...`).
pub const ROUTES: &[&str] = &["openai", "azure", "anthropic", "gemini", "vertex_ai", "bedrock", "cohere", "mistral"];

/// Why a pass-through call cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum PassThroughError {
    #[error("this app has no {route} deployment to pass /{route}/* through with: add one to its model_list")]
    NoDeployment { route: &'static str },
    #[error("every {route} deployment of this app is unavailable ({reason}): /{route}/* cannot be passed through")]
    Unavailable { route: &'static str, reason: String },
    #[error("the path {path:?} cannot be passed through: {reason}")]
    BadPath { path: String, reason: &'static str },
}

impl From<PassThroughError> for ApiError {
    fn from(e: PassThroughError) -> ApiError {
        match &e {
            PassThroughError::NoDeployment { .. } => ApiError::not_found(e.to_string()),
            PassThroughError::Unavailable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "deployment_unavailable", e.to_string())
            }
            PassThroughError::BadPath { .. } => ApiError::bad_request(e.to_string()),
        }
    }
}

/// The route's name as a static string (`None` for a name that is not a provider route).
pub fn route_name(name: &str) -> Option<&'static str> {
    ROUTES.iter().copied().find(|r| *r == name)
}

/// Whether deployment `d` serves provider route `route`: by its provider, or (for the
/// OpenAI-compatible hosts litellm routes by prefix, such as `mistral/`) its model's prefix.
pub fn serves(route: &str, d: &Deployment) -> bool {
    let prefix = d.params.model.split_once('/').map(|(p, _)| p);
    match route {
        "openai" => d.provider == Provider::OpenAi && prefix.is_none_or(|p| p == "openai"),
        "vertex_ai" => matches!(d.provider, Provider::VertexAi | Provider::VertexAiAnthropic),
        "mistral" => prefix == Some("mistral"),
        _ => d.provider.as_str() == route,
    }
}

/// The deployment a call to provider route `route` goes through: one of the app's deployments
/// of that provider that can be called, the one whose model the call names (in its path, or
/// its body's `model`) if there is one.
pub fn pick(table: &Table, route: &'static str, path: &str, model: Option<&str>) -> Result<usize, PassThroughError> {
    let of_route: Vec<usize> = (0..table.deployments.len()).filter(|&i| serves(route, &table.deployments[i])).collect();
    let callable: Vec<usize> =
        of_route.iter().copied().filter(|&i| table.deployments[i].unavailable.is_none()).collect();
    let Some(&first) = callable.first() else {
        return Err(match of_route.first() {
            Some(&i) => PassThroughError::Unavailable {
                route,
                reason: table.deployments[i].unavailable.clone().unwrap_or_default(),
            },
            None => PassThroughError::NoDeployment { route },
        });
    };
    let named = |i: &&usize| {
        let m = table.deployments[**i].upstream_model.as_str();
        model == Some(m) || path.split(['/', ':']).any(|segment| segment == m)
    };
    Ok(callable.iter().find(named).copied().unwrap_or(first))
}

/// The upstream URL of a call to `path` (the part after the route's name, as the client
/// sent it: still percent-encoded) on `base`, with `query`. A base that ends in the path's
/// first segment (`https://api.openai.com/v1` and `v1/chat/completions`) does not repeat it.
pub fn target(base: &str, path: &str, query: Option<&str>) -> Result<String, PassThroughError> {
    let path = checked_path(path)?;
    let base = base.trim_end_matches('/');
    let first = path.split('/').next().unwrap_or_default();
    let base = match base.strip_suffix(first) {
        // Only a path segment of the base, never (part of) its host.
        Some(stem) if !first.is_empty() && stem.ends_with('/') && is_past_host(stem) => stem.trim_end_matches('/'),
        _ => base,
    };
    let mut url = format!("{base}/{path}");
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        if q.contains('#') {
            return Err(PassThroughError::BadPath { path: path.to_owned(), reason: "a query may not hold '#'" });
        }
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

/// Whether `url` (ending in '/') has a path: the '/' ends a segment after the host.
fn is_past_host(url: &str) -> bool {
    url.split_once("://").is_some_and(|(_, rest)| rest.find('/').is_some_and(|slash| slash > 0))
}

/// `path` if it keeps to [`crate::grammar::url_path`], so it stays under the base.
pub fn checked_path(path: &str) -> Result<&str, PassThroughError> {
    crate::grammar::url_path(path)
        .map(|()| path)
        .map_err(|reason| PassThroughError::BadPath { path: path.chars().take(200).collect(), reason })
}

/// Whether a call asks for a streamed answer: its path (no query) names a streaming action as
/// its last segment (Gemini's `:streamGenerateContent`, Vertex's `:streamRawPredict`, Bedrock's
/// `converse-stream` and `invoke-with-response-stream`), or its body says `"stream": true`
/// (OpenAI's, Anthropic's, ...): `body_streams`, asked only when the path does not tell. It
/// decides the upstream connection only.
pub fn asks_stream(path: &str, body_streams: impl FnOnce() -> bool) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    let action = last.rsplit_once(':').map(|(_, action)| action);
    action.is_some_and(|a| a.starts_with("stream")) || last.ends_with("-stream") || body_streams()
}

/// Whether the JSON `body` says `"stream": true` at its top level, read without parsing it.
pub fn says_stream(body: &[u8]) -> bool {
    let mut stream = false;
    let _ = crate::json_scan::members(body, |key, value| {
        if key == b"stream" {
            stream = body.get(value) == Some(b"true".as_slice());
        }
    });
    stream
}

/// Client headers that never go upstream: the caller's credentials (the deployment's replace
/// them), hop-by-hop headers, and what the body is re-sent with.
const DROPPED: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // Answers come back unencoded, so their usage can be read.
    "accept-encoding",
    "x-request-id",
];

/// The client's headers to send on (see [`DROPPED`]; ferrolite's own `x-ferrolite-*` stay
/// too, and AWS's signing headers, which a new signature replaces).
pub fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !DROPPED.contains(&n) && !n.starts_with("x-ferrolite-") && !n.starts_with("x-amz-")
        })
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// Keeps the first of each header name: the client's own (`anthropic-version`) before a
/// default the credentials bring.
pub fn first_of_each(headers: &mut Vec<(String, String)>) {
    let mut seen = std::collections::HashSet::new();
    headers.retain(|(name, _)| seen.insert(name.to_ascii_lowercase()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_asked_for_in_the_body_or_by_the_path() {
        let asks = |path, body: &'static [u8]| asks_stream(path, || says_stream(body));
        assert!(asks("v1/messages", br#"{"model": "c", "stream": true}"#));
        assert!(!asks("v1/messages", br#"{"model": "c", "stream": false}"#));
        assert!(!asks("v1/messages", br#"{"model": "c", "meta": {"stream": true}}"#), "the top level only");
        assert!(!asks("v1/messages", b"not json, \"stream\": true"));
        assert!(!asks("v1/models", b""));
        assert!(asks("v1beta/models/gemini-2.0-flash:streamGenerateContent", b"{}"));
        assert!(!asks("v1beta/models/gemini-2.0-flash:generateContent", b"{}"));
        assert!(asks("v1/projects/p/locations/l/publishers/anthropic/models/c:streamRawPredict", b"{}"));
        assert!(asks("model/anthropic.claude-3/converse-stream", b"{}"));
        assert!(asks("model/anthropic.claude-3/invoke-with-response-stream", b"{}"));
        assert!(!asks("model/anthropic.claude-3/converse", b"{}"));
        assert!(asks_stream("v1/x:streamGenerateContent", || unreachable!("the path tells")));
    }

    #[test]
    fn targets_join_the_base_and_the_path_without_repeating_the_version() {
        let t = |base, path, query| target(base, path, query).unwrap();
        assert_eq!(
            t("https://api.openai.com/v1", "v1/chat/completions", None),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(t("https://api.anthropic.com", "v1/messages", None), "https://api.anthropic.com/v1/messages");
        assert_eq!(
            t("http://127.0.0.1:9/", "v1beta/models/g:streamGenerateContent", Some("alt=sse")),
            "http://127.0.0.1:9/v1beta/models/g:streamGenerateContent?alt=sse"
        );
        assert_eq!(t("http://h/openai/v1", "v1/models", None), "http://h/openai/v1/models");
        assert_eq!(t("http://v1", "v1/models", None), "http://v1/v1/models", "a host is never taken for a segment");
    }

    #[test]
    fn paths_that_could_leave_the_base_are_refused() {
        for bad in ["", "v1//x", "../x", "v1/%2e%2E/x", "v1/a%2Fb", "v1/a%5cb", "v1/./x", "v1/a b", "v1/\u{e9}", "a\\b"]
        {
            assert!(checked_path(bad).is_err(), "{bad:?}");
        }
        assert!(checked_path("model/anthropic.claude-3-haiku-20240307-v1%3A0/converse").is_ok());
    }

    #[test]
    fn the_callers_credentials_and_hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer mine"),
            ("x-api-key", "mine"),
            ("x-goog-api-key", "mine"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
            ("x-amz-date", "20240101T000000Z"),
            ("connection", "keep-alive"),
        ] {
            h.insert(axum::http::HeaderName::from_static(n), v.parse().unwrap());
        }
        let mut sent = forwarded_headers(&h);
        sent.sort();
        let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["anthropic-version", "content-type"]);
        sent.push(("anthropic-version".into(), "2024-01-01".into()));
        first_of_each(&mut sent);
        assert_eq!(sent.iter().filter(|(n, _)| n == "anthropic-version").count(), 1);
        assert!(sent.contains(&("anthropic-version".into(), "2023-06-01".into())), "the client's version wins");
    }
}
