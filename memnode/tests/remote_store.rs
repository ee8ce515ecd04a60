//! The remote `ImageStore` against `o3-memnode` children: security
//! (tokens, another compute node's descriptors), bad input on the data
//! plane, a killed and restarted memory node, lease expiry, and shutdown.
//! Each test starts its own children, keeps their handles and stops exactly
//! those; every wait is bounded.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod memnode_child;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BuiltImage, build_image};
use memnode_child::{MemnodeChild, TOKEN, WAIT};
use o3_memnode::client::{ClientErrorKind, ImageStore, RemoteRegion, StoreConfig};
use o3_memnode::wire::{Message, Refusal};
use o3_memnode::{Found, GetRequest, ImageId, KeyLookup, LeaseSecret};
use o3_storage::key::ValueKind;
use o3_transport::control::ClusterToken;
use o3_transport::control::proto::memnode::v1 as pb;
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{ConnectOptions, Connection, Fabric, FabricOptions, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn image(serial: u64, value: &[u8]) -> BuiltImage {
    let entries: Vec<common::Entry> = (0..50u64)
        .map(|i| {
            (
                format!("key{i:02}").into_bytes(),
                serial * 100 + i + 1,
                ValueKind::Value,
                value.to_vec(),
            )
        })
        .collect();
    build_image(ImageId { shard: 0, serial }, &entries)
}

/// Allocate, write and publish `image`.
fn ship(store: &dyn ImageStore, image: &BuiltImage) -> RemoteRegion {
    let region = store.allocate(image.bytes.len() as u64).unwrap();
    store.write(&region, 0, &image.bytes).unwrap();
    store.publish(&region, image.meta).unwrap();
    region
}

fn lookup(key: &[u8], images: &[ImageId]) -> GetRequest {
    GetRequest {
        lookups: vec![KeyLookup {
            key: key.to_vec(),
            snapshot: u64::MAX >> 8,
            images: images.to_vec(),
        }],
    }
}

/// The value `store` finds for `key` in `image`.
fn value_of(store: &dyn ImageStore, key: &[u8], image: ImageId) -> Vec<u8> {
    let response = store.get(&lookup(key, &[image])).unwrap();
    match &response.answers[0][0] {
        Found::Value { value, .. } => value.clone(),
        other => panic!("{other:?}"),
    }
}

fn start(transport: &str, extra: &[&str]) -> (MemnodeChild, Option<tempfile::TempDir>) {
    let shm = (transport == "shm").then(|| tempfile::tempdir().unwrap());
    let mut args = vec!["--pool-size", "16MiB", "--transport", transport];
    if let Some(dir) = &shm {
        args.extend(["--shm-dir", dir.path().to_str().unwrap()]);
    }
    args.extend(extra);
    (MemnodeChild::start(&args), shm)
}

/// A raw data-plane connection of this test (not a compute node's store).
fn raw_connection(child: &MemnodeChild) -> (Arc<dyn Fabric>, Arc<dyn Connection>) {
    let options = FabricOptions::new(ClusterToken::new(TOKEN).unwrap());
    let (kind, node) = &child.data_plane;
    let fabric: Arc<dyn Fabric> = match kind.as_str() {
        "shm" => Arc::new(
            ShmFabric::create_in(Path::new(node).parent().unwrap(), no_requests(), options)
                .unwrap(),
        ),
        _ => Arc::new(TcpFabric::bind("127.0.0.1:0", None, no_requests(), options).unwrap()),
    };
    let connection = fabric
        .connect(&NodeId(node.clone()), &ConnectOptions::default())
        .unwrap();
    (fabric, connection)
}

#[test]
fn calls_with_a_wrong_or_missing_token_are_unauthenticated_and_change_nothing() {
    let (child, _shm) = start("tcp", &[]);
    let good = child.store("a");
    let region = ship(good.as_ref(), &image(1, b"a"));
    let before = good.stats().unwrap();

    let mut config = child.remote_config("intruder", Duration::from_secs(5));
    config.token = ClusterToken::new("o3-memnode-test-token-51c3").unwrap();
    let error = o3_memnode::client::open(&StoreConfig::Remote(config)).unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Unauthenticated, "{error}");

    // No token at all, on every call.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel =
            o3_transport::control::connect(&format!("http://{}", child.addr), &Default::default())
                .await
                .unwrap();
        let mut anonymous = pb::memory_node_client::MemoryNodeClient::new(channel);
        let statuses = [
            anonymous
                .register(pb::RegisterRequest {
                    compute_node: "intruder".into(),
                })
                .await
                .map(drop),
            anonymous
                .allocate(pb::AllocateRequest {
                    lease: 1,
                    bytes: 4096,
                })
                .await
                .map(drop),
            anonymous.stats(pb::StatsRequest {}).await.map(drop),
        ];
        for status in statuses {
            assert_eq!(status.unwrap_err().code(), tonic::Code::Unauthenticated);
        }
    });

    let after = good.stats().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.pool.regions_per_owner.len(), 1);
    assert_eq!(
        value_of(
            good.as_ref(),
            b"key07",
            ImageId {
                shard: 0,
                serial: 1
            }
        ),
        b"a"
    );
    good.release(&region).unwrap();
}

