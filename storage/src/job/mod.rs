//! Flush and compaction as data: a job is a self-contained, serializable
//! description of work on immutable inputs. Executing one needs only the job
//! and access to storage (no database, no manifest); the result lists the
//! output files and statistics. Only the compute node installs results, and
//! only if the job's [`JobToken`] still matches (fencing); a refusal is a
//! [`JobError`]. The byte encoding and the token are described in
//! `docs/job_format.md`.
//!
//! The same executor runs locally, on a memory node (flush of images it
//! holds) and on a compaction agent.

mod compaction;
mod flush;
mod output;
mod rejection;

pub use compaction::CompactionJob;
pub use flush::FlushJob;
pub use output::shard_of;
pub use rejection::JobError;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::version::{DbId, FileMeta};

/// Identifies one attempt at a job: a result is installed only if its token
/// matches the attempt the compute node is waiting for. Unique across
/// databases (`db_id`), restarts (`incarnation`), jobs and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobToken {
    /// The database that claimed the job.
    pub db_id: DbId,
    /// The database's incarnation when it claimed the job: every token of
    /// an earlier incarnation is stale.
    pub incarnation: u64,
    /// Unique within an incarnation.
    pub job_id: u64,
    /// 1 for the first attempt; each retry takes the next number (and fresh
    /// file numbers).
    pub attempt: u32,
}

impl std::fmt::Display for JobToken {
    /// `db 1a2b3c4d/inc 3/job 17/attempt 2` (the id shortened to 8 hex digits).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("db ")?;
        self.db_id.fmt_short(f)?;
        write!(
            f,
            "/inc {}/job {}/attempt {}",
            self.incarnation, self.job_id, self.attempt
        )
    }
}

/// What a job did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub entries_in: u64,
    pub entries_out: u64,
    /// Entries shadowed by newer versions and dropped.
    pub entries_dropped: u64,
    pub tombstones_dropped: u64,
    /// Entries dropped because a range tombstone deleted them.
    pub entries_range_deleted: u64,
    pub micros: u64,
}

/// The outcome of a successful job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub token: JobToken,
    /// New files, durable (file data and directory entry synced).
    pub outputs: Vec<FileMeta>,
    pub stats: JobStats,
}

/// Version tag in front of every serialized job or result; bumped whenever
/// a serialized type changes shape (2: `TableOptions::page_aligned_blocks`;
/// 3: `CompactionJob::range_tombstones`, `JobStats::entries_range_deleted`;
/// 4: `JobToken` carries `db_id`, `incarnation`, `attempt` instead of
/// `epoch`), so that a job from another o3 version is refused, not misread.
const ENCODING_MAGIC: &[u8; 4] = b"O3J4";
/// What every version tag starts with.
const ENCODING_FAMILY: &[u8; 3] = b"O3J";

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = ENCODING_MAGIC.to_vec();
    postcard::to_io(value, &mut out)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode job: {e}")))?;
    Ok(out)
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    let ours = String::from_utf8_lossy(ENCODING_MAGIC);
    let body = bytes
        .strip_prefix(ENCODING_MAGIC.as_slice())
        .ok_or_else(|| {
            let reason = match bytes.get(..ENCODING_MAGIC.len()) {
                Some(tag) if tag.starts_with(ENCODING_FAMILY) => format!(
                    "job encoding tag {}, but this o3 reads {ours} (encoded by another o3 version)",
                    String::from_utf8_lossy(tag)
                ),
                _ => format!("missing job encoding tag {ours} (not an o3 job)"),
            };
            Error::corruption(what, 0, reason)
        })?;
    postcard::from_bytes(body).map_err(|e| Error::corruption(what, 4, format!("undecodable: {e}")))
}

impl JobResult {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(self)
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<JobResult> {
        decode(bytes, "job result")
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
