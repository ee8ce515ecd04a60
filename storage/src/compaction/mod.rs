//! Compaction: *what* to compact (picking) and the rule that decides which
//! entries a compaction keeps. *Where* and *when* a compaction runs is decided
//! by the compute node and the compaction service.
//!
//! - [`CompactionStrategy`]: the picking interface. [`Composed`] composes a
//!   strategy from the four primitives of the design space ([`Trigger`],
//!   [`Layout`], [`Granularity`], [`FilePicker`]), configured by
//!   [`CompactionOptions`] with named [`Preset`]s; [`Leveled`] is the
//!   RocksDB-like 1-leveling (tiered L0 split by shard, leveled L1..,
//!   partial compaction of the least-overlapping file), which the default
//!   preset `one-leveling` reproduces pick for pick;
//! - [`Simulator`]: the same pickers over synthetic flushes, without I/O,
//!   predicting write and space amplification (`docs/compaction.md`);
//! - [`CompactionPlan`]: the files one compaction reads and where it writes;
//! - [`CompactionStream`]: the merge rule, as an adapter over the merged
//!   inputs that yields only the entries to keep.

mod clock;
mod composed;
mod composition;
mod leveled;
mod merge_rule;
mod options;
mod picker;
mod plan;
mod primitives;
mod shape;
mod simulator;

pub use clock::{Clock, ManualClock, SystemClock};
pub use composed::Composed;
pub use composition::{CompactionOptions, Composition, MAX_PHYSICAL_LEVELS};
pub use leveled::Leveled;
pub use merge_rule::{CompactionStream, MergeCounters};
pub use options::LeveledOptions;
pub use plan::{BusyFiles, CompactionPlan, CompactionReason};
pub use primitives::{FilePicker, Granularity, Layout, Preset, Trigger};
pub use shape::TreeShape;
pub use simulator::{FlushStream, SimEntry, SimReport, Simulator, SimulatorOptions};

use crate::version::Version;

/// A compaction picking strategy. Object safe, so a database holds a
/// `Box<dyn CompactionStrategy>` chosen by configuration.
///
/// Every plan a strategy returns keeps the version invariants once its
/// outputs replace its inputs: no file it reads is in `busy`, and no running
/// job (whose files are in `busy`) writes into the key range it writes.
pub trait CompactionStrategy: Send + Sync + std::fmt::Debug {
    /// The most urgent automatic compaction, or `None` when no level needs
    /// one (or every candidate touches a busy file).
    fn pick(&self, version: &Version, busy: &BusyFiles) -> Option<CompactionPlan>;

    /// A compaction of the files at `level` whose user keys intersect
    /// `[lo, hi]` (inclusive; `None` is unbounded), or `None` when no file
    /// overlaps or a needed file is busy.
    fn pick_manual(
        &self,
        version: &Version,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan>;

    /// Per-level urgency: `>= 1.0` means the level needs compaction.
    fn level_scores(&self, version: &Version) -> Vec<f64>;

    /// Estimated bytes compaction must rewrite to bring every level under its
    /// target; the write path stalls on it.
    fn pending_compaction_bytes(&self, version: &Version) -> u64;
}
