//! `o3-bench dbbench` takes its command line as db_bench (gflags) does: a
//! repeated flag takes its last value, `--flag=value` and `--flag value`
//! both work, and the new benchmarks and flags run end to end.

mod support;

use support::o3_bench_ok;

#[test]
fn a_repeated_flag_takes_the_last_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let json = dir.path().join("report.json");
    let out = o3_bench_ok(&[
        "dbbench",
        "--benchmarks=fillseq",
        "--num",
        "10",
        "--num",
        "20",
        "--value_size=10",
        "--value_size",
        "32",
        "--db",
        db.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let report = support::read_json(&json);
    assert_eq!(report["configuration"]["num"], 20, "{out}");
    assert_eq!(report["configuration"]["value_size"], 32, "{out}");
    assert_eq!(report["phases"][0]["ops"], 20, "{out}");
}

/// The meta operations and --statistics/--histogram print db_bench's
/// blocks; levelstats lists the levels.
#[test]
fn meta_operations_and_statistics_print_db_bench_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = o3_bench_ok(&[
        "dbbench",
        "--benchmarks=fillrandom,flush,waitforcompaction,levelstats,stats,readmissing",
        "--num=500",
        "--statistics",
        "--histogram=true",
        "--db",
        db.to_str().unwrap(),
    ]);
    for needle in [
        "Microseconds per write:",
        "Level Files Size(MB)",
        "readmissing  :",
        "(0 of 500 found)",
        "STATISTICS:\nrocksdb.block.cache.hit COUNT : ",
        "rocksdb.db.write.micros P50 : ",
    ] {
        assert!(out.contains(needle), "no {needle:?} in {out}");
    }
}
