//! Memtable offloading in `o3-bench`: the offloading flags on bad input
//! (one line naming the flag, nothing run), the report of a run with
//! offloading, and tiny runs of `offload-compare` and `offload-lookup` that
//! must really ship images to the (in-process) memory node.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{assert_one_line_error, o3_bench, o3_bench_ok, o3_bench_within, read_json};

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bad_offload_flags_are_one_line_errors_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let token = write_file(dir.path(), "token", "secret\n");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["dbbench", "--db", db, "--link", "10gbe"],
            vec!["--link needs --offload"],
        ),
        (
            vec!["ycsb", "--link_latency_us", "3", "--workload", "x"],
            vec!["--link_latency_us needs --offload"],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--offload",
                "--memnode",
                "127.0.0.1:7380",
            ],
            vec!["--memnode 127.0.0.1:7380 needs --token_file"],
        ),
        (
            vec!["dbbench", "--db", db, "--offload", "--token_file", &token],
            vec!["--token_file", "only used with --memnode"],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--offload",
                "--memnode",
                "localhost",
                "--token_file",
                &token,
            ],
            vec!["'localhost' is not HOST:PORT"],
        ),
        (
            vec!["dbbench", "--db", db, "--offload", "--link", "warp"],
            vec!["unknown preset 'warp'", "rdma-fabric", "10gbe"],
        ),
        (
            vec![
                "dbbench",
                "--db",
                db,
                "--offload",
                "--link",
                "10gbe",
                "--link_bandwidth",
                "1000",
            ],
            vec!["not both"],
        ),
        (
            vec!["dbbench", "--db", db, "--offload=maybe"],
            vec!["maybe", "boolean"],
        ),
        (
            vec!["dbbench", "--db", db, "--offload", "--offload_threads", "0"],
            vec!["shipping_threads"],
        ),
        (
            vec!["offload-compare", "--db", db, "--offload=false"],
            vec!["offload-compare", "--offload=false"],
        ),
        (
            vec!["offload-compare", "--db", db, "--burst_factor", "0"],
            vec!["--burst_factor"],
        ),
        (
            vec!["offload-lookup", "--db", db, "--memnode", "h:1"],
            vec!["--memnode h:1 needs --token_file"],
        ),
        (
            vec!["offload-lookup", "--db", db, "--num", "100"],
            vec!["hold all 100 keys"],
        ),
    ];
    for (args, needles) in cases {
        let out = o3_bench(&args);
        assert_one_line_error(&out, &needles);
    }
    assert!(!Path::new(db).exists(), "nothing may run on bad input");
}

#[test]
fn the_offload_table_of_the_config_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = write_file(
        dir.path(),
        "bench.toml",
        "[offload]\noffload = true\nlink_latncy_us = 3\n",
    );
    let out = o3_bench(&["--config", &bad_key, "dbbench"]);
    assert_one_line_error(&out, &["bench.toml", "line 3", "link_latncy_us"]);
    let unchecked = write_file(dir.path(), "lone.toml", "[offload]\nlink = \"10gbe\"\n");
    let out = o3_bench(&["--config", &unchecked, "dbbench"]);
    assert_one_line_error(&out, &["--link needs --offload"]);

    // The config file turns offloading on; a flag overrides its link.
    let config = write_file(
        dir.path(),
        "offload.toml",
        "[engine]\nwrite_buffer_size = 65536\n[offload]\noffload = true\nmax_local_sealed_memtables = 2\nlink = \"10gbe\"\n[dbbench]\nbenchmarks = \"fillrandom,readrandom\"\nnum = 3000\n",
    );
    let db = dir.path().join("db");
    let json = dir.path().join("report.json");
    let stdout = o3_bench_ok(&[
        "--config",
        &config,
        "--json",
        json.to_str().unwrap(),
        "dbbench",
        "--db",
        db.to_str().unwrap(),
        "--link_latency_us",
        "3",
        "--link_bandwidth",
        "12500000000",
    ]);
    assert!(
        stdout
            .contains("emulated conditions: offloading to in-process memory node (local transport"),
        "{stdout}"
    );
    assert!(
        stdout.contains("link (latency 3µs, bandwidth 12.50 GB/s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "keeping 2 sealed memtable(s) per shard local + the active one (196608 bytes"
        ),
        "{stdout}"
    );
    let report = read_json(&json);
    let offload = &report["configuration"]["engine"]["offload"];
    assert_eq!(offload["memory_node"]["kind"], "in_process");
    assert_eq!(offload["max_local_sealed_memtables"], 2);
    assert_eq!(offload["link"]["latency_us"], 3);
    assert!(offload["link"]["preset"].is_null());
    // Every phase carries the engine's offload counters and their rates.
    for phase in report["phases"].as_array().unwrap() {
        assert!(phase["db_stats"]["offload"]["images_shipped"].is_u64());
        assert!(phase["offload_rates"].is_object());
    }
}

