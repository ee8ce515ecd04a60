//! db_bench's benchmark names and flags, with db_bench's defaults.

use std::str::FromStr;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::engine::parse_bool;
use crate::error::{BenchError, Result};

/// The benchmarks this tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    SeekRandom,
    ReadWhileWriting,
    DeleteRandom,
    MultiReadRandom,
    DeleteRange,
    /// A full manual compaction: every memtable flushed, then every level
    /// compacted down to the last (db_bench's `compact`); one operation,
    /// in one thread whatever `--threads` says.
    Compact,
}

impl Benchmark {
    const ALL: [(&'static str, Benchmark); 11] = [
        ("fillseq", Benchmark::FillSeq),
        ("fillrandom", Benchmark::FillRandom),
        ("overwrite", Benchmark::Overwrite),
        ("readrandom", Benchmark::ReadRandom),
        ("readseq", Benchmark::ReadSeq),
        ("seekrandom", Benchmark::SeekRandom),
        ("readwhilewriting", Benchmark::ReadWhileWriting),
        ("deleterandom", Benchmark::DeleteRandom),
        ("multireadrandom", Benchmark::MultiReadRandom),
        ("deleterange", Benchmark::DeleteRange),
        ("compact", Benchmark::Compact),
    ];

    pub fn name(self) -> &'static str {
        Benchmark::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }

    /// Fill benchmarks start from an empty database (unless `--use_existing_db`).
    pub(crate) fn fresh_db(self) -> bool {
        matches!(self, Benchmark::FillSeq | Benchmark::FillRandom)
    }
}

impl FromStr for Benchmark {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Benchmark> {
        Benchmark::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                let names: Vec<&str> = Benchmark::ALL.iter().map(|(n, _)| *n).collect();
                BenchError::InvalidArgument(format!(
                    "unknown benchmark '{s}' (valid: {})",
                    names.join(", ")
                ))
            })
    }
}

