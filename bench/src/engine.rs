//! Engine settings shared by every workload: the flags (db_bench's names),
//! their resolved values, and opening the database they describe.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use o3_compute::{Db, DbOptions};
use o3_storage::env::{LocalFs, RemoteStorageModel, ThrottledStorage};
use o3_storage::options::Compression;
use o3_storage::sst::CacheAdmission;
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// Parse db_bench-style booleans: `--sync`, `--sync=1`, `--sync=false`.
pub fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean (true/false/1/0)")),
    }
}

/// Engine flags; every one is optional so a config file can supply it.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct EngineArgs {
    /// Database directory (default: o3-dbbench or o3-ycsb in the temp dir).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Memtable size per shard in bytes (default: the engine's, 64 MiB).
    #[arg(long)]
    pub write_buffer_size: Option<usize>,
    /// Writes stop while sealed memtables held in local memory (offloaded
    /// ones hold none) reach this many bytes (default: the engine's, 512
    /// MiB, and at least 2 x --write_buffer_size).
    #[arg(long)]
    pub max_unflushed_bytes: Option<u64>,
    /// Block cache size in bytes (default: the engine's, 8 MiB).
    #[arg(long)]
    pub cache_size: Option<u64>,
    /// Which missed blocks enter the block cache: second-miss (a block
    /// missed twice within a recent window; the engine's default) or always
    /// (every block read, as an LRU cache such as RocksDB's).
    #[arg(long)]
    pub cache_admission: Option<String>,
    /// Bloom filter bits per key, 0 disables filters (default 10).
    #[arg(long)]
    pub bloom_bits: Option<u32>,
    /// Block compression: none, lz4 or zstd (default none).
    #[arg(long)]
    pub compression_type: Option<String>,
    /// Compression level, for codecs that have levels (zstd: 1 fastest to
    /// 22 smallest, negative faster still; default 3, as is db_bench's
    /// unset value 32767). Ignored for none and lz4, as db_bench does.
    #[arg(long, allow_negative_numbers = true)]
    pub compression_level: Option<i32>,
    /// SST data block size in bytes.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// fsync the WAL on every write.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub sync: Option<bool>,
    /// Do not write the WAL.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub disable_wal: Option<bool>,
    /// Background flush and compaction threads.
    #[arg(long)]
    pub max_background_jobs: Option<usize>,
    /// Compaction strategy: a preset (leveling, tiering, one-leveling,
    /// lazy-leveling, hybrid) with optional overrides, e.g.
    /// `one-leveling:picker=tombstone-density,trigger=level-saturation+tombstone-ttl`
    /// (default one-leveling).
    #[arg(long)]
    pub compaction: Option<String>,
    /// Emulated remote storage: latency in microseconds added to every
    /// read, sync and file-system operation (default 0).
    #[arg(long)]
    pub storage_latency_us: Option<u64>,
    /// Emulated remote storage: read bandwidth in bytes per second
    /// (default 0, unlimited).
    #[arg(long)]
    pub storage_read_bytes_per_sec: Option<u64>,
    /// Emulated remote storage: write bandwidth in bytes per second
    /// (default 0, unlimited).
    #[arg(long)]
    pub storage_write_bytes_per_sec: Option<u64>,
    /// Level-0 tables of a shard that start a compaction (default: the
    /// engine's, 4).
    #[arg(long)]
    pub level0_file_num_compaction_trigger: Option<usize>,
    /// Level-0 tables of a shard at which writes slow down (default: the
    /// engine's, 20).
    #[arg(long)]
    pub level0_slowdown_writes_trigger: Option<usize>,
    /// Level-0 tables of a shard at which writes stop (default: the
    /// engine's, 36).
    #[arg(long)]
    pub level0_stop_writes_trigger: Option<usize>,
    /// Bytes of level 1 before it is compacted into level 2 (db_bench's
    /// max_bytes_for_level_base; default: the engine's, 256 MiB).
    #[arg(long)]
    pub max_bytes_for_level_base: Option<u64>,
    /// Size at which compaction outputs of level 1 are cut (db_bench's
    /// target_file_size_base; default: the engine's, 64 MiB).
    #[arg(long)]
    pub target_file_size_base: Option<u64>,
    /// Each level below level 1 targets this many times the bytes of the
    /// level above (default: the engine's, 10).
    #[arg(long)]
    pub max_bytes_for_level_multiplier: Option<f64>,
    /// Each level below level 1 cuts its files this many times larger
    /// (default: the engine's, 1).
    #[arg(long)]
    pub target_file_size_multiplier: Option<u64>,
    /// Levels of the tree, level 0 included (default: the engine's, 7).
    #[arg(long)]
    pub num_levels: Option<usize>,
    /// Memtables a shard may hold, the one taking writes included, before
    /// writes stop (db_bench's meaning, per shard as RocksDB's is per column
    /// family): sets the engine's unflushed-memory limit to (N - 1) x
    /// --write_buffer_size x --shards; at least 2; exclusive with
    /// --max_unflushed_bytes (default: that flag's default).
    #[arg(long)]
    pub max_write_buffer_number: Option<usize>,
    /// Key-range shards, each with its own memtable and level-0 tables, so
    /// their flushes and level-0 compactions run in parallel; dbbench
    /// splits its key space (keys 0..num) evenly (default 1).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Learn the --shards split keys from the keys written instead of
    /// splitting the key space evenly (the engine starts with one shard,
    /// splits once it has seen enough keys and moves the boundaries when
    /// one shard takes far more than its share); works for every workload.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub adaptive_shards: Option<bool>,
}

