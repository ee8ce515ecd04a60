//! YCSB's `CoreWorkload` against an o3 [`Db`].
//!
//! - Keys are YCSB's: `"user"` + zero padding + the key number, FNV-hashed
//!   first unless `insertorder=ordered`.
//! - A record's `fieldcount` fields of `fieldlength` bytes are stored as one
//!   value, field `i` at bytes `[i * fieldlength, (i + 1) * fieldlength)`.
//!   Reads fetch the whole record (o3 has no column projection). An update
//!   that writes one field (`writeallfields=false`, YCSB's default) reads the
//!   record and writes it back with that field replaced, as YCSB's RocksDB
//!   binding does; read-modify-write is that read followed by the write.
//! - Load: a shared counter hands out `insertstart..insertstart+insertcount`.
//!   Run: each thread owns its key and scan-length choosers and picks
//!   operations with YCSB's proportions; inserts take numbers from the shared
//!   [`AcknowledgedCounter`] and readers never pick a number above its limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use o3_compute::{Db, ReadOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::engine::EngineConfig;
use crate::error::{BenchError, Result};
use crate::report::{OpKind, PhaseReport, PhaseResult, RunOutcome, ThreadRecorder, progress_bar};
use crate::ycsb::YcsbConfig;
use crate::ycsb::generator::{
    AcknowledgedCounter, Hotspot, ScrambledZipfian, SkewedLatest, Uniform, Zipfian, fnv_hash64,
};
use crate::ycsb::properties::{RequestDistribution, ScanLengthDistribution, WorkloadSpec};

/// Write YCSB's key for `keynum` into `buf` (cleared first).
pub fn key_name(buf: &mut Vec<u8>, keynum: u64, zeropadding: usize, ordered: bool) {
    use std::io::Write;
    let n = if ordered { keynum } else { fnv_hash64(keynum) };
    buf.clear();
    buf.extend_from_slice(b"user");
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{n:0>zeropadding$}");
}

/// Random printable bytes that records are cut from.
struct FieldSource {
    data: Vec<u8>,
}

impl FieldSource {
    fn new(record_len: usize, rng: &mut SmallRng) -> FieldSource {
        let len = (1 << 20).max(2 * record_len);
        FieldSource {
            data: (0..len).map(|_| rng.random_range(b' '..=b'~')).collect(),
        }
    }

    /// `len` bytes at a random offset.
    fn slice(&self, len: usize, rng: &mut SmallRng) -> &[u8] {
        let start = rng.random_range(0..=self.data.len() - len);
        &self.data[start..start + len]
    }
}

/// Operation kinds of the run phase, picked by proportion.
#[derive(Debug, Clone)]
struct OperationChooser {
    weights: Vec<(OpKind, f64)>,
    total: f64,
}

impl OperationChooser {
    fn new(s: &WorkloadSpec) -> OperationChooser {
        let weights: Vec<(OpKind, f64)> = [
            (OpKind::Read, s.readproportion),
            (OpKind::Update, s.updateproportion),
            (OpKind::Insert, s.insertproportion),
            (OpKind::Scan, s.scanproportion),
            (OpKind::ReadModifyWrite, s.readmodifywriteproportion),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .collect();
        let total = weights.iter().map(|(_, w)| w).sum();
        OperationChooser { weights, total }
    }

    /// YCSB's `DiscreteGenerator`: proportions are relative to their sum.
    fn next(&self, rng: &mut SmallRng) -> OpKind {
        let mut v = rng.random::<f64>() * self.total;
        for &(k, w) in &self.weights {
            if v < w {
                return k;
            }
            v -= w;
        }
        self.weights.last().map_or(OpKind::Read, |(k, _)| *k)
    }
}

/// The run phase's choice of existing key numbers.
#[derive(Debug, Clone)]
enum KeyChooser {
    Uniform(Uniform),
    Zipfian(ScrambledZipfian),
    Latest(SkewedLatest),
    Hotspot(Hotspot),
}

impl KeyChooser {
    fn new(s: &WorkloadSpec, inserts: &AcknowledgedCounter) -> Result<KeyChooser> {
        let last = s.insertstart + s.insertcount.max(1) - 1;
        Ok(match s.requestdistribution {
            RequestDistribution::Uniform => KeyChooser::Uniform(Uniform::new(s.insertstart, last)),
            RequestDistribution::Zipfian => {
                // Room for the keys the run phase inserts (YCSB's fudge factor 2).
                let expected_new = (s.operationcount as f64 * s.insertproportion * 2.0) as u64;
                KeyChooser::Zipfian(ScrambledZipfian::new(
                    s.insertstart,
                    s.insertstart + s.insertcount + expected_new,
                ))
            }
            RequestDistribution::Latest => KeyChooser::Latest(SkewedLatest::new(inserts)),
            RequestDistribution::Hotspot => KeyChooser::Hotspot(Hotspot::new(
                s.insertstart,
                last,
                s.hotspotdatafraction,
                s.hotspotopnfraction,
            )?),
        })
    }

