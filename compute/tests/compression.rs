//! Block compression is invisible to readers: the same operations on a
//! database whose tables are all uncompressed, and on one whose compression
//! changes at every reopen (none, lz4, zstd at several levels) so that
//! flushes and compactions read and rewrite tables of every type side by
//! side, give the same answers, and each matches a `BTreeMap` model.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use common::{KEY_SPACE, Model, full_scan, key, tiny_options};
use o3_compute::{Compression, Db};
use o3_storage::env::{FaultInjectingFs, Storage};
use o3_storage::sst::Table;

const DIR: &str = "/db";

#[derive(Debug, Clone)]
enum Op {
    Put(usize, usize),
    Delete(usize),
    Get(usize),
    Scan,
    Flush,
    Compact(Option<usize>, Option<usize>),
    /// Close and open again, writing new tables with this compression (the
    /// all-uncompressed run keeps none).
    Reopen(Compression),
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        (-2i32..=12).prop_map(|level| Compression::Zstd { level }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEY_SPACE;
    prop_oneof![
        30 => (k.clone(), 0..100usize).prop_map(|(k, v)| Op::Put(k, v)),
        6 => k.clone().prop_map(Op::Delete),
        6 => k.clone().prop_map(Op::Get),
        1 => Just(Op::Scan),
        2 => Just(Op::Flush),
        1 => (prop::option::of(k.clone()), prop::option::of(k)).prop_map(|(a, b)| Op::Compact(a, b)),
        2 => compression().prop_map(Op::Reopen),
    ]
}

/// A compressible value: a run of text repeated, so lz4 and zstd blocks
/// shrink and are stored compressed.
fn value(k: usize, v: usize) -> Vec<u8> {
    format!("value {k} version {v} ")
        .repeat(1 + v % 4)
        .into_bytes()
}

/// A database on its own in-memory file system, opened with `compression`.
struct CompressedDb {
    fs: Arc<FaultInjectingFs>,
    db: Option<Db>,
    auto_compactions: bool,
}

impl CompressedDb {
    fn open(compression: Compression, auto_compactions: bool) -> Self {
        let mut d = CompressedDb {
            fs: Arc::new(FaultInjectingFs::new()),
            db: None,
            auto_compactions,
        };
        d.db = Some(d.open_db(compression));
        d
    }

    fn open_db(&self, compression: Compression) -> Db {
        let mut o = tiny_options(self.fs.clone(), 2);
        o.table.compression = compression;
        o.disable_auto_compactions = !self.auto_compactions;
        Db::open(Path::new(DIR), o).expect("open")
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("open database")
    }

    fn reopen(&mut self, compression: Compression) {
        self.db.take().expect("db").close().expect("close");
        self.db = Some(self.open_db(compression));
    }

