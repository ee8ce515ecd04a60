//! The benchmarks run on small databases and do what db_bench's do.

use super::*;
use crate::report::OpKind;

#[test]
fn keys_are_big_endian_then_zero_padded() {
    let mut k = [0u8; 16];
    make_key(&mut k, 0x0102_0304_0506_0708);
    assert_eq!(&k[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&k[8..], b"00000000");
    let mut short = [0u8; 4];
    make_key(&mut short, 0x0102_0304_0506_0708);
    assert_eq!(short, [5, 6, 7, 8]);
    // Numeric order is key order.
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    make_key(&mut a, 255);
    make_key(&mut b, 256);
    assert!(a < b);
}

#[test]
fn summary_line_has_db_bench_layout() {
    let result = PhaseResult {
        name: "fillrandom".into(),
        threads: 1,
        seconds: 2.0,
        ops: 400_000,
        ops_per_sec: 200_000.0,
        mb_per_sec: 19.9,
        latency: vec![],
        timeline: vec![],
        timeline_ops_per_sec: vec![],
    };
    let r = PhaseReport {
        result,
        message: Some("(1 of 2 found)".into()),
        work: Default::default(),
        db_stats: crate::test_support::empty_stats(),
        offload_rates: crate::report::OffloadRates::default(),
        service: None,
        background_errors: BackgroundErrors::default(),
    };
    assert_eq!(
        summary_line(&r),
        "fillrandom   :       5.000 micros/op 200000 ops/sec;   19.9 MB/s (1 of 2 found)"
    );
}

/// As in db_bench: a process whose first benchmark is readrandom replays
/// the key sequence of a fillrandom process with the same seed (every
/// read finds its key), while a later benchmark draws new keys (a random
/// fill of `num` draws holds ~63% of the key range).
#[test]
fn seeds_follow_db_bench_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::EngineArgs {
        db: Some(dir.path().join("db")),
        ..Default::default()
    }
    .resolve("unused")
    .unwrap();
    let args = |benchmarks: &str, existing: bool| {
        DbBenchArgs {
            benchmarks: Some(benchmarks.into()),
            num: Some(5000),
            use_existing_db: Some(existing),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    };
    run(&args("fillrandom", false), &engine, false).unwrap();
    let reports = run(&args("readrandom,seekrandom", true), &engine, false)
        .unwrap()
        .phases;
    assert_eq!(reports[0].message.as_deref(), Some("(5000 of 5000 found)"));
    let seek = reports[1].message.as_deref().unwrap();
    let found: u64 = seek[1..].split(' ').next().unwrap().parse().unwrap();
    assert!((2800..3500).contains(&found), "{seek}");
}

/// compact is one operation in one thread that leaves one sorted run
/// with every key still readable.
#[test]
fn compact_leaves_one_sorted_run_in_one_operation() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::small_test_engine(dir.path());
    let args = DbBenchArgs {
        benchmarks: Some("fillseq,compact,readrandom".into()),
        num: Some(3000),
        threads: Some(2),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let reports = run(&args, &engine, false).unwrap().phases;
    let compact = &reports[1];
    assert_eq!(compact.result.name, "compact");
    assert_eq!((compact.result.ops, compact.result.threads), (1, 1));
    // Everything in one sorted run below level 0 (the strategy's last
    // level in use).
    let levels = &compact.db_stats.levels;
    assert_eq!(levels[0].files, 0, "{levels:?}");
    assert_eq!(
        levels.iter().filter(|l| l.files > 0).count(),
        1,
        "{levels:?}"
    );
    let files = compact.message.as_deref().unwrap();
    assert!(files.starts_with("(files per level after: 0 "), "{files}");
    assert_eq!(reports[2].message.as_deref(), Some("(6000 of 6000 found)"));
}

/// deleterange issues --num / --range_tombstone_width deletions per
/// thread by default (or --max_num_range_tombstones), and the reads
/// after it see the keys gone.
#[test]
fn deleterange_deletes_ranges_that_later_reads_miss() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::small_test_engine(dir.path());
    let args = |benchmarks: &str, max: Option<u64>| {
        DbBenchArgs {
            benchmarks: Some(benchmarks.into()),
            num: Some(3000),
            range_tombstone_width: Some(30),
            max_num_range_tombstones: max,
            ..Default::default()
        }
        .resolve()
        .unwrap()
    };
    let reports = run(
        &args("fillseq,deleterange,readrandom", None),
        &engine,
        false,
    )
    .unwrap()
    .phases;
    assert_eq!(reports[1].result.ops, 100, "3000 keys / 30 per range");
    assert_eq!(
        reports[1].message.as_deref(),
        Some("(100 ranges of 30 keys)")
    );
    assert!(reports[1].db_stats.range_tombstones > 0);
    let found = reports[2].message.as_deref().unwrap();
    let found: u64 = found[1..].split(' ').next().unwrap().parse().unwrap();
    // ~63% of the keys are deleted; far from all and far from none.
    assert!((600..1800).contains(&found), "{found} of 3000 found");

    let reports = run(&args("fillseq,deleterange", Some(7)), &engine, false)
        .unwrap()
        .phases;
    assert_eq!(reports[1].result.ops, 7);
}

