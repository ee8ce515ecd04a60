//! Agents: registration, heartbeats, fetching assignments, reports, and the
//! monitor that removes silent agents.
//!
//! An agent is healthy while it was heard from (heartbeat or fetch) within
//! half the heartbeat timeout; only healthy agents get jobs. One silent for
//! the whole timeout is removed and each of its jobs requeued with the next
//! epoch (or given up when its tries are spent). An assignment not fetched
//! within the timeout is requeued the same way: the agent may be alive but
//! stuck, and the job must not wait on it.
//!
//! Reports are fenced: only the agent holding a ticket's current epoch may
//! finish it. Anything else (an older epoch, a removed agent, a finished or
//! forgotten ticket) is answered `fenced` and changes nothing; the agent
//! then deletes what it wrote.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o3_storage::job::JobResult;
use o3_transport::control::proto::csa::v1 as pb;
use tokio::sync::Notify;
use tonic::Status;

use super::stats::Ewma;
use super::{MAX_WAIT, Outcome, Phase, REFUSALS_PER_TRY, Scheduler, SchedulerConfig, State};
use crate::failure::FailureKind;

/// One registered agent.
#[derive(Debug)]
pub(super) struct Agent {
    pub id: u64,
    pub name: String,
    pub slots: u32,
    /// Tickets this agent holds the current epoch of (fetched or not).
    pub assigned: BTreeMap<u64, u32>,
    /// Assignments not yet fetched.
    pub mailbox: Vec<pb::Assignment>,
    pub mailbox_filled: Arc<Notify>,
    pub last_heard: Instant,
    pub cpu: f32,
    pub rss_bytes: u64,
    /// Input bytes per second of execution.
    pub bytes_per_sec: Ewma,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    /// Set for a memory node executing flushes: its data-plane node id.
    pub memnode: Option<String>,
    pub flushes_done: u64,
    /// Image bytes flushed per second of execution.
    pub flush_bytes_per_sec: Ewma,
}

impl Agent {
    pub fn is_healthy(&self, now: Instant, config: &SchedulerConfig) -> bool {
        now.saturating_duration_since(self.last_heard) <= config.heartbeat_timeout / 2
    }

    pub fn has_room(&self) -> bool {
        (self.assigned.len() as u64) < u64::from(self.slots)
    }

    pub fn running(&self) -> u32 {
        u32::try_from(self.assigned.len()).unwrap_or(u32::MAX)
    }

    /// Fraction of the slots in use.
    pub fn load(&self) -> f64 {
        self.assigned.len() as f64 / f64::from(self.slots.max(1))
    }

    /// Forgets `ticket` (its epoch ended or moved elsewhere).
    pub fn release(&mut self, ticket: u64) {
        self.assigned.remove(&ticket);
        self.mailbox.retain(|a| a.ticket != ticket);
    }

    pub fn to_proto(&self, now: Instant, config: &SchedulerConfig) -> pb::AgentLoad {
        pb::AgentLoad {
            agent_id: self.id,
            name: self.name.clone(),
            slots: self.slots,
            running: self.running(),
            cpu: self.cpu,
            rss_bytes: self.rss_bytes,
            bytes_per_sec: self.bytes_per_sec.value(),
            healthy: self.is_healthy(now, config),
            jobs_done: self.jobs_done,
            jobs_failed: self.jobs_failed,
            memnode: self.memnode.clone().unwrap_or_default(),
            flushes_done: self.flushes_done,
            flush_bytes_per_sec: self.flush_bytes_per_sec.value(),
        }
    }
}

