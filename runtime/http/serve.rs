//! The accept loop: each client served by the door's own HTTP/1.1 server (`h1`) or, for h2c and
//! a connection that upgrades, by hyper; graceful shutdown, a deadline on slow request heads,
//! and hyper's own protocol-error answers (a header
//! flood, a malformed request line) given the OpenAI-style JSON body every other error has.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::BytesMut;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tower::{Service, ServiceExt};

use super::drain::{Drain, Watcher};
use super::h1::{self, conn::Ended, rewind::Rewind};

/// How each client connection is served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// How long a client may take to send a request's head (slowloris guard); the connection is
    /// closed when it passes.
    pub header_read_timeout: Duration,
    /// The longest a lane behind its streams holds a new request (see `admission`); zero holds
    /// none.
    pub overload_hold: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings { header_read_timeout: Duration::from_secs(30), overload_hold: super::admission::MAX_HOLD }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then waits for open connections to
/// finish (the caller bounds that wait). Connections run on the caller's runtime.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let builders = Builders::new(settings);
    let drain = Drain::default();
    tokio::pin!(shutdown);
    while let Some(stream) = accept(&listener, &mut shutdown).await {
        spawn_connection(&builders, &drain, stream, service.clone());
    }
    // Stop accepting before draining, so new clients are refused rather than kept waiting.
    drop(listener);
    drain.shutdown().await;
    Ok(())
}

/// Accepts on `listener` and hands each connection to one of `lanes`' threads in turn, until
/// `shutdown` resolves; then waits for every lane to finish its open connections. Dropping the
/// future (the caller's drain deadline) closes whatever the lanes still hold.
pub async fn serve_on_lanes(listener: TcpListener, lanes: Lanes, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut next = 0;
    while let Some(stream) = accept(&listener, &mut shutdown).await {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("cannot hand a connection to a lane: {e}");
                continue;
            }
        };
        lanes.inboxes[next].send(stream).map_err(|_| io::Error::other("a connection lane has stopped"))?;
        next = (next + 1) % lanes.inboxes.len();
    }
    drop(listener);
    let Lanes { inboxes, finished, _abort } = lanes;
    // A closed inbox tells its lane to drain.
    drop(inboxes);
    for lane in finished {
        let _ = lane.await;
    }
    Ok(())
}

/// Threads that each run their own single-threaded runtime and serve the connections handed to
/// them, start to end, the way nginx's workers do. A request then never moves between threads:
/// on the multi-threaded runtime every proxied request woke a parked worker (a futex round trip
/// and a cache-cold thread) as the upstream connection's task and the client's ping-ponged.
pub struct Lanes {
    inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    finished: Vec<oneshot::Receiver<()>>,
    /// Dropped with the pool: lanes stop at once, closing the connections they hold.
    _abort: Vec<oneshot::Sender<()>>,
}

impl Lanes {
    /// Starts `count` lane threads serving `service`; each runs `hooks.on_start` first
    /// (thread-local set-up such as its own upstream connection pool) and `hooks.every_second`
    /// once a second (upkeep of that set-up).
    pub fn start<S>(count: usize, service: S, settings: ConnectionSettings, hooks: LaneHooks) -> io::Result<Lanes>
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let mut lanes = Lanes { inboxes: Vec::new(), finished: Vec::new(), _abort: Vec::new() };
        for index in 0..count.max(1) {
            let (inbox, mut connections) = mpsc::unbounded_channel::<std::net::TcpStream>();
            let (finish, finished) = oneshot::channel();
            let (abort_tx, abort) = oneshot::channel::<()>();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let service = service.clone();
            std::thread::Builder::new().name(format!("ferrolite-lane-{index}")).spawn(move || {
                (hooks.on_start)();
                super::admission::on_lane(settings.overload_hold);
                runtime.block_on(async move {
                    tokio::spawn(every_second(hooks.every_second));
                    let builders = Builders::new(settings);
                    let drain = Drain::default();
                    let serving = async {
                        while let Some(stream) = connections.recv().await {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => spawn_connection(&builders, &drain, stream, service.clone()),
                                Err(e) => tracing::warn!("cannot take a connection on its lane: {e}"),
                            }
                        }
                        drain.shutdown().await;
                    };
                    tokio::select! {
                        () = serving => {}
                        _ = abort => {}
                    }
                });
                // Whatever is left (an aborted drain) is dropped, not waited for.
                runtime.shutdown_background();
                let _ = finish.send(());
            })?;
            lanes.inboxes.push(inbox);
            lanes.finished.push(finished);
            lanes._abort.push(abort_tx);
        }
        Ok(lanes)
    }
}

