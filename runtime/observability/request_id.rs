//! The request id: a client's own `x-request-id` when it is a plausible id, else a fresh one.
//! It goes into the request's span, its log line and the `x-request-id` response header.

use axum::http::{HeaderMap, HeaderName};

/// The header that carries it both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-sent id kept; longer ones are replaced, not cut, so ids stay unique.
const MAX_LEN: usize = 128;

/// The client's id if it is 1-128 characters of `[A-Za-z0-9._:-]` (it lands in log lines,
/// so nothing that could forge a line or a field), else a new `req_<16 hex>`.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(new)
}

fn is_acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A fresh id.
pub fn new() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u64 = rand::random();
    let mut id = String::with_capacity(20);
    id.push_str("req_");
    id.extend((0..16).rev().map(|nibble| char::from(HEX[((n >> (nibble * 4)) & 0xf) as usize])));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plausible_client_id_is_kept_and_anything_else_replaced() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, v.parse().unwrap());
            from_headers(&h)
        };
        assert_eq!(with("trace-42:abc_DEF.1"), "trace-42:abc_DEF.1");
        for bad in ["has space", "a\"quote", "x=1", &"a".repeat(129)] {
            let id = with(bad);
            assert!(id.starts_with("req_") && id.len() == 20, "{bad:?} -> {id}");
        }
        assert!(from_headers(&HeaderMap::new()).starts_with("req_"));
    }
}
