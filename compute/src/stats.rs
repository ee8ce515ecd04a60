//! Counters the database keeps while it runs, and the [`DbStats`] report.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Why writes were held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StallReason {
    L0Slowdown,
    L0Stop,
    PendingCompactionSlowdown,
    PendingCompactionStop,
    MemtableLimit,
}

impl StallReason {
    pub const ALL: [StallReason; 5] = [
        StallReason::L0Slowdown,
        StallReason::L0Stop,
        StallReason::PendingCompactionSlowdown,
        StallReason::PendingCompactionStop,
        StallReason::MemtableLimit,
    ];
    pub fn name(self) -> &'static str {
        match self {
            StallReason::L0Slowdown => "l0_slowdown",
            StallReason::L0Stop => "l0_stop",
            StallReason::PendingCompactionSlowdown => "pending_compaction_slowdown",
            StallReason::PendingCompactionStop => "pending_compaction_stop",
            StallReason::MemtableLimit => "memtable_limit",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub user_bytes: AtomicU64,
    pub writes: AtomicU64,
    pub write_groups: AtomicU64,
    pub parallel_write_groups: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub flushes: AtomicU64,
    pub compaction_bytes_read: AtomicU64,
    pub compaction_bytes_written: AtomicU64,
    pub compactions: AtomicU64,
    pub trivial_moves: AtomicU64,
    pub background_errors: AtomicU64,
    pub stall_micros: [AtomicU64; 5],
    /// Shard layout changes (adaptive shards).
    pub reshards: AtomicU64,
    /// The most flushes seen running at once.
    pub max_concurrent_flushes: AtomicU64,
}

impl Counters {
    pub fn add_stall(&self, reason: StallReason, micros: u64) {
        self.stall_micros[reason as usize].fetch_add(micros, Relaxed);
    }
}

/// Files and bytes at one level.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LevelStats {
    pub files: usize,
    pub bytes: u64,
}

/// A snapshot of the database's shape and work so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbStats {
    pub levels: Vec<LevelStats>,
    /// Key + value bytes the user wrote.
    pub user_bytes: u64,
    /// Batches written.
    pub writes: u64,
    /// Group commits (one WAL append each) that wrote them.
    pub write_groups: u64,
    /// Of those, groups whose writers inserted their own batches into the
    /// memtables at once (the others' leader inserted them alone).
    pub parallel_write_groups: u64,
    pub wal_bytes: u64,
    pub flush_bytes: u64,
    pub flushes: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    pub compactions: u64,
    pub trivial_moves: u64,
    /// Background jobs (flushes, compactions) that failed, retried or not;
    /// [`crate::Db::background_error`] says whether one stopped the database.
    pub background_errors: u64,
    /// (flush + compaction bytes written) / flush bytes, as RocksDB's
    /// compaction statistics define it (the "Sum" row's W-Amp): bytes that
    /// reached level 0 count once, each rewrite by a compaction once more,
    /// so it is at least 1 once anything was flushed and 0 before. Dividing
    /// by user bytes instead would count the overwrites and deletions that
    /// the memtable absorbed as savings and fall below 1 after a load.
    pub write_amplification: f64,
    /// Microseconds writes were held back, by reason.
    pub stall_micros: Vec<(StallReason, u64)>,
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    /// Missed blocks the cache's admission policy did not take in.
    pub block_cache_declined: u64,
    pub block_cache_usage: u64,
    pub last_sequence: u64,
    pub unflushed_memtables: usize,
    /// Live range tombstones, unflushed and installed (a deletion spanning
    /// several shards counts once per shard); they go once nothing they
    /// delete is left on disk.
    pub range_tombstones: u64,
    /// Memtable offloading (all zero when it is off).
    pub offload: OffloadStats,
    /// Where compactions ran and why (all zero without a compaction
    /// service).
    pub placement: PlacementStats,
    /// The key-range shards, in key order (counters since the current
    /// layout began: a re-split starts them at zero).
    pub shards: Vec<ShardStats>,
    /// Times the shard split keys changed (adaptive shards).
    pub reshards: u64,
    /// The most flushes (of different shards) seen running at once.
    pub max_concurrent_flushes: u64,
}

