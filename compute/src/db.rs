//! The database handle: opening, the public API, and shutdown.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use o3_storage::batch::WriteBatch;
use o3_storage::filename::{current_path, lock_path};
use o3_storage::job::{CompactionJob, JobResult};
use o3_storage::sst::BlockCache;
use o3_storage::version::{VersionEdit, VersionSet};
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::key_range::KeyRange;
use crate::options::DbOptions;
use crate::options_file::{self, OptionsFile};
use crate::range_iter::DbRange;
use crate::read::{DbIterator, ReadOptions};
use crate::snapshot::Snapshot;
use crate::state::SuperVersion;
use crate::stats::{DbStats, LevelStats, ShardStats};
use crate::table_cache::TableCache;

/// Options for one write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Sync the WAL before acknowledging (survives a machine crash).
    /// `None` uses [`DbOptions::sync_writes`].
    pub sync: Option<bool>,
}

/// An o3 database in embedded mode.
#[derive(Debug)]
pub struct Db {
    pub(crate) inner: Arc<Engine>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Db {
    /// Open (or create) the database in `path`.
    pub fn open(path: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        // Everything that can be refused without looking at the directory is
        // refused before it is created.
        options.validate()?;
        let options_file = OptionsFile::from_options(&options)?;
        let dir = path.as_ref().to_path_buf();
        let storage = options.storage.clone();
        if !options.create_if_missing && !storage.exists(&current_path(&dir)) {
            return Err(Error::InvalidArgument(format!(
                "database {} does not exist (create_if_missing is off)",
                dir.display()
            )));
        }
        storage.create_dir_all(&dir)?;
        let lock = storage.lock(&lock_path(&dir))?;
        let exists = storage.exists(&current_path(&dir));
        if exists && options.error_if_exists {
            return Err(Error::InvalidArgument(format!(
                "database {} already exists (error_if_exists is set)",
                dir.display()
            )));
        }
        if !exists && !options.create_if_missing {
            return Err(Error::InvalidArgument(format!(
                "database {} does not exist (create_if_missing is off)",
                dir.display()
            )));
        }
        // Tiered levels own several physical levels (one sorted run each).
        let num_levels = options.compaction.physical_levels()?;
        let stored_options = if exists {
            OptionsFile::read(storage.as_ref(), &dir)?
        } else {
            None
        };
        if let Some(stored) = &stored_options {
            stored.check_compatible(&options_file, &dir)?;
        }
        let versions = if exists {
            let (vs, recovered) = VersionSet::recover(storage.clone(), &dir, num_levels)?;
            // A database from before the options file: the manifest is the
            // record of its split keys.
            if stored_options.is_none() && !options.adaptive_shards {
                options_file::check_manifest_splits(vs.shard_splits(), &options.shard_splits)?;
            }
            if let Some((offset, reason)) = recovered.torn_tail {
                tracing::warn!(
                    "manifest {} ended in a torn record at offset {offset} ({reason}); the unfinished edit was dropped",
                    recovered.manifest_number
                );
            }
            vs
        } else {
            // Before CURRENT exists: a database that has a CURRENT has an
            // OPTIONS file (unless it predates the file).
            options_file.write(storage.as_ref(), &dir)?;
            VersionSet::create(
                storage.clone(),
                &dir,
                num_levels,
                options.shard_splits.clone(),
            )?
        };
        let block_cache =
            BlockCache::with_admission(options.block_cache_size, options.block_cache_admission);
        let table_cache = Arc::new(TableCache::new(dir.clone(), storage.clone(), block_cache));
        let inner = crate::recovery::recover(dir, storage, options, versions, table_cache, lock)?;
        if exists && stored_options.as_ref() != Some(&options_file) {
            // Missing (an older database) or recording another open's
            // informational options.
            options_file.write(inner.storage.as_ref(), &inner.dir)?;
        }
        let inner = Arc::new(inner);
        let db = Db {
            workers: Mutex::new({
                let mut threads = crate::scheduler::start_workers(&inner);
                threads.extend(crate::offload::ship::start_shippers(&inner));
                threads
            }),
            inner,
        };
        Ok(db)
    }

    /// Write `key → value`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::with_capacity(WriteBatch::encoded_op_len(key.len(), value.len()));
        b.put(key, value);
        self.write(b)
    }

