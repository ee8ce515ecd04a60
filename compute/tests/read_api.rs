//! The read API as users meet it: ranges as Rust iterators in both
//! directions (and both at once), prefixes, bounds, snapshots in
//! `ReadOptions`, `multi_get`, and cursors that never panic.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;

use common::tiny_options;
use o3_compute::{Db, Error, ReadOptions};
use o3_storage::env::{FaultInjectingFs, Storage};

fn open(shards: usize) -> Db {
    let storage: Arc<dyn Storage> = Arc::new(FaultInjectingFs::new());
    Db::open("/db", tiny_options(storage, shards)).expect("open")
}

/// Keys of varying length that share prefixes, some with 0x00 and 0xff.
fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0u8, 1, b'a', b'b', 0xfe, 0xff]),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Taking from the front and the back in any interleaving yields each
    /// pair of the range exactly once, in order from each end.
    #[test]
    fn both_ends_of_a_range_meet_without_overlap(
        keys in prop::collection::btree_set(key_strategy(), 0..40),
        lo in prop::option::of(key_strategy()),
        hi in prop::option::of(key_strategy()),
        steps in prop::collection::vec(any::<bool>(), 0..60),
        flush in any::<bool>(),
    ) {
        let db = open(2);
        let model: BTreeMap<Vec<u8>, Vec<u8>> =
            keys.iter().map(|k| (k.clone(), [k.as_slice(), b"v"].concat())).collect();
        for (k, v) in &model {
            db.put(k, v).expect("put");
        }
        if flush {
            db.flush().expect("flush");
        }
        let range = (
            lo.as_ref().map_or(Bound::Unbounded, Bound::Included),
            hi.as_ref().map_or(Bound::Unbounded, Bound::Excluded),
        );
        let want: Vec<_> = match (&lo, &hi) {
            (Some(l), Some(h)) if l >= h => Vec::new(),
            _ => model.range::<Vec<u8>, _>(range).map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut it = db.range(range);
        let (mut front, mut back) = (Vec::new(), Vec::new());
        for from_back in steps.iter().copied().chain(std::iter::repeat_n(false, want.len() + 1)) {
            let item = if from_back { it.next_back() } else { it.next() };
            match item {
                Some(pair) => {
                    let pair = pair.expect("step");
                    if from_back { back.push(pair) } else { front.push(pair) }
                }
                None => break,
            }
        }
        prop_assert!(it.next().is_none() && it.next_back().is_none(), "fused");
        back.reverse();
        front.extend(back);
        prop_assert_eq!(front, want);
    }

    /// A prefix range holds exactly the keys that start with the prefix,
    /// including prefixes that end in 0xff.
    #[test]
    fn prefix_ranges_match_starts_with(
        keys in prop::collection::btree_set(key_strategy(), 0..40),
        prefix in key_strategy(),
    ) {
        let db = open(1);
        for k in &keys {
            db.put(k, b"v").expect("put");
        }
        let got: Vec<Vec<u8>> = db.prefix(&prefix).map(|r| r.expect("step").0).collect();
        let want: Vec<Vec<u8>> = keys.iter().filter(|k| k.starts_with(&prefix)).cloned().collect();
        prop_assert_eq!(&got, &want);
        let rev: Vec<Vec<u8>> = db.prefix(&prefix).rev().map(|r| r.expect("step").0).collect();
        prop_assert_eq!(rev, want.into_iter().rev().collect::<Vec<_>>());
    }
}