    /// A key number whose insert is acknowledged (YCSB's `nextKeynum`).
    fn next(&mut self, rng: &mut SmallRng, inserts: &AcknowledgedCounter) -> u64 {
        loop {
            let k = match self {
                KeyChooser::Uniform(g) => g.next(rng),
                KeyChooser::Zipfian(g) => g.next(rng),
                KeyChooser::Latest(g) => g.next(rng, inserts),
                KeyChooser::Hotspot(g) => g.next(rng),
            };
            if k <= inserts.last_value() {
                return k;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum ScanLength {
    Uniform(Uniform),
    Zipfian(Zipfian),
}

impl ScanLength {
    fn next(&mut self, rng: &mut SmallRng) -> u64 {
        match self {
            ScanLength::Uniform(g) => g.next(rng),
            ScanLength::Zipfian(g) => g.next(rng),
        }
    }
}

/// Run the configured phases. The run phase is skipped when background
/// work had failed by the end of the load: its numbers would not describe
/// the engine working normally.
pub fn run(cfg: &YcsbConfig, engine: &EngineConfig, show_progress: bool) -> Result<RunOutcome> {
    let db = if cfg.load {
        engine.open_empty()?
    } else {
        engine.open()?
    };
    let mut phases = Vec::new();
    if cfg.load {
        match load(cfg, &db, show_progress) {
            Ok(p) => phases.push(p),
            Err(e) => return RunOutcome::cut_short(db, phases, "load", e),
        }
    }
    let load_failed = phases.iter().any(|p| p.background_errors.failed());
    if cfg.run && !load_failed {
        match transactions(cfg, &db, show_progress) {
            Ok(p) => phases.push(p),
            Err(e) => return RunOutcome::cut_short(db, phases, "run", e),
        }
    }
    RunOutcome::close(db, phases)
}

/// Join the phase's worker threads, keeping the first error.
fn join_all<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err = first_err.or(Some(BenchError::InvalidArgument(
                    "a worker thread panicked".into(),
                )))
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub(crate) fn load(cfg: &YcsbConfig, db: &Db, show_progress: bool) -> Result<PhaseReport> {
    let s = &cfg.spec;
    let next = AtomicU64::new(s.insertstart);
    let end = s.insertstart + s.insertcount;
    let progress = progress_bar(show_progress, Some(s.insertcount), "load");
    let record_len = s.fieldcount * s.fieldlength;
    let before = db.stats();
    let start = Instant::now();
    let recorders = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.threadcount)
            .map(|t| {
                let mut rec = ThreadRecorder::new(start, progress.clone());
                let next = &next;
                scope.spawn(move || -> Result<ThreadRecorder> {
                    let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(t as u64));
                    let fields = FieldSource::new(record_len, &mut rng);
                    let mut key = Vec::new();
                    let mut began = Instant::now();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= end {
                            break;
                        }
                        key_name(&mut key, k, s.zeropadding, s.ordered_inserts);
                        let value = fields.slice(record_len, &mut rng);
                        db.put(&key, value)
                            .map_err(BenchError::engine("load: insert"))?;
                        rec.add_bytes(key.len() + record_len);
                        began = rec.record(OpKind::Insert, began)?;
                    }
                    Ok(rec)
                })
            })
            .collect();
        join_all(handles)
    })?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    Ok(PhaseReport::new(
        PhaseResult::merge("load", recorders, elapsed)?,
        None,
        db,
        &before,
    ))
}

