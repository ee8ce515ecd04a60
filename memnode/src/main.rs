//! `o3-memnode`: a memory node process. It owns one pool of `--pool-size`
//! bytes and serves the control plane (`o3.memnode.v1.MemoryNode`, guarded
//! by the cluster token read from `--token-file`) on `--listen` and the data
//! plane (one-sided region access and delegated reads over `o3-transport`,
//! `--transport shm|tcp`) until SIGINT or SIGTERM. Once it listens it prints
//! `listening on ADDR` on stdout (the bound address, so `--listen
//! 127.0.0.1:0` is usable), then `data plane KIND NODE` (the transport node
//! compute nodes connect to; registering announces it too). On shutdown
//! the shm data plane's files are removed. Bad input is one line on stderr
//! and a non-zero exit. Settings: see `o3_memnode::config`. With
//! `--scheduler` it also executes flushes of images in its pool for that
//! `o3-csa` scheduler (`o3_memnode::flush_executor`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use o3_memnode::config::{Config, ConfigError, RawConfig};
use o3_memnode::{ControlService, DataPlane, MemoryNode, TransportKind};
use o3_storage::env::{LocalFs, Storage, ThrottledStorage};
use o3_transport::control::{
    ClusterToken, SignalError, describe_error, init_logging, parse_args, shutdown_signal,
};
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::{Fabric, FabricOptions};