/// One key-range shard.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ShardStats {
    /// The shard's first key (its split key; empty for the first shard).
    pub lower_bound: Vec<u8>,
    /// Key + value bytes written to it.
    pub write_bytes: u64,
    /// Its part of the bytes written to all shards (0 before any write).
    pub write_share: f64,
    /// Its installed flushes.
    pub flushes: u64,
    /// L0 files overlapping its key range (after a re-split, a file cut at
    /// the old keys may count for several shards).
    pub l0_files: usize,
}

/// Why a job ran where it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PlacementReason {
    /// The executor has no cost model (a test executor): every job goes to it.
    RemoteUnconditional,
    /// The policy prefers the service, and it had room.
    RemotePreferred,
    /// This node was busy and the service was estimated faster.
    RemoteBusyAndFaster,
    /// The service was estimated clearly faster even though this node was
    /// not busy.
    RemoteFaster,
    /// The service could not be reached (or had no healthy agent).
    LocalUnreachable,
    /// Every agent slot was taken and jobs were waiting.
    LocalSaturated,
    /// The estimate said local completes sooner.
    LocalEstimate,
    /// The service failed the job (every try) or lost it: run here.
    LocalAfterRemoteFailure,
    /// The policy keeps compactions here.
    LocalPolicy,
    /// Flushes run here (their memtables are here).
    LocalFlush,
    /// A flush of offloaded memtables sent to the service (the memory node
    /// holding them or an agent; where it ended up is in
    /// [`FlushPlacementStats`]).
    RemoteFlush,
}

impl PlacementReason {
    pub const ALL: [PlacementReason; 11] = [
        PlacementReason::RemoteUnconditional,
        PlacementReason::RemotePreferred,
        PlacementReason::RemoteBusyAndFaster,
        PlacementReason::RemoteFaster,
        PlacementReason::LocalUnreachable,
        PlacementReason::LocalSaturated,
        PlacementReason::LocalEstimate,
        PlacementReason::LocalAfterRemoteFailure,
        PlacementReason::LocalPolicy,
        PlacementReason::LocalFlush,
        PlacementReason::RemoteFlush,
    ];
    pub fn name(self) -> &'static str {
        match self {
            PlacementReason::RemoteUnconditional => "remote_unconditional",
            PlacementReason::RemotePreferred => "remote_preferred",
            PlacementReason::RemoteBusyAndFaster => "remote_busy_and_faster",
            PlacementReason::RemoteFaster => "remote_faster",
            PlacementReason::LocalUnreachable => "local_unreachable",
            PlacementReason::LocalSaturated => "local_saturated",
            PlacementReason::LocalEstimate => "local_estimate",
            PlacementReason::LocalAfterRemoteFailure => "local_after_remote_failure",
            PlacementReason::LocalPolicy => "local_policy",
            PlacementReason::LocalFlush => "local_flush",
            PlacementReason::RemoteFlush => "remote_flush",
        }
    }
    /// Whether the job went to the executor.
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            PlacementReason::RemoteUnconditional
                | PlacementReason::RemotePreferred
                | PlacementReason::RemoteBusyAndFaster
                | PlacementReason::RemoteFaster
                | PlacementReason::RemoteFlush
        )
    }

    /// Whether the decision was a flush's (the rest are compactions').
    pub fn is_flush(self) -> bool {
        matches!(
            self,
            PlacementReason::LocalFlush | PlacementReason::RemoteFlush
        )
    }
}

