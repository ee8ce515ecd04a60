//! Serving two-sided requests: a request the handler calls quick
//! ([`crate::verbs::RequestHandler::is_quick`]) runs inline on the
//! connection's receiving thread (no hand-off, the fastest round trip); any
//! other runs on a worker
//! of a bounded pool shared by the fabric's connections, so the handlers of
//! one connection run concurrently and a handler that waits for a later
//! request of its own connection does not deadlock it. Responses are
//! matched to requests by id, so they may leave out of request order.
//!
//! The pool starts threads on demand, up to its limit, and a thread idle
//! for [`IDLE_EXIT`] exits. When every worker is busy and
//! [`MAX_QUEUED`] requests wait, the receiving thread blocks in
//! [`Dispatcher::dispatch`]: back-pressure on the peer, like an RDMA
//! receiver that has no buffer posted.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::identity::PeerIdentity;
use crate::verbs::SharedHandler;

/// How long a pool thread waits for work before it exits.
pub const IDLE_EXIT: Duration = Duration::from_secs(5);
/// Requests waiting for a worker before receiving threads block.
pub const MAX_QUEUED: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// What a handler answered: the response, or the failure message.
pub type Answer = std::result::Result<Vec<u8>, String>;

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers alive.
    workers: usize,
}

struct Pool {
    name: String,
    max_workers: usize,
    state: Mutex<PoolState>,
    work: Condvar,
    space: Condvar,
}

/// A fabric's request handler and its worker pool.
pub struct Dispatcher {
    handler: SharedHandler,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("pool", &self.pool.name)
            .field("max_workers", &self.pool.max_workers)
            .finish()
    }
}

impl Dispatcher {
    /// Serve with `handler`, running at most `max_workers` (at least one)
    /// non-quick requests at once; `name` names the pool's threads.
    pub fn new(name: impl Into<String>, handler: SharedHandler, max_workers: usize) -> Arc<Self> {
        Arc::new(Dispatcher {
            handler,
            pool: Arc::new(Pool {
                name: name.into(),
                max_workers: max_workers.max(1),
                state: Mutex::new(PoolState::default()),
                work: Condvar::new(),
                space: Condvar::new(),
            }),
        })
    }

    /// The answer to `request` when the handler calls it quick (served here
    /// and now), else `None`: then [`Dispatcher::dispatch`] it.
    pub fn quick(&self, from: &PeerIdentity, request: &[u8]) -> Option<Answer> {
        self.handler
            .is_quick(request)
            .then(|| answer(&*self.handler, from, request))
    }

    /// Serve `request` from `from`; `respond` receives the answer exactly
    /// once, inline for a quick request, else on a pool worker. Fails only
    /// when no worker thread can be started (the request is then answered
    /// with the failure, so its caller is not left waiting).
    pub fn dispatch(
        &self,
        from: &Arc<PeerIdentity>,
        request: Vec<u8>,
        respond: impl FnOnce(Answer) + Send + 'static,
    ) -> Result<()> {
        if self.handler.is_quick(&request) {
            respond(answer(&*self.handler, from, &request));
            return Ok(());
        }
        let handler = Arc::clone(&self.handler);
        let from = Arc::clone(from);
        self.pool.submit(Box::new(move || {
            respond(answer(&*handler, &from, &request));
        }))
    }
}

/// The handler's answer; a panicking handler fails its request instead of
/// taking a thread down.
fn answer(
    handler: &dyn crate::verbs::RequestHandler,
    from: &PeerIdentity,
    request: &[u8],
) -> Answer {
    std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(from, request)))
        .unwrap_or_else(|_| Err("the request handler panicked".to_string()))
}

impl Pool {
    fn submit(self: &Arc<Self>, job: Job) -> Result<()> {
        let mut state = self.state.lock();
        while state.queue.len() >= MAX_QUEUED {
            self.space.wait(&mut state);
        }
        state.queue.push_back(job);
        if state.idle >= state.queue.len() {
            self.work.notify_one();
            return Ok(());
        }
        if state.workers >= self.max_workers {
            // Every worker is busy; the job waits for the first to finish.
            return Ok(());
        }
        state.workers += 1;
        drop(state);
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("o3-handler {}", self.name))
            .spawn(move || pool.work_loop());
        if let Err(e) = spawned {
            let mut state = self.state.lock();
            state.workers -= 1;
            if state.workers == 0 {
                // Nobody will ever run what is queued: run it here so every
                // caller gets an answer.
                let queued: Vec<Job> = state.queue.drain(..).collect();
                drop(state);
                queued.into_iter().for_each(|job| job());
            }
            return Err(Error::io("spawn a request handler thread", e));
        }
        Ok(())
    }

    fn work_loop(&self) {
        let mut state = self.state.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                self.space.notify_one();
                drop(state);
                job();
                state = self.state.lock();
                continue;
            }
            state.idle += 1;
            let timed_out = self.work.wait_for(&mut state, IDLE_EXIT).timed_out();
            state.idle -= 1;
            if timed_out && state.queue.is_empty() {
                state.workers -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;
    use crate::verbs::{NodeId, RequestHandler};

    struct Rendezvous {
        arrived: Mutex<bool>,
        cond: Condvar,
    }

    impl RequestHandler for Rendezvous {
        fn handle(&self, _: &PeerIdentity, request: &[u8]) -> Answer {
            let mut arrived = self.arrived.lock();
            if request == b"arrive" {
                *arrived = true;
                self.cond.notify_all();
                return Ok(b"arrived".to_vec());
            }
            let limit = std::time::Instant::now() + Duration::from_secs(10);
            while !*arrived {
                if self.cond.wait_until(&mut arrived, limit).timed_out() {
                    return Err("nobody arrived".into());
                }
            }
            Ok(b"met".to_vec())
        }
    }

    #[test]
    fn a_waiting_handler_does_not_hold_up_the_next_request() {
        let handler = Arc::new(Rendezvous {
            arrived: Mutex::new(false),
            cond: Condvar::new(),
        });
        let dispatcher = Dispatcher::new("test", handler, 2);
        let from = Arc::new(PeerIdentity {
            node: NodeId::from("peer"),
            method: AuthMethod::ClusterToken,
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        for request in [&b"wait"[..], b"arrive"] {
            let tx = tx.clone();
            dispatcher
                .dispatch(&from, request.to_vec(), move |a| {
                    let _ = tx.send(a);
                })
                .unwrap();
        }
        // A bound far above the rendezvous so that a serialising pool
        // fails the test instead of hanging it.
        let mut answers: Vec<Answer> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        answers.sort();
        assert_eq!(answers, vec![Ok(b"arrived".to_vec()), Ok(b"met".to_vec())]);
    }
}
