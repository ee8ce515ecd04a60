//! The conformance suite on the `tcp` backend; every region owner is a
//! separate `o3-transport-node` process.

use std::path::PathBuf;
use std::sync::Arc;

use o3_transport::conformance::{Backend, Owner, ProcessOwner, suite_credentials};
use o3_transport::tcp::TcpFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{Credentials, Fabric, FabricOptions, Result};

struct Tcp {
    requester: Arc<TcpFabric>,
}

fn tcp() -> Tcp {
    Tcp {
        requester: Arc::new(
            TcpFabric::bind(
                "127.0.0.1:0",
                None,
                no_requests(),
                FabricOptions::new(suite_credentials()),
            )
            .expect("bind requester"),
        ),
    }
}

impl Backend for Tcp {
    fn name(&self) -> String {
        "tcp".into()
    }
    fn requester(&self) -> Arc<dyn Fabric> {
        self.requester.clone()
    }
    fn requester_with(&self, credentials: Credentials) -> Result<Arc<dyn Fabric>> {
        Ok(Arc::new(TcpFabric::bind(
            "127.0.0.1:0",
            None,
            no_requests(),
            FabricOptions::new(credentials),
        )?))
    }
    fn start_owner(&self) -> Result<Box<dyn Owner>> {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_o3-transport-node"));
        Ok(Box::new(ProcessOwner::spawn(
            &bin,
            &["--backend".into(), "tcp".into()],
        )?))
    }
}

o3_transport::conformance_tests!(tcp());
