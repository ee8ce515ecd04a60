//! The control plane in process, over loopback gRPC, with the image bytes
//! written through the library (the data plane that will carry them does not
//! exist yet): publishing real and corrupt images, releasing published
//! regions, and lease reclamation driven with an explicit clock.

// Only the image builders are needed here.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{build_image, image_id};
use o3_memnode::{ControlService, MemoryNode, OwnerId, RegionDesc, RegionId};
use o3_storage::key::ValueKind;
use o3_transport::control::proto::memnode::v1 as pb;
use o3_transport::control::{
    AuthenticatedChannel, ClusterToken, ConnectOptions, authenticated, connect,
};
use pb::memory_node_client::MemoryNodeClient;
use tonic::Code;

const TOKEN: &str = "in-process-token";
const TTL: Duration = Duration::from_secs(3600);

struct Harness {
    node: Arc<MemoryNode>,
    service: ControlService,
    client: MemoryNodeClient<AuthenticatedChannel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Harness {
    let node = Arc::new(MemoryNode::with_capacity(4 << 20).unwrap());
    let service = ControlService::new(Arc::clone(&node), TTL);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let token = ClusterToken::new(TOKEN).unwrap();
    tokio::spawn(o3_memnode::server::serve(
        listener,
        service.clone(),
        token.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let channel = connect(&format!("http://{addr}"), &ConnectOptions::default())
        .await
        .unwrap();
    Harness {
        node,
        service,
        client: MemoryNodeClient::new(authenticated(channel, token)),
        _stop: stop,
    }
}

fn desc(owner: u64, region: pb::Region) -> RegionDesc {
    RegionDesc {
        region: RegionId(region.region_id),
        owner: OwnerId(owner),
        offset: region.offset,
        len: region.len,
        key: region.key,
    }
}

fn meta_of(image: &common::BuiltImage) -> pb::ImageMeta {
    pb::ImageMeta {
        shard: image.meta.id.shard,
        serial: image.meta.id.serial,
        entries: image.meta.entries,
        largest_seq: image.meta.largest_seq,
    }
}

impl Harness {
    async fn register(&mut self) -> pb::RegisterResponse {
        let request = pb::RegisterRequest {
            compute_node: "c".into(),
        };
        self.client.register(request).await.unwrap().into_inner()
    }

    /// Allocates a region for `bytes` and writes them there (what the data
    /// plane will do).
    async fn ship(&mut self, owner: &pb::RegisterResponse, bytes: &[u8]) -> pb::Region {
        let request = pb::AllocateRequest {
            lease: owner.lease,
            bytes: bytes.len() as u64,
        };
        let region = self.client.allocate(request).await.unwrap().into_inner();
        let region = region.region.unwrap();
        self.node
            .write(OwnerId(owner.owner), &desc(owner.owner, region), 0, bytes)
            .unwrap();
        region
    }

    async fn publish(
        &mut self,
        lease: u64,
        region: pb::Region,
        image: pb::ImageMeta,
    ) -> Result<(), tonic::Status> {
        let request = pb::PublishRequest {
            lease,
            region: Some(region),
            image: Some(image),
        };
        self.client.publish(request).await.map(drop)
    }

    async fn stats(&mut self) -> pb::StatsResponse {
        self.client
            .stats(pb::StatsRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

fn sample_image(serial: u64) -> common::BuiltImage {
    let entries: Vec<_> = (0..50u64)
        .map(|i| {
            let key = format!("key{i:03}").into_bytes();
            (key, 10 + i, ValueKind::Value, vec![b'v'; 20])
        })
        .collect();
    build_image(image_id(serial), &entries)
}

#[tokio::test]
async fn a_real_image_is_published_and_a_corrupt_one_refused_with_the_reason() {
    let mut h = start().await;
    let a = h.register().await;
    let image = sample_image(1);

    let mut corrupt = image.bytes.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    let bad_region = h.ship(&a, &corrupt).await;
    let refused = h
        .publish(a.lease, bad_region, meta_of(&image))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("refused"), "{refused:?}");
    assert_eq!(h.stats().await.published_images, 0);

    let region = h.ship(&a, &image.bytes).await;
    let wrong_count = pb::ImageMeta {
        entries: 49,
        ..meta_of(&image)
    };
    let mismatch = h.publish(a.lease, region, wrong_count).await.unwrap_err();
    assert_eq!(mismatch.code(), Code::InvalidArgument, "{mismatch:?}");
    assert!(mismatch.message().contains("entries"), "{mismatch:?}");

    h.publish(a.lease, region, meta_of(&image)).await.unwrap();
    assert_eq!(h.stats().await.published_images, 1);
    let other_region = h.ship(&a, &image.bytes).await;
    let duplicate = h
        .publish(a.lease, other_region, meta_of(&image))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists, "{duplicate:?}");

    let released = h
        .client
        .release(pb::ReleaseRequest {
            lease: a.lease,
            region: Some(region),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(released.unpublished);
    assert_eq!(h.stats().await.published_images, 0);
}

#[tokio::test]
async fn reclaiming_expired_leases_frees_only_their_regions_and_images() {
    let mut h = start().await;
    let a = h.register().await;
    let image = sample_image(7);
    let region = h.ship(&a, &image.bytes).await;
    h.publish(a.lease, region, meta_of(&image)).await.unwrap();
    let capacity = h.stats().await.pool.unwrap().capacity;

    // Nothing is overdue yet.
    assert_eq!(h.service.reclaim_expired(Instant::now()), 0);
    let b = h.register().await;
    h.ship(&b, &[1; 100]).await;

    // Well past both leases' TTL: both reclaimed, once.
    let later = Instant::now() + 2 * TTL;
    assert_eq!(h.service.reclaim_expired(later), 2);
    assert_eq!(h.service.reclaim_expired(later), 0);
    let stats = h.stats().await;
    let pool = stats.pool.unwrap();
    assert_eq!((pool.used, pool.free), (0, capacity));
    assert_eq!(stats.published_images, 0);
    assert!(stats.owners.is_empty());
    let status = h
        .client
        .heartbeat(pb::HeartbeatRequest { lease: a.lease })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
}
