//! Reading offloaded images: a point lookup asks the memory node once for
//! every candidate image (those whose key range and bloom filter admit the
//! key) that no local copy, cached entry or key index answers, and takes
//! the newest entry; a scan merges the images' entries on the memory node,
//! or their key indexes here, and pulls them in batches, in either
//! direction, as an ordinary child of the merging iterator.

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use o3_memnode::client::{ClientError, ReadAt};
use o3_memnode::{Direction, Found, GetRequest, KeyLookup, ScanRequest, collect_scan};
use o3_storage::iter::MergingIterator;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{
    SequenceNumber, ValueKind, compare_internal, make_internal_key, parse_internal_key, user_key,
};
use o3_storage::memtable::{OwnedImageIter, SharedImage, decode_entry, entry_read_bound};
use o3_storage::{Error, Result};

use crate::offload::cache::CachedEntry;
use crate::offload::costs::MAX_SCAN_BATCH;
use crate::offload::image::OffloadedImage;
use crate::offload::index::{ImageIndex, IndexCursor, entry_ref};
use crate::offload::runtime::{Offload, Pullable};
use crate::offload::slot::{FoundEntry, Held, ImageSlot, copied};

/// The newest entry of `key` (whose `bloom_hash` is `hash`) at `snapshot`
/// in `candidates`, the offloaded images whose bloom filter and key range
/// admit the key, newest first; each is asked in the cheapest way the
/// policy allows:
///
/// 1. a pulled-back local copy answers locally;
/// 2. a key→offset cache entry for this very image answers with the key
///    and value it holds, or with one one-sided read of the entry,
///    verified against the key and sequence;
/// 3. otherwise one delegated `get` asks the memory node about this image
///    and every following one without a local copy, and its decisive
///    answer may enter the cache.
///
/// Why a cached entry is never stale: the cache is consulted only for the
/// newest image that may hold the key. Everything newer has been checked
/// before: the active and local sealed memtables by the caller, newer
/// offloaded images here (a bloom filter has no false negatives, so an
/// image it excludes holds no entry of the key). Images are immutable, and
/// an entry is cached only when the lookup's snapshot covered the whole
/// image (`snapshot >= entries_largest_seq`), so it is the key's newest
/// entry in that image; it is served only to snapshots at or above its
/// sequence, which see exactly it. A tag names the image in each entry and
/// changes when an image is shipped again, and an image's entries are
/// forgotten when it is released.
pub(crate) fn get(
    runtime: &Offload,
    candidates: &[Arc<OffloadedImage>],
    key: &[u8],
    hash: u64,
    snapshot: SequenceNumber,
) -> Result<Option<FoundEntry>> {
    let mut i = 0;
    while i < candidates.len() {
        let image = &candidates[i];
        if let Some(copy) = image.local_copy() {
            runtime.counters.pulled_back_gets.fetch_add(1, Relaxed);
            image.reads.fetch_add(1, Relaxed);
            let start = Instant::now();
            let found = copy.get(key, snapshot).map(copied);
            runtime.costs.pulled_get.record_time(start.elapsed());
            if found.is_some() {
                return Ok(found);
            }
            i += 1;
            continue;
        }
        let start = Instant::now();
        if let Some(found) = cached(runtime, image, key, hash, snapshot) {
            note_remote_read(runtime, image, start.elapsed());
            return Ok(Some(found));
        }
        match indexed(runtime, image, key, hash, snapshot) {
            Indexed::Absent => {
                i += 1;
                continue;
            }
            Indexed::Found(found) => {
                note_remote_read(runtime, image, start.elapsed());
                return Ok(Some(found));
            }
            Indexed::Delegate => {}
        }
        // This image (read remotely even if a pull-back just gave it a
        // copy) and the following ones without a copy or key index, in one
        // call.
        let run_end = candidates[i + 1..]
            .iter()
            .position(|c| c.has_local_copy() || c.has_index())
            .map_or(candidates.len(), |n| i + 1 + n);
        let run = &candidates[i..run_end];
        let start = Instant::now();
        let answers = delegated_get(runtime, run, key, snapshot)?;
        let share = start.elapsed() / run.len() as u32;
        for image in run {
            note_remote_read(runtime, image, share);
        }
        // Images are newest first and their sequences do not overlap, so
        // the first image that holds the key decides.
        for (k, found) in answers.into_iter().enumerate() {
            let (sequence, offset, value) = match found {
                Found::Absent => continue,
                Found::Tombstone { sequence, offset } => (sequence, offset, None),
                Found::Value {
                    sequence,
                    offset,
                    value,
                } => (sequence, offset, Some(value)),
            };
            if k == 0 {
                admit(
                    runtime, &run[0], key, hash, snapshot, sequence, offset, &value,
                );
            }
            return Ok(Some((sequence, value)));
        }
        if let Some(cache) = &runtime.cache {
            cache.count(hash);
        }
        i = run_end;
    }
    Ok(None)
}

/// What an image's key index says about a lookup.
enum Indexed {
    /// The image holds no entry of the key visible at the snapshot.
    Absent,
    /// The entry, read with one one-sided read (a tombstone needs none).
    Found(FoundEntry),
    /// No index, the one-sided read costs more than delegating (adaptive
    /// costs), or it failed: ask the memory node.
    Delegate,
}