#[test]
fn each_benchmark_runs_on_a_small_database() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::small_test_engine(dir.path());
    let cfg = DbBenchArgs {
        benchmarks: Some(
            "fillseq,readseq,fillrandom,overwrite,readrandom,seekrandom,readwhilewriting,deleterandom".into(),
        ),
        num: Some(2000),
        threads: Some(2),
        seek_nexts: Some(3),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let outcome = run(&cfg, &engine, false).unwrap();
    outcome.check().unwrap();
    let reports = outcome.phases;
    assert_eq!(reports.len(), 8);
    // fillseq writes every key once per thread; readseq then sees all.
    assert_eq!(reports[0].result.ops, 4000);
    assert_eq!(
        reports[1].result.ops, 4000,
        "readseq: 2 threads x 2000 keys"
    );
    let read = &reports[4];
    assert_eq!(read.result.ops, 4000);
    let found = read.message.as_deref().unwrap();
    assert!(found.ends_with("of 4000 found)"), "{found}");
    assert!(
        !found.starts_with("(0 "),
        "a filled database has keys: {found}"
    );
    assert!(reports[0].db_stats.user_bytes > 0);
}

/// `(found, attempted)` from a `(F of A found...)` message.
fn found_of(r: &PhaseReport) -> (u64, u64) {
    let m = r.message.as_deref().unwrap();
    let (found, rest) = m.trim_start_matches('(').split_once(" of ").unwrap();
    let attempted = rest.split(' ').next().unwrap();
    (found.parse().unwrap(), attempted.parse().unwrap())
}

/// multireadrandom draws the keys readrandom draws with the same seed, so
/// point gets are its oracle: it must find exactly as many. A random fill
/// holds ~63% of the key range, so the batches mix hits and misses; with
/// the fill's own seed every key looked up exists and all are found.
#[test]
fn multireadrandom_finds_exactly_the_keys_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::small_test_engine(dir.path());
    let args = |benchmarks: &str, reads: i64, batch_size: u64, seed: u64| {
        DbBenchArgs {
            benchmarks: Some(benchmarks.into()),
            num: Some(5000),
            reads: Some(reads),
            batch_size: Some(batch_size),
            use_existing_db: Some(benchmarks != "fillrandom"),
            seed: Some(seed),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    };
    let only = |cfg: &DbBenchConfig| {
        let outcome = run(cfg, &engine, false).unwrap();
        outcome.check().unwrap();
        outcome.phases.into_iter().next().unwrap()
    };
    only(&args("fillrandom", -1, 1, 5));
    let point = only(&args("readrandom", 3003, 1, 77));
    let multi = only(&args("multireadrandom", 3003, 7, 77));
    let (found, attempted) = found_of(&multi);
    assert_eq!((found, attempted), found_of(&point));
    assert_eq!(attempted, 3003);
    assert!((1500..2500).contains(&found), "{:?}", multi.message);
    // Throughput counts keys; latency is per multi_get call.
    assert_eq!(multi.result.ops, 3003);
    let calls: Vec<(OpKind, u64)> = multi
        .result
        .latency
        .iter()
        .map(|l| (l.op, l.count))
        .collect();
    assert_eq!(calls, vec![(OpKind::MultiGet, 429)]);
    // Only whole batches, as db_bench: 3005 reads in batches of 7 are 3003.
    let short = only(&args("multireadrandom", 3005, 7, 77));
    assert_eq!(found_of(&short), (found, 3003));
    // The fill's seed replays its keys: every one exists.
    let replay = only(&args("multireadrandom", 5000, 10, 5));
    assert_eq!(found_of(&replay), (5000, 5000));
}

/// Run `benchmarks` with `args` on the engine in `dir`.
fn run_with(dir: &std::path::Path, benchmarks: &str, args: DbBenchArgs) -> Vec<PhaseReport> {
    let engine = crate::engine::small_test_engine(dir);
    let cfg = DbBenchArgs {
        benchmarks: Some(benchmarks.into()),
        ..args
    }
    .resolve()
    .unwrap();
    let outcome = run(&cfg, &engine, false).unwrap();
    outcome.check().unwrap();
    outcome.phases
}

