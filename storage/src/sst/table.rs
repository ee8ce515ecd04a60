//! An open SST (`docs/sst_format.md`): the footer, index, filter and
//! properties are read and verified once at open and pinned in memory; data
//! blocks are read on demand through the shared [`BlockCache`].

use std::sync::Arc;

use bytes::Bytes;

use crate::env::RandomAccessFile;
use crate::error::{Error, Result};
use crate::iterator::InternalIterator;
use crate::key::{self, SequenceNumber, ValueKind};

use super::block::{Block, BlockIter};
use super::block_cache::{BlockCache, next_cache_id};
use super::bloom::{BloomFilter, bloom_hash};
use super::footer::{BlockHandle, FOOTER_LEN, Footer};
use super::index::TableIndex;
use super::properties::TableProperties;
use super::stored_block::read_block;
use super::table_builder::{FILTER_NAME, PROPERTIES_NAME};
use super::table_iterator::TableIterator;

/// An open, immutable table. Shared between readers as `Arc<Table>`.
pub struct Table {
    file: Arc<dyn RandomAccessFile>,
    location: Arc<str>,
    cache: Option<Arc<BlockCache>>,
    /// This table's key space in the block cache.
    cache_id: u64,
    index: Arc<TableIndex>,
    filter: Option<BloomFilter>,
    properties: TableProperties,
    /// Offset of the footer: every block ends at or before it.
    block_area_end: u64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("location", &self.location)
            .field("cache_id", &self.cache_id)
            .field("entries", &self.properties.entries)
            .field("file_size", &self.properties.file_size)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Read and verify the footer, meta-index, index, filter and properties.
    /// `location` (usually the file path) names the table in every error.
    pub fn open(
        file: Arc<dyn RandomAccessFile>,
        location: String,
        cache: Option<Arc<BlockCache>>,
    ) -> Result<Table> {
        Table::open_inner(file, location, cache, true, None)
    }

    /// Open a table only to iterate it whole (a compaction input): like
    /// [`Table::open`] without a block cache and without reading the bloom
    /// filter, which a full scan never consults; [`Table::get`] then reads
    /// data blocks for every key. `index`, when given, must be the
    /// [`Table::shared_index`] of another open of the same file; it is used
    /// instead of reading and decoding the index block again.
    pub fn open_for_scan(
        file: Arc<dyn RandomAccessFile>,
        location: String,
        index: Option<Arc<TableIndex>>,
    ) -> Result<Table> {
        Table::open_inner(file, location, None, false, index)
    }

