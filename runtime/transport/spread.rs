//! Requests spread over several pooled clients so that no HTTP/2 connection carries more than a
//! set number of them at once.
//!
//! hyper's pool keeps one HTTP/2 connection per origin, and a request past the server's stream
//! limit (`SETTINGS_MAX_CONCURRENT_STREAMS`, 100 to 256 at most providers) waits on it until a
//! stream ends: the pool does not open another (hyperium/hyper#3623). An LLM stream lasts
//! seconds to minutes, so past the limit streams would wait for each other. hyper does not tell
//! a connection's limit or its open streams either, so the count is kept here: a request goes
//! through the first client carrying fewer than `cap` requests to its origin, and when every
//! client carries that many a new one is added, with a pool (so a connection) of its own. Its
//! clients share one connector, so one TLS configuration and one session cache: a new
//! connection resumes a session another opened.
//!
//! Until a connection has settled on HTTP/2 by ALPN, hyper opens one per waiting request and
//! keeps one of them: a burst of a hundred streams to a new client would make a hundred TLS
//! handshakes. So once an origin is known to speak HTTP/2 it is sent through clients that speak
//! only that, whose pools open one connection at a time and let the burst wait for it; if such
//! a call fails, the origin is negotiated again. To know it, a new TLS origin is asked once: the
//! first call to it is its scout ([`Spread::pick_scouting`]), and the others wait until the
//! scout's connection has settled by ALPN ([`Spread::scouting`]), then go where it taught them
//! (a burst of streams to a provider first met, on start, would otherwise make a handshake per
//! stream and keep one connection).
//!
//! An origin served over HTTP/1.1 is counted too: its first client's pool opens a connection
//! per request already, so a second client changes nothing but which pool holds them. A TLS
//! origin that settled on HTTP/1.1 is remembered for a while ([`Spread::speaks_only_http1`]), so
//! that its streams ride the lanes' own HTTP/1.1 connections instead of asking again.

use axum::http::Version;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Requests carried at once on one HTTP/2 connection unless told otherwise: the least a server
/// should allow (RFC 9113, 6.5.2), and what most providers allow or more.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 100;

/// Origins a client's counts are kept for before the idle ones are dropped; origins known to
/// speak HTTP/2 kept before they are all forgotten.
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

/// Clients made by `make`, each with its count of requests carried per origin.
pub struct Spread<C> {
    make: Box<dyn Fn(Protocol) -> C + Send + Sync>,
    clients: Mutex<Clients<C>>,
}

struct Clients<C> {
    negotiated: Vec<Counted<C>>,
    http2: Vec<Counted<C>>,
    /// Origins that answered over HTTP/2.
    speak_http2: HashSet<String>,
    /// TLS origins whose ALPN settled on HTTP/1.1, and when it did.
    speak_http1: HashMap<String, Instant>,
    /// Origins a scout is out to; the scout's end wakes its receivers.
    scouts: HashMap<String, watch::Receiver<()>>,
}

/// The client a request goes through, what it speaks, and the request's place on it.
pub struct Picked<C> {
    pub client: C,
    pub protocol: Protocol,
    pub carried: Carried,
    /// Set when the request is the first to a new TLS origin: the others wait until it is
    /// dropped, once the request's connection has settled (and been learned from) or failed.
    pub scout: Option<Scout>,
}

/// A request out to learn what a new origin speaks (see [`Picked::scout`]): held, not read;
/// dropping it ends the others' wait.
pub struct Scout {
    _done: watch::Sender<()>,
}

/// A wait for another request's scout: over when that one is dropped.
pub struct Waiting(watch::Receiver<()>);

impl Waiting {
    /// Resolves when the scout is done, or after `limit` (a scout whose handshake hangs holds
    /// no one long).
    pub async fn done_within(mut self, limit: Duration) {
        // Nothing is ever sent: `changed` returns when the sender goes.
        let _ = tokio::time::timeout(limit, self.0.changed()).await;
    }
}

struct Counted<C> {
    client: C,
    carrying: HashMap<String, Arc<AtomicUsize>>,
}

