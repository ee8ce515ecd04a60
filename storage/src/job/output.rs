//! Writing a job's sorted output stream into SSTs: a new file starts when the
//! current one reaches the target size, the stream crosses a shard boundary
//! or one of the job's cut keys (the bounds of the range tombstones it
//! applies), and only between two different user keys (so files of a level
//! never share a user key).

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::env::Storage;
use crate::error::{Error, Result};
use crate::filename::table_path;
use crate::key::user_key;
use crate::options::TableOptions;
use crate::sst::{TableBuilder, TableProperties};
use crate::version::FileMeta;

/// Index of the shard whose range holds `ukey`, given sorted split keys
/// (shard `i` covers `[splits[i-1], splits[i])`).
pub fn shard_of(splits: &[Vec<u8>], ukey: &[u8]) -> u32 {
    splits.partition_point(|s| s.as_slice() <= ukey) as u32
}

struct OpenOutput {
    builder: TableBuilder,
    number: u64,
    shard: u32,
}

pub(crate) struct OutputFiles<'a> {
    storage: &'a dyn Storage,
    dir: PathBuf,
    options: &'a TableOptions,
    target_file_size: u64,
    numbers: Range<u64>,
    splits: &'a [Vec<u8>],
    /// Shard forced for every output (flushes), or `None` to derive it.
    fixed_shard: Option<u32>,
    current: Option<OpenOutput>,
    /// Sorted user keys at which a new file starts (when the current one is
    /// not empty); `next_cut` indexes the first one above the last key added.
    cuts: Vec<Vec<u8>>,
    next_cut: usize,
    last_user_key: Vec<u8>,
    outputs: Vec<FileMeta>,
    created: Vec<PathBuf>,
}

impl<'a> OutputFiles<'a> {
    pub(crate) fn new(
        storage: &'a dyn Storage,
        dir: &Path,
        options: &'a TableOptions,
        target_file_size: u64,
        numbers: Range<u64>,
        splits: &'a [Vec<u8>],
        fixed_shard: Option<u32>,
    ) -> Self {
        OutputFiles {
            storage,
            dir: dir.to_path_buf(),
            options,
            target_file_size: target_file_size.max(1),
            numbers,
            splits,
            fixed_shard,
            current: None,
            cuts: Vec::new(),
            next_cut: 0,
            last_user_key: Vec::new(),
            outputs: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Also start a new file at each of `cuts` (user keys, any order): the
    /// first key at or after a cut never shares a file with the key before it.
    pub(crate) fn with_cuts(mut self, mut cuts: Vec<Vec<u8>>) -> Self {
        cuts.sort_unstable();
        cuts.dedup();
        self.cuts = cuts;
        self
    }

    pub(crate) fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        let ukey = user_key(ikey);
        let shard = self
            .fixed_shard
            .unwrap_or_else(|| shard_of(self.splits, ukey));
        let mut crossed_cut = false;
        while self
            .cuts
            .get(self.next_cut)
            .is_some_and(|c| c.as_slice() <= ukey)
        {
            crossed_cut = true;
            self.next_cut += 1;
        }
        if let Some(cur) = &self.current {
            let new_user_key = self.last_user_key.as_slice() != ukey;
            if new_user_key
                && (cur.builder.estimated_size() >= self.target_file_size
                    || cur.shard != shard
                    || crossed_cut)
            {
                self.finish_current()?;
            }
        }
        if self.current.is_none() {
            let number = self.numbers.next().ok_or_else(|| {
                Error::InvalidArgument("job ran out of reserved output file numbers".to_string())
            })?;
            let path = table_path(&self.dir, number);
            let file = self.storage.create(&path)?;
            self.created.push(path.clone());
            self.current = Some(OpenOutput {
                builder: TableBuilder::new(file, self.options, path.display().to_string()),
                number,
                shard,
            });
        }
        if let Some(cur) = &mut self.current {
            cur.builder.add(ikey, value)?;
        }
        if self.last_user_key.as_slice() != ukey {
            self.last_user_key.clear();
            self.last_user_key.extend_from_slice(ukey);
        }
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some(cur) = self.current.take() {
            let props = cur.builder.finish(super::now_ms())?;
            self.outputs.push(file_meta(cur.number, cur.shard, &props));
        }
        Ok(())
    }

    /// Finish the last file and make every output's directory entry durable.
    pub(crate) fn finish(mut self) -> Result<Vec<FileMeta>> {
        let r = self.finish_current().and_then(|_| {
            if self.outputs.is_empty() {
                Ok(())
            } else {
                self.storage.sync_dir(&self.dir)
            }
        });
        match r {
            Ok(()) => {
                self.created.clear();
                Ok(std::mem::take(&mut self.outputs))
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for OutputFiles<'_> {
    /// On failure nothing this job created may linger: remove partial outputs
    /// (best effort; leftovers are orphans the database removes on open).
    fn drop(&mut self) {
        for path in self.created.drain(..) {
            if let Err(e) = self.storage.delete(&path) {
                tracing::debug!("could not remove partial output {}: {e}", path.display());
            }
        }
    }
}

/// Drain `stream` into `out` and assemble the job's result: the common tail
/// of flush and compaction execution.
pub(crate) fn write_outputs(
    token: super::JobToken,
    mut stream: crate::compaction::CompactionStream<'_>,
    mut out: OutputFiles<'_>,
    bytes_read: u64,
    start: std::time::Instant,
) -> Result<super::JobResult> {
    stream.seek_to_first()?;
    while let Some((k, v)) = stream.next_entry()? {
        out.add(k, v)?;
    }
    let outputs = out.finish()?;
    let counts = stream.counters();
    Ok(super::JobResult {
        token,
        stats: super::JobStats {
            bytes_read,
            bytes_written: outputs.iter().map(|f| f.size).sum(),
            entries_in: counts.entries_in,
            entries_out: outputs.iter().map(|f| f.entries).sum(),
            entries_dropped: counts.entries_dropped,
            tombstones_dropped: counts.tombstones_dropped,
            entries_range_deleted: counts.range_deleted,
            micros: start.elapsed().as_micros() as u64,
        },
        outputs,
    })
}

fn file_meta(number: u64, shard: u32, p: &TableProperties) -> FileMeta {
    FileMeta {
        number,
        size: p.file_size,
        smallest: p.smallest.clone(),
        largest: p.largest.clone(),
        smallest_seq: p.smallest_seq,
        largest_seq: p.largest_seq,
        entries: p.entries,
        tombstones: p.tombstones,
        shard,
        created_ms: p.created_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn shard_of_uses_half_open_ranges() {
        let splits = vec![b"g".to_vec(), b"p".to_vec()];
        assert_eq!(shard_of(&splits, b"a"), 0);
        assert_eq!(shard_of(&splits, b"g"), 1);
        assert_eq!(shard_of(&splits, b"ozz"), 1);
        assert_eq!(shard_of(&splits, b"p"), 2);
        assert_eq!(shard_of(&[], b"x"), 0);
    }
}
