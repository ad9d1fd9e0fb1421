//! A cached answer's key: the SHA-256 of the app, the route and the request as it bears on the
//! answer. Fields that only change how the answer travels or is attributed (`stream`,
//! `stream_options`, `user`, `metadata`, the `cache` controls) are left out, and objects are
//! hashed with their keys sorted, so clients that order fields differently share entries.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Top-level fields that do not change what the model answers.
const IGNORED: &[&str] = &["stream", "stream_options", "user", "metadata", "cache"];

/// The key of `request` to `route` of app `app` (its workspace and id), as hex.
pub fn key(app: &str, route: &str, request: &Value) -> String {
    let mut hasher = Sha256::new();
    // Lengths first, so no app/route pair can run into the next part.
    for part in [app, route] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(normalise(request).to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// The request as the key sees it: ignored fields out, every object's keys sorted.
pub fn normalise(request: &Value) -> Value {
    match request {
        Value::Object(map) => Value::Object(sorted(map, |k| !IGNORED.contains(&k))),
        other => sorted_value(other),
    }
}

fn sorted(map: &Map<String, Value>, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    let mut keys: Vec<&String> = map.keys().filter(|k| keep(k)).collect();
    keys.sort();
    keys.into_iter().map(|k| (k.clone(), sorted_value(&map[k.as_str()]))).collect()
}

fn sorted_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(sorted(map, |_| true)),
        Value::Array(items) => Value::Array(items.iter().map(sorted_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(extra: Value) -> Value {
        let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        body
    }

    #[test]
    fn delivery_and_attribution_fields_do_not_change_the_key() {
        let plain = key("ws/app", "/v1/chat/completions", &chat(json!({})));
        let dressed = chat(json!({
            "stream": true, "stream_options": {"include_usage": true}, "user": "ada",
            "metadata": {"run": 7}, "cache": {"no-store": true}
        }));
        assert_eq!(plain, key("ws/app", "/v1/chat/completions", &dressed));
    }

    #[test]
    fn parameters_that_change_the_answer_change_the_key() {
        let plain = key("ws/app", "/v1/chat/completions", &chat(json!({})));
        for extra in [
            json!({"temperature": 0.2}),
            json!({"top_p": 0.5}),
            json!({"max_tokens": 5}),
            json!({"seed": 1}),
            json!({"n": 2}),
            json!({"stop": ["\n"]}),
            json!({"response_format": {"type": "json_object"}}),
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            json!({"model": "gpt-4o-mini"}),
            json!({"messages": [{"role": "user", "content": "hello"}]}),
        ] {
            assert_ne!(plain, key("ws/app", "/v1/chat/completions", &chat(extra.clone())), "{extra}");
        }
    }

    #[test]
    fn field_order_does_not_matter_at_any_depth() {
        let a = json!({"model": "m", "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true}}});
        let b = json!({"response_format": {"json_schema": {"strict": true, "name": "x"}, "type": "json_schema"}, "model": "m"});
        assert_eq!(key("a", "/r", &a), key("a", "/r", &b));
    }

    #[test]
    fn the_app_and_the_route_are_part_of_the_key() {
        let body = json!({"model": "m", "input": "x"});
        let base = key("ws/app", "/v1/embeddings", &body);
        assert_ne!(base, key("ws/other", "/v1/embeddings", &body));
        assert_ne!(base, key("ws/app", "/v1/completions", &body));
        assert_ne!(key("ab", "/c", &body), key("a", "b/c", &body));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn nested_ignored_names_are_kept() {
        // Only the top level's `user` is attribution; a message's is content.
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "x", "user": 1}]});
        let b = json!({"model": "m", "messages": [{"role": "user", "content": "x", "user": 2}]});
        assert_ne!(key("a", "/r", &a), key("a", "/r", &b));
    }
}
