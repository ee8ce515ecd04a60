//! Iterators built on [`crate::iterator::InternalIterator`]:
//!
//! - [`VecIterator`]: an in-memory source over sorted `(internal key, value)`
//!   pairs, for tests and small sources;
//! - [`MergingIterator`]: the union of several sources in internal-key order,
//!   both directions;
//! - [`UserIterator`]: the user-facing view of a merged source at a snapshot —
//!   one entry per user key, newest visible version, tombstones hidden,
//!   optional user-key bounds.

mod merging;
mod user_iter;
mod vec_iter;

pub use merging::MergingIterator;
pub use user_iter::{KeyBounds, UserIterator};
pub use vec_iter::VecIterator;
