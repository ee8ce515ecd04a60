//! `o3-bench ycsb` driven as YCSB's client is: `ycsb load|run -P FILE -p
//! NAME=VALUE -threads N -target OPS -s`, with its stdout read by a parser
//! written for YCSB's text output and its status lines read from stderr.
//! Also the errors a run on an empty database and a bad `-p` give.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::{assert_one_line_error, o3_bench, o3_bench_within};

/// Longest a small run may take before the test fails (debug build, shared
/// machine).
const LIMIT: Duration = Duration::from_secs(120);

fn workload_a() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads/workloada")
        .display()
        .to_string()
}

/// YCSB's output as a script for YCSB reads it: every line that is not a
/// comment is `[SECTION], metric, value`; `(section, metric) -> value`.
fn parse_ycsb(stdout: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.starts_with('#')) {
        let parts: Vec<&str> = line.split(", ").collect();
        assert_eq!(parts.len(), 3, "not a YCSB measurement line: {line:?}");
        let section = parts[0]
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or_else(|| panic!("no [SECTION] in {line:?}"));
        assert!(
            section.chars().all(|c| c.is_ascii_uppercase() || c == '-'),
            "{line:?}"
        );
        let value: f64 = parts[2]
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?} is not a number"));
        let old = out.insert((section.to_string(), parts[1].to_string()), value);
        assert!(old.is_none(), "{line:?} twice");
    }
    out
}

fn get(m: &BTreeMap<(String, String), f64>, section: &str, metric: &str) -> f64 {
    *m.get(&(section.to_string(), metric.to_string()))
        .unwrap_or_else(|| panic!("no [{section}], {metric} in {m:?}"))
}

fn sections(m: &BTreeMap<(String, String), f64>) -> Vec<String> {
    let mut s: Vec<String> = m
        .keys()
        .map(|(s, _)| s.clone())
        .filter(|s| s != "OVERALL")
        .collect();
    s.dedup();
    s
}

/// The checks a YCSB result must pass, whatever the numbers; returns the
/// operations over all sections.
fn check_ycsb_result(m: &BTreeMap<(String, String), f64>) -> f64 {
    assert!(get(m, "OVERALL", "RunTime(ms)") >= 0.0);
    assert!(get(m, "OVERALL", "Throughput(ops/sec)") > 0.0);
    let mut operations = 0.0;
    for s in sections(m) {
        let ops = get(m, &s, "Operations");
        operations += ops;
        if ops > 0.0 {
            check_latencies(m, &s);
        }
        if !s.ends_with("-FAILED") {
            // OK operations are measured under the name, failed ones under
            // NAME-FAILED; the return codes are all counted under the name.
            let failed = m
                .get(&(format!("{s}-FAILED"), "Operations".to_string()))
                .copied()
                .unwrap_or(0.0);
            let count = |code: &str| {
                m.get(&(s.clone(), format!("Return={code}")))
                    .copied()
                    .unwrap_or(0.0)
            };
            assert_eq!(count("OK"), ops, "{s}");
            assert_eq!(count("NOT_FOUND"), failed, "{s}");
        }
    }
    operations
}

/// Latencies are integers but the average, and ordered.
fn check_latencies(m: &BTreeMap<(String, String), f64>, s: &str) {
    let (min, avg, max) = (
        get(m, s, "MinLatency(us)"),
        get(m, s, "AverageLatency(us)"),
        get(m, s, "MaxLatency(us)"),
    );
    assert!(min <= avg && avg <= max, "{s}: {min} {avg} {max}");
    for metric in [
        "MinLatency(us)",
        "MaxLatency(us)",
        "95thPercentileLatency(us)",
    ] {
        assert_eq!(get(m, s, metric).fract(), 0.0, "{s} {metric}: integers");
    }
    let (p95, p99) = (
        get(m, s, "95thPercentileLatency(us)"),
        get(m, s, "99thPercentileLatency(us)"),
    );
    assert!(min <= p95 && p95 <= p99 && p99 <= max, "{s}: {p95} {p99}");
}

/// A status line: `yyyy-MM-dd HH:mm:ss:SSS N sec: M operations; ...`;
/// returns M.
fn status_operations(line: &str) -> u64 {
    let (date, rest) = line.split_at(23.min(line.len()));
    let shape: String = date
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99 99:99:99:999", "{line:?}");
    let rest = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line:?}"));
    let (secs, rest) = rest
        .split_once(" sec: ")
        .unwrap_or_else(|| panic!("{line:?}"));
    secs.parse::<u64>().unwrap();
    let (ops, rest) = rest
        .split_once(" operations; ")
        .unwrap_or_else(|| panic!("{line:?}"));
    if !rest.is_empty() {
        assert!(rest.contains(" current ops/sec; "), "{line:?}");
        assert!(rest.contains(": Count="), "{line:?}");
    }
    ops.parse().unwrap()
}

