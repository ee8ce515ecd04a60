//! Measured costs of each way to read an offloaded image, and the choices
//! `ReadPolicy::Adaptive` makes from them.
//!
//! Every remote read records its latency here as an exponentially weighted
//! moving average (weight 1/16 per sample): a delegated `get` (which
//! includes the memory node's search and its queueing, so a busy memory
//! node shows up as a dearer delegation), a one-sided read of one cached
//! entry, a delegated scan batch per entry returned, and a whole-image
//! one-sided read per byte. Nothing is configured: the choices follow the
//! link and the memory node as they are.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// A moving average of nanoseconds; 0 until the first sample.
#[derive(Debug, Default)]
pub(crate) struct Ewma(AtomicU64);

/// A sample counts as at most this many times the average: one round trip
/// that waited for a descheduled thread must not make a path look dear
/// for the hundreds of lookups that then avoid it (a path taken only by
/// probes corrects its average slowly). A real change still shows within
/// a few dozen samples.
const OUTLIER: f64 = 4.0;

impl Ewma {
    pub fn record(&self, nanos: f64) {
        self.fold(nanos, OUTLIER);
    }

    pub fn record_time(&self, elapsed: Duration) {
        self.record(elapsed.as_nanos() as f64);
    }

    /// Record without the outlier bound: for an average over a mix of
    /// paths (an image's reads: cheap cache hits and dear misses), whose
    /// dear samples are its substance, not outliers.
    pub fn record_mixed(&self, elapsed: Duration) {
        self.fold(elapsed.as_nanos() as f64, f64::INFINITY);
    }

    /// Fold in one sample, counted as at most `bound` times the average.
    fn fold(&self, nanos: f64, bound: f64) {
        let old = f64::from_bits(self.0.load(Relaxed));
        let new = if old == 0.0 {
            nanos
        } else {
            old + (nanos.min(old * bound) - old) / 16.0
        };
        // A racing sample may be lost: the average is an estimate.
        self.0.store(new.max(f64::MIN_POSITIVE).to_bits(), Relaxed);
    }

    /// Forget every sample.
    pub fn reset(&self) {
        self.0.store(0, Relaxed);
    }

    /// The average, or `None` before any sample.
    pub fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Relaxed));
        (v > 0.0).then_some(v)
    }
}

/// The smallest and largest first batch of a delegated scan.
pub(crate) const MIN_SCAN_BATCH: u32 = 16;
pub(crate) const MAX_SCAN_BATCH: u32 = 4096;

/// What a local lookup in a pulled-back image is taken to cost, in
/// nanoseconds, until one has been measured (a skiplist search in local
/// memory).
const LOCAL_GET_NANOS: f64 = 500.0;

/// How many local lookups a one-sided read of an entry must cost before
/// cache entries hold their values (`CacheValues::Auto`): a value held
/// takes the room of ~17 offsets of 1 KiB entries, which pays only where
/// a remote read is far dearer than a local answer (over a network; over
/// shared memory a one-sided read is a `memcpy`).
const HOLD_VALUES_FACTOR: f64 = 4.0;

/// One database's measured read costs.
#[derive(Debug, Default)]
pub(crate) struct ReadCosts {
    /// Nanoseconds per delegated `get`.
    pub delegated_get: Ewma,
    /// Nanoseconds per one-sided read of a cached entry.
    pub one_sided_get: Ewma,
    /// Nanoseconds per lookup in a pulled-back copy.
    pub pulled_get: Ewma,
    /// Nanoseconds per entry of a delegated scan batch, beyond the round
    /// trip (estimated as a delegated `get`'s latency).
    pub scan_entry: Ewma,
    /// Nanoseconds per byte of a whole image read one-sidedly.
    pub bulk_byte: Ewma,
    /// Entries a delegated scan stepped over before it was dropped (not
    /// nanoseconds: a count).
    pub scan_consumed: Ewma,
    /// Hits served since the last forced delegation (see `use_cached`).
    hits_since_probe: AtomicU64,
}

/// Hits between two probes of the path not chosen (see
/// [`ReadCosts::use_cached`]).
const PROBE_EVERY: u64 = 32;
const PROBE_RARELY: u64 = 512;
/// How much dearer than a delegated lookup a one-sided read may be and
/// still be chosen.
const ONE_SIDED_PREFERENCE: f64 = 1.25;

