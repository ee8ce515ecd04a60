//! Watching the database's file tree from outside the engine: the study
//! reads the live manifest (read-only; the engine keeps writing it) every
//! few milliseconds and keeps a snapshot of the tree's files each time it
//! changed. Two measures come from these snapshots:
//!
//! - *sorted runs* (L0 files plus non-empty deeper levels): the files a
//!   point lookup may probe, the study's read amplification, because the
//!   engine does not count SSTs probed per lookup;
//! - *delete persistence*: a delete of key `k` at sequence `s` has persisted
//!   once its shard is flushed past `s` and no SST with tombstones could
//!   hold it (a file whose key range covers `k`, whose sequence range covers
//!   `s` and which has tombstones). This can only overstate the true time,
//!   never understate it: when no file could hold the tombstone, it is gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use o3_storage::filename::{FileKind, current_path, manifest_path, parse_file_name};
use o3_storage::version::{FileMeta, VersionEdit};
use o3_storage::wal::LogReader;

/// The tree's files at one moment.
#[derive(Debug, Clone, Default)]
pub struct TreeSnapshot {
    /// Files per physical level; levels below L0 sorted by smallest key.
    pub levels: Vec<Vec<Arc<FileMeta>>>,
    /// Per shard: every write with a sequence at or below this is in an SST.
    pub flushed: Vec<u64>,
}

impl TreeSnapshot {
    /// L0 files plus non-empty levels below L0.
    pub fn sorted_runs(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
            + self.levels.iter().skip(1).filter(|l| !l.is_empty()).count()
    }

    /// Tombstones in all SSTs.
    pub fn tombstones(&self) -> u64 {
        self.levels.iter().flatten().map(|f| f.tombstones).sum()
    }

    /// True when a tombstone of `key` written at `seq` may still be in the
    /// tree (or not yet flushed). Shards are not told apart: the least
    /// flushed shard decides, which again can only overstate.
    pub fn may_hold_tombstone(&self, key: &[u8], seq: u64) -> bool {
        if self.flushed.iter().copied().min().unwrap_or(0) < seq {
            return true;
        }
        let holds = |f: &FileMeta| {
            f.tombstones > 0
                && f.smallest_seq <= seq
                && seq <= f.largest_seq
                && f.overlaps(Some(key), Some(key))
        };
        for (level, files) in self.levels.iter().enumerate() {
            if level == 0 {
                if files.iter().any(|f| holds(f)) {
                    return true;
                }
                continue;
            }
            let i = files.partition_point(|f| f.largest_user_key() < key);
            if files.get(i).is_some_and(|f| holds(f)) {
                return true;
            }
        }
        false
    }
}

/// Incremental reader of a database directory's manifest.
#[derive(Debug)]
pub struct ManifestWatcher {
    dir: PathBuf,
    manifest: Option<u64>,
    records_applied: usize,
    files: HashMap<u64, (usize, Arc<FileMeta>)>,
    flushed: Vec<u64>,
}

impl ManifestWatcher {
    pub fn new(dir: &Path) -> ManifestWatcher {
        ManifestWatcher {
            dir: dir.to_path_buf(),
            manifest: None,
            records_applied: 0,
            files: HashMap::new(),
            flushed: Vec::new(),
        }
    }

    /// Read what was appended since the last call; `Some` snapshot when the
    /// tree changed. A record caught mid-write ends the read quietly; it is
    /// read on the next call.
    pub fn poll(&mut self) -> Option<TreeSnapshot> {
        let current = std::fs::read_to_string(current_path(&self.dir)).ok()?;
        let Some(FileKind::Manifest(number)) = parse_file_name(current.trim_end()) else {
            return None;
        };
        if self.manifest != Some(number) {
            self.manifest = Some(number);
            self.records_applied = 0;
            self.files.clear();
            self.flushed.clear();
        }
        let path = manifest_path(&self.dir, number);
        let bytes = std::fs::read(&path).ok()?;
        let location = path.display().to_string();
        let mut reader = LogReader::from_bytes(bytes, number, location.clone());
        let mut index = 0;
        let mut changed = false;
        while let Ok(Some((record, offset))) = reader.read_record() {
            index += 1;
            if index <= self.records_applied {
                continue;
            }
            let Ok(edit) = VersionEdit::decode(&record, &location, offset) else {
                break;
            };
            self.apply(edit);
            self.records_applied = index;
            changed = true;
        }
        changed.then(|| self.snapshot())
    }

    fn apply(&mut self, edit: VersionEdit) {
        for (_, number) in &edit.deleted_files {
            self.files.remove(number);
        }
        for (level, meta) in edit.new_files {
            self.files
                .insert(meta.number, (level as usize, Arc::new(meta)));
        }
        for (shard, seq) in edit.shard_flushed {
            let shard = shard as usize;
            if self.flushed.len() <= shard {
                self.flushed.resize(shard + 1, 0);
            }
            self.flushed[shard] = self.flushed[shard].max(seq);
        }
    }

