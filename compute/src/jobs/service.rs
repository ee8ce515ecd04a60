//! The compaction service as an [`Executor`]: compactions placed remotely
//! are submitted to an `o3-csa` scheduler, which runs them on its agents;
//! their results come back here for installation (fenced by token, as
//! every result).
//!
//! A runtime of two threads of its own does the talking, so no compaction
//! thread ever waits on the network: `submit` hands the job to a task that
//! submits it and long-polls for its outcome (`Await`), then reports
//! through the job's completion.
//!
//! The connection is kept by a task beside them. Until the scheduler
//! answers (and whenever it stops answering) the executor offers nothing
//! ([`RemoteOffer::Unreachable`]): the database compacts locally and the
//! task keeps trying, every [`RECONNECT`]. Connected, it refreshes the
//! service's load every [`LOAD_REFRESH`]; placement reads the last figures.
//! A scheduler that restarted has forgotten this tenant and its tickets: the
//! task registers again, and each job waiting on a forgotten ticket is
//! reported lost, so the engine runs it again here with fresh file numbers
//! (its earlier attempt can never install: see `jobs::registry`).
//!
//! A job the service gives back (every try failed) is reported as
//! [`JobError::NodeUnavailable`]: the engine's retry then runs it locally.
//!
//! Flushes ([`FlushPlacement`]): a flush whose images are all on the memory
//! node (memtable offloading) may be sent too, naming where each image
//! lies; the scheduler runs it on that memory node's flush executor (no
//! image moves) or on a plain agent (which reads the images with one-sided
//! reads). A flush with an image still in local memory, or while the
//! service is unreachable or has no executor for it, runs here; so does
//! one the service gives back. The images stay on the memory node until
//! the result is installed (the job holds them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use o3_csa::client::{JobStatus, Load, RemoteRun, SchedulerClient, TenantSession};
use o3_storage::job::{CompactionJob, JobError};
use o3_storage::{Error, Result};
use o3_transport::control::ClusterToken;
use o3_transport::control::proto::csa::v1 as pb;
use parking_lot::Mutex;

use super::executor::{Completion, Executor, FlushWork, Job, LocalLoad};
use super::placement::{JobSummary, PlacementPolicy, RemoteEstimate, RemoteOffer, ewma};
use crate::stats::PlacementStats;
use flush::FlushCounters;

mod flush;

/// How a database uses a compaction service ([`crate::DbOptions::compaction_service`]).
#[derive(Clone, Debug)]
pub struct CompactionServiceOptions {
    /// The scheduler's control-plane address, `host:port`.
    pub scheduler: String,
    pub token: ClusterToken,
    /// This database's name at the scheduler (stable across restarts);
    /// by default its directory.
    pub tenant: Option<String>,
    /// Higher is served first among equally urgent jobs, with a larger
    /// share of the agents.
    pub priority: u32,
    pub policy: PlacementPolicy,
    /// The fraction of its cores this process must keep busy before a job
    /// the service would finish sooner is sent there (the cost model's
    /// "busy").
    pub busy_threshold: f64,
    /// How many agents a job may be given to before it comes back here;
    /// each try writes its own slice of the job's file numbers.
    pub max_tries: u32,
    /// Bound on connecting and on each call that is not a long-poll.
    pub timeout: Duration,
    /// A job still queued after this long is withdrawn and run here (the
    /// service's agents are gone or busy with other work).
    pub max_queue_wait: Duration,
    /// Where flushes of offloaded images run; `Auto` by default.
    pub flush: FlushPlacement,
}

/// Where flushes run while a compaction service is configured. Only a
/// flush whose images are all on the memory node (memtable offloading)
/// can leave; any other runs here whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushPlacement {
    /// Every flush runs on this compute node (reading offloaded images back).
    Local,
    /// On the flush executor of the memory node holding the images, when
    /// it is registered with the scheduler; else here.
    Memnode,
    /// On a plain agent, which reads the images from the memory node;
    /// here when the service has no healthy agent.
    Agent,
    /// Where the estimated completion is earliest (`jobs::flush_placement`:
    /// queue wait, transfer over the link, observed speeds); here when the
    /// service has no executor for it.
    #[default]
    Auto,
}

