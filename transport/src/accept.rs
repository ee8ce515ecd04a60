//! The queue of connections peers opened to this node, waiting for
//! [`crate::verbs::Fabric::accept`]. Entries whose connection has closed are
//! pruned whenever a new one arrives, so a node that never accepts holds at
//! most one entry per live connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::verbs::InboundConnection;

#[derive(Debug)]
struct Pending {
    connection: Box<dyn InboundConnection>,
    closed: Arc<AtomicBool>,
}

/// Inbound connections not yet accepted.
#[derive(Debug, Default)]
pub struct AcceptQueue {
    pending: Mutex<VecDeque<Pending>>,
    cond: Condvar,
}

impl AcceptQueue {
    /// Queue a connection; `closed` becomes true when it closes.
    pub fn push(&self, connection: Box<dyn InboundConnection>, closed: Arc<AtomicBool>) {
        let mut pending = self.pending.lock();
        pending.retain(|p| !p.closed.load(Ordering::Acquire));
        pending.push_back(Pending { connection, closed });
        self.cond.notify_one();
    }

    /// The oldest queued connection, waiting at most `timeout`.
    pub fn pop(&self, timeout: Duration) -> Result<Box<dyn InboundConnection>> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.pending.lock();
        loop {
            if let Some(p) = pending.pop_front() {
                return Ok(p.connection);
            }
            if self.cond.wait_until(&mut pending, deadline).timed_out() && pending.is_empty() {
                return Err(Error::Timeout {
                    op: "accept",
                    after: timeout,
                });
            }
        }
    }
}
