//! ferrolite's own count of a prompt, where no provider counts it: the tokenizer's estimate of
//! the text a model reads (what only names structure, such as `type`, ids or roles, left out),
//! plus the framing each turn adds. Deterministic, so tests can rely on it.

use super::Shape;
use crate::tokenizer;
use serde_json::Value;

/// Tokens each turn adds around its text, and the reply's priming (as `tokenizer::count_chat`).
const FRAMING: u64 = 3;

/// An image or file sent inline: roughly what a 1024x1024 image costs OpenAI at high detail
/// (85 + 4 x 170), instead of the length of its base64.
const MEDIA_TOKENS: u64 = 765;

/// Members that name structure rather than carry text the model reads.
const STRUCTURE: &[&str] =
    &["type", "id", "call_id", "tool_use_id", "role", "status", "cache_control", "media_type", "detail"];

/// The estimated input tokens of a counting request's body.
pub fn tokens(shape: Shape, body: &Value) -> u64 {
    let (preamble, conversation) = match shape {
        Shape::Messages => {
            (body.get("system"), body.get("messages").map_or(0, |ms| turns(ms, |m| m.get("content").map_or(0, text))))
        }
        Shape::Responses => (
            body.get("instructions"),
            match body.get("input") {
                Some(Value::String(s)) => FRAMING + tokenizer::count(s),
                Some(items) => turns(items, text),
                None => 0,
            },
        ),
    };
    let tools = body.get("tools").map_or(0, text);
    preamble.map_or(0, text) + conversation + tools + FRAMING
}

/// Each turn's tokens and its framing.
fn turns(items: &Value, tokens: impl Fn(&Value) -> u64) -> u64 {
    items.as_array().map_or(0, |items| items.iter().map(|item| FRAMING + tokens(item)).sum())
}

/// The tokens of the text inside a value.
fn text(value: &Value) -> u64 {
    match value {
        Value::String(s) if s.starts_with("data:") => MEDIA_TOKENS,
        Value::String(s) => tokenizer::count(s),
        Value::Array(items) => items.iter().map(text).sum(),
        Value::Object(members) => {
            // An Anthropic source `{"type": "base64", "media_type", "data"}`.
            let base64 = members.get("type").and_then(Value::as_str) == Some("base64");
            members
                .iter()
                .map(|(key, v)| match key.as_str() {
                    "data" if base64 => MEDIA_TOKENS,
                    key if STRUCTURE.contains(&key) => 0,
                    _ => text(v),
                })
                .sum()
        }
        Value::Number(_) => 1,
        Value::Bool(_) | Value::Null => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_turn_is_its_text_and_framing() {
        let messages = json!({"model": "m", "messages": [{"role": "user", "content": "Hello there"}]});
        assert_eq!(tokens(Shape::Messages, &messages), 3 + 2 + 3);
        let responses = json!({"model": "m", "input": "Hello there"});
        assert_eq!(tokens(Shape::Responses, &responses), 3 + 2 + 3);
        let items = json!({"model": "m", "instructions": "Be brief", "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}
        ]});
        assert_eq!(tokens(Shape::Responses, &items), 2 + 3 + 2 + 3);
    }

    #[test]
    fn structure_is_not_text_and_media_is_not_its_base64() {
        let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo".repeat(1000)}});
        let url = json!({"type": "input_image", "image_url": format!("data:image/png;base64,{}", "A".repeat(9000))});
        assert_eq!(text(&image), MEDIA_TOKENS);
        assert_eq!(text(&url), MEDIA_TOKENS);
        let tool_use = json!({"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}});
        assert_eq!(text(&tool_use), tokenizer::count("get_weather") + 1);
    }
}