#[test]
fn ranges_accept_every_std_range_over_bytes() {
    let db = open(1);
    for k in ["a", "b", "c", "d"] {
        db.put(k.as_bytes(), k.as_bytes()).expect("put");
    }
    fn keys(r: impl Iterator<Item = o3_compute::Result<(Vec<u8>, Vec<u8>)>>) -> Vec<Vec<u8>> {
        r.map(|p| p.expect("step").0).collect()
    }
    let v = |s: &[&str]| -> Vec<Vec<u8>> { s.iter().map(|k| k.as_bytes().to_vec()).collect() };
    assert_eq!(keys(db.range("b".."d")), v(&["b", "c"]));
    assert_eq!(keys(db.range(&b"b"[..]..=&b"d"[..])), v(&["b", "c", "d"]));
    assert_eq!(keys(db.range(b"c".to_vec()..)), v(&["c", "d"]));
    assert_eq!(keys(db.range(..="b")), v(&["a", "b"]));
    assert_eq!(keys(db.range(.."b")), v(&["a"]));
    assert_eq!(keys(db.range(..).rev()), v(&["d", "c", "b", "a"]));
    assert_eq!(
        keys(db.range((Bound::Excluded("a"), Bound::Unbounded))),
        v(&["b", "c", "d"])
    );
    // The README's form.
    let pairs = db.scan(&b"a"[..]..&b"c"[..], true).expect("scan");
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0].0, b"b");
}

#[test]
fn snapshots_in_read_options_pin_the_state_and_must_belong_to_the_database() {
    let db = open(1);
    db.put(b"k", b"old").expect("put");
    let snap = db.snapshot();
    let opts = ReadOptions::at(&snap);
    drop(snap); // the options hold their own registration
    db.put(b"k", b"new").expect("put");
    db.put(b"later", b"x").expect("put");
    db.flush().expect("flush");
    db.compact_range(None, None).expect("compact");
    let got: Vec<_> = db
        .range_with(opts.clone())
        .collect::<Result<_, _>>()
        .expect("range");
    assert_eq!(got, vec![(b"k".to_vec(), b"old".to_vec())]);
    let mut it = db.iter(opts).expect("iter");
    it.seek(b"k").expect("seek");
    assert_eq!(it.value(), b"old");

    let other = open(1);
    let foreign = other.snapshot();
    match db.get_at(b"k", &foreign) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("another database"), "{m}"),
        r => panic!("foreign snapshot accepted: {r:?}"),
    }
    let mut r = db.range_at(.., &foreign);
    assert!(matches!(r.next(), Some(Err(Error::InvalidArgument(_)))));
    assert!(r.next().is_none());
    assert!(db.iter(ReadOptions::at(&foreign)).is_err());
    assert!(db.multi_get_at(&[b"k"], &foreign).is_err());
}

#[test]
fn stepping_an_unpositioned_cursor_does_nothing_in_either_direction() {
    let db = open(2);
    for k in 0..10 {
        db.put(&common::key(k), b"v").expect("put");
    }
    let mut it = db.iter(ReadOptions::default()).expect("iter");
    for _ in 0..3 {
        it.next().expect("next before seek");
        assert!(!it.valid());
        it.prev().expect("prev before seek");
        assert!(!it.valid());
        assert!(it.key().is_empty() && it.value().is_empty());
    }
    it.seek_to_last().expect("seek");
    it.next().expect("off the end");
    assert!(!it.valid());
    it.next().expect("next past the end");
    it.prev().expect("prev past the end");
    assert!(!it.valid());
    it.seek_to_first().expect("seek");
    it.prev().expect("off the front");
    assert!(!it.valid());
    it.next().expect("next past the front");
    assert!(!it.valid());
}

#[test]
fn multi_get_answers_in_the_callers_order() {
    let db = open(3);
    for k in (0..50).step_by(2) {
        db.put(&common::key(k), format!("v{k}").as_bytes())
            .expect("put");
    }
    db.flush().expect("flush");
    db.put(&common::key(4), b"newer").expect("put");
    let want_keys: Vec<Vec<u8>> = [49usize, 4, 0, 4, 7, 48]
        .iter()
        .map(|&k| common::key(k))
        .collect();
    let refs: Vec<&[u8]> = want_keys.iter().map(|k| k.as_slice()).collect();
    let got = db.multi_get(&refs).expect("multi_get");
    let want: Vec<Option<Vec<u8>>> = refs.iter().map(|k| db.get(k).expect("get")).collect();
    assert_eq!(got, want);
    assert_eq!(got[1], Some(b"newer".to_vec()));
    assert_eq!(got[4], None);
    assert!(db.multi_get(&[]).expect("empty").is_empty());
}
