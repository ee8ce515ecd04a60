//! The global priority queue: every tenant's waiting jobs in one order.
//!
//! Order (first runs first), see `QueueEntry::key`:
//! 1. starved jobs (queued longer than the starvation limit) before all
//!    others, so no job waits forever behind a stream of more urgent ones;
//! 2. kind: flushes before compactions (only compactions exist today; the
//!    kind stays in the key so flushes slot in without reordering);
//! 3. level: the smallest input level first (level-0 compactions unblock
//!    writes);
//! 4. the picker's score, higher first;
//! 5. the tenant's priority, higher first;
//! 6. age: submitted earlier first; then the ticket, so the order is total.
//!
//! Fairness is applied when dispatching ([`Queue::dispatch_order`]): while
//! another tenant has jobs waiting, a tenant already running at least its
//! fair share of all slots ([`fair_share`]) is skipped.

use std::cmp::{Ordering, Reverse};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// What a job does; flushes order before compactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKind {
    Flush,
    Compaction,
}

/// One waiting job.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueEntry {
    pub ticket: u64,
    pub tenant: u64,
    pub kind: JobKind,
    /// The smallest input level.
    pub level: u32,
    pub score: f64,
    pub tenant_priority: u32,
    /// When the tenant submitted the job (a requeued job keeps its age).
    pub submitted: Instant,
}

/// The sort key of an entry at `now`; smaller runs first.
type Key = (
    Reverse<bool>,
    JobKind,
    u32,
    Reverse<TotalF64>,
    Reverse<u32>,
    Instant,
    u64,
);

/// An `f64` ordered by `total_cmp` (scores are finite; NaN sorts last).
#[derive(Clone, Copy, Debug, PartialEq)]
struct TotalF64(f64);

impl Eq for TotalF64 {}
impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl QueueEntry {
    /// Whether the job has waited longer than `starvation` at `now`.
    pub fn is_starved(&self, now: Instant, starvation: Duration) -> bool {
        now.saturating_duration_since(self.submitted) > starvation
    }

    fn key(&self, now: Instant, starvation: Duration) -> Key {
        (
            Reverse(self.is_starved(now, starvation)),
            self.kind,
            self.level,
            Reverse(TotalF64(self.score)),
            Reverse(self.tenant_priority),
            self.submitted,
            self.ticket,
        )
    }
}

/// A tenant's fair share of `total_slots`: in proportion to its weight
/// (`priority + 1`) among the active tenants' weights, at least one slot.
pub fn fair_share(total_slots: u32, priority: u32, active_weight_sum: u64) -> u32 {
    let weight = u64::from(priority) + 1;
    let share = u64::from(total_slots) * weight / active_weight_sum.max(weight);
    u32::try_from(share).unwrap_or(u32::MAX).max(1)
}

/// What dispatching needs to know about the running jobs.
#[derive(Clone, Debug, Default)]
pub struct Running {
    /// Every agent's slots together.
    pub total_slots: u32,
    /// Jobs running per tenant.
    pub per_tenant: HashMap<u64, u32>,
    /// Priorities of the tenants (of both queued and running jobs).
    pub priorities: HashMap<u64, u32>,
}

/// Waiting jobs; small enough (one entry per claimed compaction of every
/// tenant) that ordering on demand is cheaper than keeping a heap in sync
/// with a key that changes with time (starvation).
#[derive(Debug, Default)]
pub struct Queue {
    entries: Vec<QueueEntry>,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    pub fn push(&mut self, entry: QueueEntry) {
        self.entries.push(entry);
    }

    pub fn remove(&mut self, ticket: u64) -> Option<QueueEntry> {
        let at = self.entries.iter().position(|e| e.ticket == ticket)?;
        Some(self.entries.swap_remove(at))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queued jobs of `tenant`.
    pub fn count_of(&self, tenant: u64) -> usize {
        self.entries.iter().filter(|e| e.tenant == tenant).count()
    }

    /// Every entry in priority order at `now`.
    pub fn ordered(&self, now: Instant, starvation: Duration) -> Vec<&QueueEntry> {
        let mut order: Vec<&QueueEntry> = self.entries.iter().collect();
        order.sort_by_cached_key(|e| e.key(now, starvation));
        order
    }

    /// How many entries run before `ticket`.
    pub fn position(&self, ticket: u64, now: Instant, starvation: Duration) -> Option<usize> {
        self.ordered(now, starvation)
            .iter()
            .position(|e| e.ticket == ticket)
    }

    /// The tickets to hand out, in order, given what runs now: the priority
    /// order without the jobs of tenants that run at least their fair share
    /// while another tenant has jobs waiting.
    pub fn dispatch_order(
        &self,
        now: Instant,
        starvation: Duration,
        running: &Running,
    ) -> Vec<u64> {
        let waiting: HashSet<u64> = self.entries.iter().map(|e| e.tenant).collect();
        let mut active: HashSet<u64> = waiting.clone();
        active.extend(
            running
                .per_tenant
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(t, _)| *t),
        );
        let priority = |t: &u64| running.priorities.get(t).copied().unwrap_or(0);
        let weight_sum: u64 = active.iter().map(|t| u64::from(priority(t)) + 1).sum();
        let over_share = |tenant: u64| {
            let others_wait = waiting.iter().any(|t| *t != tenant);
            let runs = running.per_tenant.get(&tenant).copied().unwrap_or(0);
            others_wait && runs >= fair_share(running.total_slots, priority(&tenant), weight_sum)
        };
        self.ordered(now, starvation)
            .into_iter()
            .filter(|e| !over_share(e.tenant))
            .map(|e| e.ticket)
            .collect()
    }
}