    /// Delete `key`.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::with_capacity(WriteBatch::encoded_op_len(key.len(), 0));
        b.delete(key);
        self.write(b)
    }

    /// Delete every key in `[start, end)` (RocksDB's `DeleteRange`): one
    /// range tombstone, written in O(1) however many keys the range holds.
    /// Reads, scans and snapshots taken afterwards no longer see those keys;
    /// compactions remove them from disk, and the tombstone itself once
    /// nothing it deletes is left. `start == end` deletes nothing;
    /// `start > end` is an invalid argument. For deletions in a batch use
    /// [`WriteBatch::delete_range`].
    ///
    /// ```
    /// # fn main() -> o3_compute::Result<()> {
    /// # let dir = tempfile::tempdir().map_err(|e| o3_compute::Error::io("tempdir", e))?;
    /// use o3_compute::{Db, DbOptions};
    ///
    /// let db = Db::open(dir.path(), DbOptions::default())?;
    /// for k in [&b"apple"[..], b"banana", b"cherry", b"date"] {
    ///     db.put(k, b"fruit")?;
    /// }
    /// db.delete_range(b"banana", b"date")?; // banana and cherry
    /// assert_eq!(db.get(b"banana")?, None);
    /// assert_eq!(db.get(b"date")?, Some(b"fruit".to_vec()));
    /// let keys: Vec<Vec<u8>> = db.scan(.., false)?.into_iter().map(|(k, _)| k).collect();
    /// assert_eq!(keys, [b"apple".to_vec(), b"date".to_vec()]);
    /// assert!(db.delete_range(b"z", b"a").is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut b = WriteBatch::with_capacity(WriteBatch::encoded_op_len(start.len(), end.len()));
        b.delete_range(start, end);
        self.write(b)
    }

    /// Apply a batch atomically with the default write options.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_opt(batch, WriteOptions::default())
    }

    /// Apply a batch atomically.
    pub fn write_opt(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        let sync = opts.sync.unwrap_or(self.inner.options.sync_writes);
        crate::write::write(&self.inner, batch, sync)?;
        // The shard balancer asked for new split keys: this writer moves
        // them (its write is done; writes wait meanwhile).
        if self.inner.resplit_pending.load(Ordering::Relaxed) {
            crate::reshard::run_due(&self.inner);
        }
        Ok(())
    }

    /// Move the shard boundaries of an adaptive database
    /// ([`DbOptions::adaptive_shards`]) to `splits` now (strictly increasing,
    /// non-empty keys; `n` keys make `n + 1` shards): every memtable is
    /// flushed, then the new keys are recorded in the manifest. Writes wait
    /// meanwhile. The balancer does this on its own; this is for tools and
    /// tests.
    pub fn reshard(&self, splits: Vec<Vec<u8>>) -> Result<()> {
        crate::reshard::reshard(&self.inner, splits)
    }

    /// The current shard split keys.
    pub fn shard_splits(&self) -> Vec<Vec<u8>> {
        self.inner.shard_splits().to_vec()
    }

    /// Make every write acknowledged so far durable (it survives a machine
    /// crash) without flushing memtables: sync the current WAL segment
    /// (RocksDB's `SyncWAL`; earlier segments were synced when they were
    /// closed). For writes made with `sync: false`.
    pub fn sync_wal(&self) -> Result<()> {
        self.flush_wal(true)
    }

    /// Hand buffered WAL bytes to the operating system, so they survive a
    /// process crash, and with `sync` also make them durable (RocksDB's
    /// `FlushWAL`). Every write already hands its record over before it is
    /// acknowledged, so `flush_wal(false)` matters only after a failure
    /// left bytes buffered; `flush_wal(true)` is [`Db::sync_wal`]. A failure
    /// stops the database from accepting writes, like a failed WAL write.
    pub fn flush_wal(&self, sync: bool) -> Result<()> {
        let inner = &self.inner;
        inner.check_poisoned()?;
        if inner.options.disable_wal {
            return Err(Error::InvalidArgument(
                "the WAL is disabled (DbOptions::disable_wal): there is nothing to flush or sync"
                    .into(),
            ));
        }
        let mut wal = inner.wal.lock();
        let w = wal.writer.as_mut().ok_or(Error::Closed("WAL"))?;
        let result = if sync { w.sync() } else { w.flush() };
        if let Err(e) = &result {
            inner.poison(e);
        }
        result
    }

    /// The newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        crate::read::get(&self.inner, key, None)
    }

    /// The value of `key` as of `snapshot` (one taken from this database).
    pub fn get_at(&self, key: &[u8], snapshot: &Snapshot) -> Result<Option<Vec<u8>>> {
        crate::read::get(&self.inner, key, Some(snapshot))
    }

    /// The newest values of several keys, read from one consistent state;
    /// answers are in the order of `keys`. Cheaper than one `get` per key:
    /// one sequence and one super version for the whole batch, probes in
    /// key order.
    pub fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        crate::read::multi_get(&self.inner, keys, None)
    }

    /// Like [`Db::multi_get`], as of `snapshot`.
    pub fn multi_get_at(
        &self,
        keys: &[&[u8]],
        snapshot: &Snapshot,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        crate::read::multi_get(&self.inner, keys, Some(snapshot))
    }

    /// Pin the current state for consistent reads.
    pub fn snapshot(&self) -> Snapshot {
        // Every flush and compaction reads the oldest live snapshot under
        // the state lock when it is built; reading the sequence and
        // registering it under the same lock makes the two one step, so no
        // job can start between them and drop a version this snapshot sees.
        let _st = self.inner.state.lock();
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        self.inner.snapshots.acquire(seq)
    }

    /// A cursor over the database (both directions, seeks, optional bounds
    /// and snapshot in `opts`).
    pub fn iter(&self, opts: ReadOptions) -> Result<DbIterator> {
        crate::read::iter(&self.inner, opts)
    }

    /// The pairs whose keys lie in `range`, as an iterator (`.rev()` walks
    /// it backwards). Keys may be anything that is bytes (see [`KeyRange`]):
    /// `"a".."m"`, `b"a".as_slice()..=b"m".as_slice()`, `key..`, `..`.
    pub fn range(&self, range: impl KeyRange) -> DbRange {
        self.range_with(ReadOptions::default().bounded(range))
    }

    /// Like [`Db::range`], as of `snapshot`.
    pub fn range_at(&self, range: impl KeyRange, snapshot: &Snapshot) -> DbRange {
        self.range_with(ReadOptions::at(snapshot).bounded(range))
    }

    /// The pairs whose keys start with `prefix`, as an iterator.
    pub fn prefix(&self, prefix: &[u8]) -> DbRange {
        self.range_with(ReadOptions::default().prefix(prefix))
    }

    /// The pairs within `opts`' bounds, as of its snapshot, as an iterator.
    pub fn range_with(&self, opts: ReadOptions) -> DbRange {
        let view = crate::read::view(&self.inner, opts.snapshot.as_ref());
        DbRange::new(view, opts.lower, opts.upper)
    }

    /// Every `(key, value)` in `range` collected into a `Vec`, ascending
    /// (`reverse = false`) or descending. [`Db::range`] does the same
    /// without holding the whole result in memory.
    pub fn scan<R: KeyRange>(&self, range: R, reverse: bool) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_at(range, reverse, None)
    }

    /// Like [`Db::scan`], as of `snapshot`.
    pub fn scan_at<R: KeyRange>(
        &self,
        range: R,
        reverse: bool,
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let opts = ReadOptions {
            snapshot: snapshot.cloned(),
            ..ReadOptions::default()
        };
        let range = self.range_with(opts.bounded(range));
        if reverse {
            range.rev().collect()
        } else {
            range.collect()
        }
    }

    /// Seal every non-empty memtable and wait until all are in SSTs.
    pub fn flush(&self) -> Result<()> {
        crate::manual::flush_all(&self.inner)
    }

    /// Flush, then compact every level's files overlapping `[lo, hi]`
    /// (user keys, inclusive; `None` = unbounded) down to the last level.
    pub fn compact_range(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Result<()> {
        self.flush()?;
        crate::manual::compact_range(&self.inner, lo, hi)
    }

    /// Wait until no flush or compaction is due or running (sealed
    /// memtables flushed, no job in flight, nothing for the compaction
    /// strategy to pick); writes made meanwhile may start new work.
    pub fn wait_for_compactions(&self) -> Result<()> {
        crate::manual::wait_idle(&self.inner)
    }

    /// Write a consistent, openable copy of the database into `dir`, a new
    /// directory of the same storage (it must not exist yet), while the
    /// database keeps running: SSTs are hard-linked (copied where linking
    /// fails), the WAL segments still needed are copied, and a fresh
    /// manifest, `CURRENT` and `OPTIONS` are written and synced. The copy
    /// holds every write acknowledged before the call and is the state at
    /// one instant (never a later write without an earlier one); afterwards
    /// the two databases evolve independently. With `disable_wal` the
    /// memtables are flushed first, and writes racing with the call may be
    /// partly in the copy.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        crate::checkpoint::checkpoint(&self.inner, dir.as_ref())
    }

    /// Claim the next compaction for execution elsewhere: the returned job is
    /// self-contained (serialize it with `to_bytes`); its inputs stay reserved
    /// until the result is installed with [`Db::install_compaction`], the
    /// job is given up with [`Db::abandon_compaction`], or its lease
    /// ([`DbOptions::job_lease`]) runs out. Its output file numbers are
    /// durably reserved before it is returned: no later job, in this or any
    /// later open, writes to them. `None` when no level needs compaction.
    pub fn claim_compaction(&self) -> Result<Option<CompactionJob>> {
        crate::manual::claim_external(&self.inner)
    }

    /// Install the result of a claimed compaction, fenced by its token. A
    /// result delivered again after it was installed is acknowledged and
    /// changes nothing. A result that cannot be installed is rejected with
    /// [`Error::Job`] saying why ([`crate::JobError`]): a token of another database
    /// or an earlier open, an attempt that was retried, a job abandoned or
    /// whose lease ran out, an output outside the attempt's reserved file
    /// numbers, an input no longer live. Rejection never deletes a table a
    /// version lists or a number a live attempt owns.
    pub fn install_compaction(&self, result: JobResult) -> Result<()> {
        crate::manual::install_external(&self.inner, result)
    }

    /// Start a new attempt of a claimed compaction (its executor died, say):
    /// the returned job has a new token and fresh output file numbers, and
    /// results of earlier attempts are rejected from now on.
    pub fn retry_compaction(&self, job_id: u64) -> Result<CompactionJob> {
        crate::manual::retry_external(&self.inner, job_id)
    }

    /// Release a claimed compaction without installing anything.
    pub fn abandon_compaction(&self, job_id: u64) {
        crate::manual::abandon_external(&self.inner, job_id)
    }

    /// Current shape and counters.
    pub fn stats(&self) -> DbStats {
        let sv = self.inner.super_version.read().clone();
        let cache = self.inner.table_cache.block_cache();
        let mut s = DbStats {
            levels: sv
                .version
                .levels
                .iter()
                .map(|l| LevelStats {
                    files: l.len(),
                    bytes: l.iter().map(|f| f.size).sum(),
                })
                .collect(),
            block_cache_hits: cache.hits(),
            block_cache_misses: cache.misses(),
            block_cache_declined: cache.declined(),
            block_cache_usage: cache.usage(),
            last_sequence: self.inner.visible_seq.load(Ordering::Acquire),
            unflushed_memtables: sv.shards.iter().map(|s| s.sealed.len()).sum(),
            range_tombstones: live_range_tombstones(&sv),
            ..DbStats::default()
        };
        self.inner.counters.fill(&mut s);
        s.shards = shard_stats(&self.inner, &sv);
        if let Some(offload) = &self.inner.offload {
            offload.fill(&mut s.offload);
            s.offload.local_sealed_memtables = sv
                .shards
                .iter()
                .flat_map(|shard| &shard.sealed)
                .filter(|slot| slot.is_local() && !slot.is_empty())
                .count() as u64;
        }
        if !Arc::ptr_eq(&self.inner.executor, &self.inner.local_executor) {
            s.placement.decisions = self.inner.placer.decisions();
            s.placement.local_bytes_per_sec = self.inner.placer.local_bytes_per_sec();
            self.inner.executor.fill_stats(&mut s.placement);
        }
        s
    }

    /// The error that stopped the database from accepting writes (a failed
    /// WAL or manifest write, a flush that cannot run, or data found
    /// unreachable by a background job), if any. Background jobs that fail
    /// and are retried are counted in [`DbStats::background_errors`].
    pub fn background_error(&self) -> Option<String> {
        self.inner.bg_error.get().cloned()
    }

    /// Number of key-range shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shard_splits().len() + 1
    }

    /// Stop background work, make the WAL durable and release the lock.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        // `close` shuts down and then drops the handle: the second call
        // finds nothing left to do.
        if self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let _st = self.inner.state.lock();
            self.inner.bg_cv.notify_all();
        }
        // No worker claims or dispatches anything once they are joined.
        for h in self.workers.lock().drain(..) {
            if h.join().is_err() {
                tracing::error!("a background thread panicked");
            }
        }
        {
            // Jobs running elsewhere report back before the WAL is closed
            // (and before the handle lets go of the database lock); one
            // that does not within the bound is left to the next open.
            let deadline = std::time::Instant::now() + SHUTDOWN_WAIT;
            let mut st = self.inner.state.lock();
            while (st.jobs.in_flight() > 0
                || self.inner.pending_reports.load(Ordering::Acquire) > 0)
                && std::time::Instant::now() < deadline
            {
                self.inner
                    .bg_cv
                    .wait_for(&mut st, std::time::Duration::from_millis(10));
            }
        }
        let mut wal = self.inner.wal.lock();
        if let Some(w) = wal.writer.as_mut() {
            w.sync()?;
            // The clean-close marker (`wal_format.md`, "WAL recovery"): with
            // the segment's synced length in the manifest, recovery takes
            // any damage before it as corruption instead of a torn tail.
            if self.inner.bg_error.get().is_none() {
                let edit = VersionEdit {
                    closed_wal: Some((w.log_number(), w.len())),
                    ..VersionEdit::default()
                };
                self.inner.versions.lock().log_and_apply(edit)?;
            }
        }
        Ok(())
    }
}

