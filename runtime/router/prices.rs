//! What a deployment costs per token: the manifest's own figures first (`litellm_params`, then
//! `model_info`), else the list prices compiled in from `prices.json`.
//!
//! Table lookups try the upstream model id as written, then ever more generic forms of it:
//! without a path (`openai/gpt-4o`), a Bedrock region prefix (`us.`), a Bedrock version
//! (`-v1:0`), a date (`-20241022`, `-2024-08-06`, `@20240620`), a short revision (`-0613`,
//! `-002`), `-latest`, and a Bedrock vendor (`anthropic.`).

use crate::providers::Deployment;
use crate::providers::Provider;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// USD per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_token: f64,
    pub output_per_token: f64,
}

impl Price {
    /// Input plus output price per token: what cost-based routing ranks deployments by.
    pub fn per_token_sum(&self) -> f64 {
        self.input_per_token + self.output_per_token
    }
}

/// The list prices, compiled in.
const TABLE_JSON: &str = include_str!("prices.json");

#[derive(Deserialize)]
struct Entry {
    input_cost_per_token: f64,
    output_cost_per_token: f64,
}

/// Parses the price table: model id -> price; keys starting with `_` are notes, not models.
fn parse_table(text: &str) -> Result<HashMap<String, Price>, String> {
    let raw: Map<String, Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    raw.into_iter()
        .filter(|(id, _)| !id.starts_with('_'))
        .map(|(id, value)| {
            let e: Entry = serde_json::from_value(value).map_err(|e| format!("{id}: {e}"))?;
            Ok((id, Price { input_per_token: e.input_cost_per_token, output_per_token: e.output_cost_per_token }))
        })
        .collect()
}

/// The compiled-in table, parsed on first use (its validity is checked by a unit test).
fn table() -> &'static HashMap<String, Price> {
    static TABLE: OnceLock<HashMap<String, Price>> = OnceLock::new();
    TABLE.get_or_init(|| parse_table(TABLE_JSON).expect("router/prices.json is a valid price table"))
}

/// The list price of a model id (or of a more generic form of it), if the table has one.
pub fn list_price(model: &str) -> Option<Price> {
    let table = table();
    lookup_keys(model).iter().find_map(|key| table.get(key).copied())
}

/// What `d` costs per token; `None` when neither the manifest nor the table knows. Worked out
/// once when its session starts (`Table::prices`).
pub fn price_of(d: &Deployment) -> Option<Price> {
    let info = |key: &str| d.model_info.as_ref().and_then(|m| m.get(key)).and_then(number);
    let input = d.params.input_cost_per_token.or_else(|| info("input_cost_per_token"));
    let output = d.params.output_cost_per_token.or_else(|| info("output_cost_per_token"));
    // A mock deployment never calls out: it is free unless the manifest prices it.
    let listed = if d.provider == Provider::Mock { None } else { table_price(d) };
    if input.is_none() && output.is_none() {
        return if d.provider == Provider::Mock {
            Some(Price { input_per_token: 0.0, output_per_token: 0.0 })
        } else {
            listed
        };
    }
    Some(Price {
        input_per_token: input.or(listed.map(|p| p.input_per_token)).unwrap_or(0.0),
        output_per_token: output.or(listed.map(|p| p.output_per_token)).unwrap_or(0.0),
    })
}

/// What a request with these token counts costs on `d`, in USD.
pub fn cost(d: &Deployment, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
    price_of(d).map(|p| p.input_per_token * prompt_tokens as f64 + p.output_per_token * completion_tokens as f64)
}

/// The table price of the upstream model, else of litellm's `model_info.base_model` (how
/// Azure deployments with custom names say which model they run).
fn table_price(d: &Deployment) -> Option<Price> {
    list_price(&d.upstream_model).or_else(|| {
        let base = d.model_info.as_ref()?.get("base_model")?.as_str()?;
        crate::catalogue::providers::resolve_model(base)
            .and_then(|r| list_price(&r.upstream_model))
            .or_else(|| list_price(base))
    })
}

/// A price from `model_info`: a number, or a number written as a string.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite() && *x >= 0.0)
}

