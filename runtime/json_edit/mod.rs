//! Edits to a JSON object's top-level members made in its bytes: how a body an upstream takes
//! nearly as the client sent it (an OpenAI pass-through: another model name, a stream asked for
//! its usage) is written. The body's [`Layout`] is found while it is read ([`read`]), so an edit
//! costs a copy; writing its parsed value out again cost a third of a long conversation's time
//! in the gateway.

mod read;

pub use read::read;
use std::ops::Range;

/// The most members one call edits (the gateway's bodies need two at most).
pub const MOST: usize = 4;

/// The size from which a body is worth reading with its layout. Below it, finding the layout
/// costs more than it saves: for a 90-byte chat ~0.6k instructions more than serde_json's read,
/// paid by every route (a translation never splices), against the ~0.8k the pass-through saves
/// by splicing instead of writing. A long conversation's layout comes nearly free, and its value
/// costs twice its parse to write.
pub const LAYOUT_FROM: usize = 1024;

/// Where a JSON object's top-level members stand in its text, found as it was read. There is
/// one only for text that can be edited safely (see [`read`]): its keys are written plainly and
/// none repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The object's `{`.
    open: usize,
    members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// The key's text, between its quotes.
    key: Range<usize>,
    value: Range<usize>,
}

impl Layout {
    /// The layout of an object whose members another reader found, for text it found to spell
    /// its keys plainly and repeat none (`schema_check::text`).
    pub fn of_members(open: usize, members: impl IntoIterator<Item = (Range<usize>, Range<usize>)>) -> Layout {
        Layout { open, members: members.into_iter().map(|(key, value)| Member { key, value }).collect() }
    }

    /// The members in `doc` (the text the layout is of): each key as written, with its value.
    pub fn entries<'d>(&self, doc: &'d [u8]) -> impl Iterator<Item = (&'d [u8], &'d [u8])> + use<'_, 'd> {
        self.members
            .iter()
            .map(move |m| (doc.get(m.key.clone()).unwrap_or_default(), doc.get(m.value.clone()).unwrap_or_default()))
    }

    /// The position and value span of member `name` in `doc` (the text the layout is of).
    pub fn find(&self, doc: &[u8], name: &str) -> Option<(usize, Range<usize>)> {
        let at = self.members.iter().position(|m| doc.get(m.key.clone()) == Some(name.as_bytes()))?;
        Some((at, self.members[at].value.clone()))
    }
}

/// `doc`, a JSON object read with its `layout`, with each `(key, value)` of `sets` made: a
/// member already there gets the new value (JSON text) in its place, one not there is added at
/// the end. Everything else stays as the client wrote it. `sets`' keys are plain names, written
/// as they are. `None` past [`MOST`] edits, and the caller writes its parsed value instead.
pub fn set_members(doc: &[u8], layout: &Layout, sets: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    if sets.len() > MOST {
        return None;
    }
    // Where added members go: after the last member's value (before any space the client left
    // ahead of the closing brace), or just inside an empty object's brace. Every span ends by
    // there: a layout read from other bytes is refused rather than cut from these.
    let last_end = layout.members.last().map(|m| m.value.end);
    let insert_at = last_end.unwrap_or(layout.open + 1);
    if insert_at > doc.len() {
        return None;
    }
    let mut found: [Option<Range<usize>>; MOST] = Default::default();
    for member in &layout.members {
        let key = &doc[member.key.clone()];
        if let Some(i) = sets.iter().position(|(k, _)| k.as_bytes() == key) {
            found[i] = Some(member.value.clone());
        }
    }
    // Sized exactly: `Bytes` takes a vector whose length is its capacity without allocating
    // again (one with room to spare gets a shared header of its own).
    let mut len = doc.len();
    let mut added = 0usize;
    for (span, (key, value)) in found.iter().zip(sets) {
        match span {
            Some(span) => len = len - span.len() + value.len(),
            None => {
                len += key.len() + value.len() + 3; // `"key":value`
                added += 1;
            }
        }
    }
    let commas = if last_end.is_some() { added } else { added.saturating_sub(1) };
    let mut out = Vec::with_capacity(len + commas);
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
    debug_assert_eq!(out.len(), out.capacity());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn edit<const N: usize>(doc: &str, sets: [(&str, &str); N]) -> Option<String> {
        let sets = sets.map(|(k, v)| (k, v.as_bytes()));
        let layout = read(doc).ok()?.1?;
        let out = set_members(doc.as_bytes(), &layout, &sets)?;
        assert_eq!(out.len(), out.capacity(), "sized exactly, so `Bytes` takes it as it is");
        Some(String::from_utf8(out).unwrap())
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
