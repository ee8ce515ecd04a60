//! What the model tests (`model.rs`, `range_delete.rs`) share: a database
//! on an in-memory file system under a chosen compaction preset, and the
//! reads (with the snapshots they may read at) checked against a
//! `BTreeMap` model. Each test keeps its own writes, its own mix of
//! operations and its own case counts.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use o3_compute::{Db, Snapshot};
use o3_storage::compaction::Preset;
use o3_storage::env::{FaultInjectingFs, Storage};

use super::{KEY_SPACE, Model, full_scan, key, tiny_options};

/// A value that names the key and the write, padded so entries fill
/// memtables and blocks quickly.
pub fn value(k: usize, v: usize) -> Vec<u8> {
    format!("value-{k}-{v}-{}", "x".repeat(v % 40)).into_bytes()
}

/// A read checked against the model, or a change to the snapshots reads
/// may use (at most 8 are held; indexes past the end are ignored).
#[derive(Debug, Clone)]
pub enum ReadOp {
    Get(usize),
    MultiGet(Vec<usize>),
    TakeSnapshot,
    GetAtSnapshot(usize, usize),
    DropSnapshot(usize),
    Scan {
        lo: Option<usize>,
        hi: Option<usize>,
        reverse: bool,
        at_snapshot: Option<usize>,
    },
}

/// The weight to give [`read_op`] among a test's other operations: the sum
/// of the weights inside it, so each read keeps its own share.
pub const READ_WEIGHT: u32 = 12 + 3 + 2 + 4 + 1 + 4;

/// Reads of keys in `0..KEY_SPACE`, weighted as [`READ_WEIGHT`] adds up.
pub fn read_op() -> impl Strategy<Value = ReadOp> {
    let k = 0..KEY_SPACE;
    prop_oneof![
        12 => k.clone().prop_map(ReadOp::Get),
        3 => prop::collection::vec(k.clone(), 0..12).prop_map(ReadOp::MultiGet),
        2 => Just(ReadOp::TakeSnapshot),
        4 => (k.clone(), 0..8usize).prop_map(|(k, s)| ReadOp::GetAtSnapshot(k, s)),
        1 => (0..8usize).prop_map(ReadOp::DropSnapshot),
        4 => (prop::option::of(k.clone()), prop::option::of(k), any::<bool>(), prop::option::of(0..8usize))
            .prop_map(|(lo, hi, reverse, at_snapshot)| ReadOp::Scan { lo, hi, reverse, at_snapshot }),
    ]
}

/// The pairs of `m` in `[key(lo), key(hi))` (`None` unbounded), in the
/// direction asked.
fn model_scan(
    m: &Model,
    lo: Option<usize>,
    hi: Option<usize>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let lo_b = lo.map_or(Bound::Unbounded, |l| Bound::Included(key(l)));
    let hi_b = hi.map_or(Bound::Unbounded, |h| Bound::Excluded(key(h)));
    let mut v: Vec<_> = m
        .range((lo_b, hi_b))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        v.reverse();
    }
    v
}

/// A database under a model test, at `/db` on an in-memory file system
/// with [`tiny_options`] and one compaction preset, and the snapshots held
/// on it, each with the model as it was when taken.
pub struct ModelDb {
    // Declared before `db` so they are released before it.
    snapshots: Vec<(Snapshot, Model)>,
    db: Option<Db>,
    storage: Arc<dyn Storage>,
    shards: usize,
    /// Learn the split keys (adaptive shards, `shards` the target) instead
    /// of the static ones of [`tiny_options`].
    adaptive: bool,
    preset: Preset,
    placement: Placement,
    /// The memory node, kept across reopens like a real one.
    offload: Option<o3_compute::OffloadOptions>,
    /// The compaction service (a scheduler and agents in this process on
    /// the same storage), kept across reopens like a real one.
    service: Option<o3_csa::LocalService>,
}

/// Where the database under test runs its flushes and compactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On its own background threads.
    Local,
    /// Behind `RoundTripExecutor`: every job and result through bytes, on
    /// the executor's threads, completing asynchronously.
    RoundTrip,
    /// With memtable offloading to a memory node (every sealed memtable
    /// beyond none kept local, flushes merging four).
    Offload(Memnode),
    /// Compactions sent to a compaction service (an in-process scheduler
    /// with two agents) whenever it has room.
    Service,
}

