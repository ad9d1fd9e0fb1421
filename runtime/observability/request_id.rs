//! The request id: a client's own `x-request-id` when it is a plausible id, else a fresh one.
//! It goes into the request's span, its log lines and the `x-request-id` response header.

use crate::exchange::header_value::short;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The header that carries it both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-sent id kept; longer ones are replaced, not cut, so ids stay unique.
const MAX_LEN: usize = 128;

/// A request's id: 1-128 characters of `[A-Za-z0-9._:-]`, so it is always a valid header value
/// and cannot forge a log line or a field. Held as the header value itself, so the response
/// header, the span and every log line share one copy (made inline in one allocation, see
/// `exchange::header_value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id if it is acceptable, else a new `req_<16 hex>`.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        match headers.get(&HEADER) {
            // Copied: the client's value is a slice of its request's whole head, which an id
            // kept for a long stream's bookkeeping would otherwise keep alive.
            Some(v) if v.to_str().is_ok_and(is_acceptable) => {
                RequestId(short(v.as_bytes()).unwrap_or_else(|_| v.clone()))
            }
            _ => RequestId::new(),
        }
    }

    /// A fresh id.
    pub fn new() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n: u64 = rand::random();
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(b"req_");
        for (i, byte) in id[4..].iter_mut().enumerate() {
            *byte = HEX[((n >> ((15 - i) * 4)) & 0xf) as usize];
        }
        RequestId(short(&id).unwrap_or_else(|_| HeaderValue::from_static("req_0")))
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from `[A-Za-z0-9._:-]`.
        self.0.to_str().unwrap_or_default()
    }

    /// The `x-request-id` value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plausible_client_id_is_kept_and_anything_else_replaced() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, v.parse().unwrap());
            RequestId::from_headers(&h).to_string()
        };
        assert_eq!(with("trace-42:abc_DEF.1"), "trace-42:abc_DEF.1");
        for bad in ["has space", "a\"quote", "x=1", &"a".repeat(129)] {
            let id = with(bad);
            assert!(id.starts_with("req_") && id.len() == 20, "{bad:?} -> {id}");
        }
        let fresh = RequestId::from_headers(&HeaderMap::new());
        assert!(fresh.as_str().starts_with("req_") && fresh.as_str().len() == 20, "{fresh}");
        assert!(fresh.as_str()[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(fresh, RequestId::new());
    }
}
