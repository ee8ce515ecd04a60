//! Running one assignment: decode the job, run it on a blocking thread
//! against the agent's storage (counting bytes), classify a failure into a
//! [`FailureKind`], and find the files a fenced or cancelled try wrote so
//! they can be deleted.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use o3_storage::env::Storage;
use o3_storage::filename::table_path;
use o3_storage::job::{CompactionJob, JobResult};

use super::progress::{CountingStorage, Progress};
use crate::failure::FailureKind;

/// A try that failed: its kind and the reason.
pub type Failure = (FailureKind, String);

/// Decodes an assignment's job and moves its directory from under `from`
/// to under `to` when the agent mounts the tenants' storage elsewhere.
pub fn decode(
    bytes: &[u8],
    path_map: Option<&(PathBuf, PathBuf)>,
) -> Result<CompactionJob, Failure> {
    let mut job = CompactionJob::from_bytes(bytes)
        .map_err(|e| (FailureKind::InvalidJob, format!("undecodable job: {e}")))?;
    if let Some((from, to)) = path_map
        && let Ok(rest) = job.dir.strip_prefix(from)
    {
        job.dir = to.join(rest);
    }
    Ok(job)
}

/// Runs `job` with nothing but `storage`, counting into `progress`.
pub fn execute(
    job: &CompactionJob,
    storage: Arc<dyn Storage>,
    progress: Arc<Progress>,
) -> Result<JobResult, Failure> {
    let counting = CountingStorage::new(storage, progress);
    job.execute(&counting)
        .map_err(|e| (classify(job, &e), e.to_string()))
}

/// The kind of a job's error: a missing or forbidden input is unreadable,
/// damaged bytes are corruption, any other I/O is the storage's fault.
pub fn classify(job: &CompactionJob, error: &o3_storage::Error) -> FailureKind {
    if error.is_corruption() {
        return FailureKind::Corruption;
    }
    match error {
        o3_storage::Error::Io { path, source } => {
            let is_input = job
                .inputs
                .iter()
                .flat_map(|(_, files)| files)
                .any(|f| table_path(&job.dir, f.number) == *path);
            let unreadable = matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::PermissionDenied
            );
            if is_input && unreadable {
                FailureKind::InputUnreadable
            } else {
                FailureKind::Storage
            }
        }
        o3_storage::Error::InvalidArgument(_) => FailureKind::InvalidJob,
        _ => FailureKind::Internal,
    }
}

/// Files this try may have written: the outputs of `result`, or, without
/// one (the try failed or its result was lost), every file of the job's
/// slice that exists.
pub fn written_files(
    job: &CompactionJob,
    result: Option<&JobResult>,
    storage: &dyn Storage,
) -> Vec<PathBuf> {
    match result {
        Some(result) => result
            .outputs
            .iter()
            .map(|o| table_path(&job.dir, o.number))
            .collect(),
        None => job
            .file_numbers
            .clone()
            .map(|n| table_path(&job.dir, n))
            .filter(|p| storage.exists(p))
            .collect(),
    }
}

/// Tables left in the slices of the epochs before `epoch` (a try whose
/// agent died cannot delete what it wrote). Slices are equal and adjacent
/// (`o3_csa::scheduler::epoch_slice`), so they lie just below this
/// epoch's. Only the newest epoch's outputs can ever be installed, so
/// these are garbage; a superseded try still running may write more, and
/// deletes them itself when its report is fenced.
pub fn earlier_epochs_files(
    job: &CompactionJob,
    epoch: u32,
    storage: &dyn Storage,
) -> Vec<PathBuf> {
    let per = job.file_numbers.end.saturating_sub(job.file_numbers.start);
    let first = job
        .file_numbers
        .start
        .saturating_sub(per.saturating_mul(u64::from(epoch)));
    (first..job.file_numbers.start)
        .map(|n| table_path(&job.dir, n))
        .filter(|p| storage.exists(p))
        .collect()
}

/// Deletes `files` (missing ones are fine), then syncs their directory.
pub fn delete_files(storage: &dyn Storage, dir: &Path, files: &[PathBuf]) {
    for file in files {
        if let Err(e) = storage.delete(file)
            && storage.exists(file)
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot delete a fenced output");
        }
    }
    if !files.is_empty()
        && let Err(e) = storage.sync_dir(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync after deleting fenced outputs");
    }
}
