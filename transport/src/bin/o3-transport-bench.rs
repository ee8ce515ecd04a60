//! `o3-transport-bench`: one-sided write/read throughput and two-sided
//! round-trip latency per backend, each next to a baseline measured in the
//! same run (memcpy for local and shm; a raw TCP stream and a raw TCP
//! ping-pong for tcp). Prints a table and writes JSON (`--json PATH`).
//!
//! Region owners for shm and tcp are `o3-transport-node` processes, as in
//! a deployment; the local owner lives in this process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use o3_transport::conformance::{Backend, LocalBackend, Owner, ProcessOwner, suite_credentials};
use o3_transport::host::{ECHO, host_register};
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{
    ConnectOptions, Connection, Credentials, Error, Fabric, FabricOptions, RegionDesc, Result,
};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the o3 transport backends against raw baselines")]
struct Args {
    /// Backends to measure (comma-separated: local, shm, tcp).
    #[arg(long, value_delimiter = ',', default_value = "local,shm,tcp")]
    backends: Vec<String>,
    /// Transfer sizes in bytes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4096,65536,1048576,8388608"
    )]
    sizes: Vec<usize>,
    /// Bytes moved per throughput measurement (at least `--min-ops` operations).
    #[arg(long, default_value_t = 256 << 20)]
    bytes: usize,
    /// Fewest operations per throughput measurement.
    #[arg(long, default_value_t = 32)]
    min_ops: usize,
    /// Round trips per latency measurement.
    #[arg(long, default_value_t = 20_000)]
    round_trips: usize,
    /// Where the region owners' program is (default: next to this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Directory for shm region files.
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Bytes of the echo request body in a round trip.
const PING_BODY: usize = 16;
/// Region size: large enough that transfers cycle through more memory than
/// the caches hold.
const REGION: usize = 64 << 20;

#[derive(Debug, Serialize)]
struct Row {
    backend: String,
    metric: String,
    size: Option<usize>,
    value: f64,
    unit: &'static str,
    baseline_name: String,
    baseline: f64,
}

struct ProcessBackend {
    name: &'static str,
    requester: Arc<dyn Fabric>,
    bin: PathBuf,
    args: Vec<String>,
}

impl Backend for ProcessBackend {
    fn name(&self) -> String {
        self.name.into()
    }
    fn requester(&self) -> Arc<dyn Fabric> {
        Arc::clone(&self.requester)
    }
    fn requester_with(&self, _credentials: Credentials) -> Result<Arc<dyn Fabric>> {
        Err(Error::InvalidArgument(
            "the benchmark uses one requester".into(),
        ))
    }
    fn start_owner(&self) -> Result<Box<dyn Owner>> {
        Ok(Box::new(ProcessOwner::spawn(&self.bin, &self.args)?))
    }
}

fn backend(name: &str, args: &Args) -> Result<Box<dyn Backend>> {
    let bin = match &args.node_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| Error::io("locate this program", e))?
            .with_file_name("o3-transport-node"),
    };
    Ok(match name {
        "local" => Box::new(LocalBackend::new()?),
        "tcp" => Box::new(ProcessBackend {
            name: "tcp",
            requester: Arc::new(TcpFabric::bind(
                "127.0.0.1:0",
                None,
                no_requests(),
                FabricOptions::new(suite_credentials()),
            )?),
            bin,
            args: vec!["--backend".into(), "tcp".into()],
        }),
        "shm" => Box::new(ProcessBackend {
            name: "shm",
            requester: Arc::new(ShmFabric::create_in(
                &args.shm_dir,
                no_requests(),
                FabricOptions::new(suite_credentials()),
            )?),
            bin,
            args: vec![
                "--backend".into(),
                "shm".into(),
                "--dir".into(),
                args.shm_dir.to_string_lossy().into_owned(),
            ],
        }),
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown backend {other:?} (expected local, shm or tcp)"
            )));
        }
    })
}

fn ops_for(args: &Args, size: usize) -> usize {
    (args.bytes / size).max(args.min_ops)
}

/// Bytes per second of `ops` transfers of `size` bytes done by `step(i)`.
fn throughput(size: usize, ops: usize, mut step: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    // Warm up: touch every page once so page faults are not measured.
    for i in 0..(REGION / size).min(ops) {
        step(i)?;
    }
    let started = Instant::now();
    for i in 0..ops {
        step(i)?;
    }
    Ok((size * ops) as f64 / started.elapsed().as_secs_f64())
}

