//! The offloading state one open database shares between its writers,
//! readers, flushes and shipping threads: the memory node, the release
//! queue, what is on the node, the counters, and the hook that rebuilds lost
//! images.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use o3_memnode::client::{ImageStore, RemoteRegion};
use o3_storage::{Error, Result};

use crate::offload::cache::OffsetCache;
use crate::offload::connect::Reconnecting;
use crate::offload::costs::ReadCosts;
use crate::offload::options::{CacheValues, MemoryNodeChoice, OffloadOptions, ReadPolicy};
use crate::stats::OffloadStats;

/// Rebuilds images lost with their memory node (implemented over the
/// engine, which this module does not know).
pub(crate) trait Recovery: Send + Sync {
    /// Rebuild every offloaded image the memory node no longer holds from
    /// the WAL; `cause` is the failure that revealed the loss.
    fn recover(&self, cause: &Error) -> Result<()>;
}

/// An offloaded image as pulling back and the key-index budget see it
/// (implemented by `offload::image`, which this module does not know).
pub(crate) trait Pullable: Send + Sync {
    /// Bytes a local copy takes.
    fn bytes(&self) -> u64;
    /// Reads a second, smoothed.
    fn read_rate(&self) -> f64;
    /// Whether it holds a local copy.
    fn has_copy(&self) -> bool;
    /// How long it has held its local copy.
    fn pulled_for(&self) -> Option<Duration>;
    /// Read it whole and keep the copy; false if it already had one.
    fn pull(&self) -> Result<bool>;
    /// Drop the local copy; returns its bytes.
    fn drop_copy(&self) -> u64;
    /// Drop its key index; returns the index's bytes (0 if it had none).
    fn drop_index(&self) -> u64;
    /// Its name, for logs.
    fn name(&self) -> String;
}

/// Pull requests kept waiting for a shipping thread.
const PULL_QUEUE: usize = 8;

/// The least time a pulled-back copy is kept before a hotter image may
/// take its room.
const MIN_RESIDENCY: Duration = Duration::from_secs(2);

/// Cache lookups a review of the copies needs since the last one.
const REVIEW_MIN_LOOKUPS: u64 = 1000;

/// How long no scan may have reached offloaded images before the index
/// room is lent to a full cache of held values (see
/// [`Offload::lend_index_room`]).
const LEND_AFTER_NO_SCAN: Duration = Duration::from_secs(2);

/// Counters behind [`OffloadStats`].
#[derive(Debug, Default)]
pub(crate) struct OffloadCounters {
    pub images_shipped: AtomicU64,
    pub bytes_shipped: AtomicU64,
    pub shipping_micros: AtomicU64,
    pub images_offloaded: AtomicU64,
    pub refused_no_room: AtomicU64,
    pub ship_failures: AtomicU64,
    pub delegated_gets: AtomicU64,
    /// Summed in nanoseconds (a read over shared memory takes well under
    /// a microsecond), reported in microseconds.
    pub delegated_get_nanos: AtomicU64,
    pub filter_skips: AtomicU64,
    pub delegated_scans: AtomicU64,
    pub delegated_scan_micros: AtomicU64,
    pub read_back_bytes: AtomicU64,
    pub images_released: AtomicU64,
    pub memory_node_failures: AtomicU64,
    pub images_rebuilt: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_value_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_admissions: AtomicU64,
    pub cache_stale: AtomicU64,
    pub cache_invalidated: AtomicU64,
    pub one_sided_reads: AtomicU64,
    pub one_sided_read_nanos: AtomicU64,
    pub pulled_back_gets: AtomicU64,
    pub images_pulled_back: AtomicU64,
    pub pulled_back_dropped: AtomicU64,
    pub pull_back_micros: AtomicU64,
    pub scans_read_whole: AtomicU64,
    pub scan_whole_bytes: AtomicU64,
    pub scan_whole_micros: AtomicU64,
    pub scans_on_pulled_back: AtomicU64,
    pub images_indexed: AtomicU64,
    pub indexes_dropped: AtomicU64,
    pub indexed_scans: AtomicU64,
    pub indexed_scan_micros: AtomicU64,
    pub indexed_scan_reads: AtomicU64,
    pub indexed_gets: AtomicU64,
    pub index_skips: AtomicU64,
    pub index_room_lendings: AtomicU64,
}

