//! The conformance suite: one set of checks every backend must pass, written
//! once and instantiated per backend (`tests/conformance_*.rs`) through
//! [`crate::conformance_tests!`] or [`run_all`].
//!
//! A backend supplies a requester fabric, a way to make more requesters with
//! given credentials, and a way to start a region owner (a
//! [`RegionHost`](crate::host::RegionHost), in-process for `local`, an
//! `o3-transport-node` child process for `shm` and `tcp`) and to kill it.
//! Every node of a suite run proves itself with [`suite_credentials`].
//! Checks use `assert!` so that a failure names the backend, the case and
//! the values; transport errors that should not happen are returned.

mod access;
mod authentication;
mod concurrency;
mod owners;

pub use access::access_flags;
pub use authentication::{identity_is_proven, wrong_token_refused};
pub use concurrency::concurrent_requests;
pub use owners::{LocalBackend, ProcessOwner};

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::access::RegionAccess;
use crate::control::ClusterToken;
use crate::error::{Error, Result};
use crate::host::{HostCommand, host_command, host_register};
use crate::identity::Credentials;
use crate::verbs::{
    Completion, ConnectOptions, Connection, Fabric, NodeId, RegionDesc, WorkRequest,
};

/// The cluster token of this process's suite runs: random per process (it
/// guards test nodes only), handed to child owners in [`TOKEN_ENV`].
pub fn suite_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let nonce = crate::handshake::fresh_nonce()
            .unwrap_or_else(|_| [crate::registry::random_key() as u8; 32]);
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        format!("o3-suite-{hex}")
    })
}

/// The environment variable that carries the cluster token to
/// `o3-transport-node` (not its command line, which other users can read).
pub const TOKEN_ENV: &str = "O3_CLUSTER_TOKEN";

/// The credentials every node of a suite run proves itself with.
pub fn suite_credentials() -> Credentials {
    match ClusterToken::new(suite_token()) {
        Ok(token) => Credentials::ClusterToken(token),
        // The generated token is visible ASCII by construction.
        Err(e) => unreachable!("generated suite token rejected: {e}"),
    }
}

/// A backend under test.
pub trait Backend: Send + Sync {
    fn name(&self) -> String;
    /// The fabric the suite's requests start from.
    fn requester(&self) -> Arc<dyn Fabric>;
    /// A new requester node (its own id) proving itself with `credentials`.
    fn requester_with(&self, credentials: Credentials) -> Result<Arc<dyn Fabric>>;
    /// Start a fresh region owner.
    fn start_owner(&self) -> Result<Box<dyn Owner>>;
    /// Options for the suite's connections.
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            op_timeout: Duration::from_secs(5),
            ..ConnectOptions::default()
        }
    }
}

/// A running region owner.
pub trait Owner: Send {
    fn node(&self) -> NodeId;
    /// Make the owner die abruptly (kill the process, take the node down).
    fn kill(&mut self);
    /// The owner's own handle on one of its regions, when the owner lives
    /// in this process.
    fn region(&self, _region: u64) -> Option<crate::region::LocalRegion> {
        None
    }
    /// CPU time the owner has used, when it runs in another process
    /// (an in-process owner's time is the caller's own).
    fn cpu_time(&self) -> Option<Duration> {
        None
    }
}

/// A conformance case.
pub type Case = fn(&dyn Backend) -> Result<()>;

/// Every case, by name, in the order [`run_all`] runs them.
pub const CASES: &[(&str, Case)] = &[
    ("registration", registration),
    ("write_read", write_read),
    ("boundaries", boundaries),
    ("rejected_accesses", rejected_accesses),
    ("batches", batches),
    ("concurrent_atomics", concurrent_atomics),
    ("two_sided_ordering", two_sided_ordering),
    ("pipelined_calls", pipelined_calls),
    ("large_transfer", large_transfer),
    ("timeout", timeout),
    ("peer_death", peer_death),
    ("wrong_token_refused", wrong_token_refused),
    ("identity_is_proven", identity_is_proven),
    ("access_flags", access_flags),
    ("concurrent_requests", concurrent_requests),
];

