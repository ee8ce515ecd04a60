//! The one skiplist search used for every memtable, wherever its bytes are:
//! the live arena (links read atomically) and sealed images in any byte
//! buffer (links decoded with `from_le_bytes`) implement [`NodeSource`], and
//! the searches and the cursor below are written once against it.

use std::cmp::Ordering;

use crate::key::{self, MAX_SEQUENCE, ValueKind};

use super::EntryRef;

/// Read access to the nodes of one skiplist.
///
/// Invariant relied on for soundness by the live memtable: every `node`
/// passed in is the head or an offset previously returned by `next`, and
/// `level` is below that node's height (the searches below only ever descend
/// from the head, so they keep it).
pub(crate) trait NodeSource {
    /// Offset of the head node (sentinel without key, of `max_height()` levels).
    fn head(&self) -> u32;
    fn max_height(&self) -> usize;
    /// The node after `node` on `level`, 0 at the end of the list.
    fn next(&self, node: u32, level: usize) -> u32;
    /// The internal key of a non-head node.
    fn key(&self, node: u32) -> &[u8];
    /// The value of a non-head node.
    fn value(&self, node: u32) -> &[u8];
    /// Start loading `node` into the CPU cache; a hint only.
    #[inline]
    fn prefetch(&self, _node: u32) {}
}

/// A search target in internal-key order, kept as user key + trailer so that
/// a lookup builds no key on the heap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'k> {
    user_key: &'k [u8],
    trailer: u64,
}

