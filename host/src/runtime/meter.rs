//! CPU time of one request: the time its guest future spends being polled.
//!
//! A guest runs only inside `poll`: its Wasm code and its host calls alike.
//! [`Metered`] adds up the wall time of every `poll` of the request's
//! future, so time spent waiting (for a timer, the network, a busy executor)
//! is not charged, and a slow host call is charged in full. The epoch
//! callback, which fires inside such a `poll` every
//! [`EPOCH_TICK`](crate::engine::EPOCH_TICK), reads [`CpuMeter::spent`]
//! (finished polls plus the one in progress) and traps once the budget is
//! gone.
//!
//! This is wall time while polled, not the thread's CPU time: a poll
//! descheduled by the OS is charged too. Reading `CLOCK_THREAD_CPUTIME_ID`
//! would need `unsafe` FFI; on a host not oversubscribed the two agree.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The CPU time one request has used.
#[derive(Debug)]
pub struct CpuMeter {
    origin: Instant,
    /// Nanoseconds of finished polls.
    spent: AtomicU64,
    /// When the poll in progress started, in nanoseconds after `origin`
    /// plus one; zero when not polling.
    entered: AtomicU64,
}

impl CpuMeter {
    /// A meter at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            spent: AtomicU64::new(0),
            entered: AtomicU64::new(0),
        })
    }

    /// Back to zero, for the next request of a warm instance.
    pub fn reset(&self) {
        self.entered.store(0, Ordering::Release);
        self.spent.store(0, Ordering::Release);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn enter(&self) {
        self.entered
            .store(self.now().saturating_add(1), Ordering::Release);
    }

    fn leave(&self) {
        let entered = self.entered.swap(0, Ordering::AcqRel);
        if entered > 0 {
            let elapsed = self.now().saturating_sub(entered - 1);
            self.spent.fetch_add(elapsed, Ordering::AcqRel);
        }
    }

    /// Time spent in polls so far, the one in progress included.
    pub fn spent(&self) -> Duration {
        let mut nanos = self.spent.load(Ordering::Acquire);
        let entered = self.entered.load(Ordering::Acquire);
        if entered > 0 {
            nanos = nanos.saturating_add(self.now().saturating_sub(entered - 1));
        }
        Duration::from_nanos(nanos)
    }
}

/// A future whose time in `poll` is charged to a [`CpuMeter`].
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F: Future> Metered<F> {
    /// `inner`, charging `meter`.
    pub fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Self {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Ends the charge even if the inner poll unwinds.
        struct Leave<'a>(&'a CpuMeter);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.leave();
            }
        }
        let this = &mut *self;
        this.meter.enter();
        let _leave = Leave(&this.meter);
        this.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_is_not_charged_and_busy_polls_are() {
        let meter = CpuMeter::new();
        let work = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            // Blocking inside a poll stands for a slow host call.
            std::thread::sleep(Duration::from_millis(60));
        };
        Metered::new(work, Arc::clone(&meter)).await;
        let spent = meter.spent();
        assert!(
            spent >= Duration::from_millis(60),
            "the blocking part must be charged, got {spent:?}"
        );
        assert!(
            spent < Duration::from_millis(140),
            "the sleep must not be charged, got {spent:?}"
        );
    }

    #[test]
    fn the_poll_in_progress_counts() {
        let meter = CpuMeter::new();
        meter.enter();
        std::thread::sleep(Duration::from_millis(20));
        assert!(meter.spent() >= Duration::from_millis(20));
        meter.leave();
        let after = meter.spent();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(meter.spent(), after, "nothing is charged between polls");
    }
}