/// Reads attempted and found during the run phase.
#[derive(Debug, Default, Clone, Copy)]
struct ReadOutcome {
    attempted: u64,
    found: u64,
}

pub(crate) fn transactions(cfg: &YcsbConfig, db: &Db, show_progress: bool) -> Result<PhaseReport> {
    let s = &cfg.spec;
    let inserts = AcknowledgedCounter::new(s.recordcount)?;
    let chooser = OperationChooser::new(s);
    let progress = progress_bar(show_progress, Some(s.operationcount), "run");
    let threads = s.threadcount as u64;
    let before = db.stats();
    let start = Instant::now();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // YCSB's split: the first `operationcount % threads` threads do one more.
                let ops = s.operationcount / threads + u64::from(t < s.operationcount % threads);
                let rec = ThreadRecorder::new(start, progress.clone());
                let (inserts, chooser) = (&inserts, &chooser);
                scope.spawn(move || run_thread(cfg, db, t, ops, rec, inserts, chooser))
            })
            .collect();
        join_all(handles)
    })?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let (mut attempted, mut found) = (0, 0);
    let mut recorders = Vec::new();
    for (rec, o) in results {
        attempted += o.attempted;
        found += o.found;
        recorders.push(rec);
    }
    Ok(PhaseReport::new(
        PhaseResult::merge("run", recorders, elapsed)?,
        Some(format!("({found} of {attempted} reads found)")),
        db,
        &before,
    ))
}

fn run_thread(
    cfg: &YcsbConfig,
    db: &Db,
    thread: u64,
    ops: u64,
    mut rec: ThreadRecorder,
    inserts: &AcknowledgedCounter,
    chooser: &OperationChooser,
) -> Result<(ThreadRecorder, ReadOutcome)> {
    let s = &cfg.spec;
    let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(1000 + thread));
    let record_len = s.fieldcount * s.fieldlength;
    let fields = FieldSource::new(record_len, &mut rng);
    let mut keys = KeyChooser::new(s, inserts)?;
    let mut scan_len = match s.scanlengthdistribution {
        ScanLengthDistribution::Uniform => {
            ScanLength::Uniform(Uniform::new(s.minscanlength, s.maxscanlength))
        }
        ScanLengthDistribution::Zipfian => {
            ScanLength::Zipfian(Zipfian::new(s.minscanlength, s.maxscanlength))
        }
    };
    let mut key = Vec::new();
    let mut outcome = ReadOutcome::default();
    let mut began = Instant::now();
    for _ in 0..ops {
        let op = chooser.next(&mut rng);
        match op {
            OpKind::Insert => {
                let k = inserts.next_value();
                key_name(&mut key, k, s.zeropadding, s.ordered_inserts);
                db.put(&key, fields.slice(record_len, &mut rng))
                    .map_err(BenchError::engine("run: insert"))?;
                inserts.acknowledge(k)?;
                rec.add_bytes(key.len() + record_len);
            }
            OpKind::Scan => {
                key_name(
                    &mut key,
                    keys.next(&mut rng, inserts),
                    s.zeropadding,
                    s.ordered_inserts,
                );
                let len = scan_len.next(&mut rng);
                let mut it = db
                    .iter(ReadOptions::default())
                    .map_err(BenchError::engine("run: scan"))?;
                it.seek(&key)
                    .map_err(BenchError::engine("run: scan seek"))?;
                let mut n = 0;
                while it.valid() && n < len {
                    rec.add_bytes(it.key().len() + it.value().len());
                    n += 1;
                    it.next().map_err(BenchError::engine("run: scan next"))?;
                }
            }
            OpKind::Read | OpKind::Update | OpKind::ReadModifyWrite => {
                key_name(
                    &mut key,
                    keys.next(&mut rng, inserts),
                    s.zeropadding,
                    s.ordered_inserts,
                );
                let needs_read = op != OpKind::Update || !s.writeallfields;
                let current = if needs_read {
                    let v = db.get(&key).map_err(BenchError::engine("run: read"))?;
                    if op == OpKind::Read {
                        outcome.attempted += 1;
                        outcome.found += u64::from(v.is_some());
                    }
                    v
                } else {
                    None
                };
                if op != OpKind::Read {
                    write_fields(db, &key, current, s, &fields, &mut rng)?;
                }
                rec.add_bytes(key.len() + record_len);
            }
            _ => {}
        }
        began = rec.record(op, began)?;
    }
    Ok((rec, outcome))
}

