//! Garbage collection of installed range tombstones.
//!
//! An installed tombstone `t` of shard `s` can only hide entries older than
//! itself. Entries of `s` newer than the memtable `t` was flushed from are
//! newer than `t` (a shard's memtables hold ascending sequence ranges and
//! flush in order), so once no SST of the version that overlaps
//! `[t.start, t.end)` holds an entry older than `t` — none has
//! `smallest_seq < t.seq` — `t` hides nothing anyone can read and may go.
//! Compactions make that happen: they drop the entries a tombstone visible
//! to every reader covers, and cut their outputs at such a tombstone's
//! bounds so that no output spans its range
//! (`crate::job::CompactionJob::range_tombstones`).

use crate::key::SequenceNumber;
use crate::range_del::RangeTombstone;

use super::Version;

impl Version {
    /// `(shard, seq)` of every installed range tombstone that no SST of
    /// this version can hold an entry for, to be dropped by the edit that
    /// installs this version.
    pub fn obsolete_range_tombstones(&self) -> Vec<(u32, SequenceNumber)> {
        self.range_tombstones
            .iter()
            .filter(|(_, t)| !self.may_hold_entries_below(t))
            .map(|(shard, t)| (*shard, t.seq))
            .collect()
    }

    /// True when some file overlapping `t`'s range holds an entry older
    /// than `t` (as far as its metadata tells).
    fn may_hold_entries_below(&self, t: &RangeTombstone) -> bool {
        let (start, end) = (t.start.as_slice(), t.end.as_slice());
        self.levels.iter().enumerate().any(|(level, files)| {
            if level == 0 {
                return files.iter().any(|f| {
                    f.smallest_user_key() < end
                        && f.largest_user_key() >= start
                        && f.smallest_seq < t.seq
                });
            }
            // Deeper levels are sorted and disjoint: only the run of files
            // from the first one ending at or after `start` can overlap.
            let from = files.partition_point(|f| f.largest_user_key() < start);
            files[from..]
                .iter()
                .take_while(|f| f.smallest_user_key() < end)
                .any(|f| f.smallest_seq < t.seq)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::key::{ValueKind, make_internal_key};
    use crate::range_del::{RangeTombstoneSet, tombstone};
    use crate::version::FileMeta;

    fn file(number: u64, lo: &str, hi: &str, seqs: (u64, u64)) -> Arc<FileMeta> {
        Arc::new(FileMeta {
            number,
            size: 100,
            smallest: make_internal_key(lo.as_bytes(), seqs.1, ValueKind::Value),
            largest: make_internal_key(hi.as_bytes(), seqs.0, ValueKind::Value),
            smallest_seq: seqs.0,
            largest_seq: seqs.1,
            entries: 2,
            tombstones: 0,
            shard: 0,
            created_ms: 0,
        })
    }

    fn t(start: &str, end: &str, seq: u64) -> (u32, RangeTombstone) {
        (0, tombstone(start, end, seq))
    }

    fn version(levels: Vec<Vec<Arc<FileMeta>>>, tombs: Vec<(u32, RangeTombstone)>) -> Version {
        Version {
            range_tombstone_set: Arc::new(RangeTombstoneSet::new(tombs.iter().map(|(_, t)| t))),
            range_tombstones: Arc::new(tombs),
            levels,
        }
    }

    #[test]
    fn a_tombstone_goes_once_no_overlapping_file_is_older() {
        let tombs = vec![
            t("a", "b", 5),
            t("c", "f", 50),
            t("m", "p", 51),
            t("x", "z", 52),
        ];
        let levels = vec![
            // L0: newer than every tombstone.
            vec![file(1, "a", "z", (60, 70))],
            // L1: "d..e" is older than the tombstone over "c..f"; "f..l"
            // and "p..w" only touch tombstone ends (exclusive).
            vec![
                file(2, "d", "e", (10, 20)),
                file(3, "f", "l", (10, 20)),
                file(4, "p", "w", (10, 20)),
            ],
            // L2: spans the tombstone over "x..z" with old data.
            vec![file(5, "w", "zz", (1, 2))],
        ];
        let v = version(levels.clone(), tombs.clone());
        assert_eq!(v.obsolete_range_tombstones(), [(0, 5), (0, 51)]);

        // An old L0 file over everything keeps every tombstone newer than it.
        let mut old_l0 = levels;
        old_l0[0].push(file(6, "a", "z", (3, 4)));
        let v = version(old_l0, tombs);
        assert_eq!(v.obsolete_range_tombstones(), []);
    }
}
