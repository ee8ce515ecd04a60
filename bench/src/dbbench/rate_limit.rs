//! `--benchmark_write_rate_limit`: one budget of bytes per second shared by
//! all the writing threads of a benchmark. Each write is given the instant
//! at which the bytes granted before it, and its own, fit the rate since the
//! benchmark started; a thread that is ahead sleeps until then. Idle time
//! is not saved up beyond one second of bytes, so a pause is not followed by
//! an unlimited burst.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The shared schedule of a write rate limit.
#[derive(Debug)]
pub struct WriteRateLimiter {
    bytes_per_sec: u64,
    start: Instant,
    /// The instant, as an offset from `start`, by which all bytes granted
    /// so far may have been written.
    granted_until: Mutex<Duration>,
}

impl WriteRateLimiter {
    /// A limiter of `bytes_per_sec` (`None` when 0: no limit).
    pub fn new(bytes_per_sec: u64, start: Instant) -> Option<WriteRateLimiter> {
        (bytes_per_sec > 0).then(|| WriteRateLimiter {
            bytes_per_sec,
            start,
            granted_until: Mutex::new(Duration::ZERO),
        })
    }

    /// Wait until `bytes` more may be written.
    pub fn request(&self, bytes: u64) {
        let now = self.start.elapsed();
        let due = self.grant(bytes, now);
        if due > now {
            std::thread::sleep(due - now);
        }
    }

    /// Grant `bytes` at offset `now`: the offset at which they may be
    /// written, when the bytes granted before them and their own have
    /// taken their time at the rate.
    fn grant(&self, bytes: u64, now: Duration) -> Duration {
        let mut until = self.granted_until.lock();
        // Idle time counts for at most one second of bytes.
        let floor = now.saturating_sub(Duration::from_secs(1));
        let from = (*until).max(floor);
        *until = from + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        (*until).max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a clock that never advances, grants are spaced by bytes/rate
    /// (after the first second's credit), so over any span the bytes
    /// granted match the rate.
    #[test]
    fn grants_follow_the_rate_and_idle_credit_is_capped() {
        let l = WriteRateLimiter::new(1000, Instant::now()).unwrap();
        // At t = 5 s after an idle start: one second of credit, no more.
        let now = Duration::from_secs(5);
        let dues: Vec<Duration> = (0..3000).map(|_| l.grant(10, now)).collect();
        // The first 100 writes (1000 bytes) use the credit: due at once.
        assert!(dues[..100].iter().all(|&d| d == now));
        // Then 10 bytes per 10 ms: write i is due at 4 s + 10 ms * (i + 1).
        for (i, d) in dues.iter().enumerate().skip(100) {
            let expected = Duration::from_secs(4) + Duration::from_millis(10 * (i as u64 + 1));
            assert!(
                d.abs_diff(expected) < Duration::from_micros(1),
                "{i}: {d:?}"
            );
        }
        // 30 000 bytes at 1000 B/s end 30 s after the credit's start.
        let last = *dues.last().unwrap();
        assert!(last.abs_diff(Duration::from_secs(34)) < Duration::from_millis(1));
        assert!(WriteRateLimiter::new(0, Instant::now()).is_none());
    }
}
