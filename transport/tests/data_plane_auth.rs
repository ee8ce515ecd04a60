//! The data-plane handshake seen from the wire, against real `tcp` and
//! `shm` owners: peers that present no proof, replay a recorded one, skip
//! the handshake or try to re-introduce themselves after it are served
//! nothing, and the handler only ever sees proven identities. (A connector
//! with a wrong token is covered for every backend by the conformance
//! suite's `wrong_token_refused`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use o3_transport::conformance::suite_credentials;
use o3_transport::handshake::{Challenge, Connecting, Hello};
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::wire::{FrameKind, HEADER_LEN, Header};
use o3_transport::{Fabric, FabricOptions, NodeId, PeerIdentity};
use parking_lot::Mutex;

/// What the owner's handler saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    from: Mutex<Vec<PeerIdentity>>,
}

/// An owner (tcp or shm) whose handler echoes and records every request.
struct Owner {
    fabric: Arc<dyn Fabric>,
    seen: Arc<Seen>,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp,
    Shm,
}

fn owner(kind: Kind) -> Owner {
    let seen = Arc::new(Seen::default());
    let recorder = Arc::clone(&seen);
    let handler = Arc::new(move |from: &PeerIdentity, request: &[u8]| {
        recorder.requests.fetch_add(1, Ordering::SeqCst);
        recorder.from.lock().push(from.clone());
        Ok(request.to_vec())
    });
    let options = FabricOptions::new(suite_credentials());
    match kind {
        Kind::Tcp => Owner {
            fabric: Arc::new(TcpFabric::bind("127.0.0.1:0", None, handler, options).unwrap()),
            seen,
            _dir: None,
        },
        Kind::Shm => {
            let dir = tempfile::tempdir().unwrap();
            let fabric = ShmFabric::create_in(dir.path(), handler, options).unwrap();
            Owner {
                fabric: Arc::new(fabric),
                seen,
                _dir: Some(dir),
            }
        }
    }
}

trait Stream: Read + Write {}
impl Stream for TcpStream {}
impl Stream for UnixStream {}

/// A peer speaking raw frames.
struct Raw(Box<dyn Stream>);

impl Raw {
    fn dial(kind: Kind, owner: &NodeId) -> Raw {
        let bound = Some(Duration::from_secs(10));
        match kind {
            Kind::Tcp => {
                let s = TcpStream::connect(&owner.0).unwrap();
                s.set_read_timeout(bound).unwrap();
                Raw(Box::new(s))
            }
            Kind::Shm => {
                let s = UnixStream::connect(PathBuf::from(&owner.0).join("sock")).unwrap();
                s.set_read_timeout(bound).unwrap();
                Raw(Box::new(s))
            }
        }
    }

    fn send(&mut self, kind: FrameKind, id: u64, payload: &[u8]) {
        let header = Header {
            len: payload.len() as u64,
            id,
            kind,
            status: 0,
        };
        // The owner may already have closed; the next read tells.
        let _ = self.0.write_all(&header.encode());
        let _ = self.0.write_all(payload);
    }

    /// The next frame, or `None` once the owner closed the connection.
    fn recv(&mut self) -> Option<(FrameKind, Vec<u8>)> {
        let mut raw = [0u8; HEADER_LEN];
        self.0.read_exact(&mut raw).ok()?;
        let header = Header::decode(&raw, &NodeId::from("owner")).ok()?;
        let mut payload = vec![0u8; header.len as usize];
        self.0.read_exact(&mut payload).ok()?;
        Some((header.kind, payload))
    }

    /// A genuine handshake as `me`; returns the frames it sent.
    fn handshake(&mut self, me: &NodeId, owner: &NodeId) -> (Vec<u8>, Vec<u8>) {
        let (connecting, hello) = Connecting::start(me, owner).unwrap();
        let hello = hello.encode();
        self.send(FrameKind::Hello, 0, &hello);
        let (kind, payload) = self.recv().expect("challenge");
        assert_eq!(kind, FrameKind::Challenge);
        let challenge = Challenge::decode(&payload, owner).unwrap();
        let proof = connecting.answer(&suite_credentials(), &challenge).unwrap();
        self.send(FrameKind::Proof, 0, &proof.0);
        assert_eq!(self.recv().map(|f| f.0), Some(FrameKind::Welcome));
        (hello, proof.0.to_vec())
    }
}