/// Run every case, printing one line per case.
pub fn run_all(backend: &dyn Backend) -> Result<()> {
    for (name, case) in CASES {
        let started = Instant::now();
        case(backend)?;
        println!("{}: {name} ok ({:?})", backend.name(), started.elapsed());
    }
    Ok(())
}

/// One `#[test]` per conformance case for the backend `$backend` builds.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@cases $backend; registration, write_read, boundaries,
            rejected_accesses, batches, concurrent_atomics, two_sided_ordering,
            pipelined_calls, large_transfer, timeout, peer_death, wrong_token_refused,
            identity_is_proven, access_flags, concurrent_requests);
    };
    (@cases $backend:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let backend = $backend;
                if let Err(e) = $crate::conformance::$case(&backend) {
                    panic!("{}: {}: {e}", $crate::conformance::Backend::name(&backend), stringify!($case));
                }
            }
        )*
    };
}

/// An owner, a connection to it, and the suite's options.
struct Session {
    owner: Box<dyn Owner>,
    conn: Arc<dyn Connection>,
}

fn open(backend: &dyn Backend) -> Result<Session> {
    let owner = backend.start_owner()?;
    let conn = backend
        .requester()
        .connect(&owner.node(), &backend.options())?;
    Ok(Session { owner, conn })
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn read_all(conn: &dyn Connection, desc: &RegionDesc) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; desc.len as usize];
    conn.read(desc, 0, &mut buf)?;
    Ok(buf)
}

/// Registration and deregistration, remote (through the host) and local.
pub fn registration(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let a = host_register(&*s.conn, 4096)?;
    let b = host_register(&*s.conn, 4096)?;
    assert_ne!(a.region, b.region, "region ids are distinct");
    assert_eq!(a.node, s.owner.node());
    s.conn.write(&a, 0, b"registered")?;
    host_command(&*s.conn, &HostCommand::Deregister { desc: a.clone() })?;
    let gone = s.conn.write(&a, 0, b"x");
    assert!(
        matches!(gone, Err(Error::RegionGone { .. })),
        "write after deregistration: {gone:?}"
    );
    let mut buf = [0u8; 4];
    let gone = s.conn.read(&a, 0, &mut buf);
    assert!(matches!(gone, Err(Error::RegionGone { .. })), "{gone:?}");
    s.conn.write(&b, 0, b"still here")?;

    let requester = backend.requester();
    let local = requester.register(64, RegionAccess::READ_WRITE)?;
    local.write(8, b"local")?;
    let mut out = [0u8; 5];
    local.read(8, &mut out)?;
    assert_eq!(&out, b"local");
    requester.deregister(local.desc())?;
    let twice = requester.deregister(local.desc());
    assert!(
        matches!(twice, Err(Error::RegionGone { .. })),
        "second deregistration: {twice:?}"
    );
    Ok(())
}

/// Writes are read back exactly, at any offset and length.
pub fn write_read(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let desc = host_register(&*s.conn, 64 << 10)?;
    let zeros = read_all(&*s.conn, &desc)?;
    assert!(zeros.iter().all(|&b| b == 0), "new regions are zeroed");
    for (offset, len, seed) in [
        (0u64, 1usize, 1u64),
        (1, 7, 2),
        (100, 4096, 3),
        (5000, 60000, 4),
    ] {
        let data = pattern(len, seed);
        s.conn.write(&desc, offset, &data)?;
        let mut back = vec![0u8; len];
        s.conn.read(&desc, offset, &mut back)?;
        assert_eq!(back, data, "read back at offset {offset}, length {len}");
    }
    s.conn.write(&desc, 10, &[])?;
    s.conn.read(&desc, 10, &mut [])?;
    Ok(())
}

