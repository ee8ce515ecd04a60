//! `-s`: a status line on stderr every `status.interval` seconds while a
//! phase runs, and one when it ends, in the shape of YCSB's status thread:
//!
//! ```text
//! 2026-11-29 14:30:07:123 10 sec: 499871 operations; 49987.1 current ops/sec; est completion in 10 seconds [READ: Count=250012, Max=..., Min=..., Avg=..., 90=..., 99=..., 99.9=..., 99.99=...] [UPDATE: ...]
//! ```
//!
//! The timestamp is UTC (YCSB prints local time in the same format). Each
//! worker thread records its operations into its own slot of a
//! [`StatusBoard`] as well; the status thread takes the slots' contents each
//! interval, so the bracketed figures cover the last interval only.

use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::Result;
use crate::ycsb::measurements::{Measurements, two_decimals};

/// The operations each worker thread measured since the last status line.
#[derive(Debug)]
pub struct StatusBoard {
    slots: Vec<Mutex<Measurements>>,
}

impl StatusBoard {
    pub fn new(threads: usize) -> StatusBoard {
        StatusBoard {
            slots: (0..threads).map(|_| Mutex::default()).collect(),
        }
    }

    /// Thread `t`'s slot.
    pub fn slot(&self, t: usize) -> Option<&Mutex<Measurements>> {
        self.slots.get(t)
    }

    /// Everything measured since the last call, all threads together.
    fn take(&self) -> Result<Measurements> {
        let mut all = Measurements::default();
        for s in &self.slots {
            let taken = std::mem::take(&mut *s.lock());
            all.add(&taken)?;
        }
        Ok(all)
    }
}

/// Print a status line to `out` every `interval` from `start` until `done`
/// is disconnected, then a last one. `todo` is the phase's operation count
/// (for the completion estimate).
pub fn report(
    board: &StatusBoard,
    done: Receiver<()>,
    start: Instant,
    interval: Duration,
    todo: u64,
    out: &mut impl Write,
) -> Result<()> {
    let (mut total, mut last_ops, mut last_at) = (0u64, 0u64, start);
    let mut next = start + interval;
    loop {
        let finished = match done.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        let now = Instant::now();
        let interval_ops = board.take()?;
        total += interval_ops.operations();
        let line = StatusLine {
            elapsed: now - start,
            total,
            current_ops_per_sec: (total - last_ops) as f64
                / (now - last_at).as_secs_f64().max(1e-9),
            remaining: todo.saturating_sub(total),
            summary: interval_ops.summary(),
        };
        // A closed stderr must not stop the benchmark.
        let _ = writeln!(out, "{}", line.format(SystemTime::now()));
        if finished {
            return Ok(());
        }
        (last_ops, last_at) = (total, now);
        while next <= now {
            next += interval;
        }
    }
}

/// The figures of one status line.
struct StatusLine {
    elapsed: Duration,
    total: u64,
    current_ops_per_sec: f64,
    remaining: u64,
    summary: String,
}

impl StatusLine {
    fn format(&self, at: SystemTime) -> String {
        let mut s = format!(
            "{} {} sec: {} operations; ",
            timestamp(at),
            self.elapsed.as_secs(),
            self.total
        );
        if self.total != 0 {
            s.push_str(&two_decimals(self.current_ops_per_sec));
            s.push_str(" current ops/sec; ");
        }
        if self.remaining != 0 && self.total != 0 {
            let rate = self.total as f64 / self.elapsed.as_secs_f64().max(1e-9);
            let secs = (self.remaining as f64 / rate).ceil() as u64;
            s.push_str("est completion in ");
            s.push_str(&remaining(secs));
        }
        s.push_str(&self.summary);
        s
    }
}

/// `secs` as YCSB words it: days, hours, minutes (under a day), or seconds
/// (under a minute), each followed by a space.
fn remaining(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    let mut s = String::new();
    let mut unit = |n: u64, one: &str| {
        if n > 0 {
            s.push_str(&format!("{n} {one}{} ", if n == 1 { "" } else { "s" }));
        }
    };
    unit(days, "day");
    unit(hours, "hour");
    if days == 0 {
        unit(minutes, "minute");
    }
    if secs < 60 {
        s.push_str(&format!(
            "{secs} second{} ",
            if secs == 1 { "" } else { "s" }
        ));
    }
    s
}

/// `yyyy-MM-dd HH:mm:ss:SSS` in UTC.
fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}:{:03}",
        t / 3_600,
        t % 3_600 / 60,
        t % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::OpKind;
    use crate::ycsb::measurements::Outcome;

    #[test]
    fn timestamps_are_ycsb_shaped_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(timestamp(at), "2024-02-29 12:34:56:789");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00:000");
    }

    #[test]
    fn remaining_time_reads_like_ycsb() {
        assert_eq!(remaining(1), "1 second ");
        assert_eq!(remaining(59), "59 seconds ");
        assert_eq!(remaining(61), "1 minute ");
        assert_eq!(remaining(7_260), "2 hours 1 minute ");
        assert_eq!(remaining(90_000), "1 day 1 hour ");
    }

    #[test]
    fn a_line_has_ops_rate_estimate_and_summary() {
        let mut m = Measurements::default();
        m.measure(OpKind::Read, Outcome::Ok, Duration::from_micros(12))
            .unwrap();
        let line = StatusLine {
            elapsed: Duration::from_secs(10),
            total: 500,
            current_ops_per_sec: 50.0,
            remaining: 500,
            summary: m.summary(),
        }
        .format(UNIX_EPOCH);
        assert_eq!(
            line,
            "1970-01-01 00:00:00:000 10 sec: 500 operations; 50 current ops/sec; \
             est completion in 10 seconds [READ: Count=1, Max=12, Min=12, Avg=12, 90=12, 99=12, 99.9=12, 99.99=12] "
        );
    }

    #[test]
    fn the_reporter_prints_a_last_line_when_the_phase_ends() {
        let board = StatusBoard::new(2);
        if let Some(s) = board.slot(1) {
            s.lock()
                .measure(OpKind::Update, Outcome::Ok, Duration::from_micros(3))
                .unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        drop(tx);
        let mut out = Vec::new();
        report(
            &board,
            rx,
            Instant::now(),
            Duration::from_secs(10),
            1,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" sec: 1 operations; "), "{text}");
        assert!(text.contains("[UPDATE: Count=1,"), "{text}");
    }
}
