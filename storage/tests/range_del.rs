//! Range deletions in storage, as a specification: the user iterator and
//! the compaction merge rule against a `BTreeMap` model of random histories
//! of puts, deletes and range deletions, and memtables and flush jobs that
//! hold range tombstones.

mod iter_model;

use std::collections::BTreeMap;
use std::sync::Arc;

use o3_storage::compaction::CompactionStream;
use o3_storage::env::{FaultInjectingFs, Storage};
use o3_storage::iter::{KeyBounds, MergingIterator, UserIterator, VecIterator};
use o3_storage::iterator::InternalIterator;
use o3_storage::job::{FlushJob, JobToken};
use o3_storage::key::{ValueKind, make_internal_key, parse_internal_key};
use o3_storage::memtable::{Memtable, MemtableImage};
use o3_storage::options::TableOptions;
use o3_storage::range_del::{RangeTombstone, RangeTombstoneSet};
use o3_storage::version::DbId;
use proptest::prelude::*;

use iter_model::{
    Visible, bounds_strategy, check_user_iterator, in_bounds, merge, op_strategy, user_key,
};

/// One write; its sequence is its position in the history plus one.
#[derive(Debug, Clone)]
enum Write {
    Put {
        key: u8,
        source: usize,
    },
    Delete {
        key: u8,
        source: usize,
    },
    /// Delete `[user_key(start), user_key(end))`.
    DeleteRange {
        start: u8,
        end: u8,
    },
}

fn write_strategy() -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (0u8..14, 0usize..4).prop_map(|(key, source)| Write::Put { key, source }),
        2 => (0u8..14, 0usize..4).prop_map(|(key, source)| Write::Delete { key, source }),
        2 => (0u8..15, 1u8..6).prop_map(|(start, len)| Write::DeleteRange { start, end: start + len }),
    ]
}

fn history_strategy() -> impl Strategy<Value = Vec<Write>> {
    prop::collection::vec(write_strategy(), 0..60)
}

/// Point entries split over `sources` in-memory sources, and the range
/// tombstones.
fn sources(history: &[Write], sources: usize) -> (MergingIterator<'static>, Vec<RangeTombstone>) {
    let mut parts = vec![Vec::new(); sources];
    let mut tombstones = Vec::new();
    for (i, w) in history.iter().enumerate() {
        let seq = i as u64 + 1;
        match *w {
            Write::Put { key, source } => parts[source % sources].push((
                make_internal_key(&user_key(key), seq, ValueKind::Value),
                format!("v{seq}").into_bytes(),
            )),
            Write::Delete { key, source } => parts[source % sources].push((
                make_internal_key(&user_key(key), seq, ValueKind::Tombstone),
                Vec::new(),
            )),
            Write::DeleteRange { start, end } => tombstones.push(RangeTombstone {
                start: user_key(start),
                end: user_key(end),
                seq,
            }),
        }
    }
    (merge(parts), tombstones)
}

/// What a reader at `snapshot` sees within `bounds`.
fn visible(history: &[Write], snapshot: u64, bounds: &KeyBounds) -> Visible {
    let mut state = BTreeMap::new();
    for (i, w) in history
        .iter()
        .enumerate()
        .take(usize::try_from(snapshot).unwrap_or(usize::MAX))
    {
        let seq = i as u64 + 1;
        match *w {
            Write::Put { key, .. } => {
                state.insert(user_key(key), format!("v{seq}").into_bytes());
            }
            Write::Delete { key, .. } => {
                state.remove(&user_key(key));
            }
            Write::DeleteRange { start, end } => {
                state.retain(|k, _| !(user_key(start) <= *k && *k < user_key(end)));
            }
        }
    }
    state
        .into_iter()
        .filter(|(k, _)| in_bounds(bounds, k))
        .collect()
}

