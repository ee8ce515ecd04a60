//! Running the built `o3-bench` binary from integration tests.

// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `o3-bench` with `args` (logging off) and collect its output.
pub fn o3_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_o3-bench"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run o3-bench")
}

/// Run `o3-bench` with `args`, assert that it succeeded and return stdout.
pub fn o3_bench_ok(args: &[&str]) -> String {
    success_stdout(&o3_bench(args))
}

/// Assert that a command succeeded (showing its output if not) and return
/// its stdout.
pub fn success_stdout(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Assert failure with exactly one stderr line containing every `needle`.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got: {stderr:?}"
    );
    for n in needles {
        assert!(stderr.contains(n), "stderr {stderr:?} lacks {n:?}");
    }
}

/// Parse the JSON report at `path`.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read report {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A child process a test started; killed and reaped when dropped, so a
/// failed assertion never leaves it running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `o3-bench args` command (logging off) with stdout and stderr piped.
pub fn o3_bench_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_o3-bench"));
    c.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Read `pipe` to its end on a thread, so the child never blocks on a full
/// pipe.
pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Run `o3-bench args` to completion; kill it and fail if it is still
/// running after `limit`.
pub fn o3_bench_within(args: &[&str], limit: Duration) -> Output {
    output_within(o3_bench_command(args), limit)
}

/// Run `cmd` (stdout and stderr piped) to completion; kill it and fail if
/// it is still running after `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = ChildGuard(cmd.spawn().expect("start the command"));
    let stdout = drain(child.0.stdout.take().expect("piped stdout"));
    let stderr = drain(child.0.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("poll the command") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