fn offset(i: usize, size: usize) -> usize {
    (i * size) % (REGION - REGION % size.max(1))
}

fn memcpy_throughput(size: usize, ops: usize) -> Result<f64> {
    let src = vec![0x5Au8; size];
    let mut dst = vec![0u8; REGION];
    let rate = throughput(size, ops, |i| {
        let at = offset(i, size);
        dst[at..at + size].copy_from_slice(std::hint::black_box(&src));
        Ok(())
    })?;
    std::hint::black_box(&dst);
    Ok(rate)
}

/// A raw TCP stream into a reader that discards: the ceiling for tcp
/// one-sided writes.
fn raw_stream_throughput(size: usize, ops: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind", e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("addr", e))?;
    let total = size * (ops + (REGION / size).min(ops));
    let sink = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; REGION.min(size.max(64 << 10))];
        let mut left = total;
        while left > 0 {
            let want = left.min(buf.len());
            let n = s.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            left -= n;
        }
        s.write_all(&[1])
    });
    let mut s = TcpStream::connect(addr).map_err(|e| Error::io("connect", e))?;
    s.set_nodelay(true).map_err(|e| Error::io("nodelay", e))?;
    let data = vec![0x5Au8; size];
    let warm = (REGION / size).min(ops);
    for _ in 0..warm {
        s.write_all(&data).map_err(|e| Error::io("write", e))?;
    }
    let started = Instant::now();
    for _ in 0..ops {
        s.write_all(&data).map_err(|e| Error::io("write", e))?;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).map_err(|e| Error::io("ack", e))?;
    let elapsed = started.elapsed();
    sink.join()
        .map_err(|_| Error::InvalidArgument("sink thread panicked".into()))?
        .map_err(|e| Error::io("sink", e))?;
    Ok((size * ops) as f64 / elapsed.as_secs_f64())
}

/// Round-trip latency of a raw TCP ping-pong with the same bytes on the
/// wire as a transport call (frame header + tag + body).
fn raw_ping_pong(round_trips: usize) -> Result<Histogram<u64>> {
    let message = 24 + 1 + PING_BODY;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind", e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("addr", e))?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; message];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(_) => return Ok(()),
            }
        }
    });
    let mut s = TcpStream::connect(addr).map_err(|e| Error::io("connect", e))?;
    s.set_nodelay(true).map_err(|e| Error::io("nodelay", e))?;
    let mut buf = vec![7u8; message];
    let hist = latency(round_trips, || {
        s.write_all(&buf).map_err(|e| Error::io("ping", e))?;
        s.read_exact(&mut buf).map_err(|e| Error::io("pong", e))
    })?;
    drop(s);
    let _ = echo.join();
    Ok(hist)
}

fn latency(round_trips: usize, mut once: impl FnMut() -> Result<()>) -> Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| Error::InvalidArgument(format!("histogram: {e}")))?;
    for _ in 0..round_trips / 10 {
        once()?;
    }
    for _ in 0..round_trips {
        let started = Instant::now();
        once()?;
        hist.saturating_record(started.elapsed().as_nanos().max(1) as u64);
    }
    Ok(hist)
}

