//! A request body that has not all arrived with its head: the connection's task reads it and
//! hands it over piece by piece, while the handler runs.

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Pieces in flight between the connection and the handler: the reader stays at most this far
/// ahead of the handler, so a large upload is not buffered whole.
const AHEAD: usize = 2;

/// What the connection hands the handler.
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    /// The body ended where its framing said.
    End,
    Failed(io::Error),
}

/// The handler's end.
#[derive(Debug)]
pub struct Incoming {
    pieces: mpsc::Receiver<Piece>,
    /// Bytes still to come of a body with a length.
    left: Option<u64>,
    ended: bool,
    /// Told when the handler first asks for the body: a client that sent `Expect: 100-continue`
    /// gets its go-ahead then, not before (a request refused without its body never sends it).
    asked: Option<oneshot::Sender<()>>,
}

/// The connection's end.
pub type Feed = mpsc::Sender<Piece>;

/// A body of `length` (if the request gave one), fed through the returned sender. With
/// `wants_go_ahead`, the receiver resolves when the handler first asks for the body (and fails
/// if it drops the body unasked).
pub fn channel(length: Option<u64>, wants_go_ahead: bool) -> (Feed, Incoming, Option<oneshot::Receiver<()>>) {
    let (feed, pieces) = mpsc::channel(AHEAD);
    let (asked, go_ahead) = if wants_go_ahead {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    (feed, Incoming { pieces, left: length, ended: false, asked }, go_ahead)
}

impl Body for Incoming {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(asked) = self.asked.take() {
            let _ = asked.send(());
        }
        let piece = ready!(self.pieces.poll_recv(cx));
        Poll::Ready(match piece {
            Some(Piece::Data(data)) => {
                if let Some(left) = &mut self.left {
                    *left = left.saturating_sub(data.len() as u64);
                }
                Some(Ok(Frame::data(data)))
            }
            Some(Piece::End) => {
                self.ended = true;
                None
            }
            Some(Piece::Failed(e)) => {
                self.ended = true;
                Some(Err(e))
            }
            // The connection stopped reading (its answer was sent, or it closed): whatever
            // the handler has is not the whole body.
            None => {
                self.ended = true;
                Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the request body was not read to its end")))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body as AxumBody};

    #[tokio::test]
    async fn pieces_arrive_in_order_and_the_end_is_told() {
        let (feed, body, go_ahead) = channel(Some(5), true);
        let go_ahead = go_ahead.unwrap();
        assert_eq!(body.size_hint().exact(), Some(5));
        tokio::spawn(async move {
            go_ahead.await.expect("asked for");
            feed.send(Piece::Data(Bytes::from_static(b"ab"))).await.unwrap();
            feed.send(Piece::Data(Bytes::from_static(b"cde"))).await.unwrap();
            feed.send(Piece::End).await.unwrap();
        });
        assert_eq!(to_bytes(AxumBody::new(body), usize::MAX).await.unwrap(), "abcde");
    }

    #[tokio::test]
    async fn a_feed_dropped_before_the_end_is_an_error_not_a_short_body() {
        let (feed, body, _) = channel(None, false);
        feed.send(Piece::Data(Bytes::from_static(b"ab"))).await.unwrap();
        drop(feed);
        assert!(to_bytes(AxumBody::new(body), usize::MAX).await.is_err());
    }

    #[tokio::test]
    async fn a_body_dropped_unasked_gives_no_go_ahead() {
        let (_feed, body, go_ahead) = channel(Some(5), true);
        drop(body);
        assert!(go_ahead.unwrap().await.is_err());
    }
}
