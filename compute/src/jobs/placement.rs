//! Placing a claimed compaction: on this compute node or on the
//! compaction service, by a cost model.
//!
//! The executor of a service offers an estimate for each job ([`RemoteOffer`]):
//! how long the job would wait in the service's queue, the fixed cost of
//! the round trip (submitting the job and collecting its result: the
//! "transfer", since agents read inputs and write outputs on the shared
//! storage themselves), and the speed its agents compacted at lately
//! (input bytes per second of execution, storage I/O included). The local
//! side is estimated here from this node's own history (the same measure
//! over local compactions) slowed down by how busy this process keeps its
//! cores. Then:
//! - the service unreachable, or every agent slot taken with jobs queued
//!   → local;
//! - this node busy (CPU at least `busy_threshold` of its cores) and the
//!   service faster → remote;
//! - the service clearly faster even though this node is not busy (by a
//!   quarter) → remote (jobs already running here count: a job placed here
//!   would share the node's storage and cores with them);
//! - otherwise local: the estimate says local wins.
//!
//! Before either side has history, the other side's speed stands in for it
//! (and a default when neither has any), so the first decisions follow the
//! load alone. Every decision is counted by reason ([`PlacementReason`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::stats::PlacementReason;

/// How compactions are placed when a compaction service is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlacementPolicy {
    /// By the cost model (the default).
    #[default]
    Auto,
    /// On the service whenever it is reachable and has a free slot (for
    /// experiments that measure the service itself).
    PreferRemote,
    /// Always here; the service is connected but unused.
    Local,
}

impl std::str::FromStr for PlacementPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(PlacementPolicy::Auto),
            "remote" | "prefer-remote" => Ok(PlacementPolicy::PreferRemote),
            "local" => Ok(PlacementPolicy::Local),
            other => Err(format!(
                "unknown placement policy {other:?} (expected auto, remote or local)"
            )),
        }
    }
}

/// What the engine knows about a compaction when it places it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobSummary {
    pub input_bytes: u64,
    /// The level the compaction was picked for (its smallest input level).
    pub level: u32,
    /// The picker's urgency for that level.
    pub score: f64,
}

/// What an executor can offer a job.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteOffer {
    /// No cost model: every job goes to the executor (test executors).
    Unconditional,
    /// The service cannot be reached now (the reason, for the logs).
    Unreachable(String),
    /// Every agent slot is taken and jobs are waiting.
    Saturated,
    Estimate(RemoteEstimate),
}

/// The service's side of the cost model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteEstimate {
    /// Expected time in the queue before an agent starts the job.
    pub queue_wait: Duration,
    /// Submitting and collecting: the observed round trip beyond queue
    /// wait and execution.
    pub overhead: Duration,
    /// Input bytes per second the agent that would run it compacted at
    /// lately; `None` before any agent finished a job.
    pub bytes_per_sec: Option<f64>,
}

/// Where a job goes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Local(PlacementReason),
    Remote(PlacementReason),
}

/// Speed assumed when neither side has measured anything yet.
const DEFAULT_BYTES_PER_SEC: f64 = 64e6;

/// How much faster the service must be to win while this node is idle.
const IDLE_MARGIN: f64 = 1.25;

/// The engine's half of placement: its own history, its CPU use, the policy
/// and the counters.
#[derive(Debug)]
pub(crate) struct Placer {
    policy: PlacementPolicy,
    busy_threshold: f64,
    local_rate: Mutex<Option<f64>>,
    /// Input bytes per second of recent local flushes.
    local_flush_rate: Mutex<Option<f64>>,
    cpu: Mutex<CpuSampler>,
    counts: [AtomicU64; PlacementReason::ALL.len()],
}

