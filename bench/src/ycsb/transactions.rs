//! YCSB's run phase (the transaction phase): `operationcount` operations
//! split over the threads as YCSB splits them, each picked with YCSB's
//! proportions on a key picked with the request distribution.
//!
//! Each thread owns its key and scan-length choosers; inserts take numbers
//! from the shared [`AcknowledgedCounter`]; readers pick only numbers from
//! `insertstart` up to the counter's limit, i.e. loaded or acknowledged
//! records. A read that finds nothing is YCSB's `NOT_FOUND`.

use std::time::Instant;

use o3_compute::{Db, ReadOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{BenchError, Result};
use crate::report::{OpKind, PhaseReport, PhaseResult, ThreadRecorder, progress_bar};
use crate::ycsb::YcsbConfig;
use crate::ycsb::client::{ThreadClient, run_threads};
use crate::ycsb::generator::{
    AcknowledgedCounter, Exponential, Hotspot, ScrambledZipfian, SkewedLatest, Uniform, Zipfian,
};
use crate::ycsb::measurements::{Measurements, Outcome};
use crate::ycsb::record::RecordBuilder;
use crate::ycsb::spec::{RequestDistribution, ScanLengthDistribution, WorkloadSpec};
use crate::ycsb::workload::key_name;

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
    Exponential(Exponential),
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
            // YCSB: the range is exponential.frac of recordcount.
            RequestDistribution::Exponential => KeyChooser::Exponential(Exponential::new(
                s.exponential_percentile,
                s.recordcount as f64 * s.exponential_frac,
            )),
        })
    }

    /// A key number whose insert is acknowledged and that is not below
    /// `insertstart` (YCSB's `nextKeynum`; the lower bound keeps a client
    /// that loaded a slice inside what was loaded).
    fn next(&mut self, rng: &mut SmallRng, inserts: &AcknowledgedCounter, first: u64) -> u64 {
        loop {
            let limit = inserts.last_value();
            let k = match self {
                KeyChooser::Uniform(g) => Some(g.next(rng)),
                KeyChooser::Zipfian(g) => Some(g.next(rng)),
                KeyChooser::Latest(g) => Some(g.next(rng, inserts)),
                KeyChooser::Hotspot(g) => Some(g.next(rng)),
                KeyChooser::Exponential(g) => limit.checked_sub(g.next(rng)),
            };
            if let Some(k) = k
                && (first..=limit).contains(&k)
            {
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
    fn new(s: &WorkloadSpec) -> ScanLength {
        match s.scanlengthdistribution {
            ScanLengthDistribution::Uniform => {
                ScanLength::Uniform(Uniform::new(s.minscanlength, s.maxscanlength))
            }
            ScanLengthDistribution::Zipfian => {
                ScanLength::Zipfian(Zipfian::new(s.minscanlength, s.maxscanlength))
            }
        }
    }

    fn next(&mut self, rng: &mut SmallRng) -> u64 {
        match self {
            ScanLength::Uniform(g) => g.next(rng),
            ScanLength::Zipfian(g) => g.next(rng),
        }
    }
}

/// Reads attempted and found during the run phase.
#[derive(Debug, Default, Clone, Copy)]
struct ReadOutcome {
    attempted: u64,
    found: u64,
}

/// The transaction phase: `operationcount` operations split over the
/// threads as YCSB splits them.
pub(crate) fn transactions_measured(
    cfg: &YcsbConfig,
    db: &Db,
    show_progress: bool,
) -> Result<(PhaseReport, Measurements)> {
    let s = &cfg.spec;
    let inserts = AcknowledgedCounter::new(s.recordcount)?;
    let chooser = OperationChooser::new(s);
    let progress = progress_bar(show_progress, Some(s.operationcount), "run");
    let threads = s.threadcount as u64;
    let before = db.stats();
    let start = Instant::now();
    let (results, measurements) =
        run_threads(s, s.threadcount, start, s.operationcount, |t, client| {
            let t = t as u64;
            // YCSB's split: the first `operationcount % threads` threads do one more.
            let ops = s.operationcount / threads + u64::from(t < s.operationcount % threads);
            let rec = ThreadRecorder::new(start, progress.clone());
            let worker = Worker::new(cfg, db, t, &inserts)?;
            worker.run(ops, rec, client, &chooser)
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
    let report = PhaseReport::new(
        PhaseResult::merge("run", recorders, elapsed)?,
        Some(format!("({found} of {attempted} reads found)")),
        db,
        &before,
    );
    Ok((report, measurements))
}

/// One run-phase thread's state.
struct Worker<'a> {
    s: &'a WorkloadSpec,
    db: &'a Db,
    inserts: &'a AcknowledgedCounter,
    rng: SmallRng,
    records: RecordBuilder,
    keys: KeyChooser,
    scan_len: ScanLength,
    key: Vec<u8>,
    reads: ReadOutcome,
}

impl<'a> Worker<'a> {
    fn new(
        cfg: &'a YcsbConfig,
        db: &'a Db,
        thread: u64,
        inserts: &'a AcknowledgedCounter,
    ) -> Result<Worker<'a>> {
        let s = &cfg.spec;
        let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(1000 + thread));
        let records = RecordBuilder::new(s, &mut rng);
        Ok(Worker {
            s,
            db,
            inserts,
            rng,
            records,
            keys: KeyChooser::new(s, inserts)?,
            scan_len: ScanLength::new(s),
            key: Vec::new(),
            reads: ReadOutcome::default(),
        })
    }

    /// Run `ops` operations (fewer when `maxexecutiontime` passes).
    fn run(
        mut self,
        ops: u64,
        mut rec: ThreadRecorder,
        mut client: ThreadClient<'_>,
        chooser: &OperationChooser,
    ) -> Result<((ThreadRecorder, ReadOutcome), Measurements)> {
        let mut end_of_last = Instant::now();
        for _ in 0..ops {
            let began = client.start_op(end_of_last);
            let op = chooser.next(&mut self.rng);
            let (outcome, bytes) = self.operation(op, &mut rec)?;
            rec.add_bytes(bytes);
            end_of_last = rec.record(op, began)?;
            if client.finish_op(op, outcome, began, end_of_last)? {
                break;
            }
        }
        Ok(((rec, self.reads), client.into_measurements()))
    }

    /// Put an existing record's key (per the request distribution) in `key`.
    fn pick_existing_key(&mut self) {
        let k = self
            .keys
            .next(&mut self.rng, self.inserts, self.s.insertstart);
        key_name(&mut self.key, k, self.s.zeropadding, self.s.ordered_inserts);
    }

    /// One operation: what it returned and the bytes it moved.
    fn operation(&mut self, op: OpKind, rec: &mut ThreadRecorder) -> Result<(Outcome, usize)> {
        let s = self.s;
        match op {
            OpKind::Insert => {
                let k = self.inserts.next_value();
                key_name(&mut self.key, k, s.zeropadding, s.ordered_inserts);
                let value = self.records.record(&mut self.rng);
                self.db
                    .put(&self.key, value)
                    .map_err(BenchError::engine("run: insert"))?;
                let bytes = self.key.len() + value.len();
                self.inserts.acknowledge(k)?;
                Ok((Outcome::Ok, bytes))
            }
            OpKind::Scan => {
                self.pick_existing_key();
                let len = self.scan_len.next(&mut self.rng);
                let mut it = self
                    .db
                    .iter(ReadOptions::default())
                    .map_err(BenchError::engine("run: scan"))?;
                it.seek(&self.key)
                    .map_err(BenchError::engine("run: scan seek"))?;
                let mut n = 0;
                while it.valid() && n < len {
                    rec.add_bytes(it.key().len() + it.value().len());
                    n += 1;
                    it.next().map_err(BenchError::engine("run: scan next"))?;
                }
                Ok((Outcome::Ok, 0))
            }
            OpKind::Read | OpKind::Update | OpKind::ReadModifyWrite => self.read_or_write(op),
            _ => Ok((Outcome::Ok, 0)),
        }
    }

    /// A read, an update or a read-modify-write of an existing record.
    fn read_or_write(&mut self, op: OpKind) -> Result<(Outcome, usize)> {
        let s = self.s;
        self.pick_existing_key();
        let needs_read = op != OpKind::Update || !s.writeallfields;
        let current = if needs_read {
            self.db
                .get(&self.key)
                .map_err(BenchError::engine("run: read"))?
        } else {
            None
        };
        let read_len = current.as_ref().map_or(0, Vec::len);
        if op == OpKind::Read {
            self.reads.attempted += 1;
            self.reads.found += u64::from(current.is_some());
            let outcome = if current.is_some() {
                Outcome::Ok
            } else {
                Outcome::NotFound
            };
            return Ok((outcome, self.key.len() + read_len));
        }
        let written = self.write_fields(current)?;
        Ok((Outcome::Ok, self.key.len() + read_len.max(written)))
    }

    /// Write new field values: all of them (`writeallfields`, or no current
    /// record), else one random field replaced in `current`. Returns the
    /// bytes written.
    fn write_fields(&mut self, current: Option<Vec<u8>>) -> Result<usize> {
        let patched = match current {
            Some(record) if !self.s.writeallfields => {
                self.records.with_one_field_replaced(record, &mut self.rng)
            }
            _ => None,
        };
        let result = match &patched {
            Some(record) => self.db.put(&self.key, record).map(|()| record.len()),
            None => {
                let value = self.records.record(&mut self.rng);
                self.db.put(&self.key, value).map(|()| value.len())
            }
        };
        result.map_err(BenchError::engine("run: update"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ycsb::properties::Properties;

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

    #[test]
    fn run_keys_stay_in_the_clients_slice() {
        let mut p = Properties::default();
        p.parse("recordcount=1000\ninsertstart=600\ninsertcount=400\n", "t")
            .unwrap();
        let s = p.to_spec("t").unwrap();
        let inserts = AcknowledgedCounter::new(s.recordcount).unwrap();
        let mut rng = SmallRng::seed_from_u64(5);
        for dist in [
            RequestDistribution::Uniform,
            RequestDistribution::Zipfian,
            RequestDistribution::Latest,
            RequestDistribution::Hotspot,
            RequestDistribution::Exponential,
        ] {
            let spec = WorkloadSpec {
                requestdistribution: dist,
                ..s.clone()
            };
            let mut keys = KeyChooser::new(&spec, &inserts).unwrap();
            for _ in 0..2000 {
                let k = keys.next(&mut rng, &inserts, spec.insertstart);
                assert!((600..1000).contains(&k), "{dist:?}: {k}");
            }
        }
    }
}
