//! The version set: the current [`Version`] plus the counters the manifest
//! persists, and the protocol that keeps the manifest and `CURRENT` consistent
//! (`docs/manifest_format.md`).
//!
//! Invariants:
//! - an edit is applied in memory only after it is durable in the manifest
//!   (appended and synced); a failed append or sync leaves the in-memory state
//!   unchanged and the error must poison the database (the manifest's tail is
//!   then unknown);
//! - `CURRENT` is only ever replaced by write-temp → fsync → rename → fsync
//!   directory, and names a manifest whose snapshot record is already durable;
//! - an old manifest is deleted only after `CURRENT` no longer names it;
//! - every file number a job reservation handed out is below the
//!   next-file-number the manifest records (the durable mark), so no later
//!   reservation, in this or any later incarnation, repeats it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::env::{Storage, write_file_atomically};
use crate::error::{Error, Result};
use crate::filename::{current_path, manifest_path, table_path};
use crate::key::{SequenceNumber, compare_internal};
use crate::range_del::{RangeTombstone, RangeTombstoneSet};
use crate::wal::{LogReader, LogWriter};

use super::{DbId, FileMeta, Version, VersionEdit};

/// A manifest larger than this is replaced by a fresh snapshot on the next edit.
const MANIFEST_ROLL_BYTES: u64 = 64 << 20;

/// How far past a reservation's end the durable file-number mark is raised
/// when the reservation passes it: the next reservations up to that point
/// need no manifest write. A flush reserves one number and a compaction a few
/// dozen, so one synced record covers hundreds of jobs; a crash forfeits at
/// most this many numbers.
const FILE_NUMBER_HEADROOM: u64 = 4096;

/// The persistent state of a database's file set.
pub struct VersionSet {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    current: Arc<Version>,
    next_file_number: u64,
    last_sequence: SequenceNumber,
    log_number: u64,
    shard_splits: Vec<Vec<u8>>,
    shard_flushed: Vec<SequenceNumber>,
    manifest: LogWriter,
    manifest_number: u64,
    /// The next-file-number the manifest records: every number handed out by
    /// [`VersionSet::reserve_file_numbers`] is below it.
    file_number_limit: u64,
    db_id: DbId,
    /// Bumped (durably) by every recovery; creation is incarnation 1.
    incarnation: u64,
    /// The WAL segment and length synced at the last clean close (see
    /// [`VersionEdit::closed_wal`]).
    closed_wal: Option<(u64, u64)>,
}

impl std::fmt::Debug for VersionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionSet")
            .field("dir", &self.dir)
            .field("db_id", &self.db_id)
            .field("incarnation", &self.incarnation)
            .field("manifest_number", &self.manifest_number)
            .field("next_file_number", &self.next_file_number)
            .field("file_number_limit", &self.file_number_limit)
            .field("last_sequence", &self.last_sequence)
            .field("log_number", &self.log_number)
            .finish()
    }
}

/// What recovery found in the manifest, for the caller to report.
#[derive(Debug, Clone)]
pub struct RecoveredState {
    /// The manifest that was read.
    pub manifest_number: u64,
    /// Where the manifest ended in a torn tail, if it did.
    pub torn_tail: Option<(u64, String)>,
}

impl VersionSet {
    /// Create the state of a brand-new database in `dir` (which must exist),
    /// with a fresh [`DbId`], at incarnation 1.
    pub fn create(
        storage: Arc<dyn Storage>,
        dir: &Path,
        num_levels: usize,
        shard_splits: Vec<Vec<u8>>,
    ) -> Result<VersionSet> {
        validate_splits(&shard_splits)?;
        let shards = shard_splits.len() + 1;
        let manifest_number = 1;
        let manifest = Self::start_manifest(storage.as_ref(), dir, manifest_number)?;
        let mut vs = VersionSet {
            storage,
            dir: dir.to_path_buf(),
            current: Arc::new(Version::new(num_levels)),
            next_file_number: 2,
            last_sequence: 0,
            log_number: 0,
            shard_splits,
            shard_flushed: vec![0; shards],
            manifest,
            manifest_number,
            file_number_limit: 2,
            db_id: DbId::random(),
            incarnation: 1,
            closed_wal: None,
        };
        vs.write_snapshot_and_switch()?;
        Ok(vs)
    }

