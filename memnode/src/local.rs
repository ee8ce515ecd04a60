//! [`LocalMemoryNode`]: a whole memory node inside this process — the
//! control plane on a loopback port, a `tcp` data plane, and optionally a
//! flush executor registered with a compaction scheduler — so tests and
//! o3-bench can run compute node, memory node, scheduler and agents in one
//! process over the same protocols as separate processes.

use std::sync::Arc;
use std::time::Duration;

use o3_csa::agent::AgentConfig;
use o3_storage::env::Storage;
use o3_transport::control::ClusterToken;
use o3_transport::tcp::TcpFabric;
use o3_transport::{Fabric, FabricOptions};
use tokio::sync::oneshot;

use crate::client::{RemoteConfig, StoreConfig};
use crate::control::ControlService;
use crate::data_plane::{DataPlane, TransportKind};
use crate::node::MemoryNode;

/// How a [`LocalMemoryNode`] is set up.
#[derive(Debug, Clone)]
pub struct LocalMemoryNodeOptions {
    pub pool_size: u64,
    pub lease_ttl: Duration,
    pub token: ClusterToken,
    /// Run a flush executor: the scheduler's `host:port` and flushes at
    /// once.
    pub flush_executor: Option<(String, u32)>,
    /// Where the flush executor writes tables.
    pub storage: Option<Arc<dyn Storage>>,
}

/// A memory node served from this process; stops when dropped.
pub struct LocalMemoryNode {
    control: String,
    plane: String,
    node: Arc<MemoryNode>,
    token: ClusterToken,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    _fabric: Arc<TcpFabric>,
}

impl std::fmt::Debug for LocalMemoryNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMemoryNode")
            .field("control", &self.control)
            .field("plane", &self.plane)
            .finish()
    }
}

impl LocalMemoryNode {
    pub fn start(options: LocalMemoryNodeOptions) -> Result<LocalMemoryNode, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("o3-local-memnode")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let plane = DataPlane::new();
        let mut fabric_options = FabricOptions::new(options.token.clone());
        fabric_options.poll = crate::client::LOOKUP_POLL;
        let fabric = Arc::new(
            TcpFabric::bind("127.0.0.1:0", None, plane.clone(), fabric_options)
                .map_err(|e| format!("cannot start the tcp data plane: {e}"))?,
        );
        let shared: Arc<dyn Fabric> = fabric.clone();
        let plane_node = shared.node().clone();
        let node = Arc::new(MemoryNode::with_fabric(options.pool_size, shared));
        let service = ControlService::new(Arc::clone(&node), options.lease_ttl)
            .with_data_plane(TransportKind::Tcp, &plane_node);
        plane.attach(&service);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("cannot listen: {e}"))?;
        let control = listener
            .local_addr()
            .map_err(|e| format!("cannot listen: {e}"))?
            .to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let token = options.token.clone();
        let executor = options.flush_executor.clone();
        let storage = options.storage.clone();
        let executor_node = Arc::clone(&node);
        let plane_name = plane_node.0.clone();
        runtime.spawn(async move {
            let serving =
                crate::server::serve(listener, service, token.clone(), stopped, Duration::from_secs(1));
            match (executor, storage) {
                (Some((scheduler, slots)), Some(storage)) => {
                    let config = AgentConfig::new(&scheduler, &format!("memnode {plane_name}"), slots);
                    let executing = crate::flush_executor::run(
                        config,
                        token,
                        storage,
                        executor_node,
                        &plane_name,
                        std::future::pending::<()>(),
                    );
                    // Serving ends on stop; the executor with it.
                    tokio::select! {
                        served = serving => { let _ = served; }
                        ran = executing => { if let Err(e) = ran { tracing::warn!(error = %e, "flush executor stopped"); } }
                    }
                }
                _ => {
                    let _ = serving.await;
                }
            }
        });
        Ok(LocalMemoryNode {
            control,
            plane: plane_node.0,
            node,
            token: options.token,
            stop: Some(stop),
            runtime: Some(runtime),
            _fabric: fabric,
        })
    }

    /// The control plane's `host:port`.
    pub fn control(&self) -> &str {
        &self.control
    }

    /// The data plane's node id (the name its flush executor registers).
    pub fn plane(&self) -> &str {
        &self.plane
    }

    pub fn node(&self) -> &Arc<MemoryNode> {
        &self.node
    }

    /// How a compute node named `compute_node` reaches it.
    pub fn store_config(&self, compute_node: &str) -> StoreConfig {
        StoreConfig::Remote(RemoteConfig {
            control: self.control.clone(),
            token: self.token.clone(),
            compute_node: compute_node.to_owned(),
            link: None,
            op_timeout: Duration::from_secs(5),
        })
    }
}

impl Drop for LocalMemoryNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
