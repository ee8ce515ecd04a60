//! The link model never delivers faster than configured (lower bounds only).

use std::sync::Arc;
use std::time::{Duration, Instant};

use o3_transport::conformance::suite_credentials;
use o3_transport::host::{ECHO, RegionHost, host_register};
use o3_transport::link::LinkModel;
use o3_transport::local::{LocalFabric, LocalNetwork};
use o3_transport::verbs::no_requests;
use o3_transport::{ConnectOptions, Connection, Fabric, FabricOptions};

/// A modeled connection to a region host, and the host's node (the
/// connection fails once the node is dropped).
fn connection(model: LinkModel) -> (Arc<dyn Connection>, LocalFabric) {
    let network = LocalNetwork::new();
    let host = RegionHost::new();
    let options = FabricOptions::new(suite_credentials());
    let owner = network
        .node("owner", host.clone(), options.clone())
        .unwrap();
    host.attach(Arc::new(owner.clone())).unwrap();
    let requester = network.node("requester", no_requests(), options).unwrap();
    let conn = requester
        .connect(owner.node(), &ConnectOptions::default())
        .unwrap();
    (model.wrap(conn), owner)
}

#[test]
fn writes_take_at_least_bytes_over_bandwidth() {
    let model = LinkModel {
        latency: Duration::ZERO,
        bandwidth_bytes_per_sec: Some(16 << 20),
    };
    let (conn, _owner) = connection(model);
    let desc = host_register(&*conn, 1 << 20).unwrap();
    let chunk = vec![7u8; 256 << 10];
    let started = Instant::now();
    for i in 0..16u64 {
        conn.write(&desc, (i % 4) * (256 << 10), &chunk).unwrap();
    }
    let total = 16 * chunk.len() as u64;
    assert!(
        started.elapsed() >= model.transfer_time(total),
        "{total} bytes at {model} took {:?}",
        started.elapsed()
    );
}

#[test]
fn concurrent_readers_share_the_bandwidth() {
    let model = LinkModel {
        latency: Duration::ZERO,
        bandwidth_bytes_per_sec: Some(32 << 20),
    };
    let (conn, _owner) = connection(model);
    let desc = host_register(&*conn, 1 << 20).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                for _ in 0..2 {
                    conn.read(&desc, 0, &mut buf).unwrap();
                }
            });
        }
    });
    assert!(started.elapsed() >= model.transfer_time(8 << 20));
}

#[test]
fn every_operation_pays_the_latency() {
    let model = LinkModel {
        latency: Duration::from_millis(20),
        bandwidth_bytes_per_sec: None,
    };
    let (conn, _owner) = connection(model);
    let started = Instant::now();
    let desc = host_register(&*conn, 64).unwrap();
    conn.fetch_add(&desc, 0, 1).unwrap();
    conn.call(&[ECHO, 1, 2, 3]).unwrap();
    conn.send(b"one way").unwrap();
    assert!(
        started.elapsed() >= model.latency * 4,
        "4 operations at {model} took {:?}",
        started.elapsed()
    );
}
