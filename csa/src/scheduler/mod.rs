//! The compaction scheduler: tenants submit jobs into one global priority
//! queue, the distributor hands them to agents, the monitor watches agents'
//! heartbeats and requeues the jobs of lost ones, and fencing by epoch makes
//! sure only the newest try of a job counts.
//!
//! All state sits in one `State` behind one mutex; nothing waits while
//! holding it. Long-polls (`Await`, `Fetch`) wait on [`tokio::sync::Notify`]
//! with a deadline: `tickets_changed` wakes awaits when a ticket finishes,
//! each agent's own notify wakes its fetch when its mailbox fills.
//!
//! A ticket's life: Queued → Assigned (epoch e, one agent) → Done or Failed;
//! a lost agent, an unfetched assignment or a failed try sends it back to
//! Queued with epoch e + 1 while tries remain (at most
//! `min(epochs, max_tries)`). Finished tickets are remembered for ten
//! minutes (at most [`REMEMBERED_TICKETS`]) so a tenant that reconnects can
//! still collect them.

pub mod distributor;
mod monitor;
pub mod queue;
mod service;
mod stats;
pub mod tenants;
mod work;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use o3_storage::job::{CompactionJob, FlushJob};
use o3_transport::control::proto::csa::v1 as pb;
use o3_transport::control::{ClusterToken, RequireClusterToken, serve_until};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::Status;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

pub use crate::config::SchedulerConfig;
use crate::error::CsaError;
use crate::failure::FailureKind;
pub use distributor::epoch_slice;
use monitor::Agent;
pub use queue::{JobKind, Queue, QueueEntry, Running, fair_share};
use stats::{Counters, Ewma};
use tenants::Tenants;
pub(crate) use work::Submission;
use work::Work;

/// Most finished tickets remembered, whatever their age.
pub const REMEMBERED_TICKETS: usize = 100_000;
/// Finished tickets younger than this are kept (up to the bound above).
pub const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Longest `Await` or `Fetch` hold.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Refusals of one epoch that count as one failed try.
pub const REFUSALS_PER_TRY: u32 = 3;

/// Where a ticket stands.
#[derive(Debug)]
enum Phase {
    Queued,
    Assigned {
        agent: u64,
        fetched: bool,
        since: Instant,
    },
    Done(Box<Outcome>),
    Failed {
        error: String,
        kind: FailureKind,
    },
}

/// A successful run, as the agent reported it.
#[derive(Debug)]
struct Outcome {
    result: Vec<u8>,
    exec_us: u64,
    bytes_read: u64,
    bytes_written: u64,
}

/// One submitted job.
#[derive(Debug)]
struct Ticket {
    tenant: u64,
    job: Work,
    score: f64,
    epochs: u32,
    level: u32,
    submitted: Instant,
    /// When the current epoch entered the queue.
    queued_at: Instant,
    /// The current epoch: running now, or the next to hand out.
    epoch: u32,
    /// Epochs handed out so far.
    tries: u32,
    /// Refusals of the current epoch.
    refusals: u32,
    /// The agent whose try failed last: another is preferred.
    avoid: Option<u64>,
    phase: Phase,
    /// The name of the agent that ran (or runs) the newest epoch.
    agent_name: String,
    /// That agent is a memory node.
    on_memnode: bool,
    queue_wait_us: u64,
}

impl Ticket {
    /// Most epochs this job may be handed out for.
    fn try_limit(&self, max_tries: u32) -> u32 {
        self.epochs.min(max_tries).max(1)
    }

    fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done(_) | Phase::Failed { .. })
    }

    fn queue_entry(&self, ticket: u64, tenant_priority: u32) -> QueueEntry {
        QueueEntry {
            ticket,
            tenant: self.tenant,
            kind: self.job.kind(),
            level: self.level,
            score: self.score,
            tenant_priority,
            submitted: self.submitted,
        }
    }
}

/// A random starting point for one instance's ids: a multiple of 2^32, so
/// ids of two instances collide only if their bases do (one in 2^31).
fn id_base() -> u64 {
    u64::from(rand::random::<u32>() >> 1) << 32
}

