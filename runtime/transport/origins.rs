//! What upstream origins speak, as calls to them taught it, and the scouts out to learn it.
//!
//! An origin that answered over HTTP/2 is called through clients that speak only that
//! ([`super::spread`]); one whose ALPN settled on HTTP/1.1 gets its streams on the lanes' own
//! HTTP/1.1 connections rather than a connection of hyper's beside them. To know which, a new TLS
//! origin is asked once: the first call to it is its scout ([`Origins::scout`]), and the calls
//! beside it wait until the scout's connection has settled by ALPN ([`Origins::scouting`]), then
//! go where it taught them. Without it, a burst of streams to a provider first met (on start)
//! made a handshake per stream, hyper keeping one connection of them.

use axum::http::Version;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Origins known to speak HTTP/2 kept before they are all forgotten; origins known to speak
/// HTTP/1.1 and scouts kept before the stale ones are dropped.
const ORIGINS_KEPT: usize = 256;

/// How long a TLS origin that settled on HTTP/1.1 is taken to speak only that: after it, the
/// next stream asks again, so an upstream that starts offering HTTP/2 is found.
const HTTP1_KEPT: Duration = Duration::from_secs(600);

/// What a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// What ALPN settles on (HTTP/1.1 for plain HTTP).
    Negotiated,
    /// HTTP/2 only, for origins known to speak it.
    Http2,
}

/// What origins speak, learned from calls to them.
#[derive(Default)]
pub struct Origins {
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// Origins that answered over HTTP/2.
    http2: HashSet<String>,
    /// TLS origins whose ALPN settled on HTTP/1.1, and when it did.
    http1: HashMap<String, Instant>,
    /// Origins a scout is out to; the scout's end wakes these receivers' clones.
    scouts: HashMap<String, watch::Receiver<()>>,
}

/// A call out to learn what a new origin speaks: held, never read; dropping it ends the
/// others' wait.
pub struct Scout {
    _done: watch::Sender<()>,
}

/// A wait for another call's scout: over when that one is dropped.
pub struct Waiting(watch::Receiver<()>);

impl Waiting {
    /// Resolves when the scout is done, or after `limit` (a scout whose handshake hangs holds
    /// no one long).
    pub async fn done_within(mut self, limit: Duration) {
        // Nothing is ever sent: `changed` returns when the sender goes.
        let _ = tokio::time::timeout(limit, self.0.changed()).await;
    }
}

impl Origins {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clients a call to `origin` goes through: HTTP/2-only ones when it is known to speak it.
    pub fn protocol(&self, origin: &str) -> Protocol {
        if self.lock().http2.contains(origin) {
            Protocol::Http2
        } else {
            Protocol::Negotiated
        }
    }

    /// A scout for a call to `origin`, when it is a TLS origin not known (lately) and none is
    /// out to it: the caller learns from its connection and drops it.
    pub fn scout(&self, origin: &str) -> Option<Scout> {
        let mut known = self.lock();
        let unknown = origin.starts_with("https:") && !known.http2.contains(origin) && !known.http1_lately(origin);
        if !unknown || known.scouts.get(origin).is_some_and(|out| out.has_changed().is_ok()) {
            return None;
        }
        if known.scouts.len() >= ORIGINS_KEPT {
            known.scouts.retain(|_, out| out.has_changed().is_ok());
        }
        let (done, out) = watch::channel(());
        known.scouts.insert(origin.to_owned(), out);
        Some(Scout { _done: done })
    }

    /// A wait for the scout out to `origin`, if one is.
    pub fn scouting(&self, origin: &str) -> Option<Waiting> {
        let known = self.lock();
        let out = known.scouts.get(origin).filter(|out| out.has_changed().is_ok())?;
        Some(Waiting(out.clone()))
    }

    /// Learns from a call to `origin` through a client speaking `protocol`: `answered` is the
    /// version it settled on, `None` when it failed.
    pub fn learn(&self, origin: &str, protocol: Protocol, answered: Option<Version>) {
        match (protocol, answered) {
            (Protocol::Negotiated, Some(Version::HTTP_2)) => {
                let mut known = self.lock();
                known.http1.remove(origin);
                if known.http2.len() >= ORIGINS_KEPT {
                    known.http2.clear();
                }
                if !known.http2.contains(origin) {
                    tracing::debug!(origin, "upstream speaks HTTP/2");
                    known.http2.insert(origin.to_owned());
                }
            }
            // Plain HTTP is HTTP/1.1 without asking: only TLS origins have chosen it.
            (Protocol::Negotiated, Some(Version::HTTP_11)) if origin.starts_with("https:") => {
                let mut known = self.lock();
                if known.http1.len() >= ORIGINS_KEPT {
                    known.http1.retain(|_, since| since.elapsed() < HTTP1_KEPT);
                    if known.http1.len() >= ORIGINS_KEPT {
                        known.http1.clear();
                    }
                }
                if !known.http1_lately(origin) {
                    tracing::debug!(origin, "upstream speaks HTTP/1.1 only");
                }
                known.http1.insert(origin.to_owned(), Instant::now());
            }
            (Protocol::Http2, None) => {
                self.lock().http2.remove(origin);
            }
            _ => {}
        }
    }