impl EngineArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: EngineArgs) -> EngineArgs {
        EngineArgs {
            db: self.db.or(base.db),
            write_buffer_size: self.write_buffer_size.or(base.write_buffer_size),
            max_unflushed_bytes: self.max_unflushed_bytes.or(base.max_unflushed_bytes),
            cache_size: self.cache_size.or(base.cache_size),
            cache_admission: self.cache_admission.or(base.cache_admission),
            bloom_bits: self.bloom_bits.or(base.bloom_bits),
            compression_type: self.compression_type.or(base.compression_type),
            compression_level: self.compression_level.or(base.compression_level),
            block_size: self.block_size.or(base.block_size),
            sync: self.sync.or(base.sync),
            disable_wal: self.disable_wal.or(base.disable_wal),
            max_background_jobs: self.max_background_jobs.or(base.max_background_jobs),
            compaction: self.compaction.or(base.compaction),
            storage_latency_us: self.storage_latency_us.or(base.storage_latency_us),
            storage_read_bytes_per_sec: self
                .storage_read_bytes_per_sec
                .or(base.storage_read_bytes_per_sec),
            storage_write_bytes_per_sec: self
                .storage_write_bytes_per_sec
                .or(base.storage_write_bytes_per_sec),
            level0_file_num_compaction_trigger: self
                .level0_file_num_compaction_trigger
                .or(base.level0_file_num_compaction_trigger),
            level0_slowdown_writes_trigger: self
                .level0_slowdown_writes_trigger
                .or(base.level0_slowdown_writes_trigger),
            level0_stop_writes_trigger: self
                .level0_stop_writes_trigger
                .or(base.level0_stop_writes_trigger),
            max_bytes_for_level_base: self
                .max_bytes_for_level_base
                .or(base.max_bytes_for_level_base),
            target_file_size_base: self.target_file_size_base.or(base.target_file_size_base),
            max_bytes_for_level_multiplier: self
                .max_bytes_for_level_multiplier
                .or(base.max_bytes_for_level_multiplier),
            target_file_size_multiplier: self
                .target_file_size_multiplier
                .or(base.target_file_size_multiplier),
            num_levels: self.num_levels.or(base.num_levels),
            max_write_buffer_number: self
                .max_write_buffer_number
                .or(base.max_write_buffer_number),
            shards: self.shards.or(base.shards),
            adaptive_shards: self.adaptive_shards.or(base.adaptive_shards),
        }
    }

    /// Fill in the engine's defaults; `default_dir` is used without `--db`.
    pub fn resolve(self, default_dir: &str) -> Result<EngineConfig> {
        let d = DbOptions::default();
        let compression_type = self.compression_type.unwrap_or_else(|| "none".to_string());
        let compression = compression_type
            .parse::<Compression>()
            .map_err(|e| BenchError::rejected("--compression_type", e))?
            .with_level(compression_level(self.compression_level));
        let cache_admission = match self.cache_admission {
            Some(s) => s
                .parse()
                .map_err(|e| BenchError::rejected("--cache_admission", e))?,
            None => d.block_cache_admission,
        };
        let compaction_spec = self
            .compaction
            .unwrap_or_else(|| d.compaction.preset.to_string());
        let mut compaction =
            crate::study::strategy::StrategySpec::parse(&compaction_spec, &d.compaction.levels)
                .map_err(|e| BenchError::InvalidArgument(format!("--compaction: {e}")))?
                .options;
        if let Some(trigger) = self.level0_file_num_compaction_trigger {
            compaction.levels.l0_compaction_trigger = trigger;
        }
        if let Some(bytes) = self.max_bytes_for_level_base {
            compaction.levels.max_bytes_for_level_base = bytes;
        }
        if let Some(bytes) = self.target_file_size_base {
            compaction.levels.target_file_size_base = bytes;
        }
        if let Some(m) = self.max_bytes_for_level_multiplier {
            compaction.levels.max_bytes_for_level_multiplier = m;
        }
        if let Some(m) = self.target_file_size_multiplier {
            compaction.levels.target_file_size_multiplier = m;
        }
        if let Some(n) = self.num_levels {
            compaction.levels.num_levels = n;
        }
        let shards = self.shards.unwrap_or(1);
        if shards == 0 || shards > 256 {
            return Err(BenchError::InvalidArgument(format!(
                "--shards {shards} is outside [1, 256]"
            )));
        }
        let write_buffer_size = self.write_buffer_size.unwrap_or(d.write_buffer_size);
        let max_unflushed_bytes = match self.max_write_buffer_number {
            None => self.max_unflushed_bytes,
            Some(n) => Some(memtable_limit(
                n,
                write_buffer_size,
                shards,
                self.max_unflushed_bytes,
            )?),
        };
        let config = EngineConfig {
            db: self
                .db
                .unwrap_or_else(|| std::env::temp_dir().join(default_dir)),
            write_buffer_size,
            max_unflushed_bytes,
            cache_size: self.cache_size.unwrap_or(d.block_cache_size),
            cache_admission,
            bloom_bits: self.bloom_bits.unwrap_or(d.table.bloom_bits_per_key),
            compression_type,
            compression_level: match compression {
                Compression::Zstd { level } => Some(level),
                Compression::None | Compression::Lz4 => None,
            },
            compression,
            block_size: self.block_size.unwrap_or(d.table.block_size),
            sync: self.sync.unwrap_or(d.sync_writes),
            disable_wal: self.disable_wal.unwrap_or(d.disable_wal),
            max_background_jobs: self.max_background_jobs.unwrap_or(d.max_background_jobs),
            compaction_spec,
            storage_latency_us: self.storage_latency_us.unwrap_or(0),
            storage_read_bytes_per_sec: self.storage_read_bytes_per_sec.unwrap_or(0),
            storage_write_bytes_per_sec: self.storage_write_bytes_per_sec.unwrap_or(0),
            level0_compaction_trigger: compaction.levels.l0_compaction_trigger,
            level0_slowdown_writes_trigger: self
                .level0_slowdown_writes_trigger
                .unwrap_or(d.l0_slowdown_writes_trigger),
            level0_stop_writes_trigger: self
                .level0_stop_writes_trigger
                .unwrap_or(d.l0_stop_writes_trigger),
            compaction,
            shards,
            adaptive_shards: self.adaptive_shards.unwrap_or(false),
            shard_splits: Vec::new(),
            offload: None,
            csa: None,
        };
        config
            .db_options()
            .validate()
            .map_err(|e| BenchError::rejected("", e))?;
        Ok(config)
    }
}