/// readmissing's keys are never written: nothing is found on a full
/// database; updaterandom on a full database finds every key it updates;
/// fillsync writes --num / 1000 per thread.
#[test]
fn readmissing_finds_nothing_and_updaterandom_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let args = DbBenchArgs {
        num: Some(3000),
        threads: Some(2),
        ..Default::default()
    };
    let r = run_with(
        dir.path(),
        "fillseq,readmissing,updaterandom,readrandom,fillsync",
        args,
    );
    assert_eq!(r[1].message.as_deref(), Some("(0 of 6000 found)"));
    assert_eq!(r[2].message.as_deref(), Some("( updates:6000 found:6000)"));
    assert_eq!(r[2].result.ops, 6000);
    let kinds: Vec<OpKind> = r[2].result.latency.iter().map(|l| l.op).collect();
    assert_eq!(kinds, vec![OpKind::ReadModifyWrite]);
    // The updates overwrote existing keys: all still there.
    assert_eq!(r[3].message.as_deref(), Some("(6000 of 6000 found)"));
    assert_eq!(
        (r[4].result.name.as_str(), r[4].result.ops),
        ("fillsync", 6)
    );
}

/// readreverse walks from the last key back to the first: each thread
/// stops after --reads entries or at the first key, whichever comes first,
/// so with reads above the key count it visits every key once, and the
/// database holds exactly as many distinct keys as readseq sees.
#[test]
fn readreverse_visits_every_key_from_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_with(
        dir.path(),
        "fillrandom,readseq,readreverse",
        DbBenchArgs {
            num: Some(4000),
            reads: Some(10_000),
            ..Default::default()
        },
    );
    let distinct = r[1].result.ops;
    assert!((2000..3000).contains(&distinct), "{distinct}");
    assert_eq!(r[2].result.ops, distinct);

    // Shorter than the database: stops after --reads, and the keys seen
    // are the last ones in descending order.
    let engine = crate::engine::small_test_engine(dir.path());
    let db = engine.open().unwrap();
    let all: Vec<Vec<u8>> = db
        .scan(.., true)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(all.len() as u64, distinct);
    assert!(
        all.windows(2).all(|w| w[0] > w[1]),
        "scan order is descending"
    );
    drop(db);
    let cfg = DbBenchArgs {
        benchmarks: Some("readreverse".into()),
        num: Some(4000),
        reads: Some(100),
        use_existing_db: Some(true),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let r = run(&cfg, &engine, false).unwrap().phases;
    assert_eq!(r[0].result.ops, 100);
}

/// flush leaves nothing in the memtables; waitforcompaction leaves no
/// flush or compaction due; levelstats lists the database's files.
#[test]
fn flush_wait_and_levelstats_do_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    // Large memtables: nothing is flushed until asked.
    let mut engine = crate::engine::EngineArgs {
        db: Some(dir.path().join("db")),
        write_buffer_size: Some(64 << 20),
        ..Default::default()
    }
    .resolve("unused")
    .unwrap();
    let cfg = |b: &str| {
        DbBenchArgs {
            benchmarks: Some(b.into()),
            num: Some(5000),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    };
    let r = run(&cfg("fillrandom,flush"), &engine, false)
        .unwrap()
        .phases;
    let files = |s: &o3_compute::DbStats| s.levels.iter().map(|l| l.files).sum::<usize>();
    assert_eq!(files(&r[0].db_stats), 0, "a 64 MiB memtable holds the fill");
    assert_eq!(r[1].db_stats.unflushed_memtables, 0);
    assert!(files(&r[1].db_stats) >= 1);
    assert_eq!(
        r[1].db_stats.flush_bytes,
        r[1].db_stats.levels.iter().map(|l| l.bytes).sum::<u64>()
    );

    // Small memtables and a low level-0 trigger: flushes and compactions
    // to wait for.
    engine.write_buffer_size = 64 << 10;
    engine.compaction.levels.l0_compaction_trigger = 2;
    let more = DbBenchArgs {
        benchmarks: Some("fillrandom,waitforcompaction".into()),
        num: Some(20_000),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let phases = run(&more, &engine, false).unwrap().phases;
    let after = &phases[1].db_stats;
    assert_eq!(after.unflushed_memtables, 0);
    assert!(after.levels[0].files < 2, "{:?}", after.levels);
    // Compactions or moves of level-0 files down (trivial moves).
    assert!(
        after.flushes >= 2 && after.compactions + after.trivial_moves > 0,
        "the fill left work to wait for: {after:?}"
    );

    let db = engine.open().unwrap();
    let out = run_one(Benchmark::LevelStats, &cfg("levelstats"), &db, false, 1).unwrap();
    let text = out.text.unwrap();
    let rows: Vec<Vec<u64>> = text
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), db.stats().levels.len());
    assert_eq!(
        rows.iter().map(|r| r[1]).sum::<u64>() as usize,
        files(&db.stats())
    );
    assert!(rows.iter().enumerate().all(|(i, r)| r[0] == i as u64));
}