/// The ids to look `model` up by, most specific first.
fn lookup_keys(model: &str) -> Vec<String> {
    const STEPS: [fn(&str) -> Option<&str>; 7] =
        [strip_path, strip_region, strip_bedrock_version, strip_date, strip_revision, strip_latest, strip_vendor];
    let mut current = model.trim().to_ascii_lowercase();
    let mut keys = vec![current.clone()];
    'generalize: loop {
        for step in STEPS {
            if let Some(next) = step(&current).filter(|n| !n.is_empty()) {
                current = next.to_owned();
                keys.push(current.clone());
                continue 'generalize;
            }
        }
        return keys;
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `openrouter/openai/gpt-4o` -> `gpt-4o`, `converse/anthropic.claude-...` -> `anthropic.claude-...`.
fn strip_path(m: &str) -> Option<&str> {
    m.rsplit_once('/').map(|(_, last)| last)
}

/// Bedrock cross-region inference profiles: `us.anthropic.claude-...` -> `anthropic.claude-...`.
fn strip_region(m: &str) -> Option<&str> {
    const REGIONS: [&str; 8] = ["us", "eu", "apac", "global", "us-gov", "ca", "jp", "au"];
    let (prefix, rest) = m.split_once('.')?;
    (REGIONS.contains(&prefix) && rest.contains('.')).then_some(rest)
}

/// Bedrock model versions: `-v1:0`, `-v2:0`, `-v1`, `-v1:0:200k`.
fn strip_bedrock_version(m: &str) -> Option<&str> {
    let at = m.rfind("-v")?;
    let version = &m[at + 2..];
    let ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'k');
    ok.then(|| &m[..at])
}

/// Dates: `-20241022`, `@20240620`, `-2024-08-06`.
fn strip_date(m: &str) -> Option<&str> {
    if let Some((head, tail)) = m.rsplit_once(['-', '@']) {
        if tail.len() == 8 && all_digits(tail) {
            return Some(head);
        }
    }
    let split = m.len().checked_sub(11)?;
    let (head, tail) = (m.get(..split)?, m.get(split..)?);
    let parts: Vec<&str> = tail.split('-').collect();
    let dated = matches!(parts.as_slice(), ["", y, mo, d] if y.len() == 4 && mo.len() == 2 && d.len() == 2
        && all_digits(y) && all_digits(mo) && all_digits(d));
    dated.then_some(head)
}

/// Short revisions: OpenAI's `-0613`, Gemini's `-002`.
fn strip_revision(m: &str) -> Option<&str> {
    let (head, tail) = m.rsplit_once('-')?;
    ((tail.len() == 3 || tail.len() == 4) && all_digits(tail)).then_some(head)
}

fn strip_latest(m: &str) -> Option<&str> {
    m.strip_suffix("-latest")
}

/// Bedrock vendors: `anthropic.claude-3-haiku` -> `claude-3-haiku` (not `gpt-3.5-turbo`).
fn strip_vendor(m: &str) -> Option<&str> {
    let (vendor, rest) = m.split_once('.')?;
    let is_vendor =
        vendor.starts_with(|c: char| c.is_ascii_alphabetic()) && vendor.bytes().all(|b| b.is_ascii_alphanumeric());
    (is_vendor && !rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_every_model_has_prices() {
        let raw: Map<String, Value> = serde_json::from_str(TABLE_JSON).expect("prices.json is JSON");
        assert!(raw.get("_source").and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
        let table = parse_table(TABLE_JSON).expect("prices.json is a price table");
        assert_eq!(table.len(), raw.len() - 1);
        for (id, p) in &table {
            assert!(p.input_per_token > 0.0 && p.input_per_token < 1e-3, "{id}: {p:?}");
            // Embedding models bill input only.
            let embedding = id.contains("embed");
            assert!(p.output_per_token > 0.0 || (embedding && p.output_per_token == 0.0), "{id}: {p:?}");
            assert!(p.output_per_token < 1e-3, "{id}: {p:?}");
        }
    }

    #[test]
    fn lookups_fall_back_to_generic_ids() {
        let price = |m: &str| list_price(m).map(|p| (p.input_per_token, p.output_per_token));
        assert_eq!(price("gpt-4o"), Some((2.5e-6, 1e-5)));
        assert_eq!(price("gpt-4o-2024-05-13"), Some((5e-6, 1.5e-5)));
        assert_eq!(price("gpt-4o-mini-2099-01-01"), price("gpt-4o-mini"));
        assert_eq!(price("GPT-4-0314"), price("gpt-4"));
        assert_eq!(price("claude-3-5-sonnet-20991231"), Some((3e-6, 1.5e-5)));
        assert_eq!(price("us.anthropic.claude-3-5-sonnet-20240620-v1:0"), Some((3e-6, 1.5e-5)));
        assert_eq!(price("eu.anthropic.claude-3-haiku-20240307-v1:0"), Some((2.5e-7, 1.25e-6)));
        assert_eq!(price("anthropic.claude-3-5-haiku-20991231-v1:0"), price("claude-3-5-haiku"));
        assert_eq!(price("meta.llama3-70b-instruct-v1:0"), Some((2.65e-6, 3.5e-6)));
        assert_eq!(price("gemini-1.5-pro-003"), price("gemini-1.5-pro"));
        assert_eq!(price("openai/gpt-4o"), price("gpt-4o"));
        assert_eq!(price("gpt-3.5-turbo"), Some((5e-7, 1.5e-6)));
        assert_eq!(price("llama-3-8b"), None);
        assert_eq!(price("gpt-4.5-hypothetical"), None);
        assert_eq!(price(""), None);
    }
}
