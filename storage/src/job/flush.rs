//! Flush jobs: turn sealed memtable images of one shard into L0 SSTs.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::compaction::CompactionStream;
use crate::env::Storage;
use crate::error::{Error, Result};
use crate::iter::MergingIterator;
use crate::iterator::InternalIterator;
use crate::key::SequenceNumber;
use crate::memtable::{Memtable, MemtableImage};
use crate::options::TableOptions;

use super::output::{OutputFiles, write_outputs};
use super::{JobResult, JobToken};

/// Flush the images of one shard into level-0 tables in `dir`.
///
/// The job does not carry the image bytes: whoever executes it supplies them
/// (a local buffer, a memory node's region), in the order of `images`; each is
/// validated (header and checksum) before it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushJob {
    pub token: JobToken,
    /// Database directory the outputs are written to.
    pub dir: PathBuf,
    pub shard: u32,
    /// `(entries, largest sequence of the entries)` of each image, checked
    /// against its header. An image may hold no entries (a memtable that
    /// only received range deletions, which are installed beside the
    /// outputs, not written into them).
    pub images: Vec<(u64, SequenceNumber)>,
    pub table_options: TableOptions,
    pub target_file_size: u64,
    /// Versions shadowed below this sequence may be dropped.
    pub smallest_snapshot: SequenceNumber,
    /// File numbers reserved for the outputs.
    pub file_numbers: Range<u64>,
}

impl FlushJob {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        super::encode(self)
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<FlushJob> {
        super::decode(bytes, "flush job")
    }

    /// Run the flush over `images` (one byte slice per entry of `self.images`).
    pub fn execute(&self, storage: &dyn Storage, images: &[&[u8]]) -> Result<JobResult> {
        let start = Instant::now();
        self.check_supplied(images.len(), "images")?;
        let mut children: Vec<Box<dyn InternalIterator + '_>> = Vec::with_capacity(images.len());
        let mut bytes_read = 0;
        for (i, (bytes, &(entries, largest_seq))) in images.iter().zip(&self.images).enumerate() {
            let location = format!(
                "memtable image {i} of flush job {} (shard {})",
                self.token.job_id, self.shard
            );
            let image = MemtableImage::open(bytes, &location)?;
            let h = image.header();
            if h.entries != entries || h.largest_seq != largest_seq || h.shard != self.shard {
                return Err(Error::corruption(
                    &location,
                    0,
                    format!(
                        "image holds shard {} with {} entries up to sequence {}, job expects shard {} with {entries} up to {largest_seq}",
                        h.shard, h.entries, h.largest_seq, self.shard
                    ),
                ));
            }
            bytes_read += bytes.len() as u64;
            children.push(Box::new(image.iter()));
        }
        self.write(storage, children, bytes_read, start)
    }

    /// Run the flush over sealed memtables of this process, in the order of
    /// `self.images`. They are read through their own skiplists: an image
    /// this process sealed needs no checksum or structure check (the
    /// validation pass alone walks every node in key order, about a third
    /// of a 64 MiB flush). Their shard, entry count and largest sequence are
    /// still checked against the job.
    pub fn execute_local(
        &self,
        storage: &dyn Storage,
        memtables: &[Arc<Memtable>],
    ) -> Result<JobResult> {
        let start = Instant::now();
        self.check_supplied(memtables.len(), "memtables")?;
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::with_capacity(memtables.len());
        let mut bytes_read = 0;
        for (i, (m, &(entries, largest_seq))) in memtables.iter().zip(&self.images).enumerate() {
            if !m.is_sealed()
                || m.entries() != entries
                || m.entries_largest_seq() != largest_seq
                || m.shard() != self.shard
            {
                return Err(Error::InvalidArgument(format!(
                    "memtable {i} of flush job {} (sealed: {}, shard {}, {} entries up to sequence {}) does not match the job (shard {}, {entries} entries up to {largest_seq})",
                    self.token.job_id,
                    m.is_sealed(),
                    m.shard(),
                    m.entries(),
                    m.entries_largest_seq(),
                    self.shard
                )));
            }
            bytes_read += m.used_bytes() as u64;
            children.push(Box::new(m.iter()));
        }
        self.write(storage, children, bytes_read, start)
    }

    /// The executor must supply one image per entry of `self.images`.
    fn check_supplied(&self, supplied: usize, what: &str) -> Result<()> {
        if supplied == self.images.len() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "flush job {} names {} images, {supplied} {what} supplied",
            self.token.job_id,
            self.images.len()
        )))
    }

    /// Merge `children` (the images' iterators) into level-0 tables.
    fn write<'a>(
        &self,
        storage: &dyn Storage,
        children: Vec<Box<dyn InternalIterator + 'a>>,
        bytes_read: u64,
        start: Instant,
    ) -> Result<JobResult> {
        let merged = MergingIterator::new(children);
        let stream = CompactionStream::new(Box::new(merged), self.smallest_snapshot, false);
        let out = OutputFiles::new(
            storage,
            &self.dir,
            &self.table_options,
            self.target_file_size,
            self.file_numbers.clone(),
            &[],
            Some(self.shard),
        );
        write_outputs(self.token, stream, out, bytes_read, start)
    }
}