fn measure(name: &str, args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let backend = backend(name, args)?;
    let owner = backend.start_owner()?;
    let conn: Arc<dyn Connection> = backend.requester().connect(
        &owner.node(),
        &ConnectOptions {
            op_timeout: Duration::from_secs(30),
            ..ConnectOptions::default()
        },
    )?;
    let desc: RegionDesc = host_register(&*conn, REGION as u64)?;
    for &size in &args.sizes {
        if size == 0 || size > REGION {
            return Err(Error::InvalidArgument(format!(
                "size {size} must be in 1..={REGION}"
            )));
        }
        let ops = ops_for(args, size);
        let (baseline_name, baseline) = if name == "tcp" {
            ("raw TCP stream", raw_stream_throughput(size, ops)?)
        } else {
            ("memcpy", memcpy_throughput(size, ops)?)
        };
        let data = vec![0xA5u8; size];
        let write = throughput(size, ops, |i| {
            conn.write(&desc, offset(i, size) as u64, &data)
        })?;
        let mut buf = vec![0u8; size];
        let read = throughput(size, ops, |i| {
            conn.read(&desc, offset(i, size) as u64, &mut buf)
        })?;
        for (metric, value) in [("one-sided write", write), ("one-sided read", read)] {
            rows.push(Row {
                backend: name.into(),
                metric: metric.into(),
                size: Some(size),
                value: value / 1e9,
                unit: "GB/s",
                baseline_name: baseline_name.into(),
                baseline: baseline / 1e9,
            });
        }
    }
    let mut ping = vec![ECHO];
    ping.extend_from_slice(&[3u8; PING_BODY]);
    let ours = latency(args.round_trips, || conn.call(&ping).map(|_| ()))?;
    let raw = raw_ping_pong(args.round_trips)?;
    for (metric, q) in [("round trip p50", 0.5), ("round trip p99", 0.99)] {
        rows.push(Row {
            backend: name.into(),
            metric: metric.into(),
            size: None,
            value: ours.value_at_quantile(q) as f64 / 1e3,
            unit: "µs",
            baseline_name: "raw TCP ping-pong".into(),
            baseline: raw.value_at_quantile(q) as f64 / 1e3,
        });
    }
    Ok(())
}

fn size_label(size: Option<usize>) -> String {
    match size {
        None => "-".into(),
        Some(s) if s >= 1 << 20 => format!("{} MiB", s >> 20),
        Some(s) => format!("{} KiB", s >> 10),
    }
}

fn find<'a>(rows: &'a [Row], backend: &str, metric: &str, size: Option<usize>) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.backend == backend && r.metric == metric && r.size == size)
}

/// The targets, each with its ratio and verdict.
fn targets(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let mib = Some(1 << 20);
    if let Some(r) = find(rows, "shm", "one-sided write", mib) {
        let ratio = r.value / r.baseline;
        out.push(format!(
            "shm write 1 MiB >= 70% of memcpy: {:.0}% {}",
            ratio * 100.0,
            verdict(ratio >= 0.7)
        ));
    }
    if let Some(r) = find(rows, "tcp", "one-sided write", mib) {
        let ratio = r.value / r.baseline;
        out.push(format!(
            "tcp write 1 MiB >= 60% of raw stream: {:.0}% {}",
            ratio * 100.0,
            verdict(ratio >= 0.6)
        ));
    }
    if let Some(r) = find(rows, "tcp", "round trip p50", None) {
        let ratio = r.value / r.baseline;
        out.push(format!(
            "tcp round trip p50 <= 1.5x raw ping-pong: {ratio:.2}x {}",
            verdict(ratio <= 1.5)
        ));
    }
    if let (Some(shm), Some(tcp)) = (
        find(rows, "shm", "round trip p50", None),
        find(rows, "tcp", "round trip p50", None),
    ) {
        out.push(format!(
            "shm round trip p50 below tcp's: {:.1} µs vs {:.1} µs {}",
            shm.value,
            tcp.value,
            verdict(shm.value < tcp.value)
        ));
    }
    out
}

fn verdict(holds: bool) -> &'static str {
    if holds { "(holds)" } else { "(MISSES)" }
}

fn run(args: Args) -> Result<()> {
    let mut rows = Vec::new();
    for name in &args.backends {
        eprintln!("measuring {name} ...");
        measure(name, &args, &mut rows)?;
    }
    println!(
        "{:<7} {:<16} {:>7} {:>13} {:>13} {:<18} {:>6}",
        "backend", "metric", "size", "value", "baseline", "(baseline)", "ratio"
    );
    for r in &rows {
        println!(
            "{:<7} {:<16} {:>7} {:>8.2} {:<5}{:>8.2} {:<5} {:<18} {:>6.2}",
            r.backend,
            r.metric,
            size_label(r.size),
            r.value,
            r.unit,
            r.baseline,
            r.unit,
            r.baseline_name,
            r.value / r.baseline
        );
    }
    let checks = targets(&rows);
    println!();
    for line in &checks {
        println!("target: {line}");
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "results": rows, "targets": checks });
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::InvalidArgument(format!("encode JSON: {e}")))?;
        std::fs::write(path, text)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("o3-transport-bench: {e}");
        std::process::exit(1);
    }
}
