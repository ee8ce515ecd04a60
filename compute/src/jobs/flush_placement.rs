//! Where a flush of offloaded images runs, by estimated completion time
//! (the flush side of the cost model in `jobs::placement`):
//!
//! - on the memory node holding the images: its queue wait plus execution
//!   at its observed flush speed; no image moves;
//! - on an agent: queue wait, plus the images' transfer from the memory
//!   node, plus execution at the agents' observed flush speed;
//! - here: the images read back over the link, plus the wait for one of
//!   this node's background slots when all are taken (a job's time for
//!   each job ahead, running or due, spread over the slots), plus
//!   execution at this node's observed speed.
//!
//! Speeds not observed yet stand in for each other (an executor's unknown
//! speed is this node's; this node's unknown speed is
//! [`ASSUMED_BYTES_PER_SEC`]); an unmeasured link costs nothing, so the
//! choice then rests on queue waits. Ties go to the memory node (it frees
//! both this node and the link), then to an agent (it frees this node).

use std::time::Duration;

use crate::jobs::executor::LocalLoad;

/// Execution speed assumed before anything was measured.
pub(crate) const ASSUMED_BYTES_PER_SEC: f64 = 50e6;

/// A flush executor the service offers, as its load reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FlushExecutor {
    /// It has a free slot: the flush starts at once.
    pub free: bool,
    /// Image bytes flushed per second, 0 before its first flush.
    pub bytes_per_sec: f64,
}

/// What the estimate needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FlushCosts {
    /// Bytes of the flush's images.
    pub bytes: u64,
    /// The link between the memory node and the other nodes (measured
    /// while shipping images).
    pub link_bytes_per_sec: Option<f64>,
    /// This node: its speed, the jobs running and due here, its slots.
    pub here: LocalLoad,
    /// The memory node's flush executor, when registered and healthy.
    pub memnode: Option<FlushExecutor>,
    /// The best healthy agent, when any.
    pub agent: Option<FlushExecutor>,
    /// What a job waits in the service's queue when no slot is free.
    pub queue_wait: Duration,
}

/// Where a flush runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlushSite {
    Memnode,
    Agent,
    Local,
}

/// The site with the earliest estimated completion.
pub(crate) fn choose(c: &FlushCosts) -> FlushSite {
    let bytes = c.bytes as f64;
    let local_rate = c
        .here
        .bytes_per_sec
        .filter(|r| *r > 0.0)
        .unwrap_or(ASSUMED_BYTES_PER_SEC);
    let transfer = c
        .link_bytes_per_sec
        .filter(|r| *r > 0.0)
        .map_or(0.0, |r| bytes / r);
    let remote = |e: &FlushExecutor| {
        let rate = if e.bytes_per_sec > 0.0 {
            e.bytes_per_sec
        } else {
            local_rate
        };
        let wait = if e.free {
            0.0
        } else {
            c.queue_wait.as_secs_f64()
        };
        wait + bytes / rate
    };
    // Jobs ahead of this one here: those running or due beyond the slots.
    let slots = c.here.slots.max(1);
    let ahead = (c.here.running + c.here.waiting + 1).saturating_sub(slots);
    let local_wait = ahead as f64 * (bytes / local_rate) / slots as f64;
    // In order of preference on ties.
    let candidates = [
        (FlushSite::Memnode, c.memnode.as_ref().map(remote)),
        (
            FlushSite::Agent,
            c.agent.as_ref().map(|a| remote(a) + transfer),
        ),
        (
            FlushSite::Local,
            Some(transfer + local_wait + bytes / local_rate),
        ),
    ];
    candidates
        .into_iter()
        .filter_map(|(site, cost)| cost.map(|c| (site, c)))
        .fold(
            None,
            |best: Option<(FlushSite, f64)>, (site, cost)| match best {
                Some((_, b)) if b <= cost => best,
                _ => Some((site, cost)),
            },
        )
        .map_or(FlushSite::Local, |(site, _)| site)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs() -> FlushCosts {
        FlushCosts {
            bytes: 64 << 20,
            link_bytes_per_sec: Some(100e6),
            here: LocalLoad {
                bytes_per_sec: Some(100e6),
                running: 0,
                waiting: 0,
                slots: 2,
            },
            memnode: None,
            agent: None,
            queue_wait: Duration::from_secs(2),
        }
    }

    const FREE: FlushExecutor = FlushExecutor {
        free: true,
        bytes_per_sec: 0.0,
    };

    #[test]
    fn without_executors_the_flush_stays_here() {
        assert_eq!(choose(&costs()), FlushSite::Local);
    }

    #[test]
    fn a_free_memory_node_wins_as_it_moves_nothing() {
        let c = FlushCosts {
            memnode: Some(FREE),
            agent: Some(FREE),
            ..costs()
        };
        assert_eq!(choose(&c), FlushSite::Memnode);
    }

    #[test]
    fn a_busy_memory_node_loses_to_a_free_agent_when_its_queue_is_long() {
        let c = FlushCosts {
            memnode: Some(FlushExecutor {
                free: false,
                bytes_per_sec: 100e6,
            }),
            agent: Some(FREE),
            ..costs()
        };
        assert_eq!(choose(&c), FlushSite::Agent);
    }

    #[test]
    fn a_slow_link_keeps_the_flush_on_the_memory_node_or_here() {
        let slow_link = FlushCosts {
            link_bytes_per_sec: Some(1e6),
            agent: Some(FREE),
            ..costs()
        };
        // The agent and this node both pay the transfer; at equal speeds
        // the agent takes the tie (it frees this node).
        assert_eq!(choose(&slow_link), FlushSite::Agent);
        let slow_agent = FlushCosts {
            agent: Some(FlushExecutor {
                free: true,
                bytes_per_sec: 10e6,
            }),
            ..slow_link
        };
        assert_eq!(choose(&slow_agent), FlushSite::Local);
    }

    #[test]
    fn a_slow_memory_node_loses_to_this_node_on_a_fast_link() {
        let c = FlushCosts {
            link_bytes_per_sec: Some(10e9),
            memnode: Some(FlushExecutor {
                free: true,
                bytes_per_sec: 5e6,
            }),
            ..costs()
        };
        assert_eq!(choose(&c), FlushSite::Local);
    }

    #[test]
    fn a_busy_node_here_sends_the_flush_to_a_busy_memory_node() {
        // The memory node is busy (3 s queue) and no faster than this
        // node: with a slot free here, the flush stays here (4 s).
        let busy_memnode = FlushCosts {
            bytes: 64_000_000,
            link_bytes_per_sec: Some(1e9),
            here: LocalLoad {
                bytes_per_sec: Some(16e6),
                ..costs().here
            },
            memnode: Some(FlushExecutor {
                free: false,
                bytes_per_sec: 16e6,
            }),
            queue_wait: Duration::from_secs(3),
            ..costs()
        };
        assert_eq!(choose(&busy_memnode), FlushSite::Local);
        // Both slots here taken and four more jobs waiting: five job times
        // (4 s each) spread over 2 slots, 10 s, against the 3 s queue.
        let busy_here = FlushCosts {
            here: LocalLoad {
                running: 2,
                waiting: 4,
                ..busy_memnode.here
            },
            ..busy_memnode
        };
        assert_eq!(choose(&busy_here), FlushSite::Memnode);
        // Exactly full: one job ahead, half a job's time (6 s against
        // 7 s): still here.
        let full_here = FlushCosts {
            here: LocalLoad {
                running: 2,
                ..busy_memnode.here
            },
            ..busy_memnode
        };
        assert_eq!(choose(&full_here), FlushSite::Local);
    }
}
