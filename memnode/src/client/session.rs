//! [`SessionStore`]: the [`ImageStore`] of a memory node reached through a
//! control plane (leases, regions, publish) and a data-plane transport
//! connection (one-sided writes and reads of regions, delegated `get` and
//! `scan`). The in-process store and the remote store are this one type
//! over two [`ControlPlane`]s: direct calls on a [`crate::ControlService`],
//! or gRPC.
//!
//! A **session** is one registration: a lease, the owner id it names, and
//! the data-plane connection. Sessions are numbered by this client from 1;
//! every [`RemoteRegion`] records the session it was allocated in, and an
//! operation on a region of an older session fails as
//! [`ClientErrorKind::SessionLost`] without reaching the node. When the
//! node says the lease is gone (it expired, or a restarted node does not
//! know it) the client registers again by itself — on the failing call or
//! from its heartbeat thread, which renews the lease every TTL/3 — and
//! reports `SessionLost` for what belonged to the old session.
//!
//! One-sided operations carry only the region's transport key, which the
//! transport checks; the client also refuses, before sending anything, a
//! region of another owner (a descriptor it did not get from its own node)
//! and a write into a region it has published (an image is immutable once
//! published: the memory node searches it in place).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use o3_transport::control::proto::memnode::v1 as pb;
use o3_transport::link::LinkModel;
use o3_transport::{ConnectOptions, Connection, Fabric, NodeId, WorkRequest};
use parking_lot::{Mutex, RwLock};
use tonic::{Code, Status};

use super::{ClientError, ClientErrorKind, ClientResult, ImageStore, ReadAt, RemoteRegion};
use crate::control::data_region_from_proto;
use crate::data_plane::TransportKind;
use crate::images::{ImageId, ImageMeta};
use crate::lease::LeaseSecret;
use crate::lookup::{GetRequest, GetResponse, ScanRequest, ScanResponse};
use crate::node::NodeStats;
use crate::pool::{OwnerId, PoolStats, RegionDesc, RegionId};
use crate::wire::{Message, Refusal};

