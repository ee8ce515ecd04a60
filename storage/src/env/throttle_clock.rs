//! The time a [`super::ThrottledStorage`] waits on: real
//! ([`SystemThrottleClock`]) or virtual ([`VirtualThrottleClock`], for
//! tests and simulators that check what a run paid without waiting for it).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time a [`super::ThrottledStorage`] reads and waits on, as an offset
/// from the clock's own origin.
pub trait ThrottleClock: Send + Sync + fmt::Debug {
    /// Time since the clock's origin.
    fn now(&self) -> Duration;
    /// Return no earlier than `deadline` (an offset from the origin).
    fn wait_until(&self, deadline: Duration);
}

/// Real time: waits block the calling thread.
#[derive(Debug)]
pub struct SystemThrottleClock {
    origin: Instant,
}

impl SystemThrottleClock {
    pub fn new() -> Self {
        SystemThrottleClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemThrottleClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ThrottleClock for SystemThrottleClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Sleep while the deadline is far; spin the last stretch, because a
    /// sleep overshoots by tens of microseconds, as much as a fast network's
    /// whole latency.
    fn wait_until(&self, deadline: Duration) {
        const SPIN: Duration = Duration::from_micros(100);
        loop {
            let now = self.now();
            if now >= deadline {
                return;
            }
            let left = deadline - now;
            if left > SPIN {
                std::thread::sleep(left - SPIN);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Virtual time: waiting moves the clock to the deadline at once, so the
/// clock reads the total time the channel would have made its users wait
/// (for one thread at a time: the sum of its waits).
#[derive(Debug, Default)]
pub struct VirtualThrottleClock {
    now_nanos: AtomicU64,
}

impl VirtualThrottleClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ThrottleClock for VirtualThrottleClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos.load(Ordering::SeqCst))
    }

    fn wait_until(&self, deadline: Duration) {
        let nanos = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        self.now_nanos.fetch_max(nanos, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_never_returns_before_the_deadline() {
        let clock = SystemThrottleClock::new();
        for wait in [
            Duration::ZERO,
            Duration::from_micros(30),
            Duration::from_millis(2),
        ] {
            let deadline = clock.now() + wait;
            clock.wait_until(deadline);
            assert!(
                clock.now() >= deadline,
                "returned early for a {wait:?} wait"
            );
        }
    }

    #[test]
    fn waiting_on_virtual_time_moves_it_forward_only() {
        let clock = VirtualThrottleClock::new();
        clock.wait_until(Duration::from_millis(5));
        assert_eq!(clock.now(), Duration::from_millis(5));
        clock.wait_until(Duration::from_millis(2));
        assert_eq!(clock.now(), Duration::from_millis(5));
    }
}
