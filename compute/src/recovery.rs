//! Opening an existing database: replay the WAL segments the manifest still
//! needs into memtables, write them to L0, start a fresh WAL, and remove
//! every file that nothing references (partial outputs of interrupted jobs,
//! old WAL segments and manifests, temporary files).
//!
//! Range deletions are replayed into the memtables' side lists (split at the
//! shard boundaries, each piece only if its shard has not flushed past it)
//! and installed by the replay flush in the same edit as its files.
//!
//! Replay follows `docs/wal_format.md`, "WAL recovery": which damage is
//! tolerated depends on [`WalRecoveryMode`] and on where it is — only the
//! newest segment may end in a torn tail (older ones were synced whole before
//! the next one started), and never before the length a clean close synced.
//! Everything else fails the open with the file and offset, except under
//! point-in-time recovery, which stops replay at the first damage and drops
//! the rest (never a later write without an earlier one).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use o3_storage::batch::{BatchOp, WriteBatch};
use o3_storage::env::{FileLock, Storage};
use o3_storage::filename::{FileKind, manifest_path, parse_file_name, wal_path};
use o3_storage::job::shard_of;
use o3_storage::memtable::Memtable;
use o3_storage::range_del::RangeTombstone;
use o3_storage::version::{Version, VersionEdit, VersionSet};
use o3_storage::wal::{LogReader, LogWriter, TailTolerance};
use o3_storage::{Error, Result};

use crate::engine::{Engine, WalState};
use crate::jobs::build;
use crate::jobs::registry::Registry;
use crate::options::{DbOptions, WalRecoveryMode};
use crate::state::{DbState, ShardState};
use crate::table_cache::TableCache;

pub(crate) fn recover(
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    options: DbOptions,
    mut versions: VersionSet,
    table_cache: Arc<TableCache>,
    lock: Box<dyn FileLock>,
) -> Result<Engine> {
    let wals = find_wal_segments(storage.as_ref(), &dir, &mut versions)?;
    let replayed = replay(storage.as_ref(), &dir, &options, &versions, &wals)?;
    let (version, wal_number, wal_writer) =
        flush_replayed(storage.as_ref(), &dir, &options, &mut versions, replayed)?;
    remove_unreferenced(storage.as_ref(), &dir, &versions, &version, wal_number)?;
    let state = fresh_state(&options, versions.shard_splits(), wal_number)?;
    let last_seq = versions.last_sequence();
    Engine::new(
        dir,
        storage,
        options,
        versions,
        state,
        WalState { writer: wal_writer },
        last_seq,
        table_cache,
        lock,
    )
}

/// Phase 1: the WAL segments the manifest still needs, oldest first. Every
/// file number found on disk is marked used (a segment started after the
/// manifest's last edit has a number its counter has not passed yet).
fn find_wal_segments(
    storage: &dyn Storage,
    dir: &Path,
    versions: &mut VersionSet,
) -> Result<Vec<u64>> {
    let mut wals: Vec<u64> = Vec::new();
    for name in &storage.list(dir)? {
        match parse_file_name(name) {
            Some(FileKind::Wal(n)) => {
                versions.mark_file_number_used(n);
                if n >= versions.log_number() {
                    wals.push(n);
                }
            }
            Some(FileKind::Table(n)) | Some(FileKind::Manifest(n)) => {
                versions.mark_file_number_used(n)
            }
            _ => {}
        }
    }
    wals.sort_unstable();
    Ok(wals)
}

/// What replaying the WAL produced: sealed memtables per shard, oldest
/// first, and the last sequence seen.
struct Replayed {
    memtables: Vec<Vec<Arc<Memtable>>>,
    last_seq: u64,
}