/// The control-plane calls, as the memory node's service answers them.
pub(crate) trait ControlPlane: Send + Sync + fmt::Debug {
    fn register(&self, request: pb::RegisterRequest) -> Result<pb::RegisterResponse, Status>;
    fn heartbeat(&self, request: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse, Status>;
    fn allocate(&self, request: pb::AllocateRequest) -> Result<pb::AllocateResponse, Status>;
    fn publish(&self, request: pb::PublishRequest) -> Result<pb::PublishResponse, Status>;
    fn release(&self, request: pb::ReleaseRequest) -> Result<pb::ReleaseResponse, Status>;
    fn stats(&self, request: pb::StatsRequest) -> Result<pb::StatsResponse, Status>;
}

/// Makes the fabric this side connects to an announced data plane with.
pub(crate) type FabricMaker =
    Box<dyn Fn(TransportKind, &NodeId) -> Result<Arc<dyn Fabric>, String> + Send + Sync>;

/// Bytes per one-sided work request when an image is written or read: a
/// 64 MiB image is one batch of 16 requests (one round trip), each small
/// enough for any backend's single transfer.
pub const TRANSFER_CHUNK: usize = 4 << 20;

/// Write `data` into `region` at `offset` in [`TRANSFER_CHUNK`] pieces
/// posted as one batch: how the clients ship an image (and how a benchmark
/// measures the raw transport doing the same).
pub fn write_chunked(
    connection: &dyn Connection,
    region: &o3_transport::RegionDesc,
    offset: u64,
    data: &[u8],
) -> o3_transport::Result<()> {
    let mut batch: Vec<WorkRequest<'_>> = data
        .chunks(TRANSFER_CHUNK)
        .scan(offset, |at, chunk| {
            let request = WorkRequest::Write {
                remote: region,
                offset: *at,
                data: chunk,
            };
            *at += chunk.len() as u64;
            Some(request)
        })
        .collect();
    first_error(connection.post(&mut batch))
}

/// Read `buf.len()` bytes of `region` at `offset` in [`TRANSFER_CHUNK`]
/// pieces posted as one batch.
pub fn read_chunked(
    connection: &dyn Connection,
    region: &o3_transport::RegionDesc,
    offset: u64,
    buf: &mut [u8],
) -> o3_transport::Result<()> {
    let mut at = offset;
    let mut batch: Vec<WorkRequest<'_>> = Vec::new();
    for chunk in buf.chunks_mut(TRANSFER_CHUNK) {
        let len = chunk.len() as u64;
        batch.push(WorkRequest::Read {
            remote: region,
            offset: at,
            buf: chunk,
        });
        at += len;
    }
    first_error(connection.post(&mut batch))
}

fn first_error(
    results: Vec<o3_transport::Result<o3_transport::Completion>>,
) -> o3_transport::Result<()> {
    results.into_iter().try_for_each(|r| r.map(drop))
}

/// How a [`SessionStore`] is put together.
pub(crate) struct StoreParts {
    pub name: String,
    pub compute_node: String,
    pub control: Box<dyn ControlPlane>,
    pub fabrics: FabricMaker,
    pub link: Option<LinkModel>,
    pub connect: ConnectOptions,
}

/// One registration with the memory node.
#[derive(Debug)]
struct Session {
    id: u64,
    owner: OwnerId,
    lease: LeaseSecret,
    ttl: Duration,
    plane: Option<(TransportKind, NodeId)>,
    /// Opened on first use; dropped when it fails, so the next use opens a
    /// fresh one.
    connection: Mutex<Option<Arc<dyn Connection>>>,
    /// Regions published in this session, with their image.
    published: Mutex<HashMap<RegionId, ImageId>>,
}

/// A fabric made for a data plane of `kind` announced at `node`.
struct PlaneFabric {
    kind: TransportKind,
    node: NodeId,
    fabric: Arc<dyn Fabric>,
}

struct Shared {
    parts: StoreParts,
    session: RwLock<Option<Arc<Session>>>,
    /// Serialises registrations, so a lost lease is replaced once.
    registering: Mutex<()>,
    sessions: AtomicU64,
    /// The session and region of each published image, to tell an image
    /// lost with its session from one that was never published.
    images: Mutex<HashMap<ImageId, (u64, RegionId)>>,
    /// The data-plane fabric, made on first use for the announced plane.
    fabric: Mutex<Option<PlaneFabric>>,
}

/// An [`ImageStore`] over a control plane and a data-plane connection.
pub struct SessionStore {
    shared: Arc<Shared>,
    /// Dropping it stops the heartbeat thread.
    _heartbeat: Option<std::sync::mpsc::Sender<()>>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.shared.parts.name)
            .field("session", &self.session())
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.parts.name)
            .finish()
    }
}

impl SessionStore {
    /// Register with the node and start renewing the lease.
    pub(crate) fn open(parts: StoreParts) -> ClientResult<SessionStore> {
        let shared = Arc::new(Shared {
            parts,
            session: RwLock::new(None),
            registering: Mutex::new(()),
            sessions: AtomicU64::new(0),
            images: Mutex::new(HashMap::new()),
            fabric: Mutex::new(None),
        });
        let session = shared.register(None)?;
        shared.connection(&session)?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("o3-memnode-heartbeat".into())
            .spawn(move || heartbeat_loop(&weak, &stopped))
            .map_err(|e| {
                shared.error(ClientErrorKind::Refused, format!("heartbeat thread: {e}"))
            })?;
        Ok(SessionStore {
            shared,
            _heartbeat: Some(stop),
        })
    }
}

/// Renews the lease every TTL/3 (and registers again when it was lost)
/// until the store is dropped.
fn heartbeat_loop(shared: &Weak<Shared>, stopped: &std::sync::mpsc::Receiver<()>) {
    loop {
        let period = match shared.upgrade() {
            None => return,
            Some(shared) => shared
                .session
                .read()
                .as_ref()
                .map_or(Duration::from_secs(1), |s| s.ttl / 3)
                .max(Duration::from_millis(10)),
        };
        match stopped.recv_timeout(period) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.keep_alive();
    }
}

impl Shared {
    fn name(&self) -> &str {
        &self.parts.name
    }

    fn error(&self, kind: ClientErrorKind, message: impl Into<String>) -> ClientError {
        ClientError::new(kind, self.name(), message)
    }

    fn current_id(&self) -> u64 {
        self.session.read().as_ref().map_or(0, |s| s.id)
    }

    /// The current session, registering when there is none.
    fn current(&self) -> ClientResult<Arc<Session>> {
        if let Some(session) = self.session.read().as_ref() {
            return Ok(Arc::clone(session));
        }
        self.register(None)
    }

