//! A chat stream's chunks as OpenAI's `data:` events, written as `sse::data` writes them but
//! cheaper: every chunk of a stream repeats its id, object, created and model, so those members
//! are written once a stream and copied after (serde_json escapes a string a byte at a time,
//! and they were half of what a translated chunk cost to write). The choices are written here
//! too, their keys as literals: the types flatten their `extra` maps, so serde writes them as
//! maps and escapes every key of every chunk (some 900 instructions a chunk).

use super::sse;
use crate::api::openai::{ChatChunk, ChunkChoice, Delta};
use bytes::Bytes;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;

/// Writes one stream's chunks.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    /// `{"id":…,"object":…,"created":…,"model":…` as serde writes a chunk's first members;
    /// empty until the first chunk.
    head: Vec<u8>,
    /// The members `head` was written from (shared with the chunks, which most often share
    /// them with each other, so the check is a pointer's).
    id: Arc<str>,
    object: Cow<'static, str>,
    created: u64,
    model: Arc<str>,
}

impl ChunkWriter {
    pub fn new() -> ChunkWriter {
        ChunkWriter::default()
    }

    /// `data: {chunk}\n\n`, byte for byte what `sse::data(chunk)` makes.
    pub fn event(&mut self, chunk: &ChatChunk) -> Bytes {
        if !self.heads(chunk) && self.write_head(chunk).is_err() {
            return sse::data(chunk);
        }
        let mut out = Vec::with_capacity(sse::EVENT_ROOM.max(self.head.len() + 128));
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.head);
        match self.rest(chunk, &mut out) {
            Ok(()) => {
                out.extend_from_slice(b"}\n\n");
                Bytes::from(out)
            }
            // Never for these types (string keys only); `sse::data` says why in the event.
            Err(_) => sse::data(chunk),
        }
    }

    /// Whether `head` holds `chunk`'s first members.
    fn heads(&self, chunk: &ChatChunk) -> bool {
        !self.head.is_empty()
            && self.created == chunk.created
            && self.id == chunk.id
            && self.model == chunk.model
            && self.object == chunk.object
    }

    fn write_head(&mut self, chunk: &ChatChunk) -> serde_json::Result<()> {
        self.head.clear();
        self.head.push(b'{');
        member(&mut self.head, "id", &chunk.id)?;
        self.head.push(b',');
        member(&mut self.head, "object", &chunk.object)?;
        self.head.push(b',');
        member(&mut self.head, "created", &chunk.created)?;
        self.head.push(b',');
        member(&mut self.head, "model", &chunk.model)?;
        self.id = Arc::clone(&chunk.id);
        self.object = chunk.object.clone();
        self.created = chunk.created;
        self.model = Arc::clone(&chunk.model);
        Ok(())
    }

    /// The members after the head, in the order serde writes them: the declared ones, then
    /// the flattened `extra`.
    fn rest(&self, chunk: &ChatChunk, out: &mut Vec<u8>) -> serde_json::Result<()> {
        if let Some(fingerprint) = &chunk.system_fingerprint {
            out.push(b',');
            member(out, "system_fingerprint", fingerprint)?;
        }
        out.extend_from_slice(b",\"choices\":[");
        for (n, choice) in chunk.choices.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_choice(out, choice)?;
        }
        out.push(b']');
        if let Some(usage) = &chunk.usage {
            out.push(b',');
            member(out, "usage", usage)?;
        }
        for (key, value) in &chunk.extra {
            out.push(b',');
            member(out, key, value)?;
        }
        Ok(())
    }
}

