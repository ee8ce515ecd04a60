//! The conformance suite on the `shm` backend; every region owner is a
//! separate `o3-transport-node` process sharing a directory of region files.
//! It runs twice: with parking waits (the default; mailbox wake-ups go
//! through doorbells) and with busy-polling ones on both ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use o3_transport::conformance::{Backend, Owner, ProcessOwner, suite_credentials};
use o3_transport::shm::ShmFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{ConnectOptions, Credentials, Fabric, FabricOptions, PollMode, Result};

struct Shm {
    // Declared before `root` so the requester's files go before the directory.
    requester: Arc<ShmFabric>,
    root: tempfile::TempDir,
    poll: PollMode,
}

fn shm() -> Shm {
    shm_with(PollMode::Park)
}

fn shm_with(poll: PollMode) -> Shm {
    // tmpfs when available, as in production; the tempdir is removed with
    // whatever a killed owner left behind.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let root = tempfile::Builder::new()
        .prefix("o3-shm-test")
        .tempdir_in(base)
        .expect("temp dir");
    let requester = Arc::new(
        ShmFabric::create_in(
            root.path(),
            no_requests(),
            FabricOptions {
                poll,
                ..FabricOptions::new(suite_credentials())
            },
        )
        .expect("requester"),
    );
    Shm {
        requester,
        root,
        poll,
    }
}

impl Backend for Shm {
    fn name(&self) -> String {
        "shm".into()
    }
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            op_timeout: Duration::from_secs(5),
            poll: self.poll,
            ..ConnectOptions::default()
        }
    }
    fn requester(&self) -> Arc<dyn Fabric> {
        self.requester.clone()
    }
    fn requester_with(&self, credentials: Credentials) -> Result<Arc<dyn Fabric>> {
        Ok(Arc::new(ShmFabric::create_in(
            self.root.path(),
            no_requests(),
            FabricOptions::new(credentials),
        )?))
    }
    fn start_owner(&self) -> Result<Box<dyn Owner>> {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_o3-transport-node"));
        let args = [
            "--backend".to_string(),
            "shm".to_string(),
            "--dir".to_string(),
            self.root.path().to_string_lossy().into_owned(),
            "--poll-spin-us".to_string(),
            self.poll.spin().as_micros().to_string(),
        ];
        Ok(Box::new(ProcessOwner::spawn(&bin, &args)?))
    }
}

o3_transport::conformance_tests!(shm());

mod polling {
    use super::*;

    o3_transport::conformance_tests!(shm_with(PollMode::spinning(Duration::from_micros(200))));
}