    /// Register and make the result the current session, unless `stale`
    /// is given and another thread already replaced it.
    fn register(&self, stale: Option<u64>) -> ClientResult<Arc<Session>> {
        let _one_at_a_time = self.registering.lock();
        if let Some(session) = self.session.read().as_ref()
            && stale != Some(session.id)
        {
            return Ok(Arc::clone(session));
        }
        let reply = self
            .parts
            .control
            .register(pb::RegisterRequest {
                compute_node: self.parts.compute_node.clone(),
            })
            .map_err(|status| self.status_error(&status, "register"))?;
        let plane = match reply.data_plane {
            None => None,
            Some(plane) => {
                let kind = plane
                    .transport
                    .parse::<TransportKind>()
                    .map_err(|e| self.error(ClientErrorKind::Refused, e))?;
                Some((kind, NodeId(plane.node)))
            }
        };
        let session = Arc::new(Session {
            id: self.sessions.fetch_add(1, Ordering::SeqCst) + 1,
            owner: OwnerId(reply.owner),
            lease: LeaseSecret(reply.lease),
            ttl: Duration::from_millis(reply.lease_ttl_ms),
            plane,
            connection: Mutex::new(None),
            published: Mutex::new(HashMap::new()),
        });
        if stale.is_some() {
            tracing::info!(
                node = self.name(),
                session = session.id,
                owner = %session.owner,
                "lease lost; registered again"
            );
        }
        *self.session.write() = Some(Arc::clone(&session));
        Ok(session)
    }

    /// One heartbeat: renew the lease, or register again if it is gone.
    fn keep_alive(&self) {
        let session = self.session.read().clone();
        let Some(session) = session else {
            if let Err(e) = self.register(None) {
                tracing::debug!(node = self.name(), error = %e, "register failed");
            }
            return;
        };
        let renewed = self.parts.control.heartbeat(pb::HeartbeatRequest {
            lease: session.lease.0,
        });
        match renewed {
            Ok(_) => {}
            Err(status) if status.code() == Code::FailedPrecondition => {
                if let Err(e) = self.register(Some(session.id)) {
                    tracing::debug!(node = self.name(), error = %e, "register failed");
                }
            }
            Err(status) => {
                tracing::debug!(node = self.name(), error = %status.message(), "heartbeat failed");
            }
        }
    }