impl Placer {
    pub(crate) fn new(policy: PlacementPolicy, busy_threshold: f64) -> Placer {
        Placer {
            policy,
            busy_threshold,
            local_rate: Mutex::new(None),
            local_flush_rate: Mutex::new(None),
            cpu: Mutex::new(CpuSampler::new()),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Place `job` given the executor's `offer` and the number of other
    /// jobs running in this process now, and count the decision.
    pub(crate) fn place(
        &self,
        job: &JobSummary,
        offer: &RemoteOffer,
        running_here: usize,
    ) -> Placement {
        let busy = self.cpu.lock().busy();
        let placement = decide(
            self.policy,
            self.busy_threshold,
            job,
            offer,
            Local {
                bytes_per_sec: *self.local_rate.lock(),
                busy,
                running: running_here,
            },
        );
        if let RemoteOffer::Unreachable(why) = offer {
            tracing::debug!("compaction placed locally: the service is unreachable ({why})");
        }
        self.count(placement);
        placement
    }

    /// Count a decision made without the cost model (a retry after the
    /// service failed the job, a flush).
    pub(crate) fn count(&self, placement: Placement) {
        let (Placement::Local(reason) | Placement::Remote(reason)) = placement;
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A local compaction of `input_bytes` took `elapsed`: fold it into the
    /// local speed (a moving average).
    pub(crate) fn note_local(&self, input_bytes: u64, elapsed: Duration) {
        if let Some(rate) = bytes_per_sec(input_bytes, elapsed) {
            let mut r = self.local_rate.lock();
            *r = Some(ewma(*r, rate));
        }
    }

    /// A local flush of `input_bytes` (memtable or image bytes, images
    /// read back over the link included) took `elapsed`.
    pub(crate) fn note_local_flush(&self, input_bytes: u64, elapsed: Duration) {
        if let Some(rate) = bytes_per_sec(input_bytes, elapsed) {
            let mut r = self.local_flush_rate.lock();
            *r = Some(ewma(*r, rate));
        }
    }

    /// The speed of a flush here: measured on flushes, else the
    /// compactions' speed. Flushes share this node's storage with its
    /// compactions, so it is what a flush placed here will see.
    pub(crate) fn local_flush_bytes_per_sec(&self) -> Option<f64> {
        (*self.local_flush_rate.lock()).or_else(|| self.local_bytes_per_sec())
    }

    /// The decisions so far, by reason (every reason listed).
    pub(crate) fn decisions(&self) -> Vec<(PlacementReason, u64)> {
        PlacementReason::ALL
            .iter()
            .map(|r| (*r, self.counts[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// The local speed measured so far (input bytes per second).
    pub(crate) fn local_bytes_per_sec(&self) -> Option<f64> {
        *self.local_rate.lock()
    }
}

/// This node's side of the cost model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Local {
    /// Input bytes per second of recent local compactions.
    pub bytes_per_sec: Option<f64>,
    /// The fraction of this process's cores in use.
    pub busy: f64,
    /// Other jobs (flushes, compactions) running in this process: a job
    /// placed here shares the node's storage and cores with them.
    pub running: usize,
}

/// The cost model itself, free of clocks and counters so that it can be
/// tested with any inputs.
pub(crate) fn decide(
    policy: PlacementPolicy,
    busy_threshold: f64,
    job: &JobSummary,
    offer: &RemoteOffer,
    here: Local,
) -> Placement {
    use PlacementReason as R;
    let estimate = match offer {
        RemoteOffer::Unconditional => return Placement::Remote(R::RemoteUnconditional),
        _ if policy == PlacementPolicy::Local => return Placement::Local(R::LocalPolicy),
        RemoteOffer::Unreachable(_) => return Placement::Local(R::LocalUnreachable),
        RemoteOffer::Saturated => return Placement::Local(R::LocalSaturated),
        RemoteOffer::Estimate(e) => e,
    };
    if policy == PlacementPolicy::PreferRemote {
        return Placement::Remote(R::RemotePreferred);
    }
    let (local, remote) = estimates(job, estimate, here);
    if here.busy >= busy_threshold && remote < local {
        Placement::Remote(R::RemoteBusyAndFaster)
    } else if remote.mul_f64(IDLE_MARGIN) < local {
        Placement::Remote(R::RemoteFaster)
    } else {
        Placement::Local(R::LocalEstimate)
    }
}

/// Estimated completion (local, remote) of `job`.
fn estimates(job: &JobSummary, remote: &RemoteEstimate, here: Local) -> (Duration, Duration) {
    let remote_rate = remote
        .bytes_per_sec
        .or(here.bytes_per_sec)
        .unwrap_or(DEFAULT_BYTES_PER_SEC);
    let local_rate = here.bytes_per_sec.unwrap_or(remote_rate);
    let bytes = job.input_bytes as f64;
    // A busy node lends a compaction only what its other work leaves (at
    // least a fifth of a core, however busy it looks), and the jobs already
    // running here share the node's storage and cores with it.
    let share = (1.0 - here.busy).max(0.2) / (1 + here.running) as f64;
    let local = Duration::from_secs_f64(bytes / local_rate / share);
    let remote = remote.queue_wait + remote.overhead + Duration::from_secs_f64(bytes / remote_rate);
    (local, remote)
}

fn bytes_per_sec(bytes: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (bytes > 0 && secs > 0.0).then(|| bytes as f64 / secs)
}

/// A moving average that weighs the newest sample by a quarter.
pub(crate) fn ewma(previous: Option<f64>, sample: f64) -> f64 {
    match previous {
        Some(p) => 0.75 * p + 0.25 * sample,
        None => sample,
    }
}

/// The fraction of this process's cores its threads kept busy, over the
/// last sampling interval (at least 100 ms; the previous figure is kept in
/// between, so placing a burst of jobs costs one `getrusage` call).
#[derive(Debug)]
struct CpuSampler {
    cores: f64,
    at: Instant,
    cpu: Duration,
    busy: f64,
}

const CPU_SAMPLE: Duration = Duration::from_millis(100);

impl CpuSampler {
    fn new() -> CpuSampler {
        CpuSampler {
            // Honours the affinity mask (`taskset`).
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            at: Instant::now(),
            cpu: process_cpu_time(),
            busy: 0.0,
        }
    }

    fn busy(&mut self) -> f64 {
        let now = Instant::now();
        let wall = now.duration_since(self.at);
        if wall >= CPU_SAMPLE {
            let cpu = process_cpu_time();
            let used = cpu.saturating_sub(self.cpu).as_secs_f64();
            self.busy = (used / wall.as_secs_f64() / self.cores).clamp(0.0, 1.0);
            self.at = now;
            self.cpu = cpu;
        }
        self.busy
    }
}

/// User plus system CPU time of this process so far.
fn process_cpu_time() -> Duration {
    // SAFETY: `getrusage` writes into the zeroed struct it is given and
    // nothing else; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: JobSummary = JobSummary {
        input_bytes: 64 << 20,
        level: 0,
        score: 1.5,
    };

    fn offer(queue_ms: u64, rate: Option<f64>) -> RemoteOffer {
        RemoteOffer::Estimate(RemoteEstimate {
            queue_wait: Duration::from_millis(queue_ms),
            overhead: Duration::from_millis(2),
            bytes_per_sec: rate,
        })
    }

    fn here(bytes_per_sec: Option<f64>, busy: f64) -> Local {
        Local {
            bytes_per_sec,
            busy,
            running: 0,
        }
    }

    fn auto(offer: &RemoteOffer, local_rate: Option<f64>, busy: f64) -> Placement {
        decide(
            PlacementPolicy::Auto,
            0.5,
            &JOB,
            offer,
            here(local_rate, busy),
        )
    }

    #[test]
    fn a_busy_node_sends_work_to_an_agent_that_is_as_fast() {
        let o = offer(0, Some(100e6));
        assert_eq!(
            auto(&o, Some(100e6), 0.9),
            Placement::Remote(PlacementReason::RemoteBusyAndFaster)
        );
        // Idle, the same speeds keep it here: the round trip costs extra.
        assert_eq!(
            auto(&o, Some(100e6), 0.0),
            Placement::Local(PlacementReason::LocalEstimate)
        );
    }

    #[test]
    fn an_idle_node_uses_the_service_only_when_it_is_clearly_faster() {
        assert_eq!(
            auto(&offer(0, Some(400e6)), Some(100e6), 0.0),
            Placement::Remote(PlacementReason::RemoteFaster)
        );
        assert_eq!(
            auto(&offer(0, Some(110e6)), Some(100e6), 0.0),
            Placement::Local(PlacementReason::LocalEstimate)
        );
    }

    #[test]
    fn jobs_already_running_here_make_an_idle_node_send_work_out() {
        let o = offer(0, Some(100e6));
        let busy_with = |running| Local {
            bytes_per_sec: Some(100e6),
            busy: 0.1,
            running,
        };
        assert_eq!(
            decide(PlacementPolicy::Auto, 0.5, &JOB, &o, busy_with(0)),
            Placement::Local(PlacementReason::LocalEstimate)
        );
        assert_eq!(
            decide(PlacementPolicy::Auto, 0.5, &JOB, &o, busy_with(1)),
            Placement::Remote(PlacementReason::RemoteFaster)
        );
    }

    #[test]
    fn a_long_queue_keeps_even_a_busy_node_local() {
        // 64 MiB at 100 MB/s is ~0.67 s here at 90% busy clamped to a
        // fifth of a core: ~3.4 s; a 10 s queue loses.
        assert_eq!(
            auto(&offer(10_000, Some(100e6)), Some(100e6), 0.9),
            Placement::Local(PlacementReason::LocalEstimate)
        );
    }

    #[test]
    fn unreachable_saturated_and_policies() {
        let down = RemoteOffer::Unreachable("connection refused".into());
        assert_eq!(
            auto(&down, None, 1.0),
            Placement::Local(PlacementReason::LocalUnreachable)
        );
        assert_eq!(
            auto(&RemoteOffer::Saturated, None, 1.0),
            Placement::Local(PlacementReason::LocalSaturated)
        );
        let any = offer(0, None);
        assert_eq!(
            decide(PlacementPolicy::Local, 0.5, &JOB, &any, here(None, 1.0)),
            Placement::Local(PlacementReason::LocalPolicy)
        );
        assert_eq!(
            decide(
                PlacementPolicy::PreferRemote,
                0.5,
                &JOB,
                &any,
                here(None, 0.0)
            ),
            Placement::Remote(PlacementReason::RemotePreferred)
        );
        assert_eq!(
            decide(
                PlacementPolicy::PreferRemote,
                0.5,
                &JOB,
                &down,
                here(None, 0.0)
            ),
            Placement::Local(PlacementReason::LocalUnreachable)
        );
        assert_eq!(
            auto(&RemoteOffer::Unconditional, None, 0.0),
            Placement::Remote(PlacementReason::RemoteUnconditional)
        );
    }

    #[test]
    fn without_history_either_side_stands_in_for_the_other() {
        // No local history: the agents' speed is assumed here too, so only
        // the load decides.
        assert_eq!(
            auto(&offer(0, Some(50e6)), None, 0.95),
            Placement::Remote(PlacementReason::RemoteBusyAndFaster)
        );
        assert_eq!(
            auto(&offer(0, None), None, 0.0),
            Placement::Local(PlacementReason::LocalEstimate)
        );
    }

    #[test]
    fn the_placer_counts_every_decision_by_reason() {
        let p = Placer::new(PlacementPolicy::Auto, 0.5);
        p.place(&JOB, &RemoteOffer::Saturated, 0);
        p.place(&JOB, &RemoteOffer::Saturated, 0);
        p.count(Placement::Local(PlacementReason::LocalFlush));
        let d = p.decisions();
        assert_eq!(d.len(), PlacementReason::ALL.len());
        let of = |r| d.iter().find(|(x, _)| *x == r).map(|(_, n)| *n);
        assert_eq!(of(PlacementReason::LocalSaturated), Some(2));
        assert_eq!(of(PlacementReason::LocalFlush), Some(1));
        assert_eq!(of(PlacementReason::RemoteFaster), Some(0));
    }

    #[test]
    fn local_history_is_a_moving_average() {
        let p = Placer::new(PlacementPolicy::Auto, 0.5);
        assert_eq!(p.local_bytes_per_sec(), None);
        p.note_local(100, Duration::from_secs(1));
        assert_eq!(p.local_bytes_per_sec(), Some(100.0));
        p.note_local(500, Duration::from_secs(1));
        assert_eq!(p.local_bytes_per_sec(), Some(200.0));
        p.note_local(0, Duration::from_secs(1));
        assert_eq!(p.local_bytes_per_sec(), Some(200.0));
    }

    #[test]
    fn a_flush_here_is_estimated_at_the_flushes_speed_once_measured() {
        let p = Placer::new(PlacementPolicy::Auto, 0.5);
        assert_eq!(p.local_flush_bytes_per_sec(), None);
        // Before any flush ran here, the compactions' speed stands in.
        p.note_local(300, Duration::from_secs(1));
        assert_eq!(p.local_flush_bytes_per_sec(), Some(300.0));
        p.note_local_flush(100, Duration::from_secs(1));
        assert_eq!(p.local_flush_bytes_per_sec(), Some(100.0));
        // The compactions' speed is their own.
        assert_eq!(p.local_bytes_per_sec(), Some(300.0));
    }
}
