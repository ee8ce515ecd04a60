//! An iterator over one sorted, non-overlapping level (L1 and deeper): it
//! opens one table at a time, so a scan touches only the files it reaches.

use std::sync::Arc;

use o3_storage::Result;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::compare_internal;
use o3_storage::sst::TableIterator;
use o3_storage::version::FileMeta;

use crate::table_cache::TableCache;

pub(crate) struct LevelIterator {
    files: Vec<Arc<FileMeta>>,
    cache: Arc<TableCache>,
    /// Index of the file `current` iterates; `files.len()` when none.
    index: usize,
    current: Option<TableIterator>,
}

impl LevelIterator {
    pub(crate) fn new(files: Vec<Arc<FileMeta>>, cache: Arc<TableCache>) -> Self {
        let index = files.len();
        LevelIterator {
            files,
            cache,
            index,
            current: None,
        }
    }

    fn open(&mut self, index: usize) -> Result<()> {
        self.index = index;
        self.current = None;
        if let Some(f) = self.files.get(index) {
            let table = self.cache.get(f.number)?;
            self.current = Some(table.iter(true));
        }
        Ok(())
    }

    /// Move forward over exhausted files.
    fn skip_forward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if self.index + 1 >= self.files.len() {
                self.current = None;
                self.index = self.files.len();
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
                self.index = self.files.len();
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
        if self.files.is_empty() {
            self.current = None;
            return Ok(());
        }
        self.open(self.files.len() - 1)?;
        if let Some(c) = &mut self.current {
            c.seek_to_last()?;
        }
        self.skip_backward()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        // First file whose largest key is >= target.
        let i = self
            .files
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
            .files
            .partition_point(|f| compare_internal(&f.smallest, target).is_le());
        if i == 0 {
            self.current = None;
            self.index = self.files.len();
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
