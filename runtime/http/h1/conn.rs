//! One client's HTTP/1.1 connection: requests read one after another (pipelined ones in order),
//! each handed to the router, its answer written back; until the client closes, asks to close,
//! or the server drains.
//!
//! Buffers are sized by what arrives: the read buffer grows from 4 KiB only for a longer head and
//! is given back whenever it is empty, and a stream's answer is written piece by piece from a
//! small buffer. While an answer streams, the socket is watched for the client leaving without a
//! buffer at all (a peek), so an open stream holds no read buffer.

use super::answer::{self, Sending};
use super::body::{self, Feed, Piece};
use super::request::{self, HeadError};
use crate::http::admission;
use crate::transport::framing::{wants_keep_alive, BodyDecoder, Framing, HeadNames, Step};
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderValue, Method, Version};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body as _;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::http::drain::Watcher;

/// What a read asks of the socket when a head or body needs more.
const READ: usize = 4 * 1024;
/// The most a body read asks for at once.
const MAX_BODY_READ: usize = 64 * 1024;
/// Pieces of an answer at least this long are written from where they are, not copied.
const WRITE_IN_PLACE: usize = 16 * 1024;
/// How long, and for how many bytes, a closing connection keeps reading what a client still
/// sends (an unread body), so that closing does not reset the connection under the answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    Closed,
    /// The client asked to switch protocols: the socket, and every byte read from it so far
    /// (that request's head first), for a server that can upgrade it.
    Upgrade(TcpStream, Bytes),
}

/// Serves `stream`, whose first bytes are already in `buf`, until it ends. `drain` is watched:
/// once it fires, an idle connection closes and a busy one closes after the answer in hand.
pub async fn serve<S>(
    mut stream: TcpStream,
    mut buf: BytesMut,
    service: S,
    header_timeout: Duration,
    drain: &mut Watcher,
) -> io::Result<Ended>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut deadline = pin!(tokio::time::sleep(header_timeout));
    loop {
        // A whole head, however many reads it takes.
        let mut waiting = false;
        let (head, head_len) = loop {
            if !buf.is_empty() {
                match request::parse(&buf) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(e) => return refuse(stream, e).await,
                }
            }
            if !waiting {
                // A client gets the timeout for its whole head, from the moment we wait for it.
                deadline.as_mut().reset(Instant::now() + header_timeout);
                waiting = true;
            }
            let read = tokio::select! {
                biased;
                read = read_head(&mut stream, &mut buf) => read?,
                () = &mut deadline => {
                    tracing::debug!("a client did not send its request's head within the header read timeout");
                    return Ok(Ended::Closed);
                }
                () = drain.draining(), if buf.is_empty() => return Ok(Ended::Closed),
            };
            if read == 0 {
                return Ok(Ended::Closed);
            }
        };
        if head.upgrade {
            return Ok(Ended::Upgrade(stream, buf.freeze()));
        }
        buf.advance(head_len);

        let request::RequestHead { parts, framing, keep_alive, expects_continue, upgrade: _ } = head;
        let http11 = parts.version == Version::HTTP_11;
        let is_head = parts.method == Method::HEAD;
        let mut reading: Option<Reading> = None;
        let body = match framing {
            Framing::Length(0) => Body::empty(),
            // The common case: the body came with its head.
            Framing::Length(n) if buf.len() as u64 >= n => Body::from(buf.split_to(n as usize).freeze()),
            framing => {
                let length = match framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                };
                let (feed, incoming, go_ahead) = body::channel(length, expects_continue);
                reading = Some(Reading { decoder: BodyDecoder::new(framing), feed, go_ahead });
                Body::new(incoming)
            }
        };
        if buf.is_empty() {
            // Nothing pipelined behind this request: hold no buffer while it is served.
            buf = BytesMut::new();
        }

        // Counted on its lane until its answer is written; held first while the lane is behind
        // its streams (see `admission`), the client watched meanwhile as while it is served.
        let (_in_flight, call) = admission::enter(service.clone().oneshot(Request::from_parts(parts, body)));
        let mut call = pin!(call);
        let mut body_whole = reading.is_none();
        let response = loop {
            tokio::select! {
                biased;
                answered = &mut call => break answered.unwrap_or_else(|never| match never {}),
                heard = attend(&mut stream, &mut buf, reading.as_mut()) => match heard {
                    Heard::Fed(fed) => {
                        body_whole = fed == Fed::Whole;
                        reading = None;
                    }
                    // The client left: the handler (and any upstream call) is dropped with it.
                    Heard::Gone => return Ok(Ended::Closed),
                },
            }
        };
        // A body the handler did not wait for is still arriving: the connection cannot carry
        // another request.
        let body_whole = body_whole && reading.is_none();
        drop(reading);

        let (mut parts, body) = response.into_parts();
        let exact = body.size_hint().exact();
        if is_head && !parts.headers.contains_key(CONTENT_LENGTH) {
            if let Some(n) = exact {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        // One pass over the answer's names instead of a look-up for each that decides its head.
        let names = HeadNames::of(&parts.headers);
        let how = answer::sending(parts.status, &parts.headers, names, exact, is_head, http11);
        let keep_alive = keep_alive
            && body_whole
            && how != Sending::UntilClose
            && !drain.is_draining()
            && wants_keep_alive(&parts.headers, names, true);
        let mut out = Vec::with_capacity(512 + exact.map_or(0, |n| n.min(WRITE_IN_PLACE as u64) as usize));
        answer::write_head(&mut out, parts.status, &parts.headers, names, how, keep_alive, http11);
        // The head is written. Its header values may be slices of the upstream's read buffer
        // (its answer's head), which a stream would otherwise keep whole while it lasts.
        drop(parts);
        let whole = match how {
            Sending::Nothing => {
                drop(body);
                stream.write_all(&out).await?;
                true
            }
            how => send_body(&mut stream, out, body, how).await?,
        };
        if !whole {
            // An answer cut short: the client learns it from the close.
            return Ok(Ended::Closed);
        }
        if !keep_alive {
            if !body_whole {
                linger(stream).await;
            }
            return Ok(Ended::Closed);
        }
    }
}

