//! Upstreams called from a connection lane: HTTP/1.1 on the lane's own keep-alive connections
//! (plain, or TLS: [`super::stream`]), written and read by the task that serves the client.
//!
//! hyper's pooled client runs each upstream connection as a task of its own, so a proxied
//! request crossed tasks three times (the request to the connection's task, the answer's head
//! back, its body), and the pool hashed the origin with SipHash on every checkout and return:
//! together about a quarter of a proxied request's instructions. A lane owns its connections
//! outright (nothing else runs on its thread), so here one task writes the request, reads the
//! answer and gives the connection back once the body has been read to its end. HTTP/2 (when the
//! operator asks for it) and upstreams behind a proxy go through hyper's client.

use super::framing::{
    ends_in_chunked, read_to_end, wants_keep_alive, BodyDecoder, Framing, FramingError, HeadNames, Step,
};
use super::stream::Stream;
use super::{AnswerHeaders, Headers, Response, SendError};
use crate::exchange::header_name;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use bytes::{Buf, BytesMut};
use hyper::body::{Frame, SizeHint};
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Longest answer head (status line and headers) read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers an answer may have (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Bytes asked of the socket per read at first. A stream's events and most JSON answers fit,
/// and what a stream's buffer has touched stays resident for as long as the stream runs.
const FIRST_READ: usize = 4 * 1024;
/// The most asked per read: reads that fill what was asked double the next (a large answer).
const MAX_READ: usize = 64 * 1024;
/// Idle connections a lane keeps per origin; more are closed when they come back.
const MAX_IDLE_PER_ORIGIN: usize = 256;

thread_local! {
    static POOL: RefCell<Option<Pool>> = const { RefCell::new(None) };
}

/// Lane ids, so a connection is only ever given back to the lane whose runtime it is
/// registered with.
static NEXT_LANE: AtomicU64 = AtomicU64::new(1);

/// One lane's idle connections, by kind ([`Kind::slot`]) and origin (`host[:port]` as the URL
/// writes it).
struct Pool {
    lane: u64,
    idle_timeout: Duration,
    idle: [foldhash::HashMap<Arc<str>, Vec<Idle>>; 4],
}

/// What a connection may carry besides its origin: TLS or not, and whether it was opened under
/// the guard (to public addresses only). Connections of different kinds are never shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    tls: bool,
    guarded: bool,
}

