//! Token counts for usage figures where no provider reports them (mock deployments,
//! `/utils/token_counter`, and the counting routes where the provider does not count).
//!
//! An estimate shaped like BPE tokenisers on English text (short words are one token, long
//! words several, each punctuation mark one), not a real vocabulary: it keeps the binary
//! small and its memory flat. Counts are deterministic, so tests can rely on them.

use crate::json_scan::Scanner;
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

/// What [`count_json`] found in a JSON text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCount {
    /// As [`count_value`] counts the text's value.
    pub tokens: u64,
    /// The items of the text's array; `None` when it is not an array.
    pub items: Option<usize>,
}

/// [`count_value`] of JSON text, counted over the text rather than a value read from it: how a
/// budget estimates a prompt the request path never reads whole. For text serde_json reads
/// without losing anything (no repeated keys; what `schema_check::text` admits), the two agree
/// exactly (the `json_scan` fuzz target holds them to it). Strings that are keys are not
/// counted, as a value's keys are not; any other string by its text with its escapes undone.
pub fn count_json(text: &str) -> JsonCount {
    let bytes = text.as_bytes();
    let mut scan = Scanner::new(bytes);
    let mut found = JsonCount::default();
    let (mut depth, mut commas) = (0usize, 0usize);
    while let Some(byte) = scan.peek() {
        match byte {
            b'"' => {
                let Ok(span) = scan.string() else { break };
                scan.skip_space();
                if scan.peek() != Some(b':') {
                    found.tokens += count_string(&text[span.start - 1..span.end + 1]);
                }
            }
            b'-' | b'0'..=b'9' => {
                if scan.number().is_err() {
                    break;
                }
                found.tokens += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                scan.pos += 1;
                if depth == 1 && byte == b'[' {
                    scan.skip_space();
                    found.items = Some(usize::from(scan.peek() != Some(b']')));
                }
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                scan.pos += 1;
            }
            b',' => {
                commas += usize::from(depth == 1);
                scan.pos += 1;
            }
            // `true`, `false`, `null`, `:` and space count nothing.
            _ => scan.pos += 1,
        }
    }
    if let Some(items @ 1..) = &mut found.items {
        *items += commas;
    }
    found
}

/// [`count`] of a JSON string (`quoted`: its text with its quotes) as its value: escapes count
/// as the characters they stand for, decoded by serde_json as a value's strings are.
fn count_string(quoted: &str) -> u64 {
    let raw = &quoted[1..quoted.len() - 1];
    if !raw.contains('\\') {
        return count(raw);
    }
    serde_json::from_str::<String>(quoted).map_or_else(|_| count(raw), |text| count(&text))
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

    #[test]
    fn json_text_counts_as_its_value_does() {
        let texts = [
            r#"[{"role":"user","content":"Hello, world!"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"read","arguments":"{\"path\":\"src/main.rs\"}"}}]}]"#,
            r#"[ { "role" : "tool" , "content" : "fn main() {\n    println!(\"hi\");\n}\n" } ]"#,
            r#""tab\there, form\ffeed, back\bspace, slash\/ and \\ end""#,
            r#""caf\u00e9 \ud83d\ude00 2024 \u0041BC""#,
            r#"{"a":[1,-2.5,3e4,true,false,null],"b":{"c":"d"},"e":[]}"#,
            r#"[]"#,
            r#"[[1,2],[3]]"#,
            r#"12"#,
            r#"{"k:":"v,","[":"]"}"#,
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).unwrap();
            let items = value.as_array().map(Vec::len);
            assert_eq!(count_json(text), JsonCount { tokens: count_value(&value), items }, "{text}");
        }
        // Keys do not count; their values do.
        assert_eq!(count_json(r#"{"internationalization":"Hello"}"#).tokens, 1);
        assert_eq!(count_json(r#"[{"a":1},{"b":2},{"c":3}]"#).items, Some(3));
    }
}
