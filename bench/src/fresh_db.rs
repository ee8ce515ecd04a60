//! Starting a run from an empty database without destroying one in use.
//!
//! A load or fill run empties `--db` first. Another process may have that
//! database open: deleting its files loses its data and fails its background
//! jobs. So the directory is emptied only under the database's own lock
//! (`LOCK`, the one [`Db::open`] takes through [`Storage::lock`]), and that
//! lock is handed to [`Db::open`] instead of being released, so no other
//! process can open the database between the cleanup and the open. When
//! another process holds the lock the run fails with the engine's "is locked
//! by another process" error and nothing is deleted.
//!
//! Only files the engine owns (`storage/src/filename.rs`: WAL segments,
//! SSTs, manifests, `CURRENT`, temporaries) are deleted; a directory that
//! holds anything else is refused untouched, so a mistyped `--db` (or another
//! engine's database) is never emptied.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use o3_compute::{Db, DbOptions};
use o3_storage::env::{FileLock, RandomAccessFile, Storage, WritableFile};
use o3_storage::filename::{FileKind, lock_path, parse_file_name};
use parking_lot::Mutex;

use crate::error::{BenchError, Result};

/// Open the database at `dir` with `options`, emptied first.
pub fn open_empty(dir: &Path, options: DbOptions) -> Result<Db> {
    let storage = options.storage.clone();
    let context = || format!("emptying {}", dir.display());
    if storage.exists(dir) {
        refuse_foreign_files(&*storage, dir)?;
    }
    storage
        .create_dir_all(dir)
        .map_err(BenchError::engine(context()))?;
    let lock_file = lock_path(dir);
    let lock = storage
        .lock(&lock_file)
        .map_err(BenchError::engine(context()))?;
    // Checked again under the lock: the directory may have changed since.
    refuse_foreign_files(&*storage, dir)?;
    delete_database_files(&*storage, dir).map_err(BenchError::engine(context()))?;
    let options = DbOptions {
        storage: Arc::new(HeldLockStorage {
            inner: storage,
            lock_file,
            held: Mutex::new(Some(lock)),
        }),
        ..options
    };
    Db::open(dir, options).map_err(BenchError::engine(format!("opening {}", dir.display())))
}

