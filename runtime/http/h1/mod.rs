//! The door's own HTTP/1.1 server, for every client connection that is not HTTP/2 and until a
//! request asks to switch protocols (a WebSocket: that connection is handed to hyper).
//!
//! hyper's server held two 8 KiB buffers for each connection's life (a fixed head buffer, and
//! reads into 8 KiB), whatever the connection was doing: an open stream cost 20 KB where nginx
//! takes 17. Here a connection reads into a buffer only while a request arrives, and writes an
//! answer from one sized to it; a proxied request also takes ~2.5k fewer instructions.
//! `tests/it/h1_server_differential.rs` holds it to hyper's behaviour over a corpus of requests,
//! and the `h1_request` fuzz target drives [`read_request`].

mod answer;
mod body;
pub mod conn;
mod request;
pub mod rewind;

use crate::transport::framing::{read_to_end, BodyDecoder};
pub use answer::head_error;
use axum::http::request::Parts;
use bytes::BytesMut;
pub use request::{HeadError, MAX_HEAD, MAX_HEADERS, UNPARSEABLE};

/// One request read from `bytes` as the server reads one from a connection that ends where
/// `bytes` do: its head and whole body, or why it is refused.
pub fn read_request(bytes: &[u8]) -> Result<(Parts, Vec<u8>), String> {
    let Some((head, len)) = request::parse(bytes).map_err(|e| e.to_string())? else {
        return Err("the connection closed in the middle of the request's head".into());
    };
    let mut buf = BytesMut::from(&bytes[len..]);
    let body = read_to_end(BodyDecoder::new(head.framing), &mut buf)
        .map_err(|e| format!("the request body is malformed: {e}"))?;
    Ok((head.parts, body))
}

#[cfg(test)]
mod tests {
    use super::read_request;

    #[test]
    fn a_chunked_request_is_read_whole() {
        let raw = b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        let (parts, body) = read_request(raw).unwrap();
        assert_eq!(parts.uri, "/v1/x");
        assert_eq!(body, b"abc0123456789");
    }

    #[test]
    fn a_body_cut_short_is_refused() {
        assert!(read_request(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc").is_err());
        assert!(read_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err());
        assert!(read_request(b"GET / HTTP/1.1\r\nHost: a\r\n").is_err());
    }

    /// A small fuzz run inside the test suite (libFuzzer runs the `h1_request` target at
    /// length): mutations of valid requests, none of which may panic or read a body longer
    /// than the bytes given.
    #[test]
    fn mutated_requests_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nabcd\r\n0\r\nt: 1\r\n\r\n",
            b"GET /health?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..30_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (bytes.len() + 1);
                const BYTES: &[u8] = b"\r\n:;, 0fF-+\t\x00\xffaZ";
                let byte = BYTES[(next() as usize) % BYTES.len()];
                match next() % 4 {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    2 if at < bytes.len() => drop(bytes.remove(at)),
                    _ => bytes.truncate(at),
                }
            }
            if let Ok((_, body)) = read_request(&bytes) {
                assert!(body.len() <= bytes.len(), "{:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