/// db_bench's "use the library's default" `--compression_level`.
const DB_BENCH_DEFAULT_COMPRESSION_LEVEL: i32 = 32767;

/// The level `--compression_level` asks for: zstd's default when unset or
/// given as db_bench's default marker.
fn compression_level(flag: Option<i32>) -> i32 {
    match flag {
        None | Some(DB_BENCH_DEFAULT_COMPRESSION_LEVEL) => o3_storage::options::DEFAULT_ZSTD_LEVEL,
        Some(level) => level,
    }
}

/// The unflushed-memory limit `--max_write_buffer_number n` stands for:
/// each of `shards` shards keeps one memtable for writes and up to `n - 1`
/// sealed ones.
fn memtable_limit(
    n: usize,
    write_buffer_size: usize,
    shards: usize,
    max_unflushed_bytes: Option<u64>,
) -> Result<u64> {
    if let Some(bytes) = max_unflushed_bytes {
        return Err(BenchError::InvalidArgument(format!(
            "--max_write_buffer_number {n} and --max_unflushed_bytes {bytes} both set the unflushed-memory limit; give one"
        )));
    }
    if n < 2 {
        return Err(BenchError::InvalidArgument(format!(
            "--max_write_buffer_number {n} is below 2 (one memtable takes writes while another flushes)"
        )));
    }
    Ok(((n - 1) as u64)
        .saturating_mul(write_buffer_size as u64)
        .saturating_mul(shards as u64))
}

