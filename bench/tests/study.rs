//! `o3-bench study` end to end: bad strategy names fail with one line listing
//! the valid names; a small study writes its table, JSON and plot with one
//! row per strategy; `--simulate` compares simulator and engine.

mod support;

use support::{assert_one_line_error, o3_bench, o3_bench_ok, read_json};

#[test]
fn unknown_strategy_names_fail_listing_the_valid_ones() {
    let out = o3_bench(&["study", "--strategies", "leveling,sideways"]);
    assert_one_line_error(
        &out,
        &[
            "sideways",
            "leveling",
            "tiering",
            "one-leveling",
            "lazy-leveling",
        ],
    );
    let out = o3_bench(&["study", "--strategies", "one-leveling:picker=newest"]);
    assert_one_line_error(&out, &["newest", "tombstone-density", "round-robin"]);
    let out = o3_bench(&["study", "--strategies", "tiering:trigger=never"]);
    assert_one_line_error(&out, &["never", "sorted-run-count"]);
    let out = o3_bench(&["study", "--strategies", "tiering:colour=red"]);
    assert_one_line_error(&out, &["colour", "tombstone_ttl_ms"]);
}

#[test]
fn small_study_reports_every_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("study.json");
    let plots = dir.path().join("plots");
    let stdout = o3_bench_ok(&[
        "--json",
        json.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "study",
        "--db",
        dir.path().to_str().unwrap(),
        "--strategies",
        "leveling;one-leveling:picker=tombstone-density,trigger=level-saturation+tombstone-ttl,tombstone_ttl_ms=200",
        "--num",
        "6000",
        "--write_buffer_size",
        "65536",
        "--target_file_size",
        "32768",
        "--level_base",
        "131072",
    ]);
    assert!(stdout.contains("sorted runs"), "{stdout}");
    let doc = read_json(&json);
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert!(r["write_amplification"].as_f64().unwrap() >= 1.0, "{r}");
        assert!(r["space_amplification"].as_f64().unwrap() > 0.5, "{r}");
        let d = &r["delete_persistence"];
        assert!(d["deletes"].as_u64().unwrap() > 0, "{r}");
        assert!(d["persisted"].as_u64().unwrap() <= d["deletes"].as_u64().unwrap());
    }
    let svg = std::fs::read_to_string(plots.join("study-tradeoff.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 2);
    // Each database was removed after its run.
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("o3-study-")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn simulate_compares_simulator_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sim.json");
    let stdout = o3_bench_ok(&[
        "--json",
        json.to_str().unwrap(),
        "study",
        "--simulate",
        "--db",
        dir.path().to_str().unwrap(),
        "--strategies",
        "leveling,tiering",
        "--flushes",
        "12",
        "--entries_per_flush",
        "1000",
        "--target_file_size",
        "32768",
        "--level_base",
        "131072",
    ]);
    assert!(stdout.contains("engine WA"), "{stdout}");
    let doc = read_json(&json);
    let rows = doc["agreement"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for a in rows {
        let sim = a["simulated_write_amplification"].as_f64().unwrap();
        let eng = a["engine_write_amplification"].as_f64().unwrap();
        assert!(sim >= 1.0 && eng >= 1.0, "{a}");
        assert!((a["ratio"].as_f64().unwrap() - sim / eng).abs() < 1e-9);
    }
}
