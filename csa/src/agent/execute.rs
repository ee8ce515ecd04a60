//! Running one assignment: decode the job, run it on a blocking thread
//! against the agent's storage (counting bytes), classify a failure into a
//! [`FailureKind`], and find the files a fenced or cancelled try wrote so
//! they can be deleted.

use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use o3_storage::env::Storage;
use o3_storage::filename::table_path;
use o3_storage::job::{CompactionJob, FlushJob, JobResult};
use o3_transport::control::proto::csa::v1 as pb;

use super::images::ImageSource;
use super::progress::{CountingStorage, Progress};
use crate::failure::FailureKind;

/// A try that failed: its kind and the reason.
pub type Failure = (FailureKind, String);

/// An assignment's job, decoded.
#[derive(Debug)]
pub enum DecodedJob {
    Compaction(CompactionJob),
    /// A flush and where its images are.
    Flush(FlushJob, pb::FlushImages),
}

impl DecodedJob {
    pub fn dir(&self) -> &Path {
        match self {
            DecodedJob::Compaction(job) => &job.dir,
            DecodedJob::Flush(job, _) => &job.dir,
        }
    }

    pub fn file_numbers(&self) -> Range<u64> {
        match self {
            DecodedJob::Compaction(job) => job.file_numbers.clone(),
            DecodedJob::Flush(job, _) => job.file_numbers.clone(),
        }
    }

    fn dir_mut(&mut self) -> &mut PathBuf {
        match self {
            DecodedJob::Compaction(job) => &mut job.dir,
            DecodedJob::Flush(job, _) => &mut job.dir,
        }
    }
}

/// Decodes an assignment's job and moves its directory from under `from`
/// to under `to` when the agent mounts the tenants' storage elsewhere.
pub fn decode(
    assignment: &pb::Assignment,
    path_map: Option<&(PathBuf, PathBuf)>,
) -> Result<DecodedJob, Failure> {
    let undecodable =
        |e: o3_storage::Error| (FailureKind::InvalidJob, format!("undecodable job: {e}"));
    let mut job = match pb::JobKind::try_from(assignment.kind) {
        Ok(pb::JobKind::Compaction) => {
            DecodedJob::Compaction(CompactionJob::from_bytes(&assignment.job).map_err(undecodable)?)
        }
        Ok(pb::JobKind::Flush) => {
            let images = assignment.images.clone().ok_or_else(|| {
                (
                    FailureKind::InvalidJob,
                    "a flush assignment names no images".to_owned(),
                )
            })?;
            DecodedJob::Flush(
                FlushJob::from_bytes(&assignment.job).map_err(undecodable)?,
                images,
            )
        }
        Err(_) => {
            return Err((
                FailureKind::InvalidJob,
                format!("unknown job kind {}", assignment.kind),
            ));
        }
    };
    if let Some((from, to)) = path_map
        && let Ok(rest) = job.dir().strip_prefix(from)
    {
        let moved = to.join(rest);
        *job.dir_mut() = moved;
    }
    Ok(job)
}

/// Runs `job` with nothing but `storage` (and, for a flush, `images` to
/// read its memtable images from), counting into `progress`.
pub fn execute(
    job: &DecodedJob,
    storage: Arc<dyn Storage>,
    images: &dyn ImageSource,
    progress: Arc<Progress>,
) -> Result<JobResult, Failure> {
    let counting = CountingStorage::new(storage, Arc::clone(&progress));
    match job {
        DecodedJob::Compaction(job) => job
            .execute(&counting)
            .map_err(|e| (classify(job, &e), e.to_string())),
        DecodedJob::Flush(job, located) => {
            let bytes = images.read(located)?;
            progress.add_read(bytes.iter().map(|b| b.len() as u64).sum());
            let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            job.execute(&counting, &slices).map_err(|e| {
                let kind = if e.is_corruption() {
                    FailureKind::Corruption
                } else if matches!(e, o3_storage::Error::Io { .. }) {
                    FailureKind::Storage
                } else {
                    FailureKind::Internal
                };
                (kind, e.to_string())
            })
        }
    }
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
    job: &DecodedJob,
    result: Option<&JobResult>,
    storage: &dyn Storage,
) -> Vec<PathBuf> {
    match result {
        Some(result) => result
            .outputs
            .iter()
            .map(|o| table_path(job.dir(), o.number))
            .collect(),
        None => job
            .file_numbers()
            .map(|n| table_path(job.dir(), n))
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
pub fn earlier_epochs_files(job: &DecodedJob, epoch: u32, storage: &dyn Storage) -> Vec<PathBuf> {
    let numbers = job.file_numbers();
    let per = numbers.end.saturating_sub(numbers.start);
    let first = numbers
        .start
        .saturating_sub(per.saturating_mul(u64::from(epoch)));
    (first..numbers.start)
        .map(|n| table_path(job.dir(), n))
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
