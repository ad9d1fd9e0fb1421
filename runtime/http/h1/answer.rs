//! An answer's head as bytes: the status line, the handler's headers, and what HTTP/1.1 framing
//! needs (the length or chunked coding, `connection`, `date`).

use super::request::HeadError;
use crate::transport::framing::HeadNames;
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, StatusCode};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// How an answer's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// No body at all (`HEAD`, 1xx, 204, 304): whatever the handler's body holds is dropped.
    Nothing,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Up to the close (an HTTP/1.0 client, length unknown).
    UntilClose,
}

/// How to send an answer with `status` and `headers` whose body's exact length is `exact` (if
/// known), to a request of `method_is_head` from a client that speaks HTTP/1.1 or not.
pub fn sending(
    status: StatusCode,
    headers: &HeaderMap,
    names: HeadNames,
    exact: Option<u64>,
    method_is_head: bool,
    http11: bool,
) -> Sending {
    if method_is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Sending::Nothing;
    }
    // A length the handler set wins; a body that disagrees with it ends the connection.
    let declared = names
        .content_length
        .then(|| headers.get(CONTENT_LENGTH))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    match declared.or(exact) {
        Some(n) => Sending::Length(n),
        None if http11 => Sending::Chunked,
        None => Sending::UntilClose,
    }
}

/// Writes the head of an answer sent as `how` into `out`; `names` are those of `headers`.
/// `keep_alive` says whether the connection stays open after it.
pub fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    names: HeadNames,
    how: Sending,
    keep_alive: bool,
    http11: bool,
) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Framing headers are ours to write: a handler's copy of an upstream's could contradict
    // how the body is actually sent.
    let skip_framing = names.transfer_encoding || (how != Sending::Nothing && names.content_length);
    for (name, value) in headers {
        if skip_framing && (name == TRANSFER_ENCODING || name == CONTENT_LENGTH) {
            continue;
        }
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match how {
        Sending::Length(n) => push_header(out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
        Sending::Chunked => push_header(out, b"transfer-encoding", b"chunked"),
        Sending::Nothing | Sending::UntilClose => {}
    }
    if !names.connection {
        if !keep_alive {
            push_header(out, b"connection", b"close");
        } else if !http11 {
            push_header(out, b"connection", b"keep-alive");
        }
    }
    if !names.date {
        with_date(|date| push_header(out, b"date", date));
    }
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The whole answer to a head that cannot be served: an OpenAI-style JSON error, and the
/// connection closes after it.
pub fn head_error(error: HeadError) -> Vec<u8> {
    let body = serde_json::json!({
        "error": {"message": error.to_string(), "type": "invalid_request_error", "param": null, "code": error.code()}
    })
    .to_string();
    let mut headers = HeaderMap::new();
    headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    let mut out = Vec::with_capacity(256 + body.len());
    let names = HeadNames::of(&headers);
    write_head(&mut out, error.status(), &headers, names, Sending::Length(body.len() as u64), false, true);
    out.extend_from_slice(body.as_bytes());
    out
}

thread_local! {
    /// `date`'s value, formatted once a second per thread: (the second, its text).
    static DATE_TEXT: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_TEXT.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn head(status: StatusCode, headers: &HeaderMap, how: Sending, keep_alive: bool, http11: bool) -> String {
        let mut out = Vec::new();
        write_head(&mut out, status, headers, HeadNames::of(headers), how, keep_alive, http11);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_headers_are_written_as_the_body_is_sent() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        let text = head(StatusCode::OK, &headers, Sending::Chunked, true, true);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"),
            "{text}"
        );
        assert!(!text.contains("gzip") && !text.contains("connection") && text.contains("\r\ndate: "), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        let closing = head(StatusCode::IM_A_TEAPOT, &HeaderMap::new(), Sending::Length(3), false, false);
        assert!(
            closing.starts_with("HTTP/1.1 418 I'm a teapot\r\ncontent-length: 3\r\nconnection: close\r\n"),
            "{closing}"
        );
        let old_client = head(StatusCode::OK, &HeaderMap::new(), Sending::Length(0), true, false);
        assert!(old_client.contains("connection: keep-alive\r\n"), "{old_client}");
    }

    #[test]
    fn a_handlers_own_date_and_connection_are_sent_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::DATE, HeaderValue::from_static("Sun, 06 Dec 2026 12:00:00 GMT"));
        headers.insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        let text = head(StatusCode::OK, &headers, Sending::Length(0), false, true);
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(text.contains("date: Sun, 06 Dec 2026 12:00:00 GMT\r\n"), "{text}");
        assert_eq!(text.matches("connection: ").count(), 1, "{text}");
    }

    #[test]
    fn a_head_answer_keeps_the_handlers_length_and_sends_no_body() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(sending(StatusCode::OK, &headers, HeadNames::of(&headers), Some(0), true, true), Sending::Nothing);
        assert!(head(StatusCode::OK, &headers, Sending::Nothing, true, true).contains("content-length: 42\r\n"));
        assert_eq!(
            sending(StatusCode::OK, &headers, HeadNames::of(&headers), Some(7), false, true),
            Sending::Length(42)
        );
        assert_eq!(
            sending(StatusCode::OK, &HeaderMap::new(), HeadNames::default(), None, false, true),
            Sending::Chunked
        );
        assert_eq!(
            sending(StatusCode::OK, &HeaderMap::new(), HeadNames::default(), None, false, false),
            Sending::UntilClose
        );
        assert_eq!(
            sending(StatusCode::NO_CONTENT, &HeaderMap::new(), HeadNames::default(), None, false, true),
            Sending::Nothing
        );
    }

    #[test]
    fn a_refused_head_gets_a_json_error_and_a_close() {
        let text = String::from_utf8(head_error(HeadError::TooLarge)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(head.contains("connection: close") && head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "request_header_fields_too_large");
    }
}