    fn open_inner(
        file: Arc<dyn RandomAccessFile>,
        location: String,
        cache: Option<Arc<BlockCache>>,
        load_filter: bool,
        index: Option<Arc<TableIndex>>,
    ) -> Result<Table> {
        let location: Arc<str> = location.into();
        let size = file.size();
        if size < FOOTER_LEN as u64 {
            return Err(Error::corruption(
                &*location,
                0,
                format!("file of {size} bytes is too short for the {FOOTER_LEN}-byte footer"),
            ));
        }
        let block_area_end = size - FOOTER_LEN as u64;
        let mut footer_bytes = [0u8; FOOTER_LEN];
        file.read_exact_at(block_area_end, &mut footer_bytes)?;
        let footer = Footer::decode(&footer_bytes, size, &location)?;

        let read = |h: BlockHandle| -> Result<Block> {
            let bytes = read_block(file.as_ref(), h, block_area_end, &location)?;
            Block::new(bytes, &location, h.offset)
        };
        let meta_index = read(footer.meta_index)?;
        let mut filter_handle = None;
        let mut props_handle = None;
        let mut it = meta_index.iter(location.clone(), footer.meta_index.offset);
        it.seek_to_first()?;
        while it.valid() {
            let slot = match it.key() {
                FILTER_NAME => Some(&mut filter_handle),
                PROPERTIES_NAME => Some(&mut props_handle),
                _ => None,
            };
            if let Some(slot) = slot {
                *slot = Some(BlockHandle::decode(it.value()).ok_or_else(|| {
                    Error::corruption(
                        &*location,
                        footer.meta_index.offset,
                        "bad block handle in the meta-index",
                    )
                })?);
            }
            it.next()?;
        }
        let props_handle = props_handle.ok_or_else(|| {
            Error::corruption(
                &*location,
                footer.meta_index.offset,
                "meta-index has no properties block",
            )
        })?;
        let properties = TableProperties::decode_block(
            &read(props_handle)?,
            size,
            &location,
            props_handle.offset,
        )?;
        let filter = match filter_handle.filter(|_| load_filter) {
            Some(h) => {
                let bytes = read_block(file.as_ref(), h, block_area_end, &location)?;
                Some(BloomFilter::new(bytes, &location, h.offset)?)
            }
            None => None,
        };
        let index = match index {
            Some(index) if index.fits(block_area_end) => index,
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{location}: the index supplied for it names blocks past its end"
                )));
            }
            None => Arc::new(TableIndex::decode(
                &read(footer.index)?,
                &location,
                footer.index.offset,
                block_area_end,
            )?),
        };
        Ok(Table {
            file,
            location,
            cache,
            cache_id: next_cache_id(),
            index,
            filter,
            properties,
            block_area_end,
        })
    }

    pub fn properties(&self) -> &TableProperties {
        &self.properties
    }

    /// The name used in errors.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Bloom check on a user key: false only when the key is certainly absent.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_contain(user_key))
    }

    /// Point lookup: the first entry at or after `lookup_key` (built with
    /// [`key::make_lookup_key`]) if its user key is `user_key`. The bloom
    /// filter is checked before any data block is read; the value is a
    /// zero-copy slice of the (cached) block.
    pub fn get(
        &self,
        user_key: &[u8],
        lookup_key: &[u8],
    ) -> Result<Option<(ValueKind, SequenceNumber, Bytes)>> {
        self.get_hashed(user_key, lookup_key, bloom_hash(user_key))
    }

    /// [`Table::get`] with the key's [`bloom_hash`] computed by the caller,
    /// once for every table a lookup probes.
    pub fn get_hashed(
        &self,
        user_key: &[u8],
        lookup_key: &[u8],
        hash: u64,
    ) -> Result<Option<(ValueKind, SequenceNumber, Bytes)>> {
        // The bloom line, the index group and its block records are likely
        // cache misses each; start all of them before waiting on any.
        if let Some(f) = &self.filter {
            f.prefetch_hash(hash);
        }
        let seek = self.index.start_seek(lookup_key);
        if self
            .filter
            .as_ref()
            .is_some_and(|f| !f.may_contain_hash(hash))
        {
            return Ok(None);
        }
        let mut data: Option<BlockIter> = None;
        for i in self.index.finish_seek(&seek, lookup_key)..self.index.len() {
            let handle = self.index.handle(i);
            let block = self.data_block(handle, true)?;
            let it = match &mut data {
                Some(it) => {
                    it.reset(block, handle.offset);
                    it
                }
                None => data.insert(block.iter(self.location.clone(), handle.offset)),
            };
            it.seek(lookup_key)?;
            if it.valid() {
                let parsed = key::parse_internal_key(it.key()).map_err(|e| {
                    Error::corruption(
                        &*self.location,
                        handle.offset,
                        format!("bad internal key in data block: {e}"),
                    )
                })?;
                if parsed.user_key != user_key {
                    return Ok(None);
                }
                return Ok(Some((parsed.kind, parsed.sequence, it.value_bytes())));
            }
            // The separator may sort after the block's last key: the entry,
            // if any, starts the next block.
        }
        Ok(None)
    }

    /// A two-level iterator (index → data blocks) over all entries.
    /// `fill_cache = false` keeps one-off scans (compactions) from evicting
    /// the working set.
    pub fn iter(self: &Arc<Self>, fill_cache: bool) -> TableIterator {
        TableIterator::new(Arc::clone(self), fill_cache)
    }

    /// The decoded index, pinned for the table's lifetime.
    pub(crate) fn index(&self) -> &TableIndex {
        &self.index
    }

    /// The decoded index, to reuse for another open of this same file
    /// ([`Table::open_for_scan`]).
    pub fn shared_index(&self) -> Arc<TableIndex> {
        Arc::clone(&self.index)
    }

    pub(crate) fn location_arc(&self) -> &Arc<str> {
        &self.location
    }

    /// The data block at `handle`, from the cache when present; inserted
    /// into the cache after a read when `fill_cache`.
    pub(crate) fn data_block(&self, handle: BlockHandle, fill_cache: bool) -> Result<Block> {
        if let Some(cache) = &self.cache
            && let Some(bytes) = cache.get(self.cache_id, handle.offset)
        {
            return Block::new(bytes, &self.location, handle.offset);
        }
        let bytes = read_block(
            self.file.as_ref(),
            handle,
            self.block_area_end,
            &self.location,
        )?;
        let block = Block::new(bytes, &self.location, handle.offset)?;
        if fill_cache && let Some(cache) = &self.cache {
            cache.insert(self.cache_id, handle.offset, block.data().clone());
        }
        Ok(block)
    }
}
