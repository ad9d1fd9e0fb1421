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
//! An origin served over HTTP/1.1 is counted too: its first client's pool opens a connection
//! per request already, so a second client changes nothing but which pool holds them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Requests carried at once on one HTTP/2 connection unless told otherwise: the least a server
/// should allow (RFC 9113, 6.5.2), and what most providers allow or more.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 100;

/// Origins a client's counts are kept for before the idle ones are dropped.
const ORIGINS_KEPT: usize = 256;

/// Clients made by `make`, each with its count of requests carried per origin.
pub struct Spread<C> {
    make: Box<dyn Fn() -> C + Send + Sync>,
    clients: Mutex<Vec<Counted<C>>>,
}

struct Counted<C> {
    client: C,
    carrying: HashMap<String, Arc<AtomicUsize>>,
}

/// A request carried by a client: counted until this is dropped (with its answer's body).
#[derive(Debug)]
pub struct Carried(Arc<AtomicUsize>);

impl Drop for Carried {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C: Clone> Spread<C> {
    pub fn new(make: impl Fn() -> C + Send + Sync + 'static) -> Spread<C> {
        Spread { make: Box::new(make), clients: Mutex::new(Vec::new()) }
    }

    /// The client to send a request to `origin` through, and the request's place on it: the
    /// first client carrying fewer than `cap` requests to `origin`, or a new one.
    pub fn pick(&self, origin: &str, cap: usize) -> (C, Carried) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for counted in clients.iter_mut() {
            let count = counted.count_for(origin);
            // Only this lock adds to a count, so a count read under it cannot pass the cap.
            if count.load(Ordering::Relaxed) < cap.max(1) {
                count.fetch_add(1, Ordering::Relaxed);
                return (counted.client.clone(), Carried(count));
            }
        }
        let mut counted = Counted { client: (self.make)(), carrying: HashMap::new() };
        let count = counted.count_for(origin);
        count.fetch_add(1, Ordering::Relaxed);
        let picked = (counted.client.clone(), Carried(count));
        clients.push(counted);
        picked
    }

    /// How many clients there are (each has a pool of its own).
    pub fn clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<C> Counted<C> {
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

    /// Clients told apart by the number they were made with.
    fn numbered() -> Spread<usize> {
        let made = AtomicUsize::new(0);
        Spread::new(move || made.fetch_add(1, Ordering::Relaxed))
    }

    #[test]
    fn a_client_carries_up_to_the_cap_per_origin_then_another_is_made() {
        let spread = numbered();
        let first: Vec<_> = (0..3).map(|_| spread.pick("https://a:443", 3)).collect();
        assert!(first.iter().all(|(client, _)| *client == 0));
        let (fourth, carried) = spread.pick("https://a:443", 3);
        assert_eq!(fourth, 1, "the first client carries its cap: a second one is made");
        // Another origin has its own count on the first client.
        assert_eq!(spread.pick("https://b:443", 3).0, 0);
        assert_eq!(spread.clients(), 2);

        // A request that ends frees its place: the next goes to the first client again.
        drop(first);
        assert_eq!(spread.pick("https://a:443", 3).0, 0);
        drop(carried);
        assert_eq!(spread.clients(), 2, "clients are kept for the next burst");
    }

    #[test]
    fn a_cap_of_zero_is_taken_as_one() {
        let spread = numbered();
        let (a, _keep_a) = spread.pick("o", 0);
        let (b, _keep_b) = spread.pick("o", 0);
        assert_eq!((a, b), (0, 1));
    }

    #[test]
    fn idle_origins_are_dropped_once_a_client_knows_many() {
        let spread = numbered();
        let _busy = spread.pick("busy", 10);
        for i in 0..ORIGINS_KEPT + 10 {
            drop(spread.pick(&format!("o{i}"), 10));
        }
        let clients = spread.clients.lock().unwrap();
        assert!(clients[0].carrying.len() <= ORIGINS_KEPT);
        assert_eq!(clients[0].carrying["busy"].load(Ordering::Relaxed), 1, "a busy origin keeps its count");
    }
}
