//! Graceful shutdown of the connections one accept loop (or lane) serves: each connection
//! watches one signal; when it fires, a connection finishes the request in hand and closes, and
//! the loop waits until every watcher is gone.
//!
//! The door's own HTTP/1.1 connections (`h1::conn`) look at the signal themselves, between
//! requests; hyper's (h2c, and a connection once it upgrades) are asked through [`Drainable`].
//! hyper-util's `GracefulShutdown` does this for the connection types it knows, but its trait is
//! sealed and leaves out hyper's own HTTP/1.1 connection with upgrades.

use std::future::Future;
use std::pin::{pin, Pin};
use tokio::sync::watch;

/// A connection that can be asked to finish what it is doing and close.
pub trait Drainable: Future {
    fn start_drain(self: Pin<&mut Self>);
}

/// A boxed connection: what a task holds of one of hyper's, whose futures are kilobytes.
impl<C: Drainable> Drainable for Pin<Box<C>> {
    fn start_drain(self: Pin<&mut Self>) {
        self.get_mut().as_mut().start_drain();
    }
}

impl<I, S> Drainable for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start_drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E, B> Drainable for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn start_drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The signal every connection of one loop watches.
pub struct Drain {
    signal: watch::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain { signal: watch::channel(()).0 }
    }
}

impl Drain {
    /// A watch on the signal, taken before the connection's task is spawned so that a drain
    /// started in between still reaches it.
    pub fn watcher(&self) -> Watcher {
        Watcher { signal: self.signal.subscribe(), fired: false }
    }

    /// Asks every watched connection to finish, then waits until all have.
    pub async fn shutdown(self) {
        let _ = self.signal.send(());
        self.signal.closed().await;
    }
}

/// One connection's watch on a [`Drain`].
pub struct Watcher {
    signal: watch::Receiver<()>,
    /// The signal has fired (a watch reports a change once).
    fired: bool,
}

impl Watcher {
    /// Resolves once the signal fires (or its [`Drain`] is gone); at once if it has.
    pub async fn draining(&mut self) {
        if !self.fired {
            let _ = self.signal.changed().await;
            self.fired = true;
        }
    }

    /// Whether the signal has fired.
    pub fn is_draining(&self) -> bool {
        self.fired || self.signal.has_changed().unwrap_or(true)
    }

    /// Runs `connection` to its end, asking it to drain when the signal fires (or its
    /// [`Drain`] is dropped). The watch is held until the connection has ended.
    pub async fn watch<C: Drainable>(self, connection: C) -> C::Output {
        let Watcher { mut signal, fired } = self;
        let mut connection = pin!(connection);
        if !fired {
            tokio::select! {
                ended = connection.as_mut() => return ended,
                _ = signal.changed() => {}
            }
        }
        connection.as_mut().start_drain();
        let ended = connection.await;
        drop(signal);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    /// Ends once asked to drain.
    struct UntilDrained {
        drained: bool,
    }

    impl Future for UntilDrained {
        type Output = &'static str;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<&'static str> {
            if self.drained {
                Poll::Ready("drained")
            } else {
                Poll::Pending
            }
        }
    }

    impl Drainable for UntilDrained {
        fn start_drain(mut self: Pin<&mut Self>) {
            self.drained = true;
        }
    }

    #[tokio::test]
    async fn shutdown_drains_every_watched_connection_and_waits_for_them() {
        let drain = Drain::default();
        let first = tokio::spawn(drain.watcher().watch(UntilDrained { drained: false }));
        let second = tokio::spawn(drain.watcher().watch(UntilDrained { drained: false }));
        tokio::task::yield_now().await;
        assert!(!first.is_finished() && !second.is_finished());
        drain.shutdown().await;
        assert_eq!(first.await.unwrap(), "drained");
        assert_eq!(second.await.unwrap(), "drained");
    }

    #[tokio::test]
    async fn a_connection_that_ends_on_its_own_is_not_drained() {
        let drain = Drain::default();
        let done = drain.watcher().watch(Never(std::future::ready(7))).await;
        assert_eq!(done, 7);
        // No watcher is left: shutdown does not wait.
        drain.shutdown().await;
    }

    /// A future that must not be asked to drain.
    struct Never<F>(F);

    impl<F: Future + Unpin> Future for Never<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            Pin::new(&mut self.0).poll(cx)
        }
    }

    impl<F: Future + Unpin> Drainable for Never<F> {
        fn start_drain(self: Pin<&mut Self>) {
            panic!("a finished connection was asked to drain");
        }
    }
}