/// Placement decisions and what the jobs sent to the compaction service
/// did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PlacementStats {
    /// Decisions by reason (every reason listed, zeros included, once a
    /// service or another executor is configured; empty otherwise).
    pub decisions: Vec<(PlacementReason, u64)>,
    /// Input bytes per second of local compactions (moving average).
    pub local_bytes_per_sec: Option<f64>,
    /// Jobs the service finished (their results then went to installation)
    /// and jobs it gave back (run here again).
    pub remote_done: u64,
    pub remote_failed: u64,
    /// Summed over finished remote jobs: time in the service's queue, on
    /// the agent, and from submit to result.
    pub remote_queue_wait_micros: u64,
    pub remote_exec_micros: u64,
    pub remote_round_trip_micros: u64,
    /// Bytes the agents read and wrote for them.
    pub remote_bytes_read: u64,
    pub remote_bytes_written: u64,
    /// Epochs beyond the first (an agent died or failed the job).
    pub remote_retries: u64,
    /// Whether the service is connected now, and the last connection
    /// error.
    pub service_connected: bool,
    pub service_error: Option<String>,
    /// Where flushes ran while the service was configured.
    pub flush: FlushPlacementStats,
}

/// Where flushes ran while a compaction service was configured
/// ([`crate::FlushPlacement`]), and what the remote ones moved. Image bytes
/// read back from the memory node for local flushes are
/// `OffloadStats::read_back_bytes`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FlushPlacementStats {
    /// Flushes placed here, by reason: an image was still in local memory
    /// (or on no data plane), or the service was unreachable or had no
    /// executor for it. With `FlushPlacement::Local` every flush is
    /// `PlacementReason::LocalFlush` instead.
    pub local_images: u64,
    pub local_unreachable: u64,
    /// `Auto` estimated this node would finish first.
    pub local_estimate: u64,
    /// Flushes sent to the service that it gave back (every try failed,
    /// or it was withdrawn): they ran here afterwards.
    pub fallback_failed: u64,
    /// Flushes finished on the memory node holding their images, and on
    /// a plain agent.
    pub memnode: u64,
    pub agent: u64,
    /// Submit to result, summed over flushes finished remotely.
    pub remote_micros: u64,
    /// Image bytes the agents read from the memory node.
    pub bytes_memnode_to_agent: u64,
    /// Table bytes written by the memory node and by agents.
    pub bytes_written_memnode: u64,
    pub bytes_written_agent: u64,
}

impl PlacementStats {
    /// Compactions sent to the executor, and compactions kept here
    /// (flushes are not counted: see [`PlacementReason::is_flush`]).
    pub fn remote_and_local(&self) -> (u64, u64) {
        self.decisions
            .iter()
            .filter(|(reason, _)| !reason.is_flush())
            .fold((0, 0), |(r, l), (reason, n)| {
                if reason.is_remote() {
                    (r + n, l)
                } else {
                    (r, l + n)
                }
            })
    }
}

impl std::fmt::Display for PlacementStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (remote, local) = self.remote_and_local();
        write!(f, "compactions placed: {remote} remote, {local} local (")?;
        let mut first = true;
        for (reason, n) in self
            .decisions
            .iter()
            .filter(|(r, n)| *n > 0 && !r.is_flush())
        {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} {n}", reason.name())?;
        }
        writeln!(f, ")")?;
        let done = self.remote_done.max(1) as f64;
        write!(
            f,
            "remote jobs: {} done, {} given back, {} retried epochs; mean queue wait {:.1} ms, execution {:.1} ms, round trip {:.1} ms; read {} B, written {} B",
            self.remote_done,
            self.remote_failed,
            self.remote_retries,
            self.remote_queue_wait_micros as f64 / done / 1e3,
            self.remote_exec_micros as f64 / done / 1e3,
            self.remote_round_trip_micros as f64 / done / 1e3,
            self.remote_bytes_read,
            self.remote_bytes_written
        )?;
        let fl = &self.flush;
        write!(
            f,
            "\nflushes: {} on the memory node, {} on agents, {} given back; here: {} with local images, {} unreachable, {} by estimate; remote time {:.1} ms; bytes memnode->agent {}, written by memnode {}, by agents {}",
            fl.memnode,
            fl.agent,
            fl.fallback_failed,
            fl.local_images,
            fl.local_unreachable,
            fl.local_estimate,
            fl.remote_micros as f64 / 1e3,
            fl.bytes_memnode_to_agent,
            fl.bytes_written_memnode,
            fl.bytes_written_agent
        )?;
        if let Some(e) = &self.service_error {
            write!(f, "\ncompaction service: {e}")?;
        }
        Ok(())
    }
}

