//! Child processes of the experiments that run nodes as processes of their
//! own (`csa-compare`, `flush-compare`): starting them (optionally pinned
//! to a core), reading their announcement lines, and stopping exactly the
//! processes this command started, on every exit path.
//!
//! Every child is started with `PR_SET_PDEATHSIG`, so it receives SIGTERM
//! when this process dies, even by SIGKILL: a benchmark that is stopped
//! leaves no memory node or agent behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use o3_transport::control::ClusterToken;
use serde::Serialize;

use crate::error::{BenchError, Result};

/// How often a waiting loop looks at its children.
pub const POLL: Duration = Duration::from_millis(20);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A child process this command started; stopped (SIGTERM, then SIGKILL
/// after a grace) when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    done: bool,
}

impl ChildProcess {
    /// Start `command` as the child called `name` (for messages).
    pub fn spawn(name: &str, command: &mut Command) -> Result<ChildProcess> {
        let child = command
            .spawn()
            .map_err(|e| BenchError::InvalidArgument(format!("starting {name}: {e}")))?;
        Ok(ChildProcess {
            name: name.to_string(),
            child,
            done: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.done = true;
        }
    }

    /// SIGTERM, then SIGKILL if it is still there after the grace.
    pub fn stop(&mut self) {
        if self.done {
            return;
        }
        let signalled = i32::try_from(self.child.id())
            // SAFETY: kill(2) on our own child, not yet reaped.
            .map(|pid| unsafe { libc::kill(pid, libc::SIGTERM) } == 0)
            .unwrap_or(false);
        let deadline = Instant::now() + STOP_GRACE;
        while signalled && Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                self.done = true;
                return;
            }
            std::thread::sleep(POLL);
        }
        self.kill();
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let status = self
            .child
            .try_wait()
            .map_err(|e| BenchError::InvalidArgument(format!("waiting for {}: {e}", self.name)))?;
        if status.is_some() {
            self.done = true;
        }
        Ok(status)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How processes are placed on cores: this command's own node on core 0,
/// the children that stand for other machines on core 1.
#[derive(Debug, Clone, Serialize)]
pub struct Pinning {
    /// `taskset`, when pinning.
    #[serde(skip)]
    taskset: Option<PathBuf>,
    /// What was done, for the report.
    pub description: String,
}

impl Pinning {
    /// Pinning if `wanted`, the machine has two cores and `taskset` is
    /// installed; `layout` says which process goes where, for the report.
    pub fn detect(wanted: bool, layout: &str) -> Pinning {
        let unpinned = |why: &str| Pinning {
            taskset: None,
            description: format!("unpinned ({why})"),
        };
        if !wanted {
            return unpinned("--pin=false");
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 {
            return unpinned(&format!("{cores} core available; pinning needs 2"));
        }
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("taskset"))
                .find(|p| p.is_file())
        });
        match found {
            Some(taskset) => Pinning {
                taskset: Some(taskset),
                description: format!("{layout} (taskset -c; {cores} cores available)"),
            },
            None => unpinned("taskset not found in PATH"),
        }
    }

    pub fn pinned(&self) -> bool {
        self.taskset.is_some()
    }

    /// `program`, on `core` when pinning; it receives SIGTERM when this
    /// process dies.
    pub fn command(&self, core: u32, program: &Path) -> Command {
        let mut c = match &self.taskset {
            Some(taskset) => {
                let mut c = Command::new(taskset);
                c.arg("-c").arg(core.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and calls only
        // prctl(2), getppid(2) and _exit(2), which are async-signal-safe;
        // it allocates nothing. taskset execs the program in the same
        // process, and the death signal survives exec.
        unsafe {
            c.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // This process died before the prctl: nobody would stop
                // the child.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        c
    }

    /// Pin every thread of this process, and so every thread it starts
    /// later, to `core` (nothing when not pinning).
    pub fn pin_this_process(&self, core: usize) -> Result<()> {
        if !self.pinned() {
            return Ok(());
        }
        let failed =
            |m: String| BenchError::InvalidArgument(format!("pinning to core {core}: {m}"));
        let tasks = std::fs::read_dir("/proc/self/task")
            .map_err(|e| failed(format!("listing /proc/self/task: {e}")))?;
        for task in tasks {
            let task = task.map_err(|e| failed(format!("listing /proc/self/task: {e}")))?;
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and
            // sched_setaffinity get a valid set of the size they are told.
            let rc = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(core, &mut set);
                libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
            };
            // A thread that ended since the listing is not an error.
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(failed(format!("thread {tid}: {e}")));
                }
            }
        }
        Ok(())
    }
}

/// An `o3-csa scheduler` and its agents, children of this process on
/// core 1 (when pinning).
#[derive(Debug)]
pub struct ServiceChildren {
    /// The scheduler's address.
    pub address: String,
    // Dropped first: agents stop before their scheduler.
    pub agents: Vec<ChildProcess>,
    _scheduler: ChildProcess,
}

