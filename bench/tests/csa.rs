//! The compaction service in `o3-bench`: the `--csa_*` flags on bad input
//! (one line naming the flag, nothing run), a tiny dbbench run whose
//! compactions must really go to in-process agents, and a tiny
//! `csa-compare` end to end against the built `o3-csa` binary.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{assert_one_line_error, o3_bench, o3_bench_within, read_json};

#[test]
fn bad_csa_flags_are_one_line_errors_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["dbbench", "--db", db, "--csa_policy", "remote"],
            vec!["--csa_policy needs --csa_scheduler", "--csa_agents"],
        ),
        (
            vec!["ycsb", "--workload", "x", "--csa_priority", "3"],
            vec!["--csa_priority needs --csa_scheduler"],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--csa_agents",
                "2",
                "--csa_scheduler",
                "127.0.0.1:7390",
            ],
            vec![
                "--csa_agents 2",
                "--csa_scheduler 127.0.0.1:7390",
                "give one",
            ],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--csa_agents",
                "2",
                "--csa_policy",
                "sometimes",
            ],
            vec!["--csa_policy", "\"sometimes\"", "auto, remote or local"],
        ),
        (
            vec!["dbbench", "--db", db, "--flush_placement", "memnode"],
            vec!["--flush_placement needs --csa_scheduler"],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--csa_agents",
                "1",
                "--flush_placement",
                "memnode",
            ],
            vec!["--flush_placement memnode needs --offload"],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--csa_agents",
                "1",
                "--flush_placement",
                "nowhere",
            ],
            vec![
                "--flush_placement 'nowhere'",
                "local, memnode, agent or auto",
            ],
        ),
        (
            vec!["dbbench", "--db", db, "--csa_scheduler", "127.0.0.1:7390"],
            vec!["needs --token_file"],
        ),
    ];
    for (args, needles) in cases {
        let out = o3_bench(&args);
        assert_one_line_error(&out, &needles);
        assert!(out.stdout.is_empty(), "{args:?} ran something");
    }
    assert!(!dir.path().join("db").exists());
}

/// With the remote policy and two in-process agents, compactions of a
/// small fill run on the agents, and the report says so.
#[test]
fn a_fill_with_in_process_agents_compacts_remotely() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("report.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "dbbench",
            "--db",
            db.to_str().unwrap(),
            "--benchmarks",
            "fillrandom",
            "--num",
            "40000",
            "--write_buffer_size",
            "65536",
            "--level0_file_num_compaction_trigger",
            "2",
            "--csa_agents",
            "2",
            "--csa_slots",
            "1",
            "--csa_policy",
            "remote",
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 agent(s) x 1 slot(s)") && stdout.contains("placement policy remote"),
        "{stdout}"
    );
    let report = read_json(&json);
    let service = &report["phases"][0]["service"];
    let remote = service["remote_compactions"].as_u64().unwrap();
    let done = service["remote_done"].as_u64().unwrap();
    assert!(remote > 0 && done > 0, "{service}");
    assert!(service["agent_bytes_written"].as_u64().unwrap() > 0);
    assert_eq!(
        report["configuration"]["engine"]["csa"]["service"]["agents"],
        2
    );
    assert_eq!(report["configuration"]["engine"]["csa"]["policy"], "remote");
}

/// `o3-csa` next to this test's profile directory (`target/<profile>/`),
/// which `cargo test --workspace` builds; `None` when absent.
fn o3_csa_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/csa-<hash>
    let profile = exe.parent()?.parent()?;
    let bin = profile.join("o3-csa");
    bin.is_file().then_some(bin)
}

#[test]
fn csa_compare_runs_end_to_end_with_tiny_sizes() {
    let Some(csa_bin) = o3_csa_binary() else {
        println!(
            "skipped: no o3-csa binary next to the test's target directory (cargo build -p o3-csa)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let json = dir.path().join("summary.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "csa-compare",
            "--num",
            "100000",
            "--value_size",
            "100",
            "--write_buffer_size",
            "65536",
            "--kill_after",
            "0.5",
            "--window_secs",
            "2",
            "--csa_bin",
            csa_bin.to_str().unwrap(),
            "--dir",
            work.to_str().unwrap(),
        ],
        Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "cores:",
        "storage: read 60 MB/s, write 30 MB/s",
        "run 1 (all local)",
        "run 2 (with the service)",
        "ratio",
        "target >= 1.3x",
        "run 3 timeline",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from {stdout}");
    }
    let summary = read_json(&json);
    assert!(summary["all_local"]["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(summary["with_service"]["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(summary["all_local"]["service"].is_null());
    assert!(summary["with_service"]["service"].is_object());
    assert_eq!(summary["target_throughput_ratio"], 1.3);
    // The working directory is removed without --keep.
    assert!(!work.exists(), "{} left behind", work.display());
}