impl CompactionServiceOptions {
    /// A service at `scheduler` with the defaults: automatic placement,
    /// busy at half the cores, three tries, 2 s calls.
    pub fn new(scheduler: impl Into<String>, token: ClusterToken) -> CompactionServiceOptions {
        CompactionServiceOptions {
            scheduler: scheduler.into(),
            token,
            tenant: None,
            priority: 0,
            policy: PlacementPolicy::Auto,
            busy_threshold: 0.5,
            max_tries: 3,
            timeout: Duration::from_secs(2),
            max_queue_wait: Duration::from_secs(5),
            flush: FlushPlacement::Auto,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.scheduler.trim().is_empty() {
            return bad("compaction_service.scheduler is empty".into());
        }
        if !(0.0..=1.0).contains(&self.busy_threshold) {
            return bad(format!(
                "compaction_service.busy_threshold {} is outside [0, 1]",
                self.busy_threshold
            ));
        }
        if !(1..=16).contains(&self.max_tries) {
            return bad(format!(
                "compaction_service.max_tries {} is outside [1, 16]",
                self.max_tries
            ));
        }
        if self.timeout.is_zero() {
            return bad("compaction_service.timeout is zero".into());
        }
        if self.max_queue_wait.is_zero() {
            return bad("compaction_service.max_queue_wait is zero".into());
        }
        Ok(())
    }
}

/// How often a disconnected executor tries the scheduler again.
pub(crate) const RECONNECT: Duration = Duration::from_millis(500);
/// How often the service's load is refreshed while connected.
const LOAD_REFRESH: Duration = Duration::from_millis(100);
/// Longest single `Await`; the task asks again until the job ends.
const AWAIT_WAIT: Duration = Duration::from_secs(10);
/// How long a job in flight rides out a scheduler that stopped answering
/// before it is reported lost (and run here).
const RIDE_OUT: Duration = Duration::from_secs(3);

/// The compaction service's executor.
pub(crate) struct ServiceExecutor {
    name: String,
    shared: Arc<Shared>,
    /// Taken on drop and shut down without blocking (the last holder may be
    /// one of its own tasks).
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ServiceExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceExecutor")
            .field("name", &self.name)
            .finish()
    }
}

struct Shared {
    options: CompactionServiceOptions,
    tenant: String,
    root: PathBuf,
    conn: Mutex<Connection>,
    /// Jobs submitted since the service's load figures were last refreshed:
    /// the free slots placement sees are reduced by them, so a burst of
    /// jobs does not all count on the same free slot.
    unseen: AtomicU64,
    /// Moving average of the round trip beyond queue wait and execution.
    overhead: Mutex<Option<f64>>,
    /// The target placement chose for each flush (by job id), until it is
    /// submitted.
    flush_targets: Mutex<HashMap<u64, pb::FlushTarget>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    queue_wait_micros: AtomicU64,
    exec_micros: AtomicU64,
    round_trip_micros: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    retries: AtomicU64,
    flush: FlushCounters,
}

// One per executor: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Connection {
    Down {
        reason: String,
    },
    Up {
        client: SchedulerClient,
        session: TenantSession,
        load: Load,
    },
}

impl ServiceExecutor {
    /// Start the executor for the database in `root`; it connects in the
    /// background (the database opens whether or not the scheduler
    /// answers).
    pub(crate) fn start(
        options: &CompactionServiceOptions,
        root: &Path,
    ) -> Result<Arc<ServiceExecutor>> {
        options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("o3-csa-client")
            .enable_all()
            .build()
            .map_err(|e| Error::io("compaction service client runtime", e))?;
        let root = std::path::absolute(root)
            .map_err(|e| Error::io(format!("absolute path of {}", root.display()), e))?;
        let shared = Arc::new(Shared {
            tenant: options
                .tenant
                .clone()
                .unwrap_or_else(|| root.display().to_string()),
            options: options.clone(),
            root,
            conn: Mutex::new(Connection::Down {
                reason: "not connected yet".into(),
            }),
            unseen: AtomicU64::new(0),
            overhead: Mutex::new(None),
            flush_targets: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        // The first jobs are placed with the service's answer, not with
        // "not connected yet": wait for the first attempt to connect and
        // register (bounded; a scheduler that is down fails it at once).
        let (first_attempt, attempted) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(keep_connected(Arc::downgrade(&shared), Some(first_attempt)));
        let _ = attempted.recv_timeout(options.timeout.min(FIRST_CONNECT_WAIT));
        Ok(Arc::new(ServiceExecutor {
            name: format!("compaction service {}", options.scheduler),
            shared,
            runtime: Some(runtime),
        }))
    }
}

impl Drop for ServiceExecutor {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Jobs still waiting are dropped with their completions, which
            // report them lost; the next open removes what they wrote.
            rt.shutdown_background();
        }
    }
}

