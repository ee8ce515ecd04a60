//! The compaction agent: stateless; it registers with the scheduler,
//! heartbeats, long-polls for assignments while it has a free slot, runs
//! each job on a blocking thread against its storage and reports the
//! outcome.
//!
//! Faults: while the scheduler is unreachable the agent retries with
//! bounded backoff (logging it). When the scheduler forgets it
//! (FAILED_PRECONDITION: it restarted, or removed the agent), the agent
//! registers again and goes on; jobs of the old registration still report
//! under their old id, and the scheduler fences them. A fenced report, or a
//! heartbeat cancelling a job that already finished, makes the agent delete
//! the files that try wrote; the agent running epoch e > 0 first deletes
//! what earlier epochs left in their slices (their agents may have died),
//! so a superseded epoch leaves nothing behind.
//!
//! Shutdown: stop fetching, let running jobs finish (and report) within the
//! grace, then return. Dropping the future of [`run`] aborts every task of
//! the agent at once (the in-process service uses that to emulate a
//! crash); a job's blocking thread then finishes unobserved and its result
//! is never reported.

mod execute;
pub mod images;
pub mod progress;
mod slots;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o3_storage::env::Storage;
use o3_storage::job::JobResult;
use o3_transport::control::proto::csa::v1 as pb;
use o3_transport::control::{AuthenticatedChannel, Backoff, ClusterToken};
use pb::scheduler_client::SchedulerClient as Grpc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::client::{endpoint_uri, open_channel};
pub use crate::config::AgentConfig;
use crate::error::CsaError;
use crate::failure::FailureKind;
use images::{DataPlaneImages, ImageSource};
use slots::JobTable;

/// How long one `Fetch` is held open by the scheduler.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Attempts at delivering one report while the scheduler is unreachable.
const REPORT_ATTEMPTS: u32 = 10;

/// What every task of one agent shares.
#[derive(Debug)]
struct Shared {
    config: AgentConfig,
    endpoint: String,
    storage: Arc<dyn Storage>,
    /// Where flushes read their images.
    images: Arc<dyn ImageSource>,
    jobs: JobTable,
    slots: Arc<Semaphore>,
    /// Woken when a heartbeat learns the scheduler forgot this agent.
    forgotten: Notify,
}

/// One registration with the scheduler.
#[derive(Clone, Copy, Debug)]
struct Registration {
    agent_id: u64,
    heartbeat: Duration,
}

/// Runs an agent until `shutdown` completes.
pub async fn run(
    config: AgentConfig,
    token: ClusterToken,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CsaError> {
    run_with(config, token, storage, shutdown, |_| {}).await
}

/// [`run`], calling `registered(agent_id)` after every registration.
pub async fn run_with(
    config: AgentConfig,
    token: ClusterToken,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()>,
    registered: impl Fn(u64) + Send + Sync + 'static,
) -> Result<(), CsaError> {
    let images = Arc::new(DataPlaneImages::new(token.clone(), config.call_timeout));
    run_with_images(config, token, storage, images, shutdown, registered).await
}

/// [`run_with`], reading flushes' images from `images` (a memory node
/// executing flushes reads its own pool).
pub async fn run_with_images(
    config: AgentConfig,
    token: ClusterToken,
    storage: Arc<dyn Storage>,
    images: Arc<dyn ImageSource>,
    shutdown: impl Future<Output = ()>,
    registered: impl Fn(u64) + Send + Sync + 'static,
) -> Result<(), CsaError> {
    if config.slots == 0 {
        return Err(CsaError::InvalidArgument(format!(
            "agent {}: zero slots",
            config.name
        )));
    }
    let shared = Arc::new(Shared {
        endpoint: endpoint_uri(&config.scheduler),
        slots: Arc::new(Semaphore::new(config.slots as usize)),
        config,
        storage,
        images,
        jobs: JobTable::default(),
        forgotten: Notify::new(),
    });
    // Every task of the agent lives here: dropping this future aborts them.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let mut grpc: Option<Grpc<AuthenticatedChannel>> = None;
    let mut attempt = 0u32;
    'registrations: loop {
        let registration = tokio::select! {
            r = register(&shared, &token, &mut grpc, &mut attempt) => r,
            () = &mut shutdown => break 'registrations,
        };
        let Some(client) = grpc.clone() else { continue };
        registered(registration.agent_id);
        let heartbeat = tasks.spawn(heartbeat(Arc::clone(&shared), client.clone(), registration));
        let lost = tokio::select! {
            lost = fetch_loop(&shared, &client, registration, &mut tasks) => lost,
            () = &mut shutdown => false,
        };
        if lost {
            heartbeat.abort();
            tracing::info!(
                agent = registration.agent_id,
                "the scheduler forgot this agent; registering again"
            );
            continue;
        }
        // Shutdown: no more fetching; heartbeats go on while jobs finish.
        let grace = shared.config.shutdown_grace;
        let slots = shared.config.slots;
        if tokio::time::timeout(grace, shared.slots.acquire_many(slots))
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "jobs still running after the shutdown grace; stopping anyway"
            );
        }
        break;
    }
    tasks.abort_all();
    tracing::info!(name = %shared.config.name, "agent stopped");
    Ok(())
}