    /// Read `CURRENT` and the manifest it names, verify that every referenced
    /// file exists with its recorded size, then start a fresh manifest holding
    /// one snapshot record and point `CURRENT` at it.
    ///
    /// The new incarnation is the recorded one plus 1, durable (in the
    /// snapshot record) before this returns; a manifest written before
    /// database ids existed gets a fresh id at incarnation 1. File numbers
    /// continue from the recorded mark, past every number reserved before.
    pub fn recover(
        storage: Arc<dyn Storage>,
        dir: &Path,
        num_levels: usize,
    ) -> Result<(VersionSet, RecoveredState)> {
        let cur = current_path(dir);
        let content = storage.read_all(&cur)?;
        let name = std::str::from_utf8(&content)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| {
                Error::corruption(cur.display(), 0, "CURRENT does not hold a manifest name")
            })?;
        let manifest_number = match crate::filename::parse_file_name(name) {
            Some(crate::filename::FileKind::Manifest(n)) => n,
            _ => {
                return Err(Error::corruption(
                    cur.display(),
                    0,
                    format!("CURRENT names '{name}', not a manifest"),
                ));
            }
        };
        let mpath = manifest_path(dir, manifest_number);
        let location = mpath.display().to_string();
        let file = storage.open(&mpath)?;
        let mut reader = LogReader::new(file, manifest_number, location.clone());
        reader.set_strict_tail(true);
        let mut builder = VersionBuilder::new(num_levels);
        let mut state = ReplayState::default();
        while let Some((record, offset)) = reader.read_record()? {
            let edit = VersionEdit::decode(&record, &location, offset)?;
            if let Some(id) = edit.db_id {
                if state.db_id.is_some() {
                    return Err(Error::corruption(
                        &location,
                        offset,
                        "second database id record",
                    ));
                }
                state.db_id = Some(id);
            }
            state.apply_counters(&edit);
            builder.apply(&edit, &location, offset)?;
        }
        let splits = state.shard_splits.clone().ok_or_else(|| {
            Error::corruption(&location, 0, "manifest has no shard layout record")
        })?;
        let next_file_number = state.next_file_number.ok_or_else(|| {
            Error::corruption(&location, 0, "manifest has no next-file-number record")
        })?;
        let (db_id, incarnation) = match (state.db_id, state.incarnation) {
            (Some(id), Some(recorded)) => {
                let next = recorded.checked_add(1).ok_or_else(|| {
                    Error::corruption(&location, 0, format!("incarnation {recorded} overflows"))
                })?;
                (id, next)
            }
            (None, None) => {
                let id = DbId::random();
                tracing::info!(
                    "manifest {location} predates database ids: database gets id {id}, incarnation 1"
                );
                (id, 1)
            }
            (Some(_), None) => {
                return Err(Error::corruption(
                    &location,
                    0,
                    "manifest has a database id but no incarnation record",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::corruption(
                    &location,
                    0,
                    "manifest has an incarnation but no database id record",
                ));
            }
        };
        let version = builder.build(&location)?;
        for level in &version.levels {
            for f in level {
                let path = table_path(dir, f.number);
                let size = storage.file_size(&path).map_err(|_| {
                    Error::corruption(
                        &location,
                        0,
                        format!("manifest references missing file {}", path.display()),
                    )
                })?;
                if size != f.size {
                    return Err(Error::corruption(
                        &location,
                        0,
                        format!(
                            "file {} has {size} bytes, manifest recorded {}",
                            path.display(),
                            f.size
                        ),
                    ));
                }
                if f.number >= next_file_number {
                    return Err(Error::corruption(
                        &location,
                        0,
                        format!(
                            "file number {} is not below next file number {next_file_number}",
                            f.number
                        ),
                    ));
                }
            }
        }
        let shards = splits.len() + 1;
        let mut shard_flushed = vec![0; shards];
        for (shard, seq) in state.shard_flushed {
            let slot = shard_flushed.get_mut(shard as usize).ok_or_else(|| {
                Error::corruption(
                    &location,
                    0,
                    format!("flushed sequence for shard {shard} of {shards}"),
                )
            })?;
            *slot = (*slot).max(seq);
        }
        let torn_tail = reader.torn_tail();
        let new_manifest = next_file_number;
        let manifest = Self::start_manifest(storage.as_ref(), dir, new_manifest)?;
        let mut vs = VersionSet {
            storage,
            dir: dir.to_path_buf(),
            current: Arc::new(version),
            next_file_number: next_file_number + 1,
            last_sequence: state.last_sequence.unwrap_or(0),
            log_number: state.log_number.unwrap_or(0),
            shard_splits: splits,
            shard_flushed,
            manifest,
            manifest_number: new_manifest,
            // What the manifest records; the snapshot raises it.
            file_number_limit: next_file_number,
            db_id,
            incarnation,
            closed_wal: state.closed_wal,
        };
        vs.write_snapshot_and_switch()?;
        let old = manifest_path(dir, manifest_number);
        // The old manifest is garbage once CURRENT durably names the new one.
        if let Err(e) = vs.storage.delete(&old) {
            tracing::warn!("could not delete old manifest {}: {e}", old.display());
        }
        Ok((
            vs,
            RecoveredState {
                manifest_number,
                torn_tail,
            },
        ))
    }

