//! `o3-bench offload-ship`: how fast a sealed memtable ships to a memory
//! node, next to what the transport itself does with the same bytes.
//!
//! One run builds a sealed memtable image of `--image-mib` MiB (random
//! 16-byte keys, 100-byte values), reaches an `o3-memnode` (the one at
//! `--memnode`, or a child it starts from the binary next to its own and
//! stops at the end) over `--transport`, and measures, `--repeat` times in
//! alternation:
//!
//! - **raw**: one-sided writes of the image's bytes, in the chunking the
//!   client uses, into a fresh region the memory node allocated, on a
//!   connection of this benchmark's own to the same data plane (a fresh
//!   region, as shipping always writes one: its pages are faulted in by the
//!   write; a second write into the same region is reported beside it);
//! - **ship**: `ImageStore` allocate + write + publish of the image (a fresh
//!   region each time, as for raw), with the write and the publish also
//!   reported on their own. Publish checks the header and the checksum; the
//!   memory node validates the structure in the background before the
//!   first lookup, so each round ends (untimed) with a lookup that waits
//!   for it, and no round shares the CPU with the previous one's.
//!
//! Throughputs are the median over the repeats (MB = 10^6 bytes); the ratio
//! ship/raw is what issue 12 asks to be at least 0.8. The link model, when
//! given, wraps both connections.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use o3_memnode::client::{self, RemoteConfig, StoreConfig, write_chunked};
use o3_memnode::{GetRequest, ImageId, ImageMeta, KeyLookup};
use o3_storage::key::ValueKind;
use o3_storage::memtable::Memtable;
use o3_transport::control::ClusterToken;
use o3_transport::link::LinkModel;
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{ConnectOptions, Connection, Fabric, FabricOptions, NodeId};
use rand::{Rng, SeedableRng};

use crate::error::{BenchError, Result};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
/// Bound on every memory-node call; generous, so a slow emulated link
/// still ships a large image in one write.
const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// Flags of `o3-bench offload-ship`.
#[derive(Debug, Clone, Args)]
pub struct OffloadShipArgs {
    /// Data-plane transport: shm or tcp.
    #[arg(long, default_value = "tcp", value_parser = ["shm", "tcp"])]
    pub transport: String,
    /// An o3-memnode's control address (host:port); without it, a child
    /// o3-memnode is started next to this binary and stopped at the end.
    #[arg(long, requires = "token_file")]
    pub memnode: Option<String>,
    /// File holding the cluster token of --memnode.
    #[arg(long, requires = "memnode")]
    pub token_file: Option<PathBuf>,
    /// Size of the sealed memtable image, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub image_mib: u64,
    /// Measurements of each kind (after one unrecorded warm-up round).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Emulated link latency per operation, in microseconds.
    #[arg(long)]
    pub link_latency_us: Option<u64>,
    /// Emulated link bandwidth, in bytes per second.
    #[arg(long)]
    pub link_bandwidth: Option<u64>,
}

impl OffloadShipArgs {
    fn link(&self) -> Option<LinkModel> {
        if self.link_latency_us.is_none() && self.link_bandwidth.is_none() {
            return None;
        }
        Some(LinkModel {
            latency: Duration::from_micros(self.link_latency_us.unwrap_or(0)),
            bandwidth_bytes_per_sec: self.link_bandwidth,
        })
    }
}

/// A sealed image and what publishing it says about it.
struct Image {
    memtable: Memtable,
    meta: ImageMeta,
}

impl Image {
    fn bytes(&self) -> Result<&[u8]> {
        self.memtable
            .image_bytes()
            .map_err(|e| BenchError::InvalidArgument(format!("image bytes: {e}")))
    }
}

/// Fill a memtable of `mib` MiB with random entries until it is full.
fn build_image(mib: u64) -> Result<Image> {
    let failed =
        |e: o3_storage::Error| BenchError::InvalidArgument(format!("building the image: {e}"));
    let capacity = usize::try_from(mib << 20)
        .map_err(|_| BenchError::InvalidArgument(format!("{mib} MiB do not fit in memory")))?;
    let memtable = Memtable::new(capacity, 0).map_err(failed)?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x00ff_10ad);
    let mut key = [0u8; KEY_LEN];
    let mut value = [0u8; VALUE_LEN];
    let mut seq = 0u64;
    loop {
        rng.fill(&mut key[..]);
        rng.fill(&mut value[..]);
        match memtable.insert(&key, seq + 1, ValueKind::Value, &value) {
            Ok(()) => seq += 1,
            Err(o3_storage::Error::ImageFull { .. }) => break,
            Err(e) => return Err(failed(e)),
        }
    }
    memtable.seal().map_err(failed)?;
    let meta = ImageMeta {
        id: ImageId {
            shard: 0,
            serial: 0,
        },
        entries: memtable.entries(),
        largest_seq: memtable.largest_seq(),
    };
    Ok(Image { memtable, meta })
}

