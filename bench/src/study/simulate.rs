//! Simulator against engine: the same [`FlushStream`] replayed in the no-I/O
//! [`Simulator`] and in a real database, flush by flush (the engine's
//! memtable is large enough never to fill, and the study flushes it after
//! each simulated flush, so both see the same flush sequence). Both write
//! amplifications are `(flush + compaction bytes written) / flush bytes`.
//!
//! The simulator models a record as `entry_overhead + key + value` bytes;
//! the overhead is calibrated from the engine's own flush bytes, so level
//! sizes, and with them compaction triggers, line up.

use std::path::Path;
use std::time::{Duration, Instant};

use o3_compute::{Db, DbOptions};
use o3_storage::compaction::{
    BusyFiles, FlushStream, SimEntry, SimReport, Simulator, SimulatorOptions,
};
use o3_storage::version::Version;
use serde::Serialize;

use super::strategy::StrategySpec;
use super::tree_watch::ManifestWatcher;
use crate::error::{BenchError, Result};

/// The flush stream both sides replay.
#[derive(Debug, Clone, Serialize)]
pub struct StreamShape {
    pub flushes: usize,
    pub entries_per_flush: usize,
    pub overwrite_ratio: f64,
    pub delete_ratio: f64,
    pub value_size: usize,
    pub seed: u64,
}

/// Predicted and measured amplification of one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub strategy: String,
    pub simulated_write_amplification: f64,
    pub engine_write_amplification: f64,
    /// simulated / engine.
    pub ratio: f64,
    pub simulated_space_amplification: f64,
    pub engine_sst_bytes: u64,
    pub simulated_live_bytes: u64,
    pub simulated_compactions: u64,
    pub engine_compactions: u64,
    /// Files the engine moved down without rewriting (the simulator rewrites them).
    pub engine_trivial_moves: u64,
    /// Bytes per record beyond key and value, as measured on the engine.
    pub entry_overhead: u64,
}

const KEY_BYTES: u64 = 8;
/// Longest wait for the engine to settle after one flush.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

fn batches(shape: &StreamShape) -> impl Iterator<Item = Vec<SimEntry>> {
    FlushStream::new(
        shape.entries_per_flush,
        shape.overwrite_ratio,
        shape.delete_ratio,
        shape.seed,
    )
    .take(shape.flushes)
}

fn simulate(spec: &StrategySpec, shape: &StreamShape, entry_overhead: u64) -> Result<SimReport> {
    let options = SimulatorOptions {
        key_bytes: KEY_BYTES,
        value_bytes: shape.value_size as u64,
        entry_overhead,
        ..SimulatorOptions::default()
    };
    let sim_err = |e: o3_storage::Error| BenchError::InvalidArgument(format!("simulator: {e}"));
    let mut sim = Simulator::new(&spec.options, options).map_err(sim_err)?;
    for batch in batches(shape) {
        sim.flush(&batch).map_err(sim_err)?;
    }
    Ok(sim.report())
}