/// Fail unless every entry of `dir` is a file the engine owns.
fn refuse_foreign_files(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let names = storage
        .list(dir)
        .map_err(BenchError::engine(format!("listing {}", dir.display())))?;
    match names.iter().find(|n| parse_file_name(n).is_none()) {
        Some(foreign) => Err(BenchError::InvalidArgument(format!(
            "{} holds {foreign}, which is not an o3 database file; refusing to empty it",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Delete the engine's files in `dir`, except the lock file. `CURRENT`
/// goes first, so an interrupted cleanup leaves no database that points at
/// deleted files.
fn delete_database_files(storage: &dyn Storage, dir: &Path) -> o3_storage::Result<()> {
    let mut names: Vec<(FileKind, String)> = storage
        .list(dir)?
        .into_iter()
        .filter_map(|n| parse_file_name(&n).map(|k| (k, n)))
        .filter(|(k, _)| *k != FileKind::Lock)
        .collect();
    names.sort_by_key(|(k, _)| *k != FileKind::Current);
    for (_, name) in names {
        storage.delete(&dir.join(name))?;
    }
    Ok(())
}

/// The engine's storage with the database lock already taken: the first
/// `lock` of that lock file receives the held guard instead of locking again
/// (a second `flock` of the file would fail even within this process).
#[derive(Debug)]
struct HeldLockStorage {
    inner: Arc<dyn Storage>,
    lock_file: PathBuf,
    held: Mutex<Option<Box<dyn FileLock>>>,
}

impl Storage for HeldLockStorage {
    fn create(&self, path: &Path) -> o3_storage::Result<Box<dyn WritableFile>> {
        self.inner.create(path)
    }
    fn open(&self, path: &Path) -> o3_storage::Result<Arc<dyn RandomAccessFile>> {
        self.inner.open(path)
    }
    fn read_all(&self, path: &Path) -> o3_storage::Result<Vec<u8>> {
        self.inner.read_all(path)
    }
    fn list(&self, dir: &Path) -> o3_storage::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &Path) -> o3_storage::Result<()> {
        self.inner.delete(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> o3_storage::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> o3_storage::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> o3_storage::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> o3_storage::Result<u64> {
        self.inner.file_size(path)
    }
    fn lock(&self, path: &Path) -> o3_storage::Result<Box<dyn FileLock>> {
        if path == self.lock_file
            && let Some(held) = self.held.lock().take()
        {
            return Ok(held);
        }
        self.inner.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DbOptions {
        DbOptions {
            write_buffer_size: 64 << 10,
            ..DbOptions::default()
        }
    }

    fn fill(db: &Db, n: u32) {
        for i in 0..n {
            db.put(format!("key{i:05}").as_bytes(), &[7u8; 100])
                .unwrap();
        }
    }

    /// A database at `dir/db` holding `rows` rows flushed into tables, left
    /// open; and its path.
    fn written_db(dir: &Path, rows: u32) -> (PathBuf, Db) {
        let path = dir.join("db");
        let db = Db::open(&path, options()).unwrap();
        fill(&db, rows);
        db.flush().unwrap();
        (path, db)
    }

    fn is_empty(db: &Db) -> bool {
        db.scan::<std::ops::RangeFull>(.., false)
            .unwrap()
            .is_empty()
    }

    fn entries_of(path: &Path) -> usize {
        std::fs::read_dir(path).unwrap().count()
    }

    #[test]
    fn an_existing_database_is_emptied_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = written_db(dir.path(), 3000);
        db.close().unwrap();
        let db = open_empty(&path, options()).unwrap();
        assert!(is_empty(&db));
        assert_eq!(db.get(b"key00001").unwrap(), None);
        // The handed-over lock is really held: nobody else can open it.
        let e = Db::open(&path, options()).unwrap_err().to_string();
        assert!(e.contains("locked by another process"), "{e}");
        fill(&db, 10);
        db.close().unwrap();
        // Closing released it.
        let db = Db::open(&path, options()).unwrap();
        assert_eq!(db.scan::<std::ops::RangeFull>(.., false).unwrap().len(), 10);
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("db");
        let db = open_empty(&path, options()).unwrap();
        fill(&db, 5);
        db.close().unwrap();
        assert!(path.join("CURRENT").exists());
    }

    #[test]
    fn a_database_open_elsewhere_is_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = written_db(dir.path(), 3000);
        let before = entries_of(&path);
        let e = open_empty(&path, options()).unwrap_err().to_string();
        assert!(e.contains("locked by another process"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert_eq!(entries_of(&path), before);
        for i in [0u32, 1500, 2999] {
            let k = format!("key{i:05}");
            assert_eq!(db.get(k.as_bytes()).unwrap(), Some(vec![7u8; 100]), "{k}");
        }
        assert_eq!(db.background_error(), None);
        assert_eq!(db.stats().background_errors, 0);
    }

    #[test]
    fn a_directory_with_foreign_files_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = written_db(dir.path(), 10);
        db.close().unwrap();
        std::fs::write(path.join("notes.txt"), "mine").unwrap();
        let before = entries_of(&path);
        let e = open_empty(&path, options()).unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("refusing"), "{e}");
        assert_eq!(entries_of(&path), before);
        assert!(path.join("CURRENT").exists());
    }

    /// A cleanup interrupted after `CURRENT` went leaves only engine files,
    /// which the next run may delete.
    #[test]
    fn leftovers_of_an_interrupted_cleanup_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = written_db(dir.path(), 3000);
        db.close().unwrap();
        std::fs::remove_file(path.join("CURRENT")).unwrap();
        let db = open_empty(&path, options()).unwrap();
        assert!(is_empty(&db));
        db.close().unwrap();
        let ssts = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("sst".as_ref()))
            .count();
        assert_eq!(ssts, 0);
    }
}