const SERVICE_TOKEN: &str = "model-test-token";

/// A scheduler and two agents of one slot each, in this process, running
/// jobs against `storage`.
fn start_service(storage: Arc<dyn Storage>) -> o3_csa::LocalService {
    o3_csa::LocalService::start(o3_csa::LocalServiceOptions {
        agents: 2,
        slots_per_agent: 1,
        token: o3_compute::ClusterToken::new(SERVICE_TOKEN).expect("token"),
        storage,
        scheduler: o3_csa::scheduler::SchedulerConfig::default(),
    })
    .expect("compaction service")
}

/// Which memory node an offloading database uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memnode {
    /// Direct calls on a memory node of this process (no transport).
    Direct,
    /// The embedded default: an in-process memory node over `local`.
    InProcess,
}

/// Offloading options that ship every sealed memtable not being flushed,
/// with flushes merging several, on `memnode`.
pub fn offload_options(memnode: Memnode) -> o3_compute::OffloadOptions {
    let memory_node = match memnode {
        Memnode::Direct => o3_compute::MemoryNodeChoice::Store(std::sync::Arc::new(
            o3_memnode::client::Direct::new(std::sync::Arc::new(
                o3_memnode::MemoryNode::with_capacity(64 << 20).expect("memory node"),
            )),
        )),
        Memnode::InProcess => {
            o3_compute::MemoryNodeChoice::Config(o3_compute::StoreConfig::InProcess {
                pool_size: 64 << 20,
                link: None,
            })
        }
    };
    o3_compute::OffloadOptions {
        memory_node,
        max_local_sealed_memtables: 0,
        min_memtables_to_merge: 4,
        ..o3_compute::OffloadOptions::default()
    }
}

impl ModelDb {
    pub fn open(shards: usize, preset: Preset, placement: Placement) -> Self {
        Self::open_with(shards, false, preset, placement)
    }

    /// A database with adaptive shards aiming at `shards`, re-judged every
    /// 40 writes (so the balancer re-splits within a case).
    pub fn open_adaptive(shards: usize, preset: Preset, placement: Placement) -> Self {
        Self::open_with(shards, true, preset, placement)
    }

    fn open_with(shards: usize, adaptive: bool, preset: Preset, placement: Placement) -> Self {
        let mut m = ModelDb {
            snapshots: Vec::new(),
            db: None,
            storage: Arc::new(FaultInjectingFs::new()),
            shards,
            adaptive,
            preset,
            offload: match placement {
                Placement::Offload(memnode) => Some(offload_options(memnode)),
                _ => None,
            },
            service: None,
            placement,
        };
        if placement == Placement::Service {
            m.service = Some(start_service(m.storage.clone()));
        }
        m.db = Some(m.open_db());
        m
    }

    fn open_db(&self) -> Db {
        let mut o = tiny_options(self.storage.clone(), self.shards);
        o.compaction.preset = self.preset;
        if self.adaptive {
            o.shard_splits = Vec::new();
            o.adaptive_shards = true;
            o.shard_count = self.shards;
            o.shard_balance = o3_compute::ShardBalanceOptions {
                window_writes: 40,
                sample_size: 16,
                skew_threshold: 1.5,
                cooldown_windows: 1,
            };
        }
        if self.placement == Placement::RoundTrip {
            let executor = o3_compute::RoundTripExecutor::new(self.storage.clone(), 2)
                .expect("round-trip executor");
            o.executor = Some(executor);
        }
        o.offload = self.offload.clone();
        if let Some(service) = &self.service {
            o.compaction_service = Some(o3_compute::CompactionServiceOptions {
                policy: o3_compute::PlacementPolicy::PreferRemote,
                ..o3_compute::CompactionServiceOptions::new(
                    service.endpoint(),
                    o3_compute::ClusterToken::new(SERVICE_TOKEN).expect("token"),
                )
            });
        }
        Db::open(Path::new("/db"), o).expect("open")
    }

    pub fn db(&self) -> &Db {
        self.db.as_ref().expect("open database")
    }

