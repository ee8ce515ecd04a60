//! Open SSTs, shared by every reader. An entry is removed when its file is
//! deleted; opening is done outside the lock so a slow open never blocks
//! readers of other tables.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use o3_storage::Result;
use o3_storage::env::Storage;
use o3_storage::filename::table_path;
use o3_storage::sst::{BlockCache, Table};

#[derive(Debug)]
pub(crate) struct TableCache {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    block_cache: Arc<BlockCache>,
    /// By file number; every point lookup probes it once per table, so it
    /// uses a fast non-cryptographic hash (keys are our own file numbers).
    tables: RwLock<HashMap<u64, Arc<Table>, foldhash::fast::FixedState>>,
}

impl TableCache {
    pub(crate) fn new(
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        block_cache: Arc<BlockCache>,
    ) -> Self {
        TableCache {
            dir,
            storage,
            block_cache,
            tables: RwLock::new(HashMap::default()),
        }
    }

    /// The open table for file `number`.
    pub(crate) fn get(&self, number: u64) -> Result<Arc<Table>> {
        if let Some(t) = self.tables.read().get(&number) {
            return Ok(t.clone());
        }
        let path = table_path(&self.dir, number);
        let file = self.storage.open(&path)?;
        // Tables opened here serve point lookups and user iterators;
        // compactions read their inputs through handles of their own.
        file.advise_random();
        let table = Arc::new(Table::open(
            file,
            path.display().to_string(),
            Some(self.block_cache.clone()),
        )?);
        Ok(self.tables.write().entry(number).or_insert(table).clone())
    }

    /// The table for file `number` if it is open already (nothing is read).
    pub(crate) fn get_if_open(&self, number: u64) -> Option<Arc<Table>> {
        self.tables.read().get(&number).cloned()
    }

    pub(crate) fn evict(&self, number: u64) {
        self.tables.write().remove(&number);
    }

    pub(crate) fn block_cache(&self) -> &Arc<BlockCache> {
        &self.block_cache
    }
}