    /// The data-plane connection of `session`, opened if needed.
    fn connection(&self, session: &Session) -> ClientResult<Arc<dyn Connection>> {
        let mut slot = session.connection.lock();
        if let Some(connection) = slot.as_ref() {
            return Ok(Arc::clone(connection));
        }
        let Some((kind, node)) = &session.plane else {
            return Err(self.error(
                ClientErrorKind::Refused,
                "the memory node serves no data plane",
            ));
        };
        let fabric = self.fabric(*kind, node)?;
        let connection = fabric
            .connect(node, &self.parts.connect)
            .map_err(|e| self.transport_error(&e, "connect to the data plane"))?;
        let connection = match self.parts.link {
            Some(link) => link.wrap(connection),
            None => connection,
        };
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    fn fabric(&self, kind: TransportKind, node: &NodeId) -> ClientResult<Arc<dyn Fabric>> {
        let mut slot = self.fabric.lock();
        // A fabric serves any node of its kind, except that an shm fabric
        // lives in one directory: a node announced elsewhere gets a new one.
        let reusable = |made: &&PlaneFabric| {
            made.kind == kind && (kind != TransportKind::Shm || same_parent(&made.node, node))
        };
        if let Some(made) = slot.as_ref().filter(reusable) {
            return Ok(Arc::clone(&made.fabric));
        }
        let fabric = (self.parts.fabrics)(kind, node).map_err(|e| {
            self.error(
                ClientErrorKind::Unavailable,
                format!("cannot open a {kind} endpoint for the data plane at {node}: {e}"),
            )
        })?;
        *slot = Some(PlaneFabric {
            kind,
            node: node.clone(),
            fabric: Arc::clone(&fabric),
        });
        Ok(fabric)
    }

    /// The session `region` belongs to, which must be the current one and
    /// this client's own.
    fn session_of(&self, region: &RemoteRegion) -> ClientResult<Arc<Session>> {
        let session = self.current()?;
        if region.session != session.id {
            return Err(self.lost_region(region));
        }
        if region.desc.owner != session.owner {
            return Err(self.error(
                ClientErrorKind::Refused,
                format!(
                    "region {} belongs to {}, not to this client ({})",
                    region.desc.region, region.desc.owner, session.owner
                ),
            ));
        }
        Ok(session)
    }

    fn lost_region(&self, region: &RemoteRegion) -> ClientError {
        self.error(
            ClientErrorKind::SessionLost,
            format!(
                "region {} belongs to session {}, which is gone (now {})",
                region.desc.region,
                region.session,
                self.current_id()
            ),
        )
    }

    /// The transport descriptor of `region`, for a one-sided operation.
    fn data_desc<'r>(
        &self,
        region: &'r RemoteRegion,
    ) -> ClientResult<&'r o3_transport::RegionDesc> {
        region.data.as_ref().ok_or_else(|| {
            self.error(
                ClientErrorKind::Refused,
                format!("region {} has no data-plane descriptor", region.desc.region),
            )
        })
    }

    /// A one-sided operation on `region` through the session's connection.
    fn one_sided(
        &self,
        region: &RemoteRegion,
        what: &str,
        op: impl FnOnce(&dyn Connection, &o3_transport::RegionDesc) -> o3_transport::Result<()>,
    ) -> ClientResult<()> {
        let session = self.session_of(region)?;
        let desc = self.data_desc(region)?;
        let connection = self.connection(&session)?;
        match op(connection.as_ref(), desc) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.after_transport_failure(&session, &e, what)),
        }
    }

    /// The error for a failed data-plane operation, after dealing with
    /// what the failure says about the connection or the lease.
    fn after_transport_failure(
        &self,
        session: &Session,
        error: &o3_transport::Error,
        what: &str,
    ) -> ClientError {
        if error.is_connection_failure() {
            session.connection.lock().take();
        }
        if let o3_transport::Error::RegionGone { .. } = error
            && self.lease_lost(session)
        {
            return self.error(
                ClientErrorKind::SessionLost,
                format!("{what}: the lease expired and its regions were reclaimed"),
            );
        }
        self.transport_error(error, what)
    }

    fn transport_error(&self, error: &o3_transport::Error, what: &str) -> ClientError {
        use o3_transport::Error as E;
        let kind = match error {
            E::PeerGone { .. } | E::Timeout { .. } | E::Io { .. } => ClientErrorKind::Unavailable,
            E::Unauthenticated { .. } => ClientErrorKind::Unauthenticated,
            _ => ClientErrorKind::Refused,
        };
        self.error(kind, format!("{what}: {error}"))
    }

    /// True when the node no longer knows `session`'s lease; then a new
    /// session has been registered (or registering failed: the next call
    /// tries again).
    fn lease_lost(&self, session: &Session) -> bool {
        let renewed = self.parts.control.heartbeat(pb::HeartbeatRequest {
            lease: session.lease.0,
        });
        match renewed {
            Err(status) if status.code() == Code::FailedPrecondition => {
                if let Err(e) = self.register(Some(session.id)) {
                    tracing::debug!(node = self.name(), error = %e, "register failed");
                }
                true
            }
            _ => false,
        }
    }

    /// The error for a failed control call of `session`.
    fn call_error(&self, session: &Session, status: &Status, what: &str) -> ClientError {
        if status.code() == Code::FailedPrecondition && self.lease_lost(session) {
            return self.error(
                ClientErrorKind::SessionLost,
                format!("{what}: {}", status.message()),
            );
        }
        self.status_error(status, what)
    }

    fn status_error(&self, status: &Status, what: &str) -> ClientError {
        self.error(
            kind_of_status(status),
            format!("{what}: {}", status.message()),
        )
    }

    /// Ask the data plane; a lease refusal registers again and is
    /// `SessionLost`.
    fn ask(&self, session: &Session, request: &Message, what: &str) -> ClientResult<Message> {
        let connection = self.connection(session)?;
        let answer = connection
            .call(&request.encode())
            .map_err(|e| self.after_transport_failure(session, &e, what))?;
        match Message::decode(&answer) {
            Ok(Message::Refused {
                kind: Refusal::Lease,
                reason,
            }) => {
                if let Err(e) = self.register(Some(session.id)) {
                    tracing::debug!(node = self.name(), error = %e, "register failed");
                }
                Err(self.error(ClientErrorKind::SessionLost, format!("{what}: {reason}")))
            }
            Ok(Message::Refused {
                kind: Refusal::Request,
                reason,
            }) => Err(self.error(ClientErrorKind::Refused, format!("{what}: {reason}"))),
            Ok(message) => Ok(message),
            Err(e) => Err(self.error(ClientErrorKind::Refused, format!("{what}: bad answer: {e}"))),
        }
    }

    /// Refuse a lookup naming an image of an older session before asking.
    fn check_images<'i>(
        &self,
        session: &Session,
        images: impl IntoIterator<Item = &'i ImageId>,
    ) -> ClientResult<()> {
        let known = self.images.lock();
        for image in images {
            if let Some(&(published_in, _)) = known.get(image)
                && published_in != session.id
            {
                return Err(self.error(
                    ClientErrorKind::SessionLost,
                    format!("{image} was published in session {published_in}, which is gone"),
                ));
            }
        }
        Ok(())
    }

    fn forget(&self, session: &Session, region: RegionId) {
        if let Some(image) = session.published.lock().remove(&region) {
            self.images.lock().remove(&image);
        }
    }
}