    fn start_manifest(storage: &dyn Storage, dir: &Path, number: u64) -> Result<LogWriter> {
        let f = storage.create(&manifest_path(dir, number))?;
        Ok(LogWriter::new(f, number))
    }

    /// An edit that recreates the whole current state, identity included
    /// (the first record of every manifest).
    pub fn snapshot_edit(&self) -> VersionEdit {
        let mut e = VersionEdit {
            db_id: Some(self.db_id),
            incarnation: Some(self.incarnation),
            shard_splits: Some(self.shard_splits.clone()),
            log_number: Some(self.log_number),
            next_file_number: Some(self.next_file_number.max(self.file_number_limit)),
            last_sequence: Some(self.last_sequence),
            shard_flushed: self
                .shard_flushed
                .iter()
                .enumerate()
                .map(|(s, &q)| (s as u32, q))
                .collect(),
            closed_wal: self.closed_wal(),
            ..VersionEdit::default()
        };
        for (level, files) in self.current.levels.iter().enumerate() {
            for f in files {
                e.new_files.push((level as u32, FileMeta::clone(f)));
            }
        }
        e.new_range_tombstones = self.current.range_tombstones().to_vec();
        e
    }

    /// The snapshot edit for a checkpoint's manifest. A checkpoint is a new
    /// database: it gets a fresh id and starts at incarnation 1 (its first
    /// open makes it 2, as for a created database), so no job token of this
    /// database is valid there. Everything else — files, counters, the
    /// file-number mark — is this database's.
    pub fn checkpoint_edit(&self) -> VersionEdit {
        VersionEdit {
            db_id: Some(DbId::random()),
            incarnation: Some(1),
            ..self.snapshot_edit()
        }
    }