/// Write new field values: all of them (`writeallfields`, or no current
/// record), else one random field patched into `current`.
fn write_fields(
    db: &Db,
    key: &[u8],
    current: Option<Vec<u8>>,
    s: &WorkloadSpec,
    fields: &FieldSource,
    rng: &mut SmallRng,
) -> Result<()> {
    let record_len = s.fieldcount * s.fieldlength;
    match current {
        Some(mut record) if !s.writeallfields && record.len() == record_len => {
            let f = rng.random_range(0..s.fieldcount);
            let range = f * s.fieldlength..(f + 1) * s.fieldlength;
            record[range].copy_from_slice(fields.slice(s.fieldlength, rng));
            db.put(key, &record)
        }
        _ => db.put(key, fields.slice(record_len, rng)),
    }
    .map_err(BenchError::engine("run: update"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ycsb::properties::Properties;

    #[test]
    fn key_names_follow_ycsb() {
        let mut k = Vec::new();
        key_name(&mut k, 42, 1, true);
        assert_eq!(k, b"user42");
        key_name(&mut k, 42, 5, true);
        assert_eq!(k, b"user00042");
        key_name(&mut k, 42, 1, false);
        assert_eq!(k, format!("user{}", fnv_hash64(42)).as_bytes());
    }

    #[test]
    fn operation_chooser_follows_proportions() {
        let mut p = Properties::default();
        p.parse(
            "recordcount=10\nreadproportion=0.5\nupdateproportion=0.3\nscanproportion=0.2\n",
            "t",
        )
        .unwrap();
        let c = OperationChooser::new(&p.to_spec("t").unwrap());
        let mut rng = SmallRng::seed_from_u64(4);
        let n = 100_000;
        let reads = (0..n).filter(|_| c.next(&mut rng) == OpKind::Read).count();
        assert!((reads as f64 / n as f64 - 0.5).abs() < 0.01);
    }

    fn run_workload(text: &str) -> Vec<PhaseReport> {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Properties::default();
        p.parse(text, "t").unwrap();
        let cfg = YcsbConfig {
            spec: p.to_spec("t").unwrap(),
            load: true,
            run: true,
            seed: 1,
        };
        let engine = crate::engine::small_test_engine(dir.path());
        let outcome = run(&cfg, &engine, false).unwrap();
        outcome.check().unwrap();
        outcome.phases
    }

    #[test]
    fn every_operation_kind_runs_and_reads_find_loaded_records() {
        let reports = run_workload(
            "recordcount=500\noperationcount=2000\nthreadcount=2\nreadproportion=0.3\n\
             updateproportion=0.2\ninsertproportion=0.2\nscanproportion=0.1\n\
             readmodifywriteproportion=0.2\nrequestdistribution=zipfian\nmaxscanlength=10\n\
             fieldcount=4\nfieldlength=10\n",
        );
        assert_eq!(reports[0].result.ops, 500);
        assert_eq!(reports[1].result.ops, 2000);
        let kinds: Vec<OpKind> = reports[1].result.latency.iter().map(|l| l.op).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        let msg = reports[1].message.as_deref().unwrap();
        // Every read picks an acknowledged key, so every read finds it.
        let (found, total) = msg.trim_start_matches('(').split_once(" of ").unwrap();
        assert_eq!(found, total.split(' ').next().unwrap(), "{msg}");
    }

    #[test]
    fn latest_and_hotspot_workloads_run() {
        for dist in ["latest", "hotspot", "uniform"] {
            let r = run_workload(&format!(
                "recordcount=200\noperationcount=500\nreadproportion=0.9\nupdateproportion=0\ninsertproportion=0.1\n\
                 requestdistribution={dist}\nfieldcount=2\nfieldlength=8\n"
            ));
            assert_eq!(r[1].result.ops, 500, "{dist}");
        }
    }
}
