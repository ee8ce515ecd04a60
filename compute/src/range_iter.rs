//! [`DbRange`]: a range of the database as a Rust iterator, in both
//! directions (`for (k, v) in db.range(a..b)`, `.rev()`), yielding owned
//! pairs one at a time instead of collecting a `Vec`.
//!
//! The state it reads (sequence and super version) is fixed when the range
//! is created. The front and the back are two cursors over that one state,
//! each built on its first use; the range ends where they meet, so every key
//! is yielded once whichever ends it is consumed from.

use o3_storage::Result;
use o3_storage::iter::UserIterator;

use crate::read::ReadView;

/// The `(key, value)` pairs of a key range, ascending from the front and
/// descending from the back. A read error is yielded once as `Err`, after
/// which the range is over.
pub struct DbRange {
    view: Option<ReadView>,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    front: Option<UserIterator<'static>>,
    back: Option<UserIterator<'static>>,
    /// The last key yielded from each end: the other end stops before it.
    front_key: Option<Vec<u8>>,
    back_key: Option<Vec<u8>>,
    done: bool,
    /// An error found while creating the range, yielded by the first step.
    failed: Option<o3_storage::Error>,
}

impl std::fmt::Debug for DbRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbRange")
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .field("done", &self.done)
            .finish()
    }
}

/// Which end of the range a step moves.
#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

impl DbRange {
    /// The range `[lower, upper)` of `view`, or (on `Err`) a range that
    /// yields that error and ends.
    pub(crate) fn new(
        view: Result<ReadView>,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
    ) -> Self {
        let (view, failed) = match view {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        DbRange {
            view,
            lower,
            upper,
            front: None,
            back: None,
            front_key: None,
            back_key: None,
            done: false,
            failed,
        }
    }

    /// Move `end`'s cursor one key inwards (positioning it on first use) and
    /// yield its pair unless it passed the other end's last key.
    fn step(&mut self, end: End) -> Option<Result<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return None;
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        match self.advance(end) {
            Ok(Some(pair)) => Some(Ok(pair)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn advance(&mut self, end: End) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let slot = match end {
            End::Front => &mut self.front,
            End::Back => &mut self.back,
        };
        let it = match slot {
            Some(it) => {
                match end {
                    End::Front => it.next()?,
                    End::Back => it.prev()?,
                }
                it
            }
            None => {
                let Some(view) = &self.view else {
                    return Ok(None);
                };
                let mut it = view.cursor(self.lower.clone(), self.upper.clone())?;
                match end {
                    End::Front => it.seek_to_first()?,
                    End::Back => it.seek_to_last()?,
                }
                slot.insert(it)
            }
        };
        if !it.valid() {
            return Ok(None);
        }
        let key = it.key();
        let (met, last) = match end {
            End::Front => (
                self.back_key.as_deref().is_some_and(|b| key >= b),
                &mut self.front_key,
            ),
            End::Back => (
                self.front_key.as_deref().is_some_and(|f| key <= f),
                &mut self.back_key,
            ),
        };
        if met {
            return Ok(None);
        }
        *last = Some(key.to_vec());
        Ok(Some((key.to_vec(), it.value().to_vec())))
    }
}

impl Iterator for DbRange {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(End::Front)
    }
}

impl DoubleEndedIterator for DbRange {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(End::Back)
    }
}

impl std::iter::FusedIterator for DbRange {}