/// What memtable offloading did since the database opened.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OffloadStats {
    /// Images shipped and published on the memory node.
    pub images_shipped: u64,
    pub bytes_shipped: u64,
    /// Time spent shipping them (allocate, one-sided writes, publish), summed
    /// over shipping threads.
    pub shipping_micros: u64,
    /// Images on the memory node now, and their bytes.
    pub images_offloaded: u64,
    pub bytes_offloaded: u64,
    /// Sealed memtables that stayed local because the memory node had no
    /// room or `max_offloaded_bytes` was reached.
    pub refused_no_room: u64,
    /// Shipping attempts that failed for another reason (the last reason is
    /// in `last_error`).
    pub ship_failures: u64,
    /// Delegated `get` calls (one per memory node per lookup) and their
    /// summed latency.
    pub delegated_gets: u64,
    pub delegated_get_micros: u64,
    /// Offloaded images a lookup skipped thanks to their key range or bloom
    /// filter.
    pub filter_skips: u64,
    /// Delegated `scan` batches and their summed latency.
    pub delegated_scans: u64,
    pub delegated_scan_micros: u64,
    /// Bytes of offloaded images read back with one-sided reads (flushes).
    pub read_back_bytes: u64,
    /// Regions released after their flush was installed.
    pub images_released: u64,
    /// Times the memory node was found dead, unreachable or restarted.
    pub memory_node_failures: u64,
    /// Images rebuilt from the WAL after they were lost.
    pub images_rebuilt: u64,
    /// Sealed memtables holding entries that are in local memory now (kept
    /// by `max_local_sealed_memtables`, not shipped yet, refused, or
    /// rebuilt from the WAL).
    pub local_sealed_memtables: u64,
    /// Lookups of offloaded images answered from the key→offset cache with
    /// one one-sided read, and lookups that consulted the cache but found no
    /// entry they could use (none, another image's, or too new for the
    /// snapshot).
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Cache hits answered by the entry's key and value held in the cache
    /// (no remote read; `OffloadOptions::cache_values`).
    pub cache_value_hits: u64,
    /// Entries admitted to the cache.
    pub cache_admissions: u64,
    /// Cached entries whose one-sided read did not verify (key or sequence
    /// differed, or the read failed): each fell back to delegation.
    pub cache_stale: u64,
    /// Entries removed because their image was released or lost.
    pub cache_invalidated: u64,
    /// Entries and bytes in the cache now.
    pub cache_entries: u64,
    pub cache_bytes: u64,
    /// One-sided reads of single entries (cache hits) and their summed
    /// latency.
    pub one_sided_reads: u64,
    pub one_sided_read_micros: u64,
    /// Lookups answered by a pulled-back local copy of an offloaded image.
    pub pulled_back_gets: u64,
    /// Images pulled back whole into local memory because they were read
    /// often, copies dropped again for hotter ones, bytes held now, and the
    /// summed time of the pulls.
    pub images_pulled_back: u64,
    pub pulled_back_dropped: u64,
    pub pulled_back_bytes: u64,
    pub pull_back_micros: u64,
    /// Scans that read their offloaded images whole and iterated them
    /// locally, the bytes and time that took, and scans that read at least
    /// one image from its pulled-back copy.
    pub scans_read_whole: u64,
    pub scan_whole_bytes: u64,
    pub scan_whole_micros: u64,
    pub scans_on_pulled_back: u64,
    /// Images given a local key index, indexes dropped for newer images'
    /// (oldest first) or when their room was lent to the cache, and the
    /// indexes' bytes now.
    pub images_indexed: u64,
    pub indexes_dropped: u64,
    pub index_bytes: u64,
    /// Scan batches over indexed images: merged here from their indexes,
    /// the returned entries read one-sidedly (`indexed_scan_reads` of them,
    /// tombstones need none); and their summed time.
    pub indexed_scans: u64,
    pub indexed_scan_micros: u64,
    pub indexed_scan_reads: u64,
    /// Lookups answered through an image's key index (one one-sided read,
    /// none for a tombstone), and images an index showed to hold no entry
    /// of the key (no remote call).
    pub indexed_gets: u64,
    pub index_skips: u64,
    /// Times the index room was lent to a full cache of held values (no
    /// scan needed the indexes), and the bytes lent now (0 once a scan
    /// took the room back).
    pub index_room_lendings: u64,
    pub index_room_lent: u64,
    /// The measured moving averages the adaptive policy decides from.
    pub delegated_get_ewma_micros: f64,
    pub one_sided_read_ewma_micros: f64,
    /// The last failure's message, if any.
    pub last_error: Option<String>,
}