fn run_ok(args: &[&str]) -> Output {
    let out = o3_bench_within(args, LIMIT);
    assert!(
        out.status.success(),
        "o3-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn db_arg(dir: &Path) -> PathBuf {
    dir.join("db")
}

#[test]
fn ycsb_command_shape_prints_what_a_ycsb_parser_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let (w, db) = (workload_a(), db.to_str().unwrap().to_string());
    let common = ["-P", &w, "-p", "recordcount=500", "--db", &db];
    let load: Vec<&str> = ["ycsb", "load"]
        .iter()
        .copied()
        .chain(common)
        .chain(["-threads", "2"])
        .collect();
    let out = run_ok(&load);
    let m = parse_ycsb(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(check_ycsb_result(&m), 500.0);
    assert_eq!(sections(&m), ["INSERT"]);

    // The command: 3000 operations at 2000 ops/s take 1.5 s, so
    // the 1-second status interval gives a line mid-run and one at the end.
    let run: Vec<&str> = ["ycsb", "run"]
        .iter()
        .copied()
        .chain(common)
        .chain([
            "-p",
            "operationcount=3000",
            "-threads",
            "2",
            "-target",
            "2000",
        ])
        .chain(["-s", "-p", "status.interval=1"])
        .collect();
    let out = run_ok(&run);
    let m = parse_ycsb(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(check_ycsb_result(&m), 3000.0);
    assert_eq!(sections(&m), ["READ", "UPDATE"]);
    // Each thread's 1500th operation starts 1499 / 1000 s after the start
    // at the earliest, so the schedule bounds the throughput from above.
    let throughput = get(&m, "OVERALL", "Throughput(ops/sec)");
    assert!(
        throughput <= 2000.0 * 3000.0 / 2998.0 + 1e-6,
        "{throughput}"
    );

    let stderr = String::from_utf8_lossy(&out.stderr);
    let status: Vec<u64> = stderr.lines().map(status_operations).collect();
    assert!(status.len() >= 2, "{stderr}");
    assert!(status.windows(2).all(|w| w[0] <= w[1]), "{status:?}");
    assert_eq!(status.last(), Some(&3000), "{stderr}");
}

#[test]
fn run_on_a_missing_or_empty_database_fails_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_arg(dir.path());
    let (w, db_s) = (workload_a(), db.to_str().unwrap());
    let run = [
        "ycsb",
        "run",
        "-P",
        &w,
        "-p",
        "operationcount=20",
        "--db",
        db_s,
    ];
    let out = o3_bench(&run);
    assert_one_line_error(&out, &["no database at", "ycsb load", "o3.allowempty"]);
    assert!(!db.exists(), "a refused run creates nothing");

    let allowed: Vec<&str> = run.iter().copied().chain(["--allow_empty"]).collect();
    let out = run_ok(&allowed);
    let m = parse_ycsb(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(check_ycsb_result(&m), 20.0);
    // On an empty database every read is NOT_FOUND, measured as READ-FAILED.
    assert_eq!(
        get(&m, "READ", "Return=NOT_FOUND"),
        get(&m, "READ-FAILED", "Operations")
    );

    // The allowed run wrote its updates: not empty now, so a run works; a
    // database with nothing in it is refused as empty.
    let out = o3_bench(&run);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty_dir = tempfile::tempdir().unwrap();
    let empty_db = db_arg(empty_dir.path());
    let empty_s = empty_db.to_str().unwrap();
    let readonly = ["-p", "readproportion=1", "-p", "updateproportion=0"];
    let first: Vec<&str> = ["ycsb", "run", "-P", &w, "--db", empty_s, "--allow_empty"]
        .into_iter()
        .chain(readonly)
        .collect();
    run_ok(&first);
    let again = ["ycsb", "run", "-P", &w, "--db", empty_s];
    assert_one_line_error(&o3_bench(&again), &["is empty", "ycsb load"]);
}

#[test]
fn a_bad_p_value_is_blamed_on_the_p_flag() {
    let w = workload_a();
    for (p, needle) in [
        ("fieldlength=0", "-p fieldlength=0"),
        ("recordcount=ten", "-p recordcount=ten"),
        ("readproportion=0.9", "-p readproportion=0.9"),
        (
            "requestdistribution=normal",
            "-p requestdistribution=normal",
        ),
    ] {
        let out = o3_bench(&["ycsb", "run", "-P", &w, "-p", p]);
        assert_one_line_error(&out, &[needle]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("workloada"), "{p}: {stderr}");
    }
    let out = o3_bench(&["ycsb", "run", "-P", &w, "-threads", "0"]);
    assert_one_line_error(&out, &["-threads 0", "threadcount"]);
}