impl ServiceChildren {
    /// Start a scheduler on a free loopback port and `agents` agents
    /// (`agent-0`, ...) of `slots` slots each, with `agent_flags` added to
    /// every agent; their logs are `{dir}/{prefix}scheduler.log` and
    /// `{dir}/{prefix}agent-N.log`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        csa_bin: &Path,
        pinning: &Pinning,
        dir: &Path,
        prefix: &str,
        token_file: &Path,
        agents: usize,
        slots: u32,
        agent_flags: &[String],
    ) -> Result<ServiceChildren> {
        let mut command = pinning.command(1, csa_bin);
        command
            .args(["scheduler", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(token_file);
        let (scheduler, announced) = spawn_announcing(
            &format!("{prefix}o3-csa scheduler"),
            command,
            &dir.join(format!("{prefix}scheduler.log")),
            &["listening on "],
        )?;
        let mut service = ServiceChildren {
            address: announced.concat(),
            agents: Vec::with_capacity(agents),
            _scheduler: scheduler,
        };
        for i in 0..agents {
            let name = format!("agent-{i}");
            let mut command = pinning.command(1, csa_bin);
            command
                .args(["agent", "--scheduler", &service.address, "--token-file"])
                .arg(token_file)
                .args(["--name", &name, "--slots", &slots.to_string()])
                .args(agent_flags);
            let (agent, _) = spawn_announcing(
                &format!("{prefix}o3-csa {name}"),
                command,
                &dir.join(format!("{prefix}{name}.log")),
                &[&format!("agent {name} registered as ")],
            )?;
            service.agents.push(agent);
        }
        Ok(service)
    }
}

/// Spawn `command` (stdout piped, stderr to `log`) and read one line on
/// stdout per entry of `prefixes`, each of which must start with its
/// prefix; returns the child and the rest of each line. Later output is
/// drained so the child never blocks on it.
pub fn spawn_announcing(
    name: &str,
    mut command: Command,
    log: &Path,
    prefixes: &[&str],
) -> Result<(ChildProcess, Vec<String>)> {
    let stderr = std::fs::File::create(log).map_err(|e| BenchError::io(log, e))?;
    let mut process = ChildProcess::spawn(
        name,
        command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr),
    )?;
    let mut lines = process
        .child
        .stdout
        .take()
        .map(|stdout| BufReader::new(stdout).lines());
    let mut announced = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        let line = lines.as_mut().and_then(|l| l.next()).and_then(|l| l.ok());
        match line.as_deref().and_then(|l| l.strip_prefix(prefix)) {
            Some(rest) => announced.push(rest.to_string()),
            None => {
                return Err(BenchError::InvalidArgument(format!(
                    "{name} did not start (expected a line starting {prefix:?}, read {line:?}; {})",
                    last_line(log)
                )));
            }
        }
    }
    if let Some(rest) = lines {
        std::thread::spawn(move || rest.for_each(drop));
    }
    Ok((process, announced))
}

/// A fresh cluster token for this run's child processes (its secret
/// names the experiment, `what`), written to `dir/cluster-token` for the
/// children to read.
pub fn write_token(dir: &Path, what: &str) -> Result<(ClusterToken, PathBuf)> {
    let secret = format!("o3-bench-{what}-{:016x}", rand::random::<u64>());
    let token = ClusterToken::new(&secret)
        .map_err(|e| BenchError::InvalidArgument(format!("cluster token: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let file = dir.join("cluster-token");
    std::fs::write(&file, secret).map_err(|e| BenchError::io(&file, e))?;
    Ok((token, file))
}

/// The last non-empty line of a log, for an error message.
pub fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!("last line of {}: {}", log.display(), l.trim()),
        None => format!("{} is empty", log.display()),
    }
}

/// The binary `name` given by `flag`, or next to this executable.
pub fn sibling_binary(given: Option<&Path>, name: &str, flag: &str) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| BenchError::InvalidArgument(format!("locating o3-bench: {e}")))?
            .with_file_name(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::InvalidArgument(format!(
            "no {name} binary at {}: build it with `cargo build --release -p {name}` (or pass {flag} PATH)",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_line_is_read_and_a_wrong_one_names_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let pinning = Pinning::detect(false, "unused");
        assert!(!pinning.pinned());
        assert!(pinning.description.contains("--pin=false"));
        let mut sh = pinning.command(0, Path::new("/bin/sh"));
        sh.args([
            "-c",
            "echo 'listening on 1.2.3.4:5'; echo 'data plane tcp n1'; sleep 30",
        ]);
        let (mut child, lines) = spawn_announcing(
            "sh",
            sh,
            &dir.path().join("sh.log"),
            &["listening on ", "data plane "],
        )
        .unwrap();
        assert_eq!(lines, ["1.2.3.4:5", "tcp n1"]);
        assert!(child.try_wait().unwrap().is_none());
        child.stop();
        assert!(child.try_wait().unwrap().is_some());

        let mut sh = pinning.command(0, Path::new("/bin/sh"));
        sh.args(["-c", "echo 'something else'; echo oops >&2"]);
        let e = spawn_announcing("sh", sh, &dir.path().join("bad.log"), &["listening on "])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sh did not start"), "{e}");
        assert!(e.contains("\"listening on \""), "{e}");
    }

    #[test]
    fn a_missing_binary_names_the_flag_that_sets_it() {
        let e = sibling_binary(Some(Path::new("/nonexistent/o3-x")), "o3-x", "--x_bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no o3-x binary at /nonexistent/o3-x"), "{e}");
        assert!(e.contains("--x_bin PATH"), "{e}");
    }
}