impl Counters {
    pub(crate) fn fill(&self, s: &mut DbStats) {
        s.user_bytes = self.user_bytes.load(Relaxed);
        s.writes = self.writes.load(Relaxed);
        s.write_groups = self.write_groups.load(Relaxed);
        s.parallel_write_groups = self.parallel_write_groups.load(Relaxed);
        s.wal_bytes = self.wal_bytes.load(Relaxed);
        s.flush_bytes = self.flush_bytes.load(Relaxed);
        s.flushes = self.flushes.load(Relaxed);
        s.compaction_bytes_read = self.compaction_bytes_read.load(Relaxed);
        s.compaction_bytes_written = self.compaction_bytes_written.load(Relaxed);
        s.compactions = self.compactions.load(Relaxed);
        s.trivial_moves = self.trivial_moves.load(Relaxed);
        s.background_errors = self.background_errors.load(Relaxed);
        s.reshards = self.reshards.load(Relaxed);
        s.max_concurrent_flushes = self.max_concurrent_flushes.load(Relaxed);
        s.write_amplification = if s.flush_bytes == 0 {
            0.0
        } else {
            (s.flush_bytes + s.compaction_bytes_written) as f64 / s.flush_bytes as f64
        };
        s.stall_micros = StallReason::ALL
            .iter()
            .map(|&r| (r, self.stall_micros[r as usize].load(Relaxed)))
            .collect();
    }
}

impl std::fmt::Display for DbStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "level  files        bytes")?;
        for (i, l) in self.levels.iter().enumerate() {
            if l.files > 0 {
                writeln!(f, "L{i:<5} {:>5} {:>12}", l.files, l.bytes)?;
            }
        }
        // Before the first flush the ratio is undefined, not 0.
        let write_amplification = if self.flush_bytes == 0 {
            "n/a (nothing flushed)".to_string()
        } else {
            format!("{:.2}", self.write_amplification)
        };
        writeln!(
            f,
            "user bytes {}  flushed {}  compacted written {}  write amplification {write_amplification}",
            self.user_bytes, self.flush_bytes, self.compaction_bytes_written,
        )?;
        writeln!(
            f,
            "flushes {}  compactions {} (trivial moves {})  failed background jobs {}",
            self.flushes, self.compactions, self.trivial_moves, self.background_errors
        )?;
        if self.writes > 0 {
            writeln!(
                f,
                "writes {}  write groups {} (inserted by their writers at once {})",
                self.writes, self.write_groups, self.parallel_write_groups
            )?;
        }
        if self.range_tombstones > 0 {
            writeln!(f, "range tombstones {}", self.range_tombstones)?;
        }
        if self.shards.len() > 1 || self.reshards > 0 {
            let shares: Vec<String> = self
                .shards
                .iter()
                .map(|s| {
                    format!(
                        "[{}.. {:.1}% {} flushes {} L0]",
                        s.lower_bound.escape_ascii(),
                        s.write_share * 100.0,
                        s.flushes,
                        s.l0_files
                    )
                })
                .collect();
            writeln!(
                f,
                "shards {} (re-splits {}, at most {} flushes at once): {}",
                self.shards.len(),
                self.reshards,
                self.max_concurrent_flushes,
                shares.join(" ")
            )?;
        }
        if self.offload != OffloadStats::default() {
            writeln!(f, "{}", self.offload)?;
        }
        if !self.placement.decisions.is_empty() {
            writeln!(f, "{}", self.placement)?;
        }
        let stalls: Vec<String> = self
            .stall_micros
            .iter()
            .filter(|(_, us)| *us > 0)
            .map(|(r, us)| format!("{} {:.3}s", r.name(), *us as f64 / 1e6))
            .collect();
        write!(
            f,
            "stalls: {}",
            if stalls.is_empty() {
                "none".to_string()
            } else {
                stalls.join(", ")
            }
        )
    }
}

