//! What a ticket runs ([`Work`]): a compaction, or a flush of memtable
//! images on a memory node with where it may run; and a submission as the
//! request carries it ([`Submission`]).

use std::ops::Range;
use std::path::Path;

use o3_storage::job::{CompactionJob, FlushJob};
use o3_transport::control::proto::csa::v1 as pb;

use super::distributor::epoch_slice;
use super::monitor::Agent;
use super::queue::JobKind;

/// What a ticket runs.
#[derive(Debug, Clone)]
pub(super) enum Work {
    Compaction(CompactionJob),
    /// A flush of images on memory node `images.memnode`.
    Flush {
        job: FlushJob,
        images: pb::FlushImages,
        target: pb::FlushTarget,
    },
}

impl Work {
    pub(super) fn kind(&self) -> JobKind {
        match self {
            Work::Compaction(_) => JobKind::Compaction,
            Work::Flush { .. } => JobKind::Flush,
        }
    }

    pub(super) fn dir(&self) -> &Path {
        match self {
            Work::Compaction(job) => &job.dir,
            Work::Flush { job, .. } => &job.dir,
        }
    }

    pub(super) fn file_numbers(&self) -> Range<u64> {
        match self {
            Work::Compaction(job) => job.file_numbers.clone(),
            Work::Flush { job, .. } => job.file_numbers.clone(),
        }
    }

    /// The job of epoch `epoch` (file numbers narrowed to its slice),
    /// encoded, and that slice.
    pub(super) fn epoch_bytes(
        &self,
        epochs: u32,
        epoch: u32,
    ) -> o3_storage::Result<(Vec<u8>, Range<u64>)> {
        let slice = epoch_slice(self.file_numbers(), epochs, epoch);
        let bytes = match self {
            Work::Compaction(job) => {
                let mut job = job.clone();
                job.file_numbers = slice.clone();
                job.to_bytes()?
            }
            Work::Flush { job, .. } => {
                let mut job = job.clone();
                job.file_numbers = slice.clone();
                job.to_bytes()?
            }
        };
        Ok((bytes, slice))
    }

    /// May `agent` run it? Compactions go to plain agents; a flush to the
    /// memory node holding its images or to plain agents, as its target
    /// says.
    pub(super) fn runs_on(&self, agent: &Agent) -> bool {
        match (self, &agent.memnode) {
            (Work::Compaction(_), memnode) => memnode.is_none(),
            (Work::Flush { target, .. }, None) => *target != pb::FlushTarget::Memnode,
            (Work::Flush { images, target, .. }, Some(memnode)) => {
                *target != pb::FlushTarget::Agent && *memnode == images.memnode
            }
        }
    }
}

/// A submitted job's kind, its images and its target, as the request
/// carries them.
#[derive(Debug)]
pub(crate) struct Submission<'a> {
    pub job: &'a [u8],
    pub kind: pb::JobKind,
    pub images: Option<pb::FlushImages>,
    pub target: pb::FlushTarget,
}
