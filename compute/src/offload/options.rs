//! How a database offloads sealed memtables to a memory node.

use std::sync::Arc;
use std::time::Duration;

use o3_memnode::client::{ImageStore, StoreConfig};
use o3_storage::{Error, Result};

/// Memtable offloading ([`crate::DbOptions::offload`]).
///
/// Sealed memtables beyond the `max_local_sealed_memtables` newest of a
/// shard are shipped to the memory node by background threads; the compute
/// node keeps each offloaded image's key range, bloom filter, range
/// tombstones and location, frees the local copy, and reads through the
/// memory node (delegated `get` and `scan`). The WAL keeps every record of
/// an offloaded image until its flush is installed, so a lost memory node
/// loses nothing: its images are rebuilt from the WAL.
#[derive(Debug, Clone)]
pub struct OffloadOptions {
    /// The memory node to use.
    pub memory_node: MemoryNodeChoice,
    /// Sealed memtables of a shard kept in local memory (the newest ones);
    /// older sealed memtables are offloaded. Like O3-LSM's
    /// `max_local_write_buffer_number`.
    pub max_local_sealed_memtables: usize,
    /// Bytes of images this database may hold on the memory node; beyond
    /// it, sealed memtables stay local and the ordinary write stall applies.
    pub max_offloaded_bytes: u64,
    /// Threads shipping images (several images in flight at once).
    pub shipping_threads: usize,
    /// A shard's flush waits until it has this many sealed memtables (or
    /// `Db::flush` asks, the WAL or the local memory is over its limit, or
    /// writes stopped), so that offloaded memtables are merged into fewer,
    /// larger level-0 tables (RocksDB's `min_write_buffer_number_to_merge`).
    /// 1 flushes every sealed memtable at once.
    pub min_memtables_to_merge: usize,
    /// How long a read that needs a lost image waits for its rebuild
    /// before it fails with an error naming the image.
    pub read_wait: Duration,
    /// How reads reach offloaded images (`docs/offload_reads.md`).
    pub read_policy: ReadPolicy,
    /// Local memory for the key→offset cache of offloaded images' entries
    /// (64 bytes each, whatever the key's length: a key's hash stands for
    /// it, and every hit is checked against the key it reads). 0 turns the
    /// cache off whatever the policy.
    pub offset_cache_bytes: u64,
    /// Once the cache is full, a key's entry is cached only when lookups of
    /// it reached offloaded images this many times recently (a frequency
    /// sketch counts them, halving its counts as they age): one-off keys
    /// never displace hot ones. Until then, every key is cached.
    pub cache_admit_after: u32,
    /// Whether cache entries also hold their key and value, so that a hit
    /// answers with no remote read (each such entry weighs its key and
    /// value too: the same bytes hold fewer, hotter keys).
    pub cache_values: CacheValues,
    /// Local memory for offloaded images pulled back whole because they are
    /// read often (`ReadPolicy::Adaptive` only; 0: never).
    pub pull_back_bytes: u64,
    /// Local memory for key indexes of offloaded images
    /// (`ReadPolicy::Adaptive` only; 0: none): each shipped image gets one
    /// while there is room, and scans merge indexed images here and read
    /// only the values they return (`docs/offload_reads.md`).
    pub index_bytes: u64,
}

/// How point lookups and scans reach offloaded images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPolicy {
    /// Every lookup is a delegated `get` and every scan a delegated `scan`
    /// in batches (no cache, no one-sided reads of entries).
    Delegate,
    /// Delegation, plus the key→offset cache: a lookup whose key is cached
    /// for the newest image that may hold it reads the entry with one
    /// one-sided read.
    Cache,
    /// The cache, plus choices from measured costs: a cached entry is read
    /// one-sidedly only while that is faster than delegating; images read
    /// often are pulled back into local memory (within `pull_back_bytes`);
    /// scan batches are sized from the measured round trip; a scan that
    /// will read most of an image reads the image whole and iterates it
    /// locally.
    #[default]
    Adaptive,
}

impl ReadPolicy {
    pub fn name(self) -> &'static str {
        match self {
            ReadPolicy::Delegate => "delegate",
            ReadPolicy::Cache => "cache",
            ReadPolicy::Adaptive => "adaptive",
        }
    }
}