impl Kind {
    fn slot(self) -> usize {
        usize::from(self.tls) * 2 + usize::from(self.guarded)
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// An open connection to one origin, with what was read of it and not used yet.
struct Conn {
    stream: Stream,
    buf: BytesMut,
    /// Bytes the next read asks for (`FIRST_READ` to `MAX_READ`).
    read_size: usize,
    origin: Arc<str>,
    kind: Kind,
    lane: u64,
}

/// Gives the calling thread (a connection lane) its own pool of plain-HTTP connections.
pub fn enable(idle_timeout: Duration) {
    POOL.with(|pool| {
        let lane = NEXT_LANE.fetch_add(1, Ordering::Relaxed);
        *pool.borrow_mut() = Some(Pool { lane, idle_timeout, idle: Default::default() });
    });
}

/// Whether the calling thread is a lane with its own pool.
pub fn on_lane() -> bool {
    POOL.with(|pool| pool.borrow().is_some())
}

/// Closes the calling lane's connections that sat idle past the idle timeout.
pub fn sweep() {
    POOL.with(|pool| {
        if let Some(pool) = pool.borrow_mut().as_mut() {
            let timeout = pool.idle_timeout;
            for by_origin in &mut pool.idle {
                by_origin.retain(|_, idle| {
                    idle.retain(|i| i.since.elapsed() < timeout);
                    !idle.is_empty()
                });
            }
        }
    });
}

/// How many idle connections the calling lane holds (all origins).
#[cfg(test)]
fn idle_count() -> usize {
    POOL.with(|pool| pool.borrow().as_ref().map_or(0, |p| p.idle.iter().flat_map(|m| m.values()).map(Vec::len).sum()))
}

/// Where a request goes, read off its URL without copying.
struct Origin<'a> {
    /// The URL's `host[:port]`, as written: the pool's key and the `Host` header.
    authority: &'a str,
    /// The host to connect to: a name, or an address (IPv6 without its brackets).
    host: &'a str,
    port: u16,
    tls: bool,
}

impl<'a> Origin<'a> {
    fn of(url: &'a reqwest::Url) -> Option<Origin<'a>> {
        let name = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let host = name.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(name);
        Some(Origin { authority, host, port, tls: url.scheme() == "https" })
    }
}

/// Sends a request with a body already in memory over a connection of the calling lane (`http`
/// or `https`); resolves when the answer's head has arrived. The body streams as it is read.
/// With `public_only`, a new connection goes only to public addresses (see [`super::guard`]),
/// and guarded connections are pooled apart from the others. The answer's map holds the
/// headers `keep` names.
pub async fn send(
    method: &Method,
    url: &reqwest::Url,
    headers: &Headers,
    body: &Bytes,
    public_only: bool,
    keep: AnswerHeaders,
) -> Result<Response, SendError> {
    let unreachable = |cause: String| SendError::Unreachable { host: url.host_str().unwrap_or("").to_owned(), cause };
    let origin = Origin::of(url).ok_or_else(|| unreachable("the URL names no host".into()))?;
    let head = request_head(method, url, origin.authority, headers, body.len());
    let kind = Kind { tls: origin.tls, guarded: public_only };
    // The upstream may have closed a kept-alive connection while it sat idle (its own idle
    // timeout), and the close may not have been seen yet. A request that could not even be
    // written goes again on a new connection, as browsers and Go's client do; one that was
    // written and got no answer goes again only when repeating it is harmless (GET, HEAD,
    // OPTIONS, TRACE): the upstream may have acted on a POST before it closed.
    if let Some(conn) = checkout(kind, origin.authority) {
        match exchange(conn, method, &head, body, keep).await {
            Ok(answer) => return Ok(answer),
            Err(Failure::NotSent) => {}
            Err(Failure::Unanswered) if is_replayable(method) => {}
            Err(Failure::Unanswered) => return Err(unreachable(UNANSWERED.into())),
            Err(Failure::Broken(cause)) => return Err(unreachable(cause)),
        }
    }
    // Boxed: connecting (a TLS handshake's state above all) is rare next to reusing a kept
    // connection, and inline it would grow every request's future, which is moved whole.
    let conn = Box::pin(connect(&origin, kind)).await?;
    match exchange(conn, method, &head, body, keep).await {
        Ok(answer) => Ok(answer),
        Err(Failure::NotSent | Failure::Unanswered) => Err(unreachable(UNANSWERED.into())),
        Err(Failure::Broken(cause)) => Err(unreachable(cause)),
    }
}

const UNANSWERED: &str = "the connection closed before an answer";

/// Whether a request may be sent again after its connection closed without answering.
fn is_replayable(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Why an exchange gave no answer.
enum Failure {
    /// The request could not be written: the connection was closed already.
    NotSent,
    /// The request was written, and the connection ended before a single byte of an answer.
    Unanswered,
    Broken(String),
}

/// A kept-alive connection of `kind` to `origin`, if the lane has a live one.
fn checkout(kind: Kind, origin: &str) -> Option<Conn> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let pool = pool.as_mut()?;
        let idle = pool.idle[kind.slot()].get_mut(origin)?;
        // Most recently used first: the likeliest to be alive and warm.
        while let Some(Idle { mut conn, since }) = idle.pop() {
            if since.elapsed() < pool.idle_timeout && conn.stream.is_quiet() {
                return Some(conn);
            }
        }
        None
    })
}

/// Gives a connection whose last answer was read to its end back to its lane's pool.
fn give_back(mut conn: Conn) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        // Another thread (or a lane since stopped) cannot use a socket registered with this
        // lane's reactor: the connection closes instead.
        let Some(pool) = pool.as_mut().filter(|p| p.lane == conn.lane) else { return };
        if !conn.buf.is_empty() {
            return; // bytes past the answer's end: the connection is out of step
        }
        // An idle connection holds no buffer; its next answer's first read takes one.
        conn.buf = BytesMut::new();
        let idle = pool.idle[conn.kind.slot()].entry(conn.origin.clone()).or_default();
        if idle.len() < MAX_IDLE_PER_ORIGIN {
            idle.push(Idle { conn, since: Instant::now() });
        }
    });
}

