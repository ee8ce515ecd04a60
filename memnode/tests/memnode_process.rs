//! `o3-memnode` as a process: started by each test on a loopback ephemeral
//! port (`--listen 127.0.0.1:0`, the bound address read from its stdout),
//! driven over gRPC, stopped through its handle. Every wait is bounded.
//! (The data plane's process tests are in `remote_store.rs`.)

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use memnode_child::{MemnodeChild as Memnode, TOKEN, WAIT, binary, token_file, wait_bounded};
use o3_transport::control::proto::memnode::v1 as pb;
use o3_transport::control::{
    AuthenticatedChannel, ClusterToken, ConnectOptions, authenticated, connect,
};
use pb::memory_node_client::MemoryNodeClient;
use tonic::Code;
use tonic::transport::Channel;

// The data-plane tests use the rest of it.
#[allow(dead_code)]
mod memnode_child;

async fn channel(memnode: &Memnode) -> Channel {
    connect(
        &format!("http://{}", memnode.addr),
        &ConnectOptions::default(),
    )
    .await
    .unwrap()
}

async fn client(memnode: &Memnode) -> MemoryNodeClient<AuthenticatedChannel> {
    let token = ClusterToken::new(TOKEN).unwrap();
    MemoryNodeClient::new(authenticated(channel(memnode).await, token))
}

