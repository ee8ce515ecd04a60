//! `-target`: each thread runs its operations on a schedule, as YCSB's
//! client does: at `rate` operations per second, its `i`-th operation
//! starts no earlier than `start + i / rate`. A thread that falls behind
//! (an operation slower than the schedule) runs without waiting until it
//! has caught up, so the average rate holds. Waiting sleeps until shortly
//! before the start time and spins for the rest, because a sleep may
//! overshoot by tens of microseconds.

use std::time::{Duration, Instant};

/// Below this much time to wait, spin instead of sleeping.
const SPIN: Duration = Duration::from_micros(100);

/// One thread's schedule.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Seconds between two scheduled operations.
    interval_secs: f64,
    /// Operations scheduled so far.
    scheduled: u64,
}

impl Pacer {
    /// A schedule of `rate` operations per second from `start`; `None` for
    /// no schedule (a rate of 0: unthrottled).
    pub fn new(start: Instant, rate: f64) -> Option<Pacer> {
        (rate > 0.0).then(|| Pacer {
            start,
            interval_secs: 1.0 / rate,
            scheduled: 0,
        })
    }

    /// When the next operation is scheduled to start.
    pub fn next_start(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.scheduled as f64 * self.interval_secs)
    }

    /// Wait until the next operation's scheduled start and count it; returns
    /// the time the operation may start (now, or later when it waited).
    pub fn wait(&mut self) -> Instant {
        let due = self.next_start();
        self.scheduled += 1;
        let mut now = Instant::now();
        if now >= due {
            return now;
        }
        if due - now > SPIN {
            std::thread::sleep(due - now - SPIN);
        }
        while now < due {
            std::hint::spin_loop();
            now = Instant::now();
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rate_is_no_schedule() {
        assert!(Pacer::new(Instant::now(), 0.0).is_none());
    }

    #[test]
    fn operations_never_start_before_their_scheduled_time() {
        let start = Instant::now();
        let mut p = Pacer::new(start, 10_000.0).unwrap();
        for i in 0..50u32 {
            let began = p.wait();
            assert!(began >= start + Duration::from_micros(100) * i);
        }
        assert_eq!(p.next_start(), start + Duration::from_micros(5000));
    }
}
