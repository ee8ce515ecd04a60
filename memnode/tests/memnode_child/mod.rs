//! `o3-memnode` children for process-level tests: each test starts its own
//! on loopback ephemeral ports (the bound addresses read from its stdout),
//! keeps the handle and stops exactly that child. Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use o3_memnode::client::{ImageStore, RemoteConfig, StoreConfig};
use o3_transport::control::ClusterToken;

/// The cluster token every child is started with.
pub const TOKEN: &str = "o3-memnode-test-token-51c2";
/// Bound on every wait for a child.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `o3-memnode`; killed (and reaped) on drop if still running.
#[derive(Debug)]
pub struct MemnodeChild {
    child: Child,
    /// The control plane's bound address.
    pub addr: SocketAddr,
    /// The data plane's transport and node, as announced on stdout.
    pub data_plane: (String, String),
    /// Holds the token file (and whatever else the test put there).
    pub dir: tempfile::TempDir,
}

/// The binary, with a clean environment for its logs.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_o3-memnode"));
    command.env_remove("RUST_LOG");
    command
}

/// Write `contents` as `dir/token`.
pub fn token_file(dir: &Path, contents: &str) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, contents).unwrap();
    path
}

impl MemnodeChild {
    /// Start the binary on `127.0.0.1:0` with the right token and `extra`
    /// flags.
    pub fn start(extra: &[&str]) -> MemnodeChild {
        MemnodeChild::start_in(tempfile::tempdir().unwrap(), "127.0.0.1:0", extra)
    }

    /// Start the binary listening on `listen`, with its token file in `dir`.
    pub fn start_in(dir: tempfile::TempDir, listen: &str, extra: &[&str]) -> MemnodeChild {
        let token = token_file(dir.path(), &format!("{TOKEN}\n"));
        let mut child = binary()
            .args(["--listen", listen, "--token-file"])
            .arg(&token)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, announced) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut next_line = || match announced.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("o3-memnode did not announce its addresses: {e}");
            }
        };
        let first = next_line();
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let second = next_line();
        let data_plane = second
            .strip_prefix("data plane ")
            .and_then(|rest| rest.split_once(' '))
            .map(|(kind, node)| (kind.to_owned(), node.to_owned()))
            .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
        MemnodeChild {
            child,
            addr,
            data_plane,
            dir,
        }
    }

    /// Send `signal` to the child.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; it is not yet reaped
        // (only `wait_exit`/`kill`/drop reap it), so the pid is not reused.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// How a compute node named `name` reaches this child.
    pub fn remote_config(&self, name: &str, op_timeout: Duration) -> RemoteConfig {
        RemoteConfig {
            control: self.addr.to_string(),
            token: ClusterToken::new(TOKEN).unwrap(),
            compute_node: name.to_owned(),
            link: None,
            op_timeout,
        }
    }

    /// A compute node's store on this child, registered.
    pub fn store(&self, name: &str) -> Arc<dyn ImageStore> {
        let config = self.remote_config(name, Duration::from_secs(5));
        o3_memnode::client::open(&StoreConfig::Remote(config)).unwrap()
    }

    /// SIGKILL the child and reap it. A killed shm node cannot remove its
    /// directory of region files; the test that started it does.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.wait_exit();
        self.remove_shm_files();
    }

    fn remove_shm_files(&self) {
        if self.data_plane.0 == "shm" {
            let _ = std::fs::remove_dir_all(&self.data_plane.1);
        }
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child)
    }
}

impl Drop for MemnodeChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.remove_shm_files();
    }
}

/// Waits for `child` to exit, killing it and failing after [`WAIT`].
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("o3-memnode did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