fn same_parent(a: &NodeId, b: &NodeId) -> bool {
    std::path::Path::new(&a.0).parent() == std::path::Path::new(&b.0).parent()
}

/// What a control-plane status means for the caller.
pub(crate) fn kind_of_status(status: &Status) -> ClientErrorKind {
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::Unknown => ClientErrorKind::Unavailable,
        Code::ResourceExhausted => ClientErrorKind::Exhausted,
        Code::Unauthenticated => ClientErrorKind::Unauthenticated,
        _ => ClientErrorKind::Refused,
    }
}

fn proto_region(desc: &RegionDesc) -> pb::Region {
    pb::Region {
        region_id: desc.region.0,
        offset: desc.offset,
        len: desc.len,
        key: desc.key,
    }
}

/// The stats the control plane reports, as [`NodeStats`]; regions are
/// counted for owners with a live lease.
pub(crate) fn node_stats(reply: pb::StatsResponse) -> NodeStats {
    let pool = reply.pool.unwrap_or_default();
    NodeStats {
        pool: PoolStats {
            capacity: pool.capacity,
            used: pool.used,
            free: pool.free,
            largest_free: pool.largest_free,
            free_extents: pool.free_extents as usize,
            fragmentation: pool.fragmentation,
            regions_per_owner: reply
                .owners
                .iter()
                .filter(|o| o.regions > 0)
                .map(|o| (OwnerId(o.owner), o.regions as usize))
                .collect(),
        },
        published_images: reply.published_images as usize,
    }
}

impl ImageStore for SessionStore {
    fn name(&self) -> &str {
        self.shared.name()
    }

    fn session(&self) -> u64 {
        self.shared.current_id()
    }

    fn allocate(&self, bytes: u64) -> ClientResult<RemoteRegion> {
        let s = &self.shared;
        let session = s.current()?;
        let reply = s
            .parts
            .control
            .allocate(pb::AllocateRequest {
                lease: session.lease.0,
                bytes,
            })
            .map_err(|status| s.call_error(&session, &status, "allocate"))?;
        let region = reply
            .region
            .ok_or_else(|| s.error(ClientErrorKind::Refused, "allocate: no region in the reply"))?;
        let data = match &reply.data {
            None => None,
            Some(data) => Some(data_region_from_proto(data).ok_or_else(|| {
                s.error(
                    ClientErrorKind::Refused,
                    format!("allocate: unknown access bits {:#x}", data.access),
                )
            })?),
        };
        Ok(RemoteRegion {
            session: session.id,
            desc: RegionDesc {
                region: RegionId(region.region_id),
                owner: session.owner,
                offset: region.offset,
                len: region.len,
                key: region.key,
            },
            data,
        })
    }

    fn write(&self, region: &RemoteRegion, offset: u64, data: &[u8]) -> ClientResult<()> {
        let s = &self.shared;
        if let Some(session) = s.session.read().as_ref()
            && region.session == session.id
            && let Some(image) = session.published.lock().get(&region.desc.region)
        {
            return Err(s.error(
                ClientErrorKind::Refused,
                format!(
                    "region {} holds published {image}; it is read-only",
                    region.desc.region
                ),
            ));
        }
        s.one_sided(region, "write", |connection, desc| {
            write_chunked(connection, desc, offset, data)
        })
    }

