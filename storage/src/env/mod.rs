//! Storage backends: the file operations an LSM needs, behind one trait.
//!
//! - [`LocalFs`]: the local file system (default).
//! - [`FaultInjectingFs`]: an in-memory file system for tests that models
//!   exactly what survives a machine crash (only synced file data and synced
//!   directory entries) and can inject I/O errors.
//! - [`ThrottledStorage`]: wraps any backend and adds the latency and
//!   bandwidth limits of a [`RemoteStorageModel`], to emulate remote storage
//!   in experiments.
//!
//! Durability rules every caller relies on: data appended to a
//! [`WritableFile`] survives a *process* crash once `flush` returns, and a
//! *machine* crash once `sync` returns; a newly created, renamed or deleted
//! directory entry survives a machine crash once `sync_dir` on its parent
//! returns.

mod fault;
mod local;
mod throttle_clock;
mod throttled;

pub use fault::{FaultInjectingFs, FaultPlan};
pub use local::LocalFs;
pub use throttle_clock::{SystemThrottleClock, ThrottleClock, VirtualThrottleClock};
pub use throttled::{RemoteStorageModel, ThrottledStorage};

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;

/// A file being written sequentially.
pub trait WritableFile: Send + Sync {
    /// Append bytes (may be buffered in user space until `flush`).
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Hand buffered bytes to the operating system (survives a process crash).
    fn flush(&mut self) -> Result<()>;
    /// Flush and make the data durable (survives a machine crash).
    fn sync(&mut self) -> Result<()>;
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// True when nothing has been appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file opened for positional reads.
pub trait RandomAccessFile: Send + Sync {
    /// Fill `buf` from `offset`; an error if the file is shorter.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// File size in bytes at open time.
    fn size(&self) -> u64;
    /// Hint that reads through this handle land at random offsets, so the
    /// backend should not read ahead. A hint only: the default ignores it.
    fn advise_random(&self) {}
}

/// An exclusive lock on a database directory, released on drop.
pub trait FileLock: Send + Sync + std::fmt::Debug {}

/// The operations the engine performs on its files.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Create (or truncate) a file for appending.
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Open a file for positional reads.
    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>>;
    /// Read a whole file.
    fn read_all(&self, path: &Path) -> Result<Vec<u8>> {
        let f = self.open(path)?;
        let len = usize::try_from(f.size()).map_err(|_| {
            crate::Error::InvalidArgument(format!(
                "{} is too large to read into memory",
                path.display()
            ))
        })?;
        let mut buf = vec![0; len];
        f.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
    /// Names (not paths) of the entries in `dir`.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// Delete a file.
    fn delete(&self, path: &Path) -> Result<()>;
    /// Atomically rename `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Give the file at `from` a second name `to` (a hard link; `to` must not
    /// exist). Like a created file, the new name survives a machine crash
    /// once `sync_dir` on its directory returns. Backends that cannot link
    /// (and links across file systems) fail; callers then copy instead, so
    /// the default refuses.
    fn link(&self, from: &Path, to: &Path) -> Result<()> {
        Err(crate::Error::io(
            from,
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("this storage backend cannot link to {}", to.display()),
            ),
        ))
    }
    /// Make directory entry changes in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Create `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Size of the file at `path`.
    fn file_size(&self, path: &Path) -> Result<u64>;
    /// Take an exclusive lock (held until the returned guard is dropped);
    /// fails with [`crate::Error::Locked`] when another holder has it.
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>>;
}

/// Write `data` to `path` durably: write a temporary file, sync it, rename it
/// over `path`, sync the directory. Used for `CURRENT` and similar small files.
pub fn write_file_atomically(storage: &dyn Storage, path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    {
        let mut f = storage.create(&tmp)?;
        f.append(data)?;
        f.sync()?;
    }
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}