impl Executor for ServiceExecutor {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit(&self, job: Job, done: Completion) {
        let job = match job {
            Job::Compaction(job) => job,
            Job::Flush(work) => return self.submit_flush(work, done),
        };
        let connected = match &*self.shared.conn.lock() {
            Connection::Up {
                client, session, ..
            } => Ok((client.clone(), session.clone())),
            Connection::Down { reason } => Err(reason.clone()),
        };
        let (client, session) = match connected {
            Ok(c) => c,
            Err(reason) => {
                done.complete(Err(unavailable(&self.shared, &reason)));
                return;
            }
        };
        let Some(runtime) = &self.runtime else {
            return;
        };
        self.shared.unseen.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let score = done.summary().map_or(1.0, |s| s.score);
            let epochs = shared.options.max_tries;
            let started = Instant::now();
            let outcome = run_remotely(&shared, &client, &session, &job, score, epochs).await;
            let outcome = match outcome {
                Ok(run) => {
                    shared.note_done(&run, started.elapsed());
                    Ok(run.result)
                }
                Err(reason) => {
                    shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{}: the compaction service gave it back: {reason}",
                        job.token
                    );
                    Err(unavailable(&shared, &reason))
                }
            };
            done.complete(outcome);
        });
    }

    fn offer(&self, _job: &JobSummary) -> RemoteOffer {
        let conn = self.shared.conn.lock();
        let load = match &*conn {
            Connection::Down { reason } => return RemoteOffer::Unreachable(reason.clone()),
            Connection::Up { load, .. } => load,
        };
        let healthy: Vec<_> = load.agents.iter().filter(|a| a.healthy).collect();
        if healthy.is_empty() {
            return RemoteOffer::Unreachable("the scheduler has no healthy agent".into());
        }
        let unseen = self.shared.unseen.load(Ordering::Relaxed);
        let free = u64::from(load.slots_free).saturating_sub(unseen);
        let slots = u64::from(load.slots_total.max(1));
        if free == 0 && u64::from(load.queued) + unseen >= slots {
            return RemoteOffer::Saturated;
        }
        // With a free slot the job starts at once; otherwise it waits about
        // one recent queue wait per round of slots ahead of it.
        let queue_wait = if free > 0 {
            Duration::ZERO
        } else {
            let rounds = (u64::from(load.queued) + unseen + 1) as f64 / slots as f64;
            load.queue_wait.mul_f64(rounds.max(1.0))
        };
        // The fastest agent with room runs it (the distributor's tie-break);
        // any agent's speed stands in while none has room.
        let rate = healthy
            .iter()
            .filter(|a| free == 0 || a.running < a.slots)
            .map(|a| a.bytes_per_sec)
            .filter(|r| *r > 0.0)
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            });
        RemoteOffer::Estimate(RemoteEstimate {
            queue_wait,
            overhead: Duration::from_secs_f64(self.shared.overhead.lock().unwrap_or(0.0)),
            bytes_per_sec: rate,
        })
    }

    fn runs_flushes(&self) -> bool {
        self.shared.options.flush != FlushPlacement::Local
    }

    fn takes_flush(&self, work: &FlushWork, here: LocalLoad) -> bool {
        self.place_flush(work, here)
    }

    fn reservation_slices(&self) -> u32 {
        self.shared.options.max_tries
    }

    fn fill_stats(&self, s: &mut PlacementStats) {
        let c = &self.shared.counters;
        s.remote_done = c.done.load(Ordering::Relaxed);
        s.remote_failed = c.failed.load(Ordering::Relaxed);
        s.remote_queue_wait_micros = c.queue_wait_micros.load(Ordering::Relaxed);
        s.remote_exec_micros = c.exec_micros.load(Ordering::Relaxed);
        s.remote_round_trip_micros = c.round_trip_micros.load(Ordering::Relaxed);
        s.remote_bytes_read = c.bytes_read.load(Ordering::Relaxed);
        s.remote_bytes_written = c.bytes_written.load(Ordering::Relaxed);
        s.remote_retries = c.retries.load(Ordering::Relaxed);
        let f = &c.flush;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.flush = crate::stats::FlushPlacementStats {
            local_images: get(&f.local_images),
            local_unreachable: get(&f.local_unreachable),
            local_estimate: get(&f.local_estimate),
            fallback_failed: get(&f.fallback_failed),
            memnode: get(&f.memnode),
            agent: get(&f.agent),
            remote_micros: get(&f.remote_micros),
            bytes_memnode_to_agent: get(&f.bytes_memnode_to_agent),
            bytes_written_memnode: get(&f.bytes_written_memnode),
            bytes_written_agent: get(&f.bytes_written_agent),
        };
        match &*self.shared.conn.lock() {
            Connection::Up { .. } => s.service_connected = true,
            Connection::Down { reason } => s.service_error = Some(reason.clone()),
        }
    }
}

