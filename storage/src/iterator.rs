//! The iterator contract shared by memtable images, SST blocks and tables,
//! merging iterators and the database's user-facing scans.
//!
//! Positioning methods return `Result` so that an I/O or checksum error is
//! reported where it happens rather than through a separate status call.
//! After an error the iterator is invalid.

use crate::error::Result;

/// A bidirectional iterator over internal keys (user key + trailer) in
/// [`crate::key::compare_internal`] order.
pub trait InternalIterator: Send {
    /// True when positioned at an entry.
    fn valid(&self) -> bool;
    /// Position at the first entry.
    fn seek_to_first(&mut self) -> Result<()>;
    /// Position at the last entry.
    fn seek_to_last(&mut self) -> Result<()>;
    /// Position at the first entry whose key is `>= target` (internal key).
    fn seek(&mut self, target: &[u8]) -> Result<()>;
    /// Position at the last entry whose key is `<= target` (internal key).
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()>;
    /// Advance; requires `valid()`.
    fn next(&mut self) -> Result<()>;
    /// Step back; requires `valid()`.
    fn prev(&mut self) -> Result<()>;
    /// Current internal key; requires `valid()`.
    fn key(&self) -> &[u8];
    /// Current value; requires `valid()`.
    fn value(&self) -> &[u8];
}

impl<T: InternalIterator + ?Sized> InternalIterator for Box<T> {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn seek_to_first(&mut self) -> Result<()> {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        (**self).seek_to_last()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek(target)
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek_for_prev(target)
    }
    fn next(&mut self) -> Result<()> {
        (**self).next()
    }
    fn prev(&mut self) -> Result<()> {
        (**self).prev()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
}
