//! Deadlines of upstream exchanges, cheap where they can be coarse.
//!
//! Every attempt has a deadline (600 s unless the app sets its `timeout`). A tokio timer per
//! request costs a registration in the timer wheel and its removal, about a hundredth of a
//! proxied request's instructions, for a deadline that almost never fires. On a connection lane,
//! a far deadline is kept instead in the lane's own list, which the lane's one-second tick looks
//! through: it fires up to a second late, which only a far deadline can afford. A near deadline
//! (within [`COARSE_FROM`]), or one off the lanes, gets a tokio timer as before.

use pin_project_lite::pin_project;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a timeout must be for a lane to keep its deadline coarsely (it may then fire a second
/// late).
pub const COARSE_FROM: Duration = Duration::from_secs(10);

/// The deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

thread_local! {
    /// A lane's coarse deadlines; `None` off the lanes.
    static LANE: RefCell<Option<Slots>> = const { RefCell::new(None) };
}

/// Deadlines by slot; freed slots are reused.
#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

struct Entry {
    at: Instant,
    waker: Waker,
    expired: bool,
}

/// Gives the calling thread (a connection lane) its list of coarse deadlines.
pub fn enable() {
    LANE.with(|lane| *lane.borrow_mut() = Some(Slots::default()));
}

/// Wakes the exchanges of the calling lane whose deadline has passed (the lane's tick).
pub fn expire() {
    let now = Instant::now();
    LANE.with(|lane| {
        let mut lane = lane.borrow_mut();
        for entry in lane.iter_mut().flat_map(|s| s.entries.iter_mut()).flatten() {
            if !entry.expired && entry.at <= now {
                entry.expired = true;
                entry.waker.wake_by_ref();
            }
        }
    });
}

pin_project! {
    /// `inner`, or [`Elapsed`] once its deadline passes.
    pub struct Within<F> {
        #[pin]
        inner: F,
        at: Instant,
        #[pin]
        clock: Clock,
    }

    impl<F> PinnedDrop for Within<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Clock::Coarse { slot: Some(slot) } = *this.project().clock {
                release(slot);
            }
        }
    }
}

pin_project! {
    #[project = ClockProj]
    enum Clock {
        /// Kept in the lane's list (once the exchange first waits).
        Coarse { slot: Option<usize> },
        Precise { #[pin] sleep: tokio::time::Sleep },
    }
}

/// `inner` bounded by `at`, which a timeout of `length` set (a long one may be kept coarsely).
pub fn within<F: Future>(at: Instant, length: Duration, inner: F) -> Within<F> {
    let coarse = length >= COARSE_FROM && LANE.with(|lane| lane.borrow().is_some());
    let clock = if coarse {
        Clock::Coarse { slot: None }
    } else {
        Clock::Precise { sleep: tokio::time::sleep_until(at.into()) }
    };
    Within { inner, at, clock }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            if let ClockProj::Coarse { slot } = this.clock.as_mut().project() {
                if let Some(slot) = slot.take() {
                    release(slot);
                }
            }
            return Poll::Ready(Ok(out));
        }
        match this.clock.project() {
            ClockProj::Precise { sleep } => sleep.poll(cx).map(|()| Err(Elapsed)),
            ClockProj::Coarse { slot } => match slot {
                Some(held) if expired(*held, cx.waker()) => {
                    release(*held);
                    *slot = None;
                    Poll::Ready(Err(Elapsed))
                }
                Some(_) => Poll::Pending,
                None => {
                    *slot = hold(*this.at, cx.waker());
                    Poll::Pending
                }
            },
        }
    }
}

/// Keeps `at` in the lane's list, woken through `waker`.
fn hold(at: Instant, waker: &Waker) -> Option<usize> {
    LANE.with(|lane| {
        let mut lane = lane.borrow_mut();
        let slots = lane.as_mut()?;
        let entry = Entry { at, waker: waker.clone(), expired: false };
        Some(match slots.free.pop() {
            Some(i) => {
                slots.entries[i] = Some(entry);
                i
            }
            None => {
                slots.entries.push(Some(entry));
                slots.entries.len() - 1
            }
        })
    })
}

/// Whether slot `i` has expired; keeps its waker current while it has not.
fn expired(i: usize, waker: &Waker) -> bool {
    LANE.with(|lane| {
        let mut lane = lane.borrow_mut();
        let Some(entry) = lane.as_mut().and_then(|s| s.entries.get_mut(i)).and_then(Option::as_mut) else {
            return false;
        };
        if !entry.waker.will_wake(waker) {
            entry.waker = waker.clone();
        }
        entry.expired
    })
}

fn release(i: usize) {
    LANE.with(|lane| {
        if let Some(slots) = lane.borrow_mut().as_mut() {
            if let Some(entry) = slots.entries.get_mut(i) {
                if entry.take().is_some() {
                    slots.free.push(i);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane() -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        enable();
        runtime
    }

    #[test]
    fn a_far_deadline_on_a_lane_fires_at_the_tick_after_it_and_frees_its_slot() {
        lane().block_on(async {
            let at = Instant::now() + COARSE_FROM;
            let bounded = within(at, COARSE_FROM, std::future::pending::<()>());
            assert!(matches!(bounded.clock, Clock::Coarse { .. }));
            let bounded = tokio::spawn(bounded);
            tokio::task::yield_now().await;
            expire();
            tokio::task::yield_now().await;
            assert!(!bounded.is_finished(), "not before its deadline");
            // The tick after the deadline wakes it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            LANE.with(|lane| {
                for e in lane.borrow_mut().as_mut().unwrap().entries.iter_mut().flatten() {
                    e.at = Instant::now();
                }
            });
            expire();
            assert_eq!(bounded.await.unwrap(), Err(Elapsed));
            LANE.with(|lane| {
                let lane = lane.borrow();
                let slots = lane.as_ref().unwrap();
                assert!(slots.entries.iter().all(Option::is_none) && slots.free.len() == 1, "the slot is free again");
            });
        });
    }

    #[test]
    fn an_exchange_that_ends_first_keeps_nothing_and_a_near_deadline_is_precise() {
        lane().block_on(async {
            let done = within(Instant::now() + Duration::from_secs(60), Duration::from_secs(60), async {
                tokio::task::yield_now().await;
                7
            });
            assert_eq!(done.await, Ok(7));
            LANE.with(|lane| assert!(lane.borrow().as_ref().unwrap().entries.iter().all(Option::is_none)));
            let near = within(
                Instant::now() + Duration::from_millis(30),
                Duration::from_millis(30),
                std::future::pending::<()>(),
            );
            assert!(matches!(near.clock, Clock::Precise { .. }));
            let started = Instant::now();
            assert_eq!(near.await, Err(Elapsed));
            assert!(started.elapsed() < Duration::from_millis(500));
        });
    }

    #[test]
    fn off_the_lanes_every_deadline_is_a_timer() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let far = within(Instant::now() + Duration::from_secs(600), Duration::from_secs(600), async { 1 });
            assert!(matches!(far.clock, Clock::Precise { .. }));
            assert_eq!(far.await, Ok(1));
        });
    }
}