/// db_bench flags (all optional so a config file can supply them).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct DbBenchArgs {
    /// Comma-separated benchmarks, run in order (default fillrandom,readrandom).
    #[arg(long)]
    pub benchmarks: Option<String>,
    /// Number of keys, and of writes per thread (default 1000000).
    #[arg(long)]
    pub num: Option<u64>,
    /// Reads per thread; negative means --num (default -1).
    #[arg(long, allow_negative_numbers = true)]
    pub reads: Option<i64>,
    /// Key bytes (default 16).
    #[arg(long)]
    pub key_size: Option<usize>,
    /// Value bytes (default 100).
    #[arg(long)]
    pub value_size: Option<usize>,
    /// Concurrent threads per benchmark, each doing the full count (default 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Next() calls after each seek in seekrandom.
    #[arg(long)]
    pub seek_nexts: Option<u64>,
    /// Keys per MultiGet in multireadrandom (default 1, as db_bench; the
    /// fills here write one key per put whatever its value).
    #[arg(long)]
    pub batch_size: Option<u64>,
    /// Run each benchmark for this many seconds instead of a count (0 = count).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Keys each deleterange deletion covers (default 100).
    #[arg(long)]
    pub range_tombstone_width: Option<u64>,
    /// Range deletions per deleterange thread; 0 means --num /
    /// --range_tombstone_width, which deletes about as much as deleterandom
    /// (default 0).
    #[arg(long)]
    pub max_num_range_tombstones: Option<u64>,
    /// Keep the existing database instead of starting empty.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub use_existing_db: Option<bool>,
    /// Seed base: the n-th thread this invocation starts (counting over all
    /// benchmarks, from 1) seeds its key generator with seed + n, as db_bench.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl DbBenchArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: DbBenchArgs) -> DbBenchArgs {
        DbBenchArgs {
            benchmarks: self.benchmarks.or(base.benchmarks),
            num: self.num.or(base.num),
            reads: self.reads.or(base.reads),
            key_size: self.key_size.or(base.key_size),
            value_size: self.value_size.or(base.value_size),
            threads: self.threads.or(base.threads),
            seek_nexts: self.seek_nexts.or(base.seek_nexts),
            batch_size: self.batch_size.or(base.batch_size),
            duration: self.duration.or(base.duration),
            range_tombstone_width: self.range_tombstone_width.or(base.range_tombstone_width),
            max_num_range_tombstones: self
                .max_num_range_tombstones
                .or(base.max_num_range_tombstones),
            use_existing_db: self.use_existing_db.or(base.use_existing_db),
            seed: self.seed.or(base.seed),
        }
    }

    /// Apply db_bench's defaults and check the values.
    pub fn resolve(self) -> Result<DbBenchConfig> {
        let benchmarks = self
            .benchmarks
            .as_deref()
            .unwrap_or("fillrandom,readrandom")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Benchmark::from_str)
            .collect::<Result<Vec<_>>>()?;
        if benchmarks.is_empty() {
            return Err(BenchError::InvalidArgument("--benchmarks is empty".into()));
        }
        let num = self.num.unwrap_or(1_000_000);
        let c = DbBenchConfig {
            benchmarks,
            num,
            reads: match self.reads {
                Some(r) if r >= 0 => r as u64,
                _ => num,
            },
            key_size: self.key_size.unwrap_or(16),
            value_size: self.value_size.unwrap_or(100),
            threads: self.threads.unwrap_or(1),
            seek_nexts: self.seek_nexts.unwrap_or(0),
            batch_size: self.batch_size.unwrap_or(1),
            duration: self.duration.unwrap_or(0),
            range_tombstone_width: self.range_tombstone_width.unwrap_or(100),
            max_num_range_tombstones: self.max_num_range_tombstones.unwrap_or(0),
            use_existing_db: self.use_existing_db.unwrap_or(false),
            seed: self.seed.unwrap_or(0x5eed),
        };
        let bad = |m: &str| Err(BenchError::InvalidArgument(m.to_string()));
        if c.num == 0 {
            return bad("--num must be at least 1");
        }
        if c.key_size == 0 || c.key_size > 1 << 16 {
            return bad("--key_size must lie in [1, 65536]");
        }
        if c.key_size < 8 && c.num > 1u64 << (8 * c.key_size) {
            return bad("--key_size is too small to hold --num distinct keys");
        }
        if c.value_size > 64 << 20 {
            return bad("--value_size must be at most 64 MiB");
        }
        if c.threads == 0 {
            return bad("--threads must be at least 1");
        }
        if c.batch_size == 0 || c.batch_size > 1 << 20 {
            return bad("--batch_size must lie in [1, 1048576]");
        }
        if c.range_tombstone_width == 0 {
            return bad("--range_tombstone_width must be at least 1");
        }
        Ok(c)
    }
}

/// Resolved db_bench settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct DbBenchConfig {
    pub benchmarks: Vec<Benchmark>,
    pub num: u64,
    pub reads: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub threads: usize,
    pub seek_nexts: u64,
    pub batch_size: u64,
    pub duration: u64,
    pub range_tombstone_width: u64,
    pub max_num_range_tombstones: u64,
    pub use_existing_db: bool,
    pub seed: u64,
}

impl DbBenchConfig {
    /// Range deletions each deleterange thread issues.
    pub fn range_deletions_per_thread(&self) -> u64 {
        match self.max_num_range_tombstones {
            0 => (self.num / self.range_tombstone_width).max(1),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_names_round_trip_and_unknown_ones_are_listed() {
        for (n, b) in Benchmark::ALL {
            assert_eq!(n.parse::<Benchmark>().unwrap(), b);
            assert_eq!(b.name(), n);
        }
        let e = "fillrandm".parse::<Benchmark>().unwrap_err().to_string();
        assert!(
            e.contains("fillrandm") && e.contains("readwhilewriting"),
            "{e}"
        );
    }
}
