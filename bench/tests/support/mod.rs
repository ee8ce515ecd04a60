//! Running the built `o3-bench` binary from integration tests.

use std::path::Path;
use std::process::{Command, Output};

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
    let out = o3_bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "o3-bench {args:?} failed: {stdout}{}",
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