    /// The trailer types requested by the tables in the directory (their
    /// `o3.compression` property). Called with no background job running:
    /// auto compactions off, or the database closed.
    fn table_compressions(&self) -> BTreeSet<u8> {
        let dir = Path::new(DIR);
        let names = self.fs.list(dir).expect("list");
        names
            .iter()
            .filter(|n| n.ends_with(".sst"))
            .map(|n| {
                let path = dir.join(n);
                let file = self.fs.open(&path).expect("open table file");
                let table = Table::open(file, path.display().to_string(), None).expect("table");
                table.properties().compression.as_byte()
            })
            .collect()
    }
}

/// Run `ops`; `schedule` says whether reopens switch compression (else
/// every table is uncompressed). Returns every answer as a transcript line
/// and the compressions the tables present at the end were written with.
fn run(ops: &[Op], schedule: bool) -> Result<(Vec<String>, BTreeSet<u8>), TestCaseError> {
    let first = if schedule {
        Compression::zstd()
    } else {
        Compression::None
    };
    let mut d = CompressedDb::open(first, true);
    let mut model = Model::new();
    let mut transcript = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                d.db().put(&key(*k), &value(*k, *v)).expect("put");
                model.insert(key(*k), value(*k, *v));
            }
            Op::Delete(k) => {
                d.db().delete(&key(*k)).expect("delete");
                model.remove(&key(*k));
            }
            Op::Get(k) => {
                let got = d.db().get(&key(*k)).expect("get");
                prop_assert_eq!(&got, &model.get(&key(*k)).cloned(), "get {}", k);
                transcript.push(format!("get {k} {got:?}"));
            }
            Op::Scan => {
                let got = full_scan(d.db());
                prop_assert_eq!(&got, &model, "scan");
                transcript.push(format!("scan {got:?}"));
            }
            Op::Flush => d.db().flush().expect("flush"),
            Op::Compact(a, b) => {
                let (a, b) = (a.map(key), b.map(key));
                d.db()
                    .compact_range(a.as_deref(), b.as_deref())
                    .expect("compact");
            }
            Op::Reopen(c) => d.reopen(if schedule { *c } else { Compression::None }),
        }
    }
    d.db().flush().expect("flush");
    let got = full_scan(d.db());
    prop_assert_eq!(&got, &model, "final scan");
    transcript.push(format!("final {got:?}"));
    // Closed, so that no compaction is writing a table being looked at.
    d.db.take().expect("db").close().expect("close");
    Ok((transcript, d.table_compressions()))
}

fn cases() -> u32 {
    std::env::var("O3_METAMORPHIC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 300, ..ProptestConfig::default() })]

    /// Compression switched at every reopen gives the answers of a
    /// database that never compresses.
    #[test]
    fn compression_changes_give_the_answers_of_no_compression(ops in prop::collection::vec(op(), 1..300)) {
        let (plain, plain_kinds) = run(&ops, false)?;
        let (mixed, _) = run(&ops, true)?;
        prop_assert_eq!(plain_kinds.iter().max().copied().unwrap_or(0), 0, "an uncompressed run wrote compressed tables");
        prop_assert_eq!(plain, mixed);
    }
}

/// Tables of all three types live in one database (written by flushes under
/// none, then lz4, then zstd), reads over them agree with an uncompressed
/// database, and so do they after a compaction rewrites them all as zstd.
#[test]
fn tables_of_every_type_in_one_database_read_alike_before_and_after_compaction() {
    let mut mixed = CompressedDb::open(Compression::None, false);
    let plain = CompressedDb::open(Compression::None, false);
    let phases = [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd { level: 5 },
    ];
    for (phase, &compression) in phases.iter().enumerate() {
        if phase > 0 {
            mixed.reopen(compression);
        }
        for i in 0..KEY_SPACE {
            // Each phase overwrites a different two thirds of the keys and
            // deletes a few, so answers depend on tables of every phase.
            if (i + phase) % 3 == 0 {
                continue;
            }
            for d in [&mixed, &plain] {
                if i % 17 == phase {
                    d.db().delete(&key(i)).expect("delete");
                } else {
                    d.db().put(&key(i), &value(i, phase)).expect("put");
                }
            }
        }
        for d in [&mixed, &plain] {
            d.db().flush().expect("flush");
        }
    }
    assert_eq!(
        mixed.table_compressions(),
        BTreeSet::from([0, 1, 2]),
        "tables of none, lz4 and zstd"
    );
    let want = full_scan(plain.db());
    assert!(want.len() > KEY_SPACE / 2, "{} keys", want.len());
    assert_eq!(full_scan(mixed.db()), want);
    for i in 0..KEY_SPACE {
        assert_eq!(
            mixed.db().get(&key(i)).expect("get"),
            want.get(&key(i)).cloned(),
            "{i}"
        );
    }
    mixed.db().compact_range(None, None).expect("compact");
    assert_eq!(full_scan(mixed.db()), want, "after compaction");
    mixed.reopen(Compression::None);
    assert_eq!(full_scan(mixed.db()), want, "after reopen");
}
