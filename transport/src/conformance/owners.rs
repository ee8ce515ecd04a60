//! Ready-made owners for the suite: in-process `local` nodes and
//! `o3-transport-node` child processes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Backend, Owner, TOKEN_ENV, suite_credentials, suite_token};
use crate::error::{Error, Result};
use crate::host::RegionHost;
use crate::identity::Credentials;
use crate::local::{LocalFabric, LocalNetwork};
use crate::region::LocalRegion;
use crate::verbs::{ConnectOptions, Fabric, FabricOptions, NodeId, no_requests};

/// The `local` backend: owners are nodes of the requester's network.
#[derive(Debug)]
pub struct LocalBackend {
    network: Arc<LocalNetwork>,
    requester: Arc<LocalFabric>,
    options: FabricOptions,
}

impl LocalBackend {
    /// Nodes with the suite's credentials and default options.
    pub fn new() -> Result<Self> {
        Self::with_options(FabricOptions::new(suite_credentials()))
    }

    /// Nodes (requester and owners) with `options`; the suite's connections
    /// wait as `options.poll` says too.
    pub fn with_options(options: FabricOptions) -> Result<Self> {
        let network = LocalNetwork::new();
        let requester = Arc::new(network.node("requester", no_requests(), options.clone())?);
        Ok(LocalBackend {
            network,
            requester,
            options,
        })
    }
}

fn next_local_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{n}")
}

struct LocalOwner {
    fabric: LocalFabric,
    host: Arc<RegionHost>,
}

impl Owner for LocalOwner {
    fn node(&self) -> NodeId {
        self.fabric.node().clone()
    }
    fn kill(&mut self) {
        self.fabric.shut_down();
    }
    fn region(&self, region: u64) -> Option<LocalRegion> {
        self.host.region(region)
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> String {
        "local".into()
    }
    fn requester(&self) -> Arc<dyn Fabric> {
        Arc::clone(&self.requester) as Arc<dyn Fabric>
    }
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            op_timeout: Duration::from_secs(5),
            poll: self.options.poll,
            ..ConnectOptions::default()
        }
    }
    fn requester_with(&self, credentials: Credentials) -> Result<Arc<dyn Fabric>> {
        let options = FabricOptions {
            credentials,
            ..self.options.clone()
        };
        Ok(Arc::new(self.network.node(
            &next_local_name("requester"),
            no_requests(),
            options,
        )?))
    }
    fn start_owner(&self) -> Result<Box<dyn Owner>> {
        let host = RegionHost::new();
        let fabric = self.network.node(
            &next_local_name("owner"),
            host.clone(),
            self.options.clone(),
        )?;
        host.attach(Arc::new(fabric.clone()))?;
        Ok(Box::new(LocalOwner { fabric, host }))
    }
}

/// A region owner in a child process (`o3-transport-node`), which prints
/// `node <id>` on its first line and exits when its stdin closes. It gets
/// the suite's cluster token in its environment.
#[derive(Debug)]
pub struct ProcessOwner {
    child: Child,
    node: NodeId,
}

impl ProcessOwner {
    pub fn spawn(program: &PathBuf, args: &[String]) -> Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .env(TOKEN_ENV, suite_token())
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
        // A killed shm node (its id is its directory) cannot remove its
        // region files and socket; whoever killed it does.
        let dir = std::path::Path::new(&self.node.0);
        if dir.is_absolute() && dir.is_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    fn cpu_time(&self) -> Option<Duration> {
        process_cpu_time(self.child.id())
    }
}

/// User plus system CPU time of process `pid` (`/proc/<pid>/stat`, in
/// clock ticks).
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12
    // after the state field that follows the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
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