/// mixgraph mixes the three operations by ratio on the keys written, and
/// its counts add up to the operations done.
#[test]
fn mixgraph_mixes_gets_puts_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_with(
        dir.path(),
        "fillseq,mixgraph",
        DbBenchArgs {
            num: Some(4000),
            mix_get_ratio: Some(0.5),
            mix_put_ratio: Some(0.3),
            mix_seek_ratio: Some(0.2),
            mix_max_scan_len: Some(20),
            key_dist_a: Some(0.002312),
            key_dist_b: Some(0.3467),
            ..Default::default()
        },
    );
    let m = r[1].message.as_deref().unwrap();
    let num = |label: &str| -> u64 {
        let rest = &m[m.find(label).unwrap() + label.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (gets, puts, seeks) = (num("Gets:"), num("Puts:"), num("Seek:"));
    assert_eq!(gets + puts + seeks, 4000, "{m}");
    assert!(
        (1700..2300).contains(&gets) && (1000..1400).contains(&puts),
        "{m}"
    );
    // Every key exists (fillseq), so every get and seek finds its key.
    assert_eq!(num("of "), gets + seeks, "{m}");
    assert_eq!(num("in "), gets + seeks, "{m}");
    let kinds: Vec<OpKind> = r[1].result.latency.iter().map(|l| l.op).collect();
    assert_eq!(kinds, vec![OpKind::Read, OpKind::Write, OpKind::Seek]);
}

/// --report_interval_seconds writes db_bench's CSV: the header, then one
/// line per interval with seconds rising and a non-negative rate.
#[test]
fn report_file_has_a_header_and_rising_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("report.csv");
    run_with(
        dir.path(),
        "fillseq,readrandom",
        DbBenchArgs {
            num: Some(2000),
            duration: Some(3),
            report_interval_seconds: Some(1),
            report_file: Some(csv.clone()),
            ..Default::default()
        },
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("secs_elapsed,interval_qps"));
    let rows: Vec<(u64, u64)> = lines
        .map(|l| {
            let (s, q) = l.split_once(',').unwrap();
            (s.parse().unwrap(), q.parse().unwrap())
        })
        .collect();
    assert!(rows.len() >= 2, "{text}");
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "{text}");
    assert!(rows.iter().any(|r| r.1 > 0), "readrandom did reads: {text}");
}

/// The STATISTICS block: names unique, every ticker RocksDB names shows
/// the DbStats counter of the same meaning, and the histograms count the
/// operations measured.
#[test]
fn statistics_dump_matches_the_engine_counters() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::small_test_engine(dir.path());
    let cfg = DbBenchArgs {
        benchmarks: Some("fillrandom".into()),
        num: Some(3000),
        statistics: Some(true),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let db = engine.open_empty().unwrap();
    let out = run_one(Benchmark::FillRandom, &cfg, &db, false, 1).unwrap();
    db.flush().unwrap();
    let stats = db.stats();
    let dump = statistics::dump(&stats, out.latencies.as_ref().unwrap());
    let mut lines = dump.lines();
    assert_eq!(lines.next(), Some("STATISTICS:"));
    let mut names = std::collections::HashSet::new();
    let mut tickers = std::collections::HashMap::new();
    let mut histograms = std::collections::HashMap::new();
    for l in lines {
        let name = l.split(' ').next().unwrap().to_string();
        assert!(names.insert(name.clone()), "{name} twice");
        if let Some(v) = l.strip_prefix(&format!("{name} COUNT : ")) {
            tickers.insert(name, v.parse::<u64>().unwrap());
        } else {
            let count = l
                .split(" COUNT : ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            histograms.insert(name, count.parse::<u64>().unwrap());
        }
    }
    assert_eq!(tickers["rocksdb.bytes.written"], stats.user_bytes);
    assert_eq!(tickers["rocksdb.wal.bytes"], stats.wal_bytes);
    assert_eq!(tickers["rocksdb.flush.write.bytes"], stats.flush_bytes);
    assert_eq!(
        tickers["rocksdb.compact.write.bytes"],
        stats.compaction_bytes_written
    );
    assert_eq!(tickers["rocksdb.block.cache.hit"], stats.block_cache_hits);
    assert_eq!(tickers["o3.flushes"], stats.flushes);
    assert!(stats.user_bytes > 0 && stats.flushes > 0);
    assert_eq!(
        histograms,
        [("rocksdb.db.write.micros".to_string(), 3000)].into()
    );
}
