//! Writes a table in the layout of `docs/sst_format.md`: data blocks as keys
//! arrive, then the filter, index, properties and meta-index blocks and the
//! footer.

use std::cmp::Ordering;

use crate::env::WritableFile;
use crate::error::{Error, Result};
use crate::key::{self, KIND_FOR_SEEK, MAX_SEQUENCE, ValueKind, compare_internal};
use crate::options::{Compression, TableOptions};

use super::block_builder::BlockBuilder;
use super::bloom::BloomBuilder;
use super::footer::{BLOCK_TRAILER_LEN, BlockHandle, Footer};
use super::properties::TableProperties;
use super::stored_block::append_block;

/// Meta-index name of the bloom filter block.
pub(crate) const FILTER_NAME: &[u8] = b"o3.filter.bloom";
/// Meta-index name of the properties block.
pub(crate) const PROPERTIES_NAME: &[u8] = b"o3.properties";
/// The page size data blocks are kept within
/// ([`TableOptions::page_aligned_blocks`]).
const PAGE: u64 = 4096;
static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

/// Bytes from `offset` to the next page boundary (`PAGE` on a boundary).
fn room_in_page(offset: u64) -> u64 {
    PAGE - offset % PAGE
}

/// Largest key or value a table accepts, so that block offsets fit in `u32`.
pub const MAX_ENTRY_PART: usize = 1 << 30;