/// A choice as serde writes `ChunkChoice`: its members in declaration order, then `extra`'s.
fn write_choice(out: &mut Vec<u8>, choice: &ChunkChoice) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"index\":");
    out.extend_from_slice(itoa::Buffer::new().format(choice.index).as_bytes());
    out.extend_from_slice(b",\"delta\":");
    write_delta(out, &choice.delta)?;
    if let Some(logprobs) = &choice.logprobs {
        out.extend_from_slice(b",\"logprobs\":");
        serde_json::to_writer(&mut *out, logprobs)?;
    }
    out.extend_from_slice(b",\"finish_reason\":");
    serde_json::to_writer(&mut *out, &choice.finish_reason)?;
    for (key, value) in &choice.extra {
        out.push(b',');
        member(out, key, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// A delta as serde writes `Delta`: the members present, then `extra`'s.
fn write_delta(out: &mut Vec<u8>, delta: &Delta) -> serde_json::Result<()> {
    out.push(b'{');
    let start = out.len();
    let mut members = Members { out, start };
    members.optional(b"\"role\":", delta.role.as_ref())?;
    members.optional(b"\"content\":", delta.content.as_ref())?;
    members.optional(b"\"tool_calls\":", delta.tool_calls.as_ref())?;
    members.optional(b"\"reasoning_content\":", delta.reasoning_content.as_ref())?;
    members.optional(b"\"thinking_blocks\":", delta.thinking_blocks.as_ref())?;
    for (name, value) in &delta.extra {
        members.comma();
        member(members.out, name, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// An object's members written after `start`, each but the first after a comma.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl Members<'_> {
    fn comma(&mut self) {
        if self.out.len() > self.start {
            self.out.push(b',');
        }
    }

    /// `key` (`"name":`, as written) and `value`, when there is one.
    fn optional<T: Serialize>(&mut self, key: &[u8], value: Option<&T>) -> serde_json::Result<()> {
        let Some(value) = value else { return Ok(()) };
        self.comma();
        self.out.extend_from_slice(key);
        serde_json::to_writer(&mut *self.out, value)
    }
}

/// `"key":value`, compact.
fn member<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, key)?;
    out.push(b':');
    serde_json::to_writer(&mut *out, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ChatUsage, FunctionDelta, ThinkingBlock, ToolCallDelta};
    use serde_json::json;

    fn chunk(id: &str, model: &str) -> ChatChunk {
        ChatChunk {
            id: id.into(),
            object: "chat.completion.chunk".into(),
            created: 1_733_520_000,
            model: model.into(),
            system_fingerprint: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant".into()),
                    content: Some(Some("Bon\"jour\n".into())),
                    ..Delta::default()
                },
                logprobs: Some(None),
                finish_reason: None,
                extra: Default::default(),
            }],
            usage: None,
            extra: Default::default(),
        }
    }

    /// Each chunk of a stream whose every optional member comes and goes, and whose head
    /// changes midway (a stream whose chunks name their own ids, as a passed-on one may).
    #[test]
    fn writes_what_serde_writes() {
        let mut stream = Vec::new();
        let first = chunk("chatcmpl-1", "claude-3-5-sonnet-20241022");
        stream.push(first.clone());
        let mut fingerprinted = first.clone();
        fingerprinted.system_fingerprint = Some(None);
        fingerprinted.usage = Some(None);
        stream.push(fingerprinted);
        let mut last = first.clone();
        last.system_fingerprint = Some(Some("fp_\u{e9}".into()));
        last.choices.clear();
        last.usage = Some(Some(ChatUsage::new(11, 7)));
        last.extra = json!({"service_tier": "default", "obfuscation": "a\u{1}b"}).as_object().cloned().unwrap();
        stream.push(last);
        // Every member a choice and its delta can have, some more than once.
        let mut full = first.clone();
        full.choices[0].delta = Delta {
            role: None,
            content: Some(None),
            tool_calls: Some(vec![ToolCallDelta {
                index: 1,
                id: Some("call_\\1".into()),
                kind: Some("function".into()),
                function: Some(FunctionDelta { name: Some("get".into()), arguments: Some("{\"a\":\t1}".into()) }),
            }]),
            reasoning_content: Some("why\u{7f}".into()),
            thinking_blocks: Some(vec![ThinkingBlock::Thinking { thinking: "hm".into(), signature: Some("s".into()) }]),
            extra: json!({"audio": {"id": "a"}, "content": "again"}).as_object().cloned().unwrap(),
        };
        full.choices[0].logprobs = Some(Some(json!({"content": [{"token": "B", "logprob": -0.5}]})));
        full.choices[0].finish_reason = Some("tool_calls".into());
        full.choices[0].extra = json!({"native_finish_reason": "end\u{0}", "index": 9}).as_object().cloned().unwrap();
        let mut second = full.choices[0].clone();
        second.index = 4_000_000_000;
        second.delta = Delta { extra: json!({"x": null}).as_object().cloned().unwrap(), ..Delta::default() };
        second.logprobs = None;
        full.choices.push(second);
        let mut bare = full.choices[0].clone();
        bare.delta = Delta::default();
        bare.extra.clear();
        full.choices.push(bare);
        stream.push(full);
        stream.push(chunk("chatcmpl-2 \"quoted\"", "model/\u{2028}"));
        let mut later = chunk("chatcmpl-2 \"quoted\"", "model/\u{2028}");
        later.created += 1;
        stream.push(later);
        stream.push(first);

        let mut writer = ChunkWriter::new();
        for (n, chunk) in stream.iter().enumerate() {
            let written = writer.event(chunk);
            assert_eq!(
                std::str::from_utf8(&written).unwrap(),
                std::str::from_utf8(&sse::data(chunk)).unwrap(),
                "chunk {n}"
            );
        }
    }
}