/// Everything the scheduler knows, behind one lock.
#[derive(Debug, Default)]
struct State {
    tenants: Tenants,
    agents: BTreeMap<u64, Agent>,
    queue: Queue,
    tickets: HashMap<u64, Ticket>,
    /// Finished tickets, oldest first, for forgetting them.
    finished: VecDeque<(Instant, u64)>,
    counters: Counters,
    next_ticket: u64,
    next_agent: u64,
    queue_wait: Ewma,
}

/// The scheduler shared by the gRPC service and the monitor task.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: SchedulerConfig,
    instance: u64,
    started: Instant,
    state: Mutex<State>,
    /// Woken whenever a ticket finishes.
    tickets_changed: Notify,
    /// Set on shutdown: long-polls answer at once.
    closing: AtomicBool,
    /// Woken on shutdown.
    closed: Notify,
}

impl Scheduler {
    pub(crate) fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config,
            instance: rand::random(),
            started: Instant::now(),
            state: Mutex::new(State {
                // Ids start at a random point per instance, so an agent (or a
                // tenant's ticket) of an earlier instance never names one of
                // this instance: a restarted scheduler answers such calls
                // "unknown, register again" instead of taking them for
                // another agent's.
                next_ticket: id_base(),
                next_agent: id_base(),
                ..State::default()
            }),
            tickets_changed: Notify::new(),
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
        self.tickets_changed.notify_waiters();
        for agent in self.state.lock().agents.values() {
            agent.mailbox_filled.notify_waiters();
        }
    }

    /// Registers a tenant: its id and new session.
    fn register_tenant(
        &self,
        name: &str,
        root: &str,
        priority: u32,
    ) -> Result<(u64, [u8; tenants::SESSION_LEN]), Status> {
        let mut state = self.state.lock();
        let registered = state.tenants.register(name, root, priority);
        match &registered {
            Ok((id, _)) => tracing::info!(tenant = id, name, root, priority, "tenant registered"),
            Err(status) => tracing::info!(name, root, reason = status.message(), "tenant refused"),
        }
        registered
    }

    /// Queues a job: its ticket and the number of jobs ahead of it.
    fn submit(
        &self,
        tenant_id: u64,
        session: &[u8],
        submission: Submission<'_>,
        score: f64,
        epochs: u32,
    ) -> Result<(u64, u32), Status> {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let tenant = state.tenants.check(tenant_id, session)?;
        let job = match submission.kind {
            pb::JobKind::Compaction => {
                Work::Compaction(CompactionJob::from_bytes(submission.job).map_err(|e| {
                    Status::invalid_argument(format!("undecodable compaction job: {e}"))
                })?)
            }
            pb::JobKind::Flush => {
                let job = FlushJob::from_bytes(submission.job)
                    .map_err(|e| Status::invalid_argument(format!("undecodable flush job: {e}")))?;
                let images = submission.images.ok_or_else(|| {
                    Status::invalid_argument("a flush names no images (FlushImages)")
                })?;
                if images.images.len() != job.images.len() || images.memnode.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "flush job {} has {} images but names {} locations on memory node {:?}",
                        job.token,
                        job.images.len(),
                        images.images.len(),
                        images.memnode
                    )));
                }
                Work::Flush {
                    job,
                    images,
                    target: submission.target,
                }
            }
        };
        if !tenants::is_under(job.dir(), &tenant.root) {
            tenant.counters.refused += 1;
            tracing::info!(
                tenant = tenant_id,
                dir = %job.dir().display(),
                root = %tenant.root.display(),
                "job refused: outside the tenant's root"
            );
            return Err(Status::permission_denied(format!(
                "job directory {} is not under tenant {}'s root {}",
                job.dir().display(),
                tenant.name,
                tenant.root.display()
            )));
        }
        if epochs == 0 {
            return Err(Status::invalid_argument("epochs must be at least 1"));
        }
        let numbers = job.file_numbers();
        let numbers = numbers.end.saturating_sub(numbers.start);
        if numbers < u64::from(epochs) {
            return Err(Status::invalid_argument(format!(
                "{numbers} reserved file numbers cannot be split into {epochs} epochs"
            )));
        }
        if !score.is_finite() {
            return Err(Status::invalid_argument(format!(
                "score {score} is not finite"
            )));
        }
        tenant.counters.submitted += 1;
        let priority = tenant.priority;
        let level = match &job {
            Work::Compaction(job) => job
                .inputs
                .iter()
                .filter(|(_, files)| !files.is_empty())
                .map(|(level, _)| *level)
                .min()
                .unwrap_or(job.output_level),
            Work::Flush { .. } => 0,
        };
        let kind = job.kind();
        state.next_ticket += 1;
        let id = state.next_ticket;
        let ticket = Ticket {
            tenant: tenant_id,
            job,
            score,
            epochs,
            level,
            submitted: now,
            queued_at: now,
            epoch: 0,
            tries: 0,
            refusals: 0,
            avoid: None,
            phase: Phase::Queued,
            agent_name: String::new(),
            on_memnode: false,
            queue_wait_us: 0,
        };
        state.queue.push(ticket.queue_entry(id, priority));
        state.tickets.insert(id, ticket);
        let position = state
            .queue
            .position(id, now, self.config.starvation)
            .unwrap_or(0);
        tracing::info!(
            ticket = id,
            tenant = tenant_id,
            ?kind,
            level,
            score,
            epochs,
            position,
            "job queued"
        );
        self.distribute(state, now);
        Ok((id, u32::try_from(position).unwrap_or(u32::MAX)))
    }

    /// The ticket's state (`None`: unknown to this tenant), waiting up to
    /// `wait` for it to finish.
    async fn await_ticket(
        &self,
        tenant_id: u64,
        session: &[u8],
        ticket: u64,
        wait: Duration,
    ) -> Result<o3_transport::control::proto::csa::v1::AwaitResponse, Status> {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let changed = self.tickets_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let reply = {
                let mut state = self.state.lock();
                state.tenants.check(tenant_id, session)?;
                match state.tickets.get(&ticket) {
                    Some(t) if t.tenant == tenant_id => stats::await_reply(t),
                    _ => return Err(Status::not_found(format!("unknown ticket {ticket}"))),
                }
            };
            let finished = reply.state
                == o3_transport::control::proto::csa::v1::JobState::Done as i32
                || reply.state == o3_transport::control::proto::csa::v1::JobState::Failed as i32;
            let now = Instant::now();
            if finished || now >= deadline || self.is_closing() {
                return Ok(reply);
            }
            let closed = self.closed.notified();
            tokio::select! {
                () = &mut changed => {}
                () = closed => {}
                () = tokio::time::sleep(deadline - now) => {}
            }
        }
    }

    /// Withdraws `ticket` for its tenant: out of the queue, or its running
    /// epoch superseded (the agent's report will be fenced, and it deletes
    /// what it wrote). Returns the state the ticket was in.
    fn cancel(
        &self,
        tenant_id: u64,
        session: &[u8],
        ticket: u64,
        reason: &str,
    ) -> Result<pb::JobState, Status> {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.tenants.check(tenant_id, session)?;
        let before = match state.tickets.get(&ticket) {
            Some(t) if t.tenant == tenant_id => match &t.phase {
                Phase::Queued => pb::JobState::Queued,
                Phase::Assigned { agent, .. } => {
                    let agent = *agent;
                    if let Some(a) = state.agents.get_mut(&agent) {
                        a.release(ticket);
                    }
                    pb::JobState::Running
                }
                Phase::Done(_) => return Ok(pb::JobState::Done),
                Phase::Failed { .. } => return Ok(pb::JobState::Failed),
            },
            _ => return Err(Status::not_found(format!("unknown ticket {ticket}"))),
        };
        state.queue.remove(ticket);
        state.counters.cancelled += 1;
        tracing::info!(
            ticket,
            tenant = tenant_id,
            reason,
            "job cancelled by its tenant"
        );
        let error = format!("cancelled by its tenant: {reason}");
        self.finish(
            state,
            ticket,
            Phase::Failed {
                error,
                kind: FailureKind::Cancelled,
            },
            now,
        );
        // A slot may have come free.
        self.distribute(state, now);
        Ok(before)
    }

    /// Marks `id` finished and wakes its awaiters; forgets old tickets.
    fn finish(&self, state: &mut State, id: u64, phase: Phase, now: Instant) {
        let Some(ticket) = state.tickets.get_mut(&id) else {
            return;
        };
        let done = matches!(phase, Phase::Done(_));
        ticket.phase = phase;
        let (tenant, level, wait) = (ticket.tenant, ticket.level, ticket.queue_wait_us);
        if let Some(tenant) = state.tenants.get_mut(tenant) {
            if done {
                tenant.counters.done += 1;
                tenant.counters.queue_wait_us_total += wait;
                if level == 0 {
                    tenant.counters.l0_jobs += 1;
                    tenant.counters.l0_queue_wait_us_total += wait;
                }
            } else {
                tenant.counters.failed += 1;
            }
        }
        state.finished.push_back((now, id));
        while let Some(&(at, old)) = state.finished.front() {
            let expired = now.saturating_duration_since(at) > REMEMBER_FOR;
            if !expired && state.finished.len() <= REMEMBERED_TICKETS {
                break;
            }
            state.finished.pop_front();
            state.tickets.remove(&old);
        }
        self.tickets_changed.notify_waiters();
    }

    /// The current epoch of `id` was lost or failed: requeue it with the
    /// next epoch while tries remain, else give it back as failed.
    /// Returns true when requeued.
    fn retry_or_give_up(
        &self,
        state: &mut State,
        id: u64,
        kind: FailureKind,
        error: String,
        now: Instant,
    ) -> bool {
        let Some(ticket) = state.tickets.get_mut(&id) else {
            return false;
        };
        if let Phase::Assigned { agent, .. } = ticket.phase
            && let Some(a) = state.agents.get_mut(&agent)
        {
            a.release(id);
        }
        let limit = ticket.try_limit(self.config.max_tries);
        if ticket.tries >= limit || ticket.epoch + 1 >= ticket.epochs {
            let tries = ticket.tries;
            tracing::info!(ticket = id, tenant = ticket.tenant, epoch = ticket.epoch, tries, %kind, %error, "job given up");
            state.counters.gave_up += 1;
            self.finish(state, id, Phase::Failed { error, kind }, now);
            return false;
        }
        ticket.epoch += 1;
        ticket.refusals = 0;
        ticket.phase = Phase::Queued;
        ticket.queued_at = now;
        let priority = state.tenants.get(ticket.tenant).map_or(0, |t| t.priority);
        let entry = ticket.queue_entry(id, priority);
        tracing::info!(ticket = id, tenant = ticket.tenant, epoch = ticket.epoch, %kind, %error, "job requeued");
        state.queue.push(entry);
        true
    }
}

/// Serves the scheduler on `listener`, every call checked against `token`,
/// with its monitor task beside it, until `shutdown` completes; then
/// answers open long-polls and gives calls in flight up to
/// `config.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    config: SchedulerConfig,
    token: ClusterToken,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CsaError> {
    config.validate()?;
    let grace = config.shutdown_grace;
    let scheduler = Arc::new(Scheduler::new(config));
    tracing::info!(
        instance = format_args!("{:016x}", scheduler.instance),
        "scheduler started"
    );
    let monitor = tokio::spawn(Arc::clone(&scheduler).monitor());
    let closing = Arc::clone(&scheduler);
    let served = serve_until(
        |stop| {
            Server::builder()
                .layer(RequireClusterToken::new(token).layer())
                .add_service(service::SchedulerService::new(Arc::clone(&scheduler)).into_server())
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop)
        },
        shutdown,
        // Open long-polls answer at once instead of holding the grace.
        move || closing.close(),
        grace,
    )
    .await;
    monitor.abort();
    served.map_err(|e| {
        CsaError::Internal(format!(
            "serving failed: {}",
            o3_transport::control::describe_error(&e)
        ))
    })
}