    /// Write the snapshot record to the (new, empty) manifest, make it and its
    /// directory entry durable, then switch `CURRENT` to it.
    fn write_snapshot_and_switch(&mut self) -> Result<()> {
        let snap = self.snapshot_edit();
        self.manifest.add_record(&snap.encode())?;
        self.manifest.sync()?;
        self.storage.sync_dir(&self.dir)?;
        let name = format!("MANIFEST-{:06}\n", self.manifest_number);
        write_file_atomically(
            self.storage.as_ref(),
            &current_path(&self.dir),
            name.as_bytes(),
        )?;
        if let Some(mark) = snap.next_file_number {
            self.file_number_limit = self.file_number_limit.max(mark);
        }
        Ok(())
    }

    /// The version `edit` would produce, without logging or installing it
    /// (for decisions that go into the same edit, such as which range
    /// tombstones it drops).
    pub fn preview(&self, edit: &VersionEdit) -> Result<Version> {
        let location = manifest_path(&self.dir, self.manifest_number)
            .display()
            .to_string();
        let mut builder = VersionBuilder::from_version(&self.current);
        builder.apply(edit, &location, self.manifest.len())?;
        builder.build(&location)
    }

    /// Add to `edit` the drops of the range tombstones that the version it
    /// produces makes obsolete ([`Version::obsolete_range_tombstones`]); a
    /// tombstone the edit itself installs is taken out of it instead. Costs
    /// nothing while there are no range tombstones.
    pub fn drop_obsolete_range_tombstones(&self, edit: &mut VersionEdit) -> Result<()> {
        if self.current.range_tombstones().is_empty() && edit.new_range_tombstones.is_empty() {
            return Ok(());
        }
        for (shard, seq) in self.preview(edit)?.obsolete_range_tombstones() {
            let installed_now = edit
                .new_range_tombstones
                .iter()
                .position(|(s, t)| *s == shard && t.seq == seq);
            match installed_now {
                Some(i) => {
                    edit.new_range_tombstones.swap_remove(i);
                }
                None => edit.deleted_range_tombstones.push((shard, seq)),
            }
        }
        Ok(())
    }

    /// Make `edit` durable in the manifest, then install the resulting version.
    /// The edit gets the current counters (next file number, last sequence).
    pub fn log_and_apply(&mut self, mut edit: VersionEdit) -> Result<Arc<Version>> {
        let location = manifest_path(&self.dir, self.manifest_number)
            .display()
            .to_string();
        if let Some(splits) = &edit.resplit {
            validate_splits(splits)?;
        }
        let mut builder = VersionBuilder::from_version(&self.current);
        builder.apply(&edit, &location, self.manifest.len())?;
        let version = builder.build(&location)?;
        edit.last_sequence = Some(self.last_sequence.max(edit.last_sequence.unwrap_or(0)));
        self.append_durably(&mut edit)?;
        // Durable: now apply in memory.
        let mut probe = ReplayState::default();
        probe.apply_counters(&edit);
        if let Some(l) = probe.log_number {
            self.log_number = self.log_number.max(l);
        }
        if let Some(s) = probe.last_sequence {
            self.last_sequence = self.last_sequence.max(s);
        }
        if let Some(splits) = edit.resplit.take() {
            // A re-split: the old layout's flushed sequences mean nothing
            // for the new shards (the edit carries theirs).
            self.shard_flushed = vec![0; splits.len() + 1];
            self.shard_splits = splits;
        }
        for (shard, seq) in probe.shard_flushed {
            if let Some(slot) = self.shard_flushed.get_mut(shard as usize) {
                *slot = (*slot).max(seq);
            }
        }
        if probe.closed_wal.is_some() {
            self.closed_wal = probe.closed_wal;
        }
        self.current = Arc::new(version);
        Ok(self.current.clone())
    }

    /// Append `edit` to the manifest (rolling it first if it is large) and
    /// sync it. The edit records the file-number mark: the larger of the
    /// current mark, the next file number and what the edit asks for — never
    /// less, so no edit lowers the mark. On success the mark is durable.
    fn append_durably(&mut self, edit: &mut VersionEdit) -> Result<()> {
        if self.manifest.len() > MANIFEST_ROLL_BYTES {
            self.roll_manifest()?;
        }
        let mark = self
            .next_file_number
            .max(self.file_number_limit)
            .max(edit.next_file_number.unwrap_or(0));
        edit.next_file_number = Some(mark);
        self.manifest.add_record(&edit.encode())?;
        self.manifest.sync()?;
        self.file_number_limit = mark;
        Ok(())
    }

