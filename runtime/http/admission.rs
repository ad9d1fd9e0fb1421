//! Holding new requests back while a connection lane is behind its streams.
//!
//! A lane serves every connection handed to it on one thread. When more streams are open than
//! its share of the machine can carry, every stream's next chunk waits behind every other's, and
//! a burst of new requests (each with its connect, TLS handshake and routing) makes all of them
//! stutter at once. nginx gets around it as a side effect: with `multi_accept` off it accepts one
//! connection per turn of its event loop and leaves the rest in the listen backlog. A lane
//! instead measures how long one turn of its scheduler takes, and while that is past
//! [`ROUND_TARGET`], new requests wait their turn one at a time: the streams already flowing keep
//! their pace, and a new one starts later (its first byte, never its later ones). None waits
//! longer than the lane's hold (`--overload-hold`, [`MAX_HOLD`] by default; zero holds none).
//!
//! Only a lane with [`BUSY`] requests in flight or more measures at all (a stream is in flight
//! until its last byte; an idle kept-alive connection is not): below that a request pays nothing
//! but a counter. Requests on the lane's own HTTP/1.1 server are counted and held there; those
//! of HTTP/2 and upgraded connections, which hyper serves, through [`counted`].

use axum::response::Response;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Requests in flight on a lane from which its new ones are measured.
pub const BUSY: usize = 256;
/// A scheduler turn longer than this means the lane is behind: its streams' chunks (a typical
/// model's come 20 to 50 ms apart) arrive in clumps, on the way to gaps a reader notices.
pub const ROUND_TARGET: Duration = Duration::from_millis(50);
/// The longest a request is held by default; past it, it goes ahead however busy the lane is.
pub const MAX_HOLD: Duration = Duration::from_secs(3);

thread_local! {
    /// This thread's lane, if it is one.
    static LANE: Cell<Option<&'static Lane>> = const { Cell::new(None) };
}

/// One lane's requests in flight, the gate its held requests pass one at a time and how long
/// one may be held. (Only its own thread touches the count; atomic so that a connection's task
/// stays `Send`.)
struct Lane {
    in_flight: AtomicUsize,
    gate: Arc<Semaphore>,
    max_hold: Duration,
}

/// Makes the calling thread a lane whose requests are held up to `max_hold` while it is behind
/// (zero: never, and its requests are not counted). Called once by each lane thread, which
/// lives as long as the process (the lane's state is leaked with it).
pub fn on_lane(max_hold: Duration) {
    if max_hold.is_zero() {
        return;
    }
    let lane = Lane { in_flight: AtomicUsize::new(0), gate: Arc::new(Semaphore::new(1)), max_hold };
    let lane: &'static Lane = Box::leak(Box::new(lane));
    LANE.with(|l| l.set(Some(lane)));
}