/// Resolved engine settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct EngineConfig {
    pub db: PathBuf,
    pub write_buffer_size: usize,
    /// `None`: the engine's default, raised to 2 x `write_buffer_size`.
    pub max_unflushed_bytes: Option<u64>,
    pub cache_size: u64,
    pub cache_admission: CacheAdmission,
    pub bloom_bits: u32,
    pub compression_type: String,
    /// The level `compression` uses; `None` for codecs without levels.
    pub compression_level: Option<i32>,
    #[serde(skip)]
    pub compression: Compression,
    pub block_size: usize,
    pub sync: bool,
    pub disable_wal: bool,
    pub max_background_jobs: usize,
    /// The compaction strategy as given (preset and overrides).
    pub compaction_spec: String,
    #[serde(skip)]
    pub compaction: o3_storage::compaction::CompactionOptions,
    /// Emulated remote storage ([`EngineConfig::remote_storage`]); 0 = none.
    pub storage_latency_us: u64,
    pub storage_read_bytes_per_sec: u64,
    pub storage_write_bytes_per_sec: u64,
    /// Level-0 tables of a shard that start a compaction, slow writes down
    /// and stop them.
    pub level0_compaction_trigger: usize,
    pub level0_slowdown_writes_trigger: usize,
    pub level0_stop_writes_trigger: usize,
    /// Key-range shards (`--shards`) and, once the workload named its key
    /// space ([`EngineConfig::split_key_space`]), the split keys.
    pub shards: usize,
    /// The engine learns the split keys (`--adaptive_shards`).
    pub adaptive_shards: bool,
    #[serde(skip)]
    pub shard_splits: Vec<Vec<u8>>,
    /// Memtable offloading (`--offload` and its flags); `None` = off.
    pub offload: Option<crate::offload::OffloadConfig>,
    /// The compaction service (`--csa_*` flags); `None` = compactions run
    /// here.
    pub csa: Option<crate::csa::CsaConfig>,
}

impl EngineConfig {
    /// The emulated remote storage the `--storage_*` flags describe, or
    /// `None` when they add nothing (the database is on the local file
    /// system as is).
    pub fn remote_storage(&self) -> Option<RemoteStorageModel> {
        let model = RemoteStorageModel {
            latency: Duration::from_micros(self.storage_latency_us),
            read_bytes_per_sec: NonZeroU64::new(self.storage_read_bytes_per_sec),
            write_bytes_per_sec: NonZeroU64::new(self.storage_write_bytes_per_sec),
        };
        (model != RemoteStorageModel::UNLIMITED).then_some(model)
    }