impl Scheduler {
    pub(super) fn register_agent(
        &self,
        name: &str,
        slots: u32,
        memnode: &str,
    ) -> Result<pb::RegisterAgentResponse, Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument("an agent needs a non-empty name"));
        }
        if slots == 0 {
            return Err(Status::invalid_argument(format!(
                "agent {name}: zero slots"
            )));
        }
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.next_agent += 1;
        let id = state.next_agent;
        state.agents.insert(
            id,
            Agent {
                id,
                name: name.to_owned(),
                slots,
                assigned: BTreeMap::new(),
                mailbox: Vec::new(),
                mailbox_filled: Arc::new(Notify::new()),
                last_heard: now,
                cpu: 0.0,
                rss_bytes: 0,
                bytes_per_sec: Ewma::default(),
                jobs_done: 0,
                jobs_failed: 0,
                memnode: (!memnode.is_empty()).then(|| memnode.to_owned()),
                flushes_done: 0,
                flush_bytes_per_sec: Ewma::default(),
            },
        );
        tracing::info!(agent = id, name, slots, memnode, "agent registered");
        self.distribute(state, now);
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Ok(pb::RegisterAgentResponse {
            agent_id: id,
            heartbeat_ms: ms(self.config.heartbeat),
            heartbeat_timeout_ms: ms(self.config.heartbeat_timeout),
            instance: self.instance,
        })
    }

    pub(super) fn heartbeat(
        &self,
        request: &pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, Status> {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let agent = state.agents.get_mut(&request.agent_id).ok_or_else(|| {
            Status::failed_precondition(format!(
                "unknown agent {}: register again",
                request.agent_id
            ))
        })?;
        let was_healthy = agent.is_healthy(now, &self.config);
        agent.last_heard = now;
        agent.cpu = request.cpu;
        agent.rss_bytes = request.rss_bytes;
        let cancel = request
            .running
            .iter()
            .filter(|job| agent.assigned.get(&job.ticket) != Some(&job.epoch))
            .cloned()
            .collect();
        // An assignment the agent fetched a while ago but does not say it
        // runs never reached it (the fetch's answer was lost on the way):
        // without this it would count as running for ever, and its tenant
        // would wait for ever. A report still on its way is fenced then.
        let grace = self.config.heartbeat_timeout;
        let agent_id = agent.id;
        let lost: Vec<(u64, u32)> = agent
            .assigned
            .iter()
            .filter(|&(ticket, epoch)| {
                !request
                    .running
                    .iter()
                    .any(|j| j.ticket == *ticket && j.epoch == *epoch)
            })
            .map(|(&ticket, &epoch)| (ticket, epoch))
            .filter(|(ticket, _)| {
                state.tickets.get(ticket).is_some_and(|t| {
                    matches!(t.phase, Phase::Assigned { fetched: true, since, .. }
                        if now.saturating_duration_since(since) > grace)
                })
            })
            .collect();
        let requeue = !lost.is_empty();
        for (ticket, epoch) in lost {
            tracing::warn!(
                agent = agent_id,
                ticket,
                epoch,
                "assignment lost: fetched but not running on the agent; requeued"
            );
            let error = format!("agent {agent_id} never ran epoch {epoch} it fetched");
            if self.retry_or_give_up(state, ticket, FailureKind::AgentLost, error, now) {
                state.counters.requeued_lost_agent += 1;
            }
        }
        if !was_healthy || requeue {
            self.distribute(state, now);
        }
        Ok(pb::HeartbeatResponse { cancel })
    }

    /// The agent's assignments, waiting up to `wait` for one.
    pub(super) async fn fetch(
        &self,
        agent_id: u64,
        wait: Duration,
    ) -> Result<pb::FetchResponse, Status> {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let now = Instant::now();
            let filled = {
                let mut guard = self.state.lock();
                let state = &mut *guard;
                let agent = state.agents.get_mut(&agent_id).ok_or_else(|| {
                    Status::failed_precondition(format!("unknown agent {agent_id}: register again"))
                })?;
                let was_healthy = agent.is_healthy(now, &self.config);
                agent.last_heard = now;
                let jobs = std::mem::take(&mut agent.mailbox);
                let filled = Arc::clone(&agent.mailbox_filled);
                if !was_healthy {
                    self.distribute(state, now);
                }
                if !jobs.is_empty() {
                    for job in &jobs {
                        if let Some(t) = state.tickets.get_mut(&job.ticket)
                            && let Phase::Assigned { fetched, .. } = &mut t.phase
                        {
                            *fetched = true;
                        }
                    }
                    return Ok(pb::FetchResponse { jobs });
                }
                filled
            };
            if now >= deadline || self.is_closing() {
                return Ok(pb::FetchResponse { jobs: Vec::new() });
            }
            let closed = self.closed.notified();
            tokio::select! {
                () = filled.notified() => {}
                () = closed => {}
                () = tokio::time::sleep(deadline - now) => {}
            }
        }
    }

    /// Why a report of (`ticket`, `epoch`) by `agent_id` is fenced, if it is.
    fn fence_reason(state: &State, agent_id: u64, ticket: u64, epoch: u32) -> Option<String> {
        let Some(t) = state.tickets.get(&ticket) else {
            return Some(format!(
                "ticket {ticket} is unknown (forgotten, or another scheduler instance)"
            ));
        };
        if t.is_finished() {
            return Some(format!("ticket {ticket} is already finished"));
        }
        if t.epoch != epoch {
            return Some(format!(
                "epoch {epoch} of ticket {ticket} was superseded by epoch {}",
                t.epoch
            ));
        }
        match t.phase {
            Phase::Assigned { agent, .. } if agent == agent_id => None,
            _ => Some(format!(
                "agent {agent_id} does not hold epoch {epoch} of ticket {ticket}"
            )),
        }
    }

    pub(super) fn report(&self, request: pb::ReportRequest) -> pb::ReportResponse {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let (agent_id, id, epoch) = (request.agent_id, request.ticket, request.epoch);
        if let Some(agent) = state.agents.get_mut(&agent_id) {
            agent.last_heard = now;
        }
        if let Some(reason) = Self::fence_reason(state, agent_id, id, epoch) {
            state.counters.fenced_reports += 1;
            tracing::info!(ticket = id, agent = agent_id, epoch, %reason, "report fenced");
            return pb::ReportResponse {
                fenced: true,
                reason,
            };
        }
        if let Some(agent) = state.agents.get_mut(&agent_id) {
            agent.release(id);
        }
        let failure = if request.error.is_empty() && !request.result.is_empty() {
            match JobResult::from_bytes(&request.result) {
                Ok(_) => None,
                Err(e) => Some((
                    FailureKind::Internal,
                    format!("undecodable job result: {e}"),
                )),
            }
        } else {
            let kind = FailureKind::from_proto(request.failure);
            let error = if request.error.is_empty() {
                "no reason given".to_owned()
            } else {
                request.error.clone()
            };
            Some((kind, error))
        };
        match failure {
            None => self.complete(state, &request, now),
            Some((kind, error)) => self.try_failed(state, &request, kind, error, now),
        }
        self.distribute(state, now);
        pb::ReportResponse {
            fenced: false,
            reason: String::new(),
        }
    }

    fn complete(&self, state: &mut State, request: &pb::ReportRequest, now: Instant) {
        let id = request.ticket;
        let is_flush = state
            .tickets
            .get(&id)
            .is_some_and(|t| matches!(t.job, super::Work::Flush { .. }));
        if let Some(agent) = state.agents.get_mut(&request.agent_id) {
            agent.jobs_done += 1;
            let rate = (request.exec_us > 0)
                .then(|| request.bytes_read as f64 / (request.exec_us as f64 / 1e6));
            if is_flush {
                agent.flushes_done += 1;
                if let Some(rate) = rate {
                    agent.flush_bytes_per_sec.add(rate);
                }
                if agent.memnode.is_some() {
                    state.counters.flushes_on_memnode += 1;
                } else {
                    state.counters.flushes_on_agent += 1;
                }
            } else if let Some(rate) = rate {
                agent.bytes_per_sec.add(rate);
            }
        }
        let tenant = state.tickets.get(&id).map_or(0, |t| t.tenant);
        tracing::info!(
            ticket = id,
            tenant,
            agent = request.agent_id,
            epoch = request.epoch,
            exec_us = request.exec_us,
            "job done"
        );
        let outcome = Outcome {
            result: request.result.clone(),
            exec_us: request.exec_us,
            bytes_read: request.bytes_read,
            bytes_written: request.bytes_written,
        };
        self.finish(state, id, Phase::Done(Box::new(outcome)), now);
    }

    fn try_failed(
        &self,
        state: &mut State,
        request: &pb::ReportRequest,
        kind: FailureKind,
        error: String,
        now: Instant,
    ) {
        let id = request.ticket;
        if let Some(agent) = state.agents.get_mut(&request.agent_id) {
            agent.jobs_failed += 1;
        }
        let Some(ticket) = state.tickets.get_mut(&id) else {
            return;
        };
        ticket.avoid = Some(request.agent_id);
        tracing::info!(ticket = id, tenant = ticket.tenant, agent = request.agent_id, epoch = request.epoch, %kind, %error, "try failed");
        if kind == FailureKind::Refused {
            ticket.refusals += 1;
            if ticket.refusals < REFUSALS_PER_TRY {
                // Nothing ran, so the same epoch (and slice) goes to another agent.
                ticket.phase = Phase::Queued;
                ticket.queued_at = now;
                let priority = state.tenants.get(ticket.tenant).map_or(0, |t| t.priority);
                let entry = ticket.queue_entry(id, priority);
                state.queue.push(entry);
                return;
            }
        }
        if self.retry_or_give_up(state, id, kind, error, now) {
            state.counters.retried += 1;
        }
    }

    /// Removes agents silent for the heartbeat timeout and requeues their
    /// jobs and the assignments nobody fetched in time.
    pub(super) fn sweep(&self, now: Instant) {
        let timeout = self.config.heartbeat_timeout;
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let silent: Vec<u64> = state
            .agents
            .values()
            .filter(|a| now.saturating_duration_since(a.last_heard) > timeout)
            .map(|a| a.id)
            .collect();
        for agent_id in silent {
            let Some(agent) = state.agents.remove(&agent_id) else {
                continue;
            };
            agent.mailbox_filled.notify_waiters();
            state.counters.agents_removed += 1;
            tracing::info!(agent = agent_id, name = %agent.name, jobs = agent.assigned.len(), "agent removed: no heartbeat");
            for (&ticket, &epoch) in &agent.assigned {
                let error = format!(
                    "agent {} ({agent_id}) stopped heartbeating during epoch {epoch}",
                    agent.name
                );
                if self.retry_or_give_up(state, ticket, FailureKind::AgentLost, error, now) {
                    state.counters.requeued_lost_agent += 1;
                }
            }
        }
        let unfetched: Vec<u64> = state
            .tickets
            .iter()
            .filter(|(_, t)| {
                matches!(t.phase, Phase::Assigned { fetched: false, since, .. }
                    if now.saturating_duration_since(since) > timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for ticket in unfetched {
            let error = format!("assignment not fetched within {timeout:?}");
            if self.retry_or_give_up(state, ticket, FailureKind::AgentLost, error, now) {
                state.counters.requeued_lost_agent += 1;
            }
        }
        self.distribute(state, now);
    }

    /// Sweeps several times per heartbeat timeout, forever (the server
    /// aborts the task on shutdown): an agent is removed within about 1.25
    /// timeouts of its last heartbeat.
    pub(super) async fn monitor(self: Arc<Self>) {
        let period = (self.config.heartbeat_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sweep(Instant::now());
        }
    }
}
