//! A streamed answer kept as it passes to the client: its chunks are read on the way, and when
//! `[DONE]` arrives the whole answer they add up to is stored before that last piece goes out,
//! so a request made after the stream ended finds the entry.

use super::replay::{assemble, Shape};
use super::ResponseCache;
use crate::cluster::Cluster;
use crate::streaming::sse::Decoder;
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Where and how long an answer is kept.
pub struct Saver {
    pub cache: Arc<ResponseCache>,
    pub cluster: Option<Arc<Cluster>>,
    pub key: String,
    pub ttl: Option<Duration>,
}

impl Saver {
    /// Stores `answer`; a failing shared store costs the entry, never the answer.
    pub async fn save(self, answer: Value) {
        if let Err(e) = self.cache.put(self.cluster.as_deref(), &self.key, answer, self.ttl).await {
            tracing::warn!(error = %e, "response cache: the answer was not kept");
        }
    }
}

type Saving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An SSE body that records its chat or text completion chunks for the cache.
pub struct Recording<S> {
    inner: S,
    shape: Shape,
    decoder: Decoder,
    chunks: Vec<Value>,
    /// Bytes read so far, against `limit`: a longer answer is passed on, not kept.
    read: usize,
    limit: usize,
    /// `None` once the answer can no longer be kept (an error, too long, or saved).
    saver: Option<Saver>,
    /// The piece that ended the stream, held until its answer is stored.
    held: Option<(Bytes, Saving)>,
}

impl<S> Recording<S> {
    pub fn new(inner: S, shape: Shape, limit: usize, saver: Saver) -> Self {
        Recording {
            inner,
            shape,
            decoder: Decoder::new(),
            chunks: Vec::new(),
            read: 0,
            limit,
            saver: Some(saver),
            held: None,
        }
    }

    /// Reads a piece's events; the storing of the answer when the piece ends the stream.
    fn note(&mut self, bytes: &[u8]) -> Option<Saving> {
        self.saver.as_ref()?;
        self.read += bytes.len();
        if self.read > self.limit {
            self.saver = None;
            return None;
        }
        for event in self.decoder.feed(bytes) {
            if event.event.as_deref() == Some("error") {
                self.saver = None;
                return None;
            }
            if event.data.trim() == "[DONE]" {
                let answer = assemble(self.shape, &self.chunks)?;
                let saver = self.saver.take()?;
                return Some(Box::pin(saver.save(answer)));
            }
            match serde_json::from_str::<Value>(&event.data) {
                Ok(chunk) if chunk.get("error").is_none() => self.chunks.push(chunk),
                // Not a chunk: whatever this stream is, it is not one to replay.
                _ => {
                    self.saver = None;
                    return None;
                }
            }
        }
        None
    }
}

impl<S, E> Stream for Recording<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((_, saving)) = &mut this.held {
            if saving.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some((bytes, _)) = this.held.take() {
                return Poll::Ready(Some(Ok(bytes)));
            }
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => match this.note(&bytes) {
                Some(saving) => {
                    this.held = Some((bytes, saving));
                    Pin::new(this).poll_next(cx)
                }
                None => Poll::Ready(Some(Ok(bytes))),
            },
            Poll::Ready(Some(Err(e))) => {
                this.saver = None;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}