impl std::str::FromStr for ReadPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ReadPolicy, String> {
        match s {
            "delegate" => Ok(ReadPolicy::Delegate),
            "cache" => Ok(ReadPolicy::Cache),
            "adaptive" => Ok(ReadPolicy::Adaptive),
            other => Err(format!(
                "unknown read policy {other:?} (use delegate, cache or adaptive)"
            )),
        }
    }
}

impl std::fmt::Display for ReadPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// When cache entries hold their key and value
/// ([`OffloadOptions::cache_values`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheValues {
    /// Never: every hit reads its entry one-sidedly.
    Off,
    /// Under [`ReadPolicy::Adaptive`], while a one-sided read of an entry
    /// costs more than 4 local lookups (measured: over a network link,
    /// not over shared memory): entries admitted or hit then take their
    /// key and value along.
    #[default]
    Auto,
    /// Always, whatever the policy and costs.
    On,
}

impl CacheValues {
    pub fn name(self) -> &'static str {
        match self {
            CacheValues::Off => "off",
            CacheValues::Auto => "auto",
            CacheValues::On => "on",
        }
    }
}

impl std::str::FromStr for CacheValues {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<CacheValues, String> {
        match s {
            "off" => Ok(CacheValues::Off),
            "auto" => Ok(CacheValues::Auto),
            "on" => Ok(CacheValues::On),
            other => Err(format!(
                "unknown cache_values {other:?} (use off, auto or on)"
            )),
        }
    }
}

impl std::fmt::Display for CacheValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Key→offset cache of the default options.
pub const DEFAULT_OFFSET_CACHE_BYTES: u64 = 8 << 20;
/// Local memory for pulled-back images in the default options.
pub const DEFAULT_PULL_BACK_BYTES: u64 = 32 << 20;
/// Local memory for key indexes of offloaded images in the default options.
pub const DEFAULT_INDEX_BYTES: u64 = 16 << 20;

/// Which memory node offloading uses.
#[derive(Clone)]
pub enum MemoryNodeChoice {
    /// Connect as this configuration says (an in-process node over the
    /// `local` transport, or an `o3-memnode` process).
    Config(StoreConfig),
    /// Use this store (an embedder's own, or a test's).
    Store(Arc<dyn ImageStore>),
}

impl std::fmt::Debug for MemoryNodeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryNodeChoice::Config(c) => write!(f, "Config({c:?})"),
            MemoryNodeChoice::Store(s) => write!(f, "Store({})", s.name()),
        }
    }
}

/// Pool of the in-process memory node by default.
pub const DEFAULT_IN_PROCESS_POOL: u64 = 4 << 30;

impl Default for OffloadOptions {
    /// An in-process memory node of 4 GiB (`DEFAULT_IN_PROCESS_POOL`), one
    /// local sealed memtable per shard, 2 shipping threads, the adaptive
    /// read policy with an 8 MiB key→offset cache (holding values where
    /// remote reads are dear), 32 MiB for pulled-back
    /// images and 16 MiB for key indexes of images.
    fn default() -> Self {
        OffloadOptions {
            memory_node: MemoryNodeChoice::Config(StoreConfig::InProcess {
                pool_size: DEFAULT_IN_PROCESS_POOL,
                link: None,
            }),
            max_local_sealed_memtables: 1,
            max_offloaded_bytes: 2 << 30,
            shipping_threads: 2,
            min_memtables_to_merge: 1,
            read_wait: Duration::from_secs(10),
            read_policy: ReadPolicy::Adaptive,
            offset_cache_bytes: DEFAULT_OFFSET_CACHE_BYTES,
            cache_admit_after: 2,
            cache_values: CacheValues::Auto,
            pull_back_bytes: DEFAULT_PULL_BACK_BYTES,
            index_bytes: DEFAULT_INDEX_BYTES,
        }
    }
}

impl OffloadOptions {
    /// Check the options, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.shipping_threads == 0 {
            return Err(Error::InvalidArgument(
                "offload.shipping_threads must be at least 1".into(),
            ));
        }
        if self.min_memtables_to_merge == 0 {
            return Err(Error::InvalidArgument(
                "offload.min_memtables_to_merge must be at least 1".into(),
            ));
        }
        if self.cache_admit_after == 0 {
            return Err(Error::InvalidArgument(
                "offload.cache_admit_after must be at least 1".into(),
            ));
        }
        if self.max_offloaded_bytes == 0 {
            return Err(Error::InvalidArgument(
                "offload.max_offloaded_bytes must be above 0 (leave offload unset to disable it)"
                    .into(),
            ));
        }
        Ok(())
    }
}
