//! Server-Sent Events framing and the response that carries them.
//!
//! Each event is its own body frame, written as soon as it is produced: nothing here collects
//! or buffers a stream.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::Stream;
use serde::Serialize;

/// Room an event is written into: a chat chunk is about 200 bytes. A buffer grown from its
/// first few bytes was reallocated three or four times per event.
pub(crate) const EVENT_ROOM: usize = 256;

/// `data: {json}\n\n`, the OpenAI framing.
pub fn data<T: Serialize + ?Sized>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(EVENT_ROOM);
    out.extend_from_slice(b"data: ");
    write_json(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `event: NAME\ndata: {json}\n\n`, the Anthropic framing.
pub fn named<T: Serialize + ?Sized>(event: &str, value: &T) -> Bytes {
    let mut out = Vec::with_capacity(EVENT_ROOM);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    write_json(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A wire body as compact JSON. The types written here serialise without fail (string keys,
/// no foreign `Serialize` that can refuse); should one ever fail, the event says so as JSON.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, value) {
        out.truncate(start);
        let error =
            serde_json::json!({"error": {"message": format!("cannot write an event: {e}"), "type": "server_error"}});
        out.extend_from_slice(error.to_string().as_bytes());
    }
}

/// The OpenAI end-of-stream marker.
pub fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// A `text/event-stream` response that writes each item of `events` as it comes.
pub fn response<S>(events: S) -> Response
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let mut response = Response::new(Body::from_stream(events));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies in between not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One event parsed from an SSE stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field, when the stream names its events (Anthropic does).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed bytes as they arrive, take events as they complete.
/// Handles `\n`, `\r\n` and `\r` line ends, multi-line data, comments, and events split
/// across any number of reads.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    current: Event,
    has_data: bool,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Consumes bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        if self.buffer.is_empty() {
            // The usual case, a read of whole lines: they are read where they lie, and only an
            // unfinished last line is kept.
            let used = self.lines(bytes, &mut events);
            self.buffer.extend_from_slice(&bytes[used..]);
        } else {
            self.buffer.extend_from_slice(bytes);
            // Taken out while its lines are read, so that each line is borrowed, not copied.
            let buffer = std::mem::take(&mut self.buffer);
            let used = self.lines(&buffer, &mut events);
            self.buffer = buffer;
            self.buffer.drain(..used);
        }
        events
    }

    /// The stream ended: an event still open (no blank line after it) is returned.
    pub fn finish(&mut self) -> Option<Event> {
        let rest = std::mem::take(&mut self.buffer);
        let mut events = Vec::new();
        if !rest.is_empty() {
            self.line(&rest, &mut events);
        }
        self.line(b"", &mut events);
        events.pop()
    }

    /// Reads the whole lines at the start of `text`; returns how many bytes they took.
    fn lines(&mut self, text: &[u8], events: &mut Vec<Event>) -> usize {
        let mut start = 0;
        while let Some(at) = memchr::memchr2(b'\n', b'\r', &text[start..]) {
            let end = start + at;
            let cr = text[end] == b'\r';
            // A lone '\r' at the very end may be half of "\r\n": wait for more bytes.
            if cr && end + 1 == text.len() {
                break;
            }
            self.line(&text[start..end], events);
            start = if cr && text.get(end + 1) == Some(&b'\n') { end + 2 } else { end + 1 };
        }
        start
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) {
        if line.is_empty() {
            if self.has_data {
                events.push(std::mem::take(&mut self.current));
                self.has_data = false;
            } else {
                self.current = Event::default();
            }
            return;
        }
        if line[0] == b':' {
            return; // a comment, e.g. a keep-alive
        }
        // Split before decoding: ':' is never part of a multi-byte character, so this reads as
        // splitting the decoded line would.
        let (field, value) = match memchr::memchr(b':', line) {
            Some(at) => (&line[..at], line[at + 1..].strip_prefix(b" ").unwrap_or(&line[at + 1..])),
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.current.event = Some(text(value).into_owned()),
            b"data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&text(value));
                self.has_data = true;
            }
            _ => {}
        }
    }
}

/// A field's value as text; bytes that are not UTF-8 read as U+FFFD. Checked whole first: the
/// lossy reading walks every character, the check skips ASCII a word at a time.
fn text(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_and_line_endings() {
        let mut d = Decoder::new();
        let mut all = d.feed(b"event: message_start\r\ndata: {\"a\"");
        assert!(all.is_empty());
        all.extend(d.feed(b": 1}\r\n\r\n: keep-alive\n\ndata: line1\ndata: line2\n"));
        all.extend(d.feed(b"\n"));
        all.extend(d.feed(b"data: \xff\r"));
        all.extend(d.feed(b"\rdata: [DONE]"));
        all.extend(d.finish());
        assert_eq!(
            all,
            vec![
                Event { event: Some("message_start".into()), data: "{\"a\": 1}".into() },
                Event { event: None, data: "line1\nline2".into() },
                // A lone CR ends a line too; bytes that are not UTF-8 read as U+FFFD.
                Event { event: None, data: "\u{fffd}".into() },
                Event { event: None, data: "[DONE]".into() },
            ]
        );
    }

    /// Every way of cutting a stream into reads gives the same events as reading it whole.
    #[test]
    fn any_cut_reads_as_the_whole() {
        let stream: &[u8] = b"event: a\r\ndata: {\"x\": \"\xc3\xa9\xff\"}\r\n\r\n: ping\n\ndata: 1\rdata: 2\r\rid: 7\ndata:3\n\ndata: open";
        let read = |pieces: &[&[u8]]| {
            let mut d = Decoder::new();
            let mut all: Vec<Event> = pieces.iter().flat_map(|p| d.feed(p)).collect();
            all.extend(d.finish());
            all
        };
        let whole = read(&[stream]);
        assert_eq!(whole.len(), 4, "{whole:?}");
        assert_eq!(whole[0], Event { event: Some("a".into()), data: "{\"x\": \"\u{e9}\u{fffd}\"}".into() });
        let data: Vec<&str> = whole[1..].iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["1\n2", "3", "open"]);
        for at in 0..=stream.len() {
            assert_eq!(read(&[&stream[..at], &stream[at..]]), whole, "cut at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read(&bytes), whole, "byte by byte");
    }
}