/// Reads more of a request's head into `buf`. A kept-alive connection waiting for its next
/// request holds no buffer: one is taken when the socket becomes readable.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.is_empty() {
        stream.readable().await?;
    }
    reserve(buf, READ);
    stream.read_buf(buf).await
}

/// Room for at least `want` more bytes in `buf` (doubling it once it holds a part of a head).
fn reserve(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < want / 4 {
        buf.reserve(want.max(buf.len()));
    }
}

/// How reading a request body ended.
#[derive(Debug, PartialEq, Eq)]
enum Fed {
    /// Read to its end and handed over.
    Whole,
    /// The handler dropped the body before its end.
    Abandoned,
    /// The client broke the body's framing or closed; the handler got the error.
    Failed,
}

/// What the client did while its request was being handled.
enum Heard {
    /// Its body (still being read) has ended, one way or another.
    Fed(Fed),
    Gone,
}

/// Reads the request's body while there is one to read, then watches for the client leaving.
/// One future for both: each needs the socket, and reads through `AsyncRead` (unlike
/// `try_read`) note a short read as the socket drained, so the watch that follows waits for the
/// socket to become readable instead of asking the kernel again.
async fn attend(stream: &mut TcpStream, buf: &mut BytesMut, reading: Option<&mut Reading>) -> Heard {
    match reading {
        Some(reading) => Heard::Fed(feed(stream, buf, reading).await),
        None => {
            client_gone(stream).await;
            Heard::Gone
        }
    }
}

/// A request body being read.
struct Reading {
    decoder: BodyDecoder,
    feed: Feed,
    /// Resolves when the handler asks for the body, for a client waiting for `100 Continue`.
    go_ahead: Option<oneshot::Receiver<()>>,
}

/// Reads the body `decoder` frames and hands it to the handler through `feed`. Dropped when the
/// answer is ready; what it had in hand then is not needed any more.
async fn feed(stream: &mut TcpStream, buf: &mut BytesMut, reading: &mut Reading) -> Fed {
    let Reading { decoder, feed, go_ahead } = reading;
    if let Some(asked) = go_ahead.take() {
        if asked.await.is_err() {
            return Fed::Abandoned;
        }
        if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            let _ = feed.send(Piece::Failed(io::ErrorKind::ConnectionReset.into())).await;
            return Fed::Failed;
        }
    }
    loop {
        let piece = match decoder.step(buf) {
            Ok(Step::Data(data)) => Piece::Data(data),
            Ok(Step::End) => {
                let _ = feed.send(Piece::End).await;
                return Fed::Whole;
            }
            Ok(Step::NeedMore) => {
                let want = decoder.length_left().map_or(MAX_BODY_READ, |left| left.min(MAX_BODY_READ as u64) as usize);
                reserve(buf, want.max(READ));
                match stream.read_buf(buf).await {
                    Ok(0) => Piece::Failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed before its body ended",
                    )),
                    Ok(_) => continue,
                    Err(e) => Piece::Failed(e),
                }
            }
            Err(e) => {
                Piece::Failed(io::Error::new(io::ErrorKind::InvalidData, format!("the request body is malformed: {e}")))
            }
        };
        let failed = matches!(piece, Piece::Failed(_));
        if feed.send(piece).await.is_err() {
            return Fed::Abandoned;
        }
        if failed {
            return Fed::Failed;
        }
    }
}

