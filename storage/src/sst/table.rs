//! An open SST (`docs/sst_format.md`): the footer, index, filter and
//! properties are read and verified once at open and pinned in memory; data
//! blocks are read on demand through the shared [`BlockCache`].

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;

use crate::env::RandomAccessFile;
use crate::error::{Error, Result};
use crate::iterator::InternalIterator;
use crate::key::{self, SequenceNumber, ValueKind};

use super::block::Block;
use super::block_cache::{BlockCache, next_cache_id};
use super::bloom::{BloomFilter, bloom_hash};
use super::footer::{BlockHandle, FOOTER_LEN, Footer};
use super::index::TableIndex;
use super::properties::TableProperties;
use super::stored_block::{read_block, read_block_into};
use super::table_builder::{FILTER_NAME, PROPERTIES_NAME};
use super::table_iterator::TableIterator;

/// What a point lookup found: the entry's kind, sequence and value.
pub type Found = (ValueKind, SequenceNumber, Vec<u8>);

thread_local! {
    /// The buffer a point lookup reads an uncached block into, reused by
    /// every lookup of the thread.
    static LOOKUP_BLOCK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A lookup buffer grown past this (a table with huge blocks) is released
/// after use rather than kept by the thread.
const MAX_KEPT_LOOKUP_BLOCK: usize = 256 << 10;

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
    /// [`key::make_lookup_key`]) if its user key is `user_key`, with a copy
    /// of its value. The bloom filter is checked before any data block is
    /// read.
    pub fn get(&self, user_key: &[u8], lookup_key: &[u8]) -> Result<Option<Found>> {
        self.get_hashed(user_key, lookup_key, bloom_hash(user_key))
    }

    /// [`Table::get`] with the key's [`bloom_hash`] computed by the caller,
    /// once for every table a lookup probes.
    ///
    /// A block found in the cache is searched there. A block read from the
    /// file is searched in a per-thread buffer reused across lookups, and
    /// copied into the cache only if the cache admits it: with data much
    /// larger than the cache most reads are one-offs, and this way they cost
    /// no allocation.
    pub fn get_hashed(
        &self,
        user_key: &[u8],
        lookup_key: &[u8],
        hash: u64,
    ) -> Result<Option<Found>> {
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
        for i in self.index.finish_seek(&seek, lookup_key)..self.index.len() {
            let handle = self.index.handle(i);
            let cached = self
                .cache
                .as_ref()
                .and_then(|c| c.get(self.cache_id, handle.offset));
            let decided = match cached {
                Some(bytes) => self.search_block(bytes, handle, user_key, lookup_key)?,
                None => LOOKUP_BLOCK.with_borrow_mut(|buf| {
                    let decided = self.read_and_search(buf, handle, user_key, lookup_key);
                    if buf.capacity() > MAX_KEPT_LOOKUP_BLOCK {
                        *buf = Vec::new();
                    }
                    decided
                })?,
            };
            if let Some(answer) = decided {
                return Ok(answer);
            }
            // The separator may sort after the block's last key: the entry,
            // if any, starts the next block.
        }
        Ok(None)
    }

    /// Read the block at `handle` into `buf`, offer it to the cache and
    /// search it ([`Table::search_block`]).
    fn read_and_search(
        &self,
        buf: &mut Vec<u8>,
        handle: BlockHandle,
        user_key: &[u8],
        lookup_key: &[u8],
    ) -> Result<Option<Option<Found>>> {
        let contents = read_block_into(
            self.file.as_ref(),
            handle,
            self.block_area_end,
            &self.location,
            buf,
        )?;
        match &self.cache {
            Some(cache) if cache.admit(self.cache_id, handle.offset) => {
                let bytes = Bytes::copy_from_slice(&contents);
                let decided = self.search_block(bytes.clone(), handle, user_key, lookup_key);
                if decided.is_ok() {
                    cache.insert(self.cache_id, handle.offset, bytes);
                }
                decided
            }
            _ => self.search_block(contents, handle, user_key, lookup_key),
        }
    }

    /// Search one data block for the lookup: `Some(answer)` when the block
    /// decides it, `None` when every entry sorts before `lookup_key` (the
    /// next block may hold it).
    fn search_block<D: AsRef<[u8]> + Send>(
        &self,
        data: D,
        handle: BlockHandle,
        user_key: &[u8],
        lookup_key: &[u8],
    ) -> Result<Option<Option<Found>>> {
        let block = Block::new(data, &self.location, handle.offset)?;
        let mut it = block.into_iter(self.location.clone(), handle.offset);
        it.seek(lookup_key)?;
        if !it.valid() {
            return Ok(None);
        }
        let parsed = key::parse_internal_key(it.key()).map_err(|e| {
            Error::corruption(
                &*self.location,
                handle.offset,
                format!("bad internal key in data block: {e}"),
            )
        })?;
        if parsed.user_key != user_key {
            return Ok(Some(None));
        }
        Ok(Some(Some((
            parsed.kind,
            parsed.sequence,
            it.value().to_vec(),
        ))))
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

    /// The data block at `handle`, from the cache when present; offered to
    /// the cache after a read when `fill_cache` (its admission policy
    /// decides).
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
        if fill_cache
            && let Some(cache) = &self.cache
            && cache.admit(self.cache_id, handle.offset)
        {
            cache.insert(self.cache_id, handle.offset, block.data().clone());
        }
        Ok(block)
    }
}