/// Answer a lookup from `image`'s key index (after the cache, which finds
/// a hot key's entry faster than the index's binary search, and which the
/// entry found is offered to). Never stale for the same reason as the
/// cache: the caller asks images newest first, and images are immutable.
fn indexed(
    runtime: &Offload,
    image: &OffloadedImage,
    key: &[u8],
    hash: u64,
    snapshot: SequenceNumber,
) -> Indexed {
    let Some(index) = image.index() else {
        return Indexed::Delegate;
    };
    let c = &runtime.counters;
    let Some(found) = index.find(key, snapshot) else {
        c.index_skips.fetch_add(1, Relaxed);
        return Indexed::Absent;
    };
    let (sequence, offset, value_len) = (found.sequence, found.offset, found.value_len);
    if found.kind == ValueKind::Tombstone {
        c.indexed_gets.fetch_add(1, Relaxed);
        return Indexed::Found((sequence, None));
    }
    if !runtime.costs.use_cached() {
        return Indexed::Delegate;
    }
    let entry = CachedEntry {
        tag: image.tag,
        offset,
        read_len: entry_read_bound(key.len(), value_len as usize).map_or(u32::MAX, |n| n as u32),
        sequence,
        held: None,
    };
    match read_entry(runtime, image, key, &entry) {
        Ok(found) => {
            c.indexed_gets.fetch_add(1, Relaxed);
            admit(
                runtime, image, key, hash, snapshot, sequence, offset, &found.1,
            );
            Indexed::Found(found)
        }
        Err(reason) => {
            // Delegation answers instead, and reports a lost image as such.
            tracing::debug!("indexed entry of {} unusable: {reason}", image.id);
            Indexed::Delegate
        }
    }
}

/// The entry of `key` the cache holds for `image`: the key and value it
/// holds, or else read with one one-sided read when the policy takes that
/// path (and then held too, when the policy holds values now); `None` to
/// delegate.
fn cached(
    runtime: &Offload,
    image: &OffloadedImage,
    key: &[u8],
    hash: u64,
    snapshot: SequenceNumber,
) -> Option<FoundEntry> {
    let cache = runtime.cache.as_ref()?;
    let entry = match cache.get(hash) {
        Some(e) if e.tag == image.tag && snapshot >= e.sequence => e,
        _ => {
            runtime.counters.cache_misses.fetch_add(1, Relaxed);
            return None;
        }
    };
    if let Some(held) = &entry.held {
        if *held.key != *key {
            // Another key with the same hash.
            runtime.counters.cache_misses.fetch_add(1, Relaxed);
            return None;
        }
        runtime.counters.cache_hits.fetch_add(1, Relaxed);
        runtime.counters.cache_value_hits.fetch_add(1, Relaxed);
        return Some((entry.sequence, held.value.as_deref().map(<[u8]>::to_vec)));
    }
    if runtime.adaptive() && !runtime.costs.use_cached() {
        return None;
    }
    match read_entry(runtime, image, key, &entry) {
        Ok(found) => {
            runtime.counters.cache_hits.fetch_add(1, Relaxed);
            if runtime.holds_values() {
                cache.hold(hash, &entry, key, found.1.as_deref());
            }
            Some(found)
        }
        Err(reason) => {
            // Delegation answers instead (and reports a lost image as
            // such); the entry goes.
            tracing::debug!("cached entry of {} unusable: {reason}", image.id);
            runtime.counters.cache_stale.fetch_add(1, Relaxed);
            cache.remove(hash, entry.tag);
            None
        }
    }
}

/// Read the cached `entry` of `key` in `image` one-sidedly and check that
/// it is that entry.
fn read_entry(
    runtime: &Offload,
    image: &OffloadedImage,
    key: &[u8],
    entry: &CachedEntry,
) -> std::result::Result<FoundEntry, String> {
    let available = image.len.saturating_sub(u64::from(entry.offset));
    let len = u64::from(entry.read_len).min(available) as usize;
    // Most entries fit on the stack: no allocation for the read.
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let node: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let start = Instant::now();
    runtime
        .store
        .read(&image.region, u64::from(entry.offset), node)
        .map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    let c = &runtime.counters;
    c.one_sided_reads.fetch_add(1, Relaxed);
    c.one_sided_read_nanos
        .fetch_add(elapsed.as_nanos() as u64, Relaxed);
    runtime.costs.one_sided_get.record_time(elapsed);
    let (ikey, value) = decode_entry(node, MAX_ENTRY_HEIGHT, "a one-sided read", entry.offset)
        .map_err(|e| format!("{}: {e}", image.id))?;
    let parsed = parse_internal_key(ikey).map_err(|e| e.to_string())?;
    if parsed.user_key != key || parsed.sequence != entry.sequence {
        return Err(format!(
            "offset {} holds sequence {} of another key or version",
            entry.offset, parsed.sequence
        ));
    }
    Ok(match parsed.kind {
        ValueKind::Value => (parsed.sequence, Some(value.to_vec())),
        ValueKind::Tombstone => (parsed.sequence, None),
    })
}

/// The tallest node a one-sided read accepts (as the image reader does).
const MAX_ENTRY_HEIGHT: usize = 32;

/// Offer the decisive answer of a delegated lookup to the cache: only an
/// entry that is the key's newest in its image (the lookup's snapshot
/// covered the image) may be cached.
#[allow(clippy::too_many_arguments)]
fn admit(
    runtime: &Offload,
    image: &OffloadedImage,
    key: &[u8],
    hash: u64,
    snapshot: SequenceNumber,
    sequence: SequenceNumber,
    offset: u32,
    value: &Option<Vec<u8>>,
) {
    let Some(cache) = &runtime.cache else { return };
    let read_len = entry_read_bound(key.len(), value.as_ref().map_or(0, Vec::len))
        .and_then(|n| u32::try_from(n).ok());
    let (Some(read_len), true) = (read_len, snapshot >= image.entries_largest_seq) else {
        cache.count(hash);
        return;
    };
    let entry = CachedEntry {
        tag: image.tag,
        offset,
        read_len,
        sequence,
        held: None,
    };
    let keep = runtime.holds_values().then_some((key, value.as_deref()));
    if cache.offer(hash, entry, keep) {
        runtime.counters.cache_admissions.fetch_add(1, Relaxed);
        runtime.lend_index_room();
    }
}