    fn roll_manifest(&mut self) -> Result<()> {
        let old = self.manifest_number;
        let number = self.new_file_number();
        self.manifest = Self::start_manifest(self.storage.as_ref(), &self.dir, number)?;
        self.manifest_number = number;
        self.write_snapshot_and_switch()?;
        if let Err(e) = self.storage.delete(&manifest_path(&self.dir, old)) {
            tracing::warn!("could not delete old manifest {old}: {e}");
        }
        Ok(())
    }

    pub fn current(&self) -> Arc<Version> {
        self.current.clone()
    }
    /// Make sure `number` is never allocated again (a file found on disk
    /// whose number the manifest does not know, such as a WAL segment
    /// started after the last edit).
    pub fn mark_file_number_used(&mut self, number: u64) {
        self.next_file_number = self.next_file_number.max(number.saturating_add(1));
    }
    /// Allocate one file number, in memory only: for WAL segments and
    /// manifests, which recovery finds on disk
    /// ([`VersionSet::mark_file_number_used`]).
    pub fn new_file_number(&mut self) -> u64 {
        let n = self.next_file_number;
        self.next_file_number += 1;
        n
    }
    /// Allocate `count` consecutive file numbers for a job's outputs. They
    /// are never handed out again, by this or any later incarnation, even
    /// after a crash: before this returns, the manifest records a mark at or
    /// past the range's end. The mark is raised with headroom, so most calls
    /// need no I/O. A failed
    /// manifest write returns the error and hands out nothing (the caller
    /// poisons the database, as for every manifest write).
    pub fn reserve_file_numbers(&mut self, count: u64) -> Result<std::ops::Range<u64>> {
        let start = self.next_file_number;
        let end = start.checked_add(count).ok_or_else(|| {
            Error::InvalidArgument(format!("cannot reserve {count} file numbers from {start}"))
        })?;
        if end > self.file_number_limit {
            let mut edit = VersionEdit {
                next_file_number: Some(end.saturating_add(FILE_NUMBER_HEADROOM)),
                ..VersionEdit::default()
            };
            self.append_durably(&mut edit)?;
        }
        self.next_file_number = end;
        Ok(start..end)
    }
    /// The file-number mark the manifest records (durably): every reserved
    /// number is below it.
    /// The next number [`VersionSet::new_file_number`] hands out: every
    /// number below it was handed out already (read at open, it separates
    /// this incarnation's numbers from earlier ones').
    pub fn next_file_number(&self) -> u64 {
        self.next_file_number
    }
    pub fn durable_file_number_limit(&self) -> u64 {
        self.file_number_limit
    }
    /// This database's identity (recorded in its manifest).
    pub fn db_id(&self) -> DbId {
        self.db_id
    }
    /// How many times the database has been opened, creation counting as
    /// the first; recorded durably before this incarnation does anything.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
    pub fn last_sequence(&self) -> SequenceNumber {
        self.last_sequence
    }
    /// Raise the persisted last sequence (recorded with the next edit).
    pub fn set_last_sequence(&mut self, seq: SequenceNumber) {
        self.last_sequence = self.last_sequence.max(seq);
    }
    pub fn log_number(&self) -> u64 {
        self.log_number
    }
    pub fn shard_splits(&self) -> &[Vec<u8>] {
        &self.shard_splits
    }
    /// Per shard: every write with a sequence at or below this is in an SST.
    pub fn shard_flushed(&self) -> &[SequenceNumber] {
        &self.shard_flushed
    }
    pub fn manifest_number(&self) -> u64 {
        self.manifest_number
    }
    /// The WAL segment still to be replayed that the last clean close synced,
    /// and its length then; `None` after a crash, or once the segment is no
    /// longer needed.
    pub fn closed_wal(&self) -> Option<(u64, u64)> {
        self.closed_wal.filter(|&(n, _)| n >= self.log_number)
    }
}

