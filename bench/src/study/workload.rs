//! One strategy's run of the study workload: a single writer thread issues a
//! seeded mix of inserts, updates, deletes, point reads and short scans on a
//! fresh database, while a sampler thread watches the manifest (see
//! [`super::tree_watch`]). The same seed gives every strategy the same
//! operations.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use o3_compute::{Db, DbOptions, DbStats, ReadOptions};
use o3_storage::compaction::FlushStream;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

use super::strategy::StrategySpec;
use super::tree_watch::{
    DeletePersistence, IssuedDelete, ManifestWatcher, TreeSnapshot, delete_persistence,
};
use crate::error::{BenchError, Result};
use crate::report::{BackgroundErrors, OpKind, OpLatency, PhaseResult, ThreadRecorder};

/// How often the sampler reads the manifest.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// After the run: the tree counts as settled when no compaction finished for
/// this long ...
const SETTLE_QUIET: Duration = Duration::from_millis(500);
/// ... or after this long at most.
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// The operation mix and sizes, shared by every strategy of a study.
#[derive(Debug, Clone, Serialize)]
pub struct Mix {
    pub ops: u64,
    pub insert: f64,
    pub update: f64,
    pub delete: f64,
    pub read: f64,
    pub scan: f64,
    pub scan_length: usize,
    pub key_size: usize,
    pub value_size: usize,
    pub seed: u64,
}

impl Mix {
    /// Reject mixes that cannot run: negative or all-zero weights, keys
    /// shorter than the 8-byte key id.
    pub fn validate(&self) -> Result<()> {
        let weights = [self.insert, self.update, self.delete, self.read, self.scan];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            return Err(BenchError::InvalidArgument(format!(
                "operation mix {weights:?} (insert, update, delete, read, scan) needs non-negative weights with a positive sum"
            )));
        }
        if self.key_size < 8 {
            return Err(BenchError::InvalidArgument(format!(
                "--key_size {} is below 8 (keys start with an 8-byte key id)",
                self.key_size
            )));
        }
        Ok(())
    }

    /// The operation a uniform draw `u` in [0, 1) stands for.
    fn pick(&self, u: f64) -> OpKind {
        let total = self.insert + self.update + self.delete + self.read + self.scan;
        let mut x = u * total;
        for (w, op) in [
            (self.insert, OpKind::Insert),
            (self.update, OpKind::Update),
            (self.delete, OpKind::Delete),
            (self.read, OpKind::Read),
        ] {
            if x < w {
                return op;
            }
            x -= w;
        }
        OpKind::Scan
    }
}

/// What one strategy did under the workload.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// (flush + compaction bytes written) / user bytes.
    pub write_amplification: f64,
    /// SST bytes after the run settled / bytes of the live keys' newest
    /// key and value.
    pub space_amplification: f64,
    pub sst_bytes: u64,
    pub logical_bytes: u64,
    /// Average sorted runs (L0 files + non-empty deeper levels) at the time
    /// of each point lookup.
    pub read_amplification: f64,
    pub sorted_runs_at_end: usize,
    pub p99_us: Vec<(OpKind, f64)>,
    pub stall_seconds: f64,
    pub delete_persistence: DeletePersistence,
    pub tombstones_at_end: u64,
    pub compactions: u64,
    #[serde(skip)]
    pub latency: Vec<OpLatency>,
    pub db_stats: DbStats,
    /// Failed background jobs by the end of the run; any fails the study.
    pub background_errors: BackgroundErrors,
}

/// Key bytes of key id `index`: the scrambled 8-byte id, zero padded.
pub fn key_bytes(index: u64, key_size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&FlushStream::key_of(index).to_be_bytes());
    out.resize(key_size, 0);
}

/// Run `mix` under `spec` on a fresh database in `dir` with `base` options.
pub fn run_strategy(
    spec: &StrategySpec,
    mix: &Mix,
    base: &DbOptions,
    dir: &Path,
    progress: ProgressBar,
) -> Result<StrategyResult> {
    let options = DbOptions {
        compaction: spec.options.clone(),
        ..base.clone()
    };
    let db = Db::open(dir, options).map_err(BenchError::engine(format!(
        "opening {} for {}",
        dir.display(),
        spec.label
    )))?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let runs_now = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, runs_now, dir) = (stop.clone(), runs_now.clone(), dir.to_path_buf());
        std::thread::spawn(move || sample_tree(&dir, start, &stop, &runs_now))
    };
    let outcome = drive(&db, mix, start, &runs_now, progress);
    let settled = outcome.as_ref().ok().map(|_| settle(&db));
    stop.store(true, Ordering::Release);
    let snapshots = sampler
        .join()
        .map_err(|_| BenchError::InvalidArgument("the tree sampler thread panicked".into()))?;
    let (recorder_result, deletes, lookups, live) = outcome?;
    let settle_result = settled.unwrap_or(Ok(()));
    settle_result?;
    let end = start.elapsed();
    let stats = db.stats();
    let background_errors = BackgroundErrors::of(&db, &stats);
    db.close()
        .map_err(BenchError::engine(format!("closing {}", dir.display())))?;

    let sst_bytes: u64 = stats.levels.iter().map(|l| l.bytes).sum();
    let logical_bytes = live * (mix.key_size + mix.value_size) as u64;
    let last = snapshots.last().map(|(_, s)| s);
    Ok(StrategyResult {
        strategy: spec.label.clone(),
        seconds: recorder_result.seconds,
        ops_per_sec: recorder_result.ops_per_sec,
        write_amplification: stats.write_amplification,
        space_amplification: sst_bytes as f64 / logical_bytes.max(1) as f64,
        sst_bytes,
        logical_bytes,
        read_amplification: lookups.1 as f64 / lookups.0.max(1) as f64,
        sorted_runs_at_end: last.map_or(0, TreeSnapshot::sorted_runs),
        p99_us: recorder_result
            .latency
            .iter()
            .map(|l| (l.op, l.p99_us))
            .collect(),
        stall_seconds: stats.stall_micros.iter().map(|(_, m)| *m).sum::<u64>() as f64 / 1e6,
        delete_persistence: delete_persistence(&deletes, &snapshots, end),
        tombstones_at_end: last.map_or(0, TreeSnapshot::tombstones),
        compactions: stats.compactions,
        latency: recorder_result.latency,
        db_stats: stats,
        background_errors,
    })
}

