//! [`Storage`] on the local file system.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileLock, RandomAccessFile, Storage, WritableFile};
use crate::error::{Error, Result};

/// The local file system. Writes are buffered in user space (64 KiB) until
/// `flush`, which issues `write(2)`; `sync` adds `fdatasync(2)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFs;

impl LocalFs {
    pub fn new() -> Self {
        LocalFs
    }
}

const WRITE_BUFFER: usize = 64 * 1024;

struct LocalWritable {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    len: u64,
    /// Start of the bytes handed to the kernel whose writeback has not been
    /// started yet.
    writeback_from: u64,
}

/// Once this many written bytes wait in the page cache, their writeback is
/// started without waiting for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`),
/// so that a later `sync` finds little left to do. WAL segments and SSTs are
/// synced whole (a WAL roll, a flush install): waiting for tens of MiB at
/// once held writers back for ~50 ms per roll.
const WRITEBACK_CHUNK: u64 = 1 << 20;

impl LocalWritable {
    /// Bytes handed to the kernel so far.
    fn written(&self) -> u64 {
        self.len - self.buf.len() as u64
    }

    /// Start writeback of the written bytes not yet submitted, once there
    /// are [`WRITEBACK_CHUNK`] of them. A hint: on failure the next `sync`
    /// writes (and reports) everything.
    fn start_writeback(&mut self) {
        let written = self.written();
        if written - self.writeback_from < WRITEBACK_CHUNK {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (from, len) = (self.writeback_from, written - self.writeback_from);
            if let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) {
                // SAFETY: a valid open descriptor; the call changes no memory.
                unsafe {
                    libc::sync_file_range(
                        self.file.as_raw_fd(),
                        from,
                        len,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
        }
        self.writeback_from = written;
    }
}

impl WritableFile for LocalWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        if self.buf.len() + data.len() > WRITE_BUFFER {
            self.flush()?;
        }
        if data.len() >= WRITE_BUFFER {
            self.file
                .write_all(data)
                .map_err(|e| Error::io(&self.path, e))?;
            self.len += data.len() as u64;
            self.start_writeback();
        } else {
            self.buf.extend_from_slice(data);
            self.len += data.len() as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .map_err(|e| Error::io(&self.path, e))?;
            self.buf.clear();
            self.start_writeback();
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

struct LocalRandomAccess {
    path: PathBuf,
    file: File,
    size: u64,
}

impl RandomAccessFile for LocalRandomAccess {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                &self.path,
                std::io::Error::new(
                    e.kind(),
                    format!("reading {} bytes at offset {offset}: {e}", buf.len()),
                ),
            )
        })
    }
    fn size(&self) -> u64 {
        self.size
    }
    /// `posix_fadvise(RANDOM)`: readahead would fetch (and copy into the
    /// page cache) neighbours of a point lookup's block that it never reads.
    /// Failure only costs the hint.
    fn advise_random(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; the call changes no memory.
            unsafe {
                libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
            }
        }
    }
}

/// Lock files this process holds. A POSIX record lock does not conflict
/// with its own process, so a second open of the same database in this
/// process is refused here; and the set is checked before the file is
/// opened, because closing any descriptor of a locked file releases the
/// process's record lock on it.
static HELD_LOCKS: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

#[derive(Debug)]
struct LocalLock {
    /// Closed (releasing the record lock) before `path` leaves
    /// [`HELD_LOCKS`], so a lock seen free in the set is free on disk too.
    file: Option<File>,
    path: PathBuf,
}
impl FileLock for LocalLock {}

impl Drop for LocalLock {
    fn drop(&mut self) {
        drop(self.file.take());
        if let Ok(mut held) = HELD_LOCKS.lock() {
            held.remove(&self.path);
        }
    }
}

impl Storage for LocalFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Box::new(LocalWritable {
            path: path.to_path_buf(),
            file,
            buf: Vec::with_capacity(WRITE_BUFFER),
            len: 0,
            writeback_from: 0,
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(Arc::new(LocalRandomAccess {
            path: path.to_path_buf(),
            file,
            size,
        }))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io(from, e))
    }

    fn link(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::hard_link(from, to).map_err(|e| {
            Error::io(
                from,
                std::io::Error::new(e.kind(), format!("linking to {}: {e}", to.display())),
            )
        })
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        Ok(std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len())
    }

    /// An exclusive POSIX record lock (`fcntl(F_SETLK)`), not `flock`: a
    /// record lock belongs to the process, so a child being spawned (whose
    /// copies of the descriptors live until it `exec`s) never holds it, and
    /// a database closed here can be opened again at once.
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        let locked = || Error::Locked {
            path: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            lock_file: path.to_path_buf(),
        };
        let key = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => std::fs::canonicalize(dir)
                .map_err(|e| Error::io(dir, e))?
                .join(name),
            _ => path.to_path_buf(),
        };
        let mut held = HELD_LOCKS
            .lock()
            .map_err(|_| Error::InvalidArgument("the lock table is poisoned".into()))?;
        if held.contains(&key) {
            return Err(locked());
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        // SAFETY: an all-zero `flock` is a valid value (plain integers).
        let mut request: libc::flock = unsafe { std::mem::zeroed() };
        request.l_type = libc::F_WRLCK as _;
        request.l_whence = libc::SEEK_SET as _;
        // l_start = 0 and l_len = 0: the whole file.
        // SAFETY: fcntl on a valid, owned descriptor with a valid `flock`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &request) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EAGAIN)) {
                return Err(locked());
            }
            return Err(Error::io(path, err));
        }
        held.insert(key.clone());
        Ok(Box::new(LocalLock {
            file: Some(file),
            path: key,
        }))
    }
}
