//! A client's request head: parsed with httparse, checked the way RFC 9112 asks of a server
//! (a body's framing that could be read two ways is refused), and built into the `http` types
//! the router takes.

use crate::transport::framing::{ends_in_chunked, wants_keep_alive, Framing, HeadNames};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version};
use bytes::Bytes;

/// Most headers a request may have.
pub const MAX_HEADERS: usize = 100;
/// Longest request head read (hyper's default buffer limit, which clients have met until now).
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Longest request target the `http` crate holds.
const MAX_URI: usize = u16::MAX as usize - 1;

/// A request head, parsed.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: Parts,
    /// How the body ends: by its length (0 without one) or chunked.
    pub framing: Framing,
    /// Whether the client keeps the connection for another request.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before its body.
    pub expects_continue: bool,
    /// The client asks to switch protocols (a WebSocket) or to tunnel (`CONNECT`).
    pub upgrade: bool,
}

/// Why a request head is refused. The connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request header fields too large: at most 100 headers and about 400 KB of head are read")]
    TooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `code` of the OpenAI-style error body.
    pub fn code(self) -> &'static str {
        match self {
            HeadError::TooLarge => "request_header_fields_too_large",
            HeadError::UriTooLong => "uri_too_long",
            HeadError::Malformed(_) => "malformed_request",
        }
    }
}

pub const UNPARSEABLE: HeadError = HeadError::Malformed("the request line or a header cannot be parsed");

/// Parses the head at the start of `buf` (nothing is taken from it): the head and its length in
/// bytes, or `None` while it is incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let len = match parsed.parse(buf) {
        // The limit holds however the head arrived: in one read or in many.
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(UNPARSEABLE),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(UNPARSEABLE);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| UNPARSEABLE)?;
    if target.len() > MAX_URI {
        return Err(HeadError::UriTooLong);
    }
    // The head copied once, exactly: the target and every value are slices of the copy rather
    // than an allocation each, and what they keep alive is the head, not the read buffer.
    let raw = Bytes::copy_from_slice(&buf[..len]);
    let shared = |part: &[u8]| {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        raw.slice(start..start + part.len())
    };
    let uri = Uri::from_maybe_shared(shared(target.as_bytes()))
        .map_err(|_| HeadError::Malformed("the request target is not a valid URI"))?;
    let http11 = version == 1;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut names = HeadNames::default();
    for h in parsed.headers.iter() {
        let name = crate::exchange::header_name::read(h.name).map_err(|_| UNPARSEABLE)?;
        let value = HeaderValue::from_maybe_shared(shared(h.value)).map_err(|_| UNPARSEABLE)?;
        names.note(&name);
        headers.append(name, value);
    }
    let framing = framing(&mut headers, names, http11)?;
    let keep_alive = wants_keep_alive(&headers, names, http11);
    let expects_continue = http11
        && names.expect
        && headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let upgrade = method == Method::CONNECT || (names.upgrade && asks_upgrade(&headers));
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    parts.headers = headers;
    Ok(Some((RequestHead { parts, framing, keep_alive, expects_continue, upgrade }, len)))
}

