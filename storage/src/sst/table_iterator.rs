//! The two-level table iterator: a position in the decoded index picks a
//! data block, a cursor over that block yields the entries.
//!
//! Invariant: when valid, the data cursor is positioned inside the block at
//! index position `block` (whose offset is `data_offset`). Separators satisfy
//! `last key of block i <= separator i < first key of block i+1`, so a seek
//! lands in the right block or, when the target falls between a block's last
//! key and its separator, at the start of the next one.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::error::Result;
use crate::iterator::InternalIterator;
use crate::key::compare_internal;

use super::block::BlockIter;
use super::table::Table;

/// Iterates a [`Table`] in both directions; see
/// [`crate::iterator::InternalIterator`]. Positioning methods return read
/// and checksum errors, after which the iterator is invalid.
#[derive(Debug)]
pub struct TableIterator {
    table: Arc<Table>,
    /// Position in the table's index; `table.index().len()` when off the end.
    block: usize,
    /// Cursor over the current data block; reused across blocks so its key
    /// buffer is allocated once.
    data: Option<BlockIter>,
    /// File offset of the block `data` is over; `None` when `data` is unset.
    data_offset: Option<u64>,
    fill_cache: bool,
}

impl TableIterator {
    pub(crate) fn new(table: Arc<Table>, fill_cache: bool) -> TableIterator {
        let block = table.index().len();
        TableIterator {
            table,
            block,
            data: None,
            data_offset: None,
            fill_cache,
        }
    }

    /// The table being iterated.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    fn data_valid(&self) -> bool {
        self.data.as_ref().is_some_and(BlockIter::valid)
    }

    fn index_valid(&self) -> bool {
        self.block < self.table.index().len()
    }

    /// Step the index position back; off the end (invalid) before block 0.
    fn index_prev(&mut self) {
        self.block = self
            .block
            .checked_sub(1)
            .unwrap_or(self.table.index().len());
    }

    /// Index position of the last block, or off the end for an empty table.
    fn index_last(&self) -> usize {
        let n = self.table.index().len();
        n.checked_sub(1).unwrap_or(n)
    }

    /// Point `data` at the block the index position names (no-op if it is
    /// already there); clear it when the position is off the end.
    fn load_data_block(&mut self) -> Result<()> {
        if !self.index_valid() {
            self.data_offset = None;
            return Ok(());
        }
        let handle = self.table.index().handle(self.block);
        if self.data_offset == Some(handle.offset) {
            return Ok(());
        }
        self.data_offset = None;
        let block = self.table.data_block(handle, self.fill_cache)?;
        match &mut self.data {
            Some(it) => it.reset(block, handle.offset),
            None => {
                self.data = Some(block.iter(self.table.location_arc().clone(), handle.offset));
            }
        }
        self.data_offset = Some(handle.offset);
        Ok(())
    }

    /// Run `f` on the data cursor if a block is loaded.
    fn with_data(&mut self, f: impl FnOnce(&mut BlockIter) -> Result<()>) -> Result<()> {
        match (&mut self.data, self.data_offset) {
            (Some(it), Some(_)) => f(it),
            _ => Ok(()),
        }
    }

    /// Move forward over exhausted (or empty) data blocks.
    fn skip_forward(&mut self) -> Result<()> {
        while !self.positioned() && self.index_valid() {
            self.block += 1;
            self.load_data_block()?;
            self.with_data(BlockIter::seek_to_first)?;
        }
        Ok(())
    }

    /// Move backward over exhausted (or empty) data blocks.
    fn skip_backward(&mut self) -> Result<()> {
        while !self.positioned() && self.index_valid() {
            self.index_prev();
            self.load_data_block()?;
            self.with_data(BlockIter::seek_to_last)?;
        }
        Ok(())
    }

    fn positioned(&self) -> bool {
        self.data_offset.is_some() && self.data_valid()
    }

    /// The iterator contract: after an error the iterator is invalid.
    fn invalid_on_error(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.data_offset = None;
        }
        r
    }

    fn seek_inner(&mut self, target: &[u8]) -> Result<()> {
        self.block = self.table.index().seek(target);
        self.load_data_block()?;
        self.with_data(|d| d.seek(target))?;
        self.skip_forward()
    }
}

impl InternalIterator for TableIterator {
    fn valid(&self) -> bool {
        self.positioned()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        let r = (|| {
            self.block = 0;
            self.load_data_block()?;
            self.with_data(BlockIter::seek_to_first)?;
            self.skip_forward()
        })();
        self.invalid_on_error(r)
    }

    fn seek_to_last(&mut self) -> Result<()> {
        let r = (|| {
            self.block = self.index_last();
            self.load_data_block()?;
            self.with_data(BlockIter::seek_to_last)?;
            self.skip_backward()
        })();
        self.invalid_on_error(r)
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let r = self.seek_inner(target);
        self.invalid_on_error(r)
    }

    /// The last entry `<= target`: seek to the first entry `>= target`, then
    /// step back once unless it equals `target`.
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        let r = (|| {
            self.seek_inner(target)?;
            if !self.positioned() {
                self.block = self.index_last();
                self.load_data_block()?;
                self.with_data(BlockIter::seek_to_last)?;
                return self.skip_backward();
            }
            if compare_internal(self.key(), target) == Ordering::Greater {
                self.prev_inner()?;
            }
            Ok(())
        })();
        self.invalid_on_error(r)
    }

    fn next(&mut self) -> Result<()> {
        let r = (|| {
            self.with_data(BlockIter::next)?;
            self.skip_forward()
        })();
        self.invalid_on_error(r)
    }

    fn prev(&mut self) -> Result<()> {
        let r = self.prev_inner();
        self.invalid_on_error(r)
    }

    fn key(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], |d| d.key())
    }

    fn value(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], |d| d.value())
    }
}

impl TableIterator {
    fn prev_inner(&mut self) -> Result<()> {
        self.with_data(BlockIter::prev)?;
        self.skip_backward()
    }
}