/// What each lane runs besides its connections.
#[derive(Debug, Clone, Copy)]
pub struct LaneHooks {
    /// Once, on the lane's thread, before it serves.
    pub on_start: fn(),
    /// Once a second, on the lane's thread.
    pub every_second: fn(),
}

/// Runs `upkeep` once a second. The tick also keeps a timer of the lane due within a second:
/// tokio's timer driver wakes its own event loop (an eventfd write and one more turn of the
/// loop) whenever a timer is set earlier than the earliest it parked for; the HTTP/1.1 server
/// sets the header-read timer afresh for every request, and between requests no earlier timer
/// existed, so every request paid for that wake. With this tick pending, a 30 s header timer is never
/// the earliest.
async fn every_second(upkeep: fn()) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        upkeep();
    }
}

/// The two ways a connection is served, both with the same settings.
struct Builders {
    /// A connection whose request asks to switch protocols: hyper's HTTP/1.1 connection, handed
    /// the socket with the bytes read put back in front.
    http1: hyper::server::conn::http1::Builder,
    /// A client that may be speaking HTTP/2 (h2c with prior knowledge): hyper-util reads the
    /// preface and picks the protocol.
    auto: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
}

impl Builders {
    fn new(settings: ConnectionSettings) -> Arc<Builders> {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
        // WebSockets over HTTP/2 need the extended CONNECT protocol.
        auto.http2().enable_connect_protocol();
        Arc::new(Builders { http1, auto, header_read_timeout: settings.header_read_timeout })
    }
}

/// HTTP/2's connection preface, which a client speaking h2c with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a client's first bytes say it speaks.
#[derive(Debug, PartialEq, Eq)]
enum Speaks {
    /// Not HTTP/2's preface: HTTP/1.x (or garbage, which the HTTP/1.1 server answers).
    Http1,
    /// HTTP/2's preface: h2c with prior knowledge.
    Http2,
}

/// Reads a client's first bytes, until they tell HTTP/2's preface from an HTTP/1.x request (a
/// request line starts with a method, and no method is `PRI`), into the buffer the HTTP/1.1
/// server goes on reading into. A client that sends its first bytes one at a time is read as
/// many times as it takes.
async fn first_bytes(stream: &mut TcpStream) -> io::Result<(Speaks, BytesMut)> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let read = stream.read_buf(&mut buf).await?;
        let seen = buf.len().min(H2_PREFACE.len());
        if buf[..seen] != H2_PREFACE[..seen] || read == 0 {
            return Ok((Speaks::Http1, buf));
        }
        if seen == H2_PREFACE.len() {
            return Ok((Speaks::Http2, buf));
        }
    }
}

/// The next client connection, or `None` once `shutdown` resolves.
async fn accept(listener: &TcpListener, shutdown: &mut Pin<&mut impl Future<Output = ()>>) -> Option<TcpStream> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => return Some(stream),
                Err(e) => accept_failed(e).await,
            },
            () = shutdown.as_mut() => return None,
        }
    }
}

/// Serves one connection on the current runtime, watched by `drain`.
fn spawn_connection<S>(builders: &Arc<Builders>, drain: &Drain, stream: TcpStream, service: S)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // Answers are written whole; Nagle's algorithm would only delay the last segment.
    let _ = stream.set_nodelay(true);
    tokio::spawn(connection(Arc::clone(builders), drain.watcher(), stream, service));
}