    /// These settings with offloading as `offload` says, checked.
    pub fn with_offload(self, offload: Option<crate::offload::OffloadConfig>) -> Result<Self> {
        let config = EngineConfig { offload, ..self };
        config
            .db_options()
            .validate()
            .map_err(|e| BenchError::rejected("", e))?;
        Ok(config)
    }

    /// These settings with the compaction service `csa` (started, so its
    /// scheduler's address is known), checked.
    pub fn with_csa(self, csa: Option<crate::csa::CsaConfig>) -> Result<Self> {
        let config = EngineConfig { csa, ..self };
        config
            .db_options()
            .validate()
            .map_err(|e| BenchError::rejected("", e))?;
        Ok(config)
    }

    /// The engine's `max_unflushed_bytes`: `--max_unflushed_bytes`, or the
    /// engine's default raised to two write buffers.
    pub fn unflushed_limit(&self) -> u64 {
        self.max_unflushed_bytes.unwrap_or_else(|| {
            DbOptions::default()
                .max_unflushed_bytes
                .max(2 * self.write_buffer_size as u64)
        })
    }

    /// The conditions to report with the results: the emulated remote
    /// storage, the offloading (memory node, link, local budget) and the
    /// compaction service (policy, agents, slots, their storage).
    pub fn emulated_conditions(&self) -> String {
        let mut parts = Vec::new();
        if let Some(model) = self.remote_storage() {
            parts.push(format!("remote storage ({model})"));
        }
        if let Some(offload) = &self.offload {
            parts.push(format!(
                "{}, max_unflushed_bytes {}",
                offload.describe(self.write_buffer_size),
                self.unflushed_limit()
            ));
        }
        if let Some(csa) = &self.csa {
            parts.push(csa.describe());
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// Split the key space of `num` dbbench keys of `key_size` bytes (keys
    /// 0..num, [`crate::dbbench::make_key`]) into `shards` equal shards.
    pub fn split_key_space(mut self, num: u64, key_size: usize) -> Self {
        if self.adaptive_shards {
            return self;
        }
        let shards = self.shards as u64;
        self.shard_splits = (1..shards)
            .map(|i| {
                let mut key = vec![0u8; key_size];
                crate::dbbench::make_key(&mut key, num / shards * i);
                key
            })
            .collect();
        self
    }

    /// Engine options: the defaults with these settings applied. Unless
    /// `--max_unflushed_bytes` sets it, the unflushed-memory limit is raised
    /// with the write buffer, so a large buffer is not refused.
    pub fn db_options(&self) -> DbOptions {
        let mut o = DbOptions {
            write_buffer_size: self.write_buffer_size,
            block_cache_size: self.cache_size,
            block_cache_admission: self.cache_admission,
            sync_writes: self.sync,
            disable_wal: self.disable_wal,
            max_background_jobs: self.max_background_jobs,
            compaction: self.compaction.clone(),
            l0_slowdown_writes_trigger: self.level0_slowdown_writes_trigger,
            l0_stop_writes_trigger: self.level0_stop_writes_trigger,
            ..DbOptions::default()
        };
        o.max_unflushed_bytes = self.unflushed_limit();
        o.table.bloom_bits_per_key = self.bloom_bits;
        o.table.compression = self.compression;
        o.table.block_size = self.block_size;
        o.offload = self.offload.as_ref().map(|c| c.options());
        o.compaction_service = self.csa.as_ref().map(|c| c.options());
        if self.adaptive_shards {
            o.adaptive_shards = true;
            o.shard_count = self.shards;
        } else {
            o.shard_splits = self.shard_splits.clone();
        }
        // Each database opened gets its own channel: one node's storage.
        if let Some(model) = self.remote_storage() {
            o.storage = Arc::new(ThrottledStorage::new(Arc::new(LocalFs::new()), model));
        }
        o
    }

    /// Open the database emptied first, so a load starts from nothing;
    /// never deletes a database another process has open
    /// ([`crate::fresh_db`]).
    pub fn open_empty(&self) -> Result<Db> {
        crate::fresh_db::open_empty(&self.db, self.db_options())
    }

    /// Open the database.
    pub fn open(&self) -> Result<Db> {
        Db::open(&self.db, self.db_options())
            .map_err(BenchError::engine(format!("opening {}", self.db.display())))
    }
}

/// Bytes under `dir` (files in all subdirectories).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// An engine configuration for unit tests: a database in `dir` with 64 KiB
/// memtables, so small workloads still flush and compact.
#[cfg(test)]
pub(crate) fn small_test_engine(dir: &std::path::Path) -> EngineConfig {
    EngineArgs {
        db: Some(dir.join("db")),
        write_buffer_size: Some(64 << 10),
        ..Default::default()
    }
    .resolve("unused")
    .expect("test engine configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_dbbench_key_space_evenly_and_bad_counts_are_refused() {
        let engine = EngineArgs {
            shards: Some(4),
            max_bytes_for_level_base: Some(8_000_000),
            target_file_size_base: Some(2_000_000),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap()
        .split_key_space(1000, 16);
        let o = engine.db_options();
        assert_eq!(o.shard_splits.len(), 3);
        let mut expected = vec![0u8; 16];
        crate::dbbench::make_key(&mut expected, 500);
        assert_eq!(o.shard_splits[1], expected);
        assert!(o.shard_splits.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(o.compaction.levels.max_bytes_for_level_base, 8_000_000);
        assert_eq!(o.compaction.levels.target_file_size_base, 2_000_000);
        for bad in [0, 257] {
            let e = EngineArgs {
                shards: Some(bad),
                ..Default::default()
            }
            .resolve("unused")
            .unwrap_err()
            .to_string();
            assert!(e.contains("--shards"), "{e}");
        }
    }

    /// The LSM shape flags reach the strategy's options with db_bench's
    /// meanings, and max_write_buffer_number becomes the unflushed limit.
    #[test]
    fn shape_flags_reach_the_engine_options() {
        let o = EngineArgs {
            num_levels: Some(5),
            max_bytes_for_level_multiplier: Some(8.0),
            target_file_size_multiplier: Some(2),
            level0_file_num_compaction_trigger: Some(6),
            write_buffer_size: Some(1 << 20),
            max_write_buffer_number: Some(4),
            shards: Some(2),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap()
        .db_options();
        let levels = &o.compaction.levels;
        assert_eq!(levels.num_levels, 5);
        assert_eq!(levels.max_bytes_for_level_multiplier, 8.0);
        assert_eq!(levels.target_file_size_multiplier, 2);
        assert_eq!(levels.l0_compaction_trigger, 6);
        assert_eq!(o.max_unflushed_bytes, 3 * 2 * (1 << 20));
        for (n, unflushed, needle) in [(1, None, "below 2"), (3, Some(1 << 30), "give one")] {
            let e = EngineArgs {
                max_write_buffer_number: Some(n),
                max_unflushed_bytes: unflushed,
                ..Default::default()
            }
            .resolve("unused")
            .unwrap_err()
            .to_string();
            assert!(e.contains(needle), "{e}");
        }
        let e = EngineArgs {
            num_levels: Some(1),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap_err()
        .to_string();
        assert!(e.contains("num_levels"), "{e}");
    }

    #[test]
    fn compression_flags_pick_the_codec_and_zstds_level() {
        let resolve = |kind: &str, level: Option<i32>| {
            EngineArgs {
                compression_type: Some(kind.to_string()),
                compression_level: level,
                ..Default::default()
            }
            .resolve("unused")
        };
        let zstd = |level| Compression::Zstd { level };
        for (kind, level, want) in [
            ("zstd", None, zstd(3)),
            ("zstd", Some(32767), zstd(3)),
            ("zstd", Some(9), zstd(9)),
            ("zstd", Some(-4), zstd(-4)),
            ("lz4", Some(9), Compression::Lz4),
            ("none", None, Compression::None),
        ] {
            let engine = resolve(kind, level).unwrap();
            assert_eq!(
                engine.db_options().table.compression,
                want,
                "{kind} {level:?}"
            );
            let reported = match want {
                Compression::Zstd { level } => Some(level),
                _ => None,
            };
            assert_eq!(engine.compression_level, reported, "{kind} {level:?}");
        }
        let e = resolve("zstd", Some(23)).unwrap_err().to_string();
        assert!(e.contains("level 23"), "{e}");
        let e = resolve("snappy", None).unwrap_err().to_string();
        assert!(
            ["--compression_type", "snappy", "none", "lz4", "zstd"]
                .iter()
                .all(|w| e.contains(w)),
            "{e}"
        );
    }

    #[test]
    fn storage_flags_put_the_database_on_throttled_storage() {
        let engine = EngineArgs {
            storage_latency_us: Some(250),
            storage_read_bytes_per_sec: Some(100_000_000),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap();
        assert_eq!(
            engine.remote_storage(),
            Some(RemoteStorageModel {
                latency: Duration::from_micros(250),
                read_bytes_per_sec: NonZeroU64::new(100_000_000),
                write_bytes_per_sec: None,
            })
        );
        assert_eq!(
            engine.emulated_conditions(),
            "remote storage (latency 250µs, read 100.0 MB/s, write unlimited)"
        );
        let storage = format!("{:?}", engine.db_options().storage);
        assert!(storage.starts_with("ThrottledStorage"), "{storage}");
    }

    #[test]
    fn the_unflushed_limit_is_the_flag_or_the_default_raised_to_two_buffers() {
        let big_buffers = EngineArgs {
            write_buffer_size: Some(1 << 30),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap();
        assert_eq!(big_buffers.db_options().max_unflushed_bytes, 2 << 30);
        let set = EngineArgs {
            write_buffer_size: Some(1 << 20),
            max_unflushed_bytes: Some(3 << 20),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap();
        assert_eq!(set.db_options().max_unflushed_bytes, 3 << 20);
        let e = EngineArgs {
            write_buffer_size: Some(1 << 20),
            max_unflushed_bytes: Some(4096),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_unflushed_bytes 4096"), "{e}");
    }

    /// Offloading reaches the engine's options and the reported conditions,
    /// with the local memory limit next to it.
    #[test]
    fn offloading_is_in_the_options_and_the_conditions() {
        let offload = crate::offload::OffloadArgs {
            offload: Some(true),
            link: Some("10gbe".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let engine = EngineArgs {
            write_buffer_size: Some(1 << 20),
            max_unflushed_bytes: Some(3 << 20),
            storage_write_bytes_per_sec: Some(8_000_000),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap()
        .with_offload(offload)
        .unwrap();
        let o = engine.db_options().offload.expect("offloading on");
        assert_eq!(o.max_local_sealed_memtables, 1);
        let conditions = engine.emulated_conditions();
        assert!(
            conditions.starts_with("remote storage (latency 0ns, read unlimited, write 8.0 MB/s); offloading to in-process memory node"),
            "{conditions}"
        );
        assert!(
            conditions.contains("link 10gbe (latency 50µs"),
            "{conditions}"
        );
        assert!(
            conditions.ends_with("max_unflushed_bytes 3145728"),
            "{conditions}"
        );
    }

    #[test]
    fn without_storage_flags_or_with_zeros_the_database_is_local() {
        for args in [
            EngineArgs::default(),
            EngineArgs {
                storage_latency_us: Some(0),
                storage_read_bytes_per_sec: Some(0),
                storage_write_bytes_per_sec: Some(0),
                ..Default::default()
            },
        ] {
            let engine = args.resolve("unused").unwrap();
            assert_eq!(engine.remote_storage(), None);
            assert_eq!(engine.emulated_conditions(), "none");
            assert_eq!(format!("{:?}", engine.db_options().storage), "LocalFs");
        }
    }
}
