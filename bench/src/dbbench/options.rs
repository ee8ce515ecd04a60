//! db_bench's benchmark names and flags, with db_bench's defaults.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::mixgraph::MixGraphConfig;
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
    /// Read-modify-write of random keys: a get, then a put of a new value.
    UpdateRandom,
    /// Iterate backwards from the last key.
    ReadReverse,
    /// readrandom with keys one byte longer than any written: all misses.
    ReadMissing,
    /// fillrandom with each write synced, `--num / 1000` writes per thread.
    FillSync,
    /// Wait until no flush or compaction is due or running.
    WaitForCompaction,
    /// Flush every memtable.
    Flush,
    /// Print the engine's statistics.
    Stats,
    /// Print files and bytes per level.
    LevelStats,
    /// Gets, puts and seeks mixed by ratio, with db_bench's key, value-size
    /// and scan-length distributions.
    MixGraph,
}

impl Benchmark {
    const ALL: [(&'static str, Benchmark); 20] = [
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
        ("updaterandom", Benchmark::UpdateRandom),
        ("readreverse", Benchmark::ReadReverse),
        ("readmissing", Benchmark::ReadMissing),
        ("fillsync", Benchmark::FillSync),
        ("waitforcompaction", Benchmark::WaitForCompaction),
        ("flush", Benchmark::Flush),
        ("stats", Benchmark::Stats),
        ("levelstats", Benchmark::LevelStats),
        ("mixgraph", Benchmark::MixGraph),
    ];

    pub fn name(self) -> &'static str {
        Benchmark::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }

    /// Fill benchmarks start from an empty database (unless `--use_existing_db`).
    pub(crate) fn fresh_db(self) -> bool {
        matches!(
            self,
            Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::FillSync
        )
    }