fn validate_splits(splits: &[Vec<u8>]) -> Result<()> {
    if splits.iter().any(|s| s.is_empty()) {
        return Err(Error::InvalidArgument(
            "shard split keys must not be empty".into(),
        ));
    }
    if splits.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidArgument(
            "shard split keys must be strictly increasing".into(),
        ));
    }
    if splits.len() >= u32::MAX as usize {
        return Err(Error::InvalidArgument("too many shards".into()));
    }
    Ok(())
}

/// Counters accumulated while replaying edits.
#[derive(Default)]
struct ReplayState {
    /// Checked for uniqueness by the caller (it needs the record offset).
    db_id: Option<DbId>,
    incarnation: Option<u64>,
    shard_splits: Option<Vec<Vec<u8>>>,
    log_number: Option<u64>,
    next_file_number: Option<u64>,
    last_sequence: Option<SequenceNumber>,
    shard_flushed: Vec<(u32, SequenceNumber)>,
    closed_wal: Option<(u64, u64)>,
}

impl ReplayState {
    fn apply_counters(&mut self, e: &VersionEdit) {
        if let Some(s) = &e.shard_splits {
            self.shard_splits = Some(s.clone());
        }
        if let Some(s) = &e.resplit {
            // Flushed sequences recorded so far are of the old layout.
            self.shard_splits = Some(s.clone());
            self.shard_flushed.clear();
        }
        if e.log_number.is_some() {
            self.log_number = e.log_number.max(self.log_number);
        }
        if e.incarnation.is_some() {
            self.incarnation = e.incarnation.max(self.incarnation);
        }
        if e.next_file_number.is_some() {
            self.next_file_number = e.next_file_number.max(self.next_file_number);
        }
        if e.last_sequence.is_some() {
            self.last_sequence = e.last_sequence.max(self.last_sequence);
        }
        self.shard_flushed.extend_from_slice(&e.shard_flushed);
        if e.closed_wal.is_some() {
            self.closed_wal = e.closed_wal;
        }
    }
}

/// Accumulates edits into a new [`Version`], checking that deletions name live
/// files (and range tombstones) and that deeper levels stay non-overlapping.
struct VersionBuilder {
    levels: Vec<BTreeMap<u64, Arc<FileMeta>>>,
    /// The base version's range tombstones, carried over as they are (with
    /// their fragmented set) unless an edit adds or drops one.
    base_tombstones: (Arc<Vec<(u32, RangeTombstone)>>, Arc<RangeTombstoneSet>),
    /// By `(shard, seq)`; filled from the base on the first edit that
    /// changes range tombstones.
    tombstones: Option<BTreeMap<(u32, SequenceNumber), RangeTombstone>>,
}

impl VersionBuilder {
    fn new(num_levels: usize) -> Self {
        VersionBuilder {
            levels: vec![BTreeMap::new(); num_levels],
            base_tombstones: Default::default(),
            tombstones: None,
        }
    }

    fn from_version(v: &Version) -> Self {
        VersionBuilder {
            levels: v
                .levels
                .iter()
                .map(|files| files.iter().map(|f| (f.number, f.clone())).collect())
                .collect(),
            base_tombstones: (v.range_tombstones.clone(), v.range_tombstone_set.clone()),
            tombstones: None,
        }
    }

