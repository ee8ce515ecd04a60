//! The jobs a database has handed out, and the fencing that decides what
//! may be installed.
//!
//! A job is identified by its token: the database's id and incarnation
//! (both persisted; the incarnation grows on every open), a job id
//! (unique within the incarnation) and an attempt (a retry gets the next
//! one, with fresh file numbers). Only the newest attempt of a claimed job
//! may install, once, and only if
//! - every output lies in the file numbers reserved for that attempt (a
//!   compaction may also name one of its own inputs, moved);
//! - every input is still live (a compaction's tables in the current
//!   version at their levels, a flush's images still waiting);
//! - its lease, where it has one, has not run out.
//!
//! Anything else is rejected with a typed [`JobError`]. A result delivered
//! again after its install is acknowledged and changes nothing. Rejected
//! outputs are deleted only where that is safe: inside the rejected
//! attempt's own reservation, or (for a token of an earlier incarnation)
//! below the first file number of this incarnation, and never a table a
//! version lists (the caller checks that last part under its locks).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use o3_storage::compaction::CompactionPlan;
use o3_storage::job::{CompactionJob, FlushJob, JobError, JobResult, JobToken};
use o3_storage::range_del::RangeTombstone;
use o3_storage::version::Version;

use super::executor::{ImageId, SealedImage};

/// How many finished jobs are remembered for answering late deliveries. A
/// duplicate of a result installed longer ago than this many jobs is
/// refused as `UnknownJob` (and, like every refusal, deletes nothing a
/// version lists) instead of being acknowledged.
const REMEMBERED_OUTCOMES: usize = 4096;

/// The work a claim stands for.
#[derive(Debug)]
pub(crate) enum ClaimedWork {
    Flush {
        job: FlushJob,
        shard: usize,
        images: Vec<SealedImage>,
        largest_seq: u64,
        range_tombstones: Vec<(u32, RangeTombstone)>,
    },
    Compaction {
        plan: CompactionPlan,
        job: Box<CompactionJob>,
    },
}

impl ClaimedWork {
    fn set_attempt(&mut self, token: JobToken, numbers: Range<u64>) {
        match self {
            ClaimedWork::Flush { job, .. } => {
                job.token = token;
                job.file_numbers = numbers;
            }
            ClaimedWork::Compaction { job, .. } => {
                job.token = token;
                job.file_numbers = numbers;
            }
        }
    }
    pub(crate) fn is_flush(&self) -> bool {
        matches!(self, ClaimedWork::Flush { .. })
    }
}

/// A job handed out and not finished.
#[derive(Debug)]
pub(crate) struct Claim {
    pub token: JobToken,
    pub reservation: Range<u64>,
    /// Reservations of the attempts this one superseded: their outputs are
    /// garbage.
    pub earlier: Vec<(u32, Range<u64>)>,
    pub work: ClaimedWork,
    /// Claimed through `Db::claim_compaction` (run by the caller).
    pub external: bool,
    /// When the current attempt was handed out, and how long it may take
    /// (no limit for jobs running in this process).
    pub since: Instant,
    pub lease: Option<Duration>,
    /// Executions that failed so far.
    pub failures: u32,
    /// Handed to an executor and not reported yet.
    pub in_flight: bool,
    /// The next attempt runs locally (the executor could not be reached).
    pub place_locally: bool,
}

/// What became of a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Installed { attempt: u32 },
    Abandoned,
    Expired { lease_ms: u64 },
    Failed { error: String },
}

/// What to do with a delivered result.
#[derive(Debug)]
pub(crate) enum Verdict {
    Install(Box<Claim>),
    /// Already installed: acknowledge, change nothing.
    Duplicate,
    /// The same token is being installed by another thread: ask again.
    Busy,
    Reject {
        error: JobError,
        /// Outputs that may be deleted (still subject to the version check).
        garbage: Vec<u64>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    next_job_id: u64,
    running: HashMap<u64, Claim>,
    /// Taken out of `running` by a thread installing them; a duplicate
    /// delivery meanwhile waits for the outcome.
    installing: HashSet<u64>,
    outcomes: HashMap<u64, Outcome>,
    order: VecDeque<u64>,
    /// Failed jobs waiting to be tried again, and when.
    retries: Vec<(u64, Instant)>,
}

impl Registry {
    pub(crate) fn next_job_id(&mut self) -> u64 {
        self.next_job_id += 1;
        self.next_job_id
    }

    pub(crate) fn register(&mut self, claim: Claim) {
        self.running.insert(claim.token.job_id, claim);
    }

    pub(crate) fn get(&self, job_id: u64) -> Option<&Claim> {
        self.running.get(&job_id)
    }