/// One database's offloading.
pub(crate) struct Offload {
    pub options: OffloadOptions,
    pub store: Arc<dyn ImageStore>,
    pub counters: OffloadCounters,
    /// Bytes of images on the memory node or being shipped there.
    pub offloaded_bytes: AtomicU64,
    /// The memory node's session when an image was last shipped: once the
    /// session changes (the node restarted, or the lease was lost), the
    /// images shipped before are gone.
    pub shipped_session: AtomicU64,
    /// Regions of dropped images with the images' tags.
    release_tx: Sender<(RemoteRegion, u64)>,
    release_rx: Receiver<(RemoteRegion, u64)>,
    /// The key→offset cache (`None`: off, by policy or size).
    pub cache: Option<OffsetCache>,
    /// Measured read costs ([`ReadPolicy::Adaptive`] decides from them).
    pub costs: ReadCosts,
    /// The next [`OffloadedImage::tag`].
    next_tag: AtomicU64,
    /// Images holding a pulled-back local copy, and the copies' bytes.
    pub pulled: Mutex<Vec<Weak<dyn Pullable>>>,
    pub pulled_bytes: AtomicU64,
    /// Bytes of the key indexes of images (within `options.index_bytes`).
    pub index_bytes: AtomicU64,
    /// Images holding a key index, oldest first: the first to lose it when
    /// a newer image needs the room.
    indexed: Mutex<VecDeque<Weak<dyn Pullable>>>,
    /// Bytes of the index room lent to the cache now (0, or all of
    /// `options.index_bytes`).
    pub index_room_lent: AtomicU64,
    /// When a scan last reached offloaded images, in milliseconds since
    /// `opened` (0: none yet).
    last_scan: AtomicU64,
    opened: Instant,
    /// Held while an image is pulled back (one at a time).
    pub pulling: Mutex<()>,
    /// Cache hits and misses at the last review of the copies.
    reviewed: Mutex<(u64, u64)>,
    /// Images readers asked to pull back, with their read rates, hottest
    /// first.
    pull_requests: Mutex<Vec<(f64, Weak<dyn Pullable>)>>,
    /// Set once the engine exists: rebuilds lost images from the WAL.
    recovery: OnceLock<Arc<dyn Recovery>>,
    /// Held while lost images are rebuilt (one rebuild at a time).
    pub rebuilding: Mutex<()>,
    /// No shipping before this instant (after a failed attempt).
    pub paused_until: Mutex<Option<Instant>>,
    pub last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload")
            .field("store", &self.store.name())
            .finish()
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        // Images dropped after the shipping threads stopped (the database
        // closing) sent their regions here: the memory node gets them back
        // now instead of at the end of the lease.
        self.release_dropped();
    }
}

/// How long shipping pauses after a failed attempt.
pub(crate) const SHIP_RETRY_PAUSE: Duration = Duration::from_millis(500);

impl Offload {
    /// Reach the memory node `options` names.
    pub fn open(options: &OffloadOptions) -> Result<Offload> {
        let store = match &options.memory_node {
            MemoryNodeChoice::Store(store) => store.clone(),
            MemoryNodeChoice::Config(config) => Arc::new(
                Reconnecting::open(config.clone()).map_err(|e| Error::MemoryNode {
                    lost: false,
                    message: format!("cannot use the memory node for offloading: {e}"),
                })?,
            ),
        };
        let (release_tx, release_rx) = crossbeam_channel::unbounded();
        let cache = match options.read_policy {
            ReadPolicy::Delegate => None,
            ReadPolicy::Cache | ReadPolicy::Adaptive => {
                OffsetCache::new(options.offset_cache_bytes, options.cache_admit_after)
            }
        };
        Ok(Offload {
            cache,
            costs: ReadCosts::default(),
            next_tag: AtomicU64::new(1),
            pulled: Mutex::new(Vec::new()),
            pulled_bytes: AtomicU64::new(0),
            index_bytes: AtomicU64::new(0),
            indexed: Mutex::new(VecDeque::new()),
            index_room_lent: AtomicU64::new(0),
            last_scan: AtomicU64::new(0),
            opened: Instant::now(),
            pulling: Mutex::new(()),
            reviewed: Mutex::new((0, 0)),
            pull_requests: Mutex::new(Vec::new()),
            options: options.clone(),
            store,
            counters: OffloadCounters::default(),
            offloaded_bytes: AtomicU64::new(0),
            shipped_session: AtomicU64::new(0),
            release_tx,
            release_rx,
            recovery: OnceLock::new(),
            rebuilding: Mutex::new(()),
            paused_until: Mutex::new(None),
            last_error: Mutex::new(None),
        })
    }