    fn publish(&self, region: &RemoteRegion, meta: ImageMeta) -> ClientResult<()> {
        let s = &self.shared;
        let session = s.current()?;
        if region.session != session.id {
            return Err(s.lost_region(region));
        }
        s.parts
            .control
            .publish(pb::PublishRequest {
                lease: session.lease.0,
                region: Some(proto_region(&region.desc)),
                image: Some(pb::ImageMeta {
                    shard: meta.id.shard,
                    serial: meta.id.serial,
                    entries: meta.entries,
                    largest_seq: meta.largest_seq,
                }),
            })
            .map_err(|status| s.call_error(&session, &status, "publish"))?;
        session.published.lock().insert(region.desc.region, meta.id);
        s.images
            .lock()
            .insert(meta.id, (session.id, region.desc.region));
        Ok(())
    }

    fn read(&self, region: &RemoteRegion, offset: u64, buf: &mut [u8]) -> ClientResult<()> {
        self.shared.one_sided(region, "read", |connection, desc| {
            read_chunked(connection, desc, offset, buf)
        })
    }

    fn read_many(&self, reads: &mut [ReadAt<'_>]) -> ClientResult<()> {
        let Some(first) = reads.first() else {
            return Ok(());
        };
        let s = &self.shared;
        let session = s.session_of(first.region)?;
        let mut batch = Vec::with_capacity(reads.len());
        for r in reads.iter_mut() {
            if r.region.session != session.id {
                return Err(s.lost_region(r.region));
            }
            if r.buf.len() > TRANSFER_CHUNK {
                return Err(s.error(
                    ClientErrorKind::Refused,
                    format!(
                        "read_many: a read of {} bytes is over the {TRANSFER_CHUNK}-byte chunk",
                        r.buf.len()
                    ),
                ));
            }
            batch.push(WorkRequest::Read {
                remote: s.data_desc(r.region)?,
                offset: r.offset,
                buf: &mut *r.buf,
            });
        }
        let connection = s.connection(&session)?;
        match first_error(connection.post(&mut batch)) {
            Ok(()) => Ok(()),
            Err(e) => Err(s.after_transport_failure(&session, &e, "read_many")),
        }
    }

    fn get(&self, request: &GetRequest) -> ClientResult<GetResponse> {
        let s = &self.shared;
        let session = s.current()?;
        s.check_images(&session, request.lookups.iter().flat_map(|l| &l.images))?;
        let message = Message::GetRequest {
            lease: session.lease,
            request: request.clone(),
        };
        match s.ask(&session, &message, "get")? {
            Message::GetResponse(response) => Ok(response),
            _ => Err(s.error(
                ClientErrorKind::Refused,
                "get: answered with another message",
            )),
        }
    }

    fn scan(&self, request: &ScanRequest) -> ClientResult<ScanResponse> {
        let s = &self.shared;
        let session = s.current()?;
        s.check_images(&session, &request.images)?;
        let message = Message::ScanRequest {
            lease: session.lease,
            request: request.clone(),
        };
        match s.ask(&session, &message, "scan")? {
            Message::ScanResponse(response) => Ok(response),
            _ => Err(s.error(
                ClientErrorKind::Refused,
                "scan: answered with another message",
            )),
        }
    }

    fn release(&self, region: &RemoteRegion) -> ClientResult<()> {
        let s = &self.shared;
        let session = s.current()?;
        if region.session != session.id {
            // The region went with its session; the caller is done with it.
            s.images
                .lock()
                .retain(|_, &mut at| at != (region.session, region.desc.region));
            return Err(s.lost_region(region));
        }
        s.parts
            .control
            .release(pb::ReleaseRequest {
                lease: session.lease.0,
                region: Some(proto_region(&region.desc)),
            })
            .map_err(|status| s.call_error(&session, &status, "release"))?;
        s.forget(&session, region.desc.region);
        Ok(())
    }

    fn stats(&self) -> ClientResult<NodeStats> {
        let s = &self.shared;
        s.parts
            .control
            .stats(pb::StatsRequest {})
            .map(node_stats)
            .map_err(|status| s.status_error(&status, "stats"))
    }

    fn data_plane(&self) -> Option<(TransportKind, NodeId)> {
        self.shared
            .session
            .read()
            .as_ref()
            .and_then(|session| session.plane.clone())
    }
}
