//! The user-facing view of a merged source: one entry per user key as of a
//! snapshot, tombstoned keys hidden, optional user-key bounds. Range
//! tombstones ([`UserIterator::with_range_tombstones`]) hide every entry
//! older than a covering tombstone the snapshot sees: an entry so covered is
//! treated exactly like a point tombstone at its place (the older versions
//! of its key are covered too, having smaller sequences).
//!
//! Internal order puts the versions of a user key newest first. Moving
//! forward, the first visible version met is the one to return, and the
//! iterator simply rests on it. Moving backwards, the versions of a key are
//! met oldest first, so the iterator has to walk past all of them and keep a
//! copy of the newest visible one (`saved_key`, `saved_value`; the buffers are
//! reused, so no step allocates once they have grown).

use std::sync::Arc;

use crate::error::Result;
use crate::iterator::InternalIterator;
use crate::key::{
    MAX_SEQUENCE, SequenceNumber, ValueKind, append_internal_key, parse_internal_key, user_key,
};
use crate::range_del::{CoverageCache, RangeTombstoneSet};

/// User-key bounds of a scan: `lower` inclusive, `upper` exclusive; `None` is
/// unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBounds {
    pub lower: Option<Vec<u8>>,
    pub upper: Option<Vec<u8>>,
}

impl KeyBounds {
    /// No bounds.
    pub fn unbounded() -> Self {
        KeyBounds::default()
    }

    fn below_lower(&self, key: &[u8]) -> bool {
        matches!(&self.lower, Some(l) if key < l.as_slice())
    }

    fn at_or_above_upper(&self, key: &[u8]) -> bool {
        matches!(&self.upper, Some(u) if key >= u.as_slice())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `inner` rests on the newest visible entry of the current key.
    Forward,
    /// `inner` rests before every entry of the current key (or is invalid);
    /// the current key and value are in `saved_key` / `saved_value`, and
    /// every entry between `inner` and the current key is invisible.
    Reverse,
}

/// Snapshot-aware, bounded iteration over user keys.
pub struct UserIterator<'a> {
    inner: Box<dyn InternalIterator + 'a>,
    snapshot: SequenceNumber,
    bounds: KeyBounds,
    /// Range tombstones to apply; `None` when there are none.
    range_tombstones: Option<Arc<RangeTombstoneSet>>,
    /// Their last answer, reused while keys stay in its interval.
    coverage: CoverageCache,
    direction: Direction,
    valid: bool,
    saved_key: Vec<u8>,
    saved_value: Vec<u8>,
    /// Seek targets are built here (buffer reused).
    seek_key: Vec<u8>,
}

impl std::fmt::Debug for UserIterator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIterator")
            .field("snapshot", &self.snapshot)
            .field("bounds", &self.bounds)
            .field("direction", &self.direction)
            .field("valid", &self.valid)
            .finish()
    }
}

impl<'a> UserIterator<'a> {
    /// View `inner` as of `snapshot` (entries with a larger sequence are
    /// invisible), restricted to `bounds`. Starts unpositioned.
    pub fn new(
        inner: Box<dyn InternalIterator + 'a>,
        snapshot: SequenceNumber,
        bounds: KeyBounds,
    ) -> Self {
        UserIterator {
            inner,
            snapshot,
            bounds,
            range_tombstones: None,
            coverage: CoverageCache::default(),
            direction: Direction::Forward,
            valid: false,
            saved_key: Vec::new(),
            saved_value: Vec::new(),
            seek_key: Vec::new(),
        }
    }

    /// Also hide the entries these range tombstones delete at the
    /// iterator's snapshot.
    pub fn with_range_tombstones(mut self, set: Arc<RangeTombstoneSet>) -> Self {
        self.range_tombstones = (!set.is_empty()).then_some(set);
        self
    }

    /// True when positioned at a key.
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current user key; empty when not `valid()`.
    pub fn key(&self) -> &[u8] {
        if !self.valid {
            return &[];
        }
        match self.direction {
            Direction::Forward => user_key(self.inner.key()),
            Direction::Reverse => &self.saved_key,
        }
    }

    /// The current value; empty when not `valid()`.
    pub fn value(&self) -> &[u8] {
        if !self.valid {
            return &[];
        }
        match self.direction {
            Direction::Forward => self.inner.value(),
            Direction::Reverse => &self.saved_value,
        }
    }

