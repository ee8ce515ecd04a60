//! How a thread waits for the peer: park at once (the kernel wakes it), or
//! busy-poll for a bounded time first, as RDMA applications poll their
//! completion queues.
//!
//! A wake-up through the kernel costs tens of microseconds on a loaded
//! virtual machine — more than an RDMA round trip — so a transport that
//! parks cannot emulate a fast fabric. Busy-polling removes it at the price
//! of a core per waiting thread while it spins. A spinner also yields its
//! core every [`YIELD_EVERY`]: when the thread it waits for shares that core
//! (more runnable threads than cores), spinning through a whole budget
//! would only delay that thread — yielding hands the core over, and costs a
//! cheap system call when nobody else wants it.
//!
//! The default is [`PollMode::Park`]:
//! o3 nodes run background work (flushes, compactions) that needs those
//! cores, and on small machines spinning waiters would starve it; runs that
//! emulate RDMA turn polling on explicitly (`o3-transport-bench
//! --poll-spin-us`).

use std::time::{Duration, Instant};

/// How long a spinner polls before it yields its core once. Not much
/// shorter: a yield costs a few microseconds on a virtual machine, and with
/// a threshold of 2 µs each side's yields kept the other waiting past the
/// threshold, settling polled round trips at ~8 µs instead of ~0.4 µs.
pub const YIELD_EVERY: Duration = Duration::from_micros(10);

/// How a waiting thread waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PollMode {
    /// Sleep in the kernel until woken.
    #[default]
    Park,
    /// Spin for up to `spin` checking for the event, then park.
    BusyPoll { spin: Duration },
}

impl PollMode {
    /// Busy-poll for `spin` (zero means park).
    pub fn spinning(spin: Duration) -> Self {
        if spin.is_zero() {
            PollMode::Park
        } else {
            PollMode::BusyPoll { spin }
        }
    }

    /// The busy-poll budget (zero when parking).
    pub fn spin(self) -> Duration {
        match self {
            PollMode::Park => Duration::ZERO,
            PollMode::BusyPoll { spin } => spin,
        }
    }

    /// Call `ready` until it returns `Some` or the spin budget (also capped
    /// by `deadline`) is used; `None` means: park now.
    pub fn spin_until<T>(
        self,
        deadline: Instant,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let budget = self.spin();
        if budget.is_zero() {
            return None;
        }
        let started = Instant::now();
        let end = (started + budget).min(deadline);
        let mut next_yield = started + YIELD_EVERY;
        loop {
            for _ in 0..16 {
                if let Some(value) = ready() {
                    return Some(value);
                }
                std::hint::spin_loop();
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            if now >= next_yield {
                std::thread::yield_now();
                next_yield = Instant::now() + YIELD_EVERY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parking_never_polls_and_polling_stops_at_the_first_hit() {
        let mut calls = 0;
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            PollMode::Park.spin_until(far, || {
                calls += 1;
                Some(())
            }),
            None
        );
        assert_eq!(calls, 0);
        let mode = PollMode::spinning(Duration::from_secs(60));
        assert_eq!(
            mode.spin_until(far, || {
                calls += 1;
                (calls == 3).then_some(calls)
            }),
            Some(3)
        );
        assert_eq!(PollMode::spinning(Duration::ZERO), PollMode::Park);
        // A deadline in the past bounds the spin however large the budget.
        let past = Instant::now();
        assert_eq!(mode.spin_until(past, || None::<()>), None);
    }
}