fn scan(it: &mut UserIterator<'_>, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if reverse {
        it.seek_to_last().unwrap();
    } else {
        it.seek_to_first().unwrap();
    }
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        if reverse {
            it.prev().unwrap();
        } else {
            it.next().unwrap();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Both directions and every seek agree with the model at any snapshot.
    #[test]
    fn user_iterator_hides_range_deleted_keys(
        history in history_strategy(),
        n_sources in 1usize..=4,
        snapshot_frac in 0.0f64..1.2,
        bounds in bounds_strategy(32),
        ops in prop::collection::vec(op_strategy(32), 1..40),
    ) {
        let snapshot = (history.len() as f64 * snapshot_frac) as u64;
        let state = visible(&history, snapshot, &bounds);
        let (merged, tombstones) = sources(&history, n_sources);
        let set = Arc::new(RangeTombstoneSet::new(&tombstones));
        let mut it = UserIterator::new(Box::new(merged), snapshot, bounds.clone())
            .with_range_tombstones(set.clone());
        check_user_iterator(&mut it, &state, &ops)?;
        let want: Vec<_> = state.into_iter().collect();
        let (merged, _) = sources(&history, n_sources);
        let mut it = UserIterator::new(Box::new(merged), snapshot, bounds).with_range_tombstones(set);
        prop_assert_eq!(&scan(&mut it, false), &want);
        let mut back = scan(&mut it, true);
        back.reverse();
        prop_assert_eq!(&back, &want);
    }

    /// Compacting with the range tombstones keeps what every snapshot at or
    /// above the smallest one reads (with the tombstones still applied by
    /// readers), and keeps no entry that a tombstone visible to every reader
    /// covers.
    #[test]
    fn compaction_drops_exactly_what_no_reader_can_see(
        history in history_strategy(),
        n_sources in 1usize..=4,
        snapshot_frac in 0.0f64..1.2,
        drop_tombstones in any::<bool>(),
    ) {
        let top = history.len() as u64 + 1;
        let smallest = (history.len() as f64 * snapshot_frac) as u64;
        let (merged, tombstones) = sources(&history, n_sources);
        let set = Arc::new(RangeTombstoneSet::new(&tombstones));
        let mut stream = CompactionStream::new(Box::new(merged), smallest, drop_tombstones)
            .with_range_tombstones(set.clone());
        let mut output = Vec::new();
        while let Some((k, v)) = stream.next_entry().unwrap() {
            output.push((k.to_vec(), v.to_vec()));
        }
        let c = stream.counters();
        prop_assert_eq!(c.entries_in - c.entries_dropped, output.len() as u64);
        prop_assert!(c.range_deleted <= c.entries_dropped);
        for (k, _) in &output {
            let p = parse_internal_key(k).unwrap();
            prop_assert!(!set.hides(p.user_key, p.sequence, smallest), "kept a covered entry {:?}", p);
        }
        // Entries covered for every reader were there to drop: the count is
        // the number of input entries so covered that no other rule drops.
        let (mut all, _) = sources(&history, n_sources);
        all.seek_to_first().unwrap();
        let mut covered_newest = 0;
        let mut last: Option<(Vec<u8>, u64)> = None;
        while all.valid() {
            let p = parse_internal_key(all.key()).unwrap();
            let shadowed = matches!(&last, Some((k, s)) if k.as_slice() == p.user_key && *s <= smallest);
            let bottom_drop = drop_tombstones && p.sequence <= smallest && p.kind == ValueKind::Tombstone;
            if !shadowed && !bottom_drop && set.hides(p.user_key, p.sequence, smallest) {
                covered_newest += 1;
            }
            last = Some((p.user_key.to_vec(), p.sequence));
            all.next().unwrap();
        }
        prop_assert_eq!(c.range_deleted, covered_newest);
        for snapshot in smallest..=top {
            let want: Vec<_> = visible(&history, snapshot, &KeyBounds::unbounded()).into_iter().collect();
            let mut it = UserIterator::new(
                Box::new(VecIterator::new(output.clone())),
                snapshot,
                KeyBounds::unbounded(),
            )
            .with_range_tombstones(set.clone());
            prop_assert_eq!(&scan(&mut it, false), &want, "snapshot {}", snapshot);
        }
    }
}

fn tombstone(start: &str, end: &str, seq: u64) -> RangeTombstone {
    RangeTombstone {
        start: start.as_bytes().to_vec(),
        end: end.as_bytes().to_vec(),
        seq,
    }
}

#[test]
fn memtable_keeps_range_tombstones_beside_its_image() {
    let m = Arc::new(Memtable::new(4096, 3).unwrap());
    assert!(m.is_empty());
    m.add_range_tombstone(tombstone("b", "f", 7)).unwrap();
    assert!(!m.is_empty(), "a tombstone-only memtable must be flushed");
    assert_eq!((m.entries(), m.range_tombstone_count()), (0, 1));
    assert_eq!((m.smallest_seq(), m.largest_seq()), (7, 7));
    m.insert(b"a", 3, ValueKind::Value, b"x").unwrap();
    assert_eq!((m.smallest_seq(), m.largest_seq()), (3, 7));
    // The image header describes the arena's entries only.
    assert_eq!(m.entries_largest_seq(), 3);
    assert!(
        m.add_range_tombstone(tombstone("c", "c", 8)).is_err(),
        "empty range"
    );
    m.seal().unwrap();
    let image = MemtableImage::open(m.image_bytes().unwrap(), "test image").unwrap();
    assert_eq!((image.header().entries, image.header().largest_seq), (1, 3));
    assert!(
        m.add_range_tombstone(tombstone("x", "y", 9)).is_err(),
        "sealed"
    );
    assert_eq!(m.range_tombstones(), [tombstone("b", "f", 7)]);
}

#[test]
fn range_tombstones_fill_a_memtable() {
    let m = Memtable::new(4096, 0).unwrap();
    let mut seq = 1;
    let err = loop {
        match m.add_range_tombstone(tombstone("aaaaaaaaaaaaaaaa", "zzzzzzzzzzzzzzzz", seq)) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
        assert!(seq < 1000, "range tombstones never filled the memtable");
    };
    assert!(matches!(err, o3_storage::Error::ImageFull { .. }), "{err}");
    assert_eq!(m.range_tombstone_count() as u64, seq - 1);
}

/// A memtable that only received range deletions flushes into no table,
/// through both executors, and its empty image validates.
#[test]
fn flush_of_a_tombstone_only_memtable_writes_nothing() {
    let fs = FaultInjectingFs::new();
    let storage: Arc<dyn Storage> = Arc::new(fs);
    storage.create_dir_all(std::path::Path::new("/db")).unwrap();
    let m = Arc::new(Memtable::new(4096, 1).unwrap());
    m.add_range_tombstone(tombstone("g", "p", 12)).unwrap();
    m.seal().unwrap();
    let job = FlushJob {
        token: JobToken {
            db_id: DbId::random(),
            incarnation: 1,
            job_id: 1,
            attempt: 1,
        },
        dir: "/db".into(),
        shard: 1,
        images: vec![(m.entries(), m.entries_largest_seq())],
        table_options: TableOptions::default(),
        target_file_size: 1 << 20,
        smallest_snapshot: 12,
        file_numbers: 10..14,
    };
    let local = job
        .execute_local(storage.as_ref(), std::slice::from_ref(&m))
        .unwrap();
    assert!(local.outputs.is_empty());
    let remote = job
        .execute(storage.as_ref(), &[m.image_bytes().unwrap()])
        .unwrap();
    assert!(remote.outputs.is_empty());
    assert_eq!(remote.stats.entries_in, 0);
}