impl ReadCosts {
    /// Whether to read a cached entry one-sidedly rather than delegate the
    /// lookup: unless the one-sided read is clearly the dearer of the two
    /// (by more than [`ONE_SIDED_PREFERENCE`]: it also spares the memory
    /// node's CPU, which the time of one call does not show, and two
    /// averages of noisy round trips this close would flip the choice
    /// back and forth). Now
    /// and then the other way is taken, so both costs stay measured
    /// whichever is chosen: once in [`PROBE_EVERY`] hits while the two are
    /// within 4x of each other, once in [`PROBE_RARELY`] hits when one is
    /// far dearer (a probe then costs much and tells little).
    pub fn use_cached(&self) -> bool {
        let (cheaper, far) = match (self.one_sided_get.get(), self.delegated_get.get()) {
            (Some(one_sided), Some(delegated)) => (
                one_sided <= delegated * ONE_SIDED_PREFERENCE,
                one_sided * 4.0 < delegated || delegated * 4.0 < one_sided,
            ),
            _ => (true, false),
        };
        let every = if far { PROBE_RARELY } else { PROBE_EVERY };
        let probe = self.hits_since_probe.fetch_add(1, Relaxed) + 1 >= every;
        if probe {
            self.hits_since_probe.store(0, Relaxed);
        }
        cheaper != probe
    }

    /// Whether cache entries should hold their values: a one-sided read
    /// costs more than [`HOLD_VALUES_FACTOR`] local lookups (measured in
    /// pulled-back copies, or taken as a skiplist search).
    pub fn hold_values(&self) -> bool {
        let local = self.pulled_get.get().unwrap_or(LOCAL_GET_NANOS);
        self.one_sided_get
            .get()
            .is_some_and(|one_sided| one_sided > HOLD_VALUES_FACTOR * local)
    }

    /// What a remote lookup costs now when a share `hit_share` of them
    /// find a cached entry; `None` until both paths are measured.
    pub fn remote_read(&self, hit_share: f64) -> Option<f64> {
        let (one_sided, delegated) = (self.one_sided_get.get()?, self.delegated_get.get()?);
        Some(hit_share * one_sided + (1.0 - hit_share) * delegated)
    }

    /// Record a delegated scan batch of `entries` that took `elapsed`.
    pub fn record_scan(&self, entries: usize, elapsed: Duration) {
        if entries < MIN_SCAN_BATCH as usize {
            return;
        }
        let round_trip = self.delegated_get.get().unwrap_or(0.0);
        let per_entry = (elapsed.as_nanos() as f64 - round_trip).max(1.0) / entries as f64;
        self.scan_entry.record(per_entry);
    }

    /// The first batch of a delegated scan: enough for what scans have
    /// been taking (a quarter more than the moving average of entries a
    /// scan stepped over), so most need one round trip; and at least as
    /// many entries as take one round trip to produce and carry, so a round
    /// trip costs at most about half of a batch's time. `fixed` before
    /// either is measured.
    pub fn first_scan_batch(&self, fixed: u32) -> u32 {
        let by_use = self.scan_consumed.get().map(|n| n * 1.25);
        let by_link = match (self.delegated_get.get(), self.scan_entry.get()) {
            (Some(round_trip), Some(per_entry)) => Some(round_trip / per_entry),
            _ => None,
        };
        match by_use.into_iter().chain(by_link).reduce(f64::max) {
            Some(n) => (n.ceil() as u32)
                .clamp(MIN_SCAN_BATCH, MAX_SCAN_BATCH)
                .next_power_of_two(),
            None => fixed,
        }
    }

    /// How many entries a scan reads through delegation before reading
    /// `bytes` of images whole would have been cheaper; `None` before scans
    /// and lookups are measured.
    pub fn whole_image_after(&self, bytes: u64) -> Option<u64> {
        let per_entry = self.scan_entry.get()?;
        let round_trip = self.delegated_get.get()?;
        let per_byte = self.per_byte(round_trip);
        Some(((bytes as f64 * per_byte + round_trip) / per_entry) as u64)
    }

    /// Nanoseconds per byte of a whole-image read: measured, or before any
    /// such read, what the link's small reads suggest (a round trip of
    /// `round_trip` nanoseconds per 64 KiB).
    fn per_byte(&self, round_trip: f64) -> f64 {
        self.bulk_byte.get().unwrap_or(round_trip / 65536.0)
    }

