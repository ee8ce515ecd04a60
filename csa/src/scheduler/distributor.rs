//! The distributor: hands queued jobs to agents, in priority order, each to
//! the least-loaded healthy agent with a free slot (lowest running/slots;
//! ties go to the faster agent by bytes per second, then the lower id). A
//! job whose last try failed prefers another agent when one has room.
//!
//! It runs whenever something could make an assignment possible: a job is
//! queued, an agent frees a slot or registers. The assignment of epoch `e`
//! carries the job with its file numbers narrowed to slice `e`
//! ([`epoch_slice`]), so two epochs of one job never write the same file.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use o3_transport::control::proto::csa::v1 as pb;

use super::{Phase, Running, Scheduler, State, Work};
use crate::failure::FailureKind;

/// File numbers of epoch `epoch` out of `epochs` equal slices of `range`:
/// `start + epoch * per .. start + (epoch + 1) * per` with
/// `per = len / epochs` (the remainder is never used). Empty when `epoch`
/// is not below `epochs`.
pub fn epoch_slice(range: Range<u64>, epochs: u32, epoch: u32) -> Range<u64> {
    if epochs == 0 || epoch >= epochs {
        return range.start..range.start;
    }
    let per = range.end.saturating_sub(range.start) / u64::from(epochs);
    let start = range.start + u64::from(epoch) * per;
    start..start + per
}

impl State {
    /// Running jobs per tenant and the slots of healthy agents.
    fn running_view(&self, now: Instant, scheduler: &Scheduler) -> Running {
        let mut per_tenant: HashMap<u64, u32> = HashMap::new();
        let mut total_slots = 0;
        for agent in self.agents.values() {
            if agent.is_healthy(now, &scheduler.config) {
                total_slots += agent.slots;
            }
            for ticket in agent.assigned.keys() {
                if let Some(t) = self.tickets.get(ticket) {
                    *per_tenant.entry(t.tenant).or_default() += 1;
                }
            }
        }
        let priorities = self.tenants.iter().map(|t| (t.id, t.priority)).collect();
        Running {
            total_slots,
            per_tenant,
            priorities,
        }
    }

    /// The agent to run `work` on: one that may run it (see
    /// [`Work::runs_on`]), healthy, with a free slot, least loaded; `avoid`
    /// only if no other has room. A flush that may run anywhere goes to the
    /// memory node holding its images while that one has room: it flushes
    /// without moving the images.
    fn choose_agent(
        &self,
        work: &Work,
        avoid: Option<u64>,
        scheduler: &Scheduler,
        now: Instant,
    ) -> Option<u64> {
        let candidates = || {
            self.agents
                .values()
                .filter(|a| work.runs_on(a) && a.is_healthy(now, &scheduler.config) && a.has_room())
        };
        if matches!(work, Work::Flush { .. })
            && let Some(memnode) = candidates().find(|a| a.memnode.is_some() && Some(a.id) != avoid)
        {
            return Some(memnode.id);
        }
        let best = |avoiding: bool| {
            candidates()
                .filter(|a| !avoiding || Some(a.id) != avoid)
                .min_by(|a, b| {
                    a.load()
                        .total_cmp(&b.load())
                        .then(b.bytes_per_sec.value().total_cmp(&a.bytes_per_sec.value()))
                        .then(a.id.cmp(&b.id))
                })
                .map(|a| a.id)
        };
        best(true).or_else(|| best(false))
    }
}

impl Scheduler {
    /// Assigns queued jobs while agents have room.
    pub(super) fn distribute(&self, state: &mut State, now: Instant) {
        loop {
            if state.queue.is_empty() {
                return;
            }
            let running = state.running_view(now, self);
            let order = state
                .queue
                .dispatch_order(now, self.config.starvation, &running);
            // The first job in order that some agent may take: a flush
            // waiting for its memory node does not hold up the others.
            let next = order.iter().find_map(|&id| {
                let ticket = state.tickets.get(&id)?;
                state
                    .choose_agent(&ticket.job, ticket.avoid, self, now)
                    .map(|agent| (id, agent))
            });
            let Some((id, agent)) = next else {
                return;
            };
            self.assign(state, id, agent, now);
        }
    }

    /// Puts the current epoch of `ticket` in `agent`'s mailbox.
    fn assign(&self, state: &mut State, id: u64, agent_id: u64, now: Instant) {
        state.queue.remove(id);
        let Some(ticket) = state.tickets.get_mut(&id) else {
            return;
        };
        let (bytes, slice) = match ticket.job.epoch_bytes(ticket.epochs, ticket.epoch) {
            Ok(encoded) => encoded,
            Err(e) => {
                let error = format!("cannot encode the job of epoch {}: {e}", ticket.epoch);
                self.finish(
                    state,
                    id,
                    Phase::Failed {
                        error,
                        kind: FailureKind::Internal,
                    },
                    now,
                );
                return;
            }
        };
        let Some(agent) = state.agents.get_mut(&agent_id) else {
            return;
        };
        let tenant_name = state
            .tenants
            .get(ticket.tenant)
            .map_or_else(String::new, |t| t.name.clone());
        ticket.tries = ticket.epoch + 1;
        ticket.queue_wait_us = micros(now.saturating_duration_since(ticket.queued_at));
        ticket.agent_name = agent.name.clone();
        ticket.on_memnode = agent.memnode.is_some();
        ticket.phase = Phase::Assigned {
            agent: agent_id,
            fetched: false,
            since: now,
        };
        state.queue_wait.add(ticket.queue_wait_us as f64);
        agent.assigned.insert(id, ticket.epoch);
        let (kind, images) = match &ticket.job {
            Work::Compaction(_) => (pb::JobKind::Compaction, None),
            Work::Flush { images, .. } => (pb::JobKind::Flush, Some(images.clone())),
        };
        agent.mailbox.push(pb::Assignment {
            ticket: id,
            epoch: ticket.epoch,
            job: bytes,
            tenant: tenant_name,
            kind: kind as i32,
            images,
        });
        agent.mailbox_filled.notify_one();
        tracing::info!(
            ticket = id,
            tenant = ticket.tenant,
            agent = agent_id,
            agent_name = %agent.name,
            epoch = ticket.epoch,
            ?kind,
            ?slice,
            "job assigned"
        );
    }
}

pub(super) fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
