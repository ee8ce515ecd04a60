//! The compaction simulator: a strategy's own picking code run over a
//! synthetic stream of flushes, with files that are lists of `(key, seq,
//! tombstone)` records instead of SSTs. No I/O; a flush and its compactions
//! take microseconds, so strategies can be compared over millions of writes.
//!
//! Fidelity: records merge by the engine's rule (newest version per key;
//! tombstones dropped only in bottommost outputs; no snapshots), outputs
//! are cut at the plan's target file size and at shard boundaries, and a
//! flush writes one L0 file per shard it touches. File sizes are modelled as
//! `entry_overhead + key_bytes (+ value_bytes for values)` per record, so
//! block, index and filter bytes are folded into the per-entry overhead.
//!
//! The simulator also checks the tree after every step: deeper physical
//! levels stay sorted and non-overlapping, and no plan reads a file twice.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::key::{ValueKind, make_internal_key};
use crate::version::{FileMeta, Version};

use super::CompactionStrategy;
use super::clock::ManualClock;
use super::composition::CompactionOptions;
use super::plan::{BusyFiles, CompactionPlan, CompactionReason};

/// Sizes and timing of the simulated data.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorOptions {
    pub key_bytes: u64,
    pub value_bytes: u64,
    /// Bytes per record beyond key and value (SST framing, index, filter).
    pub entry_overhead: u64,
    /// Key ids at which shards split (shard `i` holds `[splits[i-1], splits[i])`).
    pub shard_splits: Vec<u64>,
    /// Virtual time between flushes (drives staleness and tombstone TTL).
    pub flush_interval_ms: u64,
    /// Compactions after one flush before the simulator reports a picker
    /// that never settles.
    pub max_compactions_per_flush: usize,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            key_bytes: 16,
            value_bytes: 100,
            entry_overhead: 12,
            shard_splits: Vec::new(),
            flush_interval_ms: 1000,
            max_compactions_per_flush: 10_000,
        }
    }
}

/// One write of a flushed memtable: a key id, written or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimEntry {
    pub key: u64,
    pub delete: bool,
}

/// What the simulated tree did so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    pub flushes: u64,
    pub flush_bytes: u64,
    pub compactions: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    /// Compactions per reason, in [`CompactionReason`] order of first use.
    pub by_reason: Vec<(CompactionReason, u64)>,
    /// Bytes in the tree now.
    pub live_bytes: u64,
    /// Bytes the newest version of every present key takes.
    pub logical_bytes: u64,
    /// Tombstones still in the tree.
    pub tombstones: u64,
    /// Sorted runs a point lookup may probe: L0 files plus non-empty levels.
    pub sorted_runs: usize,
}

impl SimReport {
    /// `(flush + compaction bytes written) / flush bytes`.
    pub fn write_amplification(&self) -> f64 {
        (self.flush_bytes + self.compaction_bytes_written) as f64 / self.flush_bytes.max(1) as f64
    }
    /// `live bytes / logical bytes`.
    pub fn space_amplification(&self) -> f64 {
        self.live_bytes as f64 / self.logical_bytes.max(1) as f64
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    key: u64,
    seq: u64,
    delete: bool,
}

/// A tree under a strategy, fed flush by flush.
#[derive(Debug)]
pub struct Simulator {
    strategy: Box<dyn CompactionStrategy>,
    clock: Arc<ManualClock>,
    options: SimulatorOptions,
    version: Version,
    contents: HashMap<u64, Vec<Record>>,
    /// Newest state per key: `true` when present.
    latest: HashMap<u64, bool>,
    next_file: u64,
    next_seq: u64,
    flush_file_size: u64,
    report: SimReport,
}

impl Simulator {
    /// A simulator of the strategy `compaction` configures.
    pub fn new(compaction: &CompactionOptions, options: SimulatorOptions) -> Result<Self> {
        let clock = Arc::new(ManualClock::new(0));
        let strategy = compaction.build_with_clock(clock.clone())?;
        Ok(Self::with_strategy(
            Box::new(strategy),
            compaction.physical_levels()?,
            compaction.levels.target_file_size_base,
            clock,
            options,
        ))
    }

