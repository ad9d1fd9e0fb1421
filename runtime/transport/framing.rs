//! HTTP/1.1 message bodies cut out of the bytes a connection delivers: by length, chunked (RFC
//! 9112 section 7.1), or up to the close; and the header rules both ends of a connection read
//! (the last transfer coding, `connection` tokens). Socket-free, so the upstream client (answers)
//! and the door's server (requests) share it, and the fuzz targets drive it directly.

use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Buf, Bytes, BytesMut};

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
                    self.read_ahead(buf);
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

    /// Takes the framing that follows a chunk's data while it is already in `buf`: the CRLF
    /// ending the chunk, and the last chunk and its trailers. A stream's upstream sends each
    /// event as a chunk; left in the buffer, the two bytes of its CRLF kept the connection's
    /// whole read buffer alive between events, and the end of the body unseen until the next
    /// read. Framing that is incomplete or broken is left for the next [`step`](Self::step),
    /// which waits for the rest or reports it.
    fn read_ahead(&mut self, buf: &mut BytesMut) {
        while let Some((line, used)) = peek_line(buf) {
            self.state = match self.state {
                State::ChunkEnd if line.is_empty() => State::ChunkSize,
                // Only the last chunk: a data chunk is read by `step` as it arrives.
                State::ChunkSize if chunk_size(line) == Ok(0) => State::Trailers,
                State::Trailers if line.is_empty() => State::Done,
                State::Trailers => State::Trailers,
                _ => return,
            };
            buf.advance(used);
            if self.is_done() {
                return;
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

/// Which of the names that decide a message's framing and its connection's reuse a head
/// carries. Noted while the head's headers are built (a comparison each, no hashing), so the
/// usual head, with none of them but a length, is read without a look-up in its map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadNames {
    pub transfer_encoding: bool,
    pub content_length: bool,
    pub connection: bool,
    pub expect: bool,
    pub upgrade: bool,
    pub date: bool,
}

impl HeadNames {
    /// The names among `headers`.
    pub fn of(headers: &HeaderMap) -> HeadNames {
        let mut names = HeadNames::default();
        headers.keys().for_each(|name| names.note(name));
        names
    }

    /// The last of the head's transfer codings (the one that frames its body), looked up only
    /// where the head has `transfer-encoding`.
    pub fn last_transfer_coding(self, headers: &HeaderMap) -> Option<&HeaderValue> {
        match self.transfer_encoding {
            true => headers.get_all(TRANSFER_ENCODING).iter().next_back(),
            false => None,
        }
    }

    /// Notes `name` if it is one of these.
    #[inline]
    pub fn note(&mut self, name: &HeaderName) {
        if *name == CONTENT_LENGTH {
            self.content_length = true;
        } else if *name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if *name == CONNECTION {
            self.connection = true;
        } else if *name == EXPECT {
            self.expect = true;
        } else if *name == UPGRADE {
            self.upgrade = true;
        } else if *name == DATE {
            self.date = true;
        }
    }
}

/// Whether a message's sender keeps the connection for another: HTTP/1.1 unless it says
/// `connection: close`, HTTP/1.0 only if it says `keep-alive`. `names` are its head's.
pub fn wants_keep_alive(headers: &HeaderMap, names: HeadNames, http11: bool) -> bool {
    if !names.connection {
        return http11;
    }
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
    match peek_line(buf) {
        Some((line, used)) => {
            let len = line.len();
            let mut line = buf.split_to(used);
            line.truncate(len);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(FramingError::LineTooLong),
        None => Ok(None),
    }
}

/// The first line of `buf` without its LF (or CRLF), and the bytes it takes with its end;
/// `None` while its end has not arrived.
fn peek_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line = &buf[..end];
    Some((line.strip_suffix(b"\r").unwrap_or(line), end + 1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_names_are_noted_however_spelt_and_decide_keep_alive_without_a_look_up() {
        let mut headers = HeaderMap::new();
        for name in ["Content-Length", "TRANSFER-ENCODING", "connection", "Expect", "upgrade", "Date", "x-other"] {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("close"));
        }
        let all = HeadNames {
            transfer_encoding: true,
            content_length: true,
            connection: true,
            expect: true,
            upgrade: true,
            date: true,
        };
        assert_eq!(HeadNames::of(&headers), all);
        let mut one = HeadNames::default();
        one.note(&HeaderName::from_static("accept"));
        assert_eq!(one, HeadNames::default());
        // `connection: close` is read where it is noted; without the name, the version decides.
        assert!(!wants_keep_alive(&headers, all, true));
        assert!(wants_keep_alive(&HeaderMap::new(), HeadNames::default(), true));
        assert!(!wants_keep_alive(&HeaderMap::new(), HeadNames::default(), false));
    }

    /// Steps a chunked body through `bytes`: the data pieces, what stays in the buffer, and
    /// whether the body has ended.
    fn chunked(bytes: &[u8]) -> (BodyDecoder, Vec<Bytes>, BytesMut, Result<Step, FramingError>) {
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(bytes);
        let mut data = Vec::new();
        loop {
            match decoder.step(&mut buf) {
                Ok(Step::Data(piece)) => data.push(piece),
                last => return (decoder, data, buf, last),
            }
        }
    }

    #[test]
    fn a_chunks_crlf_is_taken_with_its_data_so_nothing_stays_buffered_between_chunks() {
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n"[..]);
        assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(d)) if d == "hello"));
        assert!(buf.is_empty(), "left {buf:?}");
        assert!(!decoder.is_done());
        // The next chunk reads on from there.
        buf.extend_from_slice(b"6\r\n world\r\n");
        assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(d)) if d == " world"));
        assert!(buf.is_empty());
        // A bare LF ends a chunk as well (as `step` reads lines).
        buf.extend_from_slice(b"1\r\n!\n");
        assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(d)) if d == "!"));
        assert!(buf.is_empty());
    }

    #[test]
    fn the_last_chunk_and_trailers_already_read_end_the_body_with_the_last_data() {
        for tail in [&b"0\r\n\r\n"[..], b"0;ext=1\r\nx-trailer: 1\r\n\r\n", b"0\n\n"] {
            let mut decoder = BodyDecoder::new(Framing::Chunked);
            let mut buf = BytesMut::from(&b"5\r\nhello\r\n"[..]);
            buf.extend_from_slice(tail);
            assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(d)) if d == "hello"));
            assert!(decoder.is_done() && buf.is_empty(), "{tail:?}: left {buf:?}");
            assert!(matches!(decoder.step(&mut buf), Ok(Step::End)));
        }
    }

    #[test]
    fn framing_split_across_reads_or_broken_is_left_to_the_next_step() {
        // Half a CRLF waits for the rest.
        let (mut decoder, data, mut buf, last) = chunked(b"5\r\nhello\r");
        assert_eq!(data, ["hello"]);
        assert!(matches!(last, Ok(Step::NeedMore)));
        buf.extend_from_slice(b"\n0\r\n\r\n");
        assert!(matches!(decoder.step(&mut buf), Ok(Step::End)));
        // A last chunk without its closing line yet.
        let (decoder, data, buf, last) = chunked(b"5\r\nhello\r\n0\r\n");
        assert_eq!(data, ["hello"]);
        assert!(matches!(last, Ok(Step::NeedMore)) && !decoder.is_done() && buf.is_empty());
        // Broken framing after the data: the data is handed on, the error comes next.
        let (_, data, _, last) = chunked(b"5\r\nhelloXX\r\n");
        assert_eq!(data, ["hello"]);
        assert_eq!(last.err(), Some(FramingError::ChunkTooLong));
        let (_, data, _, last) = chunked(b"5\r\nhello\r\nzz\r\n");
        assert_eq!(data, ["hello"]);
        assert_eq!(last.err(), Some(FramingError::MalformedChunkSize));
    }
}