/// Resolves once the client has closed its side or the connection broke. A client that sent more
/// (a pipelined request) is still there: that is left for later, and this never resolves.
async fn client_gone(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Writes `out` (an answer's head) and `body` as `how` says. `Ok(false)`: the body failed or did
/// not match its length, and the connection must close.
async fn send_body(stream: &mut TcpStream, mut out: Vec<u8>, mut body: Body, how: Sending) -> io::Result<bool> {
    let mut sent: u64 = 0;
    let mut whole = true;
    while !body.is_end_stream() {
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing to send yet (a stream between two events): wait holding no write
                // buffer, unless it still holds the head, which goes out with the first data.
                if out.is_empty() {
                    out = Vec::new();
                }
                let next = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                tokio::select! {
                    biased;
                    frame = next => frame,
                    () = client_gone(stream) => return Err(io::ErrorKind::ConnectionReset.into()),
                }
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                tracing::debug!("an answer's body failed while it was sent: {e}");
                whole = false;
                break;
            }
            // Trailers are not sent on: no client of ours asks for them.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        // Room for the piece and its chunk framing at once (data this long is written in place).
        out.reserve(data.len().min(WRITE_IN_PLACE) + 24);
        match how {
            Sending::Length(n) => {
                let room = n - sent;
                let data = if data.len() as u64 > room {
                    whole = false;
                    data.slice(..room as usize)
                } else {
                    data
                };
                sent += data.len() as u64;
                put(stream, &mut out, &data).await?;
            }
            Sending::Chunked => {
                let mut size = [0u8; 18];
                let hex = chunk_size_line(&mut size, data.len());
                out.extend_from_slice(hex);
                put(stream, &mut out, &data).await?;
                out.extend_from_slice(b"\r\n");
            }
            Sending::UntilClose | Sending::Nothing => put(stream, &mut out, &data).await?,
        }
        if !whole {
            break;
        }
        if !body.is_end_stream() {
            // More may come later: what there is goes out now.
            stream.write_all(&out).await?;
            out.clear();
        }
    }
    match how {
        Sending::Length(n) if sent != n => whole = false,
        Sending::Chunked if whole => out.extend_from_slice(b"0\r\n\r\n"),
        _ => {}
    }
    // What the body holds (a parallel-request place, a budget's settlement) is let go before
    // the client can read the end and send its next request.
    drop(body);
    stream.write_all(&out).await?;
    Ok(whole && how != Sending::UntilClose)
}

/// Adds `data` to what is to be written, or writes both now when `data` is long.
async fn put(stream: &mut TcpStream, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if data.len() < WRITE_IN_PLACE {
        out.extend_from_slice(data);
        return Ok(());
    }
    stream.write_all(out).await?;
    out.clear();
    stream.write_all(data).await
}

/// `len` as a chunk-size line (`1a\r\n`), written into `buf`.
fn chunk_size_line(buf: &mut [u8; 18], len: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 16;
    let mut n = len;
    loop {
        at -= 1;
        buf[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[at..]
}

/// Answers a head that cannot be served, then closes.
async fn refuse(mut stream: TcpStream, error: HeadError) -> io::Result<Ended> {
    tracing::debug!("refused a request head: {error}");
    stream.write_all(&answer::head_error(error)).await?;
    linger(stream).await;
    Ok(Ended::Closed)
}

/// Closes after reading (and dropping) what the client is still sending, for a moment: a socket
/// closed with unread bytes resets the connection, and the client may lose the answer with it.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    // On the heap: on the stack, the sink would be part of every connection's task, lingering
    // or not (an async fn holds room for the largest of the futures it awaits).
    let mut sink = vec![0u8; 4096];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::chunk_size_line;

    #[test]
    fn chunk_sizes_are_lowercase_hex_lines() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size_line(&mut buf, 0), b"0\r\n");
        assert_eq!(chunk_size_line(&mut buf, 26), b"1a\r\n");
        assert_eq!(chunk_size_line(&mut buf, usize::MAX), b"ffffffffffffffff\r\n");
    }
}
