//! Database configuration. Every field has a default; `validate` rejects
//! combinations the engine cannot run with, naming the field.

use std::sync::Arc;

use o3_storage::compaction::CompactionOptions;
use o3_storage::env::{LocalFs, Storage};
use o3_storage::options::TableOptions;
use o3_storage::sst::CacheAdmission;
use o3_storage::{Error, Result};

use crate::jobs::executor::Executor;
use crate::shard_balance::ShardBalanceOptions;

/// How [`crate::Db::open`] treats damage in the WAL segments it replays
/// (RocksDB's `WALRecoveryMode`; the rules are in `storage/docs/wal_format.md`,
/// "WAL recovery").
///
/// RocksDB's fourth mode, `SkipAnyCorruptedRecords` (replay around damaged
/// records), is deliberately not offered: it yields a state that no moment of
/// the database ever had — later writes without the earlier ones they may
/// depend on — and hides the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalRecoveryMode {
    /// The default. Only a truly torn tail is dropped: the newest segment may
    /// end in a record cut off by a crash (its bytes stop before its length
    /// says, or zero fill). Everything else is corruption that fails the open
    /// with the file and offset: a complete record that fails its checksum,
    /// any damage in a segment followed by a later segment (segments are
    /// synced whole before the next one starts), and any damage before the
    /// length a clean close synced.
    #[default]
    TolerateCorruptedTailRecords,
    /// No damage at all, not even a torn tail: for databases whose every
    /// write was synced.
    AbsoluteConsistency,
    /// Replay stops at the first damage of any kind; the rest of that
    /// segment and every later segment are dropped (logged as a warning with
    /// the file, offset and what was dropped) and the database opens with
    /// the writes before the damage.
    PointInTime,
}

impl WalRecoveryMode {
    /// The option's name in the options file and in messages.
    pub fn name(self) -> &'static str {
        match self {
            WalRecoveryMode::TolerateCorruptedTailRecords => "tolerate-corrupted-tail-records",
            WalRecoveryMode::AbsoluteConsistency => "absolute-consistency",
            WalRecoveryMode::PointInTime => "point-in-time",
        }
    }
}

impl std::fmt::Display for WalRecoveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The most shards [`DbOptions::shard_count`] may ask for.
pub const MAX_SHARDS: usize = 1024;