    pub fn set_recovery(&self, recovery: Arc<dyn Recovery>) {
        let _ = self.recovery.set(recovery);
    }

    pub fn recovery(&self) -> Option<Arc<dyn Recovery>> {
        self.recovery.get().cloned()
    }

    /// Queue a dropped image's region for release by a shipping thread,
    /// with the image's tag (its cache entries go first).
    pub fn release_later(&self, region: RemoteRegion, tag: u64) {
        // The receiver lives as long as `self`.
        let _ = self.release_tx.send((region, tag));
    }

    /// Ask for `image`, read `rate` times a second, to be pulled back; the
    /// hottest [`PULL_QUEUE`] requests wait for a shipping thread.
    pub fn request_pull(&self, rate: f64, image: &Arc<dyn Pullable>) {
        let mut wanted = self.pull_requests.lock();
        wanted.retain(|(_, w)| {
            w.strong_count() > 0 && !std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(image))
        });
        wanted.push((rate, Arc::downgrade(image)));
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
        wanted.truncate(PULL_QUEUE);
    }

    /// Pull back the hottest image asked for, if room can be made for it
    /// (called by the shipping threads); true when one was pulled.
    pub fn pull_requested(&self) -> bool {
        let Some(_turn) = self.pulling.try_lock() else {
            return false;
        };
        let (rate, image) = {
            let mut wanted = self.pull_requests.lock();
            loop {
                if wanted.is_empty() {
                    return false;
                }
                let (rate, weak) = wanted.remove(0);
                if let Some(image) = weak.upgrade()
                    && !image.has_copy()
                {
                    break (rate, image);
                }
            }
        };
        if !self.make_room(image.bytes(), rate) {
            return false;
        }
        let start = Instant::now();
        match image.pull() {
            Ok(true) => {
                self.pulled_bytes.fetch_add(image.bytes(), Relaxed);
                self.pulled.lock().push(Arc::downgrade(&image));
                let c = &self.counters;
                c.images_pulled_back.fetch_add(1, Relaxed);
                c.pull_back_micros
                    .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
                true
            }
            Ok(false) => false,
            // Reads go on remotely; a lost image is found by the next one.
            Err(e) => {
                tracing::debug!("pulling {} back: {e}", image.name());
                false
            }
        }
    }

    /// Make room for `bytes` of pulled-back images by dropping copies read
    /// less than half `rate` times a second and held at least
    /// [`MIN_RESIDENCY`] (rates that merely wobble around each other never
    /// swap copies back and forth); false when there is no such room.
    fn make_room(&self, bytes: u64, rate: f64) -> bool {
        let budget = self.options.pull_back_bytes;
        let mut pulled = self.pulled.lock();
        pulled.retain(|w| w.strong_count() > 0);
        let mut colder: Vec<(f64, Arc<dyn Pullable>)> = pulled
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|i| i.pulled_for().is_some_and(|d| d >= MIN_RESIDENCY))
            .map(|i| (i.read_rate(), i))
            .filter(|(r, _)| *r < rate / 2.0)
            .collect();
        colder.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut held = self.pulled_bytes.load(Relaxed);
        for (_, image) in colder {
            if held + bytes <= budget {
                break;
            }
            held -= self.drop_copy(image.as_ref());
        }
        held + bytes <= budget
    }

    /// Drop `image`'s pulled-back copy and account for it; returns the
    /// bytes freed.
    fn drop_copy(&self, image: &dyn Pullable) -> u64 {
        let freed = image.drop_copy();
        if freed > 0 {
            self.pulled_bytes.fetch_sub(freed, Relaxed);
            self.counters.pulled_back_dropped.fetch_add(1, Relaxed);
        }
        freed
    }

    /// Drop every pulled-back copy held at least [`MIN_RESIDENCY`] when a
    /// lookup in a copy has come to cost more than a remote lookup now
    /// does: the share of remote lookups the cache answered since the last
    /// review, at the measured one-sided and delegated costs. Over a fast
    /// data plane a well-filled cache beats a copy's skiplist search;
    /// copies pulled while the cache was still cold go. Called by a
    /// shipping thread now and then; returns the copies dropped.
    pub fn review_copies(&self) -> usize {
        let c = &self.counters;
        let (hits, misses) = (c.cache_hits.load(Relaxed), c.cache_misses.load(Relaxed));
        let (dh, dm) = {
            let mut last = self.reviewed.lock();
            let d = (hits.saturating_sub(last.0), misses.saturating_sub(last.1));
            *last = (hits, misses);
            d
        };
        if dh + dm < REVIEW_MIN_LOOKUPS {
            return 0;
        }
        let share = dh as f64 / (dh + dm) as f64;
        let (Some(remote), Some(local)) =
            (self.costs.remote_read(share), self.costs.pulled_get.get())
        else {
            return 0;
        };
        if local <= remote {
            return 0;
        }
        let _turn = self.pulling.lock();
        let held: Vec<Arc<dyn Pullable>> = self
            .pulled
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        held.iter()
            .filter(|i| i.pulled_for().is_some_and(|d| d >= MIN_RESIDENCY))
            .filter(|i| self.drop_copy(i.as_ref()) > 0)
            .count()
    }

    /// A tag no other image of this database had.
    pub fn new_tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Relaxed)
    }

    /// Count offloaded images a lookup's filters ruled out.
    pub fn note_filter_skips(&self, n: u64) {
        if n > 0 {
            self.counters.filter_skips.fetch_add(n, Relaxed);
        }
    }

    /// Whether an image about to be shipped should get a key index: the
    /// adaptive policy with room for indexes (whether this one fits, older
    /// ones dropped if need be, is [`Self::reserve_index`]'s to say).
    pub fn wants_index(&self) -> bool {
        self.adaptive() && self.options.index_bytes > 0 && self.index_room_lent.load(Relaxed) == 0
    }

    /// Take `bytes` of `index_bytes` for a newly shipped image's index,
    /// dropping the indexes of the oldest indexed images when that makes
    /// room (recent data is read most); false (nothing taken) when the
    /// index cannot fit.
    pub fn reserve_index(&self, bytes: u64) -> bool {
        let limit = self.options.index_bytes;
        if !self.wants_index() || bytes > limit {
            return false;
        }
        let take = || {
            self.index_bytes
                .fetch_update(Relaxed, Relaxed, |used| {
                    (used + bytes <= limit).then_some(used + bytes)
                })
                .is_ok()
        };
        if take() {
            return true;
        }
        let mut indexed = self.indexed.lock();
        while let Some(oldest) = indexed.pop_front() {
            if let Some(image) = oldest.upgrade()
                && self.release_index(image.as_ref()) > 0
            {
                self.counters.indexes_dropped.fetch_add(1, Relaxed);
            }
            if take() {
                return true;
            }
        }
        take()
    }

    /// Drop `image`'s key index and give its bytes back to `index_bytes`;
    /// returns them (0 if it had none).
    pub fn release_index(&self, image: &dyn Pullable) -> u64 {
        let freed = image.drop_index();
        if freed > 0 {
            self.index_bytes.fetch_sub(freed, Relaxed);
        }
        freed
    }

    /// Note that `image` holds a key index (after [`Self::reserve_index`]
    /// took its room).
    /// (Dropped again at once if the room was lent to the cache since.)
    pub fn register_index(&self, image: Weak<dyn Pullable>) {
        let mut indexed = self.indexed.lock();
        if self.index_room_lent.load(Relaxed) > 0 {
            if let Some(image) = image.upgrade() {
                self.release_index(image.as_ref());
            }
            return;
        }
        indexed.retain(|w| w.strong_count() > 0);
        indexed.push_back(image);
    }

    /// Lend the whole index room to the cache when the cache is full of
    /// held values (the link is slow: `holds_values`) and no scan has
    /// reached offloaded images for [`LEND_AFTER_NO_SCAN`] (or ever): the
    /// key indexes serve scans best, and lookups are then better served by
    /// more held values than by indexes (a lookup through an index still
    /// reads remotely). Every index is dropped, newly shipped images get
    /// none, and the cache may take `offset_cache_bytes + index_bytes`
    /// until the next scan takes the room back ([`Self::note_scan`]).
    pub fn lend_index_room(&self) {
        let Some(cache) = &self.cache else { return };
        let room = self.options.index_bytes;
        if room == 0
            || self.index_room_lent.load(Relaxed) > 0
            || !self.adaptive()
            || !cache.is_full()
            || !self.holds_values()
        {
            return;
        }
        let last = self.last_scan.load(Relaxed);
        if last > 0
            && self.millis_open().saturating_sub(last) < LEND_AFTER_NO_SCAN.as_millis() as u64
        {
            return;
        }
        let mut indexed = self.indexed.lock();
        if self.index_room_lent.swap(room, Relaxed) > 0 {
            return;
        }
        for image in indexed.drain(..) {
            if let Some(image) = image.upgrade()
                && self.release_index(image.as_ref()) > 0
            {
                self.counters.indexes_dropped.fetch_add(1, Relaxed);
            }
        }
        cache.set_capacity(self.options.offset_cache_bytes + room);
        self.counters.index_room_lendings.fetch_add(1, Relaxed);
    }

    /// A scan reaches offloaded images: the index room lent to the cache
    /// comes back (the cache shrinks to `offset_cache_bytes`, evicting),
    /// so images shipped from now on get key indexes again.
    pub fn note_scan(&self) {
        self.last_scan.store(self.millis_open().max(1), Relaxed);
        if self.index_room_lent.load(Relaxed) == 0 {
            return;
        }
        let _indexed = self.indexed.lock();
        if self.index_room_lent.swap(0, Relaxed) == 0 {
            return;
        }
        if let Some(cache) = &self.cache {
            cache.set_capacity(self.options.offset_cache_bytes);
        }
    }

    fn millis_open(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    pub fn adaptive(&self) -> bool {
        self.options.read_policy == ReadPolicy::Adaptive
    }

    /// Whether cache entries take their key and value along now
    /// ([`OffloadOptions::cache_values`]).
    pub fn holds_values(&self) -> bool {
        match self.options.cache_values {
            CacheValues::Off => false,
            CacheValues::On => true,
            CacheValues::Auto => self.adaptive() && self.costs.hold_values(),
        }
    }

    /// Rebuild lost images (see [`Recovery`]); an error when the database
    /// is gone.
    pub fn recover(&self, cause: &Error) -> Result<()> {
        match self.recovery() {
            Some(r) => r.recover(cause),
            None => Err(Error::Closed("database")),
        }
    }

    /// Wait (at most [`OffloadOptions::read_wait`]) for a rebuild running
    /// elsewhere; the guard keeps other rebuilds out.
    pub fn rebuild_turn(&self, cause: &Error) -> Result<parking_lot::MutexGuard<'_, ()>> {
        self.rebuilding
            .try_lock_for(self.options.read_wait)
            .ok_or_else(|| Error::MemoryNode {
                lost: true,
                message: format!(
                    "{cause}; the lost images were still being rebuilt from the WAL after {:?}",
                    self.options.read_wait
                ),
            })
    }

    /// Release the regions of dropped images; returns how many.
    pub fn release_dropped(&self) -> usize {
        let mut released = 0;
        while let Ok((region, tag)) = self.release_rx.try_recv() {
            // No entry about the image outlives it in the cache (none could
            // be served anyway: no lookup sees the image any more).
            if let Some(cache) = &self.cache {
                let gone = cache.forget_image(tag);
                self.counters.cache_invalidated.fetch_add(gone, Relaxed);
            }
            self.offloaded_bytes.fetch_sub(region.len(), Relaxed);
            self.counters.images_offloaded.fetch_sub(1, Relaxed);
            // A region of an older session is gone already; any other
            // failure leaves it to the lease's end.
            if region.session == self.store.session()
                && let Err(e) = self.store.release(&region)
            {
                tracing::debug!("releasing region {}: {e}", region.desc.region.0);
            }
            self.counters.images_released.fetch_add(1, Relaxed);
            released += 1;
        }
        released
    }

    pub fn record_error(&self, message: String) {
        tracing::warn!("offloading: {message}");
        *self.last_error.lock() = Some(message);
    }

    pub fn fill(&self, s: &mut OffloadStats) {
        let c = &self.counters;
        s.images_shipped = c.images_shipped.load(Relaxed);
        s.bytes_shipped = c.bytes_shipped.load(Relaxed);
        s.shipping_micros = c.shipping_micros.load(Relaxed);
        s.images_offloaded = c.images_offloaded.load(Relaxed);
        s.bytes_offloaded = self.offloaded_bytes.load(Relaxed);
        s.refused_no_room = c.refused_no_room.load(Relaxed);
        s.ship_failures = c.ship_failures.load(Relaxed);
        s.delegated_gets = c.delegated_gets.load(Relaxed);
        s.delegated_get_micros = c.delegated_get_nanos.load(Relaxed) / 1000;
        s.filter_skips = c.filter_skips.load(Relaxed);
        s.delegated_scans = c.delegated_scans.load(Relaxed);
        s.delegated_scan_micros = c.delegated_scan_micros.load(Relaxed);
        s.read_back_bytes = c.read_back_bytes.load(Relaxed);
        s.images_released = c.images_released.load(Relaxed);
        s.memory_node_failures = c.memory_node_failures.load(Relaxed);
        s.images_rebuilt = c.images_rebuilt.load(Relaxed);
        s.cache_hits = c.cache_hits.load(Relaxed);
        s.cache_value_hits = c.cache_value_hits.load(Relaxed);
        s.cache_misses = c.cache_misses.load(Relaxed);
        s.cache_admissions = c.cache_admissions.load(Relaxed);
        s.cache_stale = c.cache_stale.load(Relaxed);
        s.cache_invalidated = c.cache_invalidated.load(Relaxed);
        if let Some(cache) = &self.cache {
            s.cache_entries = cache.len();
            s.cache_bytes = cache.bytes();
        }
        s.one_sided_reads = c.one_sided_reads.load(Relaxed);
        s.one_sided_read_micros = c.one_sided_read_nanos.load(Relaxed) / 1000;
        s.pulled_back_gets = c.pulled_back_gets.load(Relaxed);
        s.images_pulled_back = c.images_pulled_back.load(Relaxed);
        s.pulled_back_dropped = c.pulled_back_dropped.load(Relaxed);
        s.pulled_back_bytes = self.pulled_bytes.load(Relaxed);
        s.pull_back_micros = c.pull_back_micros.load(Relaxed);
        s.scans_read_whole = c.scans_read_whole.load(Relaxed);
        s.scan_whole_bytes = c.scan_whole_bytes.load(Relaxed);
        s.scan_whole_micros = c.scan_whole_micros.load(Relaxed);
        s.scans_on_pulled_back = c.scans_on_pulled_back.load(Relaxed);
        s.images_indexed = c.images_indexed.load(Relaxed);
        s.indexes_dropped = c.indexes_dropped.load(Relaxed);
        s.index_bytes = self.index_bytes.load(Relaxed);
        s.indexed_scans = c.indexed_scans.load(Relaxed);
        s.indexed_scan_micros = c.indexed_scan_micros.load(Relaxed);
        s.indexed_scan_reads = c.indexed_scan_reads.load(Relaxed);
        s.indexed_gets = c.indexed_gets.load(Relaxed);
        s.index_skips = c.index_skips.load(Relaxed);
        s.index_room_lendings = c.index_room_lendings.load(Relaxed);
        s.index_room_lent = self.index_room_lent.load(Relaxed);
        let micros = |e: &crate::offload::costs::Ewma| e.get().map_or(0.0, |n| n / 1000.0);
        s.delegated_get_ewma_micros = micros(&self.costs.delegated_get);
        s.one_sided_read_ewma_micros = micros(&self.costs.one_sided_get);
        s.last_error = self.last_error.lock().clone();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use o3_memnode::MemoryNode;
    use o3_memnode::client::Direct;

    use super::*;
    use crate::offload::options::ReadPolicy;

    /// An image with a copy held for `held`.
    struct Copied {
        held: Duration,
        has: AtomicBool,
    }

    impl Pullable for Copied {
        fn bytes(&self) -> u64 {
            1000
        }
        fn read_rate(&self) -> f64 {
            100.0
        }
        fn has_copy(&self) -> bool {
            self.has.load(Relaxed)
        }
        fn pulled_for(&self) -> Option<Duration> {
            self.has_copy().then_some(self.held)
        }
        fn pull(&self) -> Result<bool> {
            Ok(!self.has.swap(true, Relaxed))
        }
        fn drop_copy(&self) -> u64 {
            if self.has.swap(false, Relaxed) {
                1000
            } else {
                0
            }
        }
        fn drop_index(&self) -> u64 {
            0
        }
        fn name(&self) -> String {
            "copied".into()
        }
    }

    fn offload() -> Offload {
        let store = Arc::new(Direct::new(Arc::new(
            MemoryNode::with_capacity(1 << 20).expect("memory node"),
        )));
        Offload::open(&OffloadOptions {
            memory_node: MemoryNodeChoice::Store(store),
            read_policy: ReadPolicy::Adaptive,
            ..OffloadOptions::default()
        })
        .expect("offload")
    }

    fn hold(o: &Offload, held: Duration) -> Arc<dyn Pullable> {
        let image: Arc<dyn Pullable> = Arc::new(Copied {
            held,
            has: AtomicBool::new(true),
        });
        o.pulled.lock().push(Arc::downgrade(&image));
        o.pulled_bytes.fetch_add(image.bytes(), Relaxed);
        image
    }

    /// `lookups` cache lookups, 90% hits, since the last review.
    fn lookups(o: &Offload, lookups: u64) {
        o.counters.cache_hits.fetch_add(lookups * 9 / 10, Relaxed);
        o.counters.cache_misses.fetch_add(lookups / 10, Relaxed);
    }

    #[test]
    fn copies_dearer_than_remote_lookups_are_dropped_once_held_long_enough() {
        let o = offload();
        let (old, young) = (hold(&o, MIN_RESIDENCY * 2), hold(&o, MIN_RESIDENCY / 2));
        // A fast data plane: 90% of remote lookups cost 100 ns, the rest
        // 5 µs (590 ns on average); a copy's lookup 800 ns.
        o.costs.one_sided_get.record(100.0);
        o.costs.delegated_get.record(5_000.0);
        o.costs.pulled_get.record(800.0);
        lookups(&o, REVIEW_MIN_LOOKUPS / 2);
        assert_eq!(o.review_copies(), 0, "too few lookups to judge");
        lookups(&o, REVIEW_MIN_LOOKUPS);
        assert_eq!(o.review_copies(), 1);
        assert!(!old.has_copy() && young.has_copy());
        assert_eq!(o.pulled_bytes.load(Relaxed), 1000);
        assert_eq!(o.counters.pulled_back_dropped.load(Relaxed), 1);
    }

    #[test]
    fn copies_cheaper_than_remote_lookups_stay() {
        let o = offload();
        let image = hold(&o, MIN_RESIDENCY * 2);
        // A slow data plane: a one-sided read is a 10 µs round trip.
        o.costs.one_sided_get.record(10_000.0);
        o.costs.delegated_get.record(14_000.0);
        o.costs.pulled_get.record(800.0);
        lookups(&o, 10 * REVIEW_MIN_LOOKUPS);
        assert_eq!(o.review_copies(), 0);
        assert!(image.has_copy());
    }
}
