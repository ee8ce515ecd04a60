//! What the scheduler reports: counters, moving averages, and the `Load`,
//! `Stats` and `Await` replies built from the state.

use std::time::Instant;

use o3_transport::control::proto::csa::v1 as pb;

use super::{Phase, Scheduler, Ticket};

/// Weight of the newest sample in a moving average.
const EWMA_ALPHA: f64 = 0.3;

/// An exponentially weighted moving average; 0 before the first sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Ewma {
    value: Option<f64>,
}

impl Ewma {
    pub fn add(&mut self, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        self.value = Some(match self.value {
            None => sample,
            Some(v) => v + EWMA_ALPHA * (sample - v),
        });
    }

    pub fn value(&self) -> f64 {
        self.value.unwrap_or(0.0)
    }
}

/// Scheduler-wide event counts (see `StatsResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub requeued_lost_agent: u64,
    pub retried: u64,
    pub fenced_reports: u64,
    pub gave_up: u64,
    pub agents_removed: u64,
    pub cancelled: u64,
    pub flushes_on_memnode: u64,
    pub flushes_on_agent: u64,
}

/// The `Await` reply describing `ticket`.
pub(super) fn await_reply(ticket: &Ticket) -> pb::AwaitResponse {
    let mut reply = pb::AwaitResponse {
        agent: ticket.agent_name.clone(),
        on_memnode: ticket.on_memnode,
        epoch: ticket.epoch,
        tries: ticket.tries,
        queue_wait_us: ticket.queue_wait_us,
        ..pb::AwaitResponse::default()
    };
    match &ticket.phase {
        Phase::Queued => reply.state = pb::JobState::Queued as i32,
        Phase::Assigned { .. } => reply.state = pb::JobState::Running as i32,
        Phase::Done(outcome) => {
            reply.state = pb::JobState::Done as i32;
            reply.result = outcome.result.clone();
            reply.exec_us = outcome.exec_us;
            reply.bytes_read = outcome.bytes_read;
            reply.bytes_written = outcome.bytes_written;
        }
        Phase::Failed { error, kind } => {
            reply.state = pb::JobState::Failed as i32;
            reply.error = error.clone();
            reply.failure = kind.to_proto() as i32;
        }
    }
    reply
}

impl Scheduler {
    pub(super) fn load(&self) -> pb::LoadResponse {
        let now = Instant::now();
        let state = self.state.lock();
        let (memnodes, agents): (Vec<pb::AgentLoad>, Vec<pb::AgentLoad>) = state
            .agents
            .values()
            .map(|a| a.to_proto(now, &self.config))
            .partition(|a| !a.memnode.is_empty());
        let healthy = agents.iter().filter(|a| a.healthy);
        let slots_total = healthy.clone().map(|a| a.slots).sum();
        let slots_free = healthy.map(|a| a.slots.saturating_sub(a.running)).sum();
        pb::LoadResponse {
            instance: self.instance,
            agents,
            queued: u32::try_from(state.queue.len()).unwrap_or(u32::MAX),
            slots_total,
            slots_free,
            queue_wait_us: state.queue_wait.value() as u64,
            memnodes,
        }
    }

    pub(super) fn stats(&self) -> pb::StatsResponse {
        let now = Instant::now();
        let state = self.state.lock();
        let mut running_of = std::collections::HashMap::<u64, u32>::new();
        for agent in state.agents.values() {
            for ticket in agent.assigned.keys() {
                if let Some(t) = state.tickets.get(ticket) {
                    *running_of.entry(t.tenant).or_default() += 1;
                }
            }
        }
        let tenants = state
            .tenants
            .iter()
            .map(|t| pb::TenantStats {
                tenant_id: t.id,
                name: t.name.clone(),
                root: t.root.display().to_string(),
                priority: t.priority,
                submitted: t.counters.submitted,
                done: t.counters.done,
                failed: t.counters.failed,
                queued: u32::try_from(state.queue.count_of(t.id)).unwrap_or(u32::MAX),
                running: running_of.get(&t.id).copied().unwrap_or(0),
                queue_wait_us_total: t.counters.queue_wait_us_total,
                l0_jobs: t.counters.l0_jobs,
                l0_queue_wait_us_total: t.counters.l0_queue_wait_us_total,
                refused: t.counters.refused,
            })
            .collect();
        let c = &state.counters;
        let (memnodes, agents): (Vec<pb::AgentLoad>, Vec<pb::AgentLoad>) = state
            .agents
            .values()
            .map(|a| a.to_proto(now, &self.config))
            .partition(|a| !a.memnode.is_empty());
        pb::StatsResponse {
            instance: self.instance,
            agents,
            memnodes,
            flushes_on_memnode: c.flushes_on_memnode,
            flushes_on_agent: c.flushes_on_agent,
            tenants,
            queued: u32::try_from(state.queue.len()).unwrap_or(u32::MAX),
            running: running_of.values().sum(),
            requeued_lost_agent: c.requeued_lost_agent,
            retried: c.retried,
            fenced_reports: c.fenced_reports,
            gave_up: c.gave_up,
            agents_removed: c.agents_removed,
            cancelled: c.cancelled,
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}
