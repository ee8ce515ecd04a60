//! Helpers shared by the SST integration tests: tables built and read
//! entirely in memory, and a sorted model of their contents.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::sync::Arc;

use o3_storage::Result;
use o3_storage::env::{RandomAccessFile, WritableFile};
use o3_storage::error::Error;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{self, ValueKind, compare_internal};
use o3_storage::options::TableOptions;
use o3_storage::sst::{
    Block, BlockCache, BlockHandle, FOOTER_LEN, Footer, Table, TableBuilder, TableProperties,
    read_block,
};
use parking_lot::Mutex;

/// A writable file whose bytes stay readable through a shared handle.
pub struct MemWritable(pub Arc<Mutex<Vec<u8>>>);

impl WritableFile for MemWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.0.lock().extend_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.0.lock().len() as u64
    }
}

/// A read-only file over bytes in memory.
pub struct MemFile(pub Vec<u8>);

impl RandomAccessFile for MemFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::io(
                "memory file",
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past end"),
            )),
        }
    }
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

/// One table entry: internal key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Build a table from `entries` (already in internal-key order).
pub fn build_table(entries: &[Entry], options: &TableOptions) -> (Vec<u8>, TableProperties) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut b = TableBuilder::new(
        Box::new(MemWritable(buf.clone())),
        options,
        "test.sst".to_string(),
    );
    for (k, v) in entries {
        b.add(k, v).unwrap();
    }
    let props = b.finish(1_700_000_000_000).unwrap();
    let bytes = buf.lock().clone();
    (bytes, props)
}

/// Open a table over `bytes` named `location`.
pub fn open_table(
    bytes: Vec<u8>,
    location: &str,
    cache: Option<Arc<BlockCache>>,
) -> Result<Arc<Table>> {
    Table::open(Arc::new(MemFile(bytes)), location.to_string(), cache).map(Arc::new)
}

/// Sort entries by internal key and keep one entry per (user key, sequence),
/// as a database never reuses a sequence number for one key.
pub fn sort_entries(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
    entries.dedup_by(|a, b| {
        key::user_key(&a.0) == key::user_key(&b.0) && key::sequence(&a.0) == key::sequence(&b.0)
    });
    entries
}

/// Index of the first model entry `>= target`.
pub fn lower_bound(model: &[Entry], target: &[u8]) -> usize {
    model.partition_point(|(k, _)| compare_internal(k, target) == Ordering::Less)
}

/// What `Table::get(user_key, lookup_key)` must return according to the model.
pub fn expected_get(
    model: &[Entry],
    user_key: &[u8],
    lookup_key: &[u8],
) -> Option<(ValueKind, u64, Vec<u8>)> {
    let (k, v) = model.get(lower_bound(model, lookup_key))?;
    let p = key::parse_internal_key(k).unwrap();
    (p.user_key == user_key).then(|| (p.kind, p.sequence, v.clone()))
}

/// Deterministic small entries spread over several data blocks.
pub fn sample_entries(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let kind = if i % 7 == 3 {
                ValueKind::Tombstone
            } else {
                ValueKind::Value
            };
            let k = key::make_internal_key(
                format!("user{:04}", i / 2).as_bytes(),
                100_000 - i as u64,
                kind,
            );
            let v = if kind == ValueKind::Value {
                format!("value-{i}-{}", "x".repeat(i % 13)).into_bytes()
            } else {
                Vec::new()
            };
            (k, v)
        })
        .collect()
}

/// The data block handles of a table, read from its index block through
/// the public format types.
pub fn data_block_handles(bytes: &[u8]) -> Vec<BlockHandle> {
    let footer =
        Footer::decode(&bytes[bytes.len() - FOOTER_LEN..], bytes.len() as u64, "t").unwrap();
    let index = read_block(
        &MemFile(bytes.to_vec()),
        footer.index,
        bytes.len() as u64,
        "t",
    )
    .unwrap();
    let mut it = Block::new(index, "t", footer.index.offset)
        .unwrap()
        .into_iter(Arc::from("t"), footer.index.offset);
    let mut handles = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        handles.push(BlockHandle::decode(it.value()).unwrap());
        it.next().unwrap();
    }
    handles
}
