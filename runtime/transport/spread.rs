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
//! handshakes. So once an origin is known to speak HTTP/2 ([`Origins`]) it is sent through
//! clients that speak only that, whose pools open one connection at a time and let the burst
//! wait for it; if such a call fails, the origin is negotiated again.
//!
//! An origin served over HTTP/1.1 is counted too: its first client's pool opens a connection
//! per request already, so a second client changes nothing but which pool holds them.

use super::origins::{Origins, Protocol, Scout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Requests carried at once on one HTTP/2 connection unless told otherwise: the least a server
/// should allow (RFC 9113, 6.5.2), and what most providers allow or more.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 100;

/// Origins a client's counts are kept for before the idle ones are dropped.
const ORIGINS_KEPT: usize = 256;

/// Clients made by `make`, each with its count of requests carried per origin, and what the
/// origins called through them speak.
pub struct Spread<C> {
    make: Box<dyn Fn(Protocol) -> C + Send + Sync>,
    clients: Mutex<Clients<C>>,
    origins: Origins,
}

struct Clients<C> {
    negotiated: Vec<Counted<C>>,
    http2: Vec<Counted<C>>,
}

/// The client a request goes through, what it speaks, and the request's place on it.
pub struct Picked<C> {
    pub client: C,
    pub protocol: Protocol,
    pub carried: Carried,
    /// Set when the request is the first to a new TLS origin: the caller learns what the origin
    /// speaks from its connection, and the others wait until it is dropped.
    pub scout: Option<Scout>,
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
        let clients = Clients { negotiated: Vec::new(), http2: Vec::new() };
        Spread { make: Box::new(make), clients: Mutex::new(clients), origins: Origins::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients<C>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the origins called through these clients speak.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// The client to send a request to `origin` through, and the request's place on it: the
    /// first client carrying fewer than `cap` requests to `origin`, or a new one; one that
    /// speaks only HTTP/2 when `origin` is known to.
    pub fn pick(&self, origin: &str, cap: usize) -> Picked<C> {
        self.pick_with(origin, cap, None)
    }

    /// [`Spread::pick`], with a scout on the picked request when `origin` is a TLS origin not
    /// yet known and none is out to it ([`Origins::scout`]).
    pub fn pick_scouting(&self, origin: &str, cap: usize) -> Picked<C> {
        self.pick_with(origin, cap, self.origins.scout(origin))
    }

    fn pick_with(&self, origin: &str, cap: usize, scout: Option<Scout>) -> Picked<C> {
        let protocol = self.origins.protocol(origin);
        let mut clients = self.lock();
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
    use axum::http::Version;

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
    fn an_origin_known_to_speak_http2_goes_through_http2_only_clients() {
        let spread = numbered();
        let first = spread.pick("https://a", 2);
        assert_eq!(first.protocol, Protocol::Negotiated);
        spread.origins().learn("https://a", first.protocol, Some(Version::HTTP_11));
        assert_eq!(spread.pick("https://a", 2).protocol, Protocol::Negotiated, "HTTP/1.1 picks no other client");

        spread.origins().learn("https://a", first.protocol, Some(Version::HTTP_2));
        let picked: Vec<_> = (0..3).map(|_| spread.pick("https://a", 2)).collect();
        assert!(picked.iter().all(|p| p.protocol == Protocol::Http2 && p.client.1 == Protocol::Http2));
        assert_eq!(picked.iter().map(number).collect::<Vec<_>>(), [1, 1, 2], "their own clients, two each");
        assert_eq!(spread.pick("https://b", 2).protocol, Protocol::Negotiated, "other origins still negotiate");
    }

    #[test]
    fn a_scout_comes_with_the_pick_only_when_asked_for_and_the_origin_is_new() {
        let spread = numbered();
        assert!(spread.pick("https://a", 2).scout.is_none());
        let scout = spread.pick_scouting("https://a", 2);
        assert!(scout.scout.is_some());
        assert!(spread.pick_scouting("https://a", 2).scout.is_none(), "one scout at a time");
        assert!(spread.origins().scouting("https://a").is_some());
    }

    #[test]
    fn idle_origins_are_dropped_once_a_client_knows_many() {
        let spread = numbered();
        let _busy = spread.pick("busy", 10);
        for i in 0..ORIGINS_KEPT + 10 {
            drop(spread.pick(&format!("o{i}"), 10));
        }
        let clients = spread.lock();
        assert!(clients.negotiated[0].carrying.len() <= ORIGINS_KEPT);
        assert_eq!(clients.negotiated[0].carrying["busy"].load(Ordering::Relaxed), 1, "a busy origin keeps its count");
    }
}
