//! Ready-made owners for the suite: in-process `local` nodes and
//! `o3-transport-node` child processes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Backend, Owner};
use crate::error::{Error, Result};
use crate::host::RegionHost;
use crate::local::{LocalFabric, LocalNetwork};
use crate::verbs::{Fabric, NodeId, no_requests};

/// The `local` backend: owners are nodes of the requester's network.
#[derive(Debug)]
pub struct LocalBackend {
    network: Arc<LocalNetwork>,
    requester: Arc<LocalFabric>,
}

impl LocalBackend {
    pub fn new() -> Result<Self> {
        let network = LocalNetwork::new();
        let requester = Arc::new(network.node("requester", no_requests())?);
        Ok(LocalBackend { network, requester })
    }
}

struct LocalOwner(LocalFabric);

impl Owner for LocalOwner {
    fn node(&self) -> NodeId {
        self.0.node().clone()
    }
    fn kill(&mut self) {
        self.0.shut_down();
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> String {
        "local".into()
    }
    fn requester(&self) -> Arc<dyn Fabric> {
        Arc::clone(&self.requester) as Arc<dyn Fabric>
    }
    fn start_owner(&self) -> Result<Box<dyn Owner>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let host = RegionHost::new();
        let fabric = self.network.node(&format!("owner-{n}"), host.clone())?;
        host.attach(Arc::new(fabric.clone()))?;
        Ok(Box::new(LocalOwner(fabric)))
    }
}

/// A region owner in a child process (`o3-transport-node`), which prints
/// `node <id>` on its first line and exits when its stdin closes.
#[derive(Debug)]
pub struct ProcessOwner {
    child: Child,
    node: NodeId,
}

impl ProcessOwner {
    pub fn spawn(program: &PathBuf, args: &[String]) -> Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("spawn {}", program.display()), e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::InvalidArgument("child has no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| Error::io("read node id from child", e))?;
        let Some(node) = line.trim().strip_prefix("node ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::InvalidArgument(format!(
                "{} printed {line:?} instead of its node id",
                program.display()
            )));
        };
        Ok(ProcessOwner {
            node: NodeId(node.to_string()),
            child,
        })
    }
}

impl Owner for ProcessOwner {
    fn node(&self) -> NodeId {
        self.node.clone()
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessOwner {
    /// Close the child's stdin so it exits cleanly (removing its shm files),
    /// and kill it only if it does not.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
    }
}
