//! The crate's error type. Every variant names what failed and where, so a
//! user reading one line knows which file (or image) and which offset to look at.

use std::path::PathBuf;

/// Result alias used throughout `o3-storage`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed (or the fault-injecting backend
    /// injected a failure).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes do not decode: a length runs past the end, a magic number
    /// is wrong, a field is out of range.
    #[error("corruption in {location} at offset {offset}: {reason}")]
    Corruption {
        /// A file path, or a description such as `memtable image (shard 2)`.
        location: String,
        offset: u64,
        reason: String,
    },
    /// A CRC32C over stored bytes does not match the stored value.
    #[error(
        "checksum mismatch in {location} at offset {offset}: stored {expected:#010x}, computed {actual:#010x}"
    )]
    ChecksumMismatch {
        location: String,
        offset: u64,
        expected: u32,
        actual: u32,
    },
    /// A caller passed something the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another process holds the database lock.
    #[error("database {path} is locked by another process (lock file {lock_file})")]
    Locked { path: PathBuf, lock_file: PathBuf },
    /// A memtable image is full; the caller seals it and starts a new one.
    #[error("memtable image full: need {needed} bytes, {available} available")]
    ImageFull { needed: usize, available: usize },
    /// The database was poisoned by an earlier failed sync or manifest write;
    /// it must be reopened (a failed fsync must never be retried and ignored).
    #[error("database is read-only after an earlier background error: {0}")]
    Poisoned(String),
    /// The database or a component was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// A job result was refused (fencing) or a job could not be placed.
    #[error(transparent)]
    Job(#[from] crate::job::JobError),
    /// A memory node holding offloaded memtable images failed a call.
    /// `lost`: the images there are gone (the node died, is unreachable or
    /// restarted), and the compute node rebuilds them from its WAL.
    #[error("memory node: {message}")]
    MemoryNode { lost: bool, message: String },
}

impl Error {
    /// Build an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Build an [`Error::Corruption`].
    pub fn corruption(
        location: impl std::fmt::Display,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            location: location.to_string(),
            offset,
            reason: reason.into(),
        }
    }

    /// True when this error means stored data is damaged (as opposed to an
    /// I/O failure or bad argument).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. } | Error::ChecksumMismatch { .. }
        )
    }
}

/// Verify a CRC32C and return a [`Error::ChecksumMismatch`] naming the location.
pub fn check_crc(
    location: impl std::fmt::Display,
    offset: u64,
    expected: u32,
    actual: u32,
) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            location: location.to_string(),
            offset,
            expected,
            actual,
        })
    }
}
