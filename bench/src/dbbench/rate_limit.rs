//! Rate limits shared by all the threads of a benchmark.
//!
//! `--benchmark_write_rate_limit`: one budget of bytes per second for all
//! the writing threads. mixgraph's `--sine_mix_rate`: one budget of
//! operations per second whose rate follows a sine, re-set every interval.
//! Each request is given the instant at which the units granted before it,
//! and its own, fit the rate; a thread that is ahead sleeps until then.
//! Idle time is not saved up beyond one second of units, so a pause is not
//! followed by an unlimited burst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::mixgraph::SineRate;

/// A shared schedule of units (bytes, operations) per second.
#[derive(Debug)]
pub struct RateLimiter {
    start: Instant,
    schedule: Mutex<Schedule>,
}

#[derive(Debug)]
struct Schedule {
    per_sec: f64,
    /// The instant, as an offset from `start`, by which all units granted
    /// so far may have been used.
    granted_until: Duration,
}

impl RateLimiter {
    /// A limiter of `per_sec` units per second (`None` when 0: no limit).
    pub fn new(per_sec: u64, start: Instant) -> Option<RateLimiter> {
        (per_sec > 0).then(|| RateLimiter::at(per_sec as f64, start))
    }

    fn at(per_sec: f64, start: Instant) -> RateLimiter {
        RateLimiter {
            start,
            schedule: Mutex::new(Schedule {
                per_sec,
                granted_until: Duration::ZERO,
            }),
        }
    }

    /// Wait until `units` more may be used.
    pub fn request(&self, units: u64) {
        let now = self.start.elapsed();
        let due = self.grant(units, now);
        if due > now {
            std::thread::sleep(due - now);
        }
    }

    /// From now on, `per_sec` units per second (positive).
    fn set_rate(&self, per_sec: f64) {
        self.schedule.lock().per_sec = per_sec;
    }

    /// Grant `units` at offset `now`: the offset at which they may be
    /// used, when the units granted before them and their own have taken
    /// their time at the rate.
    fn grant(&self, units: u64, now: Duration) -> Duration {
        let mut s = self.schedule.lock();
        // Idle time counts for at most one second of units.
        let floor = now.saturating_sub(Duration::from_secs(1));
        let from = s.granted_until.max(floor);
        s.granted_until = from + Duration::from_secs_f64(units as f64 / s.per_sec);
        s.granted_until.max(now)
    }
}

/// mixgraph's `--sine_mix_rate`: one operation at a time, at the rate the
/// sine gives for the current interval.
#[derive(Debug)]
pub struct SineLimiter {
    limiter: RateLimiter,
    sine: SineRate,
    /// The interval whose rate is set, plus one (0: none yet).
    interval: AtomicU64,
}

impl SineLimiter {
    /// The sine's schedule from `start`. Until the first interval with a
    /// positive rate, the first positive rate of the next thousand
    /// intervals holds (resolving the flags checked there is one).
    pub fn new(sine: SineRate, start: Instant) -> SineLimiter {
        let first = (0..1000)
            .find_map(|k| sine.rate_for_interval(k))
            .unwrap_or(1.0);
        SineLimiter {
            limiter: RateLimiter::at(first, start),
            sine,
            interval: AtomicU64::new(0),
        }
    }

    /// Wait until one more operation may start.
    pub fn request(&self) {
        self.follow(self.limiter.start.elapsed());
        self.limiter.request(1);
    }

    /// Set the rate of the interval `now` falls in, once per interval.
    fn follow(&self, now: Duration) {
        let k = now.as_millis() as u64 / self.sine.interval_ms;
        if self.interval.swap(k + 1, Ordering::AcqRel) != k + 1
            && let Some(rate) = self.sine.rate_for_interval(k)
        {
            self.limiter.set_rate(rate);
        }
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
        let l = RateLimiter::new(1000, Instant::now()).unwrap();
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
        assert!(RateLimiter::new(0, Instant::now()).is_none());
    }

    /// The rate follows the sine interval by interval: grants are spaced
    /// by 1/rate of the interval they fall in.
    #[test]
    fn a_sine_limiter_takes_each_interval_s_rate() {
        let sine = SineRate {
            a: 100.0,
            b: std::f64::consts::FRAC_PI_2,
            c: 0.0,
            d: 200.0,
            interval_ms: 1000,
            noise: 0.0,
        };
        // t = 0 s: 200 ops/s; t = 1 s: 300 ops/s; t = 2 s: 200 ops/s.
        for (k, want) in [(0, 200.0), (1, 300.0), (2, 200.0), (3, 100.0)] {
            let got = sine.rate_for_interval(k).unwrap();
            assert!((got - want).abs() < 1e-9, "interval {k}: {got}");
        }
        let l = SineLimiter::new(sine, Instant::now());
        // The spacing of grants at `at` once the idle credit (one second
        // of operations) is used up.
        let spacing = |at: Duration| {
            l.follow(at);
            let mut due = l.limiter.grant(1, at);
            for _ in 0..10_000 {
                if due > at {
                    break;
                }
                due = l.limiter.grant(1, at);
            }
            assert!(due > at, "the credit never ran out");
            l.limiter.grant(1, at) - due
        };
        let first = spacing(Duration::from_millis(10));
        let second = spacing(Duration::from_millis(1500));
        assert!(first.abs_diff(Duration::from_millis(5)) < Duration::from_micros(1));
        assert!(
            second.abs_diff(Duration::from_secs_f64(1.0 / 300.0)) < Duration::from_micros(1),
            "{second:?}"
        );
        // A rate at or below zero keeps the one before.
        let negative = SineRate { d: -500.0, ..sine };
        assert_eq!(negative.rate_for_interval(0), None);
    }

    #[test]
    fn noise_stays_within_its_band() {
        let sine = SineRate {
            a: 1000.0,
            b: 0.0,
            c: 0.0,
            d: 5000.0,
            interval_ms: 10,
            noise: 0.5,
        };
        let rates: Vec<f64> = (0..500)
            .map(|k| sine.rate_for_interval(k).unwrap())
            .collect();
        assert!(
            rates.iter().all(|r| (4750.0..=5250.0).contains(r)),
            "{rates:?}"
        );
        assert!(rates.iter().any(|r| *r < 4900.0) && rates.iter().any(|r| *r > 5100.0));
    }
}