/// Compute node B holds compute node A's region descriptors (as if they
/// leaked): every use of them through B's store is a typed refusal, a
/// forged transport key is refused by the transport, and A's bytes and
/// answers are unchanged.
fn another_compute_node_cannot_use_a_region(transport: &str) {
    let (child, _shm) = start(transport, &[]);
    let a = child.store("a");
    let b = child.store("b");
    let a_image = image(1, b"a's value");
    let published = ship(a.as_ref(), &a_image);
    let open = a.allocate(8192).unwrap();
    a.write(&open, 0, b"a's open region").unwrap();
    // B has a region of its own, to show its session works.
    let b_region = b.allocate(4096).unwrap();
    b.write(&b_region, 0, b"b").unwrap();

    let refused = |result: Result<(), o3_memnode::client::ClientError>, what: &str| {
        let error = result.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Refused, "{what}: {error}");
    };
    for region in [&published, &open] {
        refused(b.write(region, 0, b"evil"), "write");
        refused(b.read(region, 0, &mut [0u8; 8]), "read");
        refused(b.publish(region, a_image.meta), "publish");
        refused(b.release(region), "release");
    }
    let error = b.get(&lookup(b"key07", &[a_image.meta.id])).unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Refused, "{error}");

    // Past the client: a descriptor with a forged key is refused by the
    // transport on every one-sided operation.
    let (_fabric, raw) = raw_connection(&child);
    for region in [&published, &open] {
        let mut forged = region.data.clone().unwrap();
        forged.rkey ^= 0x5a5a;
        let write = raw.write(&forged, 0, b"evil").unwrap_err();
        assert!(
            matches!(write, o3_transport::Error::BadKey { .. }),
            "{write}"
        );
        let read = raw.read(&forged, 0, &mut [0u8; 8]).unwrap_err();
        assert!(matches!(read, o3_transport::Error::BadKey { .. }), "{read}");
    }

    let mut back = vec![0u8; a_image.bytes.len()];
    a.read(&published, 0, &mut back).unwrap();
    assert!(back == a_image.bytes);
    let mut open_back = [0u8; 15];
    a.read(&open, 0, &mut open_back).unwrap();
    assert_eq!(&open_back, b"a's open region");
    assert_eq!(
        value_of(a.as_ref(), b"key07", a_image.meta.id),
        b"a's value"
    );
    let stats = a.stats().unwrap();
    assert_eq!(stats.published_images, 1);
    assert_eq!(
        stats
            .pool
            .regions_per_owner
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [2, 1]
    );
}

#[test]
fn another_compute_node_cannot_use_a_region_over_shm() {
    another_compute_node_cannot_use_a_region("shm");
}

#[test]
fn another_compute_node_cannot_use_a_region_over_tcp() {
    another_compute_node_cannot_use_a_region("tcp");
}

/// Writes `bytes` on a fresh connection to `addr`, then waits (bounded)
/// for the node to hang up.
fn send_garbage(addr: &str, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // The node may hang up before reading everything.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let started = Instant::now();
    let _ = stream.read_to_end(&mut sink);
    assert!(
        started.elapsed() < WAIT,
        "the node kept a garbage connection open"
    );
}