    /// Whether an image of `bytes` read remotely `reads_per_sec` times a
    /// second, each remote read costing it `remote_ns` nanoseconds, is
    /// worth pulling back: what a second of its reads would save over
    /// lookups in a local copy (measured once copies exist: over a fast
    /// data plane a copy's skiplist search can cost more than a cached
    /// entry's one-sided read) is more than reading it whole.
    pub fn worth_pulling(&self, bytes: u64, reads_per_sec: f64, remote_ns: f64) -> bool {
        let per_byte = self.per_byte(remote_ns);
        let local_ns = self.pulled_get.get().unwrap_or(LOCAL_GET_NANOS);
        reads_per_sec * (remote_ns - local_ns).max(0.0) > bytes as f64 * per_byte
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_follows_its_samples() {
        let e = Ewma::default();
        assert_eq!(e.get(), None);
        e.record(1000.0);
        assert_eq!(e.get(), Some(1000.0));
        for _ in 0..200 {
            e.record(3000.0);
        }
        assert!((e.get().unwrap() - 3000.0).abs() < 10.0);
        e.record(1_000_000.0);
        assert!(
            e.get().unwrap() < 4000.0,
            "one outlier moves it a little: {:?}",
            e.get()
        );
        for _ in 0..100 {
            e.record(30_000.0);
        }
        assert!(
            (e.get().unwrap() - 30_000.0).abs() < 500.0,
            "a lasting change is followed: {:?}",
            e.get()
        );
        let mixed = Ewma::default();
        mixed.record_time(Duration::from_nanos(100));
        mixed.record_mixed(Duration::from_nanos(100_000));
        assert!(
            mixed.get().unwrap() > 6000.0,
            "a mix's dear samples count whole: {:?}",
            mixed.get()
        );
        mixed.reset();
        assert_eq!(mixed.get(), None);
    }

    #[test]
    fn a_cached_entry_is_read_one_sidedly_only_while_that_is_cheaper() {
        let c = ReadCosts::default();
        assert!(c.use_cached(), "nothing measured yet");
        c.delegated_get.record(3_000.0);
        c.one_sided_get.record(2_000.0);
        assert!(c.use_cached());
        let probes = (0..2 * PROBE_EVERY).filter(|_| !c.use_cached()).count();
        assert_eq!(probes, 2, "one forced delegation per {PROBE_EVERY} hits");
        let d = ReadCosts::default();
        d.delegated_get.record(2_000.0);
        d.one_sided_get.record(3_000.0);
        let probes = (0..2 * PROBE_EVERY).filter(|_| d.use_cached()).count();
        assert_eq!(
            probes, 2,
            "one forced one-sided read per {PROBE_EVERY} hits"
        );
        let far = ReadCosts::default();
        far.delegated_get.record(10_000.0);
        far.one_sided_get.record(100.0);
        let probes = (0..2 * PROBE_RARELY).filter(|_| !far.use_cached()).count();
        assert_eq!(probes, 2, "one forced delegation per {PROBE_RARELY} hits");
        let close = ReadCosts::default();
        close.delegated_get.record(2_000.0);
        close.one_sided_get.record(2_200.0);
        let one_sided = (0..2 * PROBE_EVERY).filter(|_| close.use_cached()).count();
        assert_eq!(
            one_sided,
            2 * PROBE_EVERY as usize - 2,
            "a one-sided read a little dearer is still preferred"
        );
    }

    #[test]
    fn values_are_held_only_where_a_remote_read_is_far_dearer_than_a_local_one() {
        let c = ReadCosts::default();
        assert!(!c.hold_values(), "nothing measured yet");
        c.one_sided_get.record(800.0);
        assert!(!c.hold_values(), "a memcpy-like read");
        let far = ReadCosts::default();
        far.one_sided_get.record(10_000.0);
        assert!(far.hold_values(), "a network round trip");
        far.pulled_get.record(5_000.0);
        assert!(!far.hold_values(), "local lookups measured this slow");
    }

    #[test]
    fn scan_batches_grow_with_the_round_trip() {
        let fast = ReadCosts::default();
        fast.delegated_get.record(5_000.0);
        fast.scan_entry.record(100.0);
        let slow = ReadCosts::default();
        slow.delegated_get.record(1_000_000.0);
        slow.scan_entry.record(100.0);
        assert_eq!(ReadCosts::default().first_scan_batch(64), 64);
        assert!(fast.first_scan_batch(64) < slow.first_scan_batch(64));
        assert_eq!(slow.first_scan_batch(64), MAX_SCAN_BATCH);
        let short = ReadCosts::default();
        short.scan_consumed.record(50.0);
        assert_eq!(
            short.first_scan_batch(64),
            64,
            "50 taken: 63 asked, rounded up"
        );
        short.delegated_get.record(5_000.0);
        short.scan_entry.record(10.0);
        assert_eq!(short.first_scan_batch(64), 512, "the link asks for more");
    }

    #[test]
    fn only_images_read_often_are_worth_pulling_back() {
        let c = ReadCosts::default();
        c.bulk_byte.record(1.0);
        assert!(!c.worth_pulling(4 << 20, 10.0, 20_000.0));
        assert!(c.worth_pulling(4 << 20, 10_000.0, 20_000.0));
        assert!(
            !c.worth_pulling(4 << 20, 10_000.0, 400.0),
            "remote as cheap as local"
        );
        for _ in 0..100 {
            c.pulled_get.record(30_000.0);
        }
        assert!(
            !c.worth_pulling(4 << 20, 10_000.0, 20_000.0),
            "copies measured dearer than remote reads"
        );
    }
}
