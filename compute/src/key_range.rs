//! [`KeyRange`]: the key ranges that the read API takes, written as std
//! ranges over anything that is bytes.

use std::ops::{Bound, Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

/// A range of user keys, as the std range types write it over anything that
/// is bytes (`"a".."m"`, `b"a".as_slice()..=b"m".as_slice()`, `key..`,
/// `..`, or a `(Bound, Bound)` pair). One trait instead of
/// `RangeBounds<K>` so that `..` needs no type annotation.
pub trait KeyRange {
    /// The range as `[lower, upper)`; `None` is unbounded. The smallest key
    /// after `k` is `k + 0x00`, which turns inclusive ends into exclusive ones.
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>);
}

fn lower_of(b: Bound<&[u8]>) -> Option<Vec<u8>> {
    match b {
        Bound::Included(k) => Some(k.to_vec()),
        Bound::Excluded(k) => Some([k, &[0u8]].concat()),
        Bound::Unbounded => None,
    }
}

fn upper_of(b: Bound<&[u8]>) -> Option<Vec<u8>> {
    match b {
        Bound::Included(k) => Some([k, &[0u8]].concat()),
        Bound::Excluded(k) => Some(k.to_vec()),
        Bound::Unbounded => None,
    }
}

impl KeyRange for RangeFull {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (None, None)
    }
}

impl<K: AsRef<[u8]>> KeyRange for Range<K> {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            lower_of(Bound::Included(self.start.as_ref())),
            upper_of(Bound::Excluded(self.end.as_ref())),
        )
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeInclusive<K> {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            lower_of(Bound::Included(self.start().as_ref())),
            upper_of(Bound::Included(self.end().as_ref())),
        )
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeFrom<K> {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (lower_of(Bound::Included(self.start.as_ref())), None)
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeTo<K> {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (None, upper_of(Bound::Excluded(self.end.as_ref())))
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeToInclusive<K> {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (None, upper_of(Bound::Included(self.end.as_ref())))
    }
}

impl<K: AsRef<[u8]>> KeyRange for (Bound<K>, Bound<K>) {
    fn to_bounds(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            lower_of(self.0.as_ref().map(|k| k.as_ref())),
            upper_of(self.1.as_ref().map(|k| k.as_ref())),
        )
    }
}
