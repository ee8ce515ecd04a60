//! The baselines `o3-transport-bench` measures the transport against, in
//! the same run: memcpy on the owner's own region memory, a raw TCP stream
//! and ping-pong, and two threads ping-ponging through an atomic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use o3_transport::conformance::Owner;
use o3_transport::shm::region_file::RegionFile;
use o3_transport::shm::region_path;
use o3_transport::{Error, RegionDesc, RegionMemory, Result};

use crate::{PING_BODY, REGION, latency, offset};

/// The memory behind the owner's region `desc`, for the memcpy baselines:
/// the owner's own handle (local) or a second mapping of its region file
/// (shm).
pub fn owner_memory(name: &str, owner: &dyn Owner, desc: &RegionDesc) -> Result<Arc<RegionMemory>> {
    let missing = || Error::InvalidArgument(format!("no access to {name} region {}", desc.region));
    match name {
        "local" => owner
            .region(desc.region)
            .map(|region| Arc::clone(region.memory()))
            .ok_or_else(missing),
        "shm" => {
            let path = region_path(&PathBuf::from(&desc.node.0), desc.region);
            let file = RegionFile::open(&path, desc.region, &desc.node)?;
            Ok(Arc::new(file.memory()?))
        }
        _ => Err(missing()),
    }
}

/// Where the baseline copies for operation `i`: the transport's offset,
/// half a region further on.
pub fn baseline_offset(i: usize, size: usize) -> usize {
    offset(i + (REGION / 2) / size, size)
}

pub fn copy_into(memory: &RegionMemory, at: usize, data: &[u8]) -> Result<()> {
    memory
        .copy_in(at as u64, std::hint::black_box(data))
        .then_some(())
        .ok_or_else(|| Error::InvalidArgument(format!("baseline copy at {at}")))
}

pub fn copy_out_of(memory: &RegionMemory, at: usize, buf: &mut [u8]) -> Result<()> {
    memory
        .copy_out(at as u64, buf)
        .then_some(())
        .ok_or_else(|| Error::InvalidArgument(format!("baseline copy at {at}")))?;
    std::hint::black_box(buf);
    Ok(())
}

/// A raw TCP stream into a reader that discards: the ceiling for tcp
/// one-sided writes.
pub fn raw_stream_throughput(size: usize, ops: usize) -> Result<f64> {
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
pub fn raw_ping_pong(round_trips: usize) -> Result<(Histogram<u64>, Duration)> {
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
    let hist = latency(round_trips, None, || {
        s.write_all(&buf).map_err(|e| Error::io("ping", e))?;
        s.read_exact(&mut buf).map_err(|e| Error::io("pong", e))
    })?;
    drop(s);
    let _ = echo.join();
    Ok(hist)
}

/// Two threads passing a counter back and forth through one atomic, both
/// spinning: the floor of any round trip between two cores, and the
/// baseline the polling transports are held to.
pub fn atomic_ping_pong(round_trips: usize) -> Result<(Histogram<u64>, Duration)> {
    const STOP: u64 = u64::MAX;
    let turn = Arc::new(AtomicU64::new(0));
    let echo_turn = Arc::clone(&turn);
    let echo = std::thread::Builder::new()
        .name("atomic-echo".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                let now = echo_turn.load(Ordering::Acquire);
                if now == STOP {
                    return;
                }
                if now != seen && now % 2 == 1 {
                    seen = now + 1;
                    echo_turn.store(seen, Ordering::Release);
                } else {
                    std::hint::spin_loop();
                }
            }
        })
        .map_err(|e| Error::io("spawn the atomic echo thread", e))?;
    let mut next = 0u64;
    let measured = latency(round_trips, None, || {
        let ping = next + 1;
        turn.store(ping, Ordering::Release);
        while turn.load(Ordering::Acquire) != ping + 1 {
            std::hint::spin_loop();
        }
        next = ping + 1;
        Ok(())
    });
    turn.store(STOP, Ordering::Release);
    echo.join()
        .map_err(|_| Error::InvalidArgument("atomic echo thread panicked".into()))?;
    measured
}
