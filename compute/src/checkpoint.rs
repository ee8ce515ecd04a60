//! [`crate::Db::checkpoint`]: a consistent, openable copy of a database in a
//! new directory of the same storage, taken while the database runs.
//!
//! What the copy holds: the SSTs of one version (hard-linked, or copied
//! where linking fails, e.g. across file systems), the WAL segments that
//! version still needs — the live one copied up to the length it had at one
//! instant —, a fresh manifest with one snapshot record of that version, a
//! `CURRENT` and the `OPTIONS` file. Opening the copy replays those segments
//! like crash recovery does, so it holds exactly the writes whose WAL
//! records precede that instant: every write acknowledged before the call,
//! and never a later write without an earlier one (a batch spanning shards
//! is all in or all out).
//!
//! Consistency of the capture: the WAL lock is held while the live
//! segment's length is read and the version lock is taken, so no write
//! appends in between, and every write an SST of the version holds was
//! appended to the WAL before (writes reach memtables after the WAL). While
//! the version lock is held no install retires a segment the version needs,
//! so each is opened then; an open handle keeps reading after a later
//! deletion. SSTs cannot vanish while they are linked: obsolete tables are
//! deleted only once no `Arc` of a version holds them, and the copy holds
//! its version until it is done.
//!
//! With `disable_wal` there is no WAL to copy: the memtables are flushed
//! first, so the copy holds every write acknowledged before the call, but
//! writes racing with the checkpoint may be partly in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use o3_storage::env::{RandomAccessFile, Storage, write_file_atomically};
use o3_storage::filename::{current_path, manifest_path, options_path, table_path, wal_path};
use o3_storage::version::{Version, VersionEdit};
use o3_storage::wal::LogWriter;
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::options_file::OptionsFile;

/// Bytes copied per read when a file cannot be linked.
const COPY_CHUNK: usize = 1 << 20;

/// A WAL segment the copy needs, opened while the version lock was held.
struct SegmentCopy {
    number: u64,
    file: Arc<dyn RandomAccessFile>,
    /// Bytes to copy: the live segment's length at the capture; a closed
    /// segment's whole size.
    len: u64,
    /// A closed segment is never written again, so linking it is copying it.
    closed: bool,
}

/// The state the checkpoint copies, captured at one instant.
struct Capture {
    /// Held until the copy is done: its tables are not deleted meanwhile.
    version: Arc<Version>,
    snapshot: VersionEdit,
    manifest_number: u64,
    segments: Vec<SegmentCopy>,
}

/// Write a checkpoint of `db` into `target`, which must not exist.
pub(crate) fn checkpoint(db: &Engine, target: &Path) -> Result<()> {
    db.check_poisoned()?;
    let storage = db.storage.as_ref();
    if storage.exists(target) {
        return Err(Error::InvalidArgument(format!(
            "checkpoint directory {} already exists; a checkpoint goes into a new directory",
            target.display()
        )));
    }
    if db.options.disable_wal {
        crate::manual::flush_all(db)?;
    }
    let capture = capture(db)?;
    storage.create_dir_all(target)?;
    let mut written = Vec::new();
    let result = write_copy(db, target, &capture, &mut written);
    if result.is_err() {
        // Without CURRENT the directory is no database, but an open with
        // create_if_missing would replay stray WAL copies into a new one.
        let temps = [current_path(target), options_path(target)].map(|p| {
            let mut name = p.into_os_string();
            name.push(".tmp");
            PathBuf::from(name)
        });
        for path in written.iter().chain(&temps).filter(|p| storage.exists(p)) {
            if let Err(e) = storage.delete(path) {
                tracing::warn!("removing {} of a failed checkpoint: {e}", path.display());
            }
        }
    }
    result
}

fn capture(db: &Engine) -> Result<Capture> {
    let mut wal = db.wal.lock();
    let live = match wal.writer.as_mut() {
        Some(w) => {
            // Normally a no-op: every write hands its record over before it
            // is acknowledged.
            if let Err(e) = w.flush() {
                db.poison(&e);
                return Err(e);
            }
            Some((w.log_number(), w.len()))
        }
        None => None,
    };
    let mut vs = db.versions.lock();
    drop(wal);
    let version = vs.current();
    let manifest_number = vs.new_file_number();
    let snapshot = vs.checkpoint_edit();
    let log_number = vs.log_number();
    let numbers: Vec<u64> = if live.is_some() {
        let st = db.state.lock();
        st.wal_segments
            .keys()
            .copied()
            .filter(|&n| n >= log_number)
            .collect()
    } else {
        Vec::new()
    };
    let mut segments = Vec::with_capacity(numbers.len());
    for number in numbers {
        let file = db.storage.open(&wal_path(&db.dir, number))?;
        let (len, closed) = match live {
            Some((live_number, len)) if live_number == number => (len, false),
            _ => (file.size(), true),
        };
        segments.push(SegmentCopy {
            number,
            file,
            len,
            closed,
        });
    }
    drop(vs);
    Ok(Capture {
        version,
        snapshot,
        manifest_number,
        segments,
    })
}

fn write_copy(
    db: &Engine,
    target: &Path,
    capture: &Capture,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let storage = db.storage.as_ref();
    for f in capture.version.levels.iter().flatten() {
        let (from, to) = (table_path(&db.dir, f.number), table_path(target, f.number));
        written.push(to.clone());
        // Tables are durable before a version names them: a link needs only
        // the directory sync below.
        if storage.link(&from, &to).is_err() {
            let file = storage.open(&from)?;
            copy(storage, file.as_ref(), f.size, &to)?;
        }
    }
    for s in &capture.segments {
        let (from, to) = (wal_path(&db.dir, s.number), wal_path(target, s.number));
        written.push(to.clone());
        if !(s.closed && storage.link(&from, &to).is_ok()) {
            copy(storage, s.file.as_ref(), s.len, &to)?;
        }
    }
    written.push(options_path(target));
    OptionsFile::from_options(&db.options)?.write(storage, target)?;
    let manifest = manifest_path(target, capture.manifest_number);
    written.push(manifest.clone());
    let mut log = LogWriter::new(storage.create(&manifest)?, capture.manifest_number);
    log.add_record(&capture.snapshot.encode())?;
    log.sync()?;
    storage.sync_dir(target)?;
    written.push(current_path(target));
    let name = format!("MANIFEST-{:06}\n", capture.manifest_number);
    write_file_atomically(storage, &current_path(target), name.as_bytes())
}

/// Copy the first `len` bytes of `from` into a new file `to`, durably.
fn copy(storage: &dyn Storage, from: &dyn RandomAccessFile, len: u64, to: &Path) -> Result<()> {
    let mut out = storage.create(to)?;
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut at = 0u64;
    while at < len {
        // Bounded by COPY_CHUNK, so the cast cannot truncate.
        let n = (len - at).min(COPY_CHUNK as u64) as usize;
        from.read_exact_at(at, &mut buf[..n])?;
        out.append(&buf[..n])?;
        at += n as u64;
    }
    out.sync()
}
