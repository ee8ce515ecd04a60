//! The memory node's data plane: delegated `get` and `scan` served over
//! `o3-transport` two-sided calls ([`DataPlane`] is the fabric's
//! [`RequestHandler`]), next to the one-sided reads and writes that the
//! fabric itself serves on each region's registration.
//!
//! Requests and answers are [`crate::wire::Message`]s. Any holder of the cluster
//! token can open a data-plane connection, so the connection's identity
//! does not say whose images a request may search: each request carries
//! the lease secret the control plane handed out, and the owner of that
//! live lease is the one the lookup acts for. An unknown or expired lease
//! is refused as [`Refusal::Lease`] (an expired one also has its regions
//! reclaimed here, as on the control plane); bytes that do not decode, a
//! message that is not a request and a failed lookup are refused as
//! [`Refusal::Request`] with the reason. Nothing a peer sends ends in a
//! panic or an error of the fabric: every request gets a message back.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock, Weak};

use o3_transport::control::describe_error;
use o3_transport::{PeerIdentity, RequestHandler};

use crate::control::{ControlService, lease_owner};
use crate::lease::Leases;
use crate::node::MemoryNode;
use crate::wire::{Message, Refusal};

/// The `o3-transport` backend a data plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// In this process (the embedded memory node).
    Local,
    /// Shared-memory region files on this host.
    Shm,
    /// Any host.
    Tcp,
}

impl TransportKind {
    /// The name the control plane announces and flags use.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Local => "local",
            TransportKind::Shm => "shm",
            TransportKind::Tcp => "tcp",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TransportKind {
    type Err = String;

    fn from_str(name: &str) -> Result<TransportKind, String> {
        match name {
            "local" => Ok(TransportKind::Local),
            "shm" => Ok(TransportKind::Shm),
            "tcp" => Ok(TransportKind::Tcp),
            other => Err(format!(
                "unknown transport {other:?} (use shm, tcp or local)"
            )),
        }
    }
}

/// The request handler of a memory node's data-plane fabric.
///
/// It is created before the fabric (which needs a handler) and attached to
/// the node and its leases afterwards (the node's regions need the fabric);
/// until then every request is refused. It holds the node weakly: the
/// fabric keeps its handler alive, and the node keeps its fabric.
#[derive(Debug, Default)]
pub struct DataPlane {
    served: OnceLock<Served>,
}

#[derive(Debug)]
struct Served {
    node: Weak<MemoryNode>,
    leases: Arc<Leases>,
}

impl DataPlane {
    pub fn new() -> Arc<DataPlane> {
        Arc::new(DataPlane::default())
    }

    /// Serve `service`'s node with its leases from now on. A data plane
    /// serves one node: later calls change nothing and return false.
    pub fn attach(&self, service: &ControlService) -> bool {
        self.served
            .set(Served {
                node: Arc::downgrade(service.node()),
                leases: Arc::clone(service.leases()),
            })
            .is_ok()
    }

    /// The answer to the raw request `request`.
    pub fn answer(&self, request: &[u8]) -> Message {
        let refused = |kind, reason: String| Message::Refused { kind, reason };
        let Some(served) = self.served.get() else {
            return refused(Refusal::Request, "the data plane is not serving yet".into());
        };
        let Some(node) = served.node.upgrade() else {
            return refused(Refusal::Request, "the memory node has stopped".into());
        };
        let owner = |lease| lease_owner(&node, &served.leases, lease);
        match Message::decode(request) {
            Err(e) => refused(Refusal::Request, e.to_string()),
            Ok(Message::GetRequest { lease, request }) => match owner(lease) {
                Err(e) => refused(Refusal::Lease, e.to_string()),
                Ok(owner) => match node.get(owner, &request) {
                    Ok(response) => Message::GetResponse(response),
                    Err(e) => refused(Refusal::Request, describe_error(&e)),
                },
            },
            Ok(Message::ScanRequest { lease, request }) => match owner(lease) {
                Err(e) => refused(Refusal::Lease, e.to_string()),
                Ok(owner) => match node.scan(owner, &request) {
                    Ok(response) => Message::ScanResponse(response),
                    Err(e) => refused(Refusal::Request, describe_error(&e)),
                },
            },
            Ok(Message::GetResponse(_) | Message::ScanResponse(_) | Message::Refused { .. }) => {
                refused(Refusal::Request, "not a request".into())
            }
        }
    }
}

impl RequestHandler for DataPlane {
    fn handle(&self, from: &PeerIdentity, request: &[u8]) -> Result<Vec<u8>, String> {
        let answer = self.answer(request);
        if let Message::Refused { kind, reason } = &answer {
            tracing::debug!(peer = %from, ?kind, reason, "data-plane request refused");
        }
        Ok(answer.encode())
    }

    /// Gets run inline on the connection's receiving thread: a point
    /// lookup is a few skiplist searches, and a thread hand-off each way
    /// would cost more than the lookup. (The first get on an image waits
    /// for its structure check, once.) Scans may run long: they go to a
    /// worker.
    fn is_quick(&self, request: &[u8]) -> bool {
        crate::wire::is_get_request(request)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lease::LeaseSecret;
    use crate::lookup::{Found, GetRequest, KeyLookup};

    fn served() -> (Arc<DataPlane>, ControlService) {
        let node = Arc::new(MemoryNode::with_capacity(1 << 20).unwrap());
        let service = ControlService::new(node, Duration::from_secs(3600));
        let plane = DataPlane::new();
        assert!(plane.attach(&service));
        assert!(!plane.attach(&service));
        (plane, service)
    }

    fn refusal(message: Message) -> (Refusal, String) {
        match message {
            Message::Refused { kind, reason } => (kind, reason),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_get_acts_for_the_owner_of_the_lease_it_carries() {
        let (plane, service) = served();
        let node = service.node();
        let (owner, lease) = service.leases().register("a", std::time::Instant::now());
        let (_, id) = crate::node::publish_one_entry(node, owner, 4);
        let request = GetRequest {
            lookups: vec![KeyLookup {
                key: b"k".to_vec(),
                snapshot: 9,
                images: vec![id],
            }],
        };
        let ask = |lease| {
            plane.answer(
                &Message::GetRequest {
                    lease,
                    request: request.clone(),
                }
                .encode(),
            )
        };
        let Message::GetResponse(response) = ask(lease) else {
            panic!("owner's get refused");
        };
        assert!(matches!(
            &response.answers[0][0],
            Found::Value { value, sequence: 4, .. } if value == b"v"
        ));
        // Another owner's lease does not reach the image.
        let (_, other) = service.leases().register("b", std::time::Instant::now());
        let (kind, reason) = refusal(ask(other));
        assert_eq!(kind, Refusal::Request);
        assert!(reason.contains("no published"), "{reason}");
        // An unknown lease is a lease refusal.
        let (kind, _) = refusal(ask(LeaseSecret(lease.0 ^ other.0 ^ 1)));
        assert_eq!(kind, Refusal::Lease);
    }

    #[test]
    fn garbage_and_answers_are_refused_not_served() {
        let (plane, _service) = served();
        for garbage in [
            &[][..],
            &[1],
            &[1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[9, 9, 9],
        ] {
            assert_eq!(refusal(plane.answer(garbage)).0, Refusal::Request);
        }
        let answer = Message::GetResponse(Default::default()).encode();
        assert_eq!(refusal(plane.answer(&answer)).0, Refusal::Request);
        let unattached = DataPlane::new();
        assert_eq!(refusal(unattached.answer(&answer)).0, Refusal::Request);
    }
}