/// Registers, retrying with bounded backoff until the scheduler answers.
async fn register(
    shared: &Shared,
    token: &ClusterToken,
    grpc: &mut Option<Grpc<AuthenticatedChannel>>,
    attempt: &mut u32,
) -> Registration {
    let backoff = Backoff::default();
    loop {
        let outcome = async {
            if grpc.is_none() {
                let channel =
                    open_channel(&shared.endpoint, token.clone(), shared.config.call_timeout)
                        .await?;
                *grpc = Some(Grpc::new(channel));
            }
            let Some(client) = grpc.as_mut() else {
                return Err(CsaError::Internal("no channel".into()));
            };
            let mut request = tonic::Request::new(pb::RegisterAgentRequest {
                name: shared.config.name.clone(),
                slots: shared.config.slots,
                memnode: shared.config.memnode.clone().unwrap_or_default(),
            });
            request.set_timeout(shared.config.call_timeout);
            client
                .register_agent(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| CsaError::from_status(&shared.endpoint, &s, None))
        }
        .await;
        match outcome {
            Ok(reply) => {
                *attempt = 0;
                tracing::info!(agent = reply.agent_id, name = %shared.config.name, instance = format_args!("{:016x}", reply.instance), "agent registered");
                return Registration {
                    agent_id: reply.agent_id,
                    heartbeat: Duration::from_millis(u64::from(reply.heartbeat_ms.max(1))),
                };
            }
            Err(e) => {
                let pause = backoff.delay(*attempt, rand::random::<f64>());
                *attempt = attempt.saturating_add(1);
                tracing::warn!(error = %e, retry_in = ?pause, "cannot register with the scheduler");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Fetches and starts jobs while slots are free; returns true when the
/// scheduler forgot this registration.
async fn fetch_loop(
    shared: &Arc<Shared>,
    client: &Grpc<AuthenticatedChannel>,
    registration: Registration,
    tasks: &mut JoinSet<()>,
) -> bool {
    let backoff = Backoff::default();
    let mut failures = 0u32;
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&shared.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return false,
            },
            () = shared.forgotten.notified() => return true,
        };
        let mut request = tonic::Request::new(pb::FetchRequest {
            agent_id: registration.agent_id,
            wait_ms: u32::try_from(FETCH_WAIT.as_millis()).unwrap_or(u32::MAX),
        });
        request.set_timeout(FETCH_WAIT + shared.config.call_timeout);
        let mut fetcher = client.clone();
        let reply = tokio::select! {
            reply = fetcher.fetch(request) => reply,
            () = shared.forgotten.notified() => return true,
        };
        let jobs = match reply {
            Ok(reply) => {
                failures = 0;
                reply.into_inner().jobs
            }
            Err(status) => {
                match CsaError::from_status(&shared.endpoint, &status, None) {
                    CsaError::SessionLost(_) => return true,
                    e => {
                        let pause = backoff.delay(failures, rand::random::<f64>());
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, retry_in = ?pause, "fetch failed");
                        drop(permit);
                        tokio::time::sleep(pause).await;
                    }
                }
                continue;
            }
        };
        let mut permit = Some(permit);
        for assignment in jobs {
            let slot = permit
                .take()
                .or_else(|| Arc::clone(&shared.slots).try_acquire_owned().ok());
            let shared = Arc::clone(shared);
            let client = client.clone();
            match slot {
                Some(slot) => {
                    tasks.spawn(run_job(
                        shared,
                        client,
                        registration.agent_id,
                        assignment,
                        slot,
                    ));
                }
                None => {
                    tasks.spawn(async move {
                        let request = pb::ReportRequest {
                            agent_id: registration.agent_id,
                            ticket: assignment.ticket,
                            epoch: assignment.epoch,
                            error: "no free slot".to_owned(),
                            failure: FailureKind::Refused.to_proto() as i32,
                            ..pb::ReportRequest::default()
                        };
                        let _ = deliver(&shared, &client, request).await;
                    });
                }
            }
        }
    }
}

