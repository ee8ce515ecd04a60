//! The memory node's gRPC control plane (`o3.memnode.v1.MemoryNode`, see
//! `transport/proto/o3/memnode/v1/memnode.proto`): leases, allocation,
//! publish, release and stats over a shared [`MemoryNode`].
//!
//! The cluster token is not checked here: servers install
//! `o3_transport::control::RequireClusterToken` as a layer over every
//! service (see [`crate::server`]), so an unauthenticated call never reaches
//! these handlers. Every other call names its lease; an unknown or expired
//! lease is refused before the memory node is touched. Core errors become
//! gRPC statuses with their message ([`status_of`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use o3_transport::control::proto::memnode::v1 as pb;
use pb::memory_node_server::{MemoryNode as MemoryNodeRpc, MemoryNodeServer};
use tonic::{Code, Request, Response, Status};

use crate::error::Error;
use crate::images::{ImageId, ImageMeta};
use crate::lease::{LeaseError, LeaseSecret, Leases};
use crate::node::MemoryNode;
use crate::pool::{OwnerId, RegionDesc, RegionId};

/// The control-plane service; clones share the node and the leases.
#[derive(Clone, Debug)]
pub struct ControlService {
    node: Arc<MemoryNode>,
    leases: Arc<Leases>,
}

impl ControlService {
    pub fn new(node: Arc<MemoryNode>, lease_ttl: Duration) -> ControlService {
        ControlService {
            node,
            leases: Arc::new(Leases::new(lease_ttl)),
        }
    }

    /// The tonic service to add to a server.
    pub fn into_server(self) -> MemoryNodeServer<Self> {
        MemoryNodeServer::new(self)
    }

    /// Releases the regions of every owner whose lease is overdue at `now`;
    /// returns how many owners were reclaimed.
    pub fn reclaim_expired(&self, now: Instant) -> usize {
        let expired = self.leases.expire_overdue(now);
        for (owner, compute_node) in &expired {
            self.reclaim(*owner, compute_node);
        }
        expired.len()
    }

    /// Runs [`Self::reclaim_expired`] several times per TTL, forever (the
    /// server aborts the task on shutdown), so regions of a silent owner are
    /// freed within about 1.25 TTL.
    pub async fn reclaim_expired_periodically(self) {
        let period =
            (self.leases.ttl() / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.reclaim_expired(Instant::now());
        }
    }

    fn reclaim(&self, owner: OwnerId, compute_node: &str) {
        let regions = self.node.release_all(owner);
        tracing::info!(%owner, compute_node, regions, "lease expired; regions reclaimed");
    }

    /// The owner of a live lease, or the status to refuse the call with.
    fn owner(&self, lease: u64) -> Result<OwnerId, Status> {
        self.leases
            .owner(LeaseSecret(lease), Instant::now())
            .map_err(|e| self.lease_refused(e))
    }

    fn lease_refused(&self, error: LeaseError) -> Status {
        if let LeaseError::Expired {
            owner,
            reclaim: true,
        } = error
        {
            self.reclaim(owner, "");
        }
        Status::failed_precondition(error.to_string())
    }
}

/// The descriptor `owner` names with `region` (absent → invalid argument).
fn region_desc(owner: OwnerId, region: Option<pb::Region>) -> Result<RegionDesc, Status> {
    let region = region.ok_or_else(|| Status::invalid_argument("the request names no region"))?;
    Ok(RegionDesc {
        region: RegionId(region.region_id),
        owner,
        offset: region.offset,
        len: region.len,
        key: region.key,
    })
}

/// The gRPC status for a core error: the code says what kind of failure it
/// is, the message (with its causes) says which and why.
pub fn status_of(error: &Error) -> Status {
    let code = match error {
        Error::UnknownRegion { .. } | Error::UnknownImage { .. } => Code::NotFound,
        Error::WrongOwner { .. } | Error::BadDescriptor { .. } => Code::PermissionDenied,
        Error::PoolExhausted { .. } => Code::ResourceExhausted,
        Error::EmptyRequest { .. }
        | Error::RequestTooLarge { .. }
        | Error::BadImage { .. }
        | Error::ImageMismatch { .. }
        | Error::InvalidRequest(_)
        | Error::Decode { .. } => Code::InvalidArgument,
        Error::OutOfBounds { .. } => Code::OutOfRange,
        Error::RegionPublished { .. } => Code::FailedPrecondition,
        Error::AlreadyPublished { .. } | Error::RegionOccupied { .. } => Code::AlreadyExists,
        Error::Scan { .. } => Code::Internal,
    };
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Status::new(code, message)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

#[tonic::async_trait]
impl MemoryNodeRpc for ControlService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let compute_node = request.into_inner().compute_node;
        let (owner, lease) = self.leases.register(&compute_node, Instant::now());
        tracing::info!(%owner, compute_node, "registered");
        Ok(Response::new(pb::RegisterResponse {
            owner: owner.0,
            lease: lease.0,
            lease_ttl_ms: ttl_ms(self.leases.ttl()),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let lease = LeaseSecret(request.into_inner().lease);
        self.leases
            .renew(lease, Instant::now())
            .map_err(|e| self.lease_refused(e))?;
        Ok(Response::new(pb::HeartbeatResponse {
            lease_ttl_ms: ttl_ms(self.leases.ttl()),
        }))
    }

    async fn allocate(
        &self,
        request: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let request = request.into_inner();
        let owner = self.owner(request.lease)?;
        let desc = self
            .node
            .allocate(owner, request.bytes)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::AllocateResponse {
            region: Some(pb::Region {
                region_id: desc.region.0,
                offset: desc.offset,
                len: desc.len,
                key: desc.key,
            }),
        }))
    }

    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let request = request.into_inner();
        let owner = self.owner(request.lease)?;
        let desc = region_desc(owner, request.region)?;
        let image = request
            .image
            .ok_or_else(|| Status::invalid_argument("the request names no image"))?;
        let meta = ImageMeta {
            id: ImageId {
                shard: image.shard,
                serial: image.serial,
            },
            entries: image.entries,
            largest_seq: image.largest_seq,
        };
        self.node
            .publish(owner, &desc, meta)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::PublishResponse {}))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let request = request.into_inner();
        let owner = self.owner(request.lease)?;
        let desc = region_desc(owner, request.region)?;
        let unpublished = self.node.release(owner, &desc).map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::ReleaseResponse {
            unpublished: unpublished.is_some(),
        }))
    }

    async fn stats(
        &self,
        _request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let stats = self.node.stats();
        let owners = self
            .leases
            .live(Instant::now())
            .into_iter()
            .map(|lease| pb::OwnerStats {
                owner: lease.owner.0,
                regions: stats
                    .pool
                    .regions_per_owner
                    .get(&lease.owner)
                    .map_or(0, |&n| n as u64),
                compute_node: lease.compute_node,
                lease_expires_in_ms: ttl_ms(lease.expires_in),
            })
            .collect();
        let pool = &stats.pool;
        Ok(Response::new(pb::StatsResponse {
            pool: Some(pb::PoolStats {
                capacity: pool.capacity,
                used: pool.used,
                free: pool.free,
                largest_free: pool.largest_free,
                free_extents: pool.free_extents as u64,
                fragmentation: pool.fragmentation,
            }),
            published_images: stats.published_images as u64,
            owners,
        }))
    }
}