impl std::fmt::Display for OffloadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mean = |micros: u64, n: u64| {
            if n == 0 {
                0.0
            } else {
                micros as f64 / n as f64
            }
        };
        let mb_per_s = if self.shipping_micros == 0 {
            0.0
        } else {
            self.bytes_shipped as f64 / self.shipping_micros as f64
        };
        write!(
            f,
            "offload: shipped {} images ({} bytes, {mb_per_s:.0} MB/s per thread), on the memory node now {} ({} bytes), no room {}, failed {}; \
             delegated gets {} (mean {:.1} us), filter skips {}, scan batches {} (mean {:.1} us); read back {} bytes; released {}; node failures {}, rebuilt {}",
            self.images_shipped,
            self.bytes_shipped,
            self.images_offloaded,
            self.bytes_offloaded,
            self.refused_no_room,
            self.ship_failures,
            self.delegated_gets,
            mean(self.delegated_get_micros, self.delegated_gets),
            self.filter_skips,
            self.delegated_scans,
            mean(self.delegated_scan_micros, self.delegated_scans),
            self.read_back_bytes,
            self.images_released,
            self.memory_node_failures,
            self.images_rebuilt,
        )?;
        let consulted = self.cache_hits + self.cache_misses;
        if consulted + self.pulled_back_gets + self.scans_read_whole > 0 {
            write!(
                f,
                "\noffload reads: cache hits {} of {consulted} ({:.1}%; {} from held values), admitted {}, stale {}, invalidated {}, {} entries ({} bytes); \
                 one-sided reads {} (mean {:.1} us); pulled back {} images (dropped {}, {} bytes held, mean pull {:.0} us), lookups on them {}; \
                 scans reading images whole {} ({} bytes, mean {:.0} us), scans on pulled-back images {}",
                self.cache_hits,
                if consulted == 0 {
                    0.0
                } else {
                    100.0 * self.cache_hits as f64 / consulted as f64
                },
                self.cache_value_hits,
                self.cache_admissions,
                self.cache_stale,
                self.cache_invalidated,
                self.cache_entries,
                self.cache_bytes,
                self.one_sided_reads,
                mean(self.one_sided_read_micros, self.one_sided_reads),
                self.images_pulled_back,
                self.pulled_back_dropped,
                self.pulled_back_bytes,
                mean(self.pull_back_micros, self.images_pulled_back),
                self.pulled_back_gets,
                self.scans_read_whole,
                self.scan_whole_bytes,
                mean(self.scan_whole_micros, self.scans_read_whole),
                self.scans_on_pulled_back,
            )?;
        }
        if self.images_indexed > 0 {
            write!(
                f,
                "\nkey indexes: {} images indexed, {} dropped for newer ones ({} bytes now); lookups through them {}, images they ruled out {}; \
                 indexed scan batches {} (mean {:.1} us, {} values read one-sidedly); room lent to the cache {} times ({} bytes now)",
                self.images_indexed,
                self.indexes_dropped,
                self.index_bytes,
                self.indexed_gets,
                self.index_skips,
                self.indexed_scans,
                mean(self.indexed_scan_micros, self.indexed_scans),
                self.indexed_scan_reads,
                self.index_room_lendings,
                self.index_room_lent,
            )?;
        }
        if let Some(e) = &self.last_error {
            write!(f, "; last error: {e}")?;
        }
        Ok(())
    }
}