async fn connect(origin: &Origin<'_>, kind: Kind) -> Result<Conn, SendError> {
    let unreachable = |e: io::Error| SendError::Unreachable { host: origin.host.to_owned(), cause: e.to_string() };
    let lane = POOL.with(|pool| pool.borrow().as_ref().map(|p| p.lane)).unwrap_or(0);
    let connecting = async {
        let tcp = if kind.guarded {
            // Resolved once and checked; the connection goes to exactly these addresses.
            let addrs = match super::guard::resolve_public(origin.host, origin.port).await {
                Ok(addrs) => addrs,
                Err(super::guard::GuardedLookup::Refused(refused)) => return Err(SendError::Refused(refused)),
                Err(super::guard::GuardedLookup::Lookup(e)) => return Err(unreachable(e)),
            };
            TcpStream::connect(&addrs[..]).await.map_err(unreachable)?
        } else {
            // An address is used as it is; a name is looked up (off the lane's thread).
            TcpStream::connect((origin.host, origin.port)).await.map_err(unreachable)?
        };
        // Requests are written whole; Nagle's algorithm would only hold back their last segment.
        tcp.set_nodelay(true).map_err(unreachable)?;
        if kind.tls {
            super::stream::tls(tcp, origin.host).await.map_err(unreachable)
        } else {
            Ok(Stream::Plain(tcp))
        }
    };
    // The handshake is part of connecting: an upstream that accepts and never answers it is
    // given up on as one that never accepts.
    let stream = tokio::time::timeout(super::CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| unreachable(io::Error::new(io::ErrorKind::TimedOut, "timed out connecting")))??;
    Ok(Conn { stream, buf: BytesMut::new(), read_size: FIRST_READ, origin: origin.authority.into(), kind, lane })
}