fn frame_header(len: u64, kind: u8) -> Vec<u8> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&1u64.to_le_bytes());
    header.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
    header
}

#[test]
fn garbage_on_the_tcp_data_plane_does_not_crash_the_node() {
    let (child, _shm) = start("tcp", &[]);
    let store = child.store("a");
    let shipped = image(1, b"v");
    ship(store.as_ref(), &shipped);
    let addr = child.data_plane.1.clone();
    let mut rng = StdRng::seed_from_u64(7);
    let random: Vec<u8> = (0..64 << 10).map(|_| rng.random()).collect();
    let mut huge_hello = frame_header(u64::MAX, 1);
    huge_hello.extend_from_slice(&random[..1024]);
    let mut big_hello = frame_header(4096, 1);
    big_hello.extend_from_slice(&random[..4096]);
    let patterns: Vec<Vec<u8>> = vec![
        random.clone(),
        huge_hello,
        frame_header(u64::MAX, 3),
        frame_header(1 << 40, 5),
        frame_header(u64::MAX, 0xff),
        big_hello,
        frame_header(16, 1)[..10].to_vec(),
        Vec::new(),
    ];
    for pattern in &patterns {
        send_garbage(&addr, pattern);
        assert_eq!(
            value_of(store.as_ref(), b"key07", shipped.meta.id),
            b"v",
            "after {} bytes of garbage",
            pattern.len()
        );
    }
}

