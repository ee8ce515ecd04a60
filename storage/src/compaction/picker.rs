//! File picking: the order in which a leveled level offers its files to a
//! partial compaction.

use std::sync::Arc;

use crate::version::FileMeta;

use super::plan::BusyFiles;
use super::primitives::FilePicker;

/// Which files may move, and in which order.
#[derive(Debug, Clone, Copy)]
pub(super) enum FileChoice {
    /// Every file, ordered by the configured picker.
    Configured(FilePicker),
    /// Files created at or before this time (ms), oldest first.
    OlderThan(u64),
    /// Files with tombstones created at or before this time, oldest first.
    TombstonesOlderThan(u64),
}

/// The non-busy files of a level that `choice` allows, best first; ties keep
/// key order. `overlap` gives a file's overlapping bytes in the next level
/// and two levels down, or `None` when the file cannot move (a file it would
/// merge with is busy). `cursor` is the round-robin position: the largest
/// user key moved last time.
pub(super) fn rank_files(
    files: &[Arc<FileMeta>],
    choice: FileChoice,
    cursor: &[u8],
    busy: &BusyFiles,
    overlap: impl Fn(&FileMeta) -> Option<(u64, u64)>,
) -> Vec<Arc<FileMeta>> {
    let mut ranked: Vec<(f64, Arc<FileMeta>)> = files
        .iter()
        .filter(|f| !busy.contains(&f.number))
        .filter(|f| match choice {
            FileChoice::Configured(_) => true,
            FileChoice::OlderThan(t) => f.created_ms <= t,
            FileChoice::TombstonesOlderThan(t) => f.tombstones > 0 && f.created_ms <= t,
        })
        .filter_map(|f| {
            let (parent, grandparent) = overlap(f)?;
            let size = f.size.max(1) as f64;
            let key = match choice {
                FileChoice::OlderThan(_) | FileChoice::TombstonesOlderThan(_) => {
                    f.created_ms as f64
                }
                FileChoice::Configured(picker) => match picker {
                    FilePicker::RoundRobin => {
                        if cursor.is_empty() || f.smallest_user_key() > cursor {
                            0.0
                        } else {
                            1.0
                        }
                    }
                    FilePicker::LeastOverlapParent => parent as f64 / size,
                    FilePicker::LeastOverlapGrandparent => grandparent as f64 / size,
                    FilePicker::Coldest => f.largest_seq as f64,
                    FilePicker::Oldest => f.smallest_seq as f64,
                    FilePicker::TombstoneDensity => {
                        -(f.tombstones as f64 / f.entries.max(1) as f64)
                    }
                    FilePicker::ExpiredTombstoneTtl if f.tombstones > 0 => f.created_ms as f64,
                    FilePicker::ExpiredTombstoneTtl => f64::INFINITY,
                },
            };
            Some((key, f.clone()))
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    ranked.into_iter().map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key};

    fn file(number: u64, key: &str, seq: u64, tombstones: u64, created_ms: u64) -> Arc<FileMeta> {
        Arc::new(FileMeta {
            number,
            size: 100,
            smallest: make_internal_key(key.as_bytes(), seq, ValueKind::Value),
            largest: make_internal_key(key.as_bytes(), seq, ValueKind::Value),
            smallest_seq: seq,
            largest_seq: seq + 10,
            entries: 10,
            tombstones,
            shard: 0,
            created_ms,
        })
    }

    fn order(choice: FileChoice, cursor: &[u8]) -> Vec<u64> {
        let files = [
            file(1, "a", 50, 0, 10),
            file(2, "b", 20, 5, 30),
            file(3, "c", 30, 2, 20),
        ];
        let overlap = |f: &FileMeta| Some((f.number * 10, 100 - f.number * 10));
        rank_files(&files, choice, cursor, &BusyFiles::from([4]), overlap)
            .iter()
            .map(|f| f.number)
            .collect()
    }

    #[test]
    fn each_picker_orders_by_its_criterion() {
        use FileChoice::Configured as C;
        assert_eq!(order(C(FilePicker::LeastOverlapParent), b""), [1, 2, 3]);
        assert_eq!(
            order(C(FilePicker::LeastOverlapGrandparent), b""),
            [3, 2, 1]
        );
        assert_eq!(order(C(FilePicker::Coldest), b""), [2, 3, 1]);
        assert_eq!(order(C(FilePicker::Oldest), b""), [2, 3, 1]);
        assert_eq!(order(C(FilePicker::TombstoneDensity), b""), [2, 3, 1]);
        assert_eq!(order(C(FilePicker::ExpiredTombstoneTtl), b""), [3, 2, 1]);
        assert_eq!(order(C(FilePicker::RoundRobin), b""), [1, 2, 3]);
        assert_eq!(order(C(FilePicker::RoundRobin), b"a"), [2, 3, 1]);
        assert_eq!(order(C(FilePicker::RoundRobin), b"c"), [1, 2, 3]);
        assert_eq!(order(FileChoice::OlderThan(20), b""), [1, 3]);
        assert_eq!(order(FileChoice::TombstonesOlderThan(30), b""), [3, 2]);
    }
}
