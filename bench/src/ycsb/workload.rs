//! YCSB's `CoreWorkload` against an o3 [`Db`].
//!
//! - Keys are YCSB's: `"user"` + zero padding + the key number, FNV-hashed
//!   first unless `insertorder=ordered`.
//! - Records are one value each ([`crate::ycsb::record`]). Reads fetch the
//!   whole record (o3 has no column projection). An update that writes one
//!   field (`writeallfields=false`, YCSB's default) reads the record and
//!   writes it back with that field replaced, as YCSB's RocksDB binding does;
//!   read-modify-write is that read followed by the write.
//! - Load: a shared counter hands out `insertstart..insertstart+insertcount`
//!   to the threads. A load of the whole key space starts from an empty
//!   database; a load of a slice (one of several loading clients, each with
//!   its `insertstart`/`insertcount`) adds to the database, so the clients
//!   run one after another on one database.
//! - Run: [`crate::ycsb::transactions`].
//! - Around each operation, [`crate::ycsb::client`] applies `-target`,
//!   `maxexecutiontime` and `-s`, and measures as YCSB does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use o3_compute::{Db, ReadOptions};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::engine::EngineConfig;
use crate::error::{BenchError, Result};
use crate::report::{OpKind, PhaseReport, PhaseResult, RunOutcome, ThreadRecorder, progress_bar};
use crate::ycsb::YcsbConfig;
use crate::ycsb::client::run_threads;
use crate::ycsb::generator::fnv_hash64;
use crate::ycsb::measurements::{Measurements, Outcome};
use crate::ycsb::record::RecordBuilder;
use crate::ycsb::transactions::transactions_measured;

/// Write YCSB's key for `keynum` into `buf` (cleared first).
pub fn key_name(buf: &mut Vec<u8>, keynum: u64, zeropadding: usize, ordered: bool) {
    use std::io::Write;
    let n = if ordered { keynum } else { fnv_hash64(keynum) };
    buf.clear();
    buf.extend_from_slice(b"user");
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{n:0>zeropadding$}");
}

/// A YCSB run: the phases as every runner reports them, and YCSB's own
/// measurements of each phase, in the same order.
#[derive(Debug)]
pub struct YcsbRun {
    pub outcome: RunOutcome,
    pub measurements: Vec<Measurements>,
}

/// Run the configured phases. The run phase is skipped when background
/// work had failed by the end of the load: its numbers would not describe
/// the engine working normally. A run phase alone needs a database a load
/// filled, unless `o3.allowempty` is set.
pub fn run(cfg: &YcsbConfig, engine: &EngineConfig, show_progress: bool) -> Result<YcsbRun> {
    let db = if cfg.load && !cfg.spec.loads_a_slice() {
        engine.open_empty()?
    } else if cfg.load || cfg.spec.allow_empty {
        engine.open()?
    } else {
        open_loaded(engine)?
    };
    let mut phases = Vec::new();
    let mut measurements = Vec::new();
    if cfg.load {
        match load_measured(cfg, &db, show_progress) {
            Ok((p, m)) => {
                phases.push(p);
                measurements.push(m);
            }
            Err(e) => {
                let outcome = RunOutcome::cut_short(db, phases, "load", e)?;
                return Ok(YcsbRun {
                    outcome,
                    measurements,
                });
            }
        }
    }
    let load_failed = phases.iter().any(|p| p.background_errors.failed());
    if cfg.run && !load_failed {
        match transactions_measured(cfg, &db, show_progress) {
            Ok((p, m)) => {
                phases.push(p);
                measurements.push(m);
            }
            Err(e) => {
                let outcome = RunOutcome::cut_short(db, phases, "run", e)?;
                return Ok(YcsbRun {
                    outcome,
                    measurements,
                });
            }
        }
    }
    Ok(YcsbRun {
        outcome: RunOutcome::close(db, phases)?,
        measurements,
    })
}

/// Open the database a load filled; a missing or empty one is an error
/// that says how to fill it (or to allow running on it).
fn open_loaded(engine: &EngineConfig) -> Result<Db> {
    let dir = engine.db.display();
    let empty = |what: String| BenchError::NotMeasured {
        experiment: "ycsb run",
        message: format!(
            "{what}: load it first (`o3-bench ycsb load` with the same -P/-p and --db), \
             or pass -p o3.allowempty=true (--allow_empty) to run on an empty database"
        ),
    };
    if !engine.db.join("CURRENT").exists() {
        return Err(empty(format!("no database at {dir}")));
    }
    let db = engine.open()?;
    let mut it = db
        .iter(ReadOptions::default())
        .map_err(BenchError::engine("checking the database: iterate"))?;
    it.seek_to_first()
        .map_err(BenchError::engine("checking the database: seek"))?;
    if !it.valid() {
        return Err(empty(format!("the database at {dir} is empty")));
    }
    drop(it);
    Ok(db)
}

/// The load phase, as a report (YCSB's measurements dropped).
pub(crate) fn load(cfg: &YcsbConfig, db: &Db, show_progress: bool) -> Result<PhaseReport> {
    load_measured(cfg, db, show_progress).map(|(p, _)| p)
}

/// The run phase, as a report (YCSB's measurements dropped).
pub(crate) fn transactions(cfg: &YcsbConfig, db: &Db, show_progress: bool) -> Result<PhaseReport> {
    transactions_measured(cfg, db, show_progress).map(|(p, _)| p)
}

