//! `o3-csa` children for process-level tests: each test starts its own
//! scheduler on a loopback ephemeral port and its own agents, reads what
//! they announce on stdout, and kills exactly its children on drop. Every
//! wait is bounded; a child's stderr is kept for failure messages.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{TOKEN, WAIT};

/// The binary, with a clean environment for its logs.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_o3-csa"));
    command.env_remove("RUST_LOG");
    command
}

/// Writes the token to `dir/token`.
pub fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

/// A running `o3-csa` child; killed (and reaped) on drop.
#[derive(Debug)]
pub struct CsaChild {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// What it announced first (`listening on ...` / `agent ... registered as ...`).
    pub announced: String,
}

impl CsaChild {
    /// Starts `o3-csa ARGS` and waits for a stdout line starting with `prefix`.
    pub fn start(args: &[&str], prefix: &str) -> CsaChild {
        let mut child = binary()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut child = CsaChild {
            child,
            lines,
            stderr: Some(stderr),
            announced: String::new(),
        };
        child.announced = child.next_line(prefix);
        child
    }

    /// The next stdout line starting with `prefix`, within [`WAIT`].
    pub fn next_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("o3-csa printed no {prefix:?} line ({e})");
                }
            }
        }
    }

    /// A scheduler on `127.0.0.1:0` with `extra` flags; its address.
    pub fn scheduler(dir: &Path, extra: &[&str]) -> (CsaChild, String) {
        Self::scheduler_on(dir, "127.0.0.1:0", extra)
    }

    pub fn scheduler_on(dir: &Path, listen: &str, extra: &[&str]) -> (CsaChild, String) {
        let token = token_file(dir);
        let mut args = vec![
            "scheduler",
            "--listen",
            listen,
            "--token-file",
            token.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let child = CsaChild::start(&args, "listening on ");
        let addr = child
            .announced
            .trim_start_matches("listening on ")
            .to_owned();
        (child, addr)
    }

    /// An agent named `name` of the scheduler at `addr`.
    pub fn agent(dir: &Path, addr: &str, name: &str, extra: &[&str]) -> CsaChild {
        let token = token_file(dir);
        let mut args = vec![
            "agent",
            "--scheduler",
            addr,
            "--token-file",
            token.to_str().unwrap(),
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        CsaChild::start(&args, &format!("agent {name} registered as "))
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not yet reaped (only
        // `wait_exit` and drop reap it), so the pid is not reused.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the child to exit within [`WAIT`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("o3-csa did not exit within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the child wrote on stderr; kills it first.
    pub fn stderr(&mut self) -> String {
        self.kill();
        self.stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for CsaChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `o3-csa ARGS` to its end (bounded); its exit status and stderr.
pub fn run_to_end(args: &[&str]) -> (ExitStatus, String) {
    let mut child = binary()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("o3-csa {args:?} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}