/// The write burst at tiny sizes: both variants are in the report, the run
/// with offloading shipped images, and the ratios are computed.
#[test]
fn offload_compare_runs_both_variants_and_ships_images() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("compare.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "offload-compare",
            "--db",
            db.to_str().unwrap(),
            "--write_buffer_size",
            "131072",
            "--storage_write_bytes_per_sec",
            "4000000",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "local memtable budget: max_unflushed_bytes = 393216 bytes",
        "in both runs (write_buffer_size 131072 x (max_local_sealed_memtables 1 + 2))",
        "max_unflushed_bytes 393216",
        "write 4.0 MB/s",
        "WAL off",
        "in-process memory node",
        "write-stall reduction:",
        "fill throughput ratio (on/off):",
        "offload: shipped",
    ] {
        assert!(stdout.contains(needle), "{stdout} lacks {needle}");
    }
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  off ") || l.starts_with("  on "))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let report = read_json(&json);
    let names: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fill-offload-off", "fill-offload-on"]);
    let summary = &report["summary"];
    assert!(summary["images_shipped"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        report["phases"][0]["db_stats"]["offload"]["images_shipped"],
        0
    );
    assert!(summary["throughput_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["local_budget_bytes"], 393216);
    // 4 x the budget in 116-byte entries.
    assert_eq!(summary["puts"], 4 * 393216 / 116);
}

/// Lookups at tiny sizes: both variants in the table, the offloaded one
/// read through the memory node, every key found in both.
#[test]
fn offload_lookup_reads_through_the_memory_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("lookup.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "offload-lookup",
            "--db",
            db.to_str().unwrap(),
            "--num",
            "20000",
            "--reads",
            "3000",
            "--write_buffer_size",
            "131072",
            "--link",
            "rdma-fabric",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("  local memtables "), "{stdout}");
    assert!(stdout.contains("  offloaded images "), "{stdout}");
    assert!(stdout.contains("link rdma-fabric"), "{stdout}");
    let report = read_json(&json);
    let summary = &report["summary"];
    for variant in ["local", "offloaded"] {
        assert_eq!(summary[variant]["lookups"], 3000, "{summary}");
        assert_eq!(summary[variant]["found"], 3000, "{summary}");
    }
    assert_eq!(summary["local"]["delegated_gets"], 0, "{summary}");
    assert!(
        summary["offloaded"]["images_offloaded"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(
        summary["offloaded"]["delegated_gets"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let shipped = report["phases"][1]["db_stats"]["offload"]["images_shipped"]
        .as_u64()
        .unwrap();
    assert!(shipped > 0, "{summary}");
}

/// `o3-memnode` and `o3-csa` next to the `o3-bench` under test, which
/// `cargo test --workspace` builds; `None` when either is absent.
fn node_binaries_present() -> bool {
    let bench = Path::new(env!("CARGO_BIN_EXE_o3-bench"));
    ["o3-memnode", "o3-csa"]
        .iter()
        .all(|b| bench.with_file_name(b).is_file())
}

#[test]
fn flush_compare_runs_three_variants_and_offloads_flushes() {
    if !node_binaries_present() {
        println!("skipped: no o3-memnode or o3-csa next to o3-bench (cargo build --workspace)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("flush.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "flush-compare",
            "--db",
            db.to_str().unwrap(),
            "--write_buffer_size",
            "131072",
            "--max_local_sealed_memtables",
            "0",
            "--max_offloaded_bytes",
            "524288",
            "--burst_factor",
            "8",
            "--storage_write_bytes_per_sec",
            "4000000",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "1 no offloading",
        "2 memtable offload, local",
        "3 memtable + flush offload",
        "write 4.0 MB/s",
        "(this node, the memory node and each agent a channel of its own)",
        "memory node an o3-memnode process",
        "cores: ",
        "/ local flush:",
    ] {
        assert!(stdout.contains(needle), "{stdout} lacks {needle}");
    }
    let report = read_json(&json);
    let summary = &report["summary"];
    // Run 2 flushed everything here; run 3 sent flushes to the memory
    // node (the command fails if it sent none).
    assert_eq!(
        summary["local_flush_placement"]["on_memnode"], 0,
        "{summary}"
    );
    assert!(
        summary["flush_offload_placement"]["on_memnode"]
            .as_u64()
            .unwrap()
            > 0,
        "{summary}"
    );
    assert_eq!(report["phases"].as_array().unwrap().len(), 3);
    // The header's emulated conditions are the experiment's, pinning
    // included.
    let conditions = report["environment"]["emulated_conditions"]
        .as_str()
        .unwrap();
    assert!(conditions.contains("cores: "), "{conditions}");
    assert!(conditions.contains("o3-memnode process"), "{conditions}");
    // The children's logs sit next to the databases.
    assert!(db.join("fill-flush-offload-memnode.log").is_file());
}

/// The pids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        found.extend(text.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
    }
    found
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) STATE ..."
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[test]
fn a_killed_flush_compare_leaves_no_node_process_behind() {
    if !node_binaries_present() {
        println!("skipped: no o3-memnode or o3-csa next to o3-bench (cargo build --workspace)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // With flushes placed on agents, the scheduler and one agent start
    // before run 1; the fill is long enough to be killed while they run.
    let mut bench = support::ChildGuard(
        support::o3_bench_command(&[
            "flush-compare",
            "--db",
            db.to_str().unwrap(),
            "--flush_placement",
            "agent",
            "--write_buffer_size",
            "131072",
            "--burst_factor",
            "40",
            "--storage_write_bytes_per_sec",
            "1000000",
        ])
        .spawn()
        .unwrap(),
    );
    let pid = bench.0.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let children = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler and its agent never started"
        );
        assert!(
            bench.0.try_wait().unwrap().is_none(),
            "flush-compare ended before it was killed"
        );
        let children = children_of(pid);
        if children.len() >= 2 {
            break children;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    bench.0.kill().unwrap();
    bench.0.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !children.iter().all(|&c| gone(c)) {
        if std::time::Instant::now() >= deadline {
            // Stop exactly the processes this test's child started.
            for &c in &children {
                // SAFETY: kill(2) on a pid this test saw as its child's
                // child and, just before, as still running (not reaped,
                // so not reused).
                if !gone(c) {
                    unsafe { libc::kill(c as i32, libc::SIGKILL) };
                }
            }
            panic!("children {children:?} of the killed flush-compare still ran");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shard_sweep_learns_split_keys_for_every_count() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sweep.json");
    let out = o3_bench_within(
        &[
            "--json",
            json.to_str().unwrap(),
            "shard-sweep",
            "--db",
            dir.path().join("db").to_str().unwrap(),
            // Past the engine's first sampling window (100,000 writes), so
            // the adaptive databases split.
            "--num",
            "250000",
            "--write_buffer_size",
            "1048576",
            "--shard_counts",
            "1,4",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&json);
    let points = report["summary"].as_array().unwrap();
    assert_eq!(points.len(), 4, "{stdout}");
    for p in points {
        let shards = p["shards"].as_u64().unwrap();
        let max_share = p["max_write_share"].as_f64().unwrap();
        if shards == 1 {
            assert_eq!(p["reshards"], 0, "{p}");
            assert!((max_share - 1.0).abs() < 1e-9, "{p}");
        } else {
            // The engine split the key space itself, and no shard takes
            // most of the writes, zipfian keys included.
            assert!(p["reshards"].as_u64().unwrap() >= 1, "{p}");
            assert!(max_share < 0.5, "{p}");
        }
    }
}
