//! The memory node's gRPC control plane (`o3.memnode.v1.MemoryNode`, see
//! `transport/proto/o3/memnode/v1/memnode.proto`): leases, allocation,
//! publish, release and stats over a shared [`MemoryNode`].
//!
//! Each call's logic is a plain method (`handle_register`, ...) from the
//! request message to the response or the status; the gRPC service wraps
//! them, and the in-process client ([`crate::client`]) calls them directly,
//! so both see the same leases, checks and statuses.
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

use o3_transport::{NodeId, RegionAccess};

use crate::data_plane::TransportKind;
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
    data_plane: Option<pb::DataPlane>,
}

impl ControlService {
    pub fn new(node: Arc<MemoryNode>, lease_ttl: Duration) -> ControlService {
        ControlService {
            node,
            leases: Arc::new(Leases::new(lease_ttl)),
            data_plane: None,
        }
    }

    /// Announce the data plane at `node` over `transport` to registering
    /// compute nodes.
    pub fn with_data_plane(mut self, transport: TransportKind, node: &NodeId) -> ControlService {
        self.data_plane = Some(pb::DataPlane {
            transport: transport.name().to_owned(),
            node: node.0.clone(),
        });
        self
    }

    pub fn node(&self) -> &Arc<MemoryNode> {
        &self.node
    }

    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
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
        lease_owner(&self.node, &self.leases, LeaseSecret(lease))
            .map_err(|e| Status::failed_precondition(e.to_string()))
    }
}

/// The owner of the live lease `secret`; when this call is the one that
/// finds the lease overdue, it also reclaims the owner's regions (nobody
/// else will). Shared by the control plane and the data plane.
pub(crate) fn lease_owner(
    node: &MemoryNode,
    leases: &Leases,
    secret: LeaseSecret,
) -> Result<OwnerId, LeaseError> {
    leases.owner(secret, Instant::now()).inspect_err(|error| {
        if let LeaseError::Expired {
            owner,
            reclaim: true,
        } = *error
        {
            let regions = node.release_all(owner);
            tracing::info!(%owner, regions, "lease expired; regions reclaimed");
        }
    })
}

/// A transport descriptor as the control plane carries it.
pub fn data_region_to_proto(desc: &o3_transport::RegionDesc) -> pb::DataRegion {
    pb::DataRegion {
        node: desc.node.0.clone(),
        region_id: desc.region,
        base: desc.base,
        len: desc.len,
        rkey: desc.rkey,
        access: desc.access.bits() as u32,
    }
}

/// The transport descriptor a [`pb::DataRegion`] carries; `None` when its
/// access bits are unknown.
pub fn data_region_from_proto(data: &pb::DataRegion) -> Option<o3_transport::RegionDesc> {
    Some(o3_transport::RegionDesc {
        node: NodeId(data.node.clone()),
        region: data.region_id,
        base: data.base,
        len: data.len,
        rkey: data.rkey,
        access: RegionAccess::from_bits(u64::from(data.access))?,
    })
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
        Error::PoolExhausted { .. } | Error::Register { .. } => Code::ResourceExhausted,
        Error::EmptyRequest { .. }
        | Error::RequestTooLarge { .. }
        | Error::BadImage { .. }
        | Error::InvalidImage { .. }
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

/// The calls' logic, from request message to response or status.
impl ControlService {
    pub fn handle_register(
        &self,
        request: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, Status> {
        let compute_node = request.compute_node;
        let (owner, lease) = self.leases.register(&compute_node, Instant::now());
        tracing::info!(%owner, compute_node, "registered");
        Ok(pb::RegisterResponse {
            owner: owner.0,
            lease: lease.0,
            lease_ttl_ms: ttl_ms(self.leases.ttl()),
            data_plane: self.data_plane.clone(),
        })
    }

    pub fn handle_heartbeat(
        &self,
        request: pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, Status> {
        let lease = LeaseSecret(request.lease);
        if let Err(error) = self.leases.renew(lease, Instant::now()) {
            if let LeaseError::Expired {
                owner,
                reclaim: true,
            } = error
            {
                self.reclaim(owner, "");
            }
            return Err(Status::failed_precondition(error.to_string()));
        }
        Ok(pb::HeartbeatResponse {
            lease_ttl_ms: ttl_ms(self.leases.ttl()),
        })
    }

    pub fn handle_allocate(
        &self,
        request: pb::AllocateRequest,
    ) -> Result<pb::AllocateResponse, Status> {
        let owner = self.owner(request.lease)?;
        let desc = self
            .node
            .allocate(owner, request.bytes)
            .map_err(|e| status_of(&e))?;
        let data = self
            .node
            .data_region(owner, &desc)
            .map_err(|e| status_of(&e))?;
        Ok(pb::AllocateResponse {
            region: Some(pb::Region {
                region_id: desc.region.0,
                offset: desc.offset,
                len: desc.len,
                key: desc.key,
            }),
            data: data.as_ref().map(data_region_to_proto),
        })
    }

    pub fn handle_publish(
        &self,
        request: pb::PublishRequest,
    ) -> Result<pb::PublishResponse, Status> {
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
        Ok(pb::PublishResponse {})
    }

    pub fn handle_release(
        &self,
        request: pb::ReleaseRequest,
    ) -> Result<pb::ReleaseResponse, Status> {
        let owner = self.owner(request.lease)?;
        let desc = region_desc(owner, request.region)?;
        let unpublished = self.node.release(owner, &desc).map_err(|e| status_of(&e))?;
        Ok(pb::ReleaseResponse {
            unpublished: unpublished.is_some(),
        })
    }

    pub fn handle_stats(&self, _request: pb::StatsRequest) -> Result<pb::StatsResponse, Status> {
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
        Ok(pb::StatsResponse {
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
        })
    }
}

#[tonic::async_trait]
impl MemoryNodeRpc for ControlService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.handle_register(request.into_inner())
            .map(Response::new)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.handle_heartbeat(request.into_inner())
            .map(Response::new)
    }

    async fn allocate(
        &self,
        request: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        self.handle_allocate(request.into_inner())
            .map(Response::new)
    }

    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        // Validation reads the whole image: off the runtime's workers.
        let service = self.clone();
        let request = request.into_inner();
        tokio::task::spawn_blocking(move || service.handle_publish(request))
            .await
            .map_err(|e| Status::internal(format!("publish did not finish: {e}")))?
            .map(Response::new)
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        self.handle_release(request.into_inner()).map(Response::new)
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        self.handle_stats(request.into_inner()).map(Response::new)
    }
}