impl<'k> Target<'k> {
    /// The position of the newest entry of `user_key` visible at `snapshot`.
    pub fn lookup(user_key: &'k [u8], snapshot: u64) -> Target<'k> {
        Target {
            user_key,
            trailer: key::pack_trailer(snapshot.min(MAX_SEQUENCE), key::KIND_FOR_SEEK),
        }
    }

    /// An internal key as target; split exactly as
    /// [`key::compare_internal`] splits it, so short keys order the same way.
    pub fn internal(ikey: &'k [u8]) -> Target<'k> {
        Target {
            user_key: key::user_key(ikey),
            trailer: key::trailer(ikey),
        }
    }

    /// The internal key `user_key ++ trailer`, without building it.
    pub fn internal_parts(user_key: &'k [u8], trailer: u64) -> Target<'k> {
        Target { user_key, trailer }
    }

    /// Order of the internal key `node_key` relative to this target.
    #[inline]
    pub fn order_of(&self, node_key: &[u8]) -> Ordering {
        match key::compare_user_keys(key::user_key(node_key), self.user_key) {
            Ordering::Equal => self.trailer.cmp(&key::trailer(node_key)),
            o => o,
        }
    }
}

/// The last node at level 0 whose key is before `target` (or, when
/// `inclusive`, not after it); the head when there is none. Also records the
/// last such node of every level in `splice` when given (for inserts).
#[inline]
pub(crate) fn find_before<S: NodeSource + ?Sized>(
    s: &S,
    target: &Target<'_>,
    inclusive: bool,
    mut splice: Option<&mut [u32]>,
) -> u32 {
    let mut x = s.head();
    // The node that stopped the previous level: when a lower level leads to
    // it again, its key (likely a cache miss) need not be read again.
    let mut stopper = 0;
    // Each level ends by descending from `x` to `next(x, level - 1)`, a
    // likely cache miss: it is requested whenever `x` changes, while the
    // nodes to its right on this level are compared.
    let prefetch_below = |x: u32, level: usize| {
        if level > 0 {
            let below = s.next(x, level - 1);
            if below != 0 {
                s.prefetch(below);
            }
        }
    };
    for level in (0..s.max_height()).rev() {
        prefetch_below(x, level);
        loop {
            let n = s.next(x, level);
            if n == 0 || n == stopper {
                break;
            }
            let step = match target.order_of(s.key(n)) {
                Ordering::Less => true,
                Ordering::Equal => inclusive,
                Ordering::Greater => false,
            };
            if !step {
                stopper = n;
                break;
            }
            x = n;
            prefetch_below(x, level);
        }
        if let Some(slot) = splice.as_deref_mut().and_then(|s| s.get_mut(level)) {
            *slot = x;
        }
    }
    x
}

/// The first node whose key is at or after `target`; 0 when there is none.
#[inline]
pub(crate) fn seek_ge<S: NodeSource + ?Sized>(s: &S, target: &Target<'_>) -> u32 {
    let mut x = find_before(s, target, false, None);
    // A writer may have linked a node after `x` since the search passed it
    // (a live memtable takes inserts while it is read): such a node can
    // still sort before `target`, so step over every one that does rather
    // than return it. Without this a lookup racing an insert just before
    // its key missed the key altogether.
    loop {
        let n = s.next(x, 0);
        if n == 0 || target.order_of(s.key(n)) != Ordering::Less {
            return n;
        }
        x = n;
    }
}

/// The last node whose key is at or before (`inclusive`) or strictly before
/// `target`; 0 when there is none.
pub(crate) fn seek_le<S: NodeSource + ?Sized>(s: &S, target: &Target<'_>, inclusive: bool) -> u32 {
    let x = find_before(s, target, inclusive, None);
    if x == s.head() { 0 } else { x }
}

/// The last node of the list; 0 when the list is empty.
pub(crate) fn last<S: NodeSource + ?Sized>(s: &S) -> u32 {
    let mut x = s.head();
    for level in (0..s.max_height()).rev() {
        loop {
            let n = s.next(x, level);
            if n == 0 {
                break;
            }
            x = n;
        }
    }
    if x == s.head() { 0 } else { x }
}

/// The node holding the newest entry of `user_key` visible at `snapshot`.
pub(crate) fn find_visible<S: NodeSource + ?Sized>(s: &S, user_key: &[u8], snapshot: u64) -> u32 {
    let n = seek_ge(s, &Target::lookup(user_key, snapshot));
    if n != 0 && key::user_key(s.key(n)) == user_key {
        n
    } else {
        0
    }
}

/// Build an [`EntryRef`] from a node's internal key and value; `None` when
/// the trailer names no known kind (never, for a validated image).
pub(crate) fn entry_ref<'a>(ikey: &'a [u8], value: &'a [u8], offset: u32) -> Option<EntryRef<'a>> {
    let trailer = key::trailer(ikey);
    Some(EntryRef {
        kind: ValueKind::from_u8((trailer & 0xff) as u8)?,
        sequence: trailer >> 8,
        value,
        offset,
    })
}

/// A position in a skiplist: the state of every memtable and image iterator.
/// `node == 0` means not positioned. Steps backwards by searching for the
/// last node before the current key (O(log n)), so nodes need no back links.
#[derive(Debug)]
pub(crate) struct Cursor<S> {
    pub source: S,
    node: u32,
}

impl<S: NodeSource> Cursor<S> {
    pub fn new(source: S) -> Cursor<S> {
        Cursor { source, node: 0 }
    }
    pub fn valid(&self) -> bool {
        self.node != 0
    }
    /// The current node's offset (0 when not positioned).
    pub fn node(&self) -> u32 {
        self.node
    }
    pub fn seek_to_first(&mut self) {
        self.node = self.source.next(self.source.head(), 0);
    }
    pub fn seek_to_last(&mut self) {
        self.node = last(&self.source);
    }
    pub fn seek(&mut self, target: &[u8]) {
        self.node = seek_ge(&self.source, &Target::internal(target));
    }
    pub fn seek_for_prev(&mut self, target: &[u8]) {
        self.node = seek_le(&self.source, &Target::internal(target), true);
    }
    /// Step forward, and start loading the node after the new one: a scan
    /// (a flush) then overlaps that likely cache miss with its work on this
    /// entry.
    pub fn next(&mut self) {
        if self.node != 0 {
            self.node = self.source.next(self.node, 0);
            if self.node != 0 {
                let after = self.source.next(self.node, 0);
                if after != 0 {
                    self.source.prefetch(after);
                }
            }
        }
    }
    pub fn prev(&mut self) {
        if self.node != 0 {
            let current = Target::internal(self.source.key(self.node));
            self.node = seek_le(&self.source, &current, false);
        }
    }
    pub fn key(&self) -> &[u8] {
        if self.node == 0 {
            return &[];
        }
        self.source.key(self.node)
    }
    pub fn value(&self) -> &[u8] {
        if self.node == 0 {
            return &[];
        }
        self.source.value(self.node)
    }
}

/// Implement [`crate::iterator::InternalIterator`] for a public iterator type
/// that wraps a [`Cursor`] in its field `cursor`. Skiplist moves cannot fail,
/// so every positioning method returns `Ok`.
macro_rules! cursor_iterator {
    ($ty:ty $(, $($gen:tt)*)?) => {
        impl $(<$($gen)*>)? $crate::iterator::InternalIterator for $ty {
            fn valid(&self) -> bool {
                self.cursor.valid()
            }
            fn seek_to_first(&mut self) -> $crate::error::Result<()> {
                self.cursor.seek_to_first();
                Ok(())
            }
            fn seek_to_last(&mut self) -> $crate::error::Result<()> {
                self.cursor.seek_to_last();
                Ok(())
            }
            fn seek(&mut self, target: &[u8]) -> $crate::error::Result<()> {
                self.cursor.seek(target);
                Ok(())
            }
            fn seek_for_prev(&mut self, target: &[u8]) -> $crate::error::Result<()> {
                self.cursor.seek_for_prev(target);
                Ok(())
            }
            fn next(&mut self) -> $crate::error::Result<()> {
                self.cursor.next();
                Ok(())
            }
            fn prev(&mut self) -> $crate::error::Result<()> {
                self.cursor.prev();
                Ok(())
            }
            fn key(&self) -> &[u8] {
                self.cursor.key()
            }
            fn value(&self) -> &[u8] {
                self.cursor.value()
            }
        }
    };
}
pub(crate) use cursor_iterator;