/// Builds one SST from internal keys added in strictly increasing order.
pub struct TableBuilder {
    file: Box<dyn WritableFile>,
    location: String,
    options: TableOptions,
    /// Why the builder cannot continue (invalid options, or an earlier
    /// write failed and left a block half-written); reported by `add` and
    /// `finish`.
    unusable: Option<String>,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    bloom: Option<BloomBuilder>,
    /// The last key added (empty before the first).
    last_key: Vec<u8>,
    /// A data block was written and its index entry waits for the next key,
    /// so that the separator can be shortened against it.
    pending_handle: Option<BlockHandle>,
    /// Bytes written to the file so far.
    offset: u64,
    props: TableProperties,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("location", &self.location)
            .field("entries", &self.props.entries)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl TableBuilder {
    /// A builder writing to `file` (expected empty); `location` names the
    /// file in errors. Invalid `options` are reported by the first `add` or
    /// `finish`.
    pub fn new(
        file: Box<dyn WritableFile>,
        options: &TableOptions,
        location: String,
    ) -> TableBuilder {
        let unusable = options.validate().err().map(|e| e.to_string());
        TableBuilder {
            file,
            location,
            data_block: BlockBuilder::new(options.restart_interval),
            index_block: BlockBuilder::new(1),
            bloom: (options.bloom_bits_per_key > 0)
                .then(|| BloomBuilder::new(options.bloom_bits_per_key)),
            last_key: Vec::new(),
            pending_handle: None,
            offset: 0,
            props: TableProperties {
                compression: options.compression,
                ..TableProperties::default()
            },
            options: options.clone(),
            unusable,
            scratch: Vec::new(),
        }
    }

    /// Add an entry. Keys must be valid internal keys, strictly increasing
    /// in [`compare_internal`] order; else [`Error::InvalidArgument`].
    pub fn add(&mut self, internal_key: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        let parsed = key::parse_internal_key(internal_key).map_err(|e| {
            Error::InvalidArgument(format!("{}: bad internal key: {e}", self.location))
        })?;
        if internal_key.len() > MAX_ENTRY_PART || value.len() > MAX_ENTRY_PART {
            return Err(Error::InvalidArgument(format!(
                "{}: key of {} or value of {} bytes exceeds {MAX_ENTRY_PART}",
                self.location,
                internal_key.len(),
                value.len()
            )));
        }
        let first = self.props.entries == 0;
        if !first && compare_internal(&self.last_key, internal_key) != Ordering::Less {
            return Err(Error::InvalidArgument(format!(
                "{}: keys out of order: {:?} after {:?}",
                self.location, internal_key, self.last_key
            )));
        }
        if self.aligns_blocks() {
            self.keep_block_in_page(internal_key.len() + value.len())?;
        }
        if let Some(handle) = self.pending_handle.take() {
            let separator = shortest_separator(&self.last_key, internal_key);
            let separator = separator.as_deref().unwrap_or(&self.last_key);
            add_handle_entry(&mut self.index_block, separator, handle);
        }
        if let Some(bloom) = &mut self.bloom
            && (first || key::user_key(&self.last_key) != parsed.user_key)
        {
            bloom.add_key(parsed.user_key);
        }
        let p = &mut self.props;
        if first {
            p.smallest = internal_key.to_vec();
            p.smallest_seq = parsed.sequence;
            p.largest_seq = parsed.sequence;
        }
        p.entries += 1;
        p.tombstones += u64::from(parsed.kind == ValueKind::Tombstone);
        p.smallest_seq = p.smallest_seq.min(parsed.sequence);
        p.largest_seq = p.largest_seq.max(parsed.sequence);
        p.raw_key_bytes += internal_key.len() as u64;
        p.raw_value_bytes += value.len() as u64;
        self.data_block.add(internal_key, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(internal_key);
        if self.data_block.size_estimate() >= self.options.block_size {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.props.entries
    }

    /// Bytes written so far plus the pending data block (uncompressed).
    pub fn estimated_size(&self) -> u64 {
        self.offset + self.data_block.size_estimate() as u64
    }

    /// Write the remaining blocks and the footer, sync the file and return
    /// the table's properties.
    pub fn finish(mut self, created_ms: u64) -> Result<TableProperties> {
        self.check_usable()?;
        self.flush_data_block()?;
        if let Some(handle) = self.pending_handle.take() {
            add_handle_entry(&mut self.index_block, &self.last_key, handle);
        }
        let mut meta_index = BlockBuilder::new(1);
        if let Some(bloom) = self.bloom.take() {
            let mut filter = Vec::new();
            bloom.finish_into(&mut filter);
            let handle = self.write_raw(&filter, Compression::None)?;
            self.props.filter_bytes = handle.size + BLOCK_TRAILER_LEN;
            add_handle_entry(&mut meta_index, FILTER_NAME, handle);
        }
        let index = std::mem::replace(&mut self.index_block, BlockBuilder::new(1));
        let index_handle = self.write_block(index)?;
        self.props.index_bytes = index_handle.size + BLOCK_TRAILER_LEN;
        self.props.largest = self.last_key.clone();
        self.props.created_ms = created_ms;
        let mut props_block = BlockBuilder::new(1);
        self.props.encode_block(&mut props_block);
        let props_handle = self.write_block(props_block)?;
        add_handle_entry(&mut meta_index, PROPERTIES_NAME, props_handle);
        let meta_index_handle = self.write_block(meta_index)?;
        let footer = Footer {
            meta_index: meta_index_handle,
            index: index_handle,
        };
        self.file.append(&footer.encode())?;
        self.offset += footer.encode().len() as u64;
        self.file.sync()?;
        self.props.file_size = self.offset;
        Ok(self.props)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.unusable {
            Some(reason) => Err(Error::InvalidArgument(format!(
                "{}: {reason}",
                self.location
            ))),
            None => Ok(()),
        }
    }

    /// Whether data blocks are kept inside pages
    /// ([`TableOptions::page_aligned_blocks`]): only uncompressed blocks
    /// have a stored size known while they are built, and blocks larger
    /// than a page cannot fit one.
    fn aligns_blocks(&self) -> bool {
        self.options.page_aligned_blocks
            && self.options.compression == Compression::None
            && self.options.block_size <= PAGE as usize
    }

    /// Before an entry of `entry_bytes` (key + value) is added: close the
    /// current data block if the entry would carry it across a page
    /// boundary, and before a new block, pad the file to the boundary when
    /// less than a quarter of a block fits before it.
    fn keep_block_in_page(&mut self, entry_bytes: usize) -> Result<()> {
        if !self.data_block.is_empty() {
            let page_end = self.offset + room_in_page(self.offset);
            let trailer = BLOCK_TRAILER_LEN;
            let now = self.offset + self.data_block.size_estimate() as u64 + trailer;
            // Three length varints and a restart slot, at most.
            let with_entry = now + entry_bytes as u64 + 3 * 5 + 4;
            // A block that already crosses (its first entry did not fit)
            // is left to close at its normal size.
            if now <= page_end && with_entry > page_end {
                self.flush_data_block()?;
            }
        }
        if self.data_block.is_empty() {
            let room = room_in_page(self.offset);
            if room < PAGE && room < (self.options.block_size / 4) as u64 {
                let written = self.file.append(&ZERO_PAGE[..room as usize]);
                self.note_failure(written)?;
                self.offset += room;
                self.props.padding_bytes += room;
            }
        }
        Ok(())
    }

    fn flush_data_block(&mut self) -> Result<()> {
        if self.data_block.is_empty() {
            return Ok(());
        }
        let compression = self.options.compression;
        let written = append_block(
            self.file.as_mut(),
            self.offset,
            self.data_block.finish(),
            compression,
            &mut self.scratch,
        );
        let handle = self.note_failure(written)?;
        self.data_block.reset();
        self.offset += handle.size + BLOCK_TRAILER_LEN;
        self.props.data_blocks += 1;
        self.props.data_bytes += handle.size + BLOCK_TRAILER_LEN;
        self.pending_handle = Some(handle);
        Ok(())
    }

    /// Remember a failed write: the file now ends in a partial block.
    fn note_failure<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.unusable = Some(format!("an earlier write failed ({e})"));
        }
        r
    }

    fn write_block(&mut self, mut block: BlockBuilder) -> Result<BlockHandle> {
        let compression = self.options.compression;
        self.write_raw(block.finish(), compression)
    }

    fn write_raw(&mut self, raw: &[u8], compression: Compression) -> Result<BlockHandle> {
        let written = append_block(
            self.file.as_mut(),
            self.offset,
            raw,
            compression,
            &mut self.scratch,
        );
        let handle = self.note_failure(written)?;
        self.offset += handle.size + BLOCK_TRAILER_LEN;
        Ok(handle)
    }
}

/// Add `key → handle` to an index or meta-index block.
fn add_handle_entry(block: &mut BlockBuilder, key: &[u8], handle: BlockHandle) {
    let mut v = Vec::with_capacity(20);
    handle.encode_to(&mut v);
    block.add(key, &v);
}

/// A key `s` with `last <= s < next` shorter than `last`, when one exists:
/// the shortest user key strictly between the two user keys, with the
/// trailer that sorts first for that user key.
fn shortest_separator(last: &[u8], next: &[u8]) -> Option<Vec<u8>> {
    let (a, b) = (key::user_key(last), key::user_key(next));
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let byte = *a.get(common)?;
    if byte == 0xff || common + 1 + key::TRAILER_LEN >= last.len() {
        return None;
    }
    let mut s = Vec::with_capacity(common + 1 + key::TRAILER_LEN);
    s.extend_from_slice(&a[..common]);
    s.push(byte + 1);
    // Strictly below the next user key, so a lookup of that key never lands
    // in this block.
    if s.as_slice() >= b {
        return None;
    }
    key::append_internal_key(&mut s, &[], MAX_SEQUENCE, KIND_FOR_SEEK);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::make_internal_key;

    #[test]
    fn separator_lies_between_and_is_shorter() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"abcdefgh", b"abzz"),
            (b"apple-pie", b"banana"),
            (b"abc", b"abd"),
            (b"ab\xff\xff", b"ac"),
            (b"abc", b"abcd"),
        ];
        for (a, b) in cases {
            let last = make_internal_key(a, 5, ValueKind::Value);
            let next = make_internal_key(b, 9, ValueKind::Value);
            if let Some(s) = shortest_separator(&last, &next) {
                assert!(s.len() < last.len());
                assert_ne!(compare_internal(&last, &s), Ordering::Greater);
                assert_eq!(compare_internal(&s, &next), Ordering::Less);
            }
        }
        let s = shortest_separator(
            &make_internal_key(b"apple-pie", 1, ValueKind::Value),
            &make_internal_key(b"banana", 1, ValueKind::Value),
        );
        assert_eq!(key::user_key(&s.unwrap()), b"b");
    }
}
