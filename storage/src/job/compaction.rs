//! Compaction jobs: merge input SSTs into new SSTs at the output level.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::compaction::CompactionStream;
use crate::env::Storage;
use crate::error::{Error, Result};
use crate::filename::table_path;
use crate::iter::MergingIterator;
use crate::iterator::InternalIterator;
use crate::key::SequenceNumber;
use crate::options::TableOptions;
use crate::range_del::{RangeTombstone, RangeTombstoneSet};
use crate::sst::{Table, TableIndex};
use crate::version::FileMeta;

use super::output::{OutputFiles, write_outputs};
use super::{JobResult, JobToken};

/// Merge `inputs` into `output_level`. Everything the executor needs is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionJob {
    pub token: JobToken,
    /// Directory holding the inputs and receiving the outputs.
    pub dir: PathBuf,
    /// `(level, files)` in level order.
    pub inputs: Vec<(u32, Vec<FileMeta>)>,
    pub output_level: u32,
    pub target_file_size: u64,
    pub table_options: TableOptions,
    pub smallest_snapshot: SequenceNumber,
    /// True when no data older than the inputs can exist for their key range
    /// (nothing below the output level overlaps), so tombstones may go.
    pub drop_tombstones: bool,
    /// Shard split keys: outputs never span two shards.
    pub shard_splits: Vec<Vec<u8>>,
    pub file_numbers: Range<u64>,
    /// Installed range tombstones that overlap the inputs' key range and
    /// that every reader sees (`seq <= smallest_snapshot`). The merge drops
    /// the entries they cover, and outputs are cut at their bounds so that
    /// no output spans one of them: once every file over a tombstone's
    /// range is newer than it, the tombstone is garbage
    /// (`Version::obsolete_range_tombstones`).
    pub range_tombstones: Vec<RangeTombstone>,
}

impl CompactionJob {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        super::encode(self)
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<CompactionJob> {
        super::decode(bytes, "compaction job")
    }

    /// Bytes of all input files.
    pub fn input_bytes(&self) -> u64 {
        self.inputs
            .iter()
            .flat_map(|(_, f)| f)
            .map(|f| f.size)
            .sum()
    }

    /// Run the compaction with nothing but `storage`.
    pub fn execute(&self, storage: &dyn Storage) -> Result<JobResult> {
        self.execute_with_indexes(storage, &|_| None)
    }

    /// [`CompactionJob::execute`] where `index_of(file number)` may supply
    /// the decoded index of an input that the caller already holds open
    /// (the compute node's table cache), so the job does not keep a second
    /// copy of it for the whole merge.
    pub fn execute_with_indexes(
        &self,
        storage: &dyn Storage,
        index_of: &dyn Fn(u64) -> Option<Arc<TableIndex>>,
    ) -> Result<JobResult> {
        let start = Instant::now();
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        for (_, files) in &self.inputs {
            for f in files {
                let path = table_path(&self.dir, f.number);
                let file = storage.open(&path)?;
                if file.size() != f.size {
                    return Err(Error::corruption(
                        path.display(),
                        0,
                        format!("input has {} bytes, job recorded {}", file.size(), f.size),
                    ));
                }
                let table = Arc::new(Table::open_for_scan(
                    file,
                    path.display().to_string(),
                    index_of(f.number),
                )?);
                children.push(Box::new(table.iter(false)));
            }
        }
        let merged = MergingIterator::new(children);
        // Only tombstones every reader sees drop anything (and only those
        // can become garbage through this job).
        let applied: Vec<&RangeTombstone> = self
            .range_tombstones
            .iter()
            .filter(|t| t.seq <= self.smallest_snapshot)
            .collect();
        let stream = CompactionStream::new(
            Box::new(merged),
            self.smallest_snapshot,
            self.drop_tombstones,
        )
        .with_range_tombstones(Arc::new(RangeTombstoneSet::new(applied.iter().copied())));
        let out = OutputFiles::new(
            storage,
            &self.dir,
            &self.table_options,
            self.target_file_size,
            self.file_numbers.clone(),
            &self.shard_splits,
            None,
        )
        .with_cuts(
            applied
                .iter()
                .flat_map(|t| [t.start.clone(), t.end.clone()])
                .collect(),
        );
        write_outputs(self.token, stream, out, self.input_bytes(), start)
    }
}