/// One delegated `get` of `key` over `candidates`: an answer per image.
fn delegated_get(
    runtime: &Offload,
    candidates: &[Arc<OffloadedImage>],
    key: &[u8],
    snapshot: SequenceNumber,
) -> Result<Vec<Found>> {
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
        .map_err(|e| failed(runtime, candidates, &e))?;
    let elapsed = start.elapsed();
    runtime.counters.delegated_gets.fetch_add(1, Relaxed);
    runtime
        .counters
        .delegated_get_nanos
        .fetch_add(elapsed.as_nanos() as u64, Relaxed);
    runtime.costs.delegated_get.record_time(elapsed);
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
    Ok(answers)
}

/// How many remote reads of an image pass between two looks at whether to
/// pull it back.
const LOOK_EVERY: u64 = 64;

/// Count a remote read of `image`; under the adaptive policy, every
/// [`LOOK_EVERY`] reads, ask for it to be pulled back into local memory
/// when its read rate makes that cheaper than reading it remotely (see
/// [`crate::offload::costs::ReadCosts::worth_pulling`]). A shipping thread
/// pulls it ([`Offload::pull_requested`]): no reader waits for a pull.
pub(crate) fn note_remote_read(runtime: &Offload, image: &Arc<OffloadedImage>, cost: Duration) {
    image.remote_cost.record_mixed(cost);
    let reads = image.reads.fetch_add(1, Relaxed) + 1;
    if !runtime.adaptive()
        || runtime.options.pull_back_bytes < image.len
        || !reads.is_multiple_of(LOOK_EVERY)
    {
        return;
    }
    let rate = image.read_rate();
    let cost = image.remote_cost.get().unwrap_or(0.0);
    if image.has_local_copy() || !runtime.costs.worth_pulling(image.len, rate, cost) {
        return;
    }
    let image: Arc<dyn Pullable> = image.clone();
    runtime.request_pull(rate, &image);
}

/// Keep `copy` of `image` as its pulled-back copy if the budget has room
/// without dropping another.
fn offer_copy(runtime: &Offload, image: &Arc<OffloadedImage>, copy: &SharedImage) {
    let _turn = runtime.pulling.lock();
    let budget = runtime.options.pull_back_bytes;
    if runtime.pulled_bytes.load(Relaxed) + image.len <= budget
        && image.keep_local_copy(copy.clone())
    {
        runtime.pulled_bytes.fetch_add(image.len, Relaxed);
        let image: Arc<dyn Pullable> = image.clone();
        runtime.pulled.lock().push(Arc::downgrade(&image));
        runtime.counters.images_pulled_back.fetch_add(1, Relaxed);
    }
}

/// The error of a failed delegated read. The images are lost when the
/// node says so, and also when it no longer knows them because its session
/// changed (it restarted, or the lease expired) since they were shipped.
fn failed(runtime: &Offload, images: &[Arc<OffloadedImage>], e: &ClientError) -> Error {
    let ids: Vec<String> = images.iter().map(|i| i.id.to_string()).collect();
    let session = runtime.store.session();
    Error::MemoryNode {
        lost: e.images_lost() || images.iter().any(|i| i.region.session != session),
        message: format!("reading {}: {e}", ids.join(", ")),
    }
}

/// The first batch of a scan (under the adaptive policy, once costs are
/// measured: [`crate::offload::costs::ReadCosts::first_scan_batch`]); later ones double up to
/// [`MAX_SCAN_BATCH`], so a short scan stays short and a long one pays few
/// round trips.
const FIRST_BATCH: u32 = 64;

/// The first batch of a scan over key indexes: smaller, as a batch costs
/// one-sided reads of its values but no memory-node work per call.
const FIRST_INDEXED_BATCH: u32 = 32;

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
    /// When every image has a key index: their indexes merged, from which
    /// each batch is chosen here and its values read one-sidedly
    /// ([`scan_indexed`]) instead of delegated.
    indexed: Option<MergingIterator<'static>>,
    /// The direction and continuation of the last indexed batch: `indexed`
    /// is still on the entry after it, so the next batch in that direction
    /// goes on without seeking every index again.
    indexed_resume: Option<(Direction, Vec<u8>)>,
    snapshot: SequenceNumber,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    /// The current batch in the direction it was fetched.
    batch: Batch,
    pos: usize,
    direction: Direction,
    /// Where the next batch in `direction` resumes; `None` when the batch
    /// is the last one.
    continuation: Option<Vec<u8>>,
    batch_size: u32,
    first_batch: u32,
    /// Entries fetched through delegation so far, and stepped over.
    fetched: u64,
    consumed: u64,
    /// Under the adaptive policy: after this many delegated entries,
    /// reading the images whole would have been cheaper, so the scan does
    /// that and goes on locally.
    whole_after: Option<u64>,
    /// Entries the scan's bounds suggest it will read (0 when unbounded).
    expected: u64,
}

