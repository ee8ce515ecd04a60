//! The executor seam: where a flush or compaction job runs.
//!
//! Every job goes claim → execute → install. The engine claims a job
//! (builds it, reserves its output file numbers, registers it with its
//! token), hands it to an [`Executor`], and installs whatever result comes
//! back through the job's [`Completion`], on whichever thread and however
//! late it arrives: installation checks the token, the reservation and the
//! inputs (see `jobs::registry`). The executor only computes; it never
//! changes the database's version.
//!
//! Two executors live here: the built-in local one (runs the job on the
//! worker thread that claimed it, lending open tables' indexes to the
//! compaction) and [`RoundTripExecutor`], which sends every job and result
//! through its byte encoding and runs it on a thread of its own: what a
//! remote executor does, minus the network, so the model tests can check
//! that placement does not change answers. Memory nodes and compaction
//! agents implement the same trait.

use std::borrow::Cow;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use o3_storage::Result;
use o3_storage::env::Storage;
use o3_storage::job::{CompactionJob, FlushJob, JobError, JobResult, JobToken};
use o3_storage::memtable::Memtable;

pub use crate::image_id::ImageId;
use crate::jobs::placement::{JobSummary, RemoteOffer};
use crate::offload::image::OffloadedImage;
use crate::offload::slot::{Held, ImageSlot};
use crate::stats::PlacementStats;
use crate::table_cache::TableCache;

/// This node as a place to run a job, for an executor's estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalLoad {
    /// Input bytes per second of a job here, when measured.
    pub bytes_per_sec: Option<f64>,
    /// Jobs running here now, flushes due and not yet started (shards
    /// with sealed memtables and no flush running), and how many jobs run
    /// at once (`max_background_jobs`): a job beyond waits for one to end.
    pub running: usize,
    pub waiting: usize,
    pub slots: usize,
}

/// Runs jobs. Implementations must call [`Completion::complete`] once per
/// submitted job (dropping the completion reports the job lost, and the
/// engine retries it).
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// A short name for logs ("local", "round-trip", a node's address).
    fn name(&self) -> &str;
    /// Start `job`; report its outcome through `done`, now or later, from
    /// any thread.
    fn submit(&self, job: Job, done: Completion);
    /// What this executor offers a compaction, for placement
    /// (`jobs::placement`). Called with the database's state lock held:
    /// answer from what is at hand, never wait. By default there is no
    /// cost model and every job comes here.
    fn offer(&self, _job: &JobSummary) -> RemoteOffer {
        RemoteOffer::Unconditional
    }
    /// Whether flushes may be sent here (a flush reads memtables that are
    /// in this process or on its memory node).
    fn runs_flushes(&self) -> bool {
        true
    }
    /// Whether this flush goes here (asked when [`Executor::runs_flushes`]
    /// is true; with the database's state lock held: answer from what is
    /// at hand), given how fast and how busy this node is. False runs it
    /// locally; the executor counts why.
    fn takes_flush(&self, _work: &FlushWork, _here: LocalLoad) -> bool {
        true
    }
    /// Into how many equal slices a compaction's reserved file numbers are
    /// cut: one per try the executor may make, so that two tries never
    /// write the same file.
    fn reservation_slices(&self) -> u32 {
        1
    }
    /// Add what the jobs sent here did to `stats` (a service's counters).
    fn fill_stats(&self, _stats: &mut PlacementStats) {}
}

/// A job as an executor receives it.
#[derive(Debug)]
pub enum Job {
    Flush(FlushWork),
    Compaction(CompactionJob),
}

impl Job {
    pub fn token(&self) -> JobToken {
        match self {
            Job::Flush(f) => f.job.token,
            Job::Compaction(c) => c.token,
        }
    }
}

/// A flush job and the sealed images it flushes, in the job's order.
#[derive(Debug)]
pub struct FlushWork {
    pub job: FlushJob,
    pub images: Vec<SealedImage>,
}

/// A sealed memtable image handed to an executor: in local memory, or on
/// a memory node (memtable offloading).
#[derive(Debug, Clone)]
pub struct SealedImage {
    id: ImageId,
    /// The memtable, when it was local when the flush claimed it (a claimed
    /// memtable is never shipped afterwards).
    local: Option<Arc<Memtable>>,
    slot: Arc<ImageSlot>,
}

impl SealedImage {
    pub(crate) fn new(id: ImageId, slot: Arc<ImageSlot>) -> SealedImage {
        SealedImage {
            id,
            local: slot.local(),
            slot,
        }
    }
    pub fn id(&self) -> ImageId {
        self.id
    }
    /// The image's bytes (position independent: they can be shipped as they
    /// are). Borrowed from the memtable while it is local; read back from
    /// the memory node with one-sided reads when it was offloaded (and, if
    /// the memory node lost it, rebuilt from the WAL first).
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        match &self.local {
            Some(m) => Ok(Cow::Borrowed(m.image_bytes()?)),
            None => Ok(Cow::Owned(self.slot.image_bytes()?)),
        }
    }
    /// The local memtable, if the flush may read it in place.
    pub(crate) fn memtable(&self) -> Option<&Arc<Memtable>> {
        self.local.as_ref()
    }
    /// The shipped image, when it is on a memory node now.
    pub(crate) fn offloaded(&self) -> Option<Arc<OffloadedImage>> {
        match self.slot.held() {
            Held::Offloaded(image) if self.local.is_none() => Some(image),
            _ => None,
        }
    }
}

type CompletionFn = Box<dyn FnOnce(Result<JobResult>) + Send>;