    pub(crate) fn get_mut(&mut self, job_id: u64) -> Option<&mut Claim> {
        self.running.get_mut(&job_id)
    }

    pub(crate) fn outcome(&self, job_id: u64) -> Option<&Outcome> {
        self.outcomes.get(&job_id)
    }

    /// Jobs handed to an executor and not reported yet (not counting
    /// those claimed by callers).
    pub(crate) fn in_flight(&self) -> usize {
        self.running
            .values()
            .filter(|c| c.in_flight && !c.external)
            .count()
    }

    /// [`Registry::in_flight`], split into jobs running in this process
    /// and jobs running elsewhere (those hold a lease).
    pub(crate) fn in_flight_here_and_elsewhere(&self) -> (usize, usize) {
        self.running
            .values()
            .filter(|c| c.in_flight && !c.external)
            .fold((0, 0), |(here, elsewhere), c| {
                if c.lease.is_some() {
                    (here, elsewhere + 1)
                } else {
                    (here + 1, elsewhere)
                }
            })
    }

    /// Remove a claim and remember how it ended.
    pub(crate) fn finish(&mut self, job_id: u64, outcome: Outcome) -> Option<Claim> {
        let claim = self.running.remove(&job_id);
        self.installing.remove(&job_id);
        self.retries.retain(|(id, _)| *id != job_id);
        self.outcomes.insert(job_id, outcome);
        self.order.push_back(job_id);
        while self.order.len() > REMEMBERED_OUTCOMES {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        claim
    }

    /// Schedule `job_id` to be tried again at `when`.
    pub(crate) fn retry_at(&mut self, job_id: u64, when: Instant) {
        self.retries.push((job_id, when));
    }

    /// A failed job whose retry is due, if any.
    pub(crate) fn due_retry(&mut self, now: Instant) -> Option<u64> {
        let i = self.retries.iter().position(|(_, when)| *when <= now)?;
        Some(self.retries.swap_remove(i).0)
    }

    /// When the next retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retries.iter().map(|(_, when)| *when).min()
    }

    /// Start a new attempt of `job_id` with `token` and file numbers
    /// `numbers`; the previous attempt's reservation is remembered as
    /// garbage. Returns the claim.
    pub(crate) fn new_attempt(
        &mut self,
        job_id: u64,
        token: JobToken,
        numbers: Range<u64>,
    ) -> Option<&mut Claim> {
        let claim = self.running.get_mut(&job_id)?;
        let old = std::mem::replace(&mut claim.reservation, numbers.clone());
        claim.earlier.push((claim.token.attempt, old));
        claim.token = token;
        claim.work.set_attempt(token, numbers);
        claim.since = Instant::now();
        claim.in_flight = false;
        Some(claim)
    }

    /// Claims whose lease ran out at `now`, removed and remembered as expired.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Claim> {
        let expired: Vec<(u64, u64)> = self
            .running
            .values()
            .filter_map(|c| {
                let lease = c.lease?;
                (now.duration_since(c.since) > lease)
                    .then_some((c.token.job_id, lease.as_millis() as u64))
            })
            .collect();
        expired
            .into_iter()
            .filter_map(|(id, lease_ms)| self.finish(id, Outcome::Expired { lease_ms }))
            .collect()
    }

