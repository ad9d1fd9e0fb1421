//! The server-side request forgery guard: an app installed with a non-admin token may not
//! send requests to loopback, link-local or private addresses (the server's own network),
//! unless the server runs with `--allow-private-upstreams`.
//!
//! Checked at install on the manifest's literal `api_base` and MCP server `url` values, again at start on each
//! deployment's final base URL (a secret may hold the URL; Bedrock's is built from the region),
//! and on every connection such an app's requests make (`transport::guard`).

use crate::manifest::validate::{Finding, Severity};
use crate::manifest::Manifest;
pub use crate::transport::guard::check_url;

/// The install-time findings: literal `api_base` values that point inside the server's network.
pub fn check_manifest(manifest: &Manifest) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, entry) in manifest.config.model_list.iter().enumerate() {
        let Some(base) = &entry.litellm_params.api_base else { continue };
        if base.starts_with("os.environ/") || base.starts_with("HYPHA_SECRET:") {
            continue; // resolved, and checked, at start
        }
        if let Err(reason) = check_url(base) {
            findings.push(Finding {
                severity: Severity::Error,
                pointer: format!("/config/model_list/{i}/litellm_params/api_base"),
                message: format!("{reason}; only admin tokens may, or a server started with --allow-private-upstreams"),
            });
        }
    }
    for (name, server) in &manifest.config.mcp_servers {
        if server.url.starts_with("os.environ/") || server.url.starts_with("HYPHA_SECRET:") {
            continue; // resolved, and checked, at start
        }
        if let Err(reason) = check_url(&server.url) {
            findings.push(Finding {
                severity: Severity::Error,
                pointer: format!("/config/mcp_servers/{}/url", name.replace('~', "~0").replace('/', "~1")),
                message: format!("{reason}; only admin tokens may, or a server started with --allow-private-upstreams"),
            });
        }
    }
    findings
}