    /// Close the database and open it again. Snapshots do not survive a
    /// restart.
    pub fn reopen(&mut self) {
        self.snapshots.clear();
        self.db.take().expect("db").close().expect("close");
        self.db = Some(self.open_db());
    }

    /// `compact_range` over `[key(a), key(b)]` (`None` unbounded).
    pub fn compact(&self, a: Option<usize>, b: Option<usize>) {
        let (a, b) = (a.map(key), b.map(key));
        self.db()
            .compact_range(a.as_deref(), b.as_deref())
            .expect("compact");
    }

    /// Run `op` and check its answer against `model`, or against the model
    /// of the snapshot it reads at. Returns the answer as a line for a
    /// transcript, `None` when `op` read nothing.
    pub fn read(&mut self, op: &ReadOp, model: &Model) -> Result<Option<String>, TestCaseError> {
        let d = self.db.as_ref().expect("open database");
        let line = match op {
            ReadOp::Get(k) => {
                let got = d.get(&key(*k)).expect("get");
                let line = format!("get {k} {got:?}");
                prop_assert_eq!(got, model.get(&key(*k)).cloned(), "get {}", k);
                line
            }
            ReadOp::MultiGet(ks) => {
                let keys: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
                let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                let got = d.multi_get(&refs).expect("multi_get");
                let line = format!("multi_get {got:?}");
                let want: Vec<_> = keys.iter().map(|k| model.get(k).cloned()).collect();
                prop_assert_eq!(got, want, "multi_get {:?}", ks);
                line
            }
            ReadOp::TakeSnapshot => {
                if self.snapshots.len() < 8 {
                    self.snapshots.push((d.snapshot(), model.clone()));
                }
                return Ok(None);
            }
            ReadOp::GetAtSnapshot(k, s) => {
                let Some((snap, m)) = self.snapshots.get(*s) else {
                    return Ok(None);
                };
                let got = d.get_at(&key(*k), snap).expect("get_at");
                let line = format!("get_at {k} {s} {got:?}");
                prop_assert_eq!(got, m.get(&key(*k)).cloned(), "get_at {} {}", k, s);
                line
            }
            ReadOp::DropSnapshot(s) => {
                if *s < self.snapshots.len() {
                    self.snapshots.remove(*s);
                }
                return Ok(None);
            }
            ReadOp::Scan {
                lo,
                hi,
                reverse,
                at_snapshot,
            } => {
                if let (Some(l), Some(h)) = (lo, hi)
                    && l >= h
                {
                    return Ok(None);
                }
                let (lo_k, hi_k) = (lo.map(key), hi.map(key));
                let range = (
                    lo_k.as_deref().map_or(Bound::Unbounded, Bound::Included),
                    hi_k.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                );
                let (got, want) = match at_snapshot.and_then(|s| self.snapshots.get(s)) {
                    Some((snap, m)) => (
                        d.scan_at(range, *reverse, Some(snap)).expect("scan"),
                        model_scan(m, *lo, *hi, *reverse),
                    ),
                    None => (
                        d.scan(range, *reverse).expect("scan"),
                        model_scan(model, *lo, *hi, *reverse),
                    ),
                };
                let line = format!("scan {lo:?} {hi:?} {reverse} {at_snapshot:?} {got:?}");
                prop_assert_eq!(
                    got,
                    want,
                    "scan lo={:?} hi={:?} reverse={} at_snapshot={:?}",
                    lo,
                    hi,
                    reverse,
                    at_snapshot
                );
                line
            }
        };
        Ok(Some(line))
    }

    /// The end of a run: full scans in both directions match `model`, and
    /// again after a restart, from disk alone.
    pub fn check_final(&mut self, model: &Model) -> Result<(), TestCaseError> {
        let check_scans = |d: &Db, when: &str| {
            prop_assert_eq!(&full_scan(d), model, "scan {}", when);
            let mut back = d
                .scan::<std::ops::RangeFull>(.., true)
                .expect("reverse scan");
            back.reverse();
            prop_assert_eq!(
                &back.into_iter().collect::<Model>(),
                model,
                "reverse scan {}",
                when
            );
            Ok(())
        };
        check_scans(self.db(), "at the end")?;
        self.reopen();
        check_scans(self.db(), "after reopen")
    }
}