/// An `o3-memnode` this benchmark started; stopped on drop.
struct MemnodeChild {
    child: Child,
    addr: String,
    _token: TokenFile,
}

/// A token file this benchmark wrote; removed on drop.
struct TokenFile(PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl MemnodeChild {
    fn start(transport: &str, pool_size: u64, token: &str) -> Result<MemnodeChild> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::InvalidArgument(format!("locating o3-bench: {e}")))?;
        let binary = exe.with_file_name("o3-memnode");
        let token_path =
            std::env::temp_dir().join(format!("o3-bench-token-{}", std::process::id()));
        std::fs::write(&token_path, token).map_err(|e| BenchError::io(&token_path, e))?;
        let token_file = TokenFile(token_path);
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--data-listen", "127.0.0.1:0"])
            .args(["--transport", transport])
            .arg("--pool-size")
            .arg(format!("{}MiB", pool_size.div_ceil(1 << 20)))
            .arg("--token-file")
            .arg(&token_file.0)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| BenchError::io(&binary, e))?;
        // The first line is the control address; the rest of stdout is
        // drained, so the child never writes into a closed pipe.
        let mut lines = child
            .stdout
            .take()
            .map(|stdout| BufReader::new(stdout).lines());
        let first = lines.as_mut().and_then(|l| l.next()).and_then(|l| l.ok());
        if let Some(rest) = lines {
            std::thread::spawn(move || rest.for_each(drop));
        }
        let addr = first
            .as_deref()
            .and_then(|l| l.strip_prefix("listening on "))
            .map(str::to_owned);
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::InvalidArgument(format!(
                "{} did not start (first line {first:?})",
                binary.display()
            )));
        };
        Ok(MemnodeChild {
            child,
            addr,
            _token: token_file,
        })
    }

    /// SIGTERM (so an shm data plane removes its files), then wait.
    fn stop(&mut self) {
        let stopped = i32::try_from(self.child.id())
            // SAFETY: kill(2) on our own child, not yet reaped.
            .map(|pid| unsafe { libc::kill(pid, libc::SIGTERM) } == 0)
            .unwrap_or(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while stopped && Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MemnodeChild {
    fn drop(&mut self) {
        self.stop();
    }
}

/// This benchmark's own data-plane connection to `node` over `transport`.
fn raw_connection(
    transport: &str,
    node: &NodeId,
    token: &ClusterToken,
    link: Option<LinkModel>,
) -> Result<(Arc<dyn Fabric>, Arc<dyn Connection>)> {
    let failed = |e: o3_transport::Error| {
        BenchError::InvalidArgument(format!("raw {transport} connection to {node}: {e}"))
    };
    let options = FabricOptions::new(token.clone());
    let fabric: Arc<dyn Fabric> = match transport {
        "shm" => {
            let root = Path::new(&node.0).parent().ok_or_else(|| {
                BenchError::InvalidArgument(format!("shm node {node} has no parent directory"))
            })?;
            Arc::new(ShmFabric::create_in(root, no_requests(), options).map_err(failed)?)
        }
        _ => {
            Arc::new(TcpFabric::bind("127.0.0.1:0", None, no_requests(), options).map_err(failed)?)
        }
    };
    let options = ConnectOptions {
        op_timeout: OP_TIMEOUT,
        ..ConnectOptions::default()
    };
    let connection = fabric.connect(node, &options).map_err(failed)?;
    let connection = match link {
        Some(link) => link.wrap(connection),
        None => connection,
    };
    Ok((fabric, connection))
}

fn store_error(what: &str) -> impl FnOnce(client::ClientError) -> BenchError + '_ {
    move |e| BenchError::InvalidArgument(format!("{what}: {e}"))
}

/// Throughput in MB/s of `bytes` in `time`.
fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64().max(1e-9) / 1e6
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Run the benchmark and print its results.
pub fn run(args: &OffloadShipArgs) -> Result<()> {
    let link = args.link();
    let image = build_image(args.image_mib)?;
    let bytes = image.bytes()?;
    let (token, mut child, control) = match (&args.memnode, &args.token_file) {
        (Some(addr), Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
            let token = ClusterToken::new(text.trim()).map_err(|e| {
                BenchError::InvalidArgument(format!("token file {}: {e}", path.display()))
            })?;
            (token, None, addr.clone())
        }
        (None, None) => {
            let secret = format!("o3-bench-{:016x}", rand::random::<u64>());
            let token = ClusterToken::new(&secret)
                .map_err(|e| BenchError::InvalidArgument(format!("cluster token: {e}")))?;
            let pool = 4 * bytes.len() as u64 + (64 << 20);
            let child = MemnodeChild::start(&args.transport, pool, &secret)?;
            let control = child.addr.clone();
            (token, Some(child), control)
        }
        _ => {
            return Err(BenchError::InvalidArgument(
                "--memnode and --token-file go together".into(),
            ));
        }
    };
    let store = client::open(&StoreConfig::Remote(RemoteConfig {
        control: control.clone(),
        token: token.clone(),
        compute_node: "o3-bench offload-ship".into(),
        link,
        op_timeout: OP_TIMEOUT,
    }))
    .map_err(store_error("connecting to the memory node"))?;

    println!(
        "offload-ship: transport {}, memory node {} ({}), image {} bytes ({} entries of {KEY_LEN} B keys and {VALUE_LEN} B values), {} repeats",
        args.transport,
        control,
        if child.is_some() {
            "started by o3-bench"
        } else {
            "given"
        },
        bytes.len(),
        image.meta.entries,
        args.repeat
    );
    println!(
        "emulated link: {}",
        link.map_or("none".to_owned(), |l| l.to_string())
    );

    let mut raw_connection_slot = None;
    let (mut raw, mut warm, mut ship) = (vec![], vec![], vec![]);
    let (mut allocate, mut write, mut publish) = (vec![], vec![], vec![]);
    // Round 0 warms both paths up (connections, first-touch costs in this
    // process) and is not recorded.
    for round in 0..=args.repeat {
        let record = round > 0;
        // Raw: the same bytes into a fresh region, with the transport alone.
        let region = store
            .allocate(bytes.len() as u64)
            .map_err(store_error("allocating a region for the raw write"))?;
        let desc = region.data.clone().ok_or_else(|| {
            BenchError::InvalidArgument("the memory node serves no data plane".into())
        })?;
        if raw_connection_slot.is_none() {
            if !transport_matches(&args.transport, &desc.node) {
                return Err(BenchError::InvalidArgument(format!(
                    "the memory node's data plane {} is not {}",
                    desc.node, args.transport
                )));
            }
            raw_connection_slot = Some(raw_connection(&args.transport, &desc.node, &token, link)?);
        }
        let Some((_, connection)) = &raw_connection_slot else {
            return Err(BenchError::InvalidArgument("no raw connection".into()));
        };
        let started = Instant::now();
        write_chunked(connection.as_ref(), &desc, 0, bytes)
            .map_err(|e| BenchError::InvalidArgument(format!("raw write: {e}")))?;
        if record {
            raw.push(started.elapsed());
        }
        let started = Instant::now();
        write_chunked(connection.as_ref(), &desc, 0, bytes)
            .map_err(|e| BenchError::InvalidArgument(format!("raw write: {e}")))?;
        if record {
            warm.push(started.elapsed());
        }
        store
            .release(&region)
            .map_err(store_error("releasing the raw region"))?;

        // Ship: allocate + write + publish through the ImageStore.
        let meta = ImageMeta {
            id: ImageId {
                shard: 0,
                serial: u64::from(round) + 1,
            },
            ..image.meta
        };
        let started = Instant::now();
        let region = store
            .allocate(bytes.len() as u64)
            .map_err(store_error("allocate"))?;
        let written = Instant::now();
        store
            .write(&region, 0, bytes)
            .map_err(store_error("write"))?;
        let publishing = Instant::now();
        store
            .publish(&region, meta)
            .map_err(store_error("publish"))?;
        let done = Instant::now();
        if record {
            ship.push(done - started);
            allocate.push(written - started);
            write.push(publishing - written);
            publish.push(done - publishing);
        }
        // The node validates the image's structure in the background after
        // publish; a lookup waits for it, so the next round does not share
        // the CPU with it.
        store
            .get(&GetRequest {
                lookups: vec![KeyLookup {
                    key: Vec::new(),
                    snapshot: 0,
                    images: vec![meta.id],
                }],
            })
            .map_err(store_error("get"))?;
        store.release(&region).map_err(store_error("release"))?;
    }

    let n = bytes.len();
    let (raw, warm) = (median(raw), median(warm));
    let (ship, allocate) = (median(ship), median(allocate));
    let (write, publish) = (median(write), median(publish));
    let line = |what: &str, time: Duration| {
        println!("{what:<34} {:>9.1} MB/s  ({time:.2?})", mb_per_s(n, time));
    };
    line("raw one-sided write (fresh region)", raw);
    line("  again into the same region", warm);
    line("ship: allocate + write + publish", ship);
    println!("{:<34} {:>14}  ({allocate:.2?})", "  allocate part", "");
    line("  write part", write);
    line("  publish part", publish);
    println!(
        "{:<34} {:>9.3}",
        "ship/raw ratio",
        raw.as_secs_f64() / ship.as_secs_f64().max(1e-9)
    );
    drop(store);
    if let Some(child) = &mut child {
        child.stop();
    }
    Ok(())
}

/// Whether a data-plane node id looks like `transport`'s (an shm node is a
/// directory, a tcp one an address).
fn transport_matches(transport: &str, node: &NodeId) -> bool {
    let is_address = node.0.parse::<std::net::SocketAddr>().is_ok();
    (transport == "tcp") == is_address
}