impl Shared {
    fn note_done(&self, run: &RemoteRun, round_trip: Duration) {
        let c = &self.counters;
        c.done.fetch_add(1, Ordering::Relaxed);
        c.queue_wait_micros
            .fetch_add(micros(run.queue_wait), Ordering::Relaxed);
        c.exec_micros.fetch_add(micros(run.exec), Ordering::Relaxed);
        c.round_trip_micros
            .fetch_add(micros(round_trip), Ordering::Relaxed);
        c.bytes_read.fetch_add(run.bytes_read, Ordering::Relaxed);
        c.bytes_written
            .fetch_add(run.bytes_written, Ordering::Relaxed);
        c.retries
            .fetch_add(u64::from(run.tries.saturating_sub(1)), Ordering::Relaxed);
        let overhead = round_trip.saturating_sub(run.queue_wait + run.exec);
        let mut o = self.overhead.lock();
        *o = Some(ewma(*o, overhead.as_secs_f64()));
    }

    /// Mark the connection down (a call found the scheduler gone).
    fn lost(&self, reason: String) {
        let mut conn = self.conn.lock();
        if matches!(&*conn, Connection::Up { .. }) {
            tracing::warn!("compaction service {}: {reason}", self.options.scheduler);
        }
        *conn = Connection::Down { reason };
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn unavailable(shared: &Shared, reason: &str) -> Error {
    Error::Job(JobError::NodeUnavailable {
        node: format!("compaction service {}", shared.options.scheduler),
        reason: reason.to_string(),
    })
}

/// Submit `job` and wait for its outcome; the reason it came back
/// unfinished otherwise.
async fn run_remotely(
    shared: &Shared,
    client: &SchedulerClient,
    session: &TenantSession,
    job: &CompactionJob,
    score: f64,
    epochs: u32,
) -> std::result::Result<RemoteRun, String> {
    let ticket = match client.submit(session, job, score, epochs).await {
        Ok(s) => s.ticket,
        Err(e) => {
            if e.is_unavailable() {
                shared.lost(e.to_string());
            }
            return Err(format!("submit refused: {e}"));
        }
    };
    await_outcome(shared, client, session, ticket).await
}

/// Wait for submitted `ticket`'s outcome; the reason it came back
/// unfinished otherwise (withdrawn after queueing too long, failed, lost).
async fn await_outcome(
    shared: &Shared,
    client: &SchedulerClient,
    session: &TenantSession,
    ticket: u64,
) -> std::result::Result<RemoteRun, String> {
    let mut silent_since: Option<Instant> = None;
    // While queued (first, or again after its agent was lost): until when.
    let mut queued_until = Some(Instant::now() + shared.options.max_queue_wait);
    loop {
        let now = Instant::now();
        if queued_until.is_some_and(|until| now >= until) {
            // Best effort: a scheduler that does not answer keeps the job
            // queued, but its result could never install (the retry here
            // supersedes this attempt).
            let why = format!("queued for more than {:?}", shared.options.max_queue_wait);
            if let Err(e) = client.cancel(session, ticket, &why).await {
                tracing::debug!("cancelling ticket {ticket}: {e}");
            }
            return Err(format!("ticket {ticket} {why}; withdrawn"));
        }
        let wait = queued_until.map_or(AWAIT_WAIT, |until| {
            until.saturating_duration_since(now).min(AWAIT_WAIT)
        });
        match client.await_job(session, ticket, wait).await {
            Ok(JobStatus::Done(run)) => return Ok(run),
            Ok(JobStatus::Failed { error, kind, tries }) => {
                return Err(format!(
                    "ticket {ticket} failed on {tries} tries ({kind}): {error}"
                ));
            }
            Ok(JobStatus::Queued) => {
                silent_since = None;
                queued_until.get_or_insert(now + shared.options.max_queue_wait);
            }
            Ok(JobStatus::Running { .. }) => {
                silent_since = None;
                queued_until = None;
            }
            Err(e) if e.is_unavailable() => {
                let since = *silent_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RIDE_OUT {
                    shared.lost(e.to_string());
                    return Err(format!(
                        "the scheduler stopped answering about ticket {ticket}: {e}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                // The scheduler forgot the ticket or this tenant (it
                // restarted): the connection task registers again.
                shared.lost(e.to_string());
                return Err(format!("ticket {ticket} is lost: {e}"));
            }
        }
    }
}

/// Keep a registered connection while the executor lives: connect and
/// register when down, refresh the load when up, register again when the
/// scheduler restarted.
/// `first_attempt` hears when the first attempt to connect ended.
async fn keep_connected(
    shared: std::sync::Weak<Shared>,
    mut first_attempt: Option<std::sync::mpsc::SyncSender<()>>,
) {
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        let up = match &*s.conn.lock() {
            Connection::Up {
                client, session, ..
            } => Some((client.clone(), session.clone())),
            Connection::Down { .. } => None,
        };
        let pause = match up {
            None => match connect(&s).await {
                Ok(conn) => {
                    tracing::info!(
                        "compaction service {}: registered as tenant {:?}",
                        s.options.scheduler,
                        s.tenant
                    );
                    *s.conn.lock() = conn;
                    LOAD_REFRESH
                }
                Err(reason) => {
                    *s.conn.lock() = Connection::Down { reason };
                    RECONNECT
                }
            },
            Some((client, session)) => {
                match tokio::time::timeout(s.options.timeout, client.load()).await {
                    Ok(Ok(load)) if load.instance == session.instance => {
                        if let Connection::Up { load: l, .. } = &mut *s.conn.lock() {
                            *l = load;
                        }
                        s.unseen.store(0, Ordering::Relaxed);
                        LOAD_REFRESH
                    }
                    Ok(Ok(_)) => {
                        s.lost("the scheduler restarted; registering again".into());
                        Duration::ZERO
                    }
                    Ok(Err(e)) => {
                        s.lost(e.to_string());
                        RECONNECT
                    }
                    Err(_) => {
                        s.lost(format!(
                            "the scheduler did not answer within {:?}",
                            s.options.timeout
                        ));
                        RECONNECT
                    }
                }
            }
        };
        drop(s);
        if let Some(tx) = first_attempt.take() {
            let _ = tx.try_send(());
        }
        tokio::time::sleep(pause).await;
    }
}

/// How long opening a database waits at most for its first connection to
/// the compaction service.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(2);

async fn connect(s: &Shared) -> std::result::Result<Connection, String> {
    let o = &s.options;
    let client = SchedulerClient::connect(&o.scheduler, o.token.clone(), o.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let session = tokio::time::timeout(
        o.timeout,
        client.register_tenant(&s.tenant, &s.root, o.priority),
    )
    .await
    .map_err(|_| format!("registering did not finish within {:?}", o.timeout))?
    .map_err(|e| e.to_string())?;
    let load = tokio::time::timeout(o.timeout, client.load())
        .await
        .map_err(|_| format!("the load did not arrive within {:?}", o.timeout))?
        .map_err(|e| e.to_string())?;
    Ok(Connection::Up {
        client,
        session,
        load,
    })
}
