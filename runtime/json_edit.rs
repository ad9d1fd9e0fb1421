//! Edits to a JSON object's top-level members made in its bytes: how a body an upstream takes
//! nearly as the client sent it (an OpenAI pass-through: another model name, a stream asked for
//! its usage) is written. Splicing costs a scan of the body and a copy; writing its parsed value
//! out again costs about twice that, and was a third of a long conversation's time in the
//! gateway.

use crate::json_scan;
use serde_json::Value;
use std::ops::Range;

/// The most members one call edits (the gateway's bodies need two at most).
pub const MOST: usize = 4;

/// `doc`, a JSON object, with each `(key, value)` of `sets` made: a member already there gets
/// the new value (JSON text) in its place, one not there is added at the end. Everything else
/// stays as the client wrote it. `parsed` is the value read from `doc`; `sets`' keys are plain
/// names, written as they are.
///
/// `None` when the bytes cannot be edited safely, and the caller writes its parsed value
/// instead: not an object (or not JSON), more than [`MOST`] edits asked for, a top-level key
/// written with escapes (it might spell one of `sets`' keys), or a key repeated anywhere in the
/// document (`parsed` holding fewer keys than the bytes). Parsers differ on which of a repeated
/// key's values counts: the gateway read the last one (to route, to price, to hold a budget), an
/// upstream might read the first; bytes that can mean two things are not sent.
pub fn set_members(doc: &[u8], parsed: &Value, sets: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    if sets.len() > MOST {
        return None;
    }
    let mut found: [Option<Range<usize>>; MOST] = Default::default();
    // Where added members go: after the last member's value (before any space the client left
    // ahead of the closing brace), or just inside an empty object's brace.
    let (mut last_end, mut unsure) = (None, false);
    let scanned = json_scan::members(doc, |key, span| {
        last_end = Some(span.end);
        if key.contains(&b'\\') {
            unsure = true;
        } else if let Some(i) = sets.iter().position(|(k, _)| k.as_bytes() == key) {
            unsure |= found[i].replace(span).is_some();
        }
    });
    let open = doc.len() - doc.trim_ascii_start().len();
    if unsure || doc.get(open) != Some(&b'{') || scanned.ok()? != keys_in(parsed) {
        return None;
    }
    let insert_at = last_end.unwrap_or(open + 1);
    let extra: usize = sets.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(doc.len() + extra);
    // Values replaced in place, in the order they stand in the body.
    let mut replaced: [(Range<usize>, &[u8]); MOST] = Default::default();
    let mut count = 0;
    for (span, (_, value)) in found.iter().zip(sets) {
        if let Some(span) = span {
            replaced[count] = (span.clone(), value);
            count += 1;
        }
    }
    let replaced = &mut replaced[..count];
    replaced.sort_unstable_by_key(|(span, _)| span.start);
    let mut at = 0;
    for (span, value) in replaced.iter() {
        out.extend_from_slice(&doc[at..span.start]);
        out.extend_from_slice(value);
        at = span.end;
    }
    out.extend_from_slice(&doc[at..insert_at]);
    let mut any = last_end.is_some();
    for ((key, value), _) in sets.iter().zip(&found).filter(|(_, span)| span.is_none()) {
        if any {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value);
        any = true;
    }
    out.extend_from_slice(&doc[insert_at..]);
    Some(out)
}

/// The keys of every object in `value`, at every depth (serde_json parses no deeper than 128
/// levels, so the recursion is bounded).
fn keys_in(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(keys_in).sum::<usize>(),
        Value::Array(items) => items.iter().map(keys_in).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn edit<const N: usize>(doc: &str, sets: [(&str, &str); N]) -> Option<String> {
        let sets = sets.map(|(k, v)| (k, v.as_bytes()));
        // What serde_json reads from the bytes (not JSON: null, which no scan agrees with).
        let parsed = serde_json::from_str(doc).unwrap_or(Value::Null);
        set_members(doc.as_bytes(), &parsed, &sets).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn members_there_are_replaced_in_place_and_the_rest_is_kept_as_written() {
        let doc = r#"{ "model" : "a",  "n":1.0e0, "messages":[{"role":"user","content":"h\u00e9"}] }"#;
        assert_eq!(
            edit(doc, [("model", r#""gpt-4o""#)]).as_deref(),
            Some(r#"{ "model" : "gpt-4o",  "n":1.0e0, "messages":[{"role":"user","content":"h\u00e9"}] }"#)
        );
        // Two edits, given in another order than the body's.
        let doc = r#"{"stream_options":{"x":1},"model":"a","stream":true}"#;
        let out = edit(doc, [("model", r#""b""#), ("stream_options", r#"{"x":1,"include_usage":true}"#)]);
        assert_eq!(
            out.as_deref(),
            Some(r#"{"stream_options":{"x":1,"include_usage":true},"model":"b","stream":true}"#)
        );
    }

    #[test]
    fn members_not_there_are_added_at_the_end() {
        let out = edit("{\"model\":\"a\"}\n", [("model", "\"b\""), ("stream_options", r#"{"include_usage":true}"#)]);
        assert_eq!(out.as_deref(), Some("{\"model\":\"b\",\"stream_options\":{\"include_usage\":true}}\n"));
        assert_eq!(edit(" { } ", [("a", "1"), ("b", "2")]).as_deref(), Some(r#" {"a":1,"b":2 } "#));
        // What comes out parses to what editing the parsed value gives.
        let doc = r#"{"model":"a","messages":[],"temperature":0.5}"#;
        let out = edit(doc, [("model", "\"z\""), ("top_p", "1")]).unwrap();
        let mut expected: Value = serde_json::from_str(doc).unwrap();
        expected["model"] = json!("z");
        expected["top_p"] = json!(1);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
    }

    #[test]
    fn bytes_that_cannot_be_edited_safely_are_refused() {
        // An escaped key might be "model" itself.
        assert_eq!(edit(r#"{"mod\u0065l":"a"}"#, [("model", "\"b\"")]), None);
        // A key there twice, edited or not, at the top or deeper: which one an upstream reads is
        // its parser's choice, and the gateway read the last.
        assert_eq!(edit(r#"{"model":"a","model":"c"}"#, [("model", "\"b\"")]), None);
        assert_eq!(edit(r#"{"max_tokens":1,"max_tokens":99999}"#, [("model", "\"b\"")]), None);
        assert_eq!(edit(r#"{"m":[{"content":"a","content":"b"}]}"#, [("model", "\"b\"")]), None);
        assert_eq!(edit(r#"{"m":[{"\u0061":1,"a":2}]}"#, [("model", "\"b\"")]), None);
        let five = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")];
        assert_eq!(edit("{}", five), None, "past MOST");
        for doc in ["[1]", "\"s\"", "{\"a\":1", "{\"a\":1} x", "", "{\"a\":1}}"] {
            assert_eq!(edit(doc, [("model", "\"b\"")]), None, "{doc}");
        }
    }
}