/// Options for [`crate::Db::open`].
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Where files live (default: the local file system).
    pub storage: Arc<dyn Storage>,
    /// Create the database if `CURRENT` is missing.
    pub create_if_missing: bool,
    /// Fail if the database already exists.
    pub error_if_exists: bool,
    /// Split keys of the key-range shards (non-empty, strictly increasing):
    /// `n` keys make `n + 1` shards. Fixed when the database is created;
    /// every later open must pass the same keys (checked against the
    /// `OPTIONS` file).
    pub shard_splits: Vec<Vec<u8>>,
    /// Learn the split keys from the keys written instead (`shard_splits`
    /// must then be empty): a new database starts with one shard, splits
    /// into `shard_count` once it has seen enough keys, and moves the
    /// boundaries when one shard takes far more than its share of the
    /// writes ([`ShardBalanceOptions`]). The keys live in the manifest; a
    /// reopen takes them from there.
    pub adaptive_shards: bool,
    /// The number of shards an adaptive database aims for. Without
    /// `adaptive_shards` it is 1 or the number `shard_splits` makes.
    pub shard_count: usize,
    /// When an adaptive database moves its shard boundaries.
    pub shard_balance: ShardBalanceOptions,
    /// Arena size of one memtable (per shard).
    pub write_buffer_size: usize,
    /// Writes stop while sealed, unflushed memtables hold this many bytes.
    pub max_unflushed_bytes: u64,
    /// A WAL segment is closed and a new one started past this size.
    pub wal_segment_size: u64,
    /// When live WAL segments exceed this, the shard pinning the oldest one
    /// is flushed even if its memtable is not full.
    pub max_total_wal_size: u64,
    /// Sync the WAL on every write unless the write says otherwise.
    pub sync_writes: bool,
    /// Skip the WAL entirely (data since the last flush is lost on any crash).
    pub disable_wal: bool,
    /// What WAL damage found on open is tolerated (see [`WalRecoveryMode`]).
    pub wal_recovery_mode: WalRecoveryMode,
    pub table: TableOptions,
    /// Compaction strategy (preset and primitives) and the tree's numbers.
    pub compaction: CompactionOptions,
    /// L0 files of one shard at which writes are slowed down. A flush writes
    /// one L0 file per shard, so this counts the sorted runs a read merges.
    /// Not applied with `disable_auto_compactions` (nothing would lower it).
    pub l0_slowdown_writes_trigger: usize,
    /// L0 files of one shard at which writes stop until compaction catches
    /// up; like the slowdown trigger, not applied without auto compactions.
    pub l0_stop_writes_trigger: usize,
    /// Pending compaction bytes at which writes slow down (and, for the
    /// hard limit, stop); not applied without auto compactions.
    pub soft_pending_compaction_bytes_limit: u64,
    pub hard_pending_compaction_bytes_limit: u64,
    /// Block cache capacity in bytes (shared by all tables).
    pub block_cache_size: u64,
    /// Which missed blocks enter the block cache: by default only those
    /// missed twice within a recent window (`o3_storage::sst::CacheAdmission`).
    pub block_cache_admission: CacheAdmission,
    /// Background threads running flushes and compactions.
    pub max_background_jobs: usize,
    /// Do not start compactions on their own (bulk loads; external
    /// compaction). `compact_range` and claimed jobs still run.
    pub disable_auto_compactions: bool,
    /// After this long without a write (and with no flush pending), level-0
    /// files are compacted into the level below even though no trigger
    /// fired, so a read-mostly phase sees one sorted run per level: an L0
    /// file left over a large level costs every seek a second block read.
    /// `None` disables it. Needs automatic compactions.
    pub idle_compaction_after: Option<std::time::Duration>,
    /// Where flushes and compactions run (`None`: on the background
    /// threads of this process). Whatever runs them, results are installed
    /// here, fenced by their tokens; a job the executor fails or loses is
    /// tried again with fresh file numbers, on this process when the
    /// executor could not be reached.
    pub executor: Option<Arc<dyn Executor>>,
    /// How long a job running outside this process (claimed with
    /// `Db::claim_compaction`, or handed to a non-local executor) may take
    /// before it is given up: its inputs are released and its late result
    /// is rejected ([`crate::JobError::LeaseExpired`]).
    pub job_lease: std::time::Duration,
    /// Ship sealed memtables to a memory node (`None`: keep them local).
    pub offload: Option<crate::offload::OffloadOptions>,
    /// Send compactions to an `o3-csa` scheduler, placed job by job by a
    /// cost model (`None`: compact here). Exclusive with `executor`.
    pub compaction_service: Option<crate::jobs::service::CompactionServiceOptions>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            storage: Arc::new(LocalFs::new()),
            create_if_missing: true,
            error_if_exists: false,
            shard_splits: Vec::new(),
            adaptive_shards: false,
            shard_count: 1,
            shard_balance: ShardBalanceOptions::default(),
            write_buffer_size: 64 << 20,
            max_unflushed_bytes: 512 << 20,
            wal_segment_size: 64 << 20,
            max_total_wal_size: 1 << 30,
            sync_writes: false,
            disable_wal: false,
            wal_recovery_mode: WalRecoveryMode::default(),
            table: TableOptions::default(),
            compaction: CompactionOptions::default(),
            l0_slowdown_writes_trigger: 20,
            l0_stop_writes_trigger: 36,
            soft_pending_compaction_bytes_limit: 64 << 30,
            hard_pending_compaction_bytes_limit: 256 << 30,
            block_cache_size: 8 << 20,
            block_cache_admission: CacheAdmission::SecondMiss,
            max_background_jobs: 2,
            disable_auto_compactions: false,
            idle_compaction_after: Some(std::time::Duration::from_secs(1)),
            executor: None,
            job_lease: std::time::Duration::from_secs(600),
            offload: None,
            compaction_service: None,
        }
    }
}

