//! HTTP/1.1 message bodies cut out of the bytes a connection delivers: by length, chunked (RFC
//! 9112 section 7.1), or up to the close; and the header rules both ends of a connection read
//! (the last transfer coding, `connection` tokens). Socket-free, so the upstream client (answers)
//! and the door's server (requests) share it, and the fuzz targets drive it directly.

use axum::http::header::CONNECTION;
use axum::http::{HeaderMap, HeaderValue};
use bytes::{Bytes, BytesMut};

/// Longest chunk-size or trailer line of a chunked body.
const MAX_LINE: usize = 4096;

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Read until the peer closes the connection (answers only).
    UntilClose,
}

/// Why a body cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a chunk line is too long")]
    LineTooLong,
    #[error("a malformed chunk size")]
    MalformedChunkSize,
    #[error("a chunk is longer than its size")]
    ChunkTooLong,
    #[error("the connection closed before the end")]
    CutShort,
}

/// Where the body's reader stands.
#[derive(Debug, Clone, Copy)]
enum State {
    /// This many bytes are still to come.
    Length(u64),
    /// A chunk-size line is next.
    ChunkSize,
    /// This many bytes of the current chunk are still to come.
    ChunkData(u64),
    /// The CRLF that ends a chunk's data.
    ChunkEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    UntilClose,
    /// The body has ended.
    Done,
}

/// Cuts a body out of the bytes that arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyDecoder {
    state: State,
}

/// What the buffered bytes give next.
#[derive(Debug)]
pub enum Step {
    Data(Bytes),
    /// The body needs bytes that have not arrived.
    NeedMore,
    End,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> BodyDecoder {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The bytes still to come of a body framed by its length.
    pub fn length_left(&self) -> Option<u64> {
        match self.state {
            State::Length(left) => Some(left),
            _ => None,
        }
    }

    /// The next piece of the body `buf` holds; what it uses is taken from `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, FramingError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::End),
                _ if buf.is_empty() => return Ok(Step::NeedMore),
                State::Length(left) | State::ChunkData(left) => {
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Step::Data(data));
                }
                State::UntilClose => return Ok(Step::Data(buf.split().freeze())),
                State::ChunkSize => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 { State::Trailers } else { State::ChunkData(size) };
                }
                State::ChunkEnd => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                    if !line.is_empty() {
                        return Err(FramingError::ChunkTooLong);
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    /// The connection ended: fine where the body runs to the close, or had ended already.
    pub fn at_eof(&self) -> Result<(), FramingError> {
        match self.state {
            State::UntilClose | State::Done => Ok(()),
            _ => Err(FramingError::CutShort),
        }
    }
}

/// The whole body in `buf`, as read from a connection that ends where `buf` does.
pub fn read_to_end(mut decoder: BodyDecoder, buf: &mut BytesMut) -> Result<Vec<u8>, FramingError> {
    let mut body = Vec::new();
    loop {
        match decoder.step(buf)? {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::End => return Ok(body),
            Step::NeedMore => return decoder.at_eof().map(|()| body),
        }
    }
}

/// Whether a `transfer-encoding` value's last coding is `chunked`.
pub fn ends_in_chunked(codings: &HeaderValue) -> bool {
    let last = codings.to_str().unwrap_or_default().rsplit(',').next().unwrap_or_default();
    last.trim().eq_ignore_ascii_case("chunked")
}

/// Whether a message's sender keeps the connection for another: HTTP/1.1 unless it says
/// `connection: close`, HTTP/1.0 only if it says `keep-alive`.
pub fn wants_keep_alive(headers: &HeaderMap, http11: bool) -> bool {
    let mut tokens =
        headers.get_all(CONNECTION).iter().flat_map(|v| v.to_str().unwrap_or_default().split(',')).map(str::trim);
    if http11 {
        !tokens.any(|t| t.eq_ignore_ascii_case("close"))
    } else {
        tokens.any(|t| t.eq_ignore_ascii_case("keep-alive"))
    }
}

/// The next CRLF-terminated line at the start of `buf` (without its line end), removed from it.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, FramingError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(FramingError::LineTooLong),
        None => Ok(None),
    }
}

/// A chunk-size line: `1*HEXDIG [BWS] [";" extensions]` (RFC 9112 section 7.1). Chunk
/// extensions carry nothing a proxy uses. Nothing else passes: no sign, no leading space, no
/// more hex digits than a u64 holds.
fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    let malformed = || FramingError::MalformedChunkSize;
    let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits_end = size_part.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(size_part.len());
    let (digits, rest) = size_part.split_at(digits_end);
    if digits.is_empty() || digits.len() > 16 || !rest.iter().all(|&b| b == b' ' || b == b'\t') {
        return Err(malformed());
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(16).ok_or_else(malformed)?;
        n.checked_mul(16).and_then(|n| n.checked_add(u64::from(digit))).ok_or_else(malformed)
    })
}