/// The request line and headers. `Host` and the body's length are ours; a caller's own
/// framing headers are not sent (they would contradict ours).
fn request_head(method: &Method, url: &reqwest::Url, host: &str, headers: &Headers, body_len: usize) -> Vec<u8> {
    use axum::http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(url.path().as_bytes());
    if let Some(query) = url.query() {
        head.push(b'?');
        head.extend_from_slice(query.as_bytes());
    }
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(&HOST) {
        push_header(&mut head, b"host", host.as_bytes());
    }
    for (name, value) in headers.iter() {
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING && name != CONNECTION {
            push_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    // A body-less GET or DELETE says nothing of length, as clients do; everything else says it.
    if body_len > 0 || !matches!(*method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS) {
        let mut digits = itoa::Buffer::new();
        push_header(&mut head, b"content-length", digits.format(body_len).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn push_header(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Writes one request on `conn` and reads its answer's head.
async fn exchange(
    mut conn: Conn,
    method: &Method,
    head: &[u8],
    body: &[u8],
    keep: AnswerHeaders,
) -> Result<Response, Failure> {
    if let Err(e) = write_all(&mut conn.stream, head, body).await {
        return Err(match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Failure::NotSent,
            _ => Failure::Broken(e.to_string()),
        });
    }
    let mut seen_any = false;
    loop {
        if !conn.buf.is_empty() {
            seen_any = true;
            match parse_head(&mut conn.buf, method, keep).map_err(Failure::Broken)? {
                Parsed::Answer(head) => return Ok(answer(conn, head)),
                Parsed::Informational => continue,
                Parsed::Partial => {}
            }
        }
        let read = std::future::poll_fn(|cx| fill(&mut conn, cx)).await;
        match read {
            Ok(0) if !seen_any => return Err(Failure::Unanswered),
            Ok(0) => return Err(Failure::Broken("the connection closed in the middle of the answer's head".into())),
            Ok(_) => {}
            Err(e) if !seen_any && e.kind() == io::ErrorKind::ConnectionReset => return Err(Failure::Unanswered),
            Err(e) => return Err(Failure::Broken(e.to_string())),
        }
    }
}

async fn write_all(stream: &mut Stream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut rest: &mut [IoSlice<'_>] = if body.is_empty() { &mut slices[..1] } else { &mut slices[..] };
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    // TLS may hold back records the socket would not take yet; plain TCP holds nothing.
    stream.flush().await
}

/// Reads more of the connection into its buffer; `Ok(0)` at its end.
fn fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if conn.buf.is_empty() {
        // Everything read before is taken (a stream's events are handed on as they come), so
        // the buffer goes while the connection waits: a stream between two events, or a pooled
        // connection between requests, holds no page of memory. The next read takes a buffer
        // once there is something to read; the allocator hands back the block just freed.
        conn.buf = BytesMut::new();
        ready!(conn.stream.poll_read_ready(cx))?;
    }
    if conn.buf.capacity() - conn.buf.len() < conn.read_size / 4 {
        conn.buf.reserve(conn.read_size);
    }
    let asked = conn.buf.capacity() - conn.buf.len();
    let read = match tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
        Poll::Ready(read) => read?,
        Poll::Pending => {
            // Nothing came after all: a socket marked readable from before, or TLS that took in
            // only part of a record. The buffer goes while it waits, as above.
            if conn.buf.is_empty() {
                conn.buf = BytesMut::new();
            }
            return Poll::Pending;
        }
    };
    if read == asked && conn.read_size < MAX_READ {
        conn.read_size *= 2;
    }
    Poll::Ready(Ok(read))
}

/// An answer's head, parsed.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

enum Parsed {
    Answer(Head),
    /// A 1xx answer, consumed: the real one follows.
    Informational,
    Partial,
}

/// Parses the head at the start of `buf` and removes it from there; its map holds the headers
/// `keep` names.
fn parse_head(buf: &mut BytesMut, method: &Method, keep: AnswerHeaders) -> Result<Parsed, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        // The limit holds however the head arrived: in one read or in many.
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            return Err(format!("the answer's head is longer than {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(format!("the answer's head is longer than {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(format!("the upstream sent a malformed answer ({e})")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("the upstream answered status {code}"))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err("the upstream switched protocols".into());
        }
        buf.advance(len);
        return Ok(Parsed::Informational);
    }
    // Header values are kept as slices of the head, not copied one by one.
    let base = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(parsed.headers.len());
    let mut names = HeadNames::default();
    for h in parsed.headers.iter().filter(|h| keep.keeps(h.name)) {
        let name =
            header_name::read(h.name).map_err(|_| format!("the upstream sent a malformed header name {:?}", h.name))?;
        let start = h.value.as_ptr() as usize - base;
        names.note(&name);
        fields.push((name, start..start + h.value.len()));
    }
    let http11 = parsed.version == Some(1);
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, range) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .map_err(|_| format!("the upstream sent a malformed value for {name}"))?;
        headers.append(name, value);
    }
    let framing = framing(method, status, &headers, names)?;
    let keep_alive = framing != Framing::UntilClose && wants_keep_alive(&headers, names, http11);
    Ok(Parsed::Answer(Head { status, headers, framing, keep_alive }))
}

/// The body's framing, as RFC 9112 section 6.3 orders the rules.
fn framing(method: &Method, status: StatusCode, headers: &HeaderMap, names: HeadNames) -> Result<Framing, String> {
    use axum::http::header::CONTENT_LENGTH;
    if *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if let Some(codings) = names.last_transfer_coding(headers) {
        return Ok(if ends_in_chunked(codings) { Framing::Chunked } else { Framing::UntilClose });
    }
    if !names.content_length {
        return Ok(Framing::UntilClose);
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("x").split(',') {
            let n: u64 = part.trim().parse().map_err(|_| format!("the upstream sent content-length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("the upstream sent conflicting content-length headers".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

fn answer(conn: Conn, head: Head) -> Response {
    let Head { status, headers, framing, keep_alive } = head;
    let body = match framing {
        Framing::Length(0) => {
            if keep_alive {
                give_back(conn);
            }
            Body::empty()
        }
        Framing::UntilClose => {
            Body::new(AnswerBody { conn: Some(conn), decoder: BodyDecoder::new(framing), keep_alive: false })
        }
        framing => Body::new(AnswerBody { conn: Some(conn), decoder: BodyDecoder::new(framing), keep_alive }),
    };
    Response { status, headers, body }
}

/// An answer's body, read from its connection as it is polled. Read to its end, it gives the
/// connection back to the lane; dropped before, it closes it.
struct AnswerBody {
    /// `None` once the body has ended.
    conn: Option<Conn>,
    decoder: BodyDecoder,
    keep_alive: bool,
}

/// An answer read from `bytes` as this client reads one from a connection that ends where
/// `bytes` do (a request of `method`, the headers `keep` names kept): its status and whole
/// body, or why it is refused.
pub fn read_answer(bytes: &[u8], method: &Method, keep: AnswerHeaders) -> Result<(StatusCode, Vec<u8>), String> {
    let mut buf = BytesMut::from(bytes);
    let head = loop {
        match parse_head(&mut buf, method, keep)? {
            Parsed::Answer(head) => break head,
            Parsed::Informational => continue,
            Parsed::Partial if buf.is_empty() => return Err(UNANSWERED.into()),
            Parsed::Partial => return Err("the connection closed in the middle of the answer's head".into()),
        }
    };
    let body = read_to_end(BodyDecoder::new(head.framing), &mut buf).map_err(|e| broken(e).to_string())?;
    Ok((head.status, body))
}

impl AnswerBody {
    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive {
                give_back(conn);
            }
        }
        Poll::Ready(None)
    }
}

fn broken(e: FramingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the upstream's answer broke off: {e}"))
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            // Take what the buffer already holds before reading more.
            match this.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if this.decoder.is_done() {
                        // Give the connection back now: the caller may never poll again.
                        let _ = this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => return this.finish(),
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(broken(e))));
                }
            }
            match ready!(fill(conn, cx)) {
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(this.decoder.at_eof().err().map(|e| Err(broken(e))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.length_left() {
            Some(left) if self.conn.is_some() => SizeHint::with_exact(left),
            _ if self.conn.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An upstream that answers each request read on a connection with the next canned answer,
    /// and reports the requests it read and how many connections it accepted.
    async fn upstream(answers: Vec<&'static [u8]>) -> (reqwest::Url, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            reqwest::Url::parse(&format!("http://{}/v1/chat/completions?x=1", listener.local_addr().unwrap())).unwrap();
        let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            let mut connection = 0;
            while let Ok((mut socket, _)) = listener.accept().await {
                connection += 1;
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // One request: a head and the body its content-length gives.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |n| n.parse::<usize>().unwrap());
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                    buf.drain(..end + 4 + length);
                    let _ = seen.send(format!("#{connection} {head}\n\n{body}"));
                    match answers.next() {
                        Some(answer) => socket.write_all(answer).await.unwrap(),
                        None => return,
                    }
                }
            }
        });
        (url, requests)
    }

    async fn send_on_lane(url: &reqwest::Url, body: &'static str) -> Result<(StatusCode, HeaderMap, String), String> {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-test"));
        let headers = Headers::from(headers);
        let answer =
            send(&Method::POST, url, &headers, &Bytes::from_static(body.as_bytes()), false, AnswerHeaders::All)
                .await
                .map_err(|e| e.to_string())?;
        let bytes = axum::body::to_bytes(answer.body, usize::MAX).await.map_err(|e| e.to_string())?;
        Ok((answer.status, answer.headers, String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn lane() -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        enable(Duration::from_secs(90));
        runtime
    }

    #[test]
    fn a_request_is_written_once_with_host_and_length_and_the_connection_is_kept() {
        lane().block_on(async {
            let (url, mut seen) = upstream(vec![
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
                b"HTTP/1.1 201 Created\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\nabc",
            ])
            .await;
            let (status, headers, body) = send_on_lane(&url, r#"{"model":"m"}"#).await.unwrap();
            assert_eq!((status, body.as_str()), (StatusCode::OK, "{}"));
            assert_eq!(headers["content-type"], "application/json");
            let first = seen.recv().await.unwrap();
            let port = url.port().unwrap();
            assert_eq!(
                first,
                format!(
                    "#1 POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer sk-test\r\ncontent-length: 13\n\n{{\"model\":\"m\"}}"
                )
            );
            assert_eq!(idle_count(), 1);
            let (status, headers, body) = send_on_lane(&url, "{}").await.unwrap();
            assert_eq!((status, body.as_str()), (StatusCode::CREATED, "abc"));
            assert_eq!(headers.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
            // The same connection served the second request.
            assert!(seen.recv().await.unwrap().starts_with("#1 POST"));
        });
    }

    #[test]
    fn reads_start_small_and_grow_for_a_large_answer() {
        lane().block_on(async {
            let body = "x".repeat(300 * 1024);
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            let (url, _seen) = upstream(vec![Box::leak(answer.into_bytes().into_boxed_slice())]).await;
            let (status, _, read) = send_on_lane(&url, "{}").await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert!(read == body, "the whole body, in order");
            let sizes: Vec<(usize, usize)> = POOL.with(|pool| {
                let pool = pool.borrow();
                let idle = pool.as_ref().unwrap().idle.iter().flat_map(|m| m.values()).flatten();
                idle.map(|i| (i.conn.read_size, i.conn.buf.capacity())).collect()
            });
            // A kept connection, whose reads grew from FIRST_READ as they came back full, and
            // which holds no buffer while it idles.
            assert_eq!(sizes.len(), 1);
            assert!(sizes[0].0 > FIRST_READ && sizes[0].0 <= MAX_READ, "{sizes:?}");
            assert_eq!(sizes[0].1, 0, "an idle connection's buffer: {sizes:?}");
        });
    }

    #[test]
    fn a_chunked_answer_is_decoded_chunk_by_chunk_and_trailers_are_skipped() {
        lane().block_on(async {
            let (url, _seen) = upstream(vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\ntrailer: x\r\n\r\n",
            ])
            .await;
            let (status, _, body) = send_on_lane(&url, "{}").await.unwrap();
            assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, world"));
            assert_eq!(idle_count(), 1);
        });
    }

    #[test]
    fn an_answer_without_length_runs_to_the_close_and_its_connection_is_not_kept() {
        lane().block_on(async {
            let url = answers_once_and_closes(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
            let (_, _, body) = send_on_lane(&url, "{}").await.unwrap();
            assert_eq!(body, "until the end");
            assert_eq!(idle_count(), 0);
        });
    }

    /// An upstream that reads one request, writes `answer` and closes the connection.
    async fn answers_once_and_closes(answer: &'static [u8]) -> reqwest::Url {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = reqwest::Url::parse(&format!("http://{}/v1/x", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            socket.write_all(answer).await.unwrap();
        });
        url
    }

    #[test]
    fn a_body_cut_short_is_an_error_and_malformed_answers_are_refused() {
        lane().block_on(async {
            let url = answers_once_and_closes(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort").await;
            let answer =
                send(&Method::POST, &url, &Headers::new(), &Bytes::from_static(b"{}"), false, AnswerHeaders::All)
                    .await
                    .unwrap();
            let error = axum::body::to_bytes(answer.body, usize::MAX).await.unwrap_err().to_string();
            assert!(error.contains("broke off"), "{error}");
            assert_eq!(idle_count(), 0);
            let (url, _seen) =
                upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"]).await;
            let error = send_on_lane(&url, "{}").await.unwrap_err();
            assert!(error.contains("conflicting content-length"), "{error}");
            let (url, _seen) = upstream(vec![b"NOT HTTP\r\n\r\n"]).await;
            let error = send_on_lane(&url, "{}").await.unwrap_err();
            assert!(error.contains("malformed answer"), "{error}");
        });
    }

    #[test]
    fn a_kept_connection_the_upstream_closed_is_replaced_and_the_request_sent_again() {
        lane().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = reqwest::Url::parse(&format!("http://{}/v1/x", listener.local_addr().unwrap())).unwrap();
            let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = served.clone();
            tokio::spawn(async move {
                // Each connection answers one request and then closes, without saying so.
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    count.fetch_add(1, Ordering::SeqCst);
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                    drop(socket);
                }
            });
            for _ in 0..3 {
                let (status, _, body) = send_on_lane(&url, "{}").await.unwrap();
                assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
            }
            assert_eq!(served.load(Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn a_written_post_that_gets_no_answer_is_never_sent_again_but_a_get_is() {
        for (method, replayed) in [(Method::POST, false), (Method::GET, true)] {
            lane().block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = reqwest::Url::parse(&format!("http://{}/v1/x", listener.local_addr().unwrap())).unwrap();
                let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let count = received.clone();
                tokio::spawn(async move {
                    // The first connection answers one request, reads the next and hangs up
                    // without a word; later ones answer.
                    let mut first = true;
                    while let Ok((mut socket, _)) = listener.accept().await {
                        let count = count.clone();
                        let hang_up = std::mem::replace(&mut first, false);
                        tokio::spawn(async move {
                            let mut buf = [0u8; 4096];
                            for n in 0.. {
                                if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                count.fetch_add(1, Ordering::SeqCst);
                                if hang_up && n == 1 {
                                    return;
                                }
                                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                                if socket.write_all(ok).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                });
                let send_once = |url: reqwest::Url, method: Method| async move {
                    let answer =
                        send(&method, &url, &Headers::new(), &Bytes::from_static(b"{}"), false, AnswerHeaders::All)
                            .await?;
                    let _ = axum::body::to_bytes(answer.body, usize::MAX).await;
                    Ok::<_, SendError>(answer.status)
                };
                assert_eq!(send_once(url.clone(), method.clone()).await.unwrap(), StatusCode::OK);
                let second = send_once(url.clone(), method.clone()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if replayed {
                    assert_eq!(second.unwrap(), StatusCode::OK);
                    assert_eq!(received.load(Ordering::SeqCst), 3, "{method}: sent again on a new connection");
                } else {
                    let error = second.unwrap_err().to_string();
                    assert!(error.contains("closed before an answer"), "{error}");
                    assert_eq!(received.load(Ordering::SeqCst), 2, "{method}: the upstream got it once");
                }
            });
        }
    }

    #[test]
    fn a_refused_connection_names_its_cause() {
        lane().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = reqwest::Url::parse(&format!("http://{}/v1/x", listener.local_addr().unwrap())).unwrap();
            drop(listener);
            let error = send_on_lane(&url, "{}").await.unwrap_err();
            assert!(error.contains("cannot reach 127.0.0.1") && error.contains("refused"), "{error}");
        });
    }

    #[test]
    fn a_guarded_request_never_connects_inside_and_says_the_same_whether_a_port_is_open() {
        lane().block_on(async {
            let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let open_port = open.local_addr().unwrap().port();
            let closed_port = free_port();
            let mut said = Vec::new();
            for url in [
                format!("http://127.0.0.1:{open_port}/v1/x"),
                format!("http://127.0.0.1:{closed_port}/v1/x"),
                format!("http://localhost:{open_port}/v1/x"),
                format!("http://[::ffff:127.0.0.1]:{open_port}/v1/x"),
            ] {
                let url = reqwest::Url::parse(&url).unwrap();
                let body = Bytes::from_static(b"{}");
                match send(&Method::POST, &url, &Headers::new(), &body, true, AnswerHeaders::All).await {
                    Err(SendError::Refused(refused)) => {
                        said.push(refused.to_string().replace(&open_port.to_string(), ""))
                    }
                    other => panic!("{url}: {:?}", other.map(|r| r.status)),
                }
            }
            assert_eq!(said[0], said[1].replace(&closed_port.to_string(), ""), "{said:?}");
            let accepted = tokio::time::timeout(Duration::from_millis(100), open.accept()).await;
            assert!(accepted.is_err(), "nothing may connect to the open port");
        });
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn idle_connections_past_the_timeout_are_swept() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        enable(Duration::from_millis(50));
        runtime.block_on(async {
            let (url, _seen) = upstream(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]).await;
            let (status, _, _) = send_on_lane(&url, "{}").await.unwrap();
            assert_eq!(status, StatusCode::NO_CONTENT);
            assert_eq!(idle_count(), 1);
            tokio::time::sleep(Duration::from_millis(80)).await;
            sweep();
            assert_eq!(idle_count(), 0);
        });
    }

    #[test]
    fn request_heads_keep_the_callers_headers_but_not_its_framing() {
        let url = reqwest::Url::parse("http://up.example:8080/v1/models").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("999"));
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        let get = request_head(&Method::GET, &url, "up.example:8080", &headers.into(), 0);
        assert_eq!(get, b"GET /v1/models HTTP/1.1\r\nhost: up.example:8080\r\nx-api-key: k\r\n\r\n");
        let post = request_head(&Method::POST, &url, "up.example:8080", &Headers::new(), 0);
        assert_eq!(post, b"POST /v1/models HTTP/1.1\r\nhost: up.example:8080\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn an_answer_keeps_the_headers_asked_for_and_those_that_frame_it() {
        let head: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n\
            x-ratelimit-remaining-tokens: 0\r\nRetry-After: 2\r\ncf-ray: 8f1e-AMS\r\n\
            Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let read = |keep| match parse_head(&mut BytesMut::from(head), &Method::POST, keep) {
            Ok(Parsed::Answer(head)) => head,
            _ => panic!("the head parses"),
        };
        let few = read(AnswerHeaders::Only(&["content-type", "retry-after"]));
        let kept: Vec<&str> = few.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(kept, ["content-type", "retry-after", "transfer-encoding", "connection"]);
        assert_eq!(few.framing, Framing::Chunked);
        assert!(!few.keep_alive, "connection: close is read even where other headers are not kept");
        let all = read(AnswerHeaders::All);
        assert_eq!(all.headers.len(), 6);
        assert_eq!(all.headers["x-ratelimit-remaining-tokens"], "0");
    }
}