    /// Position at the first key within the bounds.
    pub fn seek_to_first(&mut self) -> Result<()> {
        match self.bounds.lower.take() {
            Some(lower) => {
                let r = self.seek(&lower);
                self.bounds.lower = Some(lower);
                r
            }
            None => self.guard(|it| {
                it.direction = Direction::Forward;
                it.inner.seek_to_first()?;
                it.find_next_user_entry(false)
            }),
        }
    }

    /// Position at the last key within the bounds.
    pub fn seek_to_last(&mut self) -> Result<()> {
        self.guard(|it| {
            it.direction = Direction::Reverse;
            match &it.bounds.upper {
                Some(upper) => {
                    // Sorts before every entry of `upper`: the last entry at or
                    // before it belongs to a smaller user key.
                    it.seek_key.clear();
                    append_internal_key(&mut it.seek_key, upper, MAX_SEQUENCE, ValueKind::Value);
                    it.inner.seek_for_prev(&it.seek_key)?;
                }
                None => it.inner.seek_to_last()?,
            }
            it.find_prev_user_entry()
        })
    }

    /// Position at the first key `>= target` within the bounds.
    pub fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.guard(|it| {
            it.direction = Direction::Forward;
            let start = match &it.bounds.lower {
                Some(l) if target < l.as_slice() => l.as_slice(),
                _ => target,
            };
            it.seek_key.clear();
            // A snapshot past the largest sequence ("latest") reads everything.
            let seq = it.snapshot.min(MAX_SEQUENCE);
            append_internal_key(&mut it.seek_key, start, seq, ValueKind::Value);
            it.inner.seek(&it.seek_key)?;
            it.find_next_user_entry(false)
        })
    }

    /// Position at the last key `<= target` within the bounds.
    pub fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        if self.bounds.at_or_above_upper(target) {
            return self.seek_to_last();
        }
        self.guard(|it| {
            it.direction = Direction::Reverse;
            // Sequence 0 with the lowest kind sorts after every entry of
            // `target`, so the inner iterator lands on its oldest version.
            it.seek_key.clear();
            append_internal_key(&mut it.seek_key, target, 0, ValueKind::Tombstone);
            it.inner.seek_for_prev(&it.seek_key)?;
            it.find_prev_user_entry()
        })
    }

    /// Advance to the next key. On an unpositioned iterator (before any
    /// seek, or after it ran off either end) this does nothing and it stays
    /// unpositioned, like [`Self::prev`].
    // Named like `InternalIterator::next`: a cursor step that can fail, not
    // `Iterator::next`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        self.guard(|it| {
            match it.direction {
                Direction::Forward => {
                    it.saved_key.clear();
                    it.saved_key.extend_from_slice(user_key(it.inner.key()));
                    it.inner.next()?;
                }
                Direction::Reverse => {
                    // `inner` is before every entry of `saved_key`; step onto
                    // them and let the skip below pass them.
                    it.direction = Direction::Forward;
                    if it.inner.valid() {
                        it.inner.next()?;
                    } else {
                        it.inner.seek_to_first()?;
                    }
                }
            }
            it.find_next_user_entry(true)
        })
    }

    /// Step back to the previous key; a no-op on an unpositioned iterator.
    pub fn prev(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        self.guard(|it| {
            if it.direction == Direction::Forward {
                // `inner` rests on the newest visible entry of the current
                // key; the entries before it that share the key are newer,
                // hence invisible, and the backward walk skips them.
                it.inner.prev()?;
                it.direction = Direction::Reverse;
            }
            it.find_prev_user_entry()
        })
    }

    /// Run a positioning step; an error leaves the iterator unpositioned.
    fn guard(&mut self, step: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let r = step(self);
        if r.is_err() {
            self.valid = false;
        }
        r
    }

    /// Forward from the current inner position to the newest visible entry
    /// of the next user key that is not deleted. With `skipping`, entries of
    /// user keys `<= saved_key` are passed over.
    fn find_next_user_entry(&mut self, mut skipping: bool) -> Result<()> {
        while self.inner.valid() {
            let parsed = parse_internal_key(self.inner.key())?;
            if parsed.sequence <= self.snapshot {
                if self.bounds.at_or_above_upper(parsed.user_key) {
                    break;
                }
                let shadowed = skipping && parsed.user_key <= self.saved_key.as_slice();
                if !shadowed {
                    let kind = effective_kind(
                        self.range_tombstones.as_deref(),
                        &mut self.coverage,
                        self.snapshot,
                        (parsed.kind, parsed.user_key, parsed.sequence),
                    );
                    match kind {
                        ValueKind::Value => {
                            self.valid = true;
                            return Ok(());
                        }
                        ValueKind::Tombstone => {
                            // Every older entry of this key is hidden.
                            self.saved_key.clear();
                            self.saved_key.extend_from_slice(parsed.user_key);
                            skipping = true;
                        }
                    }
                }
            }
            self.inner.next()?;
        }
        self.valid = false;
        Ok(())
    }

    /// Backwards from the current inner position to the previous user key
    /// that is not deleted, saving its newest visible entry.
    fn find_prev_user_entry(&mut self) -> Result<()> {
        let mut found = false;
        while self.inner.valid() {
            let parsed = parse_internal_key(self.inner.key())?;
            if self.bounds.below_lower(parsed.user_key) {
                break;
            }
            if parsed.sequence <= self.snapshot && !self.bounds.at_or_above_upper(parsed.user_key) {
                if found && parsed.user_key < self.saved_key.as_slice() {
                    // Walked past every version of the saved key.
                    break;
                }
                let kind = effective_kind(
                    self.range_tombstones.as_deref(),
                    &mut self.coverage,
                    self.snapshot,
                    (parsed.kind, parsed.user_key, parsed.sequence),
                );
                match kind {
                    ValueKind::Value => {
                        self.saved_key.clear();
                        self.saved_key.extend_from_slice(parsed.user_key);
                        self.saved_value.clear();
                        self.saved_value.extend_from_slice(self.inner.value());
                        found = true;
                    }
                    ValueKind::Tombstone => found = false,
                }
            }
            self.inner.prev()?;
        }
        self.valid = found;
        if !found {
            self.saved_key.clear();
            self.saved_value.clear();
        }
        Ok(())
    }
}