    /// Judge a delivered result. `current` is the current version,
    /// `incarnation` this open's `(db id, incarnation, first file number)`,
    /// `waiting` the images still waiting for a flush.
    pub(crate) fn judge(
        &mut self,
        result: &JobResult,
        current: &Version,
        incarnation: &Incarnation,
        waiting: &HashSet<ImageId>,
    ) -> Verdict {
        let token = result.token;
        let outputs: Vec<u64> = result.outputs.iter().map(|f| f.number).collect();
        if token.db_id != incarnation.db_id || token.incarnation != incarnation.incarnation {
            // Of another database: touch nothing. Of an earlier incarnation
            // of this one: its outputs are numbered below every number this
            // incarnation hands out.
            let garbage = if token.db_id == incarnation.db_id
                && token.incarnation < incarnation.incarnation
            {
                outputs
                    .iter()
                    .copied()
                    .filter(|n| *n < incarnation.first_file_number)
                    .collect()
            } else {
                Vec::new()
            };
            return Verdict::Reject {
                error: JobError::StaleToken {
                    token,
                    db_id: incarnation.db_id,
                    incarnation: incarnation.incarnation,
                },
                garbage,
            };
        }
        if self.installing.contains(&token.job_id) {
            return Verdict::Busy;
        }
        let Some(claim) = self.running.get(&token.job_id) else {
            let error = match self.outcomes.get(&token.job_id) {
                Some(Outcome::Installed { attempt }) if *attempt == token.attempt => {
                    return Verdict::Duplicate;
                }
                Some(Outcome::Expired { lease_ms }) => JobError::LeaseExpired {
                    token,
                    lease_ms: *lease_ms,
                },
                Some(Outcome::Installed { attempt }) => JobError::SupersededAttempt {
                    token,
                    current_attempt: *attempt,
                },
                _ => JobError::UnknownJob { token },
            };
            // The job is over; none of its numbers are reserved any more,
            // but only a version check (the caller's) can tell a leftover
            // from a table that was installed.
            return Verdict::Reject {
                error,
                garbage: Vec::new(),
            };
        };
        if claim.token.attempt != token.attempt {
            let garbage = claim
                .earlier
                .iter()
                .find(|(attempt, _)| *attempt == token.attempt)
                .map(|(_, range)| {
                    outputs
                        .iter()
                        .copied()
                        .filter(|n| range.contains(n))
                        .collect()
                })
                .unwrap_or_default();
            return Verdict::Reject {
                error: JobError::SupersededAttempt {
                    token,
                    current_attempt: claim.token.attempt,
                },
                garbage,
            };
        }
        let moved = claim_inputs(&claim.work);
        let mut seen = HashSet::new();
        if let Some(&file) = outputs
            .iter()
            .find(|n| !(claim.reservation.contains(n) || moved.contains(n)) || !seen.insert(**n))
        {
            return Verdict::Reject {
                error: JobError::NotReserved {
                    token,
                    file,
                    reserved: claim.reservation.clone(),
                },
                // The attempt is still claimed: its reservation stays its
                // own until the claim ends (a retry or the next open
                // removes what it wrote).
                garbage: Vec::new(),
            };
        }
        let gone = match &claim.work {
            ClaimedWork::Compaction { job, .. } => job
                .inputs
                .iter()
                .flat_map(|(level, files)| files.iter().map(move |f| (*level as usize, f.number)))
                .find(|(level, number)| {
                    !current
                        .levels
                        .get(*level)
                        .is_some_and(|l| l.iter().any(|f| f.number == *number))
                })
                .map(|(_, number)| number),
            ClaimedWork::Flush { images, .. } => images
                .iter()
                .find(|i| !waiting.contains(&i.id()))
                .map(|i| i.id().serial),
        };
        if let Some(file) = gone {
            return Verdict::Reject {
                error: JobError::InputsGone { token, file },
                garbage: Vec::new(),
            };
        }
        if let ClaimedWork::Compaction { job, .. } = &claim.work
            && let Some(error) = overlap_at_output(current, job, &moved, result)
        {
            // Installing it would fail the version build and stop the
            // database. Its outputs are of no use to any attempt.
            return Verdict::Reject {
                error,
                garbage: outputs
                    .iter()
                    .copied()
                    .filter(|n| !moved.contains(n))
                    .collect(),
            };
        }
        let Some(claim) = self.running.remove(&token.job_id) else {
            return Verdict::Busy;
        };
        self.installing.insert(token.job_id);
        Verdict::Install(Box::new(claim))
    }
}

/// The first output of `result` that overlaps a file of `current` at the
/// job's output level (below level 0; `inputs` excepted). The pickers keep
/// concurrent jobs apart, so this means another job wrote there meanwhile.
fn overlap_at_output(
    current: &Version,
    job: &CompactionJob,
    inputs: &HashSet<u64>,
    result: &JobResult,
) -> Option<JobError> {
    let level = job.output_level as usize;
    if level == 0 {
        return None;
    }
    let files = current.levels.get(level)?;
    result
        .outputs
        .iter()
        .filter(|f| !inputs.contains(&f.number))
        .find_map(|f| {
            files
                .iter()
                .find(|g| {
                    !inputs.contains(&g.number)
                        && f.smallest_user_key() <= g.largest_user_key()
                        && g.smallest_user_key() <= f.largest_user_key()
                })
                .map(|g| JobError::OutputsOverlap {
                    token: result.token,
                    file: f.number,
                    other: g.number,
                    level: job.output_level,
                })
        })
}

/// The files a compaction may name as outputs without reserving them (its
/// own inputs, moved to the output level).
fn claim_inputs(work: &ClaimedWork) -> HashSet<u64> {
    match work {
        ClaimedWork::Compaction { job, .. } => job
            .inputs
            .iter()
            .flat_map(|(_, files)| files.iter().map(|f| f.number))
            .collect(),
        ClaimedWork::Flush { .. } => HashSet::new(),
    }
}

/// Which open of which database this is, for fencing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incarnation {
    pub db_id: o3_storage::version::DbId,
    pub incarnation: u64,
    /// Every file number below this was handed out by an earlier incarnation.
    pub first_file_number: u64,
}
