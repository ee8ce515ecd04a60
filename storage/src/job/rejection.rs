//! Why the compute node refuses a job result or cannot run a job: the
//! fencing checks of `docs/job_format.md` ("Fencing"), as typed errors a
//! caller can match (drop a stale result, retry on another node, ...).

use std::ops::Range;

use super::JobToken;
use crate::version::DbId;

/// A job result that must not be installed, or a job that could not be
/// placed. Each message names the token (or node) involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The token is from another database or an earlier incarnation of this
    /// one (the job was claimed before a restart).
    #[error("stale job token {token}: this is database {db_id}, incarnation {incarnation}")]
    StaleToken {
        token: JobToken,
        db_id: DbId,
        incarnation: u64,
    },
    /// No claimed job has this id: it was never claimed, was abandoned, or
    /// has finished and been forgotten.
    #[error("no claimed job matches token {token}")]
    UnknownJob { token: JobToken },
    /// The job was retried: only the result of its current attempt counts.
    #[error(
        "job token {token} is from a superseded attempt; the current attempt is {current_attempt}"
    )]
    SupersededAttempt {
        token: JobToken,
        current_attempt: u32,
    },
    /// An output file's number lies outside the attempt's reservation (and
    /// the file is not one of the job's inputs moved to another level).
    #[error("job {token} produced file {file}, outside its reserved file numbers {reserved:?}")]
    NotReserved {
        token: JobToken,
        file: u64,
        reserved: Range<u64>,
    },
    /// An input of the job is no longer in the current version.
    #[error("job {token}: input file {file} is no longer live")]
    InputsGone { token: JobToken, file: u64 },
    /// The claim's lease ran out before the result arrived.
    #[error("job {token}: its {lease_ms} ms lease expired before the result arrived")]
    LeaseExpired { token: JobToken, lease_ms: u64 },
    /// An output of the compaction overlaps a file at its output level
    /// that is not one of its inputs (written there by another job since
    /// this one was planned). Installing it would break the level's
    /// ordering; the refused outputs are deleted.
    #[error(
        "job {token}: output file {file} overlaps file {other} at level {level}, which is not one of its inputs"
    )]
    OutputsOverlap {
        token: JobToken,
        file: u64,
        other: u64,
        level: u32,
    },
    /// An executor (memory node, compaction agent) could not be reached or
    /// refused the job.
    #[error("node {node} unavailable: {reason}")]
    NodeUnavailable { node: String, reason: String },
}
