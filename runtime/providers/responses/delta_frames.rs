//! The two events a Responses stream sends most, a message's text deltas and a function call's
//! argument deltas, written from a head kept for their item. Every delta of an item repeats its
//! event name, type, item id and output index; written through serde each time (escaped a byte
//! at a time, the event flattened into its sequence number by way of a map) they cost more than
//! the rest of turning a chunk into events. What comes out is byte for byte what
//! `sse::named(event.name(), &Sequenced { .. })` makes of the same event.

use axum::body::Bytes;

/// The frame of every delta of one item, but for the piece and the sequence number.
#[derive(Debug)]
pub struct DeltaFrames {
    /// `event: NAME\ndata: {"type":NAME,` and the members before `delta`, through `"delta":`.
    head: Vec<u8>,
    /// The members after `delta`, each with its leading comma.
    tail: &'static [u8],
}

impl DeltaFrames {
    /// `response.output_text.delta` events of message `item_id`.
    pub fn text(item_id: &str, output_index: u64) -> DeltaFrames {
        let head = head("response.output_text.delta", item_id, output_index, b",\"content_index\":0");
        DeltaFrames { head, tail: b",\"logprobs\":[]" }
    }

    /// `response.function_call_arguments.delta` events of function call `item_id`.
    pub fn arguments(item_id: &str, output_index: u64) -> DeltaFrames {
        DeltaFrames { head: head("response.function_call_arguments.delta", item_id, output_index, b""), tail: b"" }
    }

    /// The event carrying `piece` as the stream's event `sequence`.
    pub fn frame(&self, piece: &str, sequence: u64) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + piece.len() + self.tail.len() + 48);
        out.extend_from_slice(&self.head);
        string(&mut out, piece);
        out.extend_from_slice(self.tail);
        out.extend_from_slice(b",\"sequence_number\":");
        out.extend_from_slice(itoa::Buffer::new().format(sequence).as_bytes());
        out.extend_from_slice(b"}\n\n");
        Bytes::from(out)
    }
}

fn head(name: &str, item_id: &str, output_index: u64, before_delta: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + item_id.len());
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":");
    string(&mut out, name);
    out.extend_from_slice(b",\"item_id\":");
    string(&mut out, item_id);
    out.extend_from_slice(b",\"output_index\":");
    out.extend_from_slice(itoa::Buffer::new().format(output_index).as_bytes());
    out.extend_from_slice(before_delta);
    out.extend_from_slice(b",\"delta\":");
    out
}

/// A JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::responses::{Sequenced, StreamEvent};
    use crate::streaming::sse;
    use std::borrow::Cow;

    fn serde_frame(event: &StreamEvent<'_>, sequence_number: u64) -> String {
        String::from_utf8(sse::named(event.name(), &Sequenced { event, sequence_number }).to_vec()).unwrap()
    }

    fn text(frame: Bytes) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    #[test]
    fn frames_are_what_serde_writes() {
        let pieces = ["Bon", "jour \"à\"\n", "\u{1}\u{2028}</script>", ""];
        for (id, index) in [("msg_0123abc", 0), ("weird \"id\"\\", 7)] {
            let frames = (DeltaFrames::text(id, index), DeltaFrames::arguments(id, index));
            for (n, piece) in pieces.iter().enumerate() {
                let sequence = 40 + n as u64 * 999;
                let (item_id, delta) = (Cow::Borrowed(id), Cow::Borrowed(*piece));
                let event = StreamEvent::OutputTextDelta {
                    item_id: item_id.clone(),
                    output_index: index,
                    content_index: 0,
                    delta: delta.clone(),
                    logprobs: [],
                };
                assert_eq!(text(frames.0.frame(piece, sequence)), serde_frame(&event, sequence));
                let event = StreamEvent::FunctionCallArgumentsDelta { item_id, output_index: index, delta };
                assert_eq!(text(frames.1.frame(piece, sequence)), serde_frame(&event, sequence));
            }
        }
    }
}
