//! What a run leaves behind: outputs checked before anything runs, each
//! finished phase saved as it ends and kept when Ctrl-C stops the run, the
//! report's provenance, `--repeat`'s spreads, and plain-text stderr.

mod support;

use std::time::{Duration, Instant};

use support::{
    ChildGuard, assert_one_line_error, drain, o3_bench, o3_bench_command, o3_bench_within,
    read_json, success_stdout,
};

const LIMIT: Duration = Duration::from_secs(120);

/// Run `o3-bench dbbench args` on a fresh database with a JSON report;
/// assert success and return stdout and the report.
fn dbbench_report(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let db = dir.path().join("db");
    let mut all = vec!["dbbench", "--db", db.to_str().unwrap()];
    all.extend_from_slice(&["--json", json.to_str().unwrap()]);
    all.extend_from_slice(args);
    let stdout = success_stdout(&o3_bench_within(&all, LIMIT));
    (stdout, read_json(&json))
}

#[test]
fn an_unwritable_json_path_fails_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("no-such-dir").join("report.json");
    let out = o3_bench(&[
        "dbbench",
        "--num=1000",
        "--db",
        db.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["no-such-dir", "report.json"]);
    assert!(
        !db.exists(),
        "the run started before its output was checked"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "nothing may be printed before the check"
    );
}

#[test]
fn a_plot_directory_that_is_a_file_fails_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let plots = dir.path().join("plots");
    std::fs::write(&plots, b"not a directory").unwrap();
    let out = o3_bench(&[
        "dbbench",
        "--num=1000",
        "--db",
        db.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["plots"]);
    assert!(!db.exists());
}

#[test]
fn an_existing_json_file_is_kept_when_the_run_fails_early() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("old.json");
    std::fs::write(&json, b"{\"old\": true}").unwrap();
    let out = o3_bench(&[
        "dbbench",
        "--benchmarks=nosuch",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["nosuch"]);
    assert_eq!(read_json(&json)["old"], true);
}

/// Ctrl-C during the second phase: the first phase was saved when it ended;
/// the signal prints it, marks the report interrupted and exits 130.
#[test]
fn ctrl_c_keeps_the_finished_phases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("report.json");
    // readrandom is bounded only by --reads, far more than it can do before
    // the signal.
    let mut child = ChildGuard(
        o3_bench_command(&[
            "dbbench",
            "--benchmarks=fillrandom,readrandom",
            "--num=5000",
            "--reads=2000000000",
            "--db",
            db.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ])
        .spawn()
        .unwrap(),
    );
    let stdout = drain(child.0.stdout.take().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + LIMIT;
    // The report appears with the fill in it while readrandom runs.
    loop {
        assert!(Instant::now() < deadline, "no phase saved within {LIMIT:?}");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "o3-bench ended early"
        );
        let saved = std::fs::read_to_string(&json).ok();
        if let Some(v) = saved.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
            assert_eq!(v["status"], "running");
            assert_eq!(v["phases"][0]["name"], "fillrandom");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: signals the child this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "o3-bench ignored SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8(stdout.join().unwrap()).unwrap();
    let stderr = String::from_utf8(stderr.join().unwrap()).unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stdout.contains("interrupted: 1 phase(s) finished"),
        "{stdout}"
    );
    assert!(stdout.contains("fillrandom: 5000 ops"), "{stdout}");
    let report = read_json(&json);
    assert_eq!(report["status"], "interrupted");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "the cut phase is not reported");
    assert_eq!(phases[0]["ops"], 5000);
}

#[test]
fn a_report_names_its_commit_host_and_start_and_is_complete() {
    let (stdout, report) = dbbench_report(&["--num=2000"]);
    assert!(stdout.contains("provenance: commit "), "{stdout}");
    assert_eq!(report["status"], "complete");
    let env = &report["environment"];
    let commit = env["git_commit"].as_str().unwrap();
    assert!(
        commit == "unknown" || commit.len() >= 40,
        "not a commit: {commit}"
    );
    let started = env["started_at"].as_str().unwrap();
    assert!(
        started.len() == 20 && started.ends_with('Z') && &started[10..11] == "T",
        "not RFC 3339 UTC: {started}"
    );
    assert!(!env["host"].as_str().unwrap().is_empty());
    assert!(report["configuration"]["num"].is_number());
}

