//! `o3-transport-node`: a region host in its own process, for the
//! multi-process conformance tests and the benchmark. It prints
//! `node <id>` once it is ready, then serves until its stdin closes (so it
//! never outlives the process that started it) or it is killed. The cluster
//! token comes from `$O3_CLUSTER_TOKEN` (never the command line, which
//! other users of the host can read).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use o3_transport::conformance::TOKEN_ENV;
use o3_transport::control::ClusterToken;
use o3_transport::host::RegionHost;
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::{Error, Fabric, FabricOptions, PollMode, Result};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Tcp,
    Shm,
}

#[derive(Debug, Parser)]
#[command(about = "Host transport regions for tests and benchmarks")]
struct Args {
    /// Which backend to serve on.
    #[arg(long, value_enum)]
    backend: Backend,
    /// tcp: the address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// shm: the directory under which this node's directory is created.
    #[arg(long, default_value = "/dev/shm")]
    dir: PathBuf,
    /// Busy-poll for the next request this many microseconds before
    /// sleeping (0 = sleep at once).
    #[arg(long, default_value_t = 0)]
    poll_spin_us: u64,
    /// Request handlers that may run at once.
    #[arg(long, default_value_t = FabricOptions::DEFAULT_REQUEST_WORKERS)]
    request_workers: usize,
}

fn run(args: Args) -> Result<()> {
    let token = std::env::var(TOKEN_ENV)
        .map_err(|_| Error::InvalidArgument(format!("set the cluster token in ${TOKEN_ENV}")))?;
    let token = ClusterToken::new(&token)
        .map_err(|e| Error::InvalidArgument(format!("${TOKEN_ENV}: {e}")))?;
    let options = FabricOptions {
        poll: PollMode::spinning(Duration::from_micros(args.poll_spin_us)),
        request_workers: args.request_workers,
        ..FabricOptions::new(token)
    };
    let host = RegionHost::new();
    match args.backend {
        Backend::Tcp => {
            let fabric = Arc::new(TcpFabric::bind(&args.listen, None, host.clone(), options)?);
            serve(&host, fabric)
        }
        Backend::Shm => {
            let fabric = Arc::new(ShmFabric::create_in(&args.dir, host.clone(), options)?);
            let served = serve(&host, fabric.clone());
            // The host keeps the fabric alive, so remove its files here.
            fabric.close();
            served
        }
    }
}

/// Announce the node and serve until the parent closes our stdin.
fn serve(host: &Arc<RegionHost>, fabric: Arc<dyn Fabric>) -> Result<()> {
    host.attach(Arc::clone(&fabric))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "node {}", fabric.node())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("print node id", e))?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to a file or a test
        // stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("o3-transport-node: {e}");
        std::process::exit(1);
    }
}
