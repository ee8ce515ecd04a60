//! `--statistics`: db_bench's "STATISTICS:" block at the end of a run,
//! built from the engine's [`DbStats`] counters and the run's latency
//! histograms. Counters print as RocksDB's tickers do,
//! `name COUNT : value`, histograms as `name P50 : .. P95 : .. P99 : ..
//! P100 : .. COUNT : .. SUM : ..` (microseconds). A counter whose meaning
//! is RocksDB's carries RocksDB's name; the others are `o3.*`. The
//! histograms are measured around each call by the benchmark threads
//! (RocksDB measures inside the call).

use o3_compute::DbStats;

use super::histogram::{LatencyBook, micros_at};
use crate::report::OpKind;

/// The counters of `s` as `(ticker name, value)`, names unique.
pub fn tickers(s: &DbStats) -> Vec<(String, u64)> {
    let mut t: Vec<(String, u64)> = [
        ("rocksdb.block.cache.hit", s.block_cache_hits),
        ("rocksdb.block.cache.miss", s.block_cache_misses),
        // Key + value bytes of puts and deletions, as RocksDB counts them.
        ("rocksdb.bytes.written", s.user_bytes),
        ("rocksdb.wal.bytes", s.wal_bytes),
        ("rocksdb.flush.write.bytes", s.flush_bytes),
        ("rocksdb.compact.read.bytes", s.compaction_bytes_read),
        ("rocksdb.compact.write.bytes", s.compaction_bytes_written),
        (
            "rocksdb.stall.micros",
            s.stall_micros.iter().map(|(_, m)| m).sum(),
        ),
        ("o3.block.cache.declined", s.block_cache_declined),
        ("o3.block.cache.usage.bytes", s.block_cache_usage),
        // Batches, not keys (RocksDB's rocksdb.number.keys.written).
        ("o3.write.batches", s.writes),
        ("o3.write.groups", s.write_groups),
        ("o3.write.groups.parallel", s.parallel_write_groups),
        ("o3.flushes", s.flushes),
        ("o3.compactions", s.compactions),
        ("o3.compaction.trivial.moves", s.trivial_moves),
        ("o3.background.errors", s.background_errors),
        ("o3.range.tombstones.live", s.range_tombstones),
        ("o3.reshards", s.reshards),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    t.extend(
        s.stall_micros
            .iter()
            .map(|(reason, m)| (format!("o3.stall.{}.micros", reason.name()), *m)),
    );
    t
}

/// RocksDB's histogram name for the latencies of `kind`, or o3's.
fn histogram_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Read => "rocksdb.db.get.micros",
        OpKind::Write => "rocksdb.db.write.micros",
        OpKind::Insert => "o3.db.insert.micros",
        OpKind::Seek => "rocksdb.db.seek.micros",
        OpKind::MultiGet => "rocksdb.db.multiget.micros",
        OpKind::Delete => "o3.db.delete.micros",
        OpKind::ReadModifyWrite => "o3.db.update.micros",
        OpKind::Update => "o3.db.ycsb.update.micros",
        OpKind::Scan => "o3.db.scan.micros",
        OpKind::Compact => "o3.db.compact.micros",
        OpKind::Flush => "o3.db.flush.micros",
        OpKind::WaitForCompaction => "o3.db.waitforcompaction.micros",
        OpKind::Stats => "o3.db.stats.micros",
    }
}

/// The whole block, "STATISTICS:" line first.
pub fn dump(stats: &DbStats, latencies: &LatencyBook) -> String {
    let mut s = String::from("STATISTICS:\n");
    for (name, value) in tickers(stats) {
        s.push_str(&format!("{name} COUNT : {value}\n"));
    }
    for (kind, h) in latencies.kinds() {
        s.push_str(&format!(
            "{} P50 : {:.6} P95 : {:.6} P99 : {:.6} P100 : {:.6} COUNT : {} SUM : {}\n",
            histogram_name(kind),
            micros_at(h, 0.5),
            micros_at(h, 0.95),
            micros_at(h, 0.99),
            h.max() as f64 / 1000.0,
            h.len(),
            (h.mean() * h.len() as f64 / 1000.0).round() as u64
        ));
    }
    s
}
