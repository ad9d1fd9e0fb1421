//! A chat stream's chunks as OpenAI's `data:` events, written as `sse::data` writes them but
//! cheaper: every chunk of a stream repeats its id, object, created and model, so those members
//! are written once a stream and copied after (serde_json escapes a string a byte at a time,
//! and they were half of what a translated chunk cost to write).

use super::sse;
use crate::api::openai::ChatChunk;
use bytes::Bytes;
use serde::Serialize;

/// Writes one stream's chunks.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    /// `{"id":…,"object":…,"created":…,"model":…` as serde writes a chunk's first members;
    /// empty until the first chunk.
    head: Vec<u8>,
    /// The members `head` was written from.
    id: String,
    object: String,
    created: u64,
    model: String,
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
        chunk.id.clone_into(&mut self.id);
        chunk.object.clone_into(&mut self.object);
        self.created = chunk.created;
        chunk.model.clone_into(&mut self.model);
        Ok(())
    }

    /// The members after the head, in the order serde writes them: the declared ones, then
    /// the flattened `extra`.
    fn rest(&self, chunk: &ChatChunk, out: &mut Vec<u8>) -> serde_json::Result<()> {
        if let Some(fingerprint) = &chunk.system_fingerprint {
            out.push(b',');
            member(out, "system_fingerprint", fingerprint)?;
        }
        out.push(b',');
        member(out, "choices", &chunk.choices)?;
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

/// `"key":value`, compact.
fn member<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, key)?;
    out.push(b':');
    serde_json::to_writer(&mut *out, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ChatUsage, ChunkChoice, Delta};
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
