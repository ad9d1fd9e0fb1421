//! Scalars as litellm reads them. litellm loads its config with PyYAML, a YAML 1.1 reader, and
//! types it with pydantic, which coerces numeric text: `tpm: 20_000`, `drop_params: yes` and
//! `rpm: "60"` all start litellm. serde_yaml reads YAML 1.2, where those are strings, so a
//! document is walked beside the manifest's JSON Schema and a string where the schema wants a
//! number or a boolean is read as YAML 1.1 would read it. Strings elsewhere are left alone: a
//! model named `yes` stays a name.
//!
//! Not recovered: a YAML 1.1 octal with a bare leading zero (`017`), which YAML 1.2 has already
//! read as decimal by the time the walk sees it.

use serde_json::{Map, Number, Value};
use std::sync::OnceLock;

/// Reads the strings of `doc` that its schema types as numbers or booleans as YAML 1.1 does.
/// `doc` is a manifest, or a litellm config when `litellm_config` (its sections at the top).
pub fn coerce(doc: &mut Value, litellm_config: bool) {
    let root = schema();
    let start = if litellm_config { &root["$defs"]["ProxyConfig"] } else { root };
    walk(doc, start, root, 0);
}

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(super::json_schema)
}

/// Deeper than any manifest's schema goes: a guard against a self-referencing definition.
const MAX_DEPTH: usize = 32;