/// First byte, last byte and the exact end are accessible; one past is not.
pub fn boundaries(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let len = 1000u64;
    let desc = host_register(&*s.conn, len)?;
    s.conn.write(&desc, 0, &[0xA1])?;
    s.conn.write(&desc, len - 1, &[0xB2])?;
    s.conn.write(&desc, len - 10, &pattern(9, 5))?;
    s.conn.write(&desc, len, &[])?;
    let mut one = [0u8; 1];
    s.conn.read(&desc, 0, &mut one)?;
    assert_eq!(one, [0xA1]);
    s.conn.read(&desc, len - 1, &mut one)?;
    assert_eq!(one, [0xB2]);
    s.conn.fetch_add(&desc, len - 8, 1)?;
    for (offset, n) in [(len, 1usize), (len - 1, 2), (u64::MAX, 1)] {
        let r = s.conn.write(&desc, offset, &vec![0u8; n]);
        assert!(
            matches!(r, Err(Error::OutOfBounds { .. })),
            "write at {offset}+{n}: {r:?}"
        );
        let r = s.conn.read(&desc, offset, &mut vec![0u8; n]);
        assert!(matches!(r, Err(Error::OutOfBounds { .. })), "read: {r:?}");
    }
    let r = s.conn.fetch_add(&desc, len, 1);
    assert!(matches!(r, Err(Error::OutOfBounds { .. })), "{r:?}");
    Ok(())
}

/// Out-of-bounds, wrong-key, misaligned, wrong-node and stale accesses are
/// rejected with their typed error and leave memory unchanged.
pub fn rejected_accesses(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let desc = host_register(&*s.conn, 4096)?;
    let before = pattern(4096, 9);
    s.conn.write(&desc, 0, &before)?;
    let c = &*s.conn;

    let wrong_key = RegionDesc {
        rkey: desc.rkey ^ 0x5555,
        ..desc.clone()
    };
    let forged_len = RegionDesc {
        len: desc.len * 2,
        ..desc.clone()
    };
    let other_node = RegionDesc {
        node: NodeId("somewhere-else".into()),
        ..desc.clone()
    };
    type Expected = fn(&Error) -> bool;
    let outcomes: Vec<(&str, Result<()>, Expected)> = vec![
        ("out of bounds", c.write(&desc, 4090, &[1; 8]), |e| {
            matches!(e, Error::OutOfBounds { .. })
        }),
        ("forged length", c.write(&forged_len, 4090, &[1; 8]), |e| {
            matches!(e, Error::OutOfBounds { .. })
        }),
        ("wrong key write", c.write(&wrong_key, 0, &[1; 8]), |e| {
            matches!(e, Error::BadKey { .. })
        }),
        ("wrong key read", c.read(&wrong_key, 0, &mut [0; 8]), |e| {
            matches!(e, Error::BadKey { .. })
        }),
        (
            "wrong key cas",
            c.compare_and_swap(&wrong_key, 0, 0, 1).map(|_| ()),
            |e| matches!(e, Error::BadKey { .. }),
        ),
        (
            "wrong key add",
            c.fetch_add(&wrong_key, 0, 1).map(|_| ()),
            |e| matches!(e, Error::BadKey { .. }),
        ),
        ("misaligned", c.fetch_add(&desc, 3, 1).map(|_| ()), |e| {
            matches!(e, Error::Misaligned { .. })
        }),
        ("wrong node", c.write(&other_node, 0, &[1; 8]), |e| {
            matches!(e, Error::WrongNode { .. })
        }),
    ];
    for (what, outcome, expected) in outcomes {
        let as_expected = matches!(&outcome, Err(e) if expected(e));
        assert!(as_expected, "{what}: unexpected outcome {outcome:?}");
    }
    assert_eq!(
        read_all(c, &desc)?,
        before,
        "rejected accesses changed memory"
    );
    Ok(())
}