/// A request carried by a client: counted until this is dropped (with its answer's body).
pub struct Carried(Arc<AtomicUsize>);

impl Drop for Carried {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C: Clone> Spread<C> {
    pub fn new(make: impl Fn(Protocol) -> C + Send + Sync + 'static) -> Spread<C> {
        let clients = Clients {
            negotiated: Vec::new(),
            http2: Vec::new(),
            speak_http2: HashSet::new(),
            speak_http1: HashMap::new(),
            scouts: HashMap::new(),
        };
        Spread { make: Box::new(make), clients: Mutex::new(clients) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients<C>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client to send a request to `origin` through, and the request's place on it: the
    /// first client carrying fewer than `cap` requests to `origin`, or a new one; one that
    /// speaks only HTTP/2 when `origin` is known to.
    pub fn pick(&self, origin: &str, cap: usize) -> Picked<C> {
        self.pick_with(origin, cap, false)
    }

    /// [`Spread::pick`], with a scout on the picked request when `origin` is a TLS origin not
    /// yet known and none is out to it (the caller learns from its connection: [`Picked::scout`]).
    pub fn pick_scouting(&self, origin: &str, cap: usize) -> Picked<C> {
        self.pick_with(origin, cap, true)
    }

    /// A wait for the scout out to `origin`, if one is.
    pub fn scouting(&self, origin: &str) -> Option<Waiting> {
        let clients = self.lock();
        let out = clients.scouts.get(origin).filter(|scout| scout.has_changed().is_ok())?;
        Some(Waiting(out.clone()))
    }

    fn pick_with(&self, origin: &str, cap: usize, scouting: bool) -> Picked<C> {
        let mut clients = self.lock();
        let scout = (scouting && clients.unknown(origin)).then(|| clients.send_scout(origin)).flatten();
        let protocol = if clients.speak_http2.contains(origin) { Protocol::Http2 } else { Protocol::Negotiated };
        let list = match protocol {
            Protocol::Negotiated => &mut clients.negotiated,
            Protocol::Http2 => &mut clients.http2,
        };
        // Only this lock adds to a count, so a count read under it cannot pass the cap.
        let cap = cap.max(1);
        let index = list.iter().position(|counted| counted.carrying(origin) < cap).unwrap_or_else(|| {
            list.push(Counted { client: (self.make)(protocol), carrying: HashMap::new() });
            list.len() - 1
        });
        let counted = &mut list[index];
        let count = counted.count_for(origin);
        count.fetch_add(1, Ordering::Relaxed);
        Picked { client: counted.client.clone(), protocol, carried: Carried(count), scout }
    }

    /// Learns from a call to `origin` through a client speaking `protocol`: `answered` is the
    /// version of its answer, `None` when it failed.
    pub fn learn(&self, origin: &str, protocol: Protocol, answered: Option<Version>) {
        match (protocol, answered) {
            (Protocol::Negotiated, Some(Version::HTTP_2)) => {
                let mut clients = self.lock();
                clients.speak_http1.remove(origin);
                if clients.speak_http2.len() >= ORIGINS_KEPT {
                    clients.speak_http2.clear();
                }
                if !clients.speak_http2.contains(origin) {
                    clients.speak_http2.insert(origin.to_owned());
                }
            }
            // Plain HTTP is HTTP/1.1 without asking: only TLS origins have chosen it.
            (Protocol::Negotiated, Some(Version::HTTP_11)) if origin.starts_with("https:") => {
                let mut clients = self.lock();
                if clients.speak_http1.len() >= ORIGINS_KEPT {
                    clients.speak_http1.retain(|_, since| since.elapsed() < HTTP1_KEPT);
                    if clients.speak_http1.len() >= ORIGINS_KEPT {
                        clients.speak_http1.clear();
                    }
                }
                clients.speak_http1.insert(origin.to_owned(), Instant::now());
            }
            (Protocol::Http2, None) => {
                self.lock().speak_http2.remove(origin);
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

impl<C> Clients<C> {
    /// Whether `origin` is a TLS origin whose protocol is not known (lately).
    fn unknown(&self, origin: &str) -> bool {
        origin.starts_with("https:") && !self.speak_http2.contains(origin) && !self.http1_lately(origin)
    }

    /// Whether `origin` settled on HTTP/1.1 by ALPN less than [`HTTP1_KEPT`] ago.
    fn http1_lately(&self, origin: &str) -> bool {
        self.speak_http1.get(origin).is_some_and(|since| since.elapsed() < HTTP1_KEPT)
    }

    /// A scout to `origin`, unless one is out.
    fn send_scout(&mut self, origin: &str) -> Option<Scout> {
        if self.scouts.get(origin).is_some_and(|out| out.has_changed().is_ok()) {
            return None;
        }
        if self.scouts.len() >= ORIGINS_KEPT {
            self.scouts.retain(|_, out| out.has_changed().is_ok());
        }
        let (scout, out) = watch::channel(());
        self.scouts.insert(origin.to_owned(), out);
        Some(Scout { _done: scout })
    }
}

impl<C> Counted<C> {
    /// Requests this client carries to `origin` now.
    fn carrying(&self, origin: &str) -> usize {
        self.carrying.get(origin).map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// The count of requests to `origin`, made on first use.
    fn count_for(&mut self, origin: &str) -> Arc<AtomicUsize> {
        if let Some(count) = self.carrying.get(origin) {
            return count.clone();
        }
        if self.carrying.len() >= ORIGINS_KEPT {
            self.carrying.retain(|_, count| count.load(Ordering::Relaxed) > 0);
        }
        self.carrying.entry(origin.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients told apart by the order they were made in and what they speak.
    fn numbered() -> Spread<(usize, Protocol)> {
        let made = AtomicUsize::new(0);
        Spread::new(move |protocol| (made.fetch_add(1, Ordering::Relaxed), protocol))
    }

    fn number(picked: &Picked<(usize, Protocol)>) -> usize {
        picked.client.0
    }

    /// Clients made so far.
    fn made<C: Clone>(spread: &Spread<C>) -> usize {
        let clients = spread.lock();
        clients.negotiated.len() + clients.http2.len()
    }

    #[test]
    fn a_client_carries_up_to_the_cap_per_origin_then_another_is_made() {
        let spread = numbered();
        let first: Vec<_> = (0..3).map(|_| spread.pick("https://a:443", 3)).collect();
        assert!(first.iter().all(|p| number(p) == 0));
        let fourth = spread.pick("https://a:443", 3);
        assert_eq!(number(&fourth), 1, "the first client carries its cap: a second one is made");
        // Another origin has its own count on the first client.
        assert_eq!(number(&spread.pick("https://b:443", 3)), 0);
        assert_eq!(made(&spread), 2);

        // A request that ends frees its place: the next goes to the first client again.
        drop(first);
        assert_eq!(number(&spread.pick("https://a:443", 3)), 0);
        drop(fourth);
        assert_eq!(made(&spread), 2, "clients are kept for the next burst");
    }

    #[test]
    fn a_cap_of_zero_is_taken_as_one() {
        let spread = numbered();
        let a = spread.pick("o", 0);
        let b = spread.pick("o", 0);
        assert_eq!((number(&a), number(&b)), (0, 1));
    }

    #[test]
    fn an_origin_that_answered_over_http2_goes_through_http2_only_clients_until_a_call_fails() {
        let spread = numbered();
        let first = spread.pick("https://a", 2);
        assert_eq!(first.protocol, Protocol::Negotiated);
        spread.learn("https://a", first.protocol, Some(Version::HTTP_11));
        assert_eq!(spread.pick("https://a", 2).protocol, Protocol::Negotiated, "HTTP/1.1 picks no other client");
        assert!(spread.speaks_only_http1("https://a"));

        spread.learn("https://a", first.protocol, Some(Version::HTTP_2));
        assert!(!spread.speaks_only_http1("https://a"), "an origin that starts offering HTTP/2 is taken at its word");
        let picked: Vec<_> = (0..3).map(|_| spread.pick("https://a", 2)).collect();
        assert!(picked.iter().all(|p| p.protocol == Protocol::Http2 && p.client.1 == Protocol::Http2));
        assert_eq!(picked.iter().map(number).collect::<Vec<_>>(), [1, 1, 2], "their own clients, two each");
        assert_eq!(spread.pick("https://b", 2).protocol, Protocol::Negotiated, "other origins still negotiate");

        // A failed call through them sends the origin back to negotiating.
        spread.learn("https://a", Protocol::Http2, Some(Version::HTTP_2));
        assert_eq!(spread.pick("https://a", 2).protocol, Protocol::Http2);
        spread.learn("https://a", Protocol::Http2, None);
        assert_eq!(spread.pick("https://a", 2).protocol, Protocol::Negotiated);
    }

    #[test]
    fn only_tls_origins_are_remembered_as_speaking_http1_and_only_for_a_while() {
        let spread = numbered();
        spread.learn("http://plain", Protocol::Negotiated, Some(Version::HTTP_11));
        assert!(!spread.speaks_only_http1("http://plain"), "plain HTTP chose nothing");
        spread.learn("https://old", Protocol::Negotiated, Some(Version::HTTP_11));
        assert!(spread.speaks_only_http1("https://old"));
        // Learned longer ago than it is kept for: asked again.
        let long_ago = Instant::now().checked_sub(HTTP1_KEPT + Duration::from_secs(1));
        if let Some(long_ago) = long_ago {
            spread.lock().speak_http1.insert("https://old".into(), long_ago);
            assert!(!spread.speaks_only_http1("https://old"));
        }
        // Bounded: past the origins kept, the stale ones go first, then all.
        for i in 0..ORIGINS_KEPT + 10 {
            spread.learn(&format!("https://o{i}"), Protocol::Negotiated, Some(Version::HTTP_11));
        }
        assert!(spread.lock().speak_http1.len() <= ORIGINS_KEPT);
    }

    #[tokio::test]
    async fn the_first_call_to_a_new_tls_origin_scouts_and_the_others_wait_for_it() {
        let spread = numbered();
        assert!(spread.pick_scouting("http://plain", 2).scout.is_none(), "plain HTTP has nothing to learn");
        assert!(spread.pick("https://a", 2).scout.is_none(), "only asked for");

        let scout = spread.pick_scouting("https://a", 2);
        assert!(scout.scout.is_some());
        assert!(spread.pick_scouting("https://a", 2).scout.is_none(), "one scout at a time");
        let waiting = spread.scouting("https://a").expect("a scout is out");
        assert!(spread.scouting("https://b").is_none());

        // The wait ends when the scout is dropped, having learned or not.
        let waited = tokio::spawn(waiting.done_within(Duration::from_secs(60)));
        spread.learn("https://a", scout.protocol, Some(Version::HTTP_2));
        drop(scout);
        tokio::time::timeout(Duration::from_secs(5), waited).await.unwrap().unwrap();
        assert!(spread.scouting("https://a").is_none());
        assert!(spread.pick_scouting("https://a", 2).scout.is_none(), "known now");

        // A scout that hangs holds no one past the limit.
        let hanging = spread.pick_scouting("https://slow", 2);
        assert!(hanging.scout.is_some());
        let waiting = spread.scouting("https://slow").unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting.done_within(Duration::from_millis(10))).await.unwrap();
        // Its end without learning lets the next call scout.
        drop(hanging);
        assert!(spread.pick_scouting("https://slow", 2).scout.is_some());
    }

    #[test]
    fn idle_origins_are_dropped_once_a_client_knows_many() {
        let spread = numbered();
        let _busy = spread.pick("busy", 10);
        for i in 0..ORIGINS_KEPT + 10 {
            drop(spread.pick(&format!("o{i}"), 10));
            spread.learn(&format!("o{i}"), Protocol::Negotiated, Some(Version::HTTP_2));
        }
        let clients = spread.lock();
        assert!(clients.negotiated[0].carrying.len() <= ORIGINS_KEPT);
        assert_eq!(clients.negotiated[0].carrying["busy"].load(Ordering::Relaxed), 1, "a busy origin keeps its count");
        assert!(clients.speak_http2.len() <= ORIGINS_KEPT);
    }
}
