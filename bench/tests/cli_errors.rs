//! The binary on bad input: one line on stderr naming what is wrong, and a
//! non-zero exit. Also small end-to-end runs of both subcommands, the shipped
//! workload files, the config file and the JSON/SVG outputs.

mod support;

use std::path::{Path, PathBuf};

use support::{assert_one_line_error, o3_bench, o3_bench_ok, read_json};

fn workloads_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads")
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_property_name_is_one_line_naming_property_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_file(
        dir.path(),
        "bad_name",
        "recordcount=10\nreadproprtion=0.5\n",
    );
    let db = dir.path().join("db");
    let out = o3_bench(&[
        "ycsb",
        "--workload",
        w.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["readproprtion", "bad_name:2"]);
    assert!(!db.exists(), "nothing may run on bad input");
}

#[test]
fn proportions_above_one_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_file(
        dir.path(),
        "too_much",
        "recordcount=10\nreadproportion=0.6\nupdateproportion=0.3\ninsertproportion=0.2\n",
    );
    let out = o3_bench(&["ycsb", "--workload", w.to_str().unwrap()]);
    assert_one_line_error(&out, &["too_much", "above 1"]);
}

#[test]
fn unreadable_workload_path_is_one_line() {
    let out = o3_bench(&["ycsb", "--workload", "/nonexistent/workloadz"]);
    assert_one_line_error(&out, &["/nonexistent/workloadz"]);
    // A directory is not a readable workload file either.
    let dir = tempfile::tempdir().unwrap();
    let out = o3_bench(&["ycsb", "--workload", dir.path().to_str().unwrap()]);
    assert_one_line_error(&out, &[dir.path().to_str().unwrap()]);
}

#[test]
fn bad_override_and_bad_flags_are_one_line() {
    let w = workloads_dir().join("workloada");
    let out = o3_bench(&[
        "ycsb",
        "--workload",
        w.to_str().unwrap(),
        "-p",
        "recordcont=5",
    ]);
    assert_one_line_error(&out, &["recordcont", "command line"]);
    let out = o3_bench(&["dbbench", "--benchmarks=fillrandm"]);
    assert_one_line_error(&out, &["fillrandm"]);
    let out = o3_bench(&["dbbench", "--num=many"]);
    assert_one_line_error(&out, &["many"]);
    let out = o3_bench(&["dbbench", "--no_such_flag=1"]);
    assert_one_line_error(&out, &["no_such_flag"]);
    let out = o3_bench(&["dbbench", "--compression_type=snappy"]);
    assert_one_line_error(&out, &["snappy", "none, lz4, zstd"]);
    let out = o3_bench(&["dbbench", "--cache_admission=lru"]);
    assert_one_line_error(&out, &["--cache_admission", "lru"]);
}

#[test]
fn bad_config_file_is_one_line_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = write_file(dir.path(), "bench.toml", "[dbbench]\nnum = 10\nnmu = 3\n");
    let out = o3_bench(&["--config", c.to_str().unwrap(), "dbbench"]);
    assert_one_line_error(&out, &["bench.toml", "line 3", "nmu"]);
}

#[test]
fn shipped_workloads_parse_and_run_small() {
    for name in ["a", "b", "c", "d", "e", "f"] {
        let dir = tempfile::tempdir().unwrap();
        let w = workloads_dir().join(format!("workload{name}"));
        let db = dir.path().join("db");
        let stdout = o3_bench_ok(&[
            "ycsb",
            "--workload",
            w.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "-p",
            "recordcount=300",
            "-p",
            "operationcount=300",
        ]);
        assert!(
            stdout.contains("[OVERALL], Throughput(ops/sec)"),
            "{stdout}"
        );
        assert!(stdout.contains("emulated conditions: none"));
    }
}

