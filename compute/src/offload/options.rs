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
}

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
    /// local sealed memtable per shard, 2 shipping threads.
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
        if self.max_offloaded_bytes == 0 {
            return Err(Error::InvalidArgument(
                "offload.max_offloaded_bytes must be above 0 (leave offload unset to disable it)"
                    .into(),
            ));
        }
        Ok(())
    }
}