/// `(lookups, sum of sorted runs seen by them)`.
type Lookups = (u64, u64);

/// The measured run; returns the phase, the deletes issued, the lookup
/// counts and the number of live keys at the end.
fn drive(
    db: &Db,
    mix: &Mix,
    start: Instant,
    runs_now: &AtomicUsize,
    progress: ProgressBar,
) -> Result<(PhaseResult, Vec<IssuedDelete>, Lookups, u64)> {
    let mut rng = SmallRng::seed_from_u64(mix.seed);
    let mut value_source = vec![0u8; mix.value_size * 2 + 1];
    rng.fill_bytes(&mut value_source);
    let mut live: Vec<bool> = Vec::new();
    let mut live_count = 0u64;
    let mut deletes = Vec::new();
    let mut lookups: Lookups = (0, 0);
    let mut seq = db.stats().last_sequence;
    let mut key = Vec::with_capacity(mix.key_size);
    let mut rec = ThreadRecorder::new(start, progress);
    let engine = |what: &'static str| BenchError::engine_op("study", what);
    for _ in 0..mix.ops {
        let mut op = mix.pick(rng.random::<f64>());
        if live.is_empty() && op != OpKind::Insert {
            op = OpKind::Insert;
        }
        let index = match op {
            OpKind::Insert => live.len() as u64,
            _ => rng.random_range(0..live.len() as u64),
        };
        key_bytes(index, mix.key_size, &mut key);
        let began = Instant::now();
        match op {
            OpKind::Insert | OpKind::Update => {
                let off = rng.random_range(0..=mix.value_size);
                db.put(&key, &value_source[off..off + mix.value_size])
                    .map_err(engine("put"))?;
                seq += 1;
                if op == OpKind::Insert {
                    live.push(false);
                }
                if !live[index as usize] {
                    live[index as usize] = true;
                    live_count += 1;
                }
            }
            OpKind::Delete => {
                db.delete(&key).map_err(engine("delete"))?;
                seq += 1;
                if live[index as usize] {
                    live[index as usize] = false;
                    live_count -= 1;
                }
                deletes.push(IssuedDelete {
                    key: key.clone(),
                    seq,
                    at: began.duration_since(start),
                });
            }
            OpKind::Read => {
                lookups.0 += 1;
                lookups.1 += runs_now.load(Ordering::Relaxed) as u64;
                db.get(&key).map_err(engine("get"))?;
            }
            _ => {
                let mut it = db.iter(ReadOptions::default()).map_err(engine("scan"))?;
                it.seek(&key).map_err(engine("seek"))?;
                for _ in 0..mix.scan_length {
                    if !it.valid() {
                        break;
                    }
                    it.next().map_err(engine("scan"))?;
                }
            }
        }
        rec.record(op, began)?;
    }
    let elapsed = rec.elapsed();
    let phase = PhaseResult::merge("study", vec![rec], elapsed)?;
    let last = db.stats().last_sequence;
    if last != seq {
        return Err(BenchError::InvalidArgument(format!(
            "the engine's last sequence is {last}, the study counted {seq}: delete sequences would be wrong"
        )));
    }
    Ok((phase, deletes, lookups, live_count))
}

/// Flush, then wait until compactions stop finishing for [`SETTLE_QUIET`].
fn settle(db: &Db) -> Result<()> {
    db.flush()
        .map_err(BenchError::engine("flushing after the study run"))?;
    let began = Instant::now();
    let mut last = (db.stats().compactions, Instant::now());
    while began.elapsed() < SETTLE_MAX && last.1.elapsed() < SETTLE_QUIET {
        std::thread::sleep(Duration::from_millis(50));
        let now = db.stats().compactions;
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    Ok(())
}

/// The sampler thread: a snapshot each time the manifest changed, and the
/// current sorted-run count for lookups to read.
fn sample_tree(
    dir: &Path,
    start: Instant,
    stop: &AtomicBool,
    runs_now: &AtomicUsize,
) -> Vec<(Duration, TreeSnapshot)> {
    let mut watcher = ManifestWatcher::new(dir);
    let mut snapshots = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if let Some(s) = watcher.poll() {
            runs_now.store(s.sorted_runs(), Ordering::Relaxed);
            snapshots.push((start.elapsed(), s));
        }
        if stopping {
            return snapshots;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}