/// Runs one assignment in its slot and reports it.
async fn run_job(
    shared: Arc<Shared>,
    client: Grpc<AuthenticatedChannel>,
    agent_id: u64,
    assignment: pb::Assignment,
    _slot: OwnedSemaphorePermit,
) {
    let (ticket, epoch) = (assignment.ticket, assignment.epoch);
    let progress = shared.jobs.start(ticket, epoch);
    let started = Instant::now();
    let storage = Arc::clone(&shared.storage);
    let images = Arc::clone(&shared.images);
    let path_map = shared.config.path_map.clone();
    let counted = Arc::clone(&progress);
    tracing::info!(ticket, epoch, tenant = %assignment.tenant, kind = assignment.kind, "job started");
    let ran = tokio::task::spawn_blocking(move || {
        let job = execute::decode(&assignment, path_map.as_ref())?;
        if epoch > 0 {
            let stale = execute::earlier_epochs_files(&job, epoch, storage.as_ref());
            if !stale.is_empty() {
                tracing::info!(
                    ticket,
                    epoch,
                    files = stale.len(),
                    "deleting tables of earlier epochs"
                );
                execute::delete_files(storage.as_ref(), job.dir(), &stale);
            }
        }
        let outcome = execute::execute(&job, Arc::clone(&storage), images.as_ref(), counted);
        let written = execute::written_files(&job, outcome.as_ref().ok(), storage.as_ref());
        Ok::<_, execute::Failure>((job.dir().to_path_buf(), written, outcome))
    })
    .await;
    let exec = started.elapsed();
    let mut request = pb::ReportRequest {
        agent_id,
        ticket,
        epoch,
        exec_us: u64::try_from(exec.as_micros()).unwrap_or(u64::MAX),
        bytes_read: progress.bytes_read(),
        bytes_written: progress.bytes_written(),
        ..pb::ReportRequest::default()
    };
    let mut cleanup = None;
    let failure = match ran {
        Err(e) => Some((
            FailureKind::Internal,
            format!("the job's thread failed: {e}"),
        )),
        Ok(Err(failure)) => Some(failure),
        Ok(Ok((dir, written, outcome))) => {
            shared
                .jobs
                .finished(ticket, epoch, dir.clone(), written.clone());
            cleanup = Some((dir, written));
            match outcome.and_then(|result| encode(&result)) {
                Ok(bytes) => {
                    request.result = bytes;
                    None
                }
                Err(failure) => Some(failure),
            }
        }
    };
    if let Some((kind, error)) = failure {
        tracing::info!(ticket, epoch, %kind, %error, "job failed");
        request.failure = kind.to_proto() as i32;
        request.error = error;
    } else {
        tracing::info!(ticket, epoch, ?exec, "job done");
    }
    if !shared.jobs.remove(ticket, epoch) {
        // A heartbeat cancelled it after it finished and deleted its files.
        return;
    }
    if let Some(reply) = deliver(&shared, &client, request).await
        && reply.fenced
    {
        tracing::info!(ticket, epoch, reason = %reply.reason, "report fenced; deleting the try's files");
        if let Some((dir, files)) = cleanup {
            let storage = Arc::clone(&shared.storage);
            let _ = tokio::task::spawn_blocking(move || {
                execute::delete_files(storage.as_ref(), &dir, &files)
            })
            .await;
        }
    }
}