fn walk(value: &mut Value, node: &Value, root: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(target) = node.get("$ref").and_then(Value::as_str) {
        if let Some(def) = target.strip_prefix("#/$defs/") {
            walk(value, &root["$defs"][def], root, depth + 1);
        }
        return;
    }
    for alternatives in ["anyOf", "oneOf", "allOf"] {
        for alternative in node.get(alternatives).and_then(Value::as_array).into_iter().flatten() {
            walk(value, alternative, root, depth + 1);
        }
    }
    match value {
        Value::String(text) => {
            if let Some(read) = read_scalar(text, &types(node)) {
                *value = read;
            }
        }
        Value::Object(map) => walk_object(map, node, root, depth),
        Value::Array(items) => {
            if let Some(item) = node.get("items") {
                for v in items {
                    walk(v, item, root, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(map: &mut Map<String, Value>, node: &Value, root: &Value, depth: usize) {
    let properties = node.get("properties").and_then(Value::as_object);
    let additional = node.get("additionalProperties").filter(|a| a.is_object());
    for (key, v) in map.iter_mut() {
        if let Some(child) = properties.and_then(|p| p.get(key)).or(additional) {
            walk(v, child, root, depth + 1);
        }
    }
}

/// The scalar types a schema node allows (`type` as a name or a list).
fn types(node: &Value) -> Vec<&str> {
    match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `text` read as the first of `types` it is in YAML 1.1; `None` when it is none of them (the
/// schema then reports it as it stands) or when the schema takes strings too.
fn read_scalar(text: &str, types: &[&str]) -> Option<Value> {
    if types.contains(&"string") {
        return None;
    }
    let text = text.trim();
    if types.contains(&"boolean") {
        if let Some(b) = boolean(text) {
            return Some(Value::Bool(b));
        }
    }
    if types.contains(&"integer") {
        if let Some(n) = integer(text) {
            return Some(Value::Number(n.into()));
        }
    }
    if types.contains(&"number") {
        if let Some(n) = integer(text) {
            return Some(Value::Number(n.into()));
        }
        if let Some(n) = float(text).and_then(Number::from_f64) {
            return Some(Value::Number(n));
        }
    }
    None
}

/// YAML 1.1's booleans, as PyYAML resolves them.
pub fn boolean(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// YAML 1.1's integers: decimal, `0b`, `0x`, `0o`/leading-zero octal and base 60, each with
/// `_` separators anywhere after the first digit.
fn integer(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = |s: &str, radix: u32| -> Option<i64> {
        let cleaned: String = s.chars().filter(|&c| c != '_').collect();
        if cleaned.is_empty() || !s.starts_with(|c: char| c.is_digit(radix)) {
            return None;
        }
        i64::from_str_radix(&cleaned, radix).ok()
    };
    let magnitude = if let Some(bin) = body.strip_prefix("0b") {
        digits(bin, 2)?
    } else if let Some(hex) = body.strip_prefix("0x") {
        digits(hex, 16)?
    } else if let Some(oct) = body.strip_prefix("0o") {
        digits(oct, 8)?
    } else if body.len() > 1 && body.starts_with('0') {
        digits(&body[1..], 8)?
    } else if body.contains(':') {
        sexagesimal(body)?
    } else {
        digits(body, 10)?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `1:30` is 90: base-60 parts, each after the first below 60.
fn sexagesimal(body: &str) -> Option<i64> {
    let mut parts = body.split(':');
    let first: i64 = parts.next().filter(|p| !p.is_empty())?.replace('_', "").parse().ok()?;
    parts.try_fold(first, |total, part| {
        let n: i64 = part.parse().ok().filter(|n| (0..60).contains(n) && part.len() <= 2)?;
        total.checked_mul(60)?.checked_add(n)
    })
}

/// YAML 1.1's floats: `1_000.5`, `1e3`, `.5`, `.inf` (not a JSON number, so refused as before).
fn float(text: &str) -> Option<f64> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let body = cleaned.trim_start_matches(['-', '+']);
    let first = body.chars().next()?;
    if !(first.is_ascii_digit() || first == '.') || !body.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')) {
        return None;
    }
    cleaned.parse().ok().filter(|f: &f64| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_take_every_yaml_1_1_form() {
        for (text, n) in [
            ("20_000", 20_000),
            ("1_000_000", 1_000_000),
            ("+5", 5),
            ("-3", -3),
            ("0x1F", 31),
            ("0b1010", 10),
            ("0o17", 15),
            ("017", 15),
            ("1:30", 90),
            ("60", 60),
            ("0", 0),
        ] {
            assert_eq!(integer(text), Some(n), "{text}");
        }
        for text in ["", "_1", "1.5", "12abc", "0x", "1:60", "fast", "1__"] {
            if text == "1__" {
                assert_eq!(integer(text), Some(1), "underscores anywhere after the first digit");
                continue;
            }
            assert_eq!(integer(text), None, "{text}");
        }
    }

    #[test]
    fn floats_and_booleans_as_pyyaml_reads_them() {
        assert_eq!(float("1_000.5"), Some(1000.5));
        assert_eq!(float("1e3"), Some(1000.0));
        assert_eq!(float(".5"), Some(0.5));
        assert_eq!(float("-2.5"), Some(-2.5));
        assert_eq!(float(".inf"), None, "not a JSON number");
        assert_eq!(float("abc"), None);
        assert_eq!(boolean("yes"), Some(true));
        assert_eq!(boolean("Off"), Some(false));
        assert_eq!(boolean("True"), Some(true));
        assert_eq!(boolean("y"), None, "PyYAML reads y as a string");
    }

    #[test]
    fn only_fields_the_schema_types_as_numbers_or_booleans_change() {
        let mut config = json!({
            "model_list": [{"model_name": "yes", "litellm_params": {
                "model": "openai/gpt-4o", "tpm": "20_000", "rpm": "60", "weight": "1_000.5",
                "api_key": "0x1F", "use_chat_completions_api": "yes", "organization": "1_000"
            }}],
            "litellm_settings": {"drop_params": "True", "num_retries": "3", "timeout": "1e2", "debug": "off"},
            "router_settings": {"allowed_fails": "fast"}
        });
        coerce(&mut config, true);
        let params = &config["model_list"][0]["litellm_params"];
        assert_eq!(params["tpm"], json!(20_000));
        assert_eq!(params["rpm"], json!(60));
        assert_eq!(params["weight"], json!(1000.5));
        assert_eq!(params["use_chat_completions_api"], json!(true));
        assert_eq!(params["api_key"], json!("0x1F"), "a string field stays a string");
        assert_eq!(params["organization"], json!("1_000"), "a field the schema does not type stays as written");
        assert_eq!(config["model_list"][0]["model_name"], json!("yes"));
        let settings = &config["litellm_settings"];
        assert_eq!((&settings["drop_params"], &settings["debug"]), (&json!(true), &json!(false)));
        assert_eq!((&settings["num_retries"], &settings["timeout"]), (&json!(3), &json!(100.0)));
        assert_eq!(config["router_settings"]["allowed_fails"], json!("fast"), "left for the schema to refuse");
    }

    #[test]
    fn a_manifest_is_walked_from_its_root() {
        let mut manifest = json!({"name": "x", "type": "llm-proxy", "config": {"model_list": [
            {"model_name": "m", "litellm_params": {"model": "gpt-4o", "max_retries": "2"}}
        ]}});
        coerce(&mut manifest, false);
        assert_eq!(manifest["config"]["model_list"][0]["litellm_params"]["max_retries"], json!(2));
    }
}
