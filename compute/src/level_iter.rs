//! An iterator over one sorted, non-overlapping level (L1 and deeper): it
//! opens one table at a time, so a scan touches only the files it reaches.
//! It reads the level's file list through the version that holds it (one
//! reference count per level, not one per file: a cursor per seek clones
//! none of the files' counters, which threads seeking at once would
//! otherwise bounce between their cores).

use std::ops::Range;
use std::sync::Arc;

use o3_storage::Result;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::compare_internal;
use o3_storage::sst::TableIterator;
use o3_storage::version::{FileMeta, Version};

use crate::table_cache::TableCache;

pub(crate) struct LevelIterator {
    version: Arc<Version>,
    level: usize,
    /// The files of the level this iterator covers.
    range: Range<usize>,
    cache: Arc<TableCache>,
    /// Index (into `files()`) of the file `current` iterates;
    /// `files().len()` when none.
    index: usize,
    current: Option<TableIterator>,
}

impl LevelIterator {
    /// Over the files `range` of `level` in `version` (sorted and
    /// non-overlapping, as every level below 0 is).
    pub(crate) fn new(
        version: Arc<Version>,
        level: usize,
        range: Range<usize>,
        cache: Arc<TableCache>,
    ) -> Self {
        let index = range.len();
        LevelIterator {
            version,
            level,
            range,
            cache,
            index,
            current: None,
        }
    }

    fn files(&self) -> &[Arc<FileMeta>] {
        &self.version.levels[self.level][self.range.clone()]
    }

    fn open(&mut self, index: usize) -> Result<()> {
        self.index = index;
        self.current = None;
        if let Some(number) = self.files().get(index).map(|f| f.number) {
            let table = self.cache.get(number)?;
            self.current = Some(table.iter(true));
        }
        Ok(())
    }

    /// Move forward over exhausted files.
    fn skip_forward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if self.index + 1 >= self.files().len() {
                self.current = None;
                self.index = self.files().len();
                return Ok(());
            }
            self.open(self.index + 1)?;
            if let Some(c) = &mut self.current {
                c.seek_to_first()?;
            }
        }
        Ok(())
    }

    /// Move backward over exhausted files.
    fn skip_backward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if self.index == 0 {
                self.current = None;
                self.index = self.files().len();
                return Ok(());
            }
            self.open(self.index - 1)?;
            if let Some(c) = &mut self.current {
                c.seek_to_last()?;
            }
        }
        Ok(())
    }
}

impl InternalIterator for LevelIterator {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.valid())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.open(0)?;
        if let Some(c) = &mut self.current {
            c.seek_to_first()?;
        }
        self.skip_forward()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        if self.files().is_empty() {
            self.current = None;
            return Ok(());
        }
        self.open(self.files().len() - 1)?;
        if let Some(c) = &mut self.current {
            c.seek_to_last()?;
        }
        self.skip_backward()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        // First file whose largest key is >= target.
        let i = self
            .files()
            .partition_point(|f| compare_internal(&f.largest, target).is_lt());
        self.open(i)?;
        if let Some(c) = &mut self.current {
            c.seek(target)?;
        }
        self.skip_forward()
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        // Last file whose smallest key is <= target.
        let i = self
            .files()
            .partition_point(|f| compare_internal(&f.smallest, target).is_le());
        if i == 0 {
            self.current = None;
            self.index = self.files().len();
            return Ok(());
        }
        self.open(i - 1)?;
        if let Some(c) = &mut self.current {
            c.seek_for_prev(target)?;
        }
        self.skip_backward()
    }
    fn next(&mut self) -> Result<()> {
        if let Some(c) = &mut self.current {
            c.next()?;
        }
        self.skip_forward()
    }
    fn prev(&mut self) -> Result<()> {
        if let Some(c) = &mut self.current {
            c.prev()?;
        }
        self.skip_backward()
    }
    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.key())
    }
    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.value())
    }
}