    /// Apply the edit's range tombstone changes: drops first (each must name
    /// a live tombstone), then additions.
    fn apply_range_tombstones(
        &mut self,
        e: &VersionEdit,
        location: &str,
        offset: u64,
    ) -> Result<()> {
        if e.new_range_tombstones.is_empty() && e.deleted_range_tombstones.is_empty() {
            return Ok(());
        }
        let base = &self.base_tombstones.0;
        let live = self.tombstones.get_or_insert_with(|| {
            base.iter()
                .map(|(shard, t)| ((*shard, t.seq), t.clone()))
                .collect()
        });
        for &(shard, seq) in &e.deleted_range_tombstones {
            if live.remove(&(shard, seq)).is_none() {
                return Err(Error::corruption(
                    location,
                    offset,
                    format!("edit drops range tombstone {seq} of shard {shard}, which is not live"),
                ));
            }
        }
        for (shard, t) in &e.new_range_tombstones {
            live.insert((*shard, t.seq), t.clone());
        }
        Ok(())
    }

    fn apply(&mut self, e: &VersionEdit, location: &str, offset: u64) -> Result<()> {
        let nlevels = self.levels.len();
        let level_slot = |level: u32| {
            let idx = level as usize;
            if idx >= nlevels {
                return Err(Error::corruption(
                    location,
                    offset,
                    format!("edit names level {level}, database has {nlevels}"),
                ));
            }
            Ok(idx)
        };
        // A file that the edit deletes and adds again (a trivial move to
        // another level) keeps its `Arc`: the engine deletes an obsolete file
        // once it holds the last reference, so every version that lists the
        // file — old ones pinned by iterators included — must share one.
        let mut removed: HashMap<u64, Arc<FileMeta>> = HashMap::new();
        for &(level, number) in &e.deleted_files {
            let idx = level_slot(level)?;
            match self.levels[idx].remove(&number) {
                Some(f) => {
                    removed.insert(number, f);
                }
                None => {
                    return Err(Error::corruption(
                        location,
                        offset,
                        format!("edit deletes file {number} which is not live at level {level}"),
                    ));
                }
            }
        }
        for (level, f) in &e.new_files {
            let idx = level_slot(*level)?;
            if compare_internal(&f.smallest, &f.largest) == std::cmp::Ordering::Greater {
                return Err(Error::corruption(
                    location,
                    offset,
                    format!("file {} has smallest key above largest key", f.number),
                ));
            }
            let meta = match removed.remove(&f.number) {
                Some(moved) if *moved == *f => moved,
                _ => Arc::new(f.clone()),
            };
            self.levels[idx].insert(f.number, meta);
        }
        self.apply_range_tombstones(e, location, offset)
    }