impl RemoteScan {
    /// A scan of `images` at `snapshot` restricted to `[lower, upper)`;
    /// through `indexes` (the images' key indexes, in the same order) when
    /// given.
    pub fn new(
        runtime: Arc<Offload>,
        images: Vec<(Arc<ImageSlot>, Arc<OffloadedImage>)>,
        indexes: Option<Vec<Arc<ImageIndex>>>,
        snapshot: SequenceNumber,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> RemoteScan {
        let (slots, images): (_, Vec<Arc<OffloadedImage>>) = images.into_iter().unzip();
        let indexed = indexes.map(|indexes| {
            MergingIterator::new(
                indexes
                    .into_iter()
                    .enumerate()
                    .map(|(n, index)| {
                        Box::new(IndexCursor::new(index, n as u32)) as Box<dyn InternalIterator>
                    })
                    .collect(),
            )
        });
        let adaptive = runtime.adaptive();
        let first_batch = match (&indexed, adaptive) {
            (Some(_), _) => FIRST_INDEXED_BATCH,
            (None, true) => runtime.costs.first_scan_batch(FIRST_BATCH),
            (None, false) => FIRST_BATCH,
        };
        let bytes: u64 = images.iter().map(|i| i.len).sum();
        let whole_after = (adaptive && indexed.is_none())
            .then(|| runtime.costs.whole_image_after(bytes))
            .flatten();
        let expected = match (lower, upper) {
            (_, Some(upper)) => images
                .iter()
                .map(|i| (i.entries as f64 * i.share_of(lower, upper)) as u64)
                .sum(),
            _ => 0,
        };
        RemoteScan {
            runtime,
            ids: images.iter().map(|i| i.remote_id()).collect(),
            images,
            slots,
            local: None,
            indexed,
            indexed_resume: None,
            snapshot,
            lower: lower.unwrap_or_default().to_vec(),
            upper: upper.map(<[u8]>::to_vec),
            batch: Vec::new(),
            pos: 0,
            direction: Direction::Forward,
            continuation: None,
            batch_size: first_batch,
            first_batch,
            fetched: 0,
            consumed: 0,
            whole_after,
            expected,
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
            self.batch_size = self.first_batch;
        } else {
            self.batch_size = (self.batch_size * 2).min(MAX_SCAN_BATCH);
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
        let (batch, continuation) = match self.indexed.as_mut() {
            Some(merged) => {
                let resume = self.indexed_resume.take();
                let positioned = resume.is_some_and(|(d, after)| {
                    d == direction && request.resume_after.as_ref() == Some(&after)
                });
                let (batch, continuation) =
                    scan_indexed(&self.runtime, &self.images, merged, positioned, &request)?;
                self.indexed_resume = continuation.clone().map(|c| (direction, c));
                (batch, continuation)
            }
            None => {
                let response = self
                    .runtime
                    .store
                    .scan(&request)
                    .map_err(|e| failed(&self.runtime, &self.images, &e))?;
                let elapsed = start.elapsed();
                let c = &self.runtime.counters;
                c.delegated_scans.fetch_add(1, Relaxed);
                c.delegated_scan_micros
                    .fetch_add(elapsed.as_micros() as u64, Relaxed);
                self.runtime
                    .costs
                    .record_scan(response.entries.len(), elapsed);
                let batch = response
                    .entries
                    .into_iter()
                    .map(|e| (make_internal_key(&e.user_key, e.sequence, e.kind), e.value))
                    .collect();
                (batch, response.continuation)
            }
        };
        let elapsed = start.elapsed();
        self.fetched += batch.len() as u64;
        let share = elapsed / self.images.len().max(1) as u32;
        for image in &self.images {
            note_remote_read(&self.runtime, image, share);
        }
        self.continuation = continuation;
        self.batch = batch;
        Ok(())
    }

    /// Step within the batch in its direction, fetching the next batch at
    /// its end.
    fn advance(&mut self) -> Result<()> {
        self.pos += 1;
        self.consumed += 1;
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
        if self.whole_due() {
            match self.read_whole() {
                Ok(it) => {
                    let it = self.local.insert(it);
                    return local(it, current.as_deref());
                }
                Err(e) => {
                    tracing::debug!("a scan reading its offloaded images whole: {e}");
                    self.whole_after = None;
                }
            }
        }
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
                self.indexed = None;
                let it = self.local.insert(MergingIterator::new(children));
                local(it, current.as_deref())
            }
            other => other,
        }
    }

    /// Whether delegating this scan's entries has cost (or, by its bounds,
    /// will cost) more than reading its images whole.
    fn whole_due(&self) -> bool {
        self.whole_after
            .is_some_and(|t| self.fetched >= t || self.expected >= t)
    }