async fn register(
    client: &mut MemoryNodeClient<AuthenticatedChannel>,
    name: &str,
) -> pb::RegisterResponse {
    client
        .register(pb::RegisterRequest {
            compute_node: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn allocate(
    client: &mut MemoryNodeClient<AuthenticatedChannel>,
    lease: u64,
    bytes: u64,
) -> Result<pb::Region, tonic::Status> {
    let reply = client
        .allocate(pb::AllocateRequest { lease, bytes })
        .await?;
    Ok(reply.into_inner().region.unwrap())
}

async fn stats(client: &mut MemoryNodeClient<AuthenticatedChannel>) -> pb::StatsResponse {
    client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn pool(stats: &pb::StatsResponse) -> pb::PoolStats {
    stats.pool.unwrap()
}

#[tokio::test]
async fn calls_without_the_right_token_are_unauthenticated_and_change_nothing() {
    let memnode = Memnode::start(&["--pool-size", "4MiB"]);
    let mut good = client(&memnode).await;
    let lease = register(&mut good, "a").await.lease;
    let region = allocate(&mut good, lease, 10_000).await.unwrap();
    let before = stats(&mut good).await;

    let channel = channel(&memnode).await;
    let wrong = ClusterToken::new("o3-memnode-test-token-51c3").unwrap();
    let mut anonymous = MemoryNodeClient::new(channel.clone());
    let mut impostor = MemoryNodeClient::new(authenticated(channel, wrong));
    // A macro, not a loop: the two clients have different types.
    macro_rules! every_call_refused {
        ($client:expr) => {{
            let statuses = [
                $client
                    .register(pb::RegisterRequest {
                        compute_node: "intruder".into(),
                    })
                    .await
                    .map(drop),
                $client
                    .heartbeat(pb::HeartbeatRequest { lease })
                    .await
                    .map(drop),
                $client
                    .allocate(pb::AllocateRequest { lease, bytes: 4096 })
                    .await
                    .map(drop),
                $client
                    .release(pb::ReleaseRequest {
                        lease,
                        region: Some(region),
                    })
                    .await
                    .map(drop),
                $client
                    .publish(pb::PublishRequest {
                        lease,
                        region: Some(region),
                        image: Some(pb::ImageMeta::default()),
                    })
                    .await
                    .map(drop),
                $client.stats(pb::StatsRequest {}).await.map(drop),
            ];
            for status in statuses {
                let status = status.unwrap_err();
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            }
        }};
    }
    every_call_refused!(anonymous);
    every_call_refused!(impostor);
    let after = stats(&mut good).await;
    assert_eq!(after.pool, before.pool);
    assert_eq!(after.owners.len(), 1);
    assert_eq!(after.owners[0].regions, 1);
}

#[tokio::test]
async fn allocations_show_in_stats_and_releases_free_them() {
    let memnode = Memnode::start(&["--pool-size", "4MiB", "--lease-ttl", "1h"]);
    let mut client = client(&memnode).await;
    let empty = stats(&mut client).await;
    assert_eq!(pool(&empty).capacity, 4 << 20);
    assert_eq!(pool(&empty).used, 0);
    assert!(empty.owners.is_empty());

    let a = register(&mut client, "compute-a").await;
    assert_eq!(a.lease_ttl_ms, 3_600_000);
    let first = allocate(&mut client, a.lease, 10_000).await.unwrap();
    let second = allocate(&mut client, a.lease, 4096).await.unwrap();
    assert_eq!(first.len, 10_000);
    let held = stats(&mut client).await;
    assert_eq!(pool(&held).used, 12_288 + 4096);
    assert_eq!(pool(&held).free, (4 << 20) - 16_384);
    assert_eq!(held.owners.len(), 1);
    let owner = &held.owners[0];
    assert_eq!(
        (owner.owner, owner.compute_node.as_str(), owner.regions),
        (a.owner, "compute-a", 2)
    );
    assert!(owner.lease_expires_in_ms > 3_500_000);

    for region in [first, second] {
        let reply = client
            .release(pb::ReleaseRequest {
                lease: a.lease,
                region: Some(region),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!reply.unpublished);
    }
    let released = stats(&mut client).await;
    assert_eq!(pool(&released).used, 0);
    assert_eq!(released.owners[0].regions, 0);
    let again = client
        .release(pb::ReleaseRequest {
            lease: a.lease,
            region: Some(first),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
}

#[tokio::test]
async fn another_owner_cannot_release_a_region_nor_a_forged_descriptor() {
    let memnode = Memnode::start(&["--pool-size", "4MiB"]);
    let mut client = client(&memnode).await;
    let a = register(&mut client, "a").await;
    let b = register(&mut client, "b").await;
    assert_ne!(a.owner, b.owner);
    let region = allocate(&mut client, a.lease, 8192).await.unwrap();

    let stolen = client
        .release(pb::ReleaseRequest {
            lease: b.lease,
            region: Some(region),
        })
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), Code::PermissionDenied, "{stolen:?}");
    let forged = pb::Region {
        key: region.key ^ 1,
        ..region
    };
    let status = client
        .release(pb::ReleaseRequest {
            lease: a.lease,
            region: Some(forged),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let after = stats(&mut client).await;
    assert_eq!(pool(&after).used, 8192);
    let owned: Vec<_> = after.owners.iter().map(|o| (o.owner, o.regions)).collect();
    assert_eq!(owned, [(a.owner, 1), (b.owner, 0)]);
    client
        .release(pb::ReleaseRequest {
            lease: a.lease,
            region: Some(region),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn refusals_carry_their_reason() {
    let memnode = Memnode::start(&["--pool-size", "1MiB"]);
    let mut client = client(&memnode).await;
    let a = register(&mut client, "a").await;

    allocate(&mut client, a.lease, 600 << 10).await.unwrap();
    let exhausted = allocate(&mut client, a.lease, 600 << 10).await.unwrap_err();
    assert_eq!(exhausted.code(), Code::ResourceExhausted, "{exhausted:?}");
    let largest_free = (1u64 << 20) - (600 << 10);
    assert!(
        exhausted.message().contains(&largest_free.to_string()),
        "{exhausted:?}"
    );
    let empty = allocate(&mut client, a.lease, 0).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");

    // Nothing was written into the region: its zeroes are not an image.
    let region = allocate(&mut client, a.lease, 4096).await.unwrap();
    let garbage = client
        .publish(pb::PublishRequest {
            lease: a.lease,
            region: Some(region),
            image: Some(pb::ImageMeta {
                shard: 0,
                serial: 1,
                entries: 1,
                largest_seq: 1,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    assert!(garbage.message().starts_with("refused"), "{garbage:?}");
    assert_eq!(stats(&mut client).await.published_images, 0);

    let unknown = allocate(&mut client, a.lease ^ 1, 4096).await.unwrap_err();
    assert_eq!(unknown.code(), Code::FailedPrecondition, "{unknown:?}");
    assert!(unknown.message().contains("register"), "{unknown:?}");
}

/// Polls stats until `done` holds, for at most [`WAIT`].
async fn stats_until(
    client: &mut MemoryNodeClient<AuthenticatedChannel>,
    done: impl Fn(&pb::StatsResponse) -> bool,
    heartbeat: Option<u64>,
) -> pb::StatsResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(lease) = heartbeat {
            client
                .heartbeat(pb::HeartbeatRequest { lease })
                .await
                .unwrap();
        }
        let current = stats(client).await;
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "stats never got there: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_expired_lease_frees_its_regions_and_must_register_again() {
    let memnode = Memnode::start(&["--pool-size", "4MiB", "--lease-ttl", "1s"]);
    let mut client = client(&memnode).await;
    let silent = register(&mut client, "silent").await;
    let alive = register(&mut client, "alive").await;
    allocate(&mut client, silent.lease, 100_000).await.unwrap();
    allocate(&mut client, silent.lease, 4096).await.unwrap();
    allocate(&mut client, alive.lease, 4096).await.unwrap();
    assert_eq!(pool(&stats(&mut client).await).used, 102_400 + 2 * 4096);

    // Only `alive` heartbeats; the reaper frees `silent`'s regions.
    let reclaimed = stats_until(
        &mut client,
        |s| s.owners.iter().all(|o| o.owner != silent.owner),
        Some(alive.lease),
    )
    .await;
    assert_eq!(pool(&reclaimed).used, 4096);
    let owned: Vec<_> = reclaimed
        .owners
        .iter()
        .map(|o| (o.owner, o.regions))
        .collect();
    assert_eq!(owned, [(alive.owner, 1)]);

    let refused = allocate(&mut client, silent.lease, 4096).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("expired") && refused.message().contains("register again"),
        "{refused:?}"
    );
    let heartbeat = client
        .heartbeat(pb::HeartbeatRequest {
            lease: silent.lease,
        })
        .await
        .unwrap_err();
    assert_eq!(heartbeat.code(), Code::FailedPrecondition, "{heartbeat:?}");

    let again = register(&mut client, "silent").await;
    assert!(again.owner != silent.owner && again.owner != alive.owner);
    allocate(&mut client, again.lease, 4096).await.unwrap();
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_node_with_exit_status_zero() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut memnode = Memnode::start(&["--pool-size", "1MiB", "--shutdown-grace", "1s"]);
        let mut client = client(&memnode).await;
        register(&mut client, "a").await;
        memnode.signal(signal);
        let status = memnode.wait_exit();
        assert!(status.success(), "signal {signal}: {status:?}");
    }
}

#[tokio::test]
async fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("memnode.toml");
    std::fs::write(
        &config,
        "pool_size = \"64MiB\"\nlease_ttl = \"2s\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let memnode = Memnode::start(&["--config", config.to_str().unwrap(), "--pool-size", "2MiB"]);
    let mut client = client(&memnode).await;
    assert_eq!(pool(&stats(&mut client).await).capacity, 2 << 20);
    assert_eq!(register(&mut client, "a").await.lease_ttl_ms, 2000);
}

/// Runs the binary with `args`; it must fail within [`WAIT`] with exactly one
/// line on stderr, which is returned.
fn one_line_failure(args: &[&str]) -> String {
    let mut child = binary()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child);
    let mut stderr = String::new();
    let mut stdout = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(!status.success(), "{args:?} succeeded");
    assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.starts_with("o3-memnode: "), "{args:?}: {stderr:?}");
    stderr
}

#[test]
fn bad_input_is_a_one_line_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let good_token = token_file(dir.path(), TOKEN);
    let good_token = good_token.to_str().unwrap();
    let empty_token = dir.path().join("empty");
    std::fs::write(&empty_token, "\n").unwrap();
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "pool_size = \"1MiB\"\ntransprot = \"tcp\"\n").unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "pool_size = \"1MiB\nlisten =\n").unwrap();
    // Held until the end of the test, so the port stays in use.
    let occupant = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = occupant.local_addr().unwrap().to_string();
    let local = "127.0.0.1:0";

    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--config",
                unknown_key.to_str().unwrap(),
            ],
            "transprot",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--config",
                broken.to_str().unwrap(),
            ],
            "line",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--config",
                "/nonexistent/memnode.toml",
            ],
            "cannot read config file",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--pool-size",
                "8GB",
            ],
            "pool_size",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--lease-ttl",
                "10",
            ],
            "lease_ttl",
        ),
        (
            &["--listen", "localhost", "--token-file", good_token],
            "listen",
        ),
        (&["--listen", local], "token"),
        (
            &["--listen", local, "--token-file", "/nonexistent/token"],
            "cannot read token file",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                empty_token.to_str().unwrap(),
            ],
            "empty",
        ),
        (
            &[
                "--listen",
                taken.as_str(),
                // Any free port for the data plane: the default (the
                // control port + 1) may be another test's.
                "--data-listen",
                "127.0.0.1:0",
                "--token-file",
                good_token,
                "--pool-size",
                "1MiB",
            ],
            "cannot listen",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--transport",
                "rdma",
            ],
            "transport",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--data-listen",
                "here",
            ],
            "data_listen",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--data-listen",
                taken.as_str(),
            ],
            "cannot start the tcp data plane",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--transport",
                "shm",
                "--shm-dir",
                "/nonexistent/shm",
            ],
            "cannot start the shm data plane",
        ),
        (
            &[
                "--listen",
                local,
                "--token-file",
                good_token,
                "--data-plane",
                "tcp",
            ],
            "--data-plane",
        ),
    ];
    for (args, needle) in cases {
        let error = one_line_failure(args);
        assert!(
            error.contains(needle),
            "{args:?}: {error:?} lacks {needle:?}"
        );
    }
}
