//! Model, metamorphic and crash tests of concurrent writers: four threads
//! each write their own seeded-random batches (puts of small and large
//! values, deletes, range deletions) while memtables rotate and flushes and
//! compactions run, and every batch also sets its writer's marker key to
//! the number of the writer's batches written so far.
//!
//! Writer `w` owns the block `key(50w) .. key(50w + 50)`: its marker, then
//! its data keys. A writer's range deletions stay inside its block, and no
//! writer touches another's, so at any snapshot a writer's block must be
//! exactly its model after some whole number of its batches, the number
//! its marker holds (batches are atomic and applied in order). With three
//! shards the blocks of writers 1 and 2 span a split key, so their batches
//! cross shards.
//!
//! A failure names the seed; `O3_CONCURRENT_MODEL_SEED` replays another.

mod common;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{KEY_SPACE, Model, full_scan, key, tiny_options};
use o3_compute::{Db, Snapshot, WriteBatch, WriteOptions};
use o3_storage::env::{FaultInjectingFs, LocalFs};

const WRITERS: usize = 4;
/// Keys per writer: the marker and `BLOCK - 1` data keys.
const BLOCK: usize = KEY_SPACE / WRITERS;
const BATCHES: usize = 300;
/// Rounds a reader checks at most (each round reads every writer's block).
const MAX_READER_ROUNDS: usize = 100_000;

/// The seed of every writer's batches: `O3_CONCURRENT_MODEL_SEED`, else a
/// fixed one.
fn seed() -> u64 {
    std::env::var("O3_CONCURRENT_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x03c0_ffee)
}

/// Writer `w`'s marker key: the first of its block.
fn marker_key(w: usize) -> Vec<u8> {
    key(w * BLOCK)
}

/// Writer `w`'s data key `j` (`1 <= j < BLOCK`).
fn data_key(w: usize, j: usize) -> Vec<u8> {
    key(w * BLOCK + j)
}

/// Every key writer `w` may hold.
fn block(w: usize) -> Range<Vec<u8>> {
    key(w * BLOCK)..key((w + 1) * BLOCK)
}

/// One operation on a writer's data keys (indexes into its block).
#[derive(Debug, Clone)]
enum Op {
    Put(usize, Vec<u8>),
    Delete(usize),
    /// Delete data keys `a .. b` (`a <= b`; equal deletes nothing).
    DeleteRange(usize, usize),
}

/// A writer's batches, and its model after each number of them:
/// `states[n]` is its block after its first `n` batches.
struct Writer {
    batches: Vec<Vec<Op>>,
    states: Vec<Model>,
}

/// A value of `len` bytes that names the writer, batch and operation when
/// it is long enough to.
fn value(w: usize, n: usize, i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("w{w}.b{n}.o{i}.").into_bytes();
    v.resize(len, b'x');
    v
}

/// Writer `w`'s `BATCHES` batches of 1 to 8 operations: mostly puts (one in
/// 20 of 2-5 KB, so memtables rotate often; the rest up to 200 bytes,
/// empty ones included), some deletes and range deletions of up to 10 keys.
fn batches(w: usize, seed: u64) -> Vec<Vec<Op>> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w as u64));
    (0..BATCHES)
        .map(|n| {
            let ops = rng.random_range(1..=8);
            (0..ops)
                .map(|i| {
                    let j = rng.random_range(1..BLOCK);
                    match rng.random_range(0..20) {
                        0..14 => {
                            let len = if rng.random_ratio(1, 20) {
                                rng.random_range(2000..5000)
                            } else {
                                rng.random_range(0..200)
                            };
                            Op::Put(j, value(w, n, i, len))
                        }
                        14..18 => Op::Delete(j),
                        _ => Op::DeleteRange(j, (j + rng.random_range(0..=10)).min(BLOCK)),
                    }
                })
                .collect()
        })
        .collect()
}

/// What the marker of a writer holds after `n` of its batches.
fn marker_value(n: usize) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Writer `w`'s batch number `n` (counting from 0): its operations in
/// order, then the marker set to `n + 1`.
fn write_batch(w: usize, n: usize, ops: &[Op]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match op {
            Op::Put(j, v) => b.put(&data_key(w, *j), v),
            Op::Delete(j) => b.delete(&data_key(w, *j)),
            Op::DeleteRange(a, e) => b.delete_range(&data_key(w, *a), &data_key(w, *e)),
        }
    }
    b.put(&marker_key(w), &marker_value(n + 1));
    b
}