/// Batches complete in order, one completion each; the first failure
/// flushes the rest, which have no effect.
pub fn batches(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let desc = host_register(&*s.conn, 4096)?;
    let data = pattern(100, 11);
    let mut back = vec![0u8; 100];
    let results = s.conn.post(&mut [
        WorkRequest::Write {
            remote: &desc,
            offset: 8,
            data: &data,
        },
        WorkRequest::Read {
            remote: &desc,
            offset: 8,
            buf: &mut back,
        },
        WorkRequest::FetchAdd {
            remote: &desc,
            offset: 0,
            add: 5,
        },
        WorkRequest::CompareAndSwap {
            remote: &desc,
            offset: 0,
            expected: 5,
            new: 42,
        },
    ]);
    let results: Vec<Completion> = results.into_iter().collect::<Result<_>>()?;
    assert_eq!(
        results,
        vec![
            Completion::Write { len: 100 },
            Completion::Read { len: 100 },
            Completion::Atomic { old: 0 },
            Completion::Atomic { old: 5 },
        ]
    );
    assert_eq!(back, data, "a read sees the write posted before it");

    let forged = RegionDesc {
        len: 1 << 20,
        ..desc.clone()
    };
    let results = s.conn.post(&mut [
        WorkRequest::Write {
            remote: &desc,
            offset: 200,
            data: b"first",
        },
        WorkRequest::Write {
            remote: &forged,
            offset: 8192,
            data: b"out of bounds",
        },
        WorkRequest::Write {
            remote: &desc,
            offset: 300,
            data: b"flushed",
        },
        WorkRequest::Write {
            remote: &desc,
            offset: 5000,
            data: b"invalid on the requester side",
        },
    ]);
    assert!(
        matches!(results[0], Ok(Completion::Write { len: 5 })),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(Error::OutOfBounds { .. })),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(Error::Flushed { index: 2 })),
        "{results:?}"
    );
    assert!(
        matches!(results[3], Err(Error::Flushed { index: 3 })),
        "{results:?}"
    );
    let mut first = [0u8; 5];
    s.conn.read(&desc, 200, &mut first)?;
    assert_eq!(&first, b"first");
    let mut flushed = [0u8; 7];
    s.conn.read(&desc, 300, &mut flushed)?;
    assert_eq!(flushed, [0u8; 7], "a flushed write had an effect");
    Ok(())
}

/// N threads × M fetch-adds give exactly N·M; so does a CAS-based counter.
pub fn concurrent_atomics(backend: &dyn Backend) -> Result<()> {
    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 300;
    let s = open(backend)?;
    let desc = host_register(&*s.conn, 64)?;
    let requester = backend.requester();
    std::thread::scope(|scope| -> Result<()> {
        let mut workers = Vec::new();
        for t in 0..THREADS {
            // Half the threads share the session's connection, half open
            // their own: atomicity must hold across connections too.
            let own = if t % 2 == 0 {
                Some(requester.connect(&s.owner.node(), &backend.options())?)
            } else {
                None
            };
            let shared = Arc::clone(&s.conn);
            let desc = &desc;
            workers.push(scope.spawn(move || -> Result<()> {
                let conn = own.unwrap_or(shared);
                for _ in 0..INCREMENTS {
                    conn.fetch_add(desc, 0, 1)?;
                    let mut current = 0;
                    loop {
                        let seen = conn.compare_and_swap(desc, 8, current, current + 1)?;
                        if seen == current {
                            break;
                        }
                        current = seen;
                    }
                }
                Ok(())
            }));
        }
        for w in workers {
            w.join()
                .map_err(|_| Error::InvalidArgument("worker panicked".into()))??;
        }
        Ok(())
    })?;
    let mut words = [0u8; 16];
    s.conn.read(&desc, 0, &mut words)?;
    let add = u64::from_le_bytes(words[..8].try_into().unwrap_or_default());
    let cas = u64::from_le_bytes(words[8..].try_into().unwrap_or_default());
    assert_eq!(add, THREADS * INCREMENTS, "fetch_add counter");
    assert_eq!(cas, THREADS * INCREMENTS, "compare_and_swap counter");
    Ok(())
}

