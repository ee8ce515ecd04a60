//! `ci/bench.sh`, the README's main job, with tiny counts and the binary
//! under test (`O3_BENCH_BIN` skips the release build): where its database
//! goes, that it is removed unless kept, and that `--db` is the caller's.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{output_within, success_stdout};

fn bench_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/bench.sh")
}

/// Run ci/bench.sh with `args` and the environment variables `paths` and
/// `extra`, at most two minutes; assert that it succeeded and return its
/// stdout.
fn run(args: &[&str], paths: &[(&str, &Path)], extra: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(bench_sh())
        .args(args)
        .env("O3_BENCH_BIN", env!("CARGO_BIN_EXE_o3-bench"))
        .env("RECORDCOUNT", "2000")
        .env("OPERATIONCOUNT", "4000")
        .env_remove("KEEP_DB")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in paths {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    success_stdout(&output_within(cmd, Duration::from_secs(120)))
}

#[test]
fn the_default_database_is_removed_and_the_report_written() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let stdout = run(&[], &[("TMPDIR", dir.path()), ("OUT", &out_dir)], &[]);
    assert!(
        stdout.contains("load 2000 records, then 4000 operations"),
        "{stdout}"
    );
    let db = dir.path().join("o3-bench-workloada");
    assert!(
        stdout.contains(&format!("removed the database {}", db.display())),
        "{stdout}"
    );
    assert!(!db.exists(), "the default database was left behind");
    assert!(out_dir.join("report.json").exists());
}

#[test]
fn keep_db_keeps_it_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run(
        &[],
        &[("TMPDIR", dir.path()), ("OUT", &dir.path().join("out"))],
        &[("KEEP_DB", "1")],
    );
    let db = dir.path().join("o3-bench-workloada");
    assert!(
        stdout.contains(&format!("database kept at {}", db.display())),
        "{stdout}"
    );
    assert!(db.join("CURRENT").exists());
}

#[test]
fn a_database_named_with_db_is_used_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    let stdout = run(
        &["--db", mine.to_str().unwrap()],
        &[("TMPDIR", dir.path()), ("OUT", &dir.path().join("out"))],
        &[],
    );
    assert!(mine.join("CURRENT").exists(), "--db was not used");
    assert!(!dir.path().join("o3-bench-workloada").exists());
    assert!(!stdout.contains("removed the database"), "{stdout}");
}
