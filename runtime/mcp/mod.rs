//! The MCP gateway: an app's `mcp_servers` served together as one MCP server at
//! `/{workspace}/apps/{service_id}/mcp`. rmcp speaks the protocol on both sides; this module
//! only decides what is listed, where a call goes, and what is logged. `agent` runs the tool
//! loop for the LLM routes' requests that name the app's MCP servers as `mcp` tools.

pub mod access;
pub mod agent;
pub mod client;
pub mod endpoint;
pub mod forward;
pub mod gateway;
pub mod sse;

pub use access::{Access, Scoped};
pub use endpoint::Endpoint;
pub use gateway::{Gateway, GatewayError};

use crate::manifest::{McpAuthType, McpServer, McpTransport};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;

/// Why an MCP server's settings cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("header {0:?} is not a valid header name")]
    HeaderName(String),
    #[error("the value of header {0:?} is not a valid header value")]
    HeaderValue(String),
    #[error("auth_type {0} needs an auth_value")]
    MissingAuthValue(&'static str),
}

/// One upstream MCP server, its secrets resolved. Its headers never show in `Debug`.
pub struct Upstream {
    pub name: String,
    pub url: String,
    pub transport: McpTransport,
    /// `headers` and the credential `auth_type` names.
    pub headers: HeaderMap,
    pub allowed_tools: Option<Vec<String>>,
    pub disallowed_tools: Vec<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// `server` with its `url`, `auth_value` and header values already resolved (`headers` in
    /// the manifest's order).
    pub fn new(
        name: &str,
        server: &McpServer,
        url: String,
        auth_value: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<Upstream, ConfigError> {
        let mut map = HeaderMap::new();
        for (key, value) in headers {
            let header = HeaderName::from_bytes(key.as_bytes()).map_err(|_| ConfigError::HeaderName(key.clone()))?;
            map.insert(header, secret_value(&value).ok_or(ConfigError::HeaderValue(key))?);
        }
        let credential = |what: &'static str| auth_value.clone().ok_or(ConfigError::MissingAuthValue(what));
        let auth = match server.auth_type {
            McpAuthType::None => None,
            McpAuthType::BearerToken => {
                Some((axum::http::header::AUTHORIZATION, format!("Bearer {}", credential("bearer_token")?)))
            }
            McpAuthType::ApiKey => Some((HeaderName::from_static("x-api-key"), credential("api_key")?)),
            McpAuthType::Basic => {
                let value = credential("basic")?;
                // `user:password` is encoded; a value without a colon is taken as encoded already.
                let encoded =
                    if value.contains(':') { base64::engine::general_purpose::STANDARD.encode(value) } else { value };
                Some((axum::http::header::AUTHORIZATION, format!("Basic {encoded}")))
            }
        };
        if let Some((header, value)) = auth {
            let value = secret_value(&value).ok_or_else(|| ConfigError::HeaderValue(header.to_string()))?;
            map.insert(header, value);
        }
        Ok(Upstream {
            name: name.to_owned(),
            url,
            transport: server.transport,
            headers: map,
            allowed_tools: server.allowed_tools.clone(),
            disallowed_tools: server.disallowed_tools.clone(),
        })
    }

    /// Whether the app lets clients see and call `tool` (the server's own name).
    pub fn permits(&self, tool: &str) -> bool {
        let allowed = self.allowed_tools.as_ref().is_none_or(|list| list.iter().any(|t| t == tool));
        allowed && !self.disallowed_tools.iter().any(|t| t == tool)
    }
}

/// A header value marked sensitive, so no debug output or HTTP/2 table shows it.
fn secret_value(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The tool name clients see: `{server}-{tool}`.
pub fn prefixed(server: &str, tool: &str) -> String {
    format!("{server}-{tool}")
}

/// The server and tool a prefixed name stands for. Server names may hold `-` themselves, so
/// the longest server name that prefixes `name` wins.
pub fn split_name<'a>(names: impl Iterator<Item = &'a str>, name: &str) -> Option<(&'a str, String)> {
    names
        .filter(|server| {
            name.len() > server.len() + 1 && name.starts_with(server) && name.as_bytes()[server.len()] == b'-'
        })
        .max_by_key(|server| server.len())
        .map(|server| (server, name[server.len() + 1..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(json: serde_json::Value) -> McpServer {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn prefixed_names_split_on_the_longest_server_name() {
        let names = ["docs", "docs-v2", "a.b"];
        let split = |n: &str| split_name(names.iter().copied(), n).map(|(s, t)| (s.to_owned(), t));
        assert_eq!(split("docs-search"), Some(("docs".into(), "search".into())));
        assert_eq!(split("docs-v2-search"), Some(("docs-v2".into(), "search".into())));
        assert_eq!(split("a.b-x-y"), Some(("a.b".into(), "x-y".into())));
        assert_eq!(split("docs-"), None);
        assert_eq!(split("other-search"), None);
        assert_eq!(split("docssearch"), None);
    }

    #[test]
    fn allowed_and_disallowed_tools_filter_together() {
        let spec =
            server(serde_json::json!({"url": "http://x", "allowed_tools": ["a", "b"], "disallowed_tools": ["b"]}));
        let up = Upstream::new("s", &spec, "http://x".into(), None, vec![]).unwrap();
        assert!(up.permits("a"));
        assert!(!up.permits("b"), "disallowed wins");
        assert!(!up.permits("c"), "not allowed");
    }

    #[test]
    fn credentials_become_headers_that_debug_never_shows() {
        let spec = server(serde_json::json!({"url": "http://x", "auth_type": "basic"}));
        let up = Upstream::new("s", &spec, "http://x".into(), Some("u:p".into()), vec![("X-Team".into(), "t1".into())])
            .unwrap();
        assert_eq!(up.headers["authorization"], "Basic dTpw");
        assert_eq!(up.headers["x-team"], "t1");
        assert!(!format!("{up:?}").contains("dTpw"));
        let bearer = server(serde_json::json!({"url": "http://x", "auth_type": "bearer_token"}));
        assert_eq!(
            Upstream::new("s", &bearer, "http://x".into(), None, vec![]).unwrap_err(),
            ConfigError::MissingAuthValue("bearer_token")
        );
    }
}