/// Phase 2: replay `wals` into memtables, skipping what each shard has
/// already flushed.
fn replay(
    storage: &dyn Storage,
    dir: &Path,
    options: &DbOptions,
    versions: &VersionSet,
    wals: &[u64],
) -> Result<Replayed> {
    let splits = versions.shard_splits().to_vec();
    let shards = splits.len() + 1;
    let flushed = versions.shard_flushed().to_vec();
    let mut last_seq = versions.last_sequence();
    let mode = options.wal_recovery_mode;
    let closed = versions.closed_wal();
    let mut recovered: Vec<Vec<Arc<Memtable>>> = vec![Vec::new(); shards];
    let mut active: Vec<Arc<Memtable>> = (0..shards)
        .map(|s| Memtable::new(options.write_buffer_size, s as u32).map(Arc::new))
        .collect::<Result<_>>()?;
    'segments: for (index, &number) in wals.iter().enumerate() {
        let path = wal_path(dir, number);
        let location = path.display().to_string();
        let later = &wals[index + 1..];
        let mut reader = LogReader::new(storage.open(&path)?, number, location.clone());
        reader.set_tail_tolerance(tail_tolerance(mode, later.is_empty()));
        if let Some((closed_number, synced)) = closed
            && closed_number == number
        {
            reader.set_synced_length(synced);
        }
        loop {
            let damage = match reader.read_record() {
                Ok(Some((record, offset))) => WriteBatch::from_encoded(record, &location, offset),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            let batch = match damage {
                Ok(batch) => batch,
                Err(e) if mode == WalRecoveryMode::PointInTime && e.is_corruption() => {
                    report_point_in_time_stop(&location, &e.to_string(), later);
                    break 'segments;
                }
                Err(e) => return Err(e),
            };
            let base = batch.sequence();
            for (i, op) in batch.iter().enumerate() {
                let seq = base + i as u64;
                last_seq = last_seq.max(seq);
                let Some(kind) = op.kind.entry_kind() else {
                    let capacity = options.write_buffer_size;
                    replay_range_deletion(
                        &splits,
                        &flushed,
                        &mut active,
                        &mut recovered,
                        capacity,
                        op,
                        seq,
                    )?;
                    continue;
                };
                let shard = shard_of(&splits, op.key) as usize;
                if seq <= flushed[shard] {
                    continue;
                }
                match active[shard].insert(op.key, seq, kind, op.value) {
                    Ok(()) => {}
                    Err(Error::ImageFull { .. }) => {
                        // An entry too large for an ordinary memtable gets
                        // one sized for it.
                        let capacity = Memtable::capacity_for_entry(op.key.len(), op.value.len())
                            .map_or(options.write_buffer_size, |c| {
                                c.max(options.write_buffer_size)
                            });
                        let fresh = Arc::new(Memtable::new(capacity, shard as u32)?);
                        let full = std::mem::replace(&mut active[shard], fresh);
                        full.seal()?;
                        recovered[shard].push(full);
                        active[shard].insert(op.key, seq, kind, op.value)?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some((offset, reason)) = reader.torn_tail() {
            if !later.is_empty() {
                // Only point-in-time recovery tolerates a torn segment that
                // has successors.
                report_point_in_time_stop(
                    &location,
                    &format!("torn at offset {offset}: {reason}"),
                    later,
                );
                break 'segments;
            }
            tracing::warn!(
                "WAL {location} ended in a torn record at offset {offset} ({reason}); writes after it were never acknowledged as durable",
            );
        }
    }
    for (shard, mem) in active.into_iter().enumerate() {
        if !mem.is_empty() {
            mem.seal()?;
            recovered[shard].push(mem);
        }
    }

    Ok(Replayed {
        memtables: recovered,
        last_seq,
    })
}

/// Phase 3: write what was replayed to L0 (one table per shard, the flush
/// job every flush runs) and start a fresh WAL, in one edit. Returns the
/// new version and the new WAL segment.
fn flush_replayed(
    storage: &dyn Storage,
    dir: &Path,
    options: &DbOptions,
    versions: &mut VersionSet,
    replayed: Replayed,
) -> Result<(Arc<Version>, u64, Option<LogWriter>)> {
    let last_seq = replayed.last_seq;
    let mut edit = VersionEdit::default();
    for (shard, mems) in replayed.memtables.iter().enumerate() {
        if mems.is_empty() {
            continue;
        }
        // Job id 0 is recovery's: no other job exists yet.
        let token = build::token(versions, 0, 1);
        let numbers = versions.reserve_file_numbers(build::FLUSH_OUTPUTS)?;
        // No snapshot survives a restart: keep only the newest versions.
        let images = mems
            .iter()
            .map(|m| (m.entries(), m.entries_largest_seq()))
            .collect();
        let job = build::flush_job(token, dir, shard, images, &options.table, last_seq, numbers);
        let result = job.execute_local(storage, mems)?;
        edit.new_files
            .extend(result.outputs.into_iter().map(|f| (0, f)));
        edit.new_range_tombstones.extend(
            mems.iter()
                .flat_map(|m| m.range_tombstones())
                .map(|t| (shard as u32, t)),
        );
        let max = mems.iter().map(|m| m.largest_seq()).max().unwrap_or(0);
        edit.shard_flushed.push((shard as u32, max));
    }
    // The new segment is created only once the edit that retires the
    // replayed ones is durable: a crash in between must not leave a replayed
    // segment (which may end in a tolerated torn tail) followed by a later
    // segment, which recovery would take as corruption.
    let wal_number = versions.new_file_number();
    versions.set_last_sequence(last_seq);
    edit.log_number = Some(wal_number);
    edit.last_sequence = Some(last_seq);
    versions.drop_obsolete_range_tombstones(&mut edit)?;
    let version = versions.log_and_apply(edit)?;
    let wal_writer = if options.disable_wal {
        None
    } else {
        let file = storage.create(&wal_path(dir, wal_number))?;
        storage.sync_dir(dir)?;
        Some(LogWriter::new(file, wal_number))
    };
    Ok((version, wal_number, wal_writer))
}

/// Phase 4: everything not referenced now is garbage (outputs of jobs
/// interrupted by the crash, replayed WAL segments, old manifests,
/// temporary files).
fn remove_unreferenced(
    storage: &dyn Storage,
    dir: &Path,
    versions: &VersionSet,
    version: &Version,
    wal_number: u64,
) -> Result<()> {
    let mut live: HashSet<u64> = version.levels.iter().flatten().map(|f| f.number).collect();
    live.insert(wal_number);
    let manifest = manifest_path(dir, versions.manifest_number());
    for name in storage.list(dir)? {
        let remove = match parse_file_name(&name) {
            Some(FileKind::Table(n)) | Some(FileKind::Wal(n)) => !live.contains(&n),
            Some(FileKind::Manifest(_)) => dir.join(&name) != manifest,
            Some(FileKind::Temp) => true,
            Some(FileKind::Current) | Some(FileKind::Options) | Some(FileKind::Lock) | None => {
                false
            }
        };
        if remove {
            let path = dir.join(&name);
            tracing::info!("removing unreferenced file {}", path.display());
            storage.delete(&path)?;
        }
    }
    Ok(())
}

/// Phase 5: the state of a freshly opened database: empty memtables, one
/// live WAL segment, no jobs.
fn fresh_state(options: &DbOptions, splits: &[Vec<u8>], wal_number: u64) -> Result<DbState> {
    Ok(DbState {
        splits: Arc::new(splits.to_vec()),
        shards: (0..splits.len() + 1)
            .map(|s| ShardState::empty(options.write_buffer_size, s))
            .collect::<Result<_>>()?,
        balancer: options.adaptive_shards.then(|| {
            crate::shard_balance::ShardBalancer::new(
                options.shard_balance.clone(),
                options.shard_count,
            )
        }),
        resplit_due: None,
        busy_files: HashSet::new(),
        jobs: Registry::default(),
        next_image_serial: 0,
        idle_probe: (0, std::time::Instant::now()),
        flush_requests: 0,
        obsolete_files: Vec::new(),
        wal_segments: BTreeMap::from([(wal_number, 0)]),
        wal_number,
    })
}

/// Which damage may end segment replay quietly under `mode`; `newest` is the
/// last segment (the only one a crash can have cut short).
fn tail_tolerance(mode: WalRecoveryMode, newest: bool) -> TailTolerance {
    match mode {
        WalRecoveryMode::PointInTime => TailTolerance::AnyDamage,
        WalRecoveryMode::TolerateCorruptedTailRecords if newest => TailTolerance::InterruptedAppend,
        WalRecoveryMode::TolerateCorruptedTailRecords | WalRecoveryMode::AbsoluteConsistency => {
            TailTolerance::Nothing
        }
    }
}

/// Log what point-in-time recovery drops: the rest of the segment at
/// `location` after the damage, and every later segment.
fn report_point_in_time_stop(location: &str, damage: &str, later: &[u64]) {
    tracing::warn!(
        "point-in-time WAL recovery stopped at damage in {location} ({damage}); the rest of that segment \
         and {} later segment(s) {later:?} are dropped: the database opens with the writes before the damage",
        later.len()
    );
}

/// Replay the range deletion `op` (`[key, value)`) at `seq`: each shard
/// piece goes into that shard's replay memtable (of `capacity` bytes)
/// unless the shard has flushed past `seq` (then the piece is already
/// installed, or was collected as garbage). An empty range deletes nothing.
fn replay_range_deletion(
    splits: &[Vec<u8>],
    flushed: &[u64],
    active: &mut [Arc<Memtable>],
    recovered: &mut [Vec<Arc<Memtable>>],
    capacity: usize,
    op: BatchOp<'_>,
    seq: u64,
) -> Result<()> {
    if op.key >= op.value {
        return Ok(());
    }
    let whole = RangeTombstone {
        start: op.key.to_vec(),
        end: op.value.to_vec(),
        seq,
    };
    for (shard, piece) in whole.split_at_shards(splits) {
        let shard = shard as usize;
        if seq <= flushed[shard] {
            continue;
        }
        match active[shard].add_range_tombstone(piece.clone()) {
            Ok(()) => {}
            Err(Error::ImageFull { .. }) => {
                let fresh = Arc::new(Memtable::new(capacity, shard as u32)?);
                let full = std::mem::replace(&mut active[shard], fresh);
                full.seal()?;
                recovered[shard].push(full);
                active[shard].add_range_tombstone(piece)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
