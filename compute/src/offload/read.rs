//! Reading offloaded images: a point lookup asks the memory node once for
//! every candidate image (those whose key range and bloom filter admit the
//! key), and takes the newest entry; a scan merges the images' entries on
//! the memory node and pulls them in batches, in either direction, as an
//! ordinary child of the merging iterator.

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use o3_memnode::client::ClientError;
use o3_memnode::{Direction, Found, GetRequest, KeyLookup, ScanRequest};
use o3_storage::iter::MergingIterator;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{SequenceNumber, compare_internal, make_internal_key, user_key};
use o3_storage::memtable::OwnedImageIter;
use o3_storage::{Error, Result};

use crate::offload::image::OffloadedImage;
use crate::offload::runtime::Offload;
use crate::offload::slot::{FoundEntry, Held, ImageSlot};

/// The newest entry of `key` at `snapshot` in `images` (newest image
/// first), with one delegated `get` for all that may hold it.
pub(crate) fn get(
    runtime: &Offload,
    images: &[Arc<OffloadedImage>],
    key: &[u8],
    snapshot: SequenceNumber,
) -> Result<Option<FoundEntry>> {
    let candidates: Vec<&Arc<OffloadedImage>> =
        images.iter().filter(|i| i.may_contain(key)).collect();
    let skipped = (images.len() - candidates.len()) as u64;
    if skipped > 0 {
        runtime.counters.filter_skips.fetch_add(skipped, Relaxed);
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let request = GetRequest {
        lookups: vec![KeyLookup {
            key: key.to_vec(),
            snapshot,
            images: candidates.iter().map(|i| i.remote_id()).collect(),
        }],
    };
    let start = Instant::now();
    let response = runtime
        .store
        .get(&request)
        .map_err(|e| failed(runtime, &candidates, &e))?;
    runtime.counters.delegated_gets.fetch_add(1, Relaxed);
    runtime
        .counters
        .delegated_get_micros
        .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
    let answers = response.answers.into_iter().next().unwrap_or_default();
    if answers.len() != candidates.len() {
        return Err(Error::MemoryNode {
            lost: false,
            message: format!(
                "a delegated get over {} images returned {} answers",
                candidates.len(),
                answers.len()
            ),
        });
    }
    // Images are newest first and their sequences do not overlap, so the
    // first image that holds the key decides.
    Ok(answers.into_iter().find_map(|found| match found {
        Found::Absent => None,
        Found::Tombstone { sequence, .. } => Some((sequence, None)),
        Found::Value {
            sequence, value, ..
        } => Some((sequence, Some(value))),
    }))
}

/// The error of a failed delegated read. The images are lost when the
/// node says so, and also when it no longer knows them because its session
/// changed (it restarted, or the lease expired) since they were shipped.
fn failed(runtime: &Offload, images: &[&Arc<OffloadedImage>], e: &ClientError) -> Error {
    let ids: Vec<String> = images.iter().map(|i| i.id.to_string()).collect();
    let session = runtime.store.session();
    Error::MemoryNode {
        lost: e.images_lost() || images.iter().any(|i| i.region.session != session),
        message: format!("reading {}: {e}", ids.join(", ")),
    }
}

/// The first batch of a scan; later ones double up to [`MAX_BATCH`], so a
/// short scan stays short and a long one pays few round trips.
const FIRST_BATCH: u32 = 64;
const MAX_BATCH: u32 = 4096;

/// The merged entries of offloaded images, fetched in batches from the
/// memory node: a child of the database's merging iterator. It holds its
/// images, so their regions are not released while it lives.
pub(crate) struct RemoteScan {
    runtime: Arc<Offload>,
    images: Vec<Arc<OffloadedImage>>,
    /// The images' names on the memory node (every batch asks for them).
    ids: Vec<o3_memnode::ImageId>,
    /// The slots the images were in: after the memory node lost them and
    /// they were rebuilt from the WAL, the scan goes on over the slots'
    /// local memtables.
    slots: Vec<Arc<ImageSlot>>,
    local: Option<MergingIterator<'static>>,
    snapshot: SequenceNumber,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    /// The current batch in the direction it was fetched, as (internal
    /// key, value).
    batch: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
    direction: Direction,
    /// Where the next batch in `direction` resumes; `None` when the batch
    /// is the last one.
    continuation: Option<Vec<u8>>,
    batch_size: u32,
}

impl RemoteScan {
    /// A scan of `images` at `snapshot` restricted to `[lower, upper)`.
    pub fn new(
        runtime: Arc<Offload>,
        images: Vec<(Arc<ImageSlot>, Arc<OffloadedImage>)>,
        snapshot: SequenceNumber,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> RemoteScan {
        let (slots, images): (_, Vec<Arc<OffloadedImage>>) = images.into_iter().unzip();
        RemoteScan {
            runtime,
            ids: images.iter().map(|i| i.remote_id()).collect(),
            images,
            slots,
            local: None,
            snapshot,
            lower: lower.unwrap_or_default().to_vec(),
            upper: upper.map(<[u8]>::to_vec),
            batch: Vec::new(),
            pos: 0,
            direction: Direction::Forward,
            continuation: None,
            batch_size: FIRST_BATCH,
        }
    }

    /// Replace the batch with the next one in `direction`, from `lower` /
    /// `upper` (tighter than the scan's bounds when given) or resuming
    /// after `resume_after`.
    fn fetch(
        &mut self,
        direction: Direction,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
        resume_after: Option<Vec<u8>>,
    ) -> Result<()> {
        if direction != self.direction || resume_after.is_none() {
            self.batch_size = FIRST_BATCH;
        } else {
            self.batch_size = (self.batch_size * 2).min(MAX_BATCH);
        }
        self.direction = direction;
        let request = ScanRequest {
            images: self.ids.clone(),
            lower: lower.unwrap_or_else(|| self.lower.clone()),
            upper: upper.or_else(|| self.upper.clone()),
            direction,
            limit: self.batch_size,
            snapshot: self.snapshot,
            resume_after,
        };
        self.batch.clear();
        self.pos = 0;
        self.continuation = None;
        if request
            .upper
            .as_deref()
            .is_some_and(|u| u <= &request.lower[..])
        {
            return Ok(());
        }
        let start = Instant::now();
        let response = self.runtime.store.scan(&request).map_err(|e| {
            let refs: Vec<&Arc<OffloadedImage>> = self.images.iter().collect();
            failed(&self.runtime, &refs, &e)
        });
        let response = response?;
        let c = &self.runtime.counters;
        c.delegated_scans.fetch_add(1, Relaxed);
        c.delegated_scan_micros
            .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
        self.continuation = response.continuation;
        self.batch = response
            .entries
            .into_iter()
            .map(|e| (make_internal_key(&e.user_key, e.sequence, e.kind), e.value))
            .collect();
        Ok(())
    }

    /// Step within the batch in its direction, fetching the next batch at
    /// its end.
    fn advance(&mut self) -> Result<()> {
        self.pos += 1;
        if self.pos >= self.batch.len()
            && let Some(after) = self.continuation.take()
        {
            self.fetch(self.direction, None, None, Some(after))?;
        }
        Ok(())
    }

    /// Skip entries that come before `target` in the batch's direction.
    fn skip_until(&mut self, target: &[u8]) -> Result<()> {
        let before = match self.direction {
            Direction::Forward => CmpOrdering::Less,
            Direction::Backward => CmpOrdering::Greater,
        };
        while self.valid() && compare_internal(self.key(), target) == before {
            self.advance()?;
        }
        Ok(())
    }
}

impl RemoteScan {
    /// Run `remote`; when it finds the images lost, wait (bounded) for
    /// their rebuild from the WAL and run `local` on the rebuilt memtables
    /// instead, for this and every later step. `local` gets the key the
    /// scan was on before the step.
    fn step(
        &mut self,
        remote: impl FnOnce(&mut Self) -> Result<()>,
        local: impl FnOnce(&mut MergingIterator<'static>, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        if let Some(it) = self.local.as_mut() {
            let current = it.valid().then(|| it.key().to_vec());
            return local(it, current.as_deref());
        }
        let current = self.valid().then(|| self.key().to_vec());
        match remote(self) {
            Err(e @ Error::MemoryNode { lost: true, .. }) => {
                self.runtime.recover(&e)?;
                let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
                for slot in &self.slots {
                    match slot.held() {
                        Held::Local(mem) => children.push(Box::new(mem.iter())),
                        // Shipped again since the rebuild: read it back.
                        Held::Offloaded(image) => children.push(Box::new(OwnedImageIter::new(
                            image.read_back()?,
                            &format!("{} read back", image.id),
                        )?)),
                    }
                }
                self.batch.clear();
                self.images.clear();
                let it = self.local.insert(MergingIterator::new(children));
                local(it, current.as_deref())
            }
            other => other,
        }
    }

    fn remote_seek(&mut self, target: &[u8]) -> Result<()> {
        let key = user_key(target);
        let lower = (key > self.lower.as_slice()).then(|| key.to_vec());
        self.fetch(Direction::Forward, lower, None, None)?;
        self.skip_until(target)
    }

    fn remote_seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        // Every entry of the target's user key sorts below this exclusive
        // bound, every larger user key at or above it.
        let mut bound = user_key(target).to_vec();
        bound.push(0);
        let upper = match &self.upper {
            Some(u) if u.as_slice() <= bound.as_slice() => None,
            _ => Some(bound),
        };
        self.fetch(Direction::Backward, None, upper, None)?;
        self.skip_until(target)
    }

    fn remote_next(&mut self) -> Result<()> {
        if self.direction == Direction::Forward {
            return self.advance();
        }
        let current = self.key().to_vec();
        self.remote_seek(&current)?;
        if self.valid() && compare_internal(self.key(), &current) == CmpOrdering::Equal {
            self.advance()?;
        }
        Ok(())
    }

    fn remote_prev(&mut self) -> Result<()> {
        if self.direction == Direction::Backward {
            return self.advance();
        }
        let current = self.key().to_vec();
        self.remote_seek_for_prev(&current)?;
        if self.valid() && compare_internal(self.key(), &current) == CmpOrdering::Equal {
            self.advance()?;
        }
        Ok(())
    }
}

/// Position `it` just after `current` (the entry a step started from).
fn local_next(it: &mut MergingIterator<'static>, current: Option<&[u8]>) -> Result<()> {
    let Some(current) = current else {
        return Ok(());
    };
    it.seek(current)?;
    if it.valid() && compare_internal(it.key(), current) == CmpOrdering::Equal {
        it.next()?;
    }
    Ok(())
}

/// Position `it` just before `current`.
fn local_prev(it: &mut MergingIterator<'static>, current: Option<&[u8]>) -> Result<()> {
    let Some(current) = current else {
        return Ok(());
    };
    it.seek_for_prev(current)?;
    if it.valid() && compare_internal(it.key(), current) == CmpOrdering::Equal {
        it.prev()?;
    }
    Ok(())
}

impl InternalIterator for RemoteScan {
    fn valid(&self) -> bool {
        match &self.local {
            Some(it) => it.valid(),
            None => self.pos < self.batch.len(),
        }
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.step(
            |s| s.fetch(Direction::Forward, None, None, None),
            |it, _| it.seek_to_first(),
        )
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.step(
            |s| s.fetch(Direction::Backward, None, None, None),
            |it, _| it.seek_to_last(),
        )
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.step(|s| s.remote_seek(target), |it, _| it.seek(target))
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.step(
            |s| s.remote_seek_for_prev(target),
            |it, _| it.seek_for_prev(target),
        )
    }

    fn next(&mut self) -> Result<()> {
        self.step(Self::remote_next, local_next)
    }

    fn prev(&mut self) -> Result<()> {
        self.step(Self::remote_prev, local_prev)
    }

    fn key(&self) -> &[u8] {
        match &self.local {
            Some(it) => it.key(),
            None => &self.batch[self.pos].0,
        }
    }

    fn value(&self) -> &[u8] {
        match &self.local {
            Some(it) => it.value(),
            None => &self.batch[self.pos].1,
        }
    }
}