fn encode(result: &JobResult) -> Result<Vec<u8>, execute::Failure> {
    result.to_bytes().map_err(|e| {
        (
            FailureKind::Internal,
            format!("cannot encode the result: {e}"),
        )
    })
}

/// Sends a report, retrying with backoff while the scheduler is
/// unreachable; `None` when it never answered.
async fn deliver(
    shared: &Shared,
    client: &Grpc<AuthenticatedChannel>,
    report: pb::ReportRequest,
) -> Option<pb::ReportResponse> {
    let backoff = Backoff::default();
    for attempt in 0..REPORT_ATTEMPTS {
        let mut request = tonic::Request::new(report.clone());
        request.set_timeout(shared.config.call_timeout);
        match client.clone().report(request).await {
            Ok(reply) => return Some(reply.into_inner()),
            Err(status) => {
                let pause = backoff.delay(attempt, rand::random::<f64>());
                tracing::warn!(ticket = report.ticket, error = %status.message(), retry_in = ?pause, "report failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
    tracing::warn!(
        ticket = report.ticket,
        epoch = report.epoch,
        "report never delivered; the scheduler will requeue the job"
    );
    None
}

/// Heartbeats every interval with the jobs, CPU and memory use; deletes the
/// files of cancelled finished jobs; wakes the agent when it was forgotten.
async fn heartbeat(
    shared: Arc<Shared>,
    client: Grpc<AuthenticatedChannel>,
    registration: Registration,
) {
    let mut ticks = tokio::time::interval(registration.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = CpuMeter::new();
    loop {
        ticks.tick().await;
        let mut request = tonic::Request::new(pb::HeartbeatRequest {
            agent_id: registration.agent_id,
            running: shared.jobs.running(),
            slots: shared.config.slots,
            cpu: cpu.sample(),
            rss_bytes: rss_bytes(),
        });
        request.set_timeout(shared.config.call_timeout);
        match client.clone().heartbeat(request).await {
            Ok(reply) => {
                for job in reply.into_inner().cancel {
                    // A running job runs to its end; its fenced report then
                    // deletes its files (see `JobTable::cancel`).
                    if let Some((dir, files)) = shared.jobs.cancel(job.ticket, job.epoch) {
                        tracing::info!(
                            ticket = job.ticket,
                            epoch = job.epoch,
                            "cancelled after finishing; deleting its files"
                        );
                        let storage = Arc::clone(&shared.storage);
                        let _ = tokio::task::spawn_blocking(move || {
                            execute::delete_files(storage.as_ref(), &dir, &files)
                        })
                        .await;
                    }
                }
            }
            Err(status) => match CsaError::from_status(&shared.endpoint, &status, None) {
                CsaError::SessionLost(_) => {
                    shared.forgotten.notify_one();
                    return;
                }
                e => tracing::warn!(error = %e, "heartbeat failed"),
            },
        }
    }
}

/// The process's CPU use between samples, as a fraction of one core.
struct CpuMeter {
    last_cpu: Duration,
    last_wall: Instant,
}

impl CpuMeter {
    fn new() -> CpuMeter {
        CpuMeter {
            last_cpu: process_cpu_time(),
            last_wall: Instant::now(),
        }
    }

    fn sample(&mut self) -> f32 {
        let (cpu, wall) = (process_cpu_time(), Instant::now());
        let used = cpu.saturating_sub(self.last_cpu).as_secs_f64();
        let elapsed = wall.saturating_duration_since(self.last_wall).as_secs_f64();
        self.last_cpu = cpu;
        self.last_wall = wall;
        if elapsed > 0.0 {
            (used / elapsed) as f32
        } else {
            0.0
        }
    }
}

/// User plus system CPU time of this process.
fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer we pass,
    // which points at memory of that type owned by this frame.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it initialised `usage`.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Resident memory of this process from `/proc/self/statm` (0 where that
/// file does not exist).
fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