/// Bodies that are not well-formed requests, through an authenticated
/// connection: each is refused with a reason, none stops the node.
fn garbage_requests_are_refused(transport: &str) {
    let (child, _shm) = start(transport, &[]);
    let store = child.store("a");
    let shipped = image(1, b"v");
    ship(store.as_ref(), &shipped);
    let (_fabric, raw) = raw_connection(&child);
    let mut rng = StdRng::seed_from_u64(11);
    let mut bodies: Vec<Vec<u8>> = (0..64)
        .map(|i| (0..i * 7).map(|_| rng.random()).collect())
        .collect();
    let mut huge_count = vec![1u8, o3_memnode::wire::WIRE_VERSION];
    huge_count.extend_from_slice(&42u64.to_le_bytes());
    huge_count.extend_from_slice(&u32::MAX.to_le_bytes());
    bodies.push(huge_count);
    bodies.push(Message::GetResponse(Default::default()).encode());
    for body in &bodies {
        let answer = Message::decode(&raw.call(body).unwrap()).unwrap();
        assert!(
            matches!(
                answer,
                Message::Refused {
                    kind: Refusal::Request,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    // A well-formed request with a lease nobody holds.
    let guessed = Message::GetRequest {
        lease: LeaseSecret(rng.random()),
        request: lookup(b"key07", &[shipped.meta.id]),
    };
    let answer = Message::decode(&raw.call(&guessed.encode()).unwrap()).unwrap();
    assert!(
        matches!(
            answer,
            Message::Refused {
                kind: Refusal::Lease,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(value_of(store.as_ref(), b"key07", shipped.meta.id), b"v");
}

#[test]
fn garbage_requests_are_refused_over_tcp() {
    garbage_requests_are_refused("tcp");
}

#[test]
fn garbage_requests_are_refused_over_shm() {
    garbage_requests_are_refused("shm");
}

/// Polls `done` every 20 ms for at most [`WAIT`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL the node: the next calls fail as unavailable within the
/// operation timeout. Start a new node at the same address: the client
/// registers again by itself, regions and images of the old session are
/// `SessionLost`, and new ones work.
fn a_killed_node_is_noticed_and_a_restarted_one_rejoined(transport: &str) {
    let shm = (transport == "shm").then(|| tempfile::tempdir().unwrap());
    let mut args = vec![
        "--pool-size",
        "16MiB",
        "--lease-ttl",
        "1s",
        "--transport",
        transport,
        "--data-listen",
        "127.0.0.1:0",
    ];
    if let Some(dir) = &shm {
        args.extend(["--shm-dir", dir.path().to_str().unwrap()]);
    }
    let mut child = MemnodeChild::start(&args);
    let op_timeout = Duration::from_secs(2);
    let config = child.remote_config("a", op_timeout);
    let store = o3_memnode::client::open(&StoreConfig::Remote(config)).unwrap();
    let old_image = image(1, b"old");
    let old_region = ship(store.as_ref(), &old_image);
    let old_session = store.session();

    child.kill();
    let allowed = op_timeout + Duration::from_millis(500);
    let started = Instant::now();
    let error = store
        .get(&lookup(b"key07", &[old_image.meta.id]))
        .unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Unavailable, "{error}");
    assert!(
        started.elapsed() < allowed,
        "noticed after {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let error = store.allocate(4096).unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Unavailable, "{error}");
    assert!(
        started.elapsed() < allowed,
        "noticed after {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let error = store.read(&old_region, 0, &mut [0u8; 8]).unwrap_err();
    assert!(error.images_lost(), "{error}");
    assert!(
        started.elapsed() < allowed,
        "noticed after {:?}",
        started.elapsed()
    );

    let listen = child.addr.to_string();
    let _restarted = MemnodeChild::start_in(tempfile::tempdir().unwrap(), &listen, &args);
    eventually("re-registration", || store.session() != old_session);

    let lost = |error: o3_memnode::client::ClientError| {
        assert_eq!(error.kind, ClientErrorKind::SessionLost, "{error}");
    };
    lost(store.write(&old_region, 0, b"x").unwrap_err());
    lost(store.read(&old_region, 0, &mut [0u8; 8]).unwrap_err());
    lost(store.publish(&old_region, old_image.meta).unwrap_err());
    lost(
        store
            .get(&lookup(b"key07", &[old_image.meta.id]))
            .unwrap_err(),
    );
    lost(store.release(&old_region).unwrap_err());

    let new_image = image(2, b"new");
    let new_region = ship(store.as_ref(), &new_image);
    assert_eq!(new_region.session, store.session());
    assert_eq!(
        value_of(store.as_ref(), b"key07", new_image.meta.id),
        b"new"
    );
    // The old image's id is free again in the new session.
    let again = ship(store.as_ref(), &old_image);
    assert_eq!(
        value_of(store.as_ref(), b"key07", old_image.meta.id),
        b"old"
    );
    store.release(&again).unwrap();
    store.release(&new_region).unwrap();
}

#[test]
fn a_killed_tcp_node_is_noticed_and_a_restarted_one_rejoined() {
    a_killed_node_is_noticed_and_a_restarted_one_rejoined("tcp");
}

#[test]
fn a_killed_shm_node_is_noticed_and_a_restarted_one_rejoined() {
    a_killed_node_is_noticed_and_a_restarted_one_rejoined("shm");
}

#[test]
fn a_vanished_clients_regions_are_reclaimed_after_its_lease() {
    let (child, _shm) = start("tcp", &["--lease-ttl", "1s"]);
    let observer = child.store("observer");
    let vanishing = child.store("vanishing");
    ship(vanishing.as_ref(), &image(1, b"v"));
    ship(vanishing.as_ref(), &image(2, b"w"));
    vanishing.allocate(100_000).unwrap();
    let held = observer.stats().unwrap();
    assert_eq!(held.published_images, 2);
    assert_eq!(held.pool.regions_per_owner.values().sum::<usize>(), 3);
    assert!(held.pool.used > 100_000);
    // Gone without releasing anything: its heartbeats stop.
    drop(vanishing);
    eventually("reclaim", || {
        let stats = observer.stats().unwrap();
        stats.pool.used == 0 && stats.published_images == 0
    });
    let stats = observer.stats().unwrap();
    assert!(stats.pool.regions_per_owner.is_empty());
    assert_eq!(stats.pool.free, stats.pool.capacity);
}

#[test]
fn sigterm_removes_the_shm_data_plane() {
    let (child, shm) = start("shm", &["--shutdown-grace", "1s"]);
    let node_dir = std::path::PathBuf::from(&child.data_plane.1);
    assert!(node_dir.starts_with(shm.as_ref().unwrap().path()));
    let store = child.store("a");
    ship(store.as_ref(), &image(1, b"v"));
    let region_files = std::fs::read_dir(&node_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("region-")
        })
        .count();
    assert_eq!(region_files, 1);
    let mut child = child;
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit().success());
    assert!(!node_dir.exists(), "{} is still there", node_dir.display());
}