#[test]
fn dbbench_config_flags_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let c = write_file(
        dir.path(),
        "bench.toml",
        &format!(
            "[engine]\ndb = \"{}\"\nwrite_buffer_size = 65536\n[dbbench]\nnum = 100000\nbenchmarks = \"fillseq\"\n",
            db.display()
        ),
    );
    let json = dir.path().join("report.json");
    let plots = dir.path().join("plots");
    // The flag --num overrides the config file's 100000.
    let stdout = o3_bench_ok(&[
        "--config",
        c.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "dbbench",
        "--num=500",
        "--benchmarks=fillrandom,readrandom,seekrandom",
        "--seek_nexts=2",
        "--sync=0",
    ]);
    for b in ["fillrandom   :", "readrandom   :", "seekrandom   :"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(b))
            .unwrap_or_else(|| panic!("{b} in {stdout}"));
        assert!(
            line.contains("micros/op") && line.contains("ops/sec;"),
            "{line}"
        );
    }
    if cfg!(debug_assertions) {
        assert!(stdout.contains("WARNING: o3-bench was built without --release"));
    }
    let report = read_json(&json);
    assert_eq!(report["configuration"]["num"], 500);
    assert_eq!(
        report["configuration"]["engine"]["write_buffer_size"],
        65536
    );
    assert_eq!(
        report["configuration"]["engine"]["cache_admission"],
        "second-miss"
    );
    assert_eq!(report["phases"][0]["ops"], 500);
    assert!(
        report["phases"][0]["latency"][0]["p99_us"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(report["phases"][0]["db_stats"]["levels"].is_array());
    // Nothing failed in the background, and the report says so.
    assert_eq!(report["background_errors"]["count"], 0);
    assert!(report["background_errors"]["message"].is_null());
    assert_eq!(report["phases"][2]["background_errors"]["count"], 0);
    assert_eq!(report["environment"]["emulated_conditions"], "none");
    let svgs = std::fs::read_dir(&plots).unwrap().count();
    assert_eq!(svgs, 6, "timeline and CDF per benchmark");
}

/// The `--storage_*` flags (and the config file's `[engine]` keys) run the
/// database on emulated remote storage, and the report names the condition.
#[test]
fn emulated_remote_storage_from_flags_and_config_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let c = write_file(
        dir.path(),
        "bench.toml",
        &format!(
            "[engine]\ndb = \"{}\"\nstorage_latency_us = 20\n",
            db.display()
        ),
    );
    let json = dir.path().join("report.json");
    let stdout = o3_bench_ok(&[
        "--config",
        c.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "dbbench",
        "--num=300",
        "--benchmarks=fillrandom,readrandom",
        "--storage_write_bytes_per_sec=50000000",
    ]);
    let condition = "remote storage (latency 20µs, read unlimited, write 50.0 MB/s)";
    assert!(
        stdout.contains(&format!("emulated conditions: {condition}")),
        "{stdout}"
    );
    let report = read_json(&json);
    assert_eq!(report["environment"]["emulated_conditions"], condition);
    let engine = &report["configuration"]["engine"];
    assert_eq!(engine["storage_latency_us"], 20);
    assert_eq!(engine["storage_read_bytes_per_sec"], 0);
    assert_eq!(engine["storage_write_bytes_per_sec"], 50_000_000);
    assert_eq!(report["phases"][1]["ops"], 300);
}

#[test]
fn compaction_strategy_is_chosen_by_name_from_flags_and_config() {
    let dir = tempfile::tempdir().unwrap();
    // Unknown names: one line listing the valid ones.
    let out = o3_bench(&["dbbench", "--num=10", "--compaction=universal"]);
    assert_one_line_error(
        &out,
        &["--compaction", "universal", "tiering", "lazy-leveling"],
    );
    let out = o3_bench(&[
        "dbbench",
        "--num=10",
        "--compaction=one-leveling:picker=newest",
    ]);
    assert_one_line_error(&out, &["newest", "tombstone-density", "round-robin"]);
    // A valid choice from the config file is used and reported.
    let db = dir.path().join("db");
    let c = write_file(
        dir.path(),
        "bench.toml",
        &format!(
            "[engine]\ndb = \"{}\"\ncompaction = \"tiering\"\n",
            db.display()
        ),
    );
    let json = dir.path().join("report.json");
    o3_bench_ok(&[
        "--config",
        c.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "dbbench",
        "--num=300",
        "--benchmarks=fillrandom",
    ]);
    let report = read_json(&json);
    assert_eq!(
        report["configuration"]["engine"]["compaction_spec"],
        "tiering"
    );
}