/// Apply [`write_batch`]`(w, n, ops)` to `model`, operation by operation
/// (a later operation of a batch sees the earlier ones).
fn apply(model: &mut Model, w: usize, n: usize, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(j, v) => {
                model.insert(data_key(w, *j), v.clone());
            }
            Op::Delete(j) => {
                model.remove(&data_key(w, *j));
            }
            Op::DeleteRange(a, e) => {
                model.retain(|k, _| *k < data_key(w, *a) || *k >= data_key(w, *e));
            }
        }
    }
    model.insert(marker_key(w), marker_value(n + 1));
}

/// Every writer's batches from `seed`, with their models.
fn scripted_writers(seed: u64) -> Vec<Writer> {
    (0..WRITERS)
        .map(|w| {
            let batches = batches(w, seed);
            let mut states = vec![Model::new()];
            for (n, ops) in batches.iter().enumerate() {
                let mut next = states[n].clone();
                apply(&mut next, w, n, ops);
                states.push(next);
            }
            Writer { batches, states }
        })
        .collect()
}

/// The whole database when writer `w` has written `counts[w]` batches.
fn union(writers: &[Writer], counts: &[usize]) -> Model {
    writers
        .iter()
        .zip(counts)
        .flat_map(|(writer, &n)| writer.states[n].clone())
        .collect()
}

/// The union of every writer's model after all its batches.
fn final_union(writers: &[Writer]) -> Model {
    union(writers, &[BATCHES; WRITERS])
}

/// How a shortened value reads in a failure message.
fn show(v: &[u8]) -> String {
    let text = String::from_utf8_lossy(&v[..v.len().min(24)]);
    format!("{text:?} ({} bytes)", v.len())
}

/// Panic unless `got == want`, naming the first keys where they differ.
fn assert_same(got: &Model, want: &Model, at: &str) {
    if got == want {
        return;
    }
    let diffs: Vec<String> = got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .take(5)
        .map(|k| {
            format!(
                "{}: got {}, want {}",
                String::from_utf8_lossy(k),
                got.get(k).map_or("nothing".into(), |v| show(v)),
                want.get(k).map_or("nothing".into(), |v| show(v)),
            )
        })
        .collect();
    panic!("{at}: contents differ: {}", diffs.join("; "));
}

/// How many of its batches writer `w` shows (at `snapshot`, else now), by
/// its marker.
fn batches_seen(db: &Db, w: usize, snapshot: Option<&Snapshot>) -> usize {
    let marker = match snapshot {
        Some(s) => db.get_at(&marker_key(w), s),
        None => db.get(&marker_key(w)),
    }
    .expect("read marker");
    marker.map_or(0, |m| {
        let n = String::from_utf8(m)
            .ok()
            .and_then(|t| t.parse().ok())
            .expect("marker holds a batch count");
        assert!(n <= BATCHES, "writer {w}'s marker says {n} batches");
        n
    })
}

/// Writer `w`'s block (at `snapshot`, else now), scanned in the direction
/// asked; panics if the scan is out of order.
fn scan_block(db: &Db, w: usize, reverse: bool, snapshot: Option<&Snapshot>) -> Model {
    let mut pairs = db.scan_at(block(w), reverse, snapshot).expect("scan_at");
    if reverse {
        pairs.reverse();
    }
    assert!(
        pairs.windows(2).all(|p| p[0].0 < p[1].0),
        "writer {w}'s block scanned {} out of order",
        if reverse { "backwards" } else { "forwards" }
    );
    pairs.into_iter().collect()
}

/// Run every writer on its own thread, each writing its batches in order
/// with `opts`; `on_ack(w, n)` runs on writer `w`'s thread once its first
/// `n` batches are acknowledged. Once `power_cut` is set a write may fail
/// (before, a failure panics), and its writer stops there. Returns how many
/// batches each writer had acknowledged.
fn run_writers(
    db: &Db,
    writers: &[Writer],
    opts: WriteOptions,
    on_ack: &(dyn Fn(usize, usize) + Sync),
    power_cut: &AtomicBool,
) -> Vec<usize> {
    // Started together, so the writers' batches interleave from the first.
    let start = Barrier::new(writers.len());
    std::thread::scope(|s| {
        let threads: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(w, writer)| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for (n, ops) in writer.batches.iter().enumerate() {
                        if let Err(e) = db.write_opt(write_batch(w, n, ops), opts) {
                            assert!(
                                power_cut.load(Ordering::Acquire),
                                "writer {w}'s batch {n} failed before any power cut: {e}"
                            );
                            return n;
                        }
                        on_ack(w, n + 1);
                    }
                    BATCHES
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("writer panicked"))
            .collect()
    })
}

