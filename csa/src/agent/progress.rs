//! [`CountingStorage`]: a [`Storage`] that counts the bytes one job reads
//! and writes, so heartbeats can report progress and reports the totals.
//! Every other operation passes through unchanged.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use o3_storage::Result;
use o3_storage::env::{FileLock, RandomAccessFile, Storage, WritableFile};

/// Bytes moved so far by one job.
#[derive(Debug, Default)]
pub struct Progress {
    read: AtomicU64,
    written: AtomicU64,
}

impl Progress {
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Count `bytes` read from elsewhere than storage (a flush's images).
    pub fn add_read(&self, bytes: u64) {
        self.read.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// `inner`, counting into `progress`.
#[derive(Debug)]
pub struct CountingStorage {
    inner: Arc<dyn Storage>,
    progress: Arc<Progress>,
}

impl CountingStorage {
    pub fn new(inner: Arc<dyn Storage>, progress: Arc<Progress>) -> CountingStorage {
        CountingStorage { inner, progress }
    }
}

struct CountingReader {
    inner: Arc<dyn RandomAccessFile>,
    progress: Arc<Progress>,
}

impl RandomAccessFile for CountingReader {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact_at(offset, buf)?;
        self.progress
            .read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn advise_random(&self) {
        self.inner.advise_random();
    }
}

struct CountingWriter {
    inner: Box<dyn WritableFile>,
    progress: Arc<Progress>,
}

impl WritableFile for CountingWriter {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.inner.append(data)?;
        self.progress
            .written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn sync(&mut self) -> Result<()> {
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl Storage for CountingStorage {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        Ok(Box::new(CountingWriter {
            inner: self.inner.create(path)?,
            progress: Arc::clone(&self.progress),
        }))
    }
    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        Ok(Arc::new(CountingReader {
            inner: self.inner.open(path)?,
            progress: Arc::clone(&self.progress),
        }))
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &Path) -> Result<()> {
        self.inner.delete(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn link(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.link(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> Result<u64> {
        self.inner.file_size(path)
    }
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o3_storage::env::FaultInjectingFs;

    #[test]
    fn counts_what_passes_through() {
        let progress = Arc::new(Progress::default());
        let fs: Arc<dyn Storage> = Arc::new(FaultInjectingFs::new());
        let storage = CountingStorage::new(fs, Arc::clone(&progress));
        let path = Path::new("/d/f");
        storage.create_dir_all(Path::new("/d")).unwrap();
        let mut file = storage.create(path).unwrap();
        file.append(b"hello").unwrap();
        file.append(b"!").unwrap();
        file.sync().unwrap();
        drop(file);
        let mut buf = [0u8; 4];
        storage
            .open(path)
            .unwrap()
            .read_exact_at(1, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"ello");
        assert_eq!(progress.bytes_written(), 6);
        assert_eq!(progress.bytes_read(), 4);
    }
}
