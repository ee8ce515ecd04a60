//! `o3-transport-node`: a region host in its own process, for the
//! multi-process conformance tests and the benchmark. It prints
//! `node <id>` once it is ready, then serves until its stdin closes (so it
//! never outlives the process that started it) or it is killed.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use o3_transport::host::RegionHost;
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::{Fabric, Result};

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
}

fn run(args: Args) -> Result<()> {
    let host = RegionHost::new();
    match args.backend {
        Backend::Tcp => {
            let fabric = Arc::new(TcpFabric::bind(&args.listen, None, host.clone())?);
            serve(&host, fabric)
        }
        Backend::Shm => {
            let fabric = Arc::new(ShmFabric::create_in(&args.dir, host.clone())?);
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
        .map_err(|e| o3_transport::Error::io("print node id", e))?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("o3-transport-node: {e}");
        std::process::exit(1);
    }
}