    /// A simulator of any strategy over `physical_levels` levels; flushes
    /// cut files at `flush_file_size`; `clock` is the one the strategy reads.
    pub fn with_strategy(
        strategy: Box<dyn CompactionStrategy>,
        physical_levels: usize,
        flush_file_size: u64,
        clock: Arc<ManualClock>,
        options: SimulatorOptions,
    ) -> Self {
        Simulator {
            strategy,
            clock,
            options,
            version: Version::new(physical_levels),
            contents: HashMap::new(),
            latest: HashMap::new(),
            next_file: 1,
            next_seq: 1,
            flush_file_size: flush_file_size.max(1),
            report: SimReport::default(),
        }
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Flush one memtable holding `entries` (later entries of a key win),
    /// then run compactions until the strategy picks none.
    pub fn flush(&mut self, entries: &[SimEntry]) -> Result<()> {
        self.flush_only(entries);
        self.compact_until_settled()
    }

    /// Flush one memtable into L0 without compacting (to build up work, as
    /// a database whose compactions lag behind does).
    pub fn flush_only(&mut self, entries: &[SimEntry]) {
        self.clock.advance(self.options.flush_interval_ms);
        let mut records: Vec<Record> = entries
            .iter()
            .map(|e| {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.latest.insert(e.key, !e.delete);
                Record {
                    key: e.key,
                    seq,
                    delete: e.delete,
                }
            })
            .collect();
        merge_newest(&mut records, false);
        let outputs = self.write_files(&records, self.flush_file_size);
        self.report.flushes += 1;
        for f in outputs {
            self.report.flush_bytes += f.size;
            self.version.levels[0].insert(0, Arc::new(f));
        }
        sort_level0(&mut self.version);
    }

    /// Run the strategy's picks one after another until it picks none.
    pub fn compact_until_settled(&mut self) -> Result<()> {
        for _ in 0..self.options.max_compactions_per_flush {
            let Some(plan) = self.strategy.pick(&self.version, &BusyFiles::new()) else {
                return Ok(());
            };
            self.compact(&plan)?;
        }
        Err(Error::InvalidArgument(format!(
            "strategy still compacting after {} compactions following flush {}",
            self.options.max_compactions_per_flush, self.report.flushes
        )))
    }

    /// Run `plan` on the simulated files and install its outputs.
    pub fn compact(&mut self, plan: &CompactionPlan) -> Result<()> {
        let mut records = Vec::new();
        let mut seen = BusyFiles::new();
        for (level, files) in plan.inputs_by_level() {
            for f in files {
                let present = self
                    .version
                    .levels
                    .get(level)
                    .is_some_and(|l| l.iter().any(|g| g.number == f.number));
                if !seen.insert(f.number) || !present {
                    return Err(Error::InvalidArgument(format!(
                        "plan reads file {} of level {level} twice or not from that level",
                        f.number
                    )));
                }
                self.report.compaction_bytes_read += f.size;
                records.extend(self.contents.remove(&f.number).unwrap_or_default());
            }
        }
        for (level, files) in plan.inputs_by_level() {
            self.version.levels[level].retain(|g| !files.iter().any(|f| f.number == g.number));
        }
        merge_newest(&mut records, plan.bottommost);
        let outputs = self.write_files(&records, plan.target_file_size);
        let out = plan.output_level;
        for f in outputs {
            self.report.compaction_bytes_written += f.size;
            self.version.levels[out].push(Arc::new(f));
        }
        if out == 0 {
            sort_level0(&mut self.version);
        } else {
            let level = &mut self.version.levels[out];
            level.sort_by(|a, b| a.smallest.cmp(&b.smallest));
            if let Some(w) = level
                .windows(2)
                .find(|w| w[0].largest_user_key() >= w[1].smallest_user_key())
            {
                return Err(Error::InvalidArgument(format!(
                    "plan {:?} left files {} and {} overlapping at level {out}",
                    plan.reason, w[0].number, w[1].number
                )));
            }
        }
        self.report.compactions += 1;
        match self
            .report
            .by_reason
            .iter_mut()
            .find(|(r, _)| *r == plan.reason)
        {
            Some((_, n)) => *n += 1,
            None => self.report.by_reason.push((plan.reason, 1)),
        }
        Ok(())
    }

    /// The report, with the tree's current sizes.
    pub fn report(&self) -> SimReport {
        let mut r = self.report.clone();
        let files = self.version.levels.iter().flatten();
        r.live_bytes = files.clone().map(|f| f.size).sum();
        r.tombstones = files.map(|f| f.tombstones).sum();
        let present = self.latest.values().filter(|&&p| p).count() as u64;
        r.logical_bytes = present * self.record_bytes(false);
        r.sorted_runs = self.version.levels.first().map_or(0, Vec::len)
            + self
                .version
                .levels
                .iter()
                .skip(1)
                .filter(|l| !l.is_empty())
                .count();
        r
    }

    fn record_bytes(&self, delete: bool) -> u64 {
        let o = &self.options;
        o.entry_overhead + o.key_bytes + if delete { 0 } else { o.value_bytes }
    }

    fn shard_of(&self, key: u64) -> u32 {
        self.options.shard_splits.partition_point(|&s| s <= key) as u32
    }

    /// Cut sorted `records` into files of about `target` bytes, never across
    /// a shard boundary.
    fn write_files(&mut self, records: &[Record], target: u64) -> Vec<FileMeta> {
        let mut files = Vec::new();
        let mut start = 0;
        while start < records.len() {
            let shard = self.shard_of(records[start].key);
            let mut end = start;
            let mut bytes = 0;
            while end < records.len()
                && (end == start || bytes < target)
                && self.shard_of(records[end].key) == shard
            {
                bytes += self.record_bytes(records[end].delete);
                end += 1;
            }
            let chunk = &records[start..end];
            let number = self.next_file;
            self.next_file += 1;
            files.push(self.file_meta(number, shard, chunk, bytes));
            self.contents.insert(number, chunk.to_vec());
            start = end;
        }
        files
    }

    fn file_meta(&self, number: u64, shard: u32, chunk: &[Record], size: u64) -> FileMeta {
        let ikey = |r: &Record| {
            let kind = if r.delete {
                ValueKind::Tombstone
            } else {
                ValueKind::Value
            };
            make_internal_key(&r.key.to_be_bytes(), r.seq, kind)
        };
        FileMeta {
            number,
            size,
            smallest: chunk.first().map(ikey).unwrap_or_default(),
            largest: chunk.last().map(ikey).unwrap_or_default(),
            smallest_seq: chunk.iter().map(|r| r.seq).min().unwrap_or(0),
            largest_seq: chunk.iter().map(|r| r.seq).max().unwrap_or(0),
            entries: chunk.len() as u64,
            tombstones: chunk.iter().filter(|r| r.delete).count() as u64,
            shard,
            created_ms: super::clock::Clock::now_ms(self.clock.as_ref()),
        }
    }
}

/// Sort by key and keep each key's newest record; drop tombstones when
/// `bottommost` (nothing older can exist below).
fn merge_newest(records: &mut Vec<Record>, bottommost: bool) {
    records.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
    records.dedup_by_key(|r| r.key);
    if bottommost {
        records.retain(|r| !r.delete);
    }
}

/// L0 newest first, as the version set orders it.
fn sort_level0(version: &mut Version) {
    if let Some(l0) = version.levels.first_mut() {
        l0.sort_by(|a, b| {
            b.largest_seq
                .cmp(&a.largest_seq)
                .then(b.number.cmp(&a.number))
        });
    }
}

/// A synthetic stream of flushes: each flush holds `entries_per_flush`
/// writes; a write deletes an existing key with probability `delete_ratio`,
/// overwrites one with `overwrite_ratio`, and otherwise inserts a new key.
/// New keys are spread over the key space (a bijective scramble of the
/// insertion count), so every flush covers the whole key range. The same
/// seed gives the same stream, which the engine can replay.
#[derive(Debug, Clone)]
pub struct FlushStream {
    pub entries_per_flush: usize,
    pub overwrite_ratio: f64,
    pub delete_ratio: f64,
    inserted: u64,
    state: u64,
}

impl FlushStream {
    pub fn new(
        entries_per_flush: usize,
        overwrite_ratio: f64,
        delete_ratio: f64,
        seed: u64,
    ) -> Self {
        FlushStream {
            entries_per_flush,
            overwrite_ratio,
            delete_ratio,
            inserted: 0,
            state: seed,
        }
    }