/// A request in flight on a lane, counted while it lives. Requests of other threads are not.
pub struct InFlight(Option<&'static Lane>);

impl InFlight {
    fn count() -> InFlight {
        let lane = LANE.with(Cell::get);
        if let Some(lane) = lane {
            lane.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight(lane)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(lane) = self.0 {
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's handling, started once its lane admits it.
    pub struct Admitted<F> {
        hold: Option<Hold>,
        #[pin]
        call: F,
    }
}

/// The wait of a held request. Boxed: it is rare, and inline it would grow every request's
/// future.
type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A new request on the calling thread: counted on its lane while the returned `InFlight`
/// lives, and its handling `call` (not polled yet) first held while the lane is behind. The
/// lane is looked up once for both.
pub fn enter<F: Future>(call: F) -> (InFlight, Admitted<F>) {
    let in_flight = InFlight::count();
    let hold = in_flight.0.and_then(admission);
    (in_flight, Admitted { hold, call })
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Some(hold) = this.hold {
            ready!(hold.as_mut().poll(cx));
            *this.hold = None;
        }
        this.call.poll(cx)
    }
}

/// What a new request on `lane` waits for before it is served: nothing (`None`) unless the
/// lane is busy.
fn admission(lane: &'static Lane) -> Option<Hold> {
    if lane.in_flight.load(Ordering::Relaxed) < BUSY {
        return None;
    }
    Some(Box::pin(admit(Arc::clone(&lane.gate), lane.max_hold)))
}

async fn admit(gate: Arc<Semaphore>, max_hold: Duration) {
    let arrived = Instant::now();
    if round().await <= ROUND_TARGET {
        return;
    }
    wait_turn(gate, max_hold, arrived).await;
    crate::observability::metrics::overload_held(arrived.elapsed());
}

/// Behind: one held request at a time waits for a quick turn, so that when the lane catches up
/// they start one per turn rather than all at once.
async fn wait_turn(gate: Arc<Semaphore>, max_hold: Duration, arrived: Instant) {
    let Ok(_turn) = tokio::time::timeout_at(arrived + max_hold, gate.acquire()).await else { return };
    loop {
        let took = round().await;
        if took <= ROUND_TARGET || arrived.elapsed() >= max_hold {
            return;
        }
        // Measuring is a turn of its own: wait as long as the slow one took before the next.
        tokio::time::sleep(took.min(max_hold.saturating_sub(arrived.elapsed()))).await;
    }
}

/// `service` as hyper's connections call it (HTTP/2 streams, an upgraded connection's requests):
/// each request counted on its lane until its answer's body is done with (a stream until its
/// last chunk), and held first while the lane is behind, as the lane's own server does.
pub fn counted<S, R>(service: S) -> tower::util::MapFuture<S, impl FnMut(S::Future) -> Counted<S::Future> + Clone>
where
    S: tower::Service<R, Response = Response>,
{
    tower::ServiceExt::map_future(service, |call| {
        let (in_flight, call) = enter(call);
        Counted { in_flight, call }
    })
}

pin_project_lite::pin_project! {
    /// A request of hyper's, counted from its call; its answer's body carries the count on.
    pub struct Counted<F> {
        in_flight: InFlight,
        #[pin]
        call: Admitted<F>,
    }
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = ready!(this.call.poll(cx));
        // Its answer's body carries the count on until hyper drops it (sent, or the client gone).
        let in_flight = std::mem::replace(this.in_flight, InFlight(None));
        Poll::Ready(answered.map(|response| super::limits::hold(response, in_flight)))
    }
}

/// How long one turn of the calling thread's scheduler takes: the tasks ready before this one
/// and what the I/O driver wakes meanwhile run first (a yield is resumed after the driver's
/// next poll).
async fn round() -> Duration {
    let asked = Instant::now();
    tokio::task::yield_now().await;
    asked.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a new request on the calling thread would wait for (nothing off a lane).
    fn admission() -> Option<Hold> {
        LANE.with(Cell::get).and_then(super::admission)
    }

    /// A lane on a runtime of its own, as the server makes them, holding requests up to
    /// `max_hold`.
    fn lane_runtime(max_hold: Duration) -> tokio::runtime::Runtime {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async { on_lane(max_hold) });
        rt
    }

    #[test]
    fn only_a_busy_lane_measures_its_requests() {
        // Off a lane: nothing is counted or held.
        assert!(admission().is_none());
        let open = InFlight::count();
        assert!(open.0.is_none());
        drop(open);

        let rt = lane_runtime(MAX_HOLD);
        rt.block_on(async {
            let mut opened: Vec<InFlight> = (0..BUSY - 1).map(|_| InFlight::count()).collect();
            assert!(admission().is_none(), "below BUSY a request goes straight in");
            opened.push(InFlight::count());
            let wait = admission().expect("a busy lane measures");
            // An idle scheduler turns at once: the request goes ahead.
            tokio::time::timeout(Duration::from_secs(5), wait).await.expect("admitted");
            opened.clear();
            assert!(admission().is_none(), "requests ending take the count down");
        });
    }

    /// The calling lane's requests in flight.
    fn lane_in_flight() -> usize {
        LANE.with(Cell::get).expect("on a lane").in_flight.load(Ordering::Relaxed)
    }

    #[test]
    fn hypers_requests_are_counted_until_their_answer_body_is_done_with() {
        use tower::{Service, ServiceExt};
        let rt = lane_runtime(MAX_HOLD);
        rt.block_on(async {
            let inner = tower::service_fn(|_: ()| async {
                Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::from("streamed")))
            });
            let mut service = counted(inner);
            let call = service.ready().await.expect("ready").call(());
            assert_eq!(lane_in_flight(), 1, "counted from its call, before it is polled");
            let response = call.await.expect("answered");
            assert_eq!(lane_in_flight(), 1, "the answer's body carries the count");
            let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
            assert_eq!(&body[..], b"streamed");
            assert_eq!(lane_in_flight(), 0, "a body read and dropped ends the count");

            // A lane with BUSY requests open measures hyper's new ones as the own server's.
            let _opened: Vec<InFlight> = (0..BUSY).map(|_| InFlight::count()).collect();
            let call = service.ready().await.expect("ready").call(());
            assert!(call.call.hold.is_some(), "a busy lane measures hyper's requests too");
            drop(call);
            assert_eq!(lane_in_flight(), BUSY);
        });
    }

    #[test]
    fn a_lane_with_no_hold_counts_and_holds_nothing() {
        let rt = lane_runtime(Duration::ZERO);
        rt.block_on(async {
            let opened: Vec<InFlight> = (0..BUSY).map(|_| InFlight::count()).collect();
            assert!(opened.iter().all(|o| o.0.is_none()));
            assert!(admission().is_none());
        });
    }

    #[test]
    fn a_lane_behind_holds_new_requests_until_it_catches_up() {
        let rt = lane_runtime(MAX_HOLD);
        rt.block_on(async {
            let _opened: Vec<InFlight> = (0..BUSY).map(|_| InFlight::count()).collect();
            // Other work that keeps every turn of the scheduler slow for a while: a task that
            // blocks its thread 30 ms at a time (past ROUND_TARGET), ten times.
            let hog = tokio::spawn(async {
                for _ in 0..10 {
                    std::thread::sleep(ROUND_TARGET + Duration::from_millis(10));
                    tokio::task::yield_now().await;
                }
            });
            tokio::task::yield_now().await;
            let asked = Instant::now();
            admission().expect("busy").await;
            let held = asked.elapsed();
            assert!(hog.is_finished(), "the request went ahead while the lane was still behind ({held:?})");
            assert!(held < MAX_HOLD, "held {held:?}");
        });
    }

    #[test]
    fn no_request_is_held_past_the_limit() {
        let limit = Duration::from_millis(600);
        let rt = lane_runtime(limit);
        rt.block_on(async {
            let _opened: Vec<InFlight> = (0..BUSY).map(|_| InFlight::count()).collect();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let hog = tokio::spawn({
                let stop = Arc::clone(&stop);
                async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(ROUND_TARGET * 2);
                        tokio::task::yield_now().await;
                    }
                }
            });
            tokio::task::yield_now().await;
            let asked = Instant::now();
            admission().expect("busy").await;
            let held = asked.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            hog.await.expect("hog");
            assert!(held >= limit, "went ahead after {held:?} with the lane still behind");
            assert!(held < limit + Duration::from_millis(500), "held {held:?}");
        });
    }
}