/// Where an executor reports a job's outcome. Reporting twice is impossible
/// (it is consumed); never reporting is reported for it when it is dropped.
pub struct Completion {
    token: JobToken,
    executor: String,
    summary: Option<JobSummary>,
    report: Option<CompletionFn>,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("token", &self.token)
            .field("executor", &self.executor)
            .finish()
    }
}

impl Completion {
    pub(crate) fn new(
        token: JobToken,
        executor: &str,
        report: impl FnOnce(Result<JobResult>) + Send + 'static,
    ) -> Completion {
        Completion {
            token,
            executor: executor.to_string(),
            summary: None,
            report: Some(Box::new(report)),
        }
    }
    pub(crate) fn with_summary(mut self, summary: Option<JobSummary>) -> Completion {
        self.summary = summary;
        self
    }
    /// The token of the job this completes.
    pub fn token(&self) -> JobToken {
        self.token
    }
    /// What placement knew of the compaction (level, score, input bytes);
    /// `None` for flushes.
    pub fn summary(&self) -> Option<&JobSummary> {
        self.summary.as_ref()
    }
    /// Report the job's outcome.
    pub fn complete(mut self, outcome: Result<JobResult>) {
        if let Some(report) = self.report.take() {
            report(outcome);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            report(Err(JobError::NodeUnavailable {
                node: self.executor.clone(),
                reason: format!("job {} was dropped without a result", self.token),
            }
            .into()));
        }
    }
}

/// Runs each job on the thread that submits it (the worker that claimed
/// it), with the database's own storage; compactions borrow the decoded
/// indexes of tables that readers have open.
#[derive(Debug)]
pub(crate) struct LocalExecutor {
    storage: Arc<dyn Storage>,
    table_cache: Arc<TableCache>,
}

impl LocalExecutor {
    pub(crate) fn new(storage: Arc<dyn Storage>, table_cache: Arc<TableCache>) -> LocalExecutor {
        LocalExecutor {
            storage,
            table_cache,
        }
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &str {
        "local"
    }
    fn submit(&self, job: Job, done: Completion) {
        let outcome = match &job {
            Job::Flush(work) => flush_here(&work.job, &work.images, self.storage.as_ref()),
            Job::Compaction(c) => c.execute_with_indexes(self.storage.as_ref(), &|number| {
                self.table_cache
                    .get_if_open(number)
                    .map(|t| t.shared_index())
            }),
        };
        done.complete(outcome);
    }
}

/// An executor that treats every job as a remote one would: the job is
/// encoded to bytes, decoded on a thread of its own, executed from the
/// decoded copy (flush images copied out of the memtables), and the result
/// encoded and decoded again before it is reported. Completion is therefore
/// asynchronous, and anything the encodings lose would show as a wrong
/// answer. Meant for tests and for measuring the seam's cost.
#[derive(Debug)]
pub struct RoundTripExecutor {
    queue: Sender<(Job, Completion)>,
}

impl RoundTripExecutor {
    /// An executor writing outputs to `storage` from `threads` threads of its
    /// own (at least one). The threads end when the executor is dropped.
    pub fn new(storage: Arc<dyn Storage>, threads: usize) -> Result<Arc<RoundTripExecutor>> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Job, Completion)>();
        for i in 0..threads.max(1) {
            let (rx, storage) = (rx.clone(), storage.clone());
            std::thread::Builder::new()
                .name(format!("o3-round-trip-{i}"))
                .spawn(move || round_trip_worker(&rx, storage.as_ref()))
                .map_err(|e| o3_storage::Error::io("round-trip executor thread", e))?;
        }
        Ok(Arc::new(RoundTripExecutor { queue: tx }))
    }
}

impl Executor for RoundTripExecutor {
    fn name(&self) -> &str {
        "round-trip"
    }
    fn submit(&self, job: Job, done: Completion) {
        // A send fails only once every thread is gone; the completion is
        // then dropped with the message, which reports the job lost.
        let _ = self.queue.send((job, done));
    }
}

fn round_trip_worker(rx: &Receiver<(Job, Completion)>, storage: &dyn Storage) {
    while let Ok((job, done)) = rx.recv() {
        let outcome = run_from_bytes(&job, storage)
            .and_then(|r| r.to_bytes())
            .and_then(|bytes| JobResult::from_bytes(&bytes));
        done.complete(outcome);
    }
}

/// Run a flush in this process: through the memtables' own skiplists when
/// every image is local, else from the bytes (offloaded images read back).
fn flush_here(job: &FlushJob, images: &[SealedImage], storage: &dyn Storage) -> Result<JobResult> {
    let local: Option<Vec<Arc<Memtable>>> = images.iter().map(|i| i.memtable().cloned()).collect();
    match local {
        Some(mems) => job.execute_local(storage, &mems),
        None => {
            let bytes: Vec<Cow<'_, [u8]>> = images
                .iter()
                .map(SealedImage::bytes)
                .collect::<Result<_>>()?;
            let slices: Vec<&[u8]> = bytes.iter().map(|b| b.as_ref()).collect();
            job.execute(storage, &slices)
        }
    }
}

fn run_from_bytes(job: &Job, storage: &dyn Storage) -> Result<JobResult> {
    match job {
        Job::Flush(work) => {
            let decoded = FlushJob::from_bytes(&work.job.to_bytes()?)?;
            let copies: Vec<Vec<u8>> = work
                .images
                .iter()
                .map(|i| i.bytes().map(Cow::into_owned))
                .collect::<Result<_>>()?;
            let images: Vec<&[u8]> = copies.iter().map(Vec::as_slice).collect();
            decoded.execute(storage, &images)
        }
        Job::Compaction(c) => CompactionJob::from_bytes(&c.to_bytes()?)?.execute(storage),
    }
}
