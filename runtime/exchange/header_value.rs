//! Short header values (a request id, a cost) made in one allocation that their clones share.
//!
//! `HeaderValue::from_bytes` copies its text into a vector, which `bytes` moves into a shared
//! block of its own the first time the value is cloned; a `String` with room to spare gets that
//! block at once. Either way a value that the answer, the log line and the spend record each
//! hold costs two allocations. Here the text sits inline in the one block its clones count.

use axum::http::header::InvalidHeaderValue;
use axum::http::HeaderValue;
use bytes::Bytes;

/// The longest text kept inline (a UUID is 36 bytes); a longer one is copied as `from_bytes`
/// copies it.
const INLINE: usize = 40;

/// Text of up to [`INLINE`] bytes, in place.
struct Inline {
    len: usize,
    text: [u8; INLINE],
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

/// `text` as a header value.
pub fn short(text: &[u8]) -> Result<HeaderValue, InvalidHeaderValue> {
    if text.len() > INLINE {
        return HeaderValue::from_bytes(text);
    }
    let mut inline = Inline { len: text.len(), text: [0; INLINE] };
    inline.text[..text.len()].copy_from_slice(text);
    HeaderValue::from_maybe_shared(Bytes::from_owner(inline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_hold_their_text_inline_or_copied_and_refuse_what_a_header_cannot_carry() {
        for text in ["", "req_0123456789abcdef", &"a".repeat(INLINE), &"b".repeat(INLINE + 1), &"c".repeat(300)] {
            let value = short(text.as_bytes()).unwrap();
            assert_eq!(value.as_bytes(), text.as_bytes());
            let copy = value.clone();
            drop(value);
            assert_eq!(copy, HeaderValue::from_bytes(text.as_bytes()).unwrap(), "a clone outlives its original");
        }
        let long = [&[b'x'; 100][..], b"\r"].concat();
        for bad in [&b"a\nb"[..], b"bad\x7f", &long] {
            assert!(short(bad).is_err(), "{bad:?}");
        }
    }
}
