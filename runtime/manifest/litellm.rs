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
    // Every section comes along, those ferrolite does not read too: validation names each.
    for (section, v) in doc.as_object().into_iter().flatten() {
        if !v.is_null() {
            config.insert(section.clone(), v.clone());
        }
    }
    config.insert("service_id".into(), json!(SERVICE_ID));
    let mut manifest = json!({
        "name": name,
        "type": "llm-proxy",
        "description": "converted from a litellm proxy config",
        "config": config,
    });
    // litellm's pydantic reads `"60"` as 60 in a JSON config too.
    super::yaml11::coerce(&mut manifest, false);
    manifest
}
