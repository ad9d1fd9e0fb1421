//! The events an Anthropic stream is mostly made of, a block's text and tool-input deltas,
//! written by hand: through serde each was an internally tagged enum inside another, written by
//! way of maps, some 1.4k instructions a chunk. What comes out is byte for byte what
//! `sse::named("content_block_delta", &StreamEvent::ContentBlockDelta { .. })` makes of it.

use axum::body::Bytes;

/// `content_block_delta` with a `text_delta` of `text` for block `index`.
pub fn text(index: u64, text: &str) -> Bytes {
    frame(index, br#""text_delta","text":"#, text)
}

/// `content_block_delta` with an `input_json_delta` of `partial_json` for block `index`.
pub fn input_json(index: u64, partial_json: &str) -> Bytes {
    frame(index, br#""input_json_delta","partial_json":"#, partial_json)
}

/// `kind_and_key`: the delta's type, quoted, and its piece's key up to its colon.
fn frame(index: u64, kind_and_key: &[u8], piece: &str) -> Bytes {
    const HEAD: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":";
    let mut out = Vec::with_capacity(HEAD.len() + kind_and_key.len() + piece.len() + 48);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
    out.extend_from_slice(b",\"delta\":{\"type\":");
    out.extend_from_slice(kind_and_key);
    // Writing a `str` into a Vec cannot fail; serde_json escapes it as it escapes any string.
    let _ = serde_json::to_writer(&mut out, piece);
    out.extend_from_slice(b"}}\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use crate::api::anthropic::{BlockDelta, StreamEvent};
    use crate::streaming::sse;
    use axum::body::Bytes;
    use std::borrow::Cow;

    fn by_serde(index: u64, delta: BlockDelta<'_>) -> Bytes {
        let event = StreamEvent::ContentBlockDelta { index, delta };
        sse::named(event.name(), &event)
    }

    #[test]
    fn frames_are_what_serde_writes() {
        for piece in ["Bon", "jour \"à\"\n", "\u{1}\u{2028}</script>\\", ""] {
            for index in [0, 7, u64::MAX] {
                let text = BlockDelta::TextDelta { text: Cow::Borrowed(piece) };
                assert_eq!(super::text(index, piece), by_serde(index, text));
                let json = BlockDelta::InputJsonDelta { partial_json: Cow::Borrowed(piece) };
                assert_eq!(super::input_json(index, piece), by_serde(index, json));
            }
        }
    }
}
