//! The memory node as a flush executor: it registers with an `o3-csa`
//! scheduler as an agent naming itself (its data-plane node id), so the
//! scheduler hands it only flushes of images in its own pool, and runs
//! each with the agent's loop, reading the images straight from the pool
//! ([`PoolImages`]): nothing crosses a link before the flush, and the
//! tables go from here to storage.
//!
//! The images stay where they are: the compute node releases an image's
//! region only after it installed the flush (or gave the job up), so a
//! flush in progress never reads a released region; a region released
//! anyway (the compute node's lease expired) fails the try as
//! `INPUT_UNREADABLE`.

use std::future::Future;
use std::sync::Arc;

use o3_csa::FailureKind;
use o3_csa::agent::AgentConfig;
use o3_csa::agent::images::{Failure, ImageSource};
use o3_csa::error::CsaError;
use o3_storage::env::Storage;
use o3_transport::control::ClusterToken;
use o3_transport::control::proto::csa::v1 as pb;

use crate::node::MemoryNode;
use crate::pool::{OwnerId, RegionDesc, RegionId};

/// Reads flushes' images from this memory node's pool.
#[derive(Debug)]
pub struct PoolImages {
    node: Arc<MemoryNode>,
    /// The data-plane node id: images elsewhere are not ours.
    plane: String,
}

impl PoolImages {
    pub fn new(node: Arc<MemoryNode>, plane: &str) -> PoolImages {
        PoolImages {
            node,
            plane: plane.to_owned(),
        }
    }
}

impl ImageSource for PoolImages {
    fn read(&self, images: &pb::FlushImages) -> Result<Vec<Vec<u8>>, Failure> {
        if images.memnode != self.plane {
            return Err((
                FailureKind::InputUnreadable,
                format!(
                    "the images are on memory node {}, not on this one ({})",
                    images.memnode, self.plane
                ),
            ));
        }
        images
            .images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let unreadable = |reason: String| {
                    (
                        FailureKind::InputUnreadable,
                        format!("image {i} in the pool of {}: {reason}", self.plane),
                    )
                };
                let pool = image
                    .pool
                    .as_ref()
                    .ok_or_else(|| unreadable("no pool region named".into()))?;
                let desc = RegionDesc {
                    region: RegionId(pool.region_id),
                    owner: OwnerId(pool.owner),
                    offset: pool.offset,
                    len: pool.len,
                    key: pool.key,
                };
                let len = usize::try_from(image.len)
                    .map_err(|_| unreadable(format!("too long: {}", image.len)))?;
                let mut bytes = vec![0u8; len];
                self.node
                    .read(desc.owner, &desc, 0, &mut bytes)
                    .map_err(|e| unreadable(e.to_string()))?;
                Ok(bytes)
            })
            .collect()
    }
}

/// Runs the flush executor of `node` (data-plane node id `plane`) until
/// `shutdown` completes: `config` names the scheduler, the slots (flushes
/// at once) and the path map; tables are written to `storage`.
pub async fn run(
    mut config: AgentConfig,
    token: ClusterToken,
    storage: Arc<dyn Storage>,
    node: Arc<MemoryNode>,
    plane: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CsaError> {
    config.memnode = Some(plane.to_owned());
    let images = Arc::new(PoolImages::new(node, plane));
    o3_csa::agent::run_with_images(config, token, storage, images, shutdown, |_| {}).await
}
