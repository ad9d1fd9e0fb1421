//! litellm proxy `config.yaml` files, accepted unchanged: they become an llm-proxy manifest.

use serde_json::{json, Map, Value};

/// The service id a litellm config runs under (also served at the server root).
pub const SERVICE_ID: &str = "litellm";

/// Whether a document is a litellm proxy config (top-level `model_list`) rather than a manifest.
pub fn is_litellm_config(doc: &Value) -> bool {
    doc.get("model_list").is_some() && doc.get("config").is_none() && doc.get("type").is_none()
}

/// The manifest a litellm config stands for: its sections move under `config`, as written.
pub fn to_manifest(doc: &Value, name: &str) -> Value {
    let mut config = Map::new();
    config.insert("service_id".into(), json!(SERVICE_ID));
    for section in [
        "model_list",
        "litellm_settings",
        "router_settings",
        "general_settings",
        "environment_variables",
        "mcp_servers",
    ] {
        if let Some(v) = doc.get(section).filter(|v| !v.is_null()) {
            config.insert(section.into(), v.clone());
        }
    }
    json!({
        "name": name,
        "type": "llm-proxy",
        "description": "converted from a litellm proxy config",
        "config": config,
    })
}
