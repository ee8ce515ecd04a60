//! Table properties: counts, key and sequence ranges, sizes and creation
//! time, stored as a name → value block (`docs/sst_format.md`,
//! "Properties block") so that later versions can add names.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::coding::{get_varint64, put_varint64};
use crate::error::{Error, Result};
use crate::iterator::InternalIterator;
use crate::key::parse_internal_key;
use crate::options::Compression;

use super::block::Block;
use super::block_builder::BlockBuilder;

/// What a table holds, readable without scanning it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableProperties {
    /// Size of the whole file (not stored in the block: it is the file's length).
    pub file_size: u64,
    /// Entries, values and tombstones.
    pub entries: u64,
    pub tombstones: u64,
    /// Smallest and largest internal keys (empty when there are no entries).
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub smallest_seq: u64,
    pub largest_seq: u64,
    /// Sums of internal key and value lengths as added.
    pub raw_key_bytes: u64,
    pub raw_value_bytes: u64,
    /// On-disk bytes of the data blocks, the index block and the filter
    /// block, trailers included.
    pub data_bytes: u64,
    pub index_bytes: u64,
    pub filter_bytes: u64,
    pub data_blocks: u64,
    /// Zero bytes between data blocks that keep blocks inside pages
    /// ([`crate::options::TableOptions::page_aligned_blocks`]). Optional
    /// in the block (absent = 0), so tables written before it was added
    /// still open.
    pub padding_bytes: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The compression the writer was asked to use, with its level (zstd's
    /// level is an optional property: absent, the default level).
    pub compression: Compression,
}

const COMPRESSION: &[u8] = b"o3.compression";
const COMPRESSION_LEVEL: &[u8] = b"o3.compression_level";
const CREATED_MS: &[u8] = b"o3.created_ms";
const DATA_BLOCKS: &[u8] = b"o3.data_blocks";
const DATA_BYTES: &[u8] = b"o3.data_bytes";
const ENTRIES: &[u8] = b"o3.entries";
const FILTER_BYTES: &[u8] = b"o3.filter_bytes";
const INDEX_BYTES: &[u8] = b"o3.index_bytes";
const LARGEST: &[u8] = b"o3.largest";
const LARGEST_SEQ: &[u8] = b"o3.largest_seq";
const PADDING_BYTES: &[u8] = b"o3.padding_bytes";
const RAW_KEY_BYTES: &[u8] = b"o3.raw_key_bytes";
const RAW_VALUE_BYTES: &[u8] = b"o3.raw_value_bytes";
const SMALLEST: &[u8] = b"o3.smallest";
const SMALLEST_SEQ: &[u8] = b"o3.smallest_seq";
const TOMBSTONES: &[u8] = b"o3.tombstones";
/// Every name a version-1 properties block must hold, in bytewise order.
const REQUIRED: [&[u8]; 14] = [
    COMPRESSION,
    CREATED_MS,
    DATA_BLOCKS,
    DATA_BYTES,
    ENTRIES,
    FILTER_BYTES,
    INDEX_BYTES,
    LARGEST,
    LARGEST_SEQ,
    RAW_KEY_BYTES,
    RAW_VALUE_BYTES,
    SMALLEST,
    SMALLEST_SEQ,
    TOMBSTONES,
];

