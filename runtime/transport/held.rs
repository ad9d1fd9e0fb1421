//! A body that keeps a guard until it is dropped, and is otherwise the body it wraps: how a
//! count (a place under a limit, a stream on an upstream connection) lasts exactly as long as
//! the answer it belongs to, a stream's too.

use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// `body` keeping `guard` until it is dropped.
pub fn hold<B, G>(body: B, guard: G) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    G: Send + Unpin + 'static,
{
    Body::new(Held { body, _guard: guard })
}

/// Its exact size still reaches hyper, so a JSON answer goes out with its `Content-Length`
/// rather than chunked.
struct Held<B, G> {
    body: B,
    _guard: G,
}

impl<B: HttpBody + Unpin, G: Unpin> HttpBody for Held<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