/// Replay the stream into a fresh database at `dir`; returns its
/// `(flush bytes, compaction bytes written, compactions, SST bytes, trivial moves)`.
fn replay_engine(
    spec: &StrategySpec,
    shape: &StreamShape,
    base: &DbOptions,
    dir: &Path,
) -> Result<(u64, u64, u64, u64, u64)> {
    let batch_bytes = (shape.entries_per_flush * (KEY_BYTES as usize + shape.value_size) * 4)
        .max(base.write_buffer_size);
    let mut options = DbOptions {
        compaction: spec.options.clone(),
        write_buffer_size: batch_bytes,
        disable_wal: true,
        ..base.clone()
    };
    options.max_unflushed_bytes = options.max_unflushed_bytes.max(4 * batch_bytes as u64);
    let db = Db::open(dir, options).map_err(BenchError::engine(format!(
        "opening {} for {}",
        dir.display(),
        spec.label
    )))?;
    let value = vec![0x5au8; shape.value_size];
    let mut watcher = ManifestWatcher::new(dir);
    for batch in batches(shape) {
        for e in &batch {
            let key = e.key.to_be_bytes();
            let r = if e.delete {
                db.delete(&key)
            } else {
                db.put(&key, &value)
            };
            r.map_err(BenchError::engine("replaying the flush stream"))?;
        }
        db.flush()
            .map_err(BenchError::engine("flushing a replayed batch"))?;
        wait_until_settled(spec, &mut watcher)?;
    }
    let s = db.stats();
    // The comparison is meaningless if the engine's jobs failed.
    crate::report::BackgroundErrors::of(&db, &s).check(&spec.label)?;
    db.close()
        .map_err(BenchError::engine(format!("closing {}", dir.display())))?;
    Ok((
        s.flush_bytes,
        s.compaction_bytes_written,
        s.compactions,
        s.levels.iter().map(|l| l.bytes).sum(),
        s.trivial_moves,
    ))
}

/// Wait until the strategy picks nothing on the engine's installed tree, as
/// the simulator compacts until settled after each flush (without this the
/// engine's compactions lag and merge several flushes at once).
fn wait_until_settled(spec: &StrategySpec, watcher: &mut ManifestWatcher) -> Result<()> {
    let strategy = spec
        .options
        .build()
        .map_err(|e| BenchError::InvalidArgument(format!("strategy {}: {e}", spec.label)))?;
    let levels = spec
        .options
        .physical_levels()
        .map_err(|e| BenchError::InvalidArgument(format!("strategy {}: {e}", spec.label)))?;
    let began = Instant::now();
    let mut tree = None;
    while began.elapsed() < SETTLE_LIMIT {
        if let Some(t) = watcher.poll() {
            tree = Some(t);
        }
        let mut version = Version::new(levels);
        for (level, files) in tree.iter().flat_map(|t| t.levels.iter().enumerate()) {
            if let Some(slot) = version.levels.get_mut(level) {
                slot.clone_from(files);
            }
        }
        if let Some(l0) = version.levels.first_mut() {
            l0.sort_by_key(|f| std::cmp::Reverse(f.largest_seq));
        }
        if strategy.pick(&version, &BusyFiles::new()).is_none() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(BenchError::InvalidArgument(format!(
        "strategy {}: the engine's compactions did not settle within {SETTLE_LIMIT:?} of a flush",
        spec.label
    )))
}

/// Run `spec` on both sides and compare.
pub fn compare(
    spec: &StrategySpec,
    shape: &StreamShape,
    base: &DbOptions,
    dir: &Path,
) -> Result<Agreement> {
    let (flush, written, compactions, sst_bytes, moves) = replay_engine(spec, shape, base, dir)?;
    // Two cheap simulations give the record count after in-memtable
    // deduplication (bytes grow by one per record per overhead byte), and
    // with it the engine's bytes per record beyond key and value.
    let zero = simulate(spec, shape, 0)?;
    let one = simulate(spec, shape, 1)?;
    let records = one.flush_bytes.saturating_sub(zero.flush_bytes).max(1);
    let entry_overhead = flush.saturating_sub(zero.flush_bytes) / records;
    let sim = simulate(spec, shape, entry_overhead)?;
    let engine_wa = (flush + written) as f64 / flush.max(1) as f64;
    let sim_wa = sim.write_amplification();
    Ok(Agreement {
        strategy: spec.label.clone(),
        simulated_write_amplification: sim_wa,
        engine_write_amplification: engine_wa,
        ratio: sim_wa / engine_wa,
        simulated_space_amplification: sim.space_amplification(),
        engine_sst_bytes: sst_bytes,
        simulated_live_bytes: sim.live_bytes,
        simulated_compactions: sim.compactions,
        engine_compactions: compactions,
        engine_trivial_moves: moves,
        entry_overhead,
    })
}
