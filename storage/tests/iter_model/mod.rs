//! Helpers shared by the iterator model tests (`iterators.rs`,
//! `range_del.rs`): user keys and seek targets by index, cursor operations,
//! in-memory sources under a merging iterator, and a `BTreeMap` model of
//! where a cursor goes, run side by side with a `UserIterator`.

use std::collections::BTreeMap;
use std::ops::Bound;

use o3_storage::error::Result;
use o3_storage::iter::{KeyBounds, MergingIterator, UserIterator, VecIterator};
use o3_storage::iterator::InternalIterator;
use proptest::prelude::*;

/// What a reader sees: user key → value.
pub type Visible = BTreeMap<Vec<u8>, Vec<u8>>;

pub fn user_key(k: u8) -> Vec<u8> {
    format!("k{k:02}").into_bytes()
}

/// A seek target: a user key, or (odd `t`) a key between two user keys.
pub fn target_key(t: u8) -> Vec<u8> {
    let mut k = user_key(t / 2);
    if t % 2 == 1 {
        k.push(b'~');
    }
    k
}

/// True when `key` lies within `bounds` (lower inclusive, upper exclusive).
pub fn in_bounds(bounds: &KeyBounds, key: &[u8]) -> bool {
    bounds.lower.as_deref().is_none_or(|l| key >= l)
        && bounds.upper.as_deref().is_none_or(|u| key < u)
}

/// `parts` as in-memory sources, merged.
pub fn merge(parts: Vec<Vec<(Vec<u8>, Vec<u8>)>>) -> MergingIterator<'static> {
    MergingIterator::new(
        parts
            .into_iter()
            .map(|p| Box::new(VecIterator::new(p)) as Box<dyn InternalIterator>)
            .collect(),
    )
}

/// One cursor operation; seeks go to `target_key(t)`.
#[derive(Debug, Clone)]
pub enum Op {
    First,
    Last,
    Seek(u8),
    SeekForPrev(u8),
    Next,
    Prev,
}

/// Cursor operations whose seeks target `target_key(0..targets)`.
pub fn op_strategy(targets: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::First),
        1 => Just(Op::Last),
        2 => (0..targets).prop_map(Op::Seek),
        2 => (0..targets).prop_map(Op::SeekForPrev),
        4 => Just(Op::Next),
        4 => Just(Op::Prev),
    ]
}

/// Bounds, each absent or at `target_key(0..targets)`.
pub fn bounds_strategy(targets: u8) -> impl Strategy<Value = KeyBounds> {
    (prop::option::of(0..targets), prop::option::of(0..targets)).prop_map(|(l, u)| KeyBounds {
        lower: l.map(target_key),
        upper: u.map(target_key),
    })
}

/// Where the model cursor over `state` goes on `op`.
pub fn model_step(state: &Visible, cur: &Option<Vec<u8>>, op: &Op) -> Option<Vec<u8>> {
    let first_in = |lo: Bound<Vec<u8>>| {
        state
            .range((lo, Bound::Unbounded))
            .next()
            .map(|(k, _)| k.clone())
    };
    let last_in = |hi: Bound<Vec<u8>>| {
        state
            .range((Bound::Unbounded, hi))
            .next_back()
            .map(|(k, _)| k.clone())
    };
    match op {
        Op::First => first_in(Bound::Unbounded),
        Op::Last => last_in(Bound::Unbounded),
        Op::Seek(t) => first_in(Bound::Included(target_key(*t))),
        Op::SeekForPrev(t) => last_in(Bound::Included(target_key(*t))),
        Op::Next => first_in(Bound::Excluded(cur.clone()?)),
        Op::Prev => last_in(Bound::Excluded(cur.clone()?)),
    }
}

pub fn user_step(it: &mut UserIterator, op: &Op) -> Result<()> {
    match op {
        Op::First => it.seek_to_first(),
        Op::Last => it.seek_to_last(),
        Op::Seek(t) => it.seek(&target_key(*t)),
        Op::SeekForPrev(t) => it.seek_for_prev(&target_key(*t)),
        Op::Next => it.next(),
        Op::Prev => it.prev(),
    }
}

/// Run `ops` on `it` and on the model of `state`; they must agree after
/// every step.
pub fn check_user_iterator(
    it: &mut UserIterator,
    state: &Visible,
    ops: &[Op],
) -> std::result::Result<(), TestCaseError> {
    let mut cur: Option<Vec<u8>> = None;
    for (i, op) in ops.iter().enumerate() {
        // A step on an unpositioned cursor (before any seek, or after it ran
        // off an end) leaves it unpositioned, in both directions.
        cur = model_step(state, &cur, op);
        user_step(it, op).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(it.valid(), cur.is_some(), "step {} {:?}", i, op);
        if let Some(k) = &cur {
            prop_assert_eq!(it.key(), k.as_slice(), "step {} {:?}", i, op);
            prop_assert_eq!(it.value(), state[k].as_slice(), "step {} {:?}", i, op);
        } else {
            prop_assert!(it.key().is_empty() && it.value().is_empty());
        }
    }
    Ok(())
}
