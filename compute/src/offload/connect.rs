//! A memory node the database may reach only later: opening a database
//! does not wait for its memory node, it keeps memtables local until the
//! node answers (a restarted cluster comes up in any order).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use o3_memnode::client::{
    ClientError, ClientErrorKind, ClientResult, ImageStore, ReadAt, RemoteRegion, StoreConfig,
};
use o3_memnode::{GetRequest, GetResponse, ImageMeta, NodeStats, ScanRequest, ScanResponse};

/// How often a missing memory node is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Connections made so far are numbered: a region's session carries the
/// connection's number in its high bits, so sessions of different
/// connections never compare equal.
const SESSION_BITS: u32 = 40;

/// An [`ImageStore`] that connects (and reconnects) as needed.
pub(crate) struct Reconnecting {
    config: StoreConfig,
    name: String,
    state: Mutex<Connection>,
}

struct Connection {
    store: Option<Arc<dyn ImageStore>>,
    /// Number of the current (or next) connection.
    generation: u64,
    last_attempt: Option<Instant>,
}

impl std::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("name", &self.name)
            .finish()
    }
}

impl Reconnecting {
    /// Connect now if the node answers; an unreachable node is tried again
    /// on use, any other failure (a refused token, a bad address) is an
    /// error now.
    pub fn open(config: StoreConfig) -> ClientResult<Reconnecting> {
        let name = match &config {
            StoreConfig::InProcess { .. } => "in-process".to_string(),
            StoreConfig::Remote(r) => r.control.clone(),
        };
        let store = Reconnecting {
            config,
            name,
            state: Mutex::new(Connection {
                store: None,
                generation: 0,
                last_attempt: None,
            }),
        };
        match store.connected() {
            Ok(_) => Ok(store),
            Err(e) if e.kind == ClientErrorKind::Unavailable => {
                tracing::warn!(
                    "memory node {} unreachable ({e}); memtables stay local until it answers",
                    store.name
                );
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }

    /// The current connection, making one when there is none (at most one
    /// attempt per [`RETRY_EVERY`]).
    fn connected(&self) -> ClientResult<(Arc<dyn ImageStore>, u64)> {
        let mut c = self.state.lock();
        if let Some(store) = &c.store {
            return Ok((store.clone(), c.generation));
        }
        if c.last_attempt.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return Err(ClientError::new(
                ClientErrorKind::Unavailable,
                &self.name,
                "not connected (retrying)",
            ));
        }
        c.last_attempt = Some(Instant::now());
        let store = o3_memnode::client::open(&self.config)?;
        c.generation += 1;
        c.store = Some(store.clone());
        tracing::info!("connected to memory node {}", self.name);
        Ok((store, c.generation))
    }

    fn session_of(generation: u64, inner: u64) -> u64 {
        (generation << SESSION_BITS) | (inner & ((1 << SESSION_BITS) - 1))
    }

    /// `call` on the current connection, with regions translated between
    /// this store's sessions and the connection's.
    fn with<T>(&self, call: impl FnOnce(&dyn ImageStore) -> ClientResult<T>) -> ClientResult<T> {
        let (store, _) = self.connected()?;
        call(store.as_ref())
    }

    /// The connection's view of `region`, or `SessionLost` when the region
    /// came from an earlier connection.
    fn inner_region(
        &self,
        region: &RemoteRegion,
    ) -> ClientResult<(Arc<dyn ImageStore>, RemoteRegion)> {
        let (store, generation) = self.connected()?;
        if region.session >> SESSION_BITS != generation {
            return Err(ClientError::new(
                ClientErrorKind::SessionLost,
                &self.name,
                format!(
                    "region {} belongs to an earlier connection",
                    region.desc.region.0
                ),
            ));
        }
        let mut inner = region.clone();
        inner.session &= (1 << SESSION_BITS) - 1;
        Ok((store, inner))
    }
}

impl ImageStore for Reconnecting {
    fn name(&self) -> &str {
        &self.name
    }

    fn session(&self) -> u64 {
        let c = self.state.lock();
        match &c.store {
            Some(store) => Self::session_of(c.generation, store.session()),
            None => Self::session_of(c.generation + 1, 0),
        }
    }

    fn allocate(&self, bytes: u64) -> ClientResult<RemoteRegion> {
        let (store, generation) = self.connected()?;
        let mut region = store.allocate(bytes)?;
        region.session = Self::session_of(generation, region.session);
        Ok(region)
    }

    fn write(&self, region: &RemoteRegion, offset: u64, data: &[u8]) -> ClientResult<()> {
        let (store, inner) = self.inner_region(region)?;
        store.write(&inner, offset, data)
    }

    fn publish(&self, region: &RemoteRegion, meta: ImageMeta) -> ClientResult<()> {
        let (store, inner) = self.inner_region(region)?;
        store.publish(&inner, meta)
    }

    fn read(&self, region: &RemoteRegion, offset: u64, buf: &mut [u8]) -> ClientResult<()> {
        let (store, inner) = self.inner_region(region)?;
        store.read(&inner, offset, buf)
    }

    fn read_many(&self, reads: &mut [ReadAt<'_>]) -> ClientResult<()> {
        let mut inner = Vec::with_capacity(reads.len());
        let mut store = None;
        for r in reads.iter() {
            let (s, region) = self.inner_region(r.region)?;
            store.get_or_insert(s);
            inner.push(region);
        }
        let Some(store) = store else { return Ok(()) };
        let mut translated: Vec<ReadAt<'_>> = reads
            .iter_mut()
            .zip(&inner)
            .map(|(r, region)| ReadAt {
                region,
                offset: r.offset,
                buf: &mut *r.buf,
            })
            .collect();
        store.read_many(&mut translated)
    }

    fn get(&self, request: &GetRequest) -> ClientResult<GetResponse> {
        self.with(|s| s.get(request))
    }

    fn scan(&self, request: &ScanRequest) -> ClientResult<ScanResponse> {
        self.with(|s| s.scan(request))
    }

    fn release(&self, region: &RemoteRegion) -> ClientResult<()> {
        let (store, inner) = self.inner_region(region)?;
        store.release(&inner)
    }

    fn stats(&self) -> ClientResult<NodeStats> {
        self.with(|s| s.stats())
    }

    fn data_plane(&self) -> Option<(o3_memnode::TransportKind, o3_transport::NodeId)> {
        // Never waits: placement asks with the database's lock held, and a
        // connection attempt holds this lock (then there is no plane to
        // name anyway).
        let store = self.state.try_lock()?.store.clone();
        store.and_then(|s| s.data_plane())
    }
}