/// One connection's task, from its first byte to its close. Its size is what every open
/// connection costs before any buffer (the test below keeps it small).
async fn connection<S>(builders: Arc<Builders>, watcher: Watcher, mut stream: TcpStream, service: S)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // hyper's requests are counted and held on their lane as the own server's are.
    let hyper_service = TowerToHyperService::new(super::admission::counted(
        service.clone().map_request(|r: hyper::Request<Incoming>| r.map(Body::new)),
    ));
    // A client that sends nothing at all is held no longer than one that sends half a head.
    let (speaks, first) = match tokio::time::timeout(builders.header_read_timeout, first_bytes(&mut stream)).await {
        Ok(Ok(first)) => first,
        Ok(Err(e)) => return tracing::debug!("connection ended before its first byte: {e}"),
        Err(_) => return tracing::debug!("connection sent nothing within the header read timeout"),
    };
    let ended = match speaks {
        Speaks::Http1 => {
            let mut watcher = watcher;
            match h1::conn::serve(stream, first, service, builders.header_read_timeout, &mut watcher).await {
                Ok(Ended::Closed) => Ok(()),
                // hyper reads the request again from the bytes put back, and switches.
                Ok(Ended::Upgrade(stream, read)) => {
                    let io = TokioIo::new(JsonProtocolErrors::new(Rewind::new(read, stream)));
                    // Boxed, as is the HTTP/2 connection: hyper's connection futures are
                    // kilobytes, and an unboxed one would size every connection's task.
                    let upgraded = Box::pin(builders.http1.serve_connection(io, hyper_service).with_upgrades());
                    watcher.watch(upgraded).await.map_err(Into::into)
                }
                Err(e) => Err(e.into()),
            }
        }
        Speaks::Http2 => {
            let io = TokioIo::new(JsonProtocolErrors::new(Rewind::new(first.freeze(), stream)));
            watcher.watch(Box::pin(builders.auto.serve_connection_with_upgrades(io, hyper_service))).await
        }
    };
    if let Err(e) = ended {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// A failed accept is about one client (it reset before we took it) or about us (out of file
/// descriptors): the first is skipped, the second waits a moment instead of spinning.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if !matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused) {
        tracing::warn!("cannot accept a connection: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The connection as hyper sees it. Hyper answers requests it cannot parse itself, with an empty
/// body; this rewrites exactly those answers (a complete head with `content-length: 0` and no
/// `content-type`, which no handler of ours produces) to carry a JSON error naming the problem.
struct JsonProtocolErrors<IO> {
    inner: IO,
    /// A rewritten answer being written: its bytes, how many are out, and the length hyper asked
    /// to write (reported once all of ours are out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<IO: AsyncWrite + Unpin> JsonProtocolErrors<IO> {
    fn new(inner: IO) -> Self {
        JsonProtocolErrors { inner, pending: None }
    }

    fn drain_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, _)) = &mut self.pending {
            if *written == bytes.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let reported = self.pending.take().map_or(0, |(_, _, reported)| reported);
        Poll::Ready(Ok(reported))
    }
}

/// The JSON answer that replaces hyper's empty one, if `buf` is such an answer: a 400, 414 or
/// 431 head whose only headers are `connection: close`, `content-length: 0` and `date`. It is
/// the answer the door's own HTTP/1.1 server gives the same refusal.
fn rewrite_protocol_error(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let error = match lines.next()?.strip_prefix("HTTP/1.1 ")?.get(..3)? {
        "431" => h1::HeadError::TooLarge,
        "414" => h1::HeadError::UriTooLong,
        "400" => h1::UNPARSEABLE,
        _ => return None,
    };
    let mut seen = 0;
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        match (name.to_ascii_lowercase().as_str(), value) {
            ("connection", "close") | ("content-length", "0") | ("date", _) => seen += 1,
            _ => return None,
        }
    }
    (seen == 3).then(|| h1::head_error(error))
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match rewrite_protocol_error(buf) {
                Some(answer) => self.pending = Some((answer, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.drain_pending(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_some() {
            return self.drain_pending(cx);
        }
        // Hyper's own answers are a head alone: look at a write only when it is one slice.
        let mut slices = bufs.iter().filter(|b| !b.is_empty());
        match (slices.next(), slices.next()) {
            (Some(only), None) => self.poll_write(cx, only),
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_some() {
            ready!(self.drain_pending(cx))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection, a stream's most of all, holds its task for as long as it lasts,
    /// and the task holds room for the largest thing it may await, however rarely: a 4 KiB
    /// buffer on the stack to drain a closing connection, and hyper's connection for an upgrade
    /// (boxed now), made it 6 KiB in release builds, where it is 2.3.
    #[tokio::test]
    async fn a_connections_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let service = tower::service_fn(|_: Request| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
        let drain = Drain::default();
        let task = connection(Builders::new(ConnectionSettings::default()), drain.watcher(), stream, service);
        let size = std::mem::size_of_val(&task);
        eprintln!("a connection's task: {size} bytes");
        assert!(size <= 3 * 1024, "a connection's task is {size} bytes");
        drop((task, client));
    }

    #[test]
    fn hypers_empty_431_becomes_a_json_error() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 25 Nov 2026 03:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(rewrite_protocol_error(hyper).expect("rewritten")).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "request_header_fields_too_large");
    }

    #[test]
    fn answers_of_our_handlers_pass_unchanged() {
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite_protocol_error(ours).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}";
        assert!(rewrite_protocol_error(with_body).is_none());
        let upstream = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-upstream: 1\r\ndate: x\r\n\r\n";
        assert!(rewrite_protocol_error(upstream).is_none());
        assert!(rewrite_protocol_error(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
        )
        .is_none());
    }
}
