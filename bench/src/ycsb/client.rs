//! What YCSB's client does around each operation of a phase, whatever the
//! operation: the `-target` schedule ([`Pacer`]), the `maxexecutiontime`
//! deadline, YCSB's measurements, and the `-s` status thread.
//! [`run_threads`] runs a phase's worker threads with one [`ThreadClient`]
//! each and adds their measurements up.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Result;
use crate::report::OpKind;
use crate::threads::{join_all, panicked};
use crate::ycsb::measurements::{Measurements, Outcome};
use crate::ycsb::spec::WorkloadSpec;
use crate::ycsb::status::{self, StatusBoard};
use crate::ycsb::throttle::Pacer;

/// One worker thread's view of the client.
#[derive(Debug)]
pub struct ThreadClient<'a> {
    pacer: Option<Pacer>,
    deadline: Option<Instant>,
    measurements: Measurements,
    status: Option<&'a Mutex<Measurements>>,
}

impl ThreadClient<'_> {
    /// When the next operation starts: its scheduled time under `-target`
    /// (waiting for it), else `previous_end` (saves a clock read).
    pub fn start_op(&mut self, previous_end: Instant) -> Instant {
        match &mut self.pacer {
            Some(p) => p.wait(),
            None => previous_end,
        }
    }

    /// Measure an operation that ran from `began` to `end`; true when the
    /// phase has reached its `maxexecutiontime`.
    pub fn finish_op(
        &mut self,
        op: OpKind,
        outcome: Outcome,
        began: Instant,
        end: Instant,
    ) -> Result<bool> {
        let latency = end.saturating_duration_since(began);
        self.measurements.measure(op, outcome, latency)?;
        if let Some(s) = self.status {
            s.lock().measure(op, outcome, latency)?;
        }
        Ok(self.deadline.is_some_and(|d| end >= d))
    }

    /// This thread's measurements, when it is done.
    pub fn into_measurements(self) -> Measurements {
        self.measurements
    }
}

/// Run `threads` workers of a phase that started at `start` and has `todo`
/// operations in all: worker `t` runs `body(t, client)` and returns its
/// result with its client's measurements. Returns the results and the
/// measurements added up; the first error of any worker fails the phase.
pub fn run_threads<T: Send>(
    spec: &WorkloadSpec,
    threads: usize,
    start: Instant,
    todo: u64,
    body: impl Fn(usize, ThreadClient<'_>) -> Result<(T, Measurements)> + Sync,
) -> Result<(Vec<T>, Measurements)> {
    let board = spec.status.then(|| StatusBoard::new(threads));
    let deadline = (spec.maxexecutiontime_secs > 0)
        .then(|| start + Duration::from_secs(spec.maxexecutiontime_secs));
    let rate_per_thread = spec.target / threads as f64;
    let interval = Duration::from_secs(spec.status_interval_secs);
    let outputs = std::thread::scope(|scope| {
        let (running, done) = std::sync::mpsc::channel::<()>();
        let reporter = board.as_ref().map(|b| {
            scope.spawn(move || {
                status::report(b, done, start, interval, todo, &mut std::io::stderr())
            })
        });
        let body = &body;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let client = ThreadClient {
                    pacer: Pacer::new(start, rate_per_thread),
                    deadline,
                    measurements: Measurements::default(),
                    status: board.as_ref().and_then(|b| b.slot(t)),
                };
                scope.spawn(move || body(t, client))
            })
            .collect();
        let outputs = join_all(handles);
        drop(running);
        match reporter.map(|r| r.join()) {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(panicked()),
            _ => outputs,
        }
    })?;
    let mut all = Measurements::default();
    let mut results = Vec::with_capacity(outputs.len());
    for (r, m) in outputs {
        all.add(&m)?;
        results.push(r);
    }
    Ok((results, all))
}