/// Many one-way messages in flight arrive complete and in order.
pub fn two_sided_ordering(backend: &dyn Backend) -> Result<()> {
    const MESSAGES: u32 = 2000;
    let s = open(backend)?;
    for i in 0..MESSAGES {
        let mut message = i.to_le_bytes().to_vec();
        message.extend(pattern((i % 300) as usize, u64::from(i)));
        s.conn.send(&message)?;
    }
    for i in 0..MESSAGES {
        let echoed = s.conn.recv()?;
        assert_eq!(
            echoed[..4],
            i.to_le_bytes(),
            "message {i} arrived out of order"
        );
        assert_eq!(echoed[4..], pattern((i % 300) as usize, u64::from(i)));
    }
    Ok(())
}

/// Many calls in flight on one connection, from one thread and from
/// several, each get their own response.
pub fn pipelined_calls(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let requests: Vec<Vec<u8>> = (0..500u32)
        .map(|i| {
            let mut r = vec![crate::host::ECHO];
            r.extend(i.to_le_bytes());
            r.extend(pattern((i % 700) as usize, u64::from(i)));
            r
        })
        .collect();
    let pending: Vec<_> = requests
        .iter()
        .map(|r| s.conn.start_call(r))
        .collect::<Result<_>>()?;
    for (request, call) in requests.iter().zip(pending) {
        assert_eq!(call.wait()?, request[1..], "pipelined response mismatch");
    }
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                let conn = &s.conn;
                scope.spawn(move || -> Result<()> {
                    for i in 0..100u32 {
                        let mut r = vec![crate::host::ECHO, t];
                        r.extend(i.to_le_bytes());
                        let pending = conn.start_call(&r)?;
                        assert_eq!(pending.wait()?, r[1..], "thread {t} call {i}");
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| Error::InvalidArgument("worker panicked".into()))??;
        }
        Ok(())
    })?;
    let failed = s.conn.call(&[0xEE]);
    assert!(matches!(failed, Err(Error::Remote { .. })), "{failed:?}");
    Ok(())
}

/// A 64 MiB write and read back, compared by checksum.
pub fn large_transfer(backend: &dyn Backend) -> Result<()> {
    const LEN: usize = 64 << 20;
    let s = open(backend)?;
    let desc = host_register(&*s.conn, LEN as u64)?;
    let data = pattern(LEN, 77);
    s.conn.write(&desc, 0, &data)?;
    let back = read_all(&*s.conn, &desc)?;
    assert_eq!(back.len(), LEN);
    assert_eq!(
        checksum(&back),
        checksum(&data),
        "64 MiB transfer corrupted"
    );
    Ok(())
}

/// A call the owner does not answer in time fails with `Timeout`, and the
/// connection stays usable.
pub fn timeout(backend: &dyn Backend) -> Result<()> {
    let owner = backend.start_owner()?;
    let options = ConnectOptions {
        op_timeout: Duration::from_millis(300),
        ..backend.options()
    };
    let conn = backend.requester().connect(&owner.node(), &options)?;
    let stalled = host_command(&*conn, &HostCommand::Stall { millis: 1500 });
    assert!(matches!(stalled, Err(Error::Timeout { .. })), "{stalled:?}");
    Ok(())
}

/// An owner that dies in the middle of a call yields an error (never a
/// hang), and later operations fail too.
pub fn peer_death(backend: &dyn Backend) -> Result<()> {
    let mut s = open(backend)?;
    let desc = host_register(&*s.conn, 4096)?;
    let conn = Arc::clone(&s.conn);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let outcome = host_command(&*conn, &HostCommand::Stall { millis: 60_000 });
        let _ = done_tx.send(outcome);
    });
    std::thread::sleep(Duration::from_millis(200));
    s.owner.kill();
    // A hang detector, not a timing assertion: the bound is far above the
    // operation timeout.
    let outcome = done_rx
        .recv_timeout(backend.options().op_timeout + Duration::from_secs(30))
        .map_err(|_| Error::InvalidArgument("call hung after the owner died".into()))?;
    assert!(
        matches!(outcome, Err(Error::PeerGone { .. } | Error::Timeout { .. })),
        "call to a dead owner: {outcome:?}"
    );
    let after = s.conn.write(&desc, 0, b"after death");
    assert!(after.is_err(), "one-sided write to a dead owner succeeded");
    Ok(())
}

/// FNV-1a over `data`.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