/// [`run_writers`] with nothing but writes, none of which may fail.
fn write_everything(db: &Db, writers: &[Writer]) {
    run_writers(
        db,
        writers,
        WriteOptions::default(),
        &|_, _| {},
        &AtomicBool::new(false),
    );
}

/// Check snapshots until `done`: each writer's block equals its model after
/// the batches its marker counts, by forward or backward scans and by point
/// reads, and no writer's count goes down between this reader's snapshots.
/// Returns the rounds checked.
fn reader(db: &Db, writers: &[Writer], done: &AtomicBool, rng_seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let mut last = [0; WRITERS];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rounds = 0;
    while !done.load(Ordering::Acquire) && rounds < MAX_READER_ROUNDS {
        assert!(
            Instant::now() < deadline,
            "the writers did not finish in time"
        );
        let snap = db.snapshot();
        for (w, writer) in writers.iter().enumerate() {
            let n = batches_seen(db, w, Some(&snap));
            let at = format!(
                "writer {w} after {n} batches at snapshot {} (seed {})",
                snap.sequence(),
                seed()
            );
            assert!(n >= last[w], "{at}: went back from {} batches", last[w]);
            last[w] = n;
            let want = &writer.states[n];
            let reverse = rng.random_bool(0.5);
            assert_same(&scan_block(db, w, reverse, Some(&snap)), want, &at);
            // The same state through point reads, of absent keys too.
            let keys: Vec<Vec<u8>> = (0..4)
                .map(|_| key(w * BLOCK + rng.random_range(0..BLOCK)))
                .collect();
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let expected: Vec<Option<Vec<u8>>> =
                keys.iter().map(|k| want.get(k).cloned()).collect();
            let got = db.multi_get_at(&refs, &snap).expect("multi_get_at");
            assert!(got == expected, "{at}: multi_get_at of {keys:?} differs");
            let one = db.get_at(&keys[0], &snap).expect("get_at");
            assert!(one == expected[0], "{at}: get_at of {:?} differs", keys[0]);
        }
        rounds += 1;
    }
    rounds
}

/// Two readers check snapshots while the writers run; at the end the
/// database is every writer's final model, flushes and compactions ran, and
/// a reopen (replaying the group-committed WAL) gives the same contents.
#[test]
fn concurrent_writers_match_their_models_at_every_snapshot() {
    let writers = scripted_writers(seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || tiny_options(Arc::new(LocalFs::new()), 3);
    let db = Db::open(dir.path(), options()).expect("open");
    let done = AtomicBool::new(false);
    let rounds = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (db, writers, done) = (&db, &writers, &done);
                s.spawn(move || reader(db, writers, done, seed() ^ (r + 1)))
            })
            .collect();
        write_everything(&db, &writers);
        done.store(true, Ordering::Release);
        readers
            .into_iter()
            .map(|r| r.join().expect("reader panicked"))
            .sum::<usize>()
    });
    assert!(rounds > 0, "the readers checked nothing");
    let want = final_union(&writers);
    assert_same(
        &full_scan(&db),
        &want,
        &format!("at the end (seed {})", seed()),
    );
    let stats = db.stats();
    assert!(stats.flushes > 0 && stats.compactions > 0, "{stats:?}");
    // Both insert paths ran: writers inserting their own batches at once,
    // and the leader alone (range deletions, values too large to share a
    // memtable with the group).
    assert!(
        stats.parallel_write_groups > 0 && stats.parallel_write_groups < stats.write_groups,
        "{stats:?}"
    );
    assert_eq!(db.background_error(), None);
    // Recovery replays the group-committed WAL records.
    db.close().expect("close");
    let db = Db::open(dir.path(), options()).expect("reopen");
    assert_same(
        &full_scan(&db),
        &want,
        &format!("after reopening (seed {})", seed()),
    );
    db.close().expect("close");
}

const DIR: &str = "/db";

/// A database at [`DIR`] on `fs` with [`tiny_options`] and `shards` shards.
fn open_on(fs: &FaultInjectingFs, shards: usize) -> Db {
    Db::open(DIR, tiny_options(Arc::new(fs.clone()), shards)).expect("open")
}

/// Panic unless the databases built concurrently and sequentially both
/// hold `want`.
fn assert_both_hold(concurrent: &Db, sequential: &Db, want: &Model, at: &str) {
    let got = full_scan(concurrent);
    assert_same(
        &got,
        &full_scan(sequential),
        &format!("concurrent vs sequential, {at}"),
    );
    assert_same(&got, want, &format!("concurrent vs the model, {at}"));
}