    fn build(self, location: &str) -> Result<Version> {
        let mut levels = Vec::with_capacity(self.levels.len());
        for (i, files) in self.levels.into_iter().enumerate() {
            let mut files: Vec<Arc<FileMeta>> = files.into_values().collect();
            if i == 0 {
                files.sort_by(|a, b| {
                    b.largest_seq
                        .cmp(&a.largest_seq)
                        .then(b.number.cmp(&a.number))
                });
            } else {
                files.sort_by(|a, b| compare_internal(&a.smallest, &b.smallest));
                for w in files.windows(2) {
                    if w[0].largest_user_key() >= w[1].smallest_user_key() {
                        return Err(Error::corruption(
                            location,
                            0,
                            format!(
                                "files {} and {} overlap at level {i}",
                                w[0].number, w[1].number
                            ),
                        ));
                    }
                }
            }
            levels.push(files);
        }
        let (range_tombstones, range_tombstone_set) = match self.tombstones {
            None => self.base_tombstones,
            Some(live) => {
                let list: Vec<(u32, RangeTombstone)> =
                    live.into_iter().map(|((shard, _), t)| (shard, t)).collect();
                let set = RangeTombstoneSet::new(list.iter().map(|(_, t)| t));
                (Arc::new(list), Arc::new(set))
            }
        };
        Ok(Version {
            levels,
            range_tombstones,
            range_tombstone_set,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::FaultInjectingFs;
    use crate::key::{ValueKind, make_internal_key};

    fn table(number: u64, lo: &[u8], hi: &[u8]) -> FileMeta {
        FileMeta {
            number,
            size: 100,
            smallest: make_internal_key(lo, 1, ValueKind::Value),
            largest: make_internal_key(hi, 1, ValueKind::Value),
            smallest_seq: 1,
            largest_seq: 1,
            entries: 1,
            tombstones: 0,
            shard: 0,
            created_ms: 0,
        }
    }

    /// A trivial move (the same file deleted at one level and added at the
    /// next) must keep the file's `Arc`: obsolete-file deletion counts its
    /// references, and an older version pinned by an iterator still lists
    /// the file under the old `Arc`.
    #[test]
    fn a_moved_file_keeps_its_arc_across_versions() {
        let fs = FaultInjectingFs::new();
        let storage: Arc<dyn Storage> = Arc::new(fs);
        let dir = Path::new("/db");
        storage.create_dir_all(dir).unwrap();
        let mut vs = VersionSet::create(storage.clone(), dir, 4, Vec::new()).unwrap();
        let f = table(7, b"a", b"m");
        storage.create(&table_path(dir, 7)).unwrap();
        let v1 = vs
            .log_and_apply(VersionEdit {
                new_files: vec![(1, f.clone())],
                ..VersionEdit::default()
            })
            .unwrap();
        let v2 = vs
            .log_and_apply(VersionEdit {
                deleted_files: vec![(1, 7)],
                new_files: vec![(2, f.clone())],
                ..VersionEdit::default()
            })
            .unwrap();
        assert!(v2.levels[1].is_empty());
        assert!(Arc::ptr_eq(&v1.levels[1][0], &v2.levels[2][0]));
        // A file re-added with other metadata (never done by the engine) is
        // a new file as far as sharing goes.
        let mut changed = f.clone();
        changed.size = 200;
        let v3 = vs
            .log_and_apply(VersionEdit {
                deleted_files: vec![(2, 7)],
                new_files: vec![(3, changed)],
                ..VersionEdit::default()
            })
            .unwrap();
        assert!(!Arc::ptr_eq(&v2.levels[2][0], &v3.levels[3][0]));
    }
    /// A re-split replaces the split keys and voids the old layout's
    /// flushed sequences, in memory and in what recovery rebuilds (also
    /// when the old layout had more shards than the new one).
    #[test]
    fn a_resplit_replaces_the_layout_and_its_flushed_sequences() {
        let storage: Arc<dyn Storage> = Arc::new(FaultInjectingFs::new());
        let dir = Path::new("/db");
        storage.create_dir_all(dir).unwrap();
        let old = vec![b"d".to_vec(), b"m".to_vec(), b"t".to_vec()];
        let mut vs = VersionSet::create(storage.clone(), dir, 4, old).unwrap();
        vs.log_and_apply(VersionEdit {
            shard_flushed: vec![(0, 5), (3, 9)],
            ..VersionEdit::default()
        })
        .unwrap();
        let new = vec![b"k".to_vec()];
        vs.log_and_apply(VersionEdit {
            resplit: Some(new.clone()),
            shard_flushed: vec![(0, 12), (1, 12)],
            ..VersionEdit::default()
        })
        .unwrap();
        assert_eq!(vs.shard_splits(), new.as_slice());
        assert_eq!(vs.shard_flushed(), &[12, 12]);
        let bad = vs.log_and_apply(VersionEdit {
            resplit: Some(vec![b"z".to_vec(), b"a".to_vec()]),
            ..VersionEdit::default()
        });
        assert!(bad.is_err(), "unsorted split keys refused");
        drop(vs);
        let (vs, _) = VersionSet::recover(storage, dir, 4).unwrap();
        assert_eq!(vs.shard_splits(), new.as_slice());
        assert_eq!(vs.shard_flushed(), &[12, 12]);
    }
}