    fn snapshot(&self) -> TreeSnapshot {
        let depth = self.files.values().map(|(l, _)| l + 1).max().unwrap_or(1);
        let mut levels: Vec<Vec<Arc<FileMeta>>> = vec![Vec::new(); depth];
        for (level, meta) in self.files.values() {
            levels[*level].push(meta.clone());
        }
        for files in levels.iter_mut().skip(1) {
            files.sort_by(|a, b| a.smallest_user_key().cmp(b.smallest_user_key()));
        }
        TreeSnapshot {
            levels,
            flushed: if self.flushed.is_empty() {
                vec![0]
            } else {
                self.flushed.clone()
            },
        }
    }
}

/// A delete the workload issued: the key, its sequence and when.
#[derive(Debug, Clone)]
pub struct IssuedDelete {
    pub key: Vec<u8>,
    pub seq: u64,
    pub at: Duration,
}

/// Delete persistence over a run: latencies in seconds, a delete still in
/// the tree at the end counting as the time until the end (censored).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeletePersistence {
    pub deletes: u64,
    /// Deletes whose tombstone was gone by the end of the run.
    pub persisted: u64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
    pub mean_seconds: f64,
}

/// For each delete, the first snapshot taken after it in which no file could
/// hold its tombstone. `snapshots` are in time order; `end` is the time of
/// the last observation.
pub fn delete_persistence(
    deletes: &[IssuedDelete],
    snapshots: &[(Duration, TreeSnapshot)],
    end: Duration,
) -> DeletePersistence {
    if deletes.is_empty() {
        return DeletePersistence::default();
    }
    let mut latencies = Vec::with_capacity(deletes.len());
    let mut persisted = 0;
    for d in deletes {
        let first = snapshots.partition_point(|(t, _)| *t < d.at);
        let gone = snapshots[first..]
            .iter()
            .find(|(_, s)| !s.may_hold_tombstone(&d.key, d.seq));
        let until = match gone {
            Some((t, _)) => {
                persisted += 1;
                *t
            }
            None => end.max(d.at),
        };
        latencies.push((until - d.at).as_secs_f64());
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    DeletePersistence {
        deletes: deletes.len() as u64,
        persisted,
        p50_seconds: at(0.5),
        p99_seconds: at(0.99),
        mean_seconds: latencies.iter().sum::<f64>() / latencies.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o3_storage::key::{ValueKind, make_internal_key};

    fn file(number: u64, lo: &[u8], hi: &[u8], seqs: (u64, u64), tombstones: u64) -> FileMeta {
        FileMeta {
            number,
            size: 100,
            smallest: make_internal_key(lo, seqs.1, ValueKind::Value),
            largest: make_internal_key(hi, seqs.0, ValueKind::Value),
            smallest_seq: seqs.0,
            largest_seq: seqs.1,
            entries: 10,
            tombstones,
            shard: 0,
            created_ms: 0,
        }
    }

    #[test]
    fn tombstone_is_held_only_by_a_covering_file_with_tombstones() {
        let snap = TreeSnapshot {
            levels: vec![
                vec![Arc::new(file(1, b"a", b"z", (50, 60), 1))],
                vec![
                    Arc::new(file(2, b"a", b"f", (1, 40), 3)),
                    Arc::new(file(3, b"g", b"m", (1, 40), 0)),
                ],
            ],
            flushed: vec![60],
        };
        assert_eq!(snap.sorted_runs(), 2);
        assert!(snap.may_hold_tombstone(b"c", 10));
        assert!(
            !snap.may_hold_tombstone(b"h", 10),
            "file 3 has no tombstones"
        );
        assert!(snap.may_hold_tombstone(b"h", 55), "L0 file covers it");
        assert!(snap.may_hold_tombstone(b"c", 61), "not flushed yet");
        assert!(!snap.may_hold_tombstone(b"x", 45));

        let deletes = vec![
            IssuedDelete {
                key: b"c".to_vec(),
                seq: 10,
                at: Duration::from_secs(1),
            },
            IssuedDelete {
                key: b"h".to_vec(),
                seq: 20,
                at: Duration::from_secs(1),
            },
        ];
        let later = TreeSnapshot {
            levels: vec![Vec::new(), vec![Arc::new(file(4, b"a", b"m", (1, 60), 0))]],
            flushed: vec![60],
        };
        let snaps = vec![
            (Duration::from_secs(2), snap),
            (Duration::from_secs(5), later),
        ];
        let p = delete_persistence(&deletes, &snaps, Duration::from_secs(9));
        assert_eq!(p.persisted, 2);
        assert!((p.mean_seconds - 2.5).abs() < 1e-9, "{p:?}");
        let p = delete_persistence(&deletes, &snaps[..1], Duration::from_secs(9));
        assert_eq!(p.persisted, 1);
        assert!(
            (p.p99_seconds - 8.0).abs() < 1e-9,
            "censored at the end: {p:?}"
        );
    }

    #[test]
    fn watcher_reads_a_live_database_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let db = o3_compute::Db::open(dir.path(), o3_compute::DbOptions::default()).unwrap();
        db.put(b"k1", b"v").unwrap();
        db.delete(b"k2").unwrap();
        db.flush().unwrap();
        let mut w = ManifestWatcher::new(dir.path());
        let snap = w.poll().unwrap();
        assert_eq!(snap.sorted_runs(), 1);
        assert_eq!(snap.tombstones(), 1);
        assert!(snap.may_hold_tombstone(b"k2", 2));
        assert!(w.poll().is_none(), "nothing changed");
        db.close().unwrap();
    }
}