/// What a visible entry `(kind, user key, sequence)` means at `snapshot`:
/// a value covered by a range tombstone reads as a point tombstone.
#[inline]
fn effective_kind(
    tombstones: Option<&RangeTombstoneSet>,
    coverage: &mut CoverageCache,
    snapshot: SequenceNumber,
    (kind, user_key, seq): (ValueKind, &[u8], SequenceNumber),
) -> ValueKind {
    match tombstones {
        Some(set) if kind == ValueKind::Value && coverage.hides(set, user_key, seq, snapshot) => {
            ValueKind::Tombstone
        }
        _ => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::VecIterator;
    use crate::key::make_internal_key;

    fn db(entries: &[(&str, u64, Option<&str>)]) -> Box<dyn InternalIterator> {
        Box::new(VecIterator::new(
            entries
                .iter()
                .map(|(k, s, v)| match v {
                    Some(v) => (
                        make_internal_key(k.as_bytes(), *s, ValueKind::Value),
                        v.as_bytes().to_vec(),
                    ),
                    None => (
                        make_internal_key(k.as_bytes(), *s, ValueKind::Tombstone),
                        Vec::new(),
                    ),
                })
                .collect(),
        ))
    }

    fn pairs_forward(it: &mut UserIterator) -> Vec<(String, String)> {
        let mut out = Vec::new();
        it.seek_to_first().unwrap();
        while it.valid() {
            out.push((
                String::from_utf8(it.key().to_vec()).unwrap(),
                String::from_utf8(it.value().to_vec()).unwrap(),
            ));
            it.next().unwrap();
        }
        out
    }

    #[test]
    fn snapshot_picks_newest_visible_and_hides_tombstones() {
        let src = [
            ("a", 1, Some("a1")),
            ("a", 3, Some("a3")),
            ("b", 2, Some("b2")),
            ("b", 4, None),
            ("c", 5, Some("c5")),
        ];
        let mut now = UserIterator::new(db(&src), 10, KeyBounds::unbounded());
        assert_eq!(
            pairs_forward(&mut now),
            [("a".into(), "a3".into()), ("c".into(), "c5".into())]
        );
        let mut old = UserIterator::new(db(&src), 2, KeyBounds::unbounded());
        assert_eq!(
            pairs_forward(&mut old),
            [("a".into(), "a1".into()), ("b".into(), "b2".into())]
        );
        old.seek_to_last().unwrap();
        assert_eq!((old.key(), old.value()), (&b"b"[..], &b"b2"[..]));
        old.prev().unwrap();
        assert_eq!((old.key(), old.value()), (&b"a"[..], &b"a1"[..]));
        old.next().unwrap();
        assert_eq!(old.key(), b"b");
    }
}
