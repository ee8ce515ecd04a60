//! `o3-bench read-compare` end to end at a small scale: YCSB B, C (zipfian
//! and latest) and E over an `o3-memnode` on tcp (RDMA-like link) and on
//! shm, under every read policy and without offloading. The figures are
//! printed (CI's log keeps them); the test checks that every run read
//! through the memory node as its variant says, not how fast it was.
//! Bad flags are one-line errors that run nothing.

mod support;

use std::time::Duration;

use support::{assert_one_line_error, o3_bench, o3_bench_within, read_json};

fn memnode_present() -> bool {
    std::path::Path::new(env!("CARGO_BIN_EXE_o3-bench"))
        .with_file_name("o3-memnode")
        .is_file()
}

#[test]
fn read_compare_runs_every_workload_variant_and_data_plane() {
    if !memnode_present() {
        println!("skipped: no o3-memnode next to o3-bench (cargo build --workspace)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("read.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "read-compare",
            "--db",
            db.to_str().unwrap(),
            "--records",
            "40000",
            "--operations",
            "20000",
            "--scan_operations",
            "2000",
            "--write_buffer_size",
            "524288",
            "--offset_cache_bytes",
            "1048576",
            "--pull_back_bytes",
            "1048576",
            "--index_bytes",
            "1048576",
        ],
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The comparison tables, for the CI log.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&json);
    let conditions = report["environment"]["emulated_conditions"]
        .as_str()
        .unwrap();
    for needle in [
        "cores: ",
        "link rdma-fabric",
        "shm without a link model",
        "of filler records per shard",
    ] {
        assert!(conditions.contains(needle), "{conditions} lacks {needle}");
    }
    let comparisons = report["summary"]["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 10, "5 workloads x 2 data planes");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 50, "5 variants each");
    for c in comparisons {
        let rows = c["rows"].as_array().unwrap();
        let row = |v: &str| rows.iter().find(|r| r["variant"] == v).unwrap();
        let scans = c["workload"] == "e";
        assert!(c["ratio"].as_f64().unwrap() > 0.0, "{c}");
        for v in ["adaptive", "cache", "delegate", "delegate+mem"] {
            let r = row(v);
            assert!(r["images_offloaded"].as_u64().unwrap() > 0, "{v}: {c}");
            assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{v}: {c}");
        }
        let none = row("none");
        assert_eq!(none["delegated_gets"], 0, "{c}");
        assert_eq!(none["delegated_scans"], 0, "{c}");
        let delegate = row("delegate");
        assert_eq!(delegate["one_sided_reads"], 0, "{c}");
        assert_eq!(delegate["images_pulled_back"], 0, "{c}");
        if scans {
            assert!(delegate["delegated_scans"].as_u64().unwrap() > 0, "{c}");
        } else {
            assert!(delegate["delegated_gets"].as_u64().unwrap() > 0, "{c}");
            // Zipfian lookups repeat keys: the cache must serve some.
            if c["workload"].as_str().unwrap().ends_with("zipfian") {
                assert!(row("cache")["cache_hits"].as_u64().unwrap() > 0, "{c}");
            }
        }
        assert_eq!(row("cache")["images_pulled_back"], 0, "{c}");
        // Only the adaptive policy keeps key indexes, and reads through
        // them (or lends their room to a cache of values when no scan
        // needs them).
        for v in ["cache", "delegate", "delegate+mem", "none"] {
            assert_eq!(row(v)["indexed_gets"], 0, "{v}: {c}");
            assert_eq!(row(v)["indexed_scans"], 0, "{v}: {c}");
        }
        let adaptive = row("adaptive");
        let held = adaptive["index_bytes"].as_u64().unwrap();
        let lent = adaptive["index_room_lent"].as_u64().unwrap();
        assert!(held > 0 || lent > 0, "{c}");
        if scans {
            assert!(adaptive["indexed_scans"].as_u64().unwrap() > 0, "{c}");
            assert_eq!(lent, 0, "scans take the room back: {c}");
        }
    }
    assert!(db.join("tcp-memnode.log").is_file());
    assert!(db.join("shm-memnode.log").is_file());
}

#[test]
fn bad_read_compare_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let w = concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/workloadc");
    for (args, needle) in [
        (
            vec!["read-compare", "--db", db, "--workloads", "b-zipfian,z"],
            "--workloads 'z': expected one of b-zipfian",
        ),
        (
            vec!["read-compare", "--db", db, "--transports", "rdma"],
            "--transports 'rdma': expected one of tcp, shm",
        ),
        (
            vec!["read-compare", "--db", db, "--variants", "fast"],
            "--variants 'fast'",
        ),
        (
            vec!["read-compare", "--db", db, "--tcp_link", "pigeon"],
            "--tcp_link 'pigeon'",
        ),
        (
            vec!["read-compare", "--db", db, "--records", "0"],
            "--records must be at least 1",
        ),
        (
            vec!["read-compare", "--db", db, "--read_policy", "cache"],
            "--read_policy cache is not used here",
        ),
        (
            vec!["read-compare", "--db", db, "--link", "10gbe"],
            "use --tcp_link PRESET",
        ),
        (
            vec![
                "ycsb",
                "--db",
                db,
                "--workload",
                w,
                "--offload",
                "--read_policy",
                "x",
            ],
            "--read_policy: unknown read policy \"x\"",
        ),
        (
            vec![
                "ycsb",
                "--db",
                db,
                "--workload",
                w,
                "--read_policy",
                "cache",
            ],
            "--read_policy needs --offload",
        ),
    ] {
        let out = o3_bench(&args);
        assert_one_line_error(&out, &[needle]);
    }
    assert!(!std::path::Path::new(db).join("tcp-memnode.log").exists());
}