#[test]
fn repeat_runs_the_benchmarks_again_and_reports_the_spread() {
    let (stdout, report) = dbbench_report(&[
        "--benchmarks=fillrandom,readrandom",
        "--num=2000",
        "--repeat=3",
    ]);
    let names: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(names[0], "fillrandom #1");
    assert_eq!(names[5], "readrandom #3");
    let repeats = report["repeats"].as_array().unwrap();
    assert_eq!(repeats.len(), 2);
    for r in repeats {
        assert_eq!(r["runs"], 3);
        let s = &r["ops_per_sec"];
        let (min, med, max) = (
            s["min"].as_f64().unwrap(),
            s["median"].as_f64().unwrap(),
            s["max"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= med && med <= max, "{s}");
    }
    assert!(stdout.contains("ops/s min"), "{stdout}");
}

#[test]
fn repeat_is_refused_where_it_means_nothing() {
    let out = o3_bench(&["study", "--simulate", "--repeat=2"]);
    assert_one_line_error(&out, &["--repeat"]);
    let out = o3_bench(&["dbbench", "--repeat=0", "--num=10"]);
    assert_one_line_error(&out, &["--repeat 0"]);
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = o3_bench_command(&[
        "dbbench",
        "--num=2000",
        "--db",
        dir.path().join("db").to_str().unwrap(),
    ]);
    cmd.env("RUST_LOG", "info");
    let out = cmd.output().unwrap();
    success_stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "logging was on: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in piped stderr");
}

#[test]
fn an_engine_error_says_invalid_argument_once() {
    let out = o3_bench(&["dbbench", "--compression_type=snappy"]);
    assert_one_line_error(&out, &["snappy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("invalid argument").count(), 1, "{stderr}");
}

#[test]
fn a_simulated_study_without_flushes_is_refused_not_nan() {
    for flag in ["--flushes=0", "--entries_per_flush=0"] {
        let out = o3_bench(&["study", "--simulate", flag]);
        assert_one_line_error(&out, &[flag.split('=').next().unwrap()]);
        assert!(!String::from_utf8_lossy(&out.stdout).contains("NaN"));
    }
}

/// A read phase after a load reports no writes of its own, while the
/// engine's totals since open still hold the load's.
#[test]
fn phase_statistics_are_the_phase_s_own() {
    let (stdout, report) = dbbench_report(&[
        "--benchmarks=fillrandom,readrandom",
        "--num=20000",
        "--write_buffer_size=262144",
    ]);
    let (fill, read) = (&report["phases"][0], &report["phases"][1]);
    assert_eq!(fill["work"]["writes"], 20000);
    assert!(fill["work"]["flushes"].as_u64().unwrap() > 0);
    let wa = fill["work"]["write_amplification"].as_f64().unwrap();
    assert!(
        wa >= 1.0,
        "RocksDB's write amplification is at least 1: {wa}"
    );
    assert_eq!(read["work"]["writes"], 0);
    assert_eq!(read["work"]["user_bytes"], 0);
    // Flushes of the fill's last memtables may finish during the reads and
    // count there; a phase without flushes has no write amplification.
    let read_wa = &read["work"]["write_amplification"];
    match read["work"]["flushes"].as_u64().unwrap() {
        0 => assert!(read_wa.is_null(), "{read_wa}"),
        _ => assert!(read_wa.as_f64().unwrap() >= 1.0, "{read_wa}"),
    }
    assert_eq!(read["db_stats"]["writes"], 20000, "totals since open");
    assert!(stdout.contains("this phase: 0 writes"), "{stdout}");
    assert!(stdout.contains("engine totals since the database was opened"));
}