    /// The scan's images read whole (their pulled-back copies where they
    /// have one), merged for local iteration. A copy is kept as the image's
    /// pulled-back copy when `pull_back_bytes` has room.
    fn read_whole(&mut self) -> Result<MergingIterator<'static>> {
        let start = Instant::now();
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        let mut bytes = 0;
        for image in &self.images {
            let copy = match image.local_copy() {
                Some(copy) => copy,
                None => {
                    let copy = image.read_whole()?;
                    bytes += image.len;
                    offer_copy(&self.runtime, image, &copy);
                    copy
                }
            };
            children.push(Box::new(copy.iter()));
        }
        let c = &self.runtime.counters;
        c.scans_read_whole.fetch_add(1, Relaxed);
        c.scan_whole_bytes.fetch_add(bytes, Relaxed);
        c.scan_whole_micros
            .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
        self.batch.clear();
        self.images.clear();
        self.indexed = None;
        Ok(MergingIterator::new(children))
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

impl Drop for RemoteScan {
    fn drop(&mut self) {
        if self.fetched > 0 {
            self.runtime
                .costs
                .scan_consumed
                .record(self.consumed.max(1) as f64);
        }
    }
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

/// A scan batch: (internal key, value) pairs in the batch's direction.
type Batch = Vec<(Vec<u8>, Vec<u8>)>;

/// An entry a scan over indexes returns, before its value is read.
struct Pending {
    /// Its internal key, as the index has it.
    key: Vec<u8>,
    image: usize,
    offset: u32,
    /// Bytes to read at `offset` (0 for a tombstone: nothing to read).
    read_len: usize,
}

/// The batch `request` asks for from `images`, every one indexed, with
/// `merged` a merge of their [`IndexCursor`]s (image numbers their
/// positions in `images`): the entries are chosen here, exactly as the
/// memory node would choose them ([`collect_scan`]), and their values come
/// in one batch of one-sided reads. Each entry read is checked to be the
/// one its index names (its whole internal key). Returns the batch as
/// (internal key, value) pairs and the continuation.
///
/// `positioned`: `merged` is where the previous call left it, and
/// `request` resumes after that call's continuation.
fn scan_indexed(
    runtime: &Offload,
    images: &[Arc<OffloadedImage>],
    merged: &mut dyn InternalIterator,
    positioned: bool,
    request: &ScanRequest,
) -> Result<(Batch, Option<Vec<u8>>)> {
    let start = Instant::now();
    let corrupt = |image: &OffloadedImage, offset: u32, what: &str| {
        Error::corruption(format!("{} (key index)", image.id), offset as u64, what)
    };
    // An entry the index places outside its image (never, short of a bug).
    let mut misplaced = None;
    let (pending, continuation) = collect_scan(request, merged, positioned, |key, value| {
        let (image, offset, value_len) = entry_ref(value);
        let read_len = match (key.kind, images.get(image)) {
            (ValueKind::Tombstone, _) => 0,
            (ValueKind::Value, Some(img)) if u64::from(offset) < img.len => {
                let available = (img.len - u64::from(offset)) as usize;
                entry_read_bound(key.user_key.len(), value_len as usize)
                    .unwrap_or(usize::MAX)
                    .min(available)
            }
            (ValueKind::Value, _) => {
                misplaced.get_or_insert((image, offset));
                0
            }
        };
        Pending {
            key: make_internal_key(key.user_key, key.sequence, key.kind),
            image,
            offset,
            read_len,
        }
    })?;
    if let Some((image, offset)) = misplaced {
        return Err(match images.get(image) {
            Some(img) => corrupt(
                img,
                offset,
                "the index places an entry past the image's end",
            ),
            None => Error::InvalidArgument(format!(
                "an indexed scan named image {image} of {}",
                images.len()
            )),
        });
    }
    let mut space = vec![0u8; pending.iter().map(|p| p.read_len).sum()];
    let mut reads = Vec::new();
    let mut rest = space.as_mut_slice();
    for p in pending.iter().filter(|p| p.read_len > 0) {
        let (buf, tail) = rest.split_at_mut(p.read_len);
        rest = tail;
        reads.push(ReadAt {
            region: &images[p.image].region,
            offset: u64::from(p.offset),
            buf,
        });
    }
    let read = reads.len() as u64;
    if read > 0 {
        runtime
            .store
            .read_many(&mut reads)
            .map_err(|e| failed(runtime, images, &e))?;
    }
    drop(reads);
    let mut batch = Vec::with_capacity(pending.len());
    let mut at = 0;
    for p in pending {
        let value = if p.read_len == 0 {
            Vec::new()
        } else {
            let node = &space[at..at + p.read_len];
            at += p.read_len;
            let (ikey, value) = decode_entry(node, MAX_ENTRY_HEIGHT, "an indexed scan", p.offset)?;
            if ikey != p.key.as_slice() {
                return Err(corrupt(
                    &images[p.image],
                    p.offset,
                    "the entry read is not the one the index names",
                ));
            }
            value.to_vec()
        };
        batch.push((p.key, value));
    }
    let c = &runtime.counters;
    c.indexed_scans.fetch_add(1, Relaxed);
    c.indexed_scan_reads.fetch_add(read, Relaxed);
    c.indexed_scan_micros
        .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
    Ok((batch, continuation))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use o3_memnode::MemoryNode;
    use o3_memnode::client::Direct;
    use o3_storage::env::FaultInjectingFs;
    use o3_storage::sst::bloom_hash;

    use super::*;
    use crate::offload::cache::CachedEntry;
    use crate::{CacheValues, Db, DbOptions, MemoryNodeChoice, OffloadOptions, ReadPolicy};

    /// A database offloading every sealed memtable, caching every key read
    /// remotely (offsets only), flushes held back.
    fn open(store: Arc<Direct>) -> Db {
        open_with(store, ReadPolicy::Cache, 0)
    }

    /// As [`open`], under `policy` with `index_bytes` for key indexes.
    fn open_with(store: Arc<Direct>, policy: ReadPolicy, index_bytes: u64) -> Db {
        open_caching(store, policy, index_bytes, CacheValues::Off)
    }

    /// As [`open_with`], with cache entries holding values as `values` says.
    fn open_caching(
        store: Arc<Direct>,
        policy: ReadPolicy,
        index_bytes: u64,
        values: CacheValues,
    ) -> Db {
        open_adjusted(store, |o| {
            o.read_policy = policy;
            o.index_bytes = index_bytes;
            o.cache_values = values;
        })
    }

    /// A database offloading every sealed memtable, caching every key read
    /// remotely, flushes held back, with `adjust`'s changes to the
    /// offloading options.
    fn open_adjusted(store: Arc<Direct>, adjust: impl FnOnce(&mut OffloadOptions)) -> Db {
        let mut offload = OffloadOptions {
            memory_node: MemoryNodeChoice::Store(store),
            max_local_sealed_memtables: 0,
            min_memtables_to_merge: 1000,
            offset_cache_bytes: 64 << 10,
            cache_admit_after: 1,
            ..OffloadOptions::default()
        };
        adjust(&mut offload);
        let options = DbOptions {
            storage: Arc::new(FaultInjectingFs::new()),
            write_buffer_size: 4096,
            disable_auto_compactions: true,
            max_total_wal_size: 64 << 20,
            max_unflushed_bytes: 64 << 20,
            idle_compaction_after: Some(Duration::from_secs(3600)),
            offload: Some(offload),
            ..DbOptions::default()
        };
        Db::open(Path::new("/db"), options).expect("open")
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key{i:04}").into_bytes()
    }

    fn value(i: u32) -> Vec<u8> {
        format!("value-{i}-{}", "v".repeat(i as usize % 40)).into_bytes()
    }

    fn cached(db: &Db, key: &[u8]) -> Option<CachedEntry> {
        let offload = db.inner.offload.as_ref().expect("offloading");
        offload
            .cache
            .as_ref()
            .expect("a cache")
            .get(bloom_hash(key))
    }

    /// Replace the cache's entry of `key` with `forged`, as a bug or a hash
    /// collision could leave it.
    fn forge(db: &Db, key: &[u8], forged: CachedEntry) {
        let offload = db.inner.offload.as_ref().expect("offloading");
        let cache = offload.cache.as_ref().expect("a cache");
        let keep = forged.held.as_ref().map(|h| (&*h.key, h.value.as_deref()));
        assert!(
            cache.offer(bloom_hash(key), forged.clone(), keep),
            "forged entry taken"
        );
    }

    fn direct() -> Arc<Direct> {
        Arc::new(Direct::new(Arc::new(
            MemoryNode::with_capacity(64 << 20).expect("memory node"),
        )))
    }

    /// Write keys `0..n` and wait until every sealed memtable is shipped.
    fn fill_and_offload(db: &Db, n: u32) {
        for i in 0..n {
            db.put(&key(i), &value(i)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.stats().offload.local_sealed_memtables > 0 {
            assert!(Instant::now() < deadline, "sealed memtables never shipped");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn filters_rule_out_images_without_asking_the_memory_node() {
        let db = open(direct());
        fill_and_offload(&db, 400);
        let s = db.stats().offload;
        assert!(s.images_offloaded >= 4, "{s:?}");
        // A key written nowhere: every image's filter is asked, nearly all
        // rule it out (10 bits a key: a false positive is rare), and only
        // what they admit is delegated.
        assert_eq!(db.get(b"key9999x").unwrap(), None);
        let after = db.stats().offload;
        let skipped = after.filter_skips - s.filter_skips;
        let asked = after.delegated_gets - s.delegated_gets;
        assert!(
            skipped + 1 >= s.images_offloaded && skipped <= s.images_offloaded,
            "{skipped} of {} images ruled out",
            s.images_offloaded
        );
        assert!(asked <= s.images_offloaded - skipped, "{asked} delegated");
        db.close().unwrap();
    }

    #[test]
    fn cached_entries_of_a_lost_memory_node_fall_back_and_go() {
        let store = direct();
        let db = open(store.clone());
        fill_and_offload(&db, 400);
        let hot = key(5);
        for _ in 0..2 {
            assert_eq!(db.get(&hot).unwrap(), Some(value(5)));
        }
        let before = cached(&db, &hot).expect("cached");
        // A key read before the loss and not after.
        let cold = key(6);
        assert_eq!(db.get(&cold).unwrap(), Some(value(6)));
        let cold_before = cached(&db, &cold).expect("cached");
        let s = db.stats().offload;
        assert!(s.cache_hits >= 1, "{s:?}");
        // The memory node dies and comes back empty: the entry's one-sided
        // read fails, the lookup falls back, finds the images lost, and
        // answers from memtables rebuilt from the WAL.
        store.lose_everything(false);
        // The shipping threads' probe (every 500 ms) may find the loss
        // first; then the lookup never meets the entry.
        let found_first = db.stats().offload.images_rebuilt > 0;
        assert_eq!(db.get(&hot).unwrap(), Some(value(5)));
        let s = db.stats().offload;
        if !found_first {
            assert_eq!(s.cache_stale, 1, "{s:?}");
        }
        for i in (0..400).step_by(7) {
            assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
        }
        // No entry about a lost image is left once the rebuilt memtables
        // are shipped again (under new tags) and read.
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.stats().offload.local_sealed_memtables > 0 {
            assert!(Instant::now() < deadline, "rebuilt memtables never shipped");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(db.get(&hot).unwrap(), Some(value(5)));
        assert!(
            cached(&db, &hot).is_none_or(|e| e.tag != before.tag),
            "an entry of a lost image is still cached"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while cached(&db, &cold).is_some_and(|e| e.tag == cold_before.tag) {
            assert!(
                Instant::now() < deadline,
                "the entry of a key of a lost image was never forgotten"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        db.close().unwrap();
    }

    #[test]
    fn a_wrong_cache_entry_fails_its_verification_and_is_never_served() {
        let db = open(direct());
        fill_and_offload(&db, 400);
        // Two keys of the same image, both read remotely and cached.
        let (a, b) = (0..399)
            .map(|i| (key(i), key(i + 1)))
            .find(|(a, b)| {
                for k in [a, b] {
                    db.get(k).unwrap();
                }
                matches!((cached(&db, a), cached(&db, b)), (Some(x), Some(y)) if x.tag == y.tag)
            })
            .expect("two neighbouring keys cached from one image");
        let (ea, eb) = (cached(&db, &a).unwrap(), cached(&db, &b).unwrap());
        let index = |k: &[u8]| -> u32 { std::str::from_utf8(&k[3..]).unwrap().parse().unwrap() };
        let forgeries = [
            // Another key's entry (a hash collision would look like this).
            CachedEntry {
                offset: eb.offset,
                read_len: eb.read_len,
                ..ea.clone()
            },
            // The right place with another sequence (another version).
            CachedEntry {
                sequence: ea.sequence.saturating_sub(1),
                ..ea.clone()
            },
            // Inside an entry: garbage to the decoder.
            CachedEntry {
                offset: ea.offset + 3,
                ..ea.clone()
            },
            // Past the image's end.
            CachedEntry {
                offset: u32::MAX - 64,
                ..ea.clone()
            },
        ];
        for forged in forgeries {
            forge(&db, &a, forged.clone());
            let stale = db.stats().offload.cache_stale;
            assert_eq!(
                db.get(&a).unwrap(),
                Some(value(index(&a))),
                "{forged:?} served"
            );
            let s = db.stats().offload;
            assert_eq!(s.cache_stale, stale + 1, "{forged:?} not caught: {s:?}");
            // The forged entry is gone; the delegated answer cached the
            // right one again, and it serves.
            assert_eq!(cached(&db, &a), Some(ea.clone()), "after {forged:?}");
            let hits = db.stats().offload.cache_hits;
            assert_eq!(db.get(&a).unwrap(), Some(value(index(&a))));
            assert_eq!(db.stats().offload.cache_hits, hits + 1);
        }
        db.close().unwrap();
    }

    #[test]
    fn a_held_value_answers_a_hit_without_a_remote_read_and_only_for_its_key() {
        let db = open_caching(direct(), ReadPolicy::Cache, 0, CacheValues::On);
        fill_and_offload(&db, 400);
        let (a, b) = (key(17), key(18));
        for k in [&a, &b] {
            assert_eq!(db.get(k).unwrap(), Some(value(index_of(k))));
        }
        let ea = cached(&db, &a).expect("cached with its value");
        let held = ea.held.clone().expect("the value is held");
        assert_eq!(&*held.key, &a[..]);
        assert_eq!(held.value.as_deref(), Some(&value(17)[..]));
        let before = db.stats().offload;
        for _ in 0..5 {
            assert_eq!(db.get(&a).unwrap(), Some(value(17)));
        }
        let after = db.stats().offload;
        assert_eq!(
            after.cache_value_hits,
            before.cache_value_hits + 5,
            "{after:?}"
        );
        assert_eq!(after.one_sided_reads, before.one_sided_reads, "{after:?}");
        assert_eq!(after.delegated_gets, before.delegated_gets, "{after:?}");
        // Another key's key and value under `a`'s hash (a collision would
        // look like this): a miss, and `a`'s own answer.
        let eb = cached(&db, &b).expect("cached");
        forge(
            &db,
            &a,
            CachedEntry {
                held: eb.held.clone(),
                ..ea.clone()
            },
        );
        let misses = db.stats().offload.cache_misses;
        assert_eq!(db.get(&a).unwrap(), Some(value(17)));
        assert_eq!(db.stats().offload.cache_misses, misses + 1);
        // A newer version in the memtable comes first; once that is
        // offloaded and read, the newer image's entry replaces the old.
        db.put(&a, b"newer").unwrap();
        assert_eq!(db.get(&a).unwrap(), Some(b"newer".to_vec()));
        for i in 0..200u32 {
            db.put(format!("pad{i:04}").as_bytes(), &value(i)).unwrap();
        }
        fill_and_offload(&db, 0);
        assert!(db.stats().offload.images_offloaded > before.images_offloaded);
        db.get(&a).unwrap();
        let newer = cached(&db, &a).expect("cached");
        assert_ne!(newer.tag, ea.tag, "{newer:?}");
        assert_eq!(db.get(&a).unwrap(), Some(b"newer".to_vec()));
        db.close().unwrap();
    }

    #[test]
    fn a_full_cache_of_values_borrows_the_index_room_until_a_scan_needs_it() {
        // Room for a few hundred of the test's entries with their values.
        let cache_bytes = 64 << 10;
        let room = 1 << 20;
        let db = open_adjusted(direct(), |o| {
            o.read_policy = ReadPolicy::Adaptive;
            o.cache_values = CacheValues::On;
            o.offset_cache_bytes = cache_bytes;
            o.index_bytes = room;
            o.pull_back_bytes = 0;
        });
        let n = 1000;
        fill_and_offload(&db, n);
        let s = db.stats().offload;
        assert!(s.images_indexed > 0 && s.index_bytes > 0, "{s:?}");
        assert_eq!(s.index_room_lendings, 0, "{s:?}");
        // Lookups fill the cache with values; no scan ever ran: the index
        // room goes to the cache, and every index with it.
        for _ in 0..2 {
            for i in 0..n {
                assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)));
            }
        }
        let s = db.stats().offload;
        assert_eq!(s.index_room_lendings, 1, "{s:?}");
        assert_eq!(s.index_room_lent, room, "{s:?}");
        assert_eq!(s.index_bytes, 0, "{s:?}");
        assert!(s.cache_bytes > cache_bytes, "the cache grew: {s:?}");
        assert!(s.cache_bytes <= cache_bytes + room, "{s:?}");
        assert!(s.cache_value_hits > 0, "{s:?}");
        // A scan takes the room back; it answers through delegation.
        let all: Vec<(Vec<u8>, Vec<u8>)> = db
            .range(b"key".to_vec()..b"kez".to_vec())
            .map(|r| r.unwrap())
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = (0..n).map(|i| (key(i), value(i))).collect();
        assert_eq!(all, want);
        let s = db.stats().offload;
        assert_eq!(s.index_room_lent, 0, "{s:?}");
        assert!(s.cache_bytes <= cache_bytes, "the cache shrank: {s:?}");
        assert!(s.delegated_scans > 0, "{s:?}");
        // Images shipped from now on get indexes again, and lookups right
        // after a scan do not lend the room again.
        for i in 0..200u32 {
            db.put(format!("pad{i:04}").as_bytes(), &value(i)).unwrap();
        }
        fill_and_offload(&db, 0);
        for i in 0..n {
            assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)));
        }
        let after = db.stats().offload;
        assert!(after.images_indexed > s.images_indexed, "{after:?}");
        assert!(after.index_bytes > 0, "{after:?}");
        assert_eq!(after.index_room_lendings, 1, "{after:?}");
        db.close().unwrap();
    }

    fn index_of(k: &[u8]) -> u32 {
        std::str::from_utf8(&k[3..]).unwrap().parse().unwrap()
    }

    /// A database offloading every sealed memtable under the adaptive
    /// policy, with room for every image's key index, flushes held back.
    fn open_indexed(store: Arc<Direct>) -> Db {
        open_with(store, ReadPolicy::Adaptive, 1 << 20)
    }

    /// The offloaded images of `db`'s sealed memtables.
    fn offloaded(db: &Db) -> Vec<Arc<OffloadedImage>> {
        let st = db.inner.state.lock();
        st.shards
            .iter()
            .flat_map(|s| s.sealed.iter())
            .filter_map(|x| match x.slot.held() {
                Held::Offloaded(image) => Some(image),
                Held::Local(_) => None,
            })
            .collect()
    }

    /// An index that does not match its image (what a bug in building it
    /// would leave), two ways: every key pointed at the next key's entry
    /// (real entries, so only the key and sequence check can tell), and an
    /// index of the same keys written in another order at other sequences
    /// (offsets inside entries or past the image). The scan fails with an
    /// error naming corruption instead of returning what it read.
    #[test]
    fn an_index_that_does_not_match_its_image_fails_the_scan() {
        use o3_memnode::{Direction, ScanRequest};
        use o3_storage::iter::MergingIterator;
        let db = open_indexed(direct());
        fill_and_offload(&db, 400);
        let images = offloaded(&db);
        assert!(images.len() >= 4, "{} images", images.len());
        assert!(images.iter().all(|i| i.index().is_some()), "all indexed");
        // Through the right indexes, a scan reads everything.
        let before = db.stats().offload.indexed_scans;
        let all: Vec<_> = db.range(..).collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), 400);
        assert!(db.stats().offload.indexed_scans > before);
        let runtime = db.inner.offload.as_ref().expect("offloading");
        let request = ScanRequest {
            images: Vec::new(),
            lower: Vec::new(),
            upper: None,
            direction: Direction::Forward,
            limit: 64,
            snapshot: u64::MAX >> 8,
            resume_after: None,
        };
        let scan = |image: &Arc<OffloadedImage>, forged: ImageIndex| {
            let cursor = IndexCursor::new(Arc::new(forged), 0);
            let mut merged = MergingIterator::new(vec![Box::new(cursor)]);
            scan_indexed(
                runtime,
                std::slice::from_ref(image),
                &mut merged,
                false,
                &request,
            )
        };
        for image in &images {
            // Each entry's key with the next entry's offset.
            let copy = image.read_whole().unwrap();
            let mut real = Vec::new();
            let mut it = copy.iter();
            it.seek_to_first().unwrap();
            while it.valid() {
                let p = parse_internal_key(it.key()).unwrap();
                let e = copy.get(p.user_key, p.sequence).expect("its own entry");
                real.push((it.key().to_vec(), e.offset, e.value.len() as u32));
                it.next().unwrap();
            }
            assert!(real.len() > 1);
            let mut shifted = ImageIndex::default();
            for (n, (ikey, _, _)) in real.iter().enumerate() {
                let (_, offset, value_len) = real[(n + 1) % real.len()];
                shifted.push(ikey, offset, value_len).unwrap();
            }
            let e = scan(image, shifted.finish()).expect_err("a shifted index must fail the scan");
            assert!(e.to_string().contains("not the one the index names"), "{e}");
            let mem = Arc::new(o3_storage::memtable::Memtable::new(1 << 20, 0).unwrap());
            for i in (0..400u32).rev() {
                mem.insert(&key(i), 5000 + u64::from(i), ValueKind::Value, b"forged")
                    .unwrap();
            }
            let e = scan(image, ImageIndex::of_memtable(&mem))
                .expect_err("a forged index must fail the scan");
            assert!(e.to_string().contains("corrupt"), "{e}");
        }
        db.close().unwrap();
    }

    /// With room for about two indexes, newer images take the room of the
    /// oldest: the indexed images are always the newest ones, the budget
    /// holds, and reads stay right.
    #[test]
    fn newer_images_take_the_index_room_of_the_oldest() {
        // One image's index, measured.
        let probe = open_indexed(direct());
        fill_and_offload(&probe, 200);
        let one = offloaded(&probe)[0].index().expect("indexed").bytes();
        probe.close().unwrap();
        let room = one * 5 / 2;
        let db = open_with(direct(), ReadPolicy::Adaptive, room);
        fill_and_offload(&db, 600);
        let images = offloaded(&db);
        assert!(images.len() >= 6, "{} images", images.len());
        let indexed: Vec<bool> = images.iter().map(|i| i.has_index()).collect();
        // Oldest first: no image without an index after one with.
        let first = indexed.iter().position(|&x| x).expect("some indexed");
        assert!(first > 0, "the oldest lost theirs: {indexed:?}");
        assert!(indexed[first..].iter().all(|&x| x), "{indexed:?}");
        let s = db.stats().offload;
        assert!(s.indexes_dropped > 0 && s.index_bytes <= room, "{s:?}");
        for i in (0..600).step_by(7) {
            assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)));
        }
        let all: Vec<_> = db.range(..).collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), 600);
        db.close().unwrap();
    }
}
