//! Token counts for usage figures where no provider reports them (mock deployments,
//! `/utils/token_counter`, and the counting routes where the provider does not count).
//!
//! An estimate shaped like BPE tokenisers on English text (short words are one token, long
//! words several, each punctuation mark one), not a real vocabulary: it keeps the binary
//! small and its memory flat. Counts are deterministic, so tests can rely on them.

use serde_json::Value;

/// Estimated tokens in `text`.
pub fn count(text: &str) -> u64 {
    let mut tokens = 0u64;
    let mut word = 0usize;
    let mut digits = 0usize;
    let flush = |len: &mut usize, per: usize, tokens: &mut u64| {
        if *len > 0 {
            *tokens += len.div_ceil(per) as u64;
            *len = 0;
        }
    };
    for c in text.chars() {
        if c.is_alphabetic() {
            flush(&mut digits, 3, &mut tokens);
            word += 1;
        } else if c.is_ascii_digit() {
            flush(&mut word, 8, &mut tokens);
            digits += 1;
        } else {
            flush(&mut word, 8, &mut tokens);
            flush(&mut digits, 3, &mut tokens);
            if !c.is_whitespace() {
                tokens += 1;
            }
        }
    }
    flush(&mut word, 8, &mut tokens);
    flush(&mut digits, 3, &mut tokens);
    tokens
}

/// Estimated prompt tokens of an OpenAI `messages` list: each message's text plus the
/// per-message framing OpenAI's chat format adds (3 tokens), plus 3 to prime the reply.
pub fn count_chat(messages: &[(String, String)]) -> u64 {
    messages.iter().map(|(role, text)| 3 + count(role) + count(text)).sum::<u64>() + 3
}

/// Estimated tokens of any JSON value's text (strings anywhere inside it).
pub fn count_value(value: &Value) -> u64 {
    match value {
        Value::String(s) => count(s),
        Value::Array(items) => items.iter().map(count_value).sum(),
        Value::Object(map) => map.values().map(count_value).sum(),
        Value::Number(_) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_numbers_and_punctuation() {
        assert_eq!(count(""), 0);
        assert_eq!(count("Hello"), 1);
        assert_eq!(count("Hello, world!"), 4);
        assert_eq!(count("internationalization"), 3);
        assert_eq!(count("2024"), 2);
        assert!(count_chat(&[("user".into(), "Hello!".into())]) > count("Hello!"));
    }
}
