//! A body read whole into memory: a request's before it is parsed, an answer's before its usage
//! is read or it is recorded.

use axum::body::{Body, Bytes, HttpBody};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum WholeError {
    #[error("larger than the {0} byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    Broken(String),
}

/// Reads `body` to its end, at most `limit` bytes of it. A body that comes in one piece (most:
/// it arrived with its head, or was read whole before) is that piece, not a copy; pieces are
/// joined only when a second one comes, in one buffer of the body's size when it is known
/// (growing one by doubling copies a large body over again at each step). Past the limit the
/// rest is left in `body`, for a caller that drains it.
pub fn whole(body: &mut Body, limit: usize) -> Whole<'_> {
    let expected = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX).min(limit);
    Whole { body, limit, expected, read: 0, first: Bytes::new(), joined: Vec::new() }
}

/// The future [`whole`] returns. A plain loop over the body's frames rather than an `async fn`:
/// every request's body and every JSON answer passes through it.
pub struct Whole<'a> {
    body: &'a mut Body,
    limit: usize,
    expected: usize,
    read: usize,
    first: Bytes,
    joined: Vec<u8>,
}

impl Future for Whole<'_> {
    type Output = Result<Bytes, WholeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        while let Some(frame) = ready!(Pin::new(&mut *this.body).poll_frame(cx)) {
            let frame = frame.map_err(|e| WholeError::Broken(e.to_string()))?;
            // Trailers carry no body bytes.
            let Ok(chunk) = frame.into_data() else { continue };
            this.read = this.read.saturating_add(chunk.len());
            if this.read > this.limit {
                return Poll::Ready(Err(WholeError::TooLarge(this.limit)));
            }
            if this.first.is_empty() && this.joined.is_empty() {
                this.first = chunk;
            } else {
                if this.joined.is_empty() {
                    this.joined.reserve(this.expected.max(this.first.len() + chunk.len()));
                    this.joined.extend_from_slice(&this.first);
                }
                this.joined.extend_from_slice(&chunk);
            }
        }
        let joined = std::mem::take(&mut this.joined);
        Poll::Ready(Ok(if joined.is_empty() { std::mem::take(&mut this.first) } else { joined.into() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn pieces(parts: &[&'static str]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect();
        Body::from_stream(stream::iter(chunks))
    }

    #[tokio::test]
    async fn one_piece_is_kept_as_it_is() {
        let text = Bytes::from_static(b"{\"a\": 1}");
        let mut body = Body::from(text.clone());
        let read = whole(&mut body, 100).await.expect("read");
        assert_eq!(read, text);
        assert_eq!(read.as_ptr(), text.as_ptr(), "not copied");
    }

    #[tokio::test]
    async fn pieces_are_joined_in_order() {
        let mut body = pieces(&["ab", "", "cd", "e"]);
        assert_eq!(whole(&mut body, 5).await.expect("read"), "abcde");
        assert_eq!(whole(&mut Body::empty(), 0).await.expect("read"), "");
    }

    #[tokio::test]
    async fn past_the_limit_it_stops_and_leaves_the_rest() {
        let mut body = pieces(&["abc", "def", "ghi"]);
        assert!(matches!(whole(&mut body, 5).await, Err(WholeError::TooLarge(5))));
        // The third piece was not read.
        assert_eq!(whole(&mut body, 100).await.expect("rest"), "ghi");
    }

    #[tokio::test]
    async fn a_broken_body_says_why() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"ab")), Err(std::io::Error::other("reset by peer"))];
        let mut body = Body::from_stream(stream::iter(chunks));
        match whole(&mut body, 100).await {
            Err(WholeError::Broken(why)) => assert!(why.contains("reset by peer"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
