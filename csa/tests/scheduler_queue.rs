//! The global queue's order and fairness, and the epoch slices, as pure
//! functions of their inputs (no service, no clock: every time is an
//! offset from one `Instant`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use o3_csa::scheduler::{JobKind, Queue, QueueEntry, Running, epoch_slice, fair_share};
use proptest::prelude::*;

const STARVATION: Duration = Duration::from_secs(5);

fn entry(
    ticket: u64,
    tenant: u64,
    level: u32,
    score: f64,
    priority: u32,
    age_ms: u64,
    now: Instant,
) -> QueueEntry {
    QueueEntry {
        ticket,
        tenant,
        kind: JobKind::Compaction,
        level,
        score,
        tenant_priority: priority,
        submitted: now - Duration::from_millis(age_ms),
    }
}

fn order(queue: &Queue, now: Instant) -> Vec<u64> {
    queue
        .ordered(now, STARVATION)
        .iter()
        .map(|e| e.ticket)
        .collect()
}

#[test]
fn level_then_score_then_tenant_priority_then_age() {
    let now = Instant::now() + Duration::from_secs(60);
    let mut queue = Queue::new();
    // Pushed in scrambled order; the ticket says where it must end up.
    queue.push(entry(6, 1, 1, 1.0, 0, 100, now)); // younger than 5
    queue.push(entry(2, 1, 0, 1.0, 0, 100, now)); // L0, lower score than 1
    queue.push(entry(4, 2, 1, 2.0, 0, 100, now)); // L1, same score as 3, lower priority
    queue.push(entry(1, 1, 0, 3.0, 0, 100, now)); // L0, highest score
    queue.push(entry(5, 1, 1, 1.0, 0, 200, now)); // L1, older than 6
    queue.push(entry(3, 3, 1, 2.0, 7, 100, now)); // L1, tenant priority 7
    queue.push(entry(7, 1, 2, 9.0, 9, 4000, now)); // L2 goes last, whatever its score
    assert_eq!(order(&queue, now), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(queue.position(5, now, STARVATION), Some(4));
    assert_eq!(queue.remove(3).map(|e| e.ticket), Some(3));
    assert_eq!(order(&queue, now), [1, 2, 4, 5, 6, 7]);
}

#[test]
fn a_starved_job_goes_ahead_of_all_others() {
    let now = Instant::now() + Duration::from_secs(60);
    let mut queue = Queue::new();
    queue.push(entry(1, 1, 0, 9.0, 9, 100, now));
    queue.push(entry(2, 2, 3, 0.1, 0, 4_900, now));
    assert_eq!(order(&queue, now), [1, 2], "not starved yet");
    let later = now + Duration::from_millis(200);
    assert_eq!(order(&queue, later), [2, 1], "starved after 5 s");
}

fn running(total_slots: u32, per_tenant: &[(u64, u32)], priorities: &[(u64, u32)]) -> Running {
    Running {
        total_slots,
        per_tenant: per_tenant.iter().copied().collect::<HashMap<_, _>>(),
        priorities: priorities.iter().copied().collect::<HashMap<_, _>>(),
    }
}

#[test]
fn a_tenant_at_its_fair_share_is_skipped_while_others_wait() {
    let now = Instant::now() + Duration::from_secs(60);
    let mut queue = Queue::new();
    queue.push(entry(1, 1, 0, 9.0, 0, 100, now)); // tenant 1's job is the most urgent
    queue.push(entry(2, 2, 1, 1.0, 0, 100, now));
    // 4 slots, equal weights: each tenant's share is 2; tenant 1 runs 2.
    let busy = running(4, &[(1, 2)], &[(1, 0), (2, 0)]);
    assert_eq!(queue.dispatch_order(now, STARVATION, &busy), [2]);
    // Below its share, it is not skipped.
    let idle = running(4, &[(1, 1)], &[(1, 0), (2, 0)]);
    assert_eq!(queue.dispatch_order(now, STARVATION, &idle), [1, 2]);
    // A higher priority weighs more: weight 3 of 4 → share 3 of 4 slots.
    let weighted = running(4, &[(1, 2)], &[(1, 2), (2, 0)]);
    assert_eq!(queue.dispatch_order(now, STARVATION, &weighted), [1, 2]);
    // Nobody else waits: tenant 1 takes what is free.
    queue.remove(2);
    assert_eq!(queue.dispatch_order(now, STARVATION, &busy), [1]);
}

#[test]
fn fair_shares_follow_weights_and_are_at_least_one_slot() {
    assert_eq!(fair_share(4, 0, 2), 2);
    assert_eq!(fair_share(4, 2, 4), 3);
    assert_eq!(fair_share(4, 0, 4), 1);
    assert_eq!(fair_share(1, 0, 10), 1);
    assert_eq!(fair_share(6, 0, 1), 6);
}

proptest! {
    #[test]
    fn epoch_slices_are_disjoint_equal_and_inside_the_range(
        start in 0u64..1_000_000,
        len in 1u64..10_000,
        epochs in 1u32..64,
    ) {
        prop_assume!(len >= u64::from(epochs));
        let range = start..start + len;
        let slices: Vec<_> = (0..epochs).map(|e| epoch_slice(range.clone(), epochs, e)).collect();
        let per = len / u64::from(epochs);
        for (e, slice) in slices.iter().enumerate() {
            prop_assert_eq!(slice.end - slice.start, per);
            prop_assert!(slice.start >= range.start && slice.end <= range.end);
            if e > 0 {
                prop_assert_eq!(slices[e - 1].end, slice.start, "slices must be adjacent and disjoint");
            }
        }
        prop_assert!(epoch_slice(range.clone(), epochs, epochs).is_empty());
    }
}
