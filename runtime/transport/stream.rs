//! A lane connection's bytes: plain TCP, or TLS over it (rustls, HTTP/1.1 by ALPN).
//!
//! Real providers are HTTPS, so the lane's own connections ([`super::h1`]) carry TLS too:
//! through hyper's pooled client a TLS request crossed tasks three times and hashed its origin
//! on every checkout, the cost the lanes were made to avoid. The TLS configuration is built once
//! per process: its session cache then resumes sessions across every connection of every lane.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS session is some kilobytes, and most lanes call plain HTTP too.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The connector of the lanes' TLS connections: the upstream client's roots (the built-in ones
/// and `SSL_CERT_FILE` / `SSL_CERT_DIR`), offering HTTP/1.1 only.
fn connector() -> io::Result<&'static TlsConnector> {
    static CONNECTOR: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    let built = CONNECTOR.get_or_init(|| {
        let mut config = super::trust::client_config().map_err(|e| format!("no TLS client configuration: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    });
    built.as_ref().map_err(|e| io::Error::other(e.clone()))
}

/// Runs the TLS handshake on `tcp` for `host` (a name, or an address written as one).
pub async fn tls(tcp: TcpStream, host: &str) -> io::Result<Stream> {
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a TLS server name")))?;
    let tls = connector()?.connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(tls)))
}

impl Stream {
    /// Whether the connection, idle, has nothing to say: a close (TCP's, or TLS's close_notify)
    /// or bytes the upstream should not have sent make it unusable. Records that carry no data
    /// (TLS 1.3 session tickets, which arrive after the handshake) are taken in and leave it
    /// usable. Without a system call unless the socket was marked readable.
    pub fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(Pin::new(self).poll_read(&mut cx, &mut buf), Poll::Pending)
    }

    /// Ready once a read may find bytes. Plain TCP says so before any buffer is handed to it;
    /// TLS may hold decrypted bytes the socket does not show, so it is always worth a read.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => s.poll_read_ready(cx),
            Stream::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
