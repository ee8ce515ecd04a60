//! Holding flushes back for a measurement: a [`Storage`] wrapper whose
//! gate, while closed, blocks the creation of table files (SSTs), so no
//! flush can finish and every sealed memtable stays where it is (in local
//! memory, or on the memory node). Everything else (WAL, manifest, reads)
//! passes through untouched.
//!
//! A flush blocked at the gate holds a background thread, not the
//! database: writes, reads and offloading go on. Open the gate before the
//! database is closed (closing waits for the flushes); [`GateClosed`] opens
//! it when dropped, so an error path cannot leave it shut.

use std::path::Path;
use std::sync::Arc;

use o3_storage::env::{FileLock, RandomAccessFile, Storage, WritableFile};
use o3_storage::filename::{FileKind, parse_file_name};
use parking_lot::{Condvar, Mutex};

/// The gate shared by a [`GatedStorage`] and whoever holds flushes back.
#[derive(Debug, Default)]
pub struct SstGate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl SstGate {
    pub fn new() -> Arc<SstGate> {
        Arc::new(SstGate::default())
    }

    /// Block table creation until the returned guard is dropped.
    pub fn close(self: &Arc<Self>) -> GateClosed {
        *self.closed.lock() = true;
        GateClosed(Arc::clone(self))
    }

    fn open(&self) {
        *self.closed.lock() = false;
        self.opened.notify_all();
    }

    fn wait_open(&self) {
        let mut closed = self.closed.lock();
        while *closed {
            self.opened.wait(&mut closed);
        }
    }
}

/// The gate is closed while this lives.
#[derive(Debug)]
pub struct GateClosed(Arc<SstGate>);

impl Drop for GateClosed {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// `inner` with table creation held at `gate`.
#[derive(Debug)]
pub struct GatedStorage {
    pub inner: Arc<dyn Storage>,
    pub gate: Arc<SstGate>,
}

impl Storage for GatedStorage {
    fn create(&self, path: &Path) -> o3_storage::Result<Box<dyn WritableFile>> {
        let is_table = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_file_name)
            .is_some_and(|k| matches!(k, FileKind::Table(_)));
        if is_table {
            self.gate.wait_open();
        }
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
        self.inner.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o3_compute::{Db, DbOptions, LocalFs};

    /// While the gate is closed a flush cannot finish: the sealed memtables
    /// stay unflushed and no table exists, yet writes and reads go on; once
    /// it opens the flushes complete.
    #[test]
    fn a_closed_gate_holds_flushes_back_until_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let gate = SstGate::new();
        let options = DbOptions {
            storage: Arc::new(GatedStorage {
                inner: Arc::new(LocalFs::new()),
                gate: Arc::clone(&gate),
            }),
            write_buffer_size: 64 << 10,
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), options).unwrap();
        let closed = gate.close();
        for i in 0..5000u32 {
            db.put(&i.to_be_bytes(), &[7u8; 100]).unwrap();
        }
        let held = db.stats();
        assert!(held.unflushed_memtables >= 2, "{held:?}");
        assert_eq!(held.flushes, 0);
        let tables = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension() == Some("sst".as_ref()))
                .count()
        };
        assert_eq!(tables(dir.path()), 0);
        assert_eq!(db.get(&7u32.to_be_bytes()).unwrap(), Some(vec![7u8; 100]));
        drop(closed);
        db.flush().unwrap();
        assert!(db.stats().flushes > 0);
        assert!(tables(dir.path()) > 0);
        db.close().unwrap();
    }
}