    /// splitmix64: small, fast, and reproducible across platforms.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The key id of the `i`-th inserted key (an odd multiplier is a
    /// bijection on u64).
    pub fn key_of(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn next_entry(&mut self) -> SimEntry {
        let dice = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if self.inserted > 0 && dice < self.delete_ratio + self.overwrite_ratio {
            let key = Self::key_of(self.next_u64() % self.inserted);
            return SimEntry {
                key,
                delete: dice < self.delete_ratio,
            };
        }
        self.inserted += 1;
        SimEntry {
            key: Self::key_of(self.inserted - 1),
            delete: false,
        }
    }
}

impl Iterator for FlushStream {
    type Item = Vec<SimEntry>;
    fn next(&mut self) -> Option<Vec<SimEntry>> {
        Some(
            (0..self.entries_per_flush)
                .map(|_| self.next_entry())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::{LeveledOptions, Preset};

    fn small(preset: Preset) -> CompactionOptions {
        CompactionOptions {
            preset,
            levels: LeveledOptions {
                num_levels: 4,
                l0_compaction_trigger: 2,
                max_bytes_for_level_base: 16 * 1024,
                max_bytes_for_level_multiplier: 4.0,
                target_file_size_base: 4096,
                target_file_size_multiplier: 1,
                max_compaction_bytes: 64 * 1024,
            },
            runs_per_tier: 3,
            ..CompactionOptions::default()
        }
    }

    #[test]
    fn a_single_flush_writes_once_and_reports_sizes() {
        let mut sim =
            Simulator::new(&small(Preset::OneLeveling), SimulatorOptions::default()).unwrap();
        let entries: Vec<SimEntry> = (0..20)
            .map(|k| SimEntry {
                key: k,
                delete: false,
            })
            .collect();
        sim.flush(&entries).unwrap();
        let r = sim.report();
        assert_eq!(r.flush_bytes, 20 * 128);
        assert_eq!(r.compactions, 0);
        assert_eq!(r.write_amplification(), 1.0);
        assert_eq!(r.space_amplification(), 1.0);
        assert_eq!(r.sorted_runs, sim.version().levels[0].len());
    }

    #[test]
    fn overwritten_keys_shrink_in_compaction_and_tombstones_vanish_at_the_bottom() {
        let mut sim =
            Simulator::new(&small(Preset::OneLeveling), SimulatorOptions::default()).unwrap();
        let all: Vec<SimEntry> = (0..10)
            .map(|k| SimEntry {
                key: k,
                delete: false,
            })
            .collect();
        sim.flush(&all).unwrap();
        let deletes: Vec<SimEntry> = (0..10)
            .map(|k| SimEntry {
                key: k,
                delete: true,
            })
            .collect();
        sim.flush(&deletes).unwrap();
        // L0 trigger 2: both files merge into an empty L1, which is bottommost.
        let r = sim.report();
        assert_eq!(r.compactions, 1);
        assert_eq!(r.live_bytes, 0);
        assert_eq!(r.tombstones, 0);
    }

    #[test]
    fn flush_streams_are_reproducible_and_follow_their_ratios() {
        let a: Vec<Vec<SimEntry>> = FlushStream::new(1000, 0.5, 0.1, 7).take(5).collect();
        let b: Vec<Vec<SimEntry>> = FlushStream::new(1000, 0.5, 0.1, 7).take(5).collect();
        assert_eq!(a, b);
        let deletes = a.iter().flatten().filter(|e| e.delete).count();
        assert!((300..700).contains(&deletes), "{deletes}");
    }
}
