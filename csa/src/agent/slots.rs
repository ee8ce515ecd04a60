//! The agent's jobs: a slot each (a semaphore permit, so the agent never
//! runs more than its slots), and the table of jobs it runs or finished but
//! has not reported yet, which heartbeats describe.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use o3_transport::control::proto::csa::v1 as pb;
use parking_lot::Mutex;

use super::progress::Progress;

/// One job on this agent, keyed by (ticket, epoch).
#[derive(Debug)]
struct JobEntry {
    started: Instant,
    progress: Arc<Progress>,
    /// Set once the try finished: the files it wrote (deleted if fenced).
    written: Option<(PathBuf, Vec<PathBuf>)>,
}

/// Jobs in flight on this agent.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: Mutex<HashMap<(u64, u32), JobEntry>>,
}

impl JobTable {
    /// Starts tracking (ticket, epoch); its progress counter.
    pub fn start(&self, ticket: u64, epoch: u32) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        self.jobs.lock().insert(
            (ticket, epoch),
            JobEntry {
                started: Instant::now(),
                progress: Arc::clone(&progress),
                written: None,
            },
        );
        progress
    }

    /// The try finished, having written `files` in `dir`.
    pub fn finished(&self, ticket: u64, epoch: u32, dir: PathBuf, files: Vec<PathBuf>) {
        if let Some(entry) = self.jobs.lock().get_mut(&(ticket, epoch)) {
            entry.written = Some((dir, files));
        }
    }

    /// Stops tracking; whether it was still tracked (a cancelled finished
    /// job is removed by the heartbeat, which deleted its files).
    pub fn remove(&self, ticket: u64, epoch: u32) -> bool {
        self.jobs.lock().remove(&(ticket, epoch)).is_some()
    }

    /// A cancelled job: if it already finished, it stops being tracked and
    /// its files are returned for deletion. A running one runs to its end
    /// (the executor cannot be interrupted); its report is then fenced and
    /// its files deleted.
    pub fn cancel(&self, ticket: u64, epoch: u32) -> Option<(PathBuf, Vec<PathBuf>)> {
        let mut jobs = self.jobs.lock();
        if jobs
            .get(&(ticket, epoch))
            .is_some_and(|e| e.written.is_some())
        {
            return jobs.remove(&(ticket, epoch)).and_then(|e| e.written);
        }
        None
    }

    /// The jobs as a heartbeat lists them.
    pub fn running(&self) -> Vec<pb::RunningJob> {
        self.jobs
            .lock()
            .iter()
            .map(|(&(ticket, epoch), e)| pb::RunningJob {
                ticket,
                epoch,
                bytes_read: e.progress.bytes_read(),
                bytes_written: e.progress.bytes_written(),
                elapsed_ms: u64::try_from(e.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }
}