#[derive(Debug, Parser)]
#[command(about = "Serve an o3 memory node", version)]
struct Args {
    /// TOML file with any of the keys below (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to serve the control plane on [default: 127.0.0.1:7380].
    #[arg(long)]
    listen: Option<String>,
    /// Bytes in the memory pool, e.g. 8GiB or 64MiB [default: 1GiB].
    #[arg(long)]
    pool_size: Option<String>,
    /// How long a compute node's lease lasts without a heartbeat, e.g. 10s
    /// [default: 10s].
    #[arg(long)]
    lease_ttl: Option<String>,
    /// File holding the cluster token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// How long calls in flight may run on after SIGINT or SIGTERM
    /// [default: 5s].
    #[arg(long)]
    shutdown_grace: Option<String>,
    /// The data plane's transport: tcp (any host) or shm (compute nodes on
    /// this host) [default: tcp].
    #[arg(long)]
    transport: Option<String>,
    /// Address of the tcp data plane [default: the --listen port + 1 on the
    /// same host; any free port when --listen's port is 0].
    #[arg(long)]
    data_listen: Option<String>,
    /// Directory in which the shm data plane creates its node directory
    /// [default: /dev/shm].
    #[arg(long)]
    shm_dir: Option<PathBuf>,
    /// An o3-csa scheduler's `host:port`: execute flushes of images in
    /// this pool for it [default: none, no flush executor].
    #[arg(long)]
    scheduler: Option<String>,
    /// Flushes executed at once [default: 2].
    #[arg(long)]
    flush_slots: Option<u32>,
    /// `FROM=TO`: a job's database directory under FROM is used under TO
    /// here.
    #[arg(long)]
    path_map: Option<String>,
    /// Emulated storage read bandwidth of flushes, in MB/s.
    #[arg(long)]
    storage_read_mbps: Option<f64>,
    /// Emulated storage write bandwidth of flushes, in MB/s.
    #[arg(long)]
    storage_write_mbps: Option<f64>,
    /// Emulated storage latency per operation of flushes, in µs.
    #[arg(long)]
    storage_latency_us: Option<u64>,
    /// How long the data plane's receiving threads busy-poll for the next
    /// request before sleeping, in µs [default: 50].
    #[arg(long)]
    poll_spin_us: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the {transport} data plane at {at}: {source}")]
    DataPlane {
        transport: TransportKind,
        at: String,
        #[source]
        source: o3_transport::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("cannot print the bound address: {0}")]
    Announce(#[source] std::io::Error),
    #[error("serving failed: {0}")]
    Serve(String),
}

fn main() -> ExitCode {
    let args: Args = match parse_args("o3-memnode") {
        Ok(args) => args,
        Err(code) => return code,
    };
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("o3-memnode: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), RunError> {
    let file = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let flags = RawConfig {
        listen: args.listen,
        pool_size: args.pool_size,
        lease_ttl: args.lease_ttl,
        token_file: args.token_file,
        shutdown_grace: args.shutdown_grace,
        transport: args.transport,
        data_listen: args.data_listen,
        shm_dir: args.shm_dir,
        scheduler: args.scheduler,
        flush_slots: args.flush_slots,
        path_map: args.path_map,
        storage_read_mbps: args.storage_read_mbps,
        storage_write_mbps: args.storage_write_mbps,
        storage_latency_us: args.storage_latency_us,
        poll_spin_us: args.poll_spin_us,
    };
    let config = file.overridden_by(flags).resolve()?;
    let token = config.read_token()?;
    let plane = DataPlane::new();
    let fabric = DataFabric::start(&config, &plane, token.clone())?;
    let node = Arc::new(MemoryNode::with_fabric(config.pool_size, fabric.shared()));
    let service = ControlService::new(Arc::clone(&node), config.lease_ttl)
        .with_data_plane(config.transport, fabric.shared().node());
    plane.attach(&service);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunError::Listen {
                addr: config.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
        let shutdown = shutdown_signal()?;
        let data_node = fabric.shared().node().clone();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {bound}")
            .and_then(|()| writeln!(stdout, "data plane {} {data_node}", config.transport))
            .and_then(|()| stdout.flush())
            .map_err(RunError::Announce)?;
        tracing::info!(
            %bound,
            data_plane = %config.transport,
            %data_node,
            pool_size = config.pool_size,
            lease_ttl = ?config.lease_ttl,
            "memory node serving"
        );
        if let Some(settings) = config.flush_executor.clone() {
            let local: Arc<dyn Storage> = Arc::new(LocalFs::new());
            let storage: Arc<dyn Storage> = match settings.storage_model {
                Some(model) => {
                    tracing::info!(%model, "flush storage throttled");
                    Arc::new(ThrottledStorage::new(local, model))
                }
                None => local,
            };
            let (token, node, plane) = (token.clone(), Arc::clone(&node), data_node.0.clone());
            tracing::info!(scheduler = %settings.agent.scheduler, slots = settings.agent.slots, "flush executor starting");
            // Runs until the process ends (a flush in flight is fenced or
            // requeued by the scheduler like any agent's).
            tokio::spawn(async move {
                let ran = o3_memnode::flush_executor::run(
                    settings.agent,
                    token,
                    storage,
                    node,
                    &plane,
                    std::future::pending::<()>(),
                )
                .await;
                if let Err(e) = ran {
                    tracing::error!(error = %e, "flush executor stopped");
                }
            });
        }
        let served =
            o3_memnode::server::serve(listener, service, token, shutdown, config.shutdown_grace)
                .await
                .map_err(|e| RunError::Serve(describe_error(&e)));
        fabric.close();
        served?;
        tracing::info!("memory node stopped");
        Ok(())
    })
}

/// The data plane's fabric, kept concrete so shutdown can close it.
enum DataFabric {
    Tcp(Arc<TcpFabric>),
    Shm(Arc<ShmFabric>),
}

impl DataFabric {
    fn start(
        config: &Config,
        plane: &Arc<DataPlane>,
        token: ClusterToken,
    ) -> Result<Self, RunError> {
        let mut options = FabricOptions::new(token);
        // Delegated lookups answer in microseconds: receiving threads spin
        // for the next request before parking.
        options.poll = o3_transport::PollMode::spinning(config.poll_spin);
        let failed = |at: String| {
            move |source| RunError::DataPlane {
                transport: config.transport,
                at,
                source,
            }
        };
        Ok(match config.transport {
            TransportKind::Shm => DataFabric::Shm(Arc::new(
                ShmFabric::create_in(&config.shm_dir, plane.clone(), options)
                    .map_err(failed(config.shm_dir.display().to_string()))?,
            )),
            // `resolve` refuses local; tcp is the default.
            TransportKind::Tcp | TransportKind::Local => {
                let listen = config.data_listen.to_string();
                DataFabric::Tcp(Arc::new(
                    TcpFabric::bind(&listen, None, plane.clone(), options)
                        .map_err(failed(listen.clone()))?,
                ))
            }
        })
    }

    fn shared(&self) -> Arc<dyn Fabric> {
        match self {
            DataFabric::Tcp(fabric) => fabric.clone(),
            DataFabric::Shm(fabric) => fabric.clone(),
        }
    }

    /// Revoke every region; for shm also remove the node's files.
    fn close(&self) {
        if let DataFabric::Shm(fabric) = self {
            fabric.close();
        }
    }
}
