//! The conformance suite on the `rdma` backend (feature `rdma`).
//!
//! Needs an RDMA device: a NIC, or soft-RoCE set up by `ci/rxe.sh`. The
//! device is `$O3_RDMA_DEVICE`, else the first one listed. Without a device
//! the suite prints why it is skipped and passes, so the feature is still
//! built and its no-device path tested everywhere.
#![cfg(feature = "rdma")]

use std::sync::Arc;

use o3_transport::conformance::{Backend, Owner, run_all, suite_credentials};
use o3_transport::host::RegionHost;
use o3_transport::rdma::{DeviceChoice, RdmaFabric, RdmaOptions};
use o3_transport::verbs::no_requests;
use o3_transport::{Credentials, Error, Fabric, FabricOptions, NodeId, Result};

fn options() -> RdmaOptions {
    RdmaOptions {
        device: DeviceChoice {
            device: std::env::var("O3_RDMA_DEVICE")
                .ok()
                .filter(|d| !d.is_empty()),
            ..DeviceChoice::default()
        },
        ..RdmaOptions::default()
    }
}

struct Rdma {
    requester: Arc<RdmaFabric>,
}

/// An in-process owner on its own fabric (own listener, sessions and
/// queue pairs); killing it shuts the fabric down abruptly.
struct RdmaOwner(Arc<RdmaFabric>);

impl Owner for RdmaOwner {
    fn node(&self) -> NodeId {
        self.0.node().clone()
    }
    fn kill(&mut self) {
        self.0.shut_down();
    }
}

impl Backend for Rdma {
    fn name(&self) -> String {
        format!("rdma ({})", self.requester.device_name())
    }
    fn requester(&self) -> Arc<dyn Fabric> {
        self.requester.clone()
    }
    fn requester_with(&self, credentials: Credentials) -> Result<Arc<dyn Fabric>> {
        Ok(Arc::new(RdmaFabric::bind(
            "127.0.0.1:0",
            None,
            no_requests(),
            FabricOptions::new(credentials),
            options(),
        )?))
    }
    fn start_owner(&self) -> Result<Box<dyn Owner>> {
        let host = RegionHost::new();
        let fabric = Arc::new(RdmaFabric::bind(
            "127.0.0.1:0",
            None,
            host.clone(),
            FabricOptions::new(suite_credentials()),
            options(),
        )?);
        host.attach(fabric.clone())?;
        Ok(Box::new(RdmaOwner(fabric)))
    }
}

#[test]
fn conformance_rdma() {
    let requester = match RdmaFabric::bind(
        "127.0.0.1:0",
        None,
        no_requests(),
        FabricOptions::new(suite_credentials()),
        options(),
    ) {
        Err(Error::NoDevice { reason }) => {
            println!("rdma: skipped — no RDMA device ({reason})");
            return;
        }
        other => Arc::new(other.expect("rdma requester fabric")),
    };
    run_all(&Rdma { requester }).expect("rdma conformance");
}

#[test]
fn an_unknown_device_is_a_typed_error() {
    let options = RdmaOptions {
        device: DeviceChoice {
            device: Some("o3-no-such-device".into()),
            ..DeviceChoice::default()
        },
        ..RdmaOptions::default()
    };
    match RdmaFabric::bind(
        "127.0.0.1:0",
        None,
        no_requests(),
        FabricOptions::new(suite_credentials()),
        options,
    ) {
        Err(Error::NoDevice { reason }) => assert!(!reason.is_empty()),
        other => panic!("expected NoDevice, got {other:?}"),
    }
}
