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

    /// Ready once a read may find bytes, told without a system call: the socket's readiness,
    /// which a short or blocked read clears. TLS is ready besides when its session holds what
    /// a read returns without the socket (decrypted bytes, or the peer's close). A stream that
    /// waits for its next record then takes no read buffer and goes through no TLS layer to
    /// learn that nothing came.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => {
                let (tcp, session) = s.get_ref();
                // rustls decrypts every whole record as it reads them, so a session that wants
                // to read holds nothing a read would return.
                if session.wants_read() {
                    tcp.poll_read_ready(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::future::poll_fn;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS server for `localhost` that writes `hello` and `world` as two records as soon as
    /// the handshake is done, then `again` when told; and a client's connector that trusts it.
    async fn server() -> (u16, TlsConnector, tokio::sync::oneshot::Sender<()>) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).expect("CA");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).expect("leaf");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (again, told) = tokio::sync::oneshot::channel::<()>();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(socket).await.expect("handshake");
            for record in [&b"hello"[..], b"world"] {
                tls.write_all(record).await.expect("write");
                tls.flush().await.expect("flush");
            }
            let _ = told.await;
            tls.write_all(b"again").await.expect("write");
            tls.flush().await.expect("flush");
            // Held open until the client is done.
            let _ = tls.read(&mut [0u8; 1]).await;
        });
        (port, TlsConnector::from(Arc::new(client)), again)
    }

    #[tokio::test]
    async fn tls_is_ready_while_its_session_holds_what_the_socket_no_longer_does() {
        let (port, connector, again) = server().await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut stream = Stream::Tls(Box::new(connector.connect(name, tcp).await.expect("handshake")));
        // Both records reach the socket before the first read, which takes them in and decrypts
        // them together; five bytes are asked for, so `world` stays in the session alone.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut five = [0u8; 5];
        stream.read_exact(&mut five).await.expect("read");
        assert_eq!(&five, b"hello");
        let ready = tokio::time::timeout(Duration::from_secs(2), poll_fn(|cx| stream.poll_read_ready(cx))).await;
        assert!(ready.is_ok(), "the session holds `world`, and readiness said to wait for the socket");
        stream.read_exact(&mut five).await.expect("read");
        assert_eq!(&five, b"world");

        // Nothing held and nothing sent: not ready, until the server writes again.
        assert!(stream.is_quiet());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(stream.poll_read_ready(&mut cx).is_pending());
        again.send(()).expect("server");
        tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| stream.poll_read_ready(cx)))
            .await
            .expect("ready once the server writes")
            .expect("ready");
        stream.read_exact(&mut five).await.expect("read");
        assert_eq!(&five, b"again");
    }
}