/// Insert `insertstart..insertstart+insertcount`, the threads taking numbers
/// from one counter.
fn load_measured(
    cfg: &YcsbConfig,
    db: &Db,
    show_progress: bool,
) -> Result<(PhaseReport, Measurements)> {
    let s = &cfg.spec;
    let next = AtomicU64::new(s.insertstart);
    let end = s.insertstart + s.insertcount;
    let progress = progress_bar(show_progress, Some(s.insertcount), "load");
    let before = db.stats();
    let start = Instant::now();
    let (recorders, measurements) =
        run_threads(s, s.threadcount, start, s.insertcount, |t, mut client| {
            let mut rec = ThreadRecorder::new(start, progress.clone());
            let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(t as u64));
            let mut records = RecordBuilder::new(s, &mut rng);
            let mut key = Vec::new();
            let mut end_of_last = Instant::now();
            loop {
                let began = client.start_op(end_of_last);
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= end {
                    break;
                }
                key_name(&mut key, k, s.zeropadding, s.ordered_inserts);
                let value = records.record(&mut rng);
                db.put(&key, value)
                    .map_err(BenchError::engine("load: insert"))?;
                rec.add_bytes(key.len() + value.len());
                end_of_last = rec.record(OpKind::Insert, began)?;
                if client.finish_op(OpKind::Insert, Outcome::Ok, began, end_of_last)? {
                    break;
                }
            }
            Ok((rec, client.into_measurements()))
        })?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let report = PhaseReport::new(
        PhaseResult::merge("load", recorders, elapsed)?,
        None,
        db,
        &before,
    );
    Ok((report, measurements))
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
        let run = run(&cfg, &engine, false).unwrap();
        run.outcome.check().unwrap();
        assert_eq!(run.measurements.len(), run.outcome.phases.len());
        run.outcome.phases
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
        for dist in ["latest", "hotspot", "uniform", "exponential"] {
            let r = run_workload(&format!(
                "recordcount=200\noperationcount=500\nreadproportion=0.9\nupdateproportion=0\ninsertproportion=0.1\n\
                 requestdistribution={dist}\nfieldcount=2\nfieldlength=8\n"
            ));
            assert_eq!(r[1].result.ops, 500, "{dist}");
        }
    }

    fn config(text: &str, load: bool, run: bool) -> YcsbConfig {
        let mut p = Properties::default();
        p.parse(text, "t").unwrap();
        YcsbConfig {
            spec: p.to_spec("t").unwrap(),
            load,
            run,
            seed: 1,
        }
    }

    #[test]
    fn slices_loaded_by_several_clients_are_disjoint_and_cover_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(dir.path());
        let common = "recordcount=900\nthreadcount=2\nfieldcount=1\nfieldlength=8\n";
        // Three clients, one after another on one database.
        let mut loaded = Vec::new();
        for (start, count) in [(0, 300), (300, 300), (600, 300)] {
            let text = format!("{common}insertstart={start}\ninsertcount={count}\n");
            let cfg = config(&text, true, false);
            assert!(cfg.spec.loads_a_slice());
            let run = run(&cfg, &engine, false).unwrap();
            loaded.push(run.outcome.phases[0].result.ops);
        }
        assert_eq!(loaded, [300, 300, 300]);
        let db = engine.open().unwrap();
        let mut key = Vec::new();
        for k in 0..900 {
            key_name(&mut key, k, 1, false);
            assert!(db.get(&key).unwrap().is_some(), "key {k} missing");
        }
        let mut it = db.iter(ReadOptions::default()).unwrap();
        it.seek_to_first().unwrap();
        let mut n = 0;
        while it.valid() && n <= 900 {
            n += 1;
            it.next().unwrap();
        }
        assert_eq!(n, 900, "no key loaded twice or outside the slices");
    }

    #[test]
    fn a_run_on_a_missing_or_empty_database_fails_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(&dir.path().join("db"));
        let cfg = config("recordcount=10\noperationcount=10\n", false, true);
        let e = run(&cfg, &engine, false).unwrap_err().to_string();
        assert!(
            e.contains("no database at") && e.contains("ycsb load"),
            "{e}"
        );
        assert!(!engine.db.exists(), "a refused run creates nothing");
        drop(engine.open().unwrap());
        let e = run(&cfg, &engine, false).unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("o3.allowempty"), "{e}");
        let allowed = config(
            "recordcount=10\noperationcount=10\no3.allowempty=true\n",
            false,
            true,
        );
        let r = run(&allowed, &engine, false).unwrap();
        assert_eq!(r.outcome.phases[0].result.ops, 10);
        assert!(r.measurements[0].export().contains("Return=NOT_FOUND"));
    }

    #[test]
    fn maxexecutiontime_ends_a_throttled_phase_early() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(dir.path());
        // 100 ops/s for 1000 operations would take 10 s; the limit is 1 s.
        let cfg = config(
            "recordcount=50\noperationcount=1000\nreadproportion=1\nupdateproportion=0\n\
             target=100\nmaxexecutiontime=1\nfieldcount=1\nfieldlength=8\n",
            true,
            true,
        );
        let r = run(&cfg, &engine, false).unwrap();
        let ops = r.outcome.phases[1].result.ops;
        assert!((1..1000).contains(&ops), "{ops}");
        assert_eq!(r.measurements[1].operations(), ops);
    }
}