impl DbOptions {
    /// Check the options, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.write_buffer_size < 4096 || self.write_buffer_size > u32::MAX as usize {
            return bad(format!(
                "write_buffer_size {} out of range [4 KiB, 4 GiB)",
                self.write_buffer_size
            ));
        }
        if self.max_unflushed_bytes < self.write_buffer_size as u64 {
            return bad(format!(
                "max_unflushed_bytes {} is below write_buffer_size {}",
                self.max_unflushed_bytes, self.write_buffer_size
            ));
        }
        if self.wal_segment_size < 4096 {
            return bad(format!(
                "wal_segment_size {} is below 4 KiB",
                self.wal_segment_size
            ));
        }
        if self.l0_slowdown_writes_trigger > self.l0_stop_writes_trigger {
            return bad(format!(
                "l0_slowdown_writes_trigger {} exceeds l0_stop_writes_trigger {}",
                self.l0_slowdown_writes_trigger, self.l0_stop_writes_trigger
            ));
        }
        if self.l0_stop_writes_trigger <= self.compaction.levels.l0_compaction_trigger {
            return bad(format!(
                "l0_stop_writes_trigger {} must exceed l0_compaction_trigger {}",
                self.l0_stop_writes_trigger, self.compaction.levels.l0_compaction_trigger
            ));
        }
        if self.soft_pending_compaction_bytes_limit > self.hard_pending_compaction_bytes_limit {
            return bad("soft_pending_compaction_bytes_limit exceeds the hard limit".to_string());
        }
        if self.max_background_jobs == 0 {
            return bad("max_background_jobs must be at least 1".to_string());
        }
        if let Some(i) = self.shard_splits.iter().position(|k| k.is_empty()) {
            return bad(format!(
                "shard_splits: split keys must not be empty (key {i} is)"
            ));
        }
        if let Some(i) = self.shard_splits.windows(2).position(|w| w[0] >= w[1]) {
            return bad(format!(
                "shard_splits: split keys must be strictly increasing (key {} \"{}\" is not above key {i} \"{}\")",
                i + 1,
                self.shard_splits[i + 1].escape_ascii(),
                self.shard_splits[i].escape_ascii()
            ));
        }
        if self.shard_splits.len() >= u32::MAX as usize {
            return bad("shard_splits: too many split keys".to_string());
        }
        if self.shard_count == 0 || self.shard_count > MAX_SHARDS {
            return bad(format!(
                "shard_count {} out of range [1, {MAX_SHARDS}]",
                self.shard_count
            ));
        }
        if self.adaptive_shards {
            if !self.shard_splits.is_empty() {
                return bad(format!(
                    "adaptive_shards learns the split keys, but shard_splits gives {} static ones; \
                     set one or the other",
                    self.shard_splits.len()
                ));
            }
            self.shard_balance.validate()?;
        } else if self.shard_count != 1 && self.shard_count != self.shard_splits.len() + 1 {
            return bad(format!(
                "shard_count {} without adaptive_shards must match shard_splits ({} keys make {} shards); \
                 set adaptive_shards to learn the split keys",
                self.shard_count,
                self.shard_splits.len(),
                self.shard_splits.len() + 1
            ));
        }
        if let Some(service) = &self.compaction_service {
            if self.executor.is_some() {
                return bad(
                    "executor and compaction_service are both set; choose one place for jobs"
                        .into(),
                );
            }
            service.validate()?;
        }
        if let Some(offload) = &self.offload {
            offload.validate()?;
        }
        self.table.validate()?;
        self.compaction.composition()?;
        Ok(())
    }
}