    /// Whether `origin` settled on HTTP/1.1 by ALPN lately: asking it again would only cost a
    /// connection of hyper's beside the lanes' own.
    pub fn speaks_only_http1(&self, origin: &str) -> bool {
        self.lock().http1_lately(origin)
    }
}

impl Known {
    /// Whether `origin` settled on HTTP/1.1 by ALPN less than [`HTTP1_KEPT`] ago.
    fn http1_lately(&self, origin: &str) -> bool {
        self.http1.get(origin).is_some_and(|since| since.elapsed() < HTTP1_KEPT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_that_answered_over_http2_is_known_to_until_a_call_through_http2_fails() {
        let origins = Origins::default();
        origins.learn("https://a", Protocol::Negotiated, Some(Version::HTTP_11));
        assert_eq!(origins.protocol("https://a"), Protocol::Negotiated);
        assert!(origins.speaks_only_http1("https://a"));

        origins.learn("https://a", Protocol::Negotiated, Some(Version::HTTP_2));
        assert!(!origins.speaks_only_http1("https://a"), "an origin that starts offering HTTP/2 is taken at its word");
        assert_eq!(origins.protocol("https://a"), Protocol::Http2);
        assert_eq!(origins.protocol("https://b"), Protocol::Negotiated, "other origins still negotiate");

        origins.learn("https://a", Protocol::Http2, Some(Version::HTTP_2));
        assert_eq!(origins.protocol("https://a"), Protocol::Http2);
        origins.learn("https://a", Protocol::Http2, None);
        assert_eq!(origins.protocol("https://a"), Protocol::Negotiated, "negotiated again after a failure");
    }

    #[test]
    fn only_tls_origins_are_remembered_as_speaking_http1_and_only_for_a_while() {
        let origins = Origins::default();
        origins.learn("http://plain", Protocol::Negotiated, Some(Version::HTTP_11));
        assert!(!origins.speaks_only_http1("http://plain"), "plain HTTP chose nothing");
        origins.learn("https://old", Protocol::Negotiated, Some(Version::HTTP_11));
        assert!(origins.speaks_only_http1("https://old"));
        // Learned longer ago than it is kept for: asked again.
        if let Some(long_ago) = Instant::now().checked_sub(HTTP1_KEPT + Duration::from_secs(1)) {
            origins.lock().http1.insert("https://old".into(), long_ago);
            assert!(!origins.speaks_only_http1("https://old"));
            assert!(origins.scout("https://old").is_some());
        }
        // Bounded: past the origins kept, the stale ones go first, then all.
        for i in 0..ORIGINS_KEPT + 10 {
            origins.learn(&format!("https://o{i}"), Protocol::Negotiated, Some(Version::HTTP_11));
            origins.learn(&format!("https://t{i}"), Protocol::Negotiated, Some(Version::HTTP_2));
        }
        assert!(origins.lock().http1.len() <= ORIGINS_KEPT);
        assert!(origins.lock().http2.len() <= ORIGINS_KEPT);
    }

    #[tokio::test]
    async fn the_first_call_to_a_new_tls_origin_scouts_and_the_others_wait_for_it() {
        let origins = Origins::default();
        assert!(origins.scout("http://plain").is_none(), "plain HTTP has nothing to learn");

        let scout = origins.scout("https://a").expect("a new TLS origin");
        assert!(origins.scout("https://a").is_none(), "one scout at a time");
        let waiting = origins.scouting("https://a").expect("a scout is out");
        assert!(origins.scouting("https://b").is_none());

        // The wait ends when the scout is dropped, having learned or not.
        let waited = tokio::spawn(waiting.done_within(Duration::from_secs(60)));
        origins.learn("https://a", Protocol::Negotiated, Some(Version::HTTP_2));
        drop(scout);
        tokio::time::timeout(Duration::from_secs(5), waited).await.unwrap().unwrap();
        assert!(origins.scouting("https://a").is_none());
        assert!(origins.scout("https://a").is_none(), "known now");

        // A scout that hangs holds no one past the limit.
        let hanging = origins.scout("https://slow").unwrap();
        let waiting = origins.scouting("https://slow").unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting.done_within(Duration::from_millis(10))).await.unwrap();
        // Its end without learning lets the next call scout.
        drop(hanging);
        assert!(origins.scout("https://slow").is_some());
    }
}
