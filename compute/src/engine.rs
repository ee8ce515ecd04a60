//! The engine: the state every part of a running database shares (the
//! handle, the writers, the readers, the background workers and the job
//! installation), and the few operations on it that all of them need —
//! refusing work after a fatal error, publishing a super version, the oldest
//! snapshot a job must keep.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};

use o3_storage::compaction::CompactionStrategy;
use o3_storage::env::{FileLock, Storage};
use o3_storage::key::SequenceNumber;
use o3_storage::version::VersionSet;
use o3_storage::wal::LogWriter;
use o3_storage::{Error, Result};

use crate::jobs::executor::{Executor, LocalExecutor};
use crate::jobs::placement::{PlacementPolicy, Placer};
use crate::jobs::registry::Incarnation;
use crate::jobs::service::ServiceExecutor;
use crate::offload::runtime::Offload;
use crate::options::DbOptions;
use crate::snapshot::SnapshotList;
use crate::state::{DbState, SuperVersion};
use crate::stats::Counters;
use crate::table_cache::TableCache;
use crate::write_queue::WriteQueue;

/// The current WAL segment.
pub(crate) struct WalState {
    pub writer: Option<LogWriter>,
}

/// Shared by the handle and the background threads.
pub(crate) struct Engine {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub options: DbOptions,
    pub strategy: Box<dyn CompactionStrategy>,
    pub state: Mutex<DbState>,
    /// Signalled whenever background work may be available or has finished.
    pub bg_cv: Condvar,
    /// Lock order: `wal` → `versions` → `state` (any suffix of it; never
    /// backwards).
    pub versions: Mutex<VersionSet>,
    pub wal: Mutex<WalState>,
    pub super_version: RwLock<Arc<SuperVersion>>,
    pub write_queue: WriteQueue,
    /// Highest sequence whose batch is fully applied (readers see up to it).
    pub visible_seq: AtomicU64,
    /// Highest sequence assigned (only the write leader changes it).
    pub last_seq: AtomicU64,
    pub table_cache: Arc<TableCache>,
    pub snapshots: SnapshotList,
    pub counters: Counters,
    pub shutting_down: AtomicBool,
    /// Set by a failed WAL or manifest write: the database refuses writes and
    /// must be reopened. The first error stays; every write checks it, so it
    /// is read without a lock.
    pub bg_error: std::sync::OnceLock<String>,
    /// Where jobs run ([`DbOptions::executor`], else `local_executor`).
    pub executor: Arc<dyn Executor>,
    /// Runs jobs on the worker thread that claimed them; also where a job
    /// goes after the configured executor could not be reached.
    pub local_executor: Arc<dyn Executor>,
    /// Where each job runs when `executor` is not the local one.
    pub placer: Placer,
    /// Which open of which database this is (the fencing of job results).
    pub incarnation: Incarnation,
    /// Jobs handed to an executor whose report has not finished yet
    /// (outside the engine: a report may outlive it). Closing waits for
    /// them, so no executor thread still holds the engine — and the
    /// database lock — after `Db::close` returns.
    pub pending_reports: Arc<AtomicUsize>,
    /// Memtable offloading, when [`DbOptions::offload`] asks for it.
    pub offload: Option<Arc<Offload>>,
    /// Set by the write leader when the shard balancer asked for new split
    /// keys (`DbState::resplit_due`): the writer that sees it moves them
    /// (`reshard`) once its own write is done.
    pub resplit_pending: AtomicBool,
    _lock: Box<dyn FileLock>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.dir).finish()
    }
}

impl Engine {
    /// Whether flushes may run elsewhere (a flush-placing executor).
    pub(crate) fn flushes_leave(&self) -> bool {
        !Arc::ptr_eq(&self.executor, &self.local_executor) && self.executor.runs_flushes()
    }

    /// Assemble the shared state (called by recovery once the WAL is replayed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        options: DbOptions,
        versions: VersionSet,
        state: DbState,
        wal: WalState,
        last_seq: SequenceNumber,
        table_cache: Arc<TableCache>,
        lock: Box<dyn FileLock>,
    ) -> Result<Engine> {
        let strategy: Box<dyn CompactionStrategy> = options.compaction.build()?;
        let local_executor: Arc<dyn Executor> =
            Arc::new(LocalExecutor::new(storage.clone(), table_cache.clone()));
        let executor = match (&options.executor, &options.compaction_service) {
            (Some(e), _) => e.clone(),
            (None, Some(service)) => ServiceExecutor::start(service, &dir)?,
            (None, None) => local_executor.clone(),
        };
        let placer = match &options.compaction_service {
            Some(s) => Placer::new(s.policy, s.busy_threshold),
            None => Placer::new(PlacementPolicy::Auto, 0.5),
        };
        let incarnation = Incarnation {
            db_id: versions.db_id(),
            incarnation: versions.incarnation(),
            first_file_number: versions.next_file_number(),
        };
        let offload = match &options.offload {
            Some(o) => Some(Arc::new(Offload::open(o)?)),
            None => None,
        };
        let version = versions.current();
        let sv = state.super_version(
            version.clone(),
            strategy.pending_compaction_bytes(&version),
            None,
        );
        Ok(Engine {
            strategy,
            dir,
            storage,
            options,
            state: Mutex::new(state),
            bg_cv: Condvar::new(),
            versions: Mutex::new(versions),
            wal: Mutex::new(wal),
            super_version: RwLock::new(sv),
            write_queue: WriteQueue::default(),
            visible_seq: AtomicU64::new(last_seq),
            last_seq: AtomicU64::new(last_seq),
            table_cache,
            snapshots: SnapshotList::default(),
            counters: Counters::default(),
            shutting_down: AtomicBool::new(false),
            bg_error: std::sync::OnceLock::new(),
            executor,
            local_executor,
            placer,
            incarnation,
            pending_reports: Arc::new(AtomicUsize::new(0)),
            offload,
            resplit_pending: AtomicBool::new(false),
            _lock: lock,
        })
    }

    /// Fail with [`Error::Poisoned`] if an earlier background error poisoned the database.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        match self.bg_error.get() {
            Some(msg) => Err(Error::Poisoned(msg.clone())),
            None => Ok(()),
        }
    }

    /// Record an error after which the database must not accept writes.
    pub(crate) fn poison(&self, e: &Error) {
        let _st = self.state.lock();
        self.poison_locked(e);
    }

    /// [`Engine::poison`] for a caller that holds the state lock (waiters
    /// check the error under it, so none misses the wake-up).
    pub(crate) fn poison_locked(&self, e: &Error) {
        if self.bg_error.set(e.to_string()).is_ok() {
            tracing::error!("database {} poisoned: {e}", self.dir.display());
        }
        self.bg_cv.notify_all();
    }

    /// Publish a new super version built from `state` and `version`.
    pub(crate) fn install_super_version(
        &self,
        state: &DbState,
        version: Arc<o3_storage::version::Version>,
    ) {
        let pending = self.strategy.pending_compaction_bytes(&version);
        let previous = self.super_version.read().clone();
        *self.super_version.write() = state.super_version(version, pending, Some(&previous));
    }

    /// The current shard split keys (those of the published super version).
    pub(crate) fn shard_splits(&self) -> Arc<Vec<Vec<u8>>> {
        self.super_version.read().splits.clone()
    }

    /// The oldest sequence any reader may still ask for. Callers building a
    /// job hold the state lock (see [`Db::snapshot`]).
    pub(crate) fn smallest_snapshot(&self) -> SequenceNumber {
        let visible = self.visible_seq.load(Ordering::Acquire);
        self.snapshots.oldest().unwrap_or(visible).min(visible)
    }
}
