//! The queue of writers waiting for a group-commit leader, and a group's
//! memtable inserts run by its writers at once ([`GroupInsert`]; the
//! protocol is in `write`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use o3_storage::batch::WriteBatch;
use o3_storage::job::shard_of;
use o3_storage::memtable::Memtable;
use o3_storage::{Error, Result};

/// A queued writer: its id, its batch and whether it asked for a sync.
pub(crate) type Queued = (u64, WriteBatch, bool);

/// What a waiting writer finds once a leader took its batch.
pub(crate) enum Outcome {
    /// The group is committed (or failed): the writer returns this.
    Done(std::result::Result<(), String>),
    /// The group is in the WAL: the writer inserts batch `.1` of the group
    /// into the memtables itself, then waits until the group is visible.
    Insert(Arc<GroupInsert>, usize),
}

#[derive(Default)]
pub(crate) struct QueueState {
    pub waiting: VecDeque<Queued>,
    pub results: HashMap<u64, Outcome>,
    /// The last group's vector, kept for the next leader's group so that a
    /// lone writer does not allocate one per write.
    pub spare: Vec<Queued>,
    pub leader_active: bool,
    pub next_id: u64,
}

/// Writers waiting for a leader.
#[derive(Default)]
pub(crate) struct WriteQueue {
    pub state: Mutex<QueueState>,
    pub cv: Condvar,
    /// Leaderships handed back (groups committed or handed to their
    /// writers to insert, exclusive sections ended): a waiting writer polls
    /// it before it sleeps.
    handoffs: AtomicU64,
}

/// How long a waiting writer polls for the leadership to change hands
/// before it sleeps on the condition variable. A group commit takes a few
/// microseconds; a sleep and wake-up of the follower costs as much again
/// and, worse, sits on the critical path of every write once two writers
/// take turns (measured: two fillrandom threads wrote fewer keys per second
/// than one). RocksDB's writers wait the same way (adaptive yield).
const POLL_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// The first part of the poll spins on the core (a group commit usually
/// ends within it); the rest yields the core to others between looks, so
/// that writers outnumbering the cores do not starve the leader.
const SPIN_BEFORE_YIELD: Duration = Duration::from_micros(10);

impl WriteQueue {
    /// Wait until the leadership changes hands (or, after
    /// [`POLL_BEFORE_SLEEP`] of polling, until woken): first polling with
    /// the lock released, yielding the core, then on the condition
    /// variable. The caller checks its condition again after each return.
    pub fn wait(&self, st: &mut MutexGuard<'_, QueueState>) {
        let seen = self.handoffs.load(Ordering::Acquire);
        let handed = MutexGuard::unlocked(st, || {
            poll(
                || self.handoffs.load(Ordering::Acquire) != seen,
                POLL_BEFORE_SLEEP,
            )
        });
        if !handed && self.handoffs.load(Ordering::Acquire) == seen {
            self.cv.wait(st);
        }
    }

    /// Hand the leadership back (with the state locked) and wake the
    /// waiting writers.
    pub fn hand_off(&self, st: &mut QueueState) {
        st.leader_active = false;
        self.handoffs.fetch_add(1, Ordering::AcqRel);
        self.cv.notify_all();
    }

    /// Become the leader without a batch: no group commits until the
    /// returned guard is dropped (writers queue up meanwhile). Groups
    /// logged before may still be inserting: `write::wait_all_visible`
    /// waits for them.
    pub fn exclusive(&self) -> ExclusiveWrites<'_> {
        let mut st = self.state.lock();
        while st.leader_active {
            self.wait(&mut st);
        }
        st.leader_active = true;
        ExclusiveWrites { queue: self }
    }
}

/// Leadership held by [`WriteQueue::exclusive`]; handed back on drop.
pub(crate) struct ExclusiveWrites<'a> {
    queue: &'a WriteQueue,
}

impl Drop for ExclusiveWrites<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.state.lock();
        self.queue.hand_off(&mut st);
    }
}

/// One group's memtable inserts, run by its writers at once: the leader has
/// written the group to the WAL, given every batch its sequences and made
/// room for the whole group in every shard's active memtable (these, held
/// here, are not sealed before the group is visible: whoever seals waits
/// for that). Each writer inserts its own batch ([`GroupInsert::insert`]);
/// the leader waits for all of them and for the groups before, publishes
/// the group's sequences and then [`GroupInsert::finish`]es it, which
/// releases the other writers. A batch here holds no range deletion.
pub(crate) struct GroupInsert {
    batches: Vec<Queued>,
    /// Active memtable of each shard.
    memtables: Vec<Arc<Memtable>>,
    splits: Arc<Vec<Vec<u8>>>,
    /// Batches not inserted yet.
    pending: AtomicUsize,
    /// Key + value bytes inserted per shard, and whether any entry went there.
    written: Vec<AtomicU64>,
    touched: Vec<AtomicBool>,
    /// The first insert error.
    error: Mutex<Option<String>>,
    /// 0 while running; [`FINISHED_OK`] or [`FINISHED_FAILED`] once the
    /// leader is done with the group.
    finished: AtomicU8,
}