/// The same batches written by four threads and by one thread in round
/// robin give the same database, which is the model's, before and after a
/// reopen, with one shard and with three.
#[test]
fn concurrent_and_sequential_writers_build_the_same_database() {
    let writers = scripted_writers(seed());
    let want = final_union(&writers);
    for shards in [1, 3] {
        let (concurrent_fs, sequential_fs) = (FaultInjectingFs::new(), FaultInjectingFs::new());
        let concurrent = open_on(&concurrent_fs, shards);
        write_everything(&concurrent, &writers);
        let sequential = open_on(&sequential_fs, shards);
        // Round robin: every writer's batch n before any writer's n + 1.
        for n in 0..BATCHES {
            for (w, writer) in writers.iter().enumerate() {
                sequential
                    .write(write_batch(w, n, &writer.batches[n]))
                    .expect("write");
            }
        }
        let at = format!("{shards} shards (seed {})", seed());
        assert_eq!(sequential.stats().parallel_write_groups, 0, "{at}");
        assert_both_hold(&concurrent, &sequential, &want, &at);
        concurrent.close().expect("close");
        sequential.close().expect("close");
        let (concurrent, sequential) = (
            open_on(&concurrent_fs, shards),
            open_on(&sequential_fs, shards),
        );
        assert_both_hold(&concurrent, &sequential, &want, &format!("{at}, reopened"));
        concurrent.close().expect("close");
        sequential.close().expect("close");
    }
}

/// Concurrent writers on [`tiny_options`] with three shards, cut off by a
/// power cut when writer 0 has written three quarters of its batches; then
/// a reopen. With `sync`, every writer keeps at least the batches it had
/// acknowledged at the cut. Without, writer 0 calls `sync_wal` halfway
/// through its batches, every writer keeps at least the batches it had
/// acknowledged by then, and the cut keeps a random prefix of every
/// unsynced file tail (so the WAL may end inside a group's records). Either
/// way each writer keeps a whole prefix of its batches (no torn batch,
/// nothing invented), at most the one in flight past its acknowledged ones.
fn power_cut_during_concurrent_writers(sync: bool) {
    let writers = scripted_writers(seed());
    let fs = FaultInjectingFs::new();
    let db = open_on(&fs, 3);
    let acked: [AtomicUsize; WRITERS] = Default::default();
    let acked_now = || -> Vec<usize> { acked.iter().map(|a| a.load(Ordering::Acquire)).collect() };
    let (synced, at_cut) = (OnceLock::new(), OnceLock::new());
    let power_cut = AtomicBool::new(false);
    let on_ack = |w: usize, n: usize| {
        acked[w].store(n, Ordering::Release);
        if w != 0 {
            return;
        }
        if !sync && n == BATCHES / 2 {
            let before = acked_now();
            db.sync_wal().expect("sync_wal");
            synced.set(before).expect("one sync_wal");
        }
        if n == BATCHES * 3 / 4 {
            at_cut.set(acked_now()).expect("one power cut");
            power_cut.store(true, Ordering::Release);
            if sync {
                fs.crash();
            } else {
                fs.crash_keeping_unsynced(seed());
            }
        }
    };
    let written = run_writers(
        &db,
        &writers,
        WriteOptions { sync: Some(sync) },
        &on_ack,
        &power_cut,
    );
    let durable = if sync { &at_cut } else { &synced };
    let durable = durable.get().expect("writer 0 reached the power cut");
    drop(db);
    let db = open_on(&fs, 3);
    let kept: Vec<usize> = (0..WRITERS).map(|w| batches_seen(&db, w, None)).collect();
    for (w, writer) in writers.iter().enumerate() {
        let at = format!(
            "writer {w} after the power cut, {} batches kept of {} acknowledged (seed {})",
            kept[w],
            written[w],
            seed()
        );
        assert!(
            kept[w] >= durable[w],
            "{at}: lost some of the first {}, which were durable",
            durable[w]
        );
        assert!(kept[w] <= written[w] + 1, "{at}: invented batches");
        assert_same(
            &scan_block(&db, w, false, None),
            &writer.states[kept[w]],
            &at,
        );
    }
    let at = format!(
        "after the power cut, {kept:?} batches kept (seed {})",
        seed()
    );
    assert_same(&full_scan(&db), &union(&writers, &kept), &at);
    db.close().expect("close");
}

#[test]
fn synced_concurrent_writers_keep_every_acknowledged_batch_at_a_power_cut() {
    power_cut_during_concurrent_writers(true);
}

#[test]
fn unsynced_concurrent_writers_keep_a_prefix_of_whole_batches_at_a_power_cut() {
    power_cut_during_concurrent_writers(false);
}