impl TableProperties {
    /// The numeric properties by name, in bytewise name order together with
    /// the byte-valued ones (see [`TableProperties::encode_block`]).
    fn numbers(&self) -> [(&'static [u8], u64); 12] {
        [
            (CREATED_MS, self.created_ms),
            (DATA_BLOCKS, self.data_blocks),
            (DATA_BYTES, self.data_bytes),
            (ENTRIES, self.entries),
            (FILTER_BYTES, self.filter_bytes),
            (INDEX_BYTES, self.index_bytes),
            (LARGEST_SEQ, self.largest_seq),
            (PADDING_BYTES, self.padding_bytes),
            (RAW_KEY_BYTES, self.raw_key_bytes),
            (RAW_VALUE_BYTES, self.raw_value_bytes),
            (SMALLEST_SEQ, self.smallest_seq),
            (TOMBSTONES, self.tombstones),
        ]
    }

    /// Encode as a properties block (names in bytewise order).
    pub(crate) fn encode_block(&self, out: &mut BlockBuilder) {
        let mut entries: Vec<(&[u8], Vec<u8>)> = self
            .numbers()
            .iter()
            .map(|&(name, v)| {
                let mut b = Vec::with_capacity(10);
                put_varint64(&mut b, v);
                (name, b)
            })
            .collect();
        entries.push((COMPRESSION, vec![self.compression.as_byte()]));
        if let Compression::Zstd { level } = self.compression {
            entries.push((COMPRESSION_LEVEL, level.to_le_bytes().to_vec()));
        }
        entries.push((SMALLEST, self.smallest.clone()));
        entries.push((LARGEST, self.largest.clone()));
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (name, value) in &entries {
            out.add(name, value);
        }
    }

    /// Decode a properties block read from file offset `offset`; `file_size`
    /// fills [`TableProperties::file_size`].
    pub(crate) fn decode_block(
        block: &Block,
        file_size: u64,
        location: &Arc<str>,
        offset: u64,
    ) -> Result<TableProperties> {
        let corrupt = |reason: String| Error::corruption(&**location, offset, reason);
        let mut p = TableProperties {
            file_size,
            ..TableProperties::default()
        };
        // Bit i set: REQUIRED[i] was present.
        let mut seen = 0u32;
        let mut level = None;
        let mut it = block.iter(location.clone(), offset);
        it.seek_to_first()?;
        while it.valid() {
            let (name, value) = (it.key(), it.value());
            if let Some(i) = REQUIRED.iter().position(|n| *n == name) {
                seen |= 1 << i;
            }
            let number = || -> Result<u64> {
                match get_varint64(value) {
                    Some((v, n)) if n == value.len() => Ok(v),
                    _ => Err(corrupt(format!(
                        "property {} is not a varint",
                        String::from_utf8_lossy(name)
                    ))),
                }
            };
            let known = match name {
                CREATED_MS => Some(&mut p.created_ms),
                DATA_BLOCKS => Some(&mut p.data_blocks),
                DATA_BYTES => Some(&mut p.data_bytes),
                ENTRIES => Some(&mut p.entries),
                FILTER_BYTES => Some(&mut p.filter_bytes),
                INDEX_BYTES => Some(&mut p.index_bytes),
                LARGEST_SEQ => Some(&mut p.largest_seq),
                PADDING_BYTES => Some(&mut p.padding_bytes),
                RAW_KEY_BYTES => Some(&mut p.raw_key_bytes),
                RAW_VALUE_BYTES => Some(&mut p.raw_value_bytes),
                SMALLEST_SEQ => Some(&mut p.smallest_seq),
                TOMBSTONES => Some(&mut p.tombstones),
                _ => None,
            };
            if let Some(field) = known {
                *field = number()?;
            } else if name == COMPRESSION {
                p.compression = match value {
                    [b] => Compression::from_byte(*b),
                    _ => None,
                }
                .ok_or_else(|| corrupt("unknown compression property".to_string()))?;
            } else if name == COMPRESSION_LEVEL {
                let bytes = <[u8; 4]>::try_from(value).map_err(|_| {
                    corrupt("compression level property is not 4 bytes".to_string())
                })?;
                level = Some(i32::from_le_bytes(bytes));
            } else if name == SMALLEST {
                p.smallest = value.to_vec();
            } else if name == LARGEST {
                p.largest = value.to_vec();
            }
            it.next()?;
        }
        if let Some(missing) = (0..REQUIRED.len()).find(|i| seen & (1 << i) == 0) {
            return Err(corrupt(format!(
                "properties block lacks {}",
                String::from_utf8_lossy(REQUIRED[missing])
            )));
        }
        if let Some(level) = level {
            p.compression = p.compression.with_level(level);
        }
        if p.entries > 0 {
            for key in [&p.smallest, &p.largest] {
                parse_internal_key(key).map_err(|_| {
                    corrupt("smallest or largest property is not an internal key".to_string())
                })?;
            }
        }
        Ok(p)
    }
}