const FINISHED_OK: u8 = 1;
const FINISHED_FAILED: u8 = 2;

impl GroupInsert {
    /// The memtable the group inserts into in each shard.
    pub fn memtables(&self) -> &[Arc<Memtable>] {
        &self.memtables
    }

    pub fn new(
        batches: Vec<Queued>,
        memtables: Vec<Arc<Memtable>>,
        splits: Arc<Vec<Vec<u8>>>,
    ) -> GroupInsert {
        let shards = memtables.len();
        GroupInsert {
            pending: AtomicUsize::new(batches.len()),
            batches,
            memtables,
            splits,
            written: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            touched: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            error: Mutex::new(None),
            finished: AtomicU8::new(0),
        }
    }

    pub fn batches(&self) -> &[Queued] {
        &self.batches
    }

    /// Insert batch `i` (each batch exactly once) and count it done, also
    /// when an insert fails (the first error is kept for the group).
    pub fn insert(&self, i: usize) -> Result<()> {
        let r = self.insert_batch(&self.batches[i].1);
        if let Err(e) = &r {
            self.error.lock().get_or_insert_with(|| e.to_string());
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn insert_batch(&self, batch: &WriteBatch) -> Result<()> {
        let base = batch.sequence();
        // Bytes are added to the shared per-shard counters once per run of
        // entries in one shard, not once per entry.
        let mut run: Option<(usize, u64)> = None;
        for (i, op) in batch.iter().enumerate() {
            let kind = op.kind.entry_kind().ok_or_else(|| {
                Error::InvalidArgument("a range deletion in a parallel insert".into())
            })?;
            let shard = shard_of(&self.splits, op.key) as usize;
            self.memtables[shard].insert_concurrent(op.key, base + i as u64, kind, op.value)?;
            let bytes = (op.key.len() + op.value.len()) as u64;
            match &mut run {
                Some((s, b)) if *s == shard => *b += bytes,
                _ => {
                    if let Some((s, b)) = run.replace((shard, bytes)) {
                        self.count_written(s, b);
                    }
                }
            }
        }
        if let Some((s, b)) = run {
            self.count_written(s, b);
        }
        Ok(())
    }

    fn count_written(&self, shard: usize, bytes: u64) {
        self.touched[shard].store(true, Ordering::Relaxed);
        self.written[shard].fetch_add(bytes, Ordering::Relaxed);
    }

    /// The leader's wait for every batch to be inserted; the first error.
    pub fn wait_inserted(&self) -> std::result::Result<(), String> {
        wait_until(|| self.pending.load(Ordering::Acquire) == 0);
        match self.error.lock().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Shards that got entries, with the key + value bytes written to each
    /// (complete once [`GroupInsert::wait_inserted`] returned).
    pub fn written(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.touched
            .iter()
            .zip(&self.written)
            .enumerate()
            .filter(|(_, (t, _))| t.load(Ordering::Relaxed))
            .map(|(shard, (_, w))| (shard, w.load(Ordering::Relaxed)))
    }

    /// The leader is done: the group is visible (`ok`) or failed.
    pub fn finish(&self, ok: bool) {
        let state = if ok { FINISHED_OK } else { FINISHED_FAILED };
        self.finished.store(state, Ordering::Release);
    }

    /// A writer's wait for the leader to finish the group; its outcome.
    pub fn wait_finished(&self) -> std::result::Result<(), String> {
        wait_until(|| self.finished.load(Ordering::Acquire) != 0);
        if self.finished.load(Ordering::Acquire) == FINISHED_OK {
            return Ok(());
        }
        Err(match self.error.lock().clone() {
            Some(e) => format!("group commit failed: {e}"),
            None => "group commit failed".into(),
        })
    }
}

/// Poll `done` until it holds (true) or `limit` has passed (false):
/// spinning on the core for [`SPIN_BEFORE_YIELD`] (what is awaited usually
/// happens within it), then yielding the core between looks, so that
/// writers outnumbering the cores do not starve the one they wait for.
pub(crate) fn poll(done: impl Fn() -> bool, limit: Duration) -> bool {
    if done() {
        // The usual case on a writer's path: no clock read.
        return true;
    }
    let start = Instant::now();
    loop {
        let waited = start.elapsed();
        if waited >= limit {
            return false;
        }
        if waited < SPIN_BEFORE_YIELD {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
        if done() {
            return true;
        }
    }
}

/// Wait for `done`, which another writer makes true with a few
/// microseconds of work that never waits on this thread.
fn wait_until(done: impl Fn() -> bool) {
    poll(done, Duration::MAX);
}