/// How long closing waits for jobs running elsewhere to report.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Per shard of `sv`: write share, flushes, L0 files over its range.
fn shard_stats(engine: &Engine, sv: &SuperVersion) -> Vec<ShardStats> {
    let counts: Vec<(u64, u64)> = {
        let st = engine.state.lock();
        st.shards
            .iter()
            .map(|s| (s.written_bytes, s.flushes))
            .collect()
    };
    let total: u64 = counts.iter().map(|c| c.0).sum();
    let l0 = sv
        .version
        .levels
        .first()
        .map(|l| l.as_slice())
        .unwrap_or(&[]);
    (0..=sv.splits.len())
        .map(|i| {
            let lo = i.checked_sub(1).map(|j| sv.splits[j].as_slice());
            let hi = sv.splits.get(i).map(|k| k.as_slice());
            // `hi` is exclusive: a file ending exactly at it is not inside.
            let l0_files = l0
                .iter()
                .filter(|f| {
                    lo.is_none_or(|lo| f.largest_user_key() >= lo)
                        && hi.is_none_or(|hi| f.smallest_user_key() < hi)
                })
                .count();
            // A re-split between the two looks may leave the counts of the
            // other layout: report none rather than mismatched ones.
            let (write_bytes, flushes) = if counts.len() == sv.splits.len() + 1 {
                counts[i]
            } else {
                (0, 0)
            };
            ShardStats {
                lower_bound: lo.map(|k| k.to_vec()).unwrap_or_default(),
                write_bytes,
                write_share: if total == 0 {
                    0.0
                } else {
                    write_bytes as f64 / total as f64
                },
                flushes,
                l0_files,
            }
        })
        .collect()
}

/// Range tombstones readers of `sv` apply: in memtables and installed (a
/// deletion spanning several shards counts once per shard).
fn live_range_tombstones(sv: &SuperVersion) -> u64 {
    let unflushed: usize = sv
        .shards
        .iter()
        .map(|s| {
            s.active.range_tombstone_count()
                + s.sealed
                    .iter()
                    .map(|m| m.range_tombstones.len())
                    .sum::<usize>()
        })
        .sum();
    (unflushed + sv.version.range_tombstones().len()) as u64
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("closing database {}: {e}", self.inner.dir.display());
        }
    }
}