/// The body's framing, as RFC 9112 section 6.3 orders the rules for a request. Repeated equal
/// `content-length` headers are folded into one, so the router (and an upstream) sees one.
fn framing(headers: &mut HeaderMap, names: HeadNames, http11: bool) -> Result<Framing, HeadError> {
    if let Some(codings) = names.last_transfer_coding(headers) {
        if !http11 {
            return Err(HeadError::Malformed("transfer-encoding is not allowed in an HTTP/1.0 request"));
        }
        // Two framings a proxy in front of us could read differently: the classic smuggling
        // vector, refused rather than resolved.
        if names.content_length {
            return Err(HeadError::Malformed("a request may not carry both transfer-encoding and content-length"));
        }
        if !ends_in_chunked(codings) {
            return Err(HeadError::Malformed("a request's transfer-encoding must end with chunked"));
        }
        return Ok(Framing::Chunked);
    }
    if !names.content_length {
        return Ok(Framing::Length(0));
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = lengths.next() else { return Ok(Framing::Length(0)) };
    // Digits only: no sign, no list (`3, 3`), as hyper refuses them.
    let length = digits(first.as_bytes()).ok_or(HeadError::Malformed("content-length is not a number"))?;
    let mut repeated = false;
    for value in lengths {
        if digits(value.as_bytes()) != Some(length) {
            return Err(HeadError::Malformed("conflicting content-length values"));
        }
        repeated = true;
    }
    if repeated {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(Framing::Length(length))
}

/// A decimal length: digits only (no sign, no space), at most what a u64 holds.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A `connection` header naming `upgrade`.
fn asks_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<RequestHead, HeadError> {
        let (head, len) = parse(raw.as_bytes())?.unwrap_or_else(|| panic!("partial: {raw:?}"));
        assert_eq!(len, raw.find("\r\n\r\n").map(|at| at + 4).unwrap_or(raw.len()));
        Ok(head)
    }

    #[test]
    fn a_plain_post_is_read_with_its_length() {
        let h =
            head("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
                .unwrap();
        assert_eq!(h.parts.method, Method::POST);
        assert_eq!(h.parts.uri, "/v1/chat/completions?x=1");
        assert_eq!(h.parts.version, Version::HTTP_11);
        assert_eq!(h.framing, Framing::Length(12));
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert!(h.keep_alive && !h.expects_continue && !h.upgrade);
    }

    #[test]
    fn the_target_and_values_are_slices_of_one_copy_of_the_head_alone() {
        let raw = "POST /v1/x?y=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\nContent-Length: 2\r\n\r\n{}";
        let (h, len) = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(h.parts.headers["x-request-id"], "abc");
        assert_eq!(h.parts.uri.path_and_query().map(|p| p.as_str()), Some("/v1/x?y=1"));
        let spans: Vec<(usize, usize)> = h
            .parts
            .headers
            .values()
            .map(|v| v.as_bytes())
            .map(|v| {
                let start = v.as_ptr() as usize;
                (start, start + v.len())
            })
            .collect();
        let lowest = spans.iter().map(|s| s.0).min().unwrap();
        let highest = spans.iter().map(|s| s.1).max().unwrap();
        // Within one block no longer than the head...
        assert!(highest - lowest <= len, "{spans:?}");
        // ...that is not the buffer the head was read from.
        let read = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
        assert!(spans.iter().all(|&(start, _)| !read.contains(&start)));
    }

    #[test]
    fn framing_that_could_be_read_two_ways_is_refused() {
        let both = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert!(matches!(head(both), Err(HeadError::Malformed(_))));
        let differing = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(matches!(head(differing), Err(HeadError::Malformed(_))));
        for bad in ["+3", "-1", "3 4", "3, 3", "0x10", "", "99999999999999999999999"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(matches!(head(&raw), Err(HeadError::Malformed(_))), "{bad:?}");
        }
        let not_last = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert!(matches!(head(not_last), Err(HeadError::Malformed(_))));
        let old = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(head(old), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn agreeing_lengths_and_final_chunked_pass() {
        let same = head("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(same.framing, Framing::Length(3));
        assert_eq!(same.parts.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        let chunked = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").unwrap();
        assert_eq!(chunked.framing, Framing::Chunked);
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n").unwrap().framing, Framing::Length(0));
    }

    #[test]
    fn connection_tokens_decide_keep_alive_upgrade_and_continue() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap().keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().keep_alive);
        let ws = head("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert!(ws.upgrade);
        assert!(!head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").unwrap().upgrade);
        assert!(head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").unwrap().expects_continue);
    }

    #[test]
    fn heads_too_large_or_broken_get_their_own_errors() {
        let flood: String = (0..101).map(|i| format!("x-{i}: a\r\n")).collect();
        assert_eq!(head(&format!("GET / HTTP/1.1\r\n{flood}\r\n")).unwrap_err(), HeadError::TooLarge);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI));
        assert_eq!(head(&long).unwrap_err(), HeadError::UriTooLong);
        assert!(matches!(head("GET /a b HTTP/1.1\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(head("GET / HTTP/1.1\r\nno colon\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(head("GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)));
        let huge = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(huge.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }
}