    /// db_bench's meta operations: run once, in one thread, on the database
    /// as the previous benchmark left it.
    pub(crate) fn is_meta(self) -> bool {
        matches!(
            self,
            Benchmark::Compact
                | Benchmark::WaitForCompaction
                | Benchmark::Flush
                | Benchmark::Stats
                | Benchmark::LevelStats
        )
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
    /// Print each benchmark's latency histogram in db_bench's shape
    /// ("Microseconds per write:", percentiles and the bucket table).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub histogram: Option<bool>,
    /// At the end, print db_bench's "STATISTICS:" block: the engine's
    /// counters under RocksDB's ticker names (o3.* where o3's meaning
    /// differs) and the operation latency histograms.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub statistics: Option<bool>,
    /// Print the operations done so far and the engine's statistics every
    /// N seconds while a benchmark runs (0 = never).
    #[arg(long)]
    pub stats_interval_seconds: Option<u64>,
    /// Every N seconds, append `secs_elapsed,interval_qps` to
    /// --report_file (0 = no report).
    #[arg(long)]
    pub report_interval_seconds: Option<u64>,
    /// The CSV file of --report_interval_seconds (default report.csv);
    /// each benchmark rewrites it, as db_bench does.
    #[arg(long)]
    pub report_file: Option<PathBuf>,
    /// Bytes per second of key + value written, over all the benchmark's
    /// writing threads together (0 = no limit).
    #[arg(long)]
    pub benchmark_write_rate_limit: Option<u64>,
    /// mixgraph: relative weight of gets (default 1).
    #[arg(long)]
    pub mix_get_ratio: Option<f64>,
    /// mixgraph: relative weight of puts (default 0).
    #[arg(long)]
    pub mix_put_ratio: Option<f64>,
    /// mixgraph: relative weight of seeks (default 0).
    #[arg(long)]
    pub mix_seek_ratio: Option<f64>,
    /// mixgraph: longest scan after a seek (default 10000).
    #[arg(long)]
    pub mix_max_scan_len: Option<u64>,
    /// mixgraph: largest value a put writes (default 1024).
    #[arg(long)]
    pub mix_max_value_size: Option<u64>,
    /// mixgraph: 'a' of the key access model f(x) = a * x^b (0 with
    /// key_dist_b 0: uniform keys).
    #[arg(long, allow_negative_numbers = true)]
    pub key_dist_a: Option<f64>,
    /// mixgraph: 'b' of the key access model f(x) = a * x^b.
    #[arg(long, allow_negative_numbers = true)]
    pub key_dist_b: Option<f64>,
    /// mixgraph: 'a' of the key-range hotness f(x) = a*exp(b*x) + c*exp(d*x).
    #[arg(long, allow_negative_numbers = true)]
    pub keyrange_dist_a: Option<f64>,
    /// mixgraph: 'b' of the key-range hotness.
    #[arg(long, allow_negative_numbers = true)]
    pub keyrange_dist_b: Option<f64>,
    /// mixgraph: 'c' of the key-range hotness.
    #[arg(long, allow_negative_numbers = true)]
    pub keyrange_dist_c: Option<f64>,
    /// mixgraph: 'd' of the key-range hotness.
    #[arg(long, allow_negative_numbers = true)]
    pub keyrange_dist_d: Option<f64>,
    /// mixgraph: key ranges the key space is cut into (default 1).
    #[arg(long)]
    pub keyrange_num: Option<u64>,
    /// mixgraph: 'theta' of the generalized Pareto value size (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub value_theta: Option<f64>,
    /// mixgraph: 'k' of the generalized Pareto value size (default 0.2615).
    #[arg(long, allow_negative_numbers = true)]
    pub value_k: Option<f64>,
    /// mixgraph: 'sigma' of the generalized Pareto value size (default 25.45).
    #[arg(long, allow_negative_numbers = true)]
    pub value_sigma: Option<f64>,
    /// mixgraph: 'theta' of the generalized Pareto scan length (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub iter_theta: Option<f64>,
    /// mixgraph: 'k' of the generalized Pareto scan length (default 2.517).
    #[arg(long, allow_negative_numbers = true)]
    pub iter_k: Option<f64>,
    /// mixgraph: 'sigma' of the generalized Pareto scan length (default 14.236).
    #[arg(long, allow_negative_numbers = true)]
    pub iter_sigma: Option<f64>,
    /// mixgraph: hold the operation rate (all threads together) to
    /// sine_a * sin(sine_b * t + sine_c) + sine_d ops/s, t in seconds since
    /// the benchmark began, re-evaluated every
    /// --sine_mix_rate_interval_milliseconds.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub sine_mix_rate: Option<bool>,
    /// mixgraph: the sine's amplitude in ops/s (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub sine_a: Option<f64>,
    /// mixgraph: the sine's angular frequency in radians per second (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub sine_b: Option<f64>,
    /// mixgraph: the sine's phase in radians (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub sine_c: Option<f64>,
    /// mixgraph: the rate's offset in ops/s (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub sine_d: Option<f64>,
    /// mixgraph: how often the sine rate is re-evaluated (default 10000).
    #[arg(long)]
    pub sine_mix_rate_interval_milliseconds: Option<u64>,
    /// mixgraph: noise added to each evaluation, uniform within
    /// +/- sine_mix_rate_noise * sine_a / 2 ops/s (default 0; at most 1).
    #[arg(long)]
    pub sine_mix_rate_noise: Option<f64>,
}

/// `a.over(b)` field by field: `a`'s value where it has one.
macro_rules! over_fields {
    ($a:expr, $b:expr; $($f:ident),* $(,)?) => {
        DbBenchArgs { $($f: $a.$f.or($b.$f)),* }
    };
}

impl DbBenchArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: DbBenchArgs) -> DbBenchArgs {
        over_fields!(self, base;
            benchmarks, num, reads, key_size, value_size, threads, seek_nexts,
            batch_size, duration, range_tombstone_width, max_num_range_tombstones,
            use_existing_db, seed, histogram, statistics, stats_interval_seconds,
            report_interval_seconds, report_file, benchmark_write_rate_limit,
            mix_get_ratio, mix_put_ratio, mix_seek_ratio, mix_max_scan_len,
            mix_max_value_size, key_dist_a, key_dist_b, keyrange_dist_a,
            keyrange_dist_b, keyrange_dist_c, keyrange_dist_d, keyrange_num,
            value_theta, value_k, value_sigma, iter_theta, iter_k, iter_sigma,
            sine_mix_rate, sine_a, sine_b, sine_c, sine_d,
            sine_mix_rate_interval_milliseconds, sine_mix_rate_noise,
        )
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
        let mixgraph = MixGraphConfig::resolve(&self, num)?;
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
            histogram: self.histogram.unwrap_or(false),
            statistics: self.statistics.unwrap_or(false),
            stats_interval_seconds: self.stats_interval_seconds.unwrap_or(0),
            report_interval_seconds: self.report_interval_seconds.unwrap_or(0),
            report_file: self
                .report_file
                .unwrap_or_else(|| PathBuf::from("report.csv")),
            benchmark_write_rate_limit: self.benchmark_write_rate_limit.unwrap_or(0),
            mixgraph,
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
    pub histogram: bool,
    pub statistics: bool,
    pub stats_interval_seconds: u64,
    pub report_interval_seconds: u64,
    pub report_file: PathBuf,
    pub benchmark_write_rate_limit: u64,
    pub mixgraph: MixGraphConfig,
}

impl DbBenchConfig {
    /// Range deletions each deleterange thread issues.
    pub fn range_deletions_per_thread(&self) -> u64 {
        match self.max_num_range_tombstones {
            0 => (self.num / self.range_tombstone_width).max(1),
            n => n,
        }
    }

    /// Operations each thread of benchmark `b` performs (without
    /// `--duration`); meta operations are one.
    pub fn ops_per_thread(&self, b: Benchmark) -> u64 {
        match b {
            Benchmark::FillSeq
            | Benchmark::FillRandom
            | Benchmark::Overwrite
            | Benchmark::DeleteRandom => self.num,
            // db_bench divides --num by 1000 for fillsync (its help text
            // says 100; the code says 1000).
            Benchmark::FillSync => (self.num / 1000).max(1),
            Benchmark::DeleteRange => self.range_deletions_per_thread(),
            _ if b.is_meta() => 1,
            _ => self.reads,
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