fn each_backend(test: impl Fn(Kind)) {
    for kind in [Kind::Tcp, Kind::Shm] {
        test(kind);
    }
}

/// A request sent without any handshake, or after an old-style `Hello`
/// that carries a bare name, is never served: the owner closes.
#[test]
fn a_peer_without_a_proof_is_served_nothing() {
    each_backend(|kind| {
        let owner = owner(kind);
        let node = owner.fabric.node().clone();

        let mut bare = Raw::dial(kind, &node);
        bare.send(FrameKind::Request, 1, b"no hello at all");
        assert!(
            bare.recv().is_none(),
            "{kind:?}: answered a peer that never said hello"
        );

        let mut old = Raw::dial(kind, &node);
        old.send(FrameKind::Hello, 0, b"compute-7");
        old.send(FrameKind::Request, 1, b"trust me");
        assert!(old.recv().is_none(), "{kind:?}: answered an unproven name");

        // A hello, then a request instead of the proof.
        let mut skipper = Raw::dial(kind, &node);
        let (_, hello) = Connecting::start(&NodeId::from("skipper"), &node).unwrap();
        skipper.send(FrameKind::Hello, 0, &hello.encode());
        assert_eq!(skipper.recv().map(|f| f.0), Some(FrameKind::Challenge));
        skipper.send(FrameKind::Request, 1, b"skip the proof");
        assert!(
            skipper.recv().is_none(),
            "{kind:?}: served before the proof"
        );

        assert_eq!(owner.seen.requests.load(Ordering::SeqCst), 0, "{kind:?}");
    });
}

/// A proof recorded from a genuine handshake does not open a second
/// connection: the owner's fresh nonce makes it worthless.
#[test]
fn a_replayed_proof_is_refused() {
    each_backend(|kind| {
        let owner = owner(kind);
        let node = owner.fabric.node().clone();
        let alice = NodeId::from("alice");
        let mut genuine = Raw::dial(kind, &node);
        let (hello, proof) = genuine.handshake(&alice, &node);

        let mut replay = Raw::dial(kind, &node);
        replay.send(FrameKind::Hello, 0, &hello);
        assert_eq!(replay.recv().map(|f| f.0), Some(FrameKind::Challenge));
        replay.send(FrameKind::Proof, 0, &proof);
        assert_eq!(
            replay.recv().map(|f| f.0),
            Some(FrameKind::Refused),
            "{kind:?}"
        );
        replay.send(FrameKind::Request, 1, b"as alice");
        assert!(
            replay.recv().is_none(),
            "{kind:?}: a refused connection stayed open"
        );
        assert_eq!(owner.seen.requests.load(Ordering::SeqCst), 0, "{kind:?}");

        // The genuine connection is served, under the proven name.
        genuine.send(FrameKind::Request, 9, b"ping");
        assert_eq!(
            genuine.recv(),
            Some((FrameKind::Response, b"ping".to_vec()))
        );
        assert_eq!(owner.seen.from.lock()[0].node, alice);
    });
}

/// Once proven, a connection's identity is fixed: a second `Hello` on it
/// ends the connection, and every request served came from the proven name.
#[test]
fn the_identity_cannot_change_after_the_handshake() {
    each_backend(|kind| {
        let owner = owner(kind);
        let node = owner.fabric.node().clone();
        let alice = NodeId::from("alice");
        let mut conn = Raw::dial(kind, &node);
        conn.handshake(&alice, &node);
        conn.send(FrameKind::Request, 1, b"first");
        assert_eq!(conn.recv(), Some((FrameKind::Response, b"first".to_vec())));
        let again = Hello {
            node: NodeId::from("bob"),
            nonce: [0; 32],
        };
        conn.send(FrameKind::Hello, 0, &again.encode());
        conn.send(FrameKind::Request, 2, b"as bob");
        assert!(
            conn.recv().is_none(),
            "{kind:?}: served after a second hello"
        );
        let from = owner.seen.from.lock();
        assert_eq!(from.len(), 1, "{kind:?}: {from:?}");
        assert_eq!(from[0].node, alice);
    });
}
