//! Several threads insert into one memtable at once
//! (`Memtable::insert_concurrent`): every acknowledged entry is found, in
//! internal-key order, live and in the sealed image (checked against a
//! `BTreeMap` model); readers racing the inserts never miss an entry
//! inserted before their lookup; sealing waits for inserts in progress and
//! refuses later ones; a full arena refuses an entry and loses none.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use o3_storage::Error;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{self, ValueKind};
use o3_storage::memtable::{Memtable, MemtableImage};

const THREADS: u64 = 4;

/// (user key, sequence) → (kind, value), in the memtable's order once
/// turned into internal keys: user key ascending, sequence descending.
type Model = BTreeMap<Position, Entry>;
type Position = (Vec<u8>, std::cmp::Reverse<u64>);
type Entry = (ValueKind, Vec<u8>);

/// The entry thread `t` writes as its `i`-th: sequences interleave across
/// threads (`t + 1 + THREADS * i`), keys repeat across threads and rounds so
/// that nodes land next to each other's, values vary in length.
fn entry(t: u64, i: u64) -> (Vec<u8>, u64, ValueKind, Vec<u8>) {
    let seq = t + 1 + THREADS * i;
    let key = format!("key{:04}", (seq * 7919) % 500).into_bytes();
    let kind = if seq.is_multiple_of(11) {
        ValueKind::Tombstone
    } else {
        ValueKind::Value
    };
    let value = match kind {
        ValueKind::Tombstone => Vec::new(),
        _ => format!("v{seq}:{}", "x".repeat((seq % 40) as usize)).into_bytes(),
    };
    (key, seq, kind, value)
}

/// Insert `per_thread` entries from each of `THREADS` threads at once; the
/// model of what was acknowledged (every insert must succeed).
fn insert_from_threads(mem: &Memtable, per_thread: u64) -> Model {
    let start = Barrier::new(THREADS as usize);
    let models: Vec<Model> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let mut model = Model::new();
                    for i in 0..per_thread {
                        let (k, seq, kind, v) = entry(t, i);
                        mem.insert_concurrent(&k, seq, kind, &v)
                            .unwrap_or_else(|e| panic!("insert seq {seq}: {e}"));
                        model.insert((k, std::cmp::Reverse(seq)), (kind, v));
                    }
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    models.into_iter().flatten().collect()
}

/// Every entry of `it` in order, as the model's items.
fn collect(it: &mut dyn InternalIterator) -> Vec<(Position, Entry)> {
    it.seek_to_first().unwrap();
    let mut out = Vec::new();
    while it.valid() {
        let parsed = key::parse_internal_key(it.key()).unwrap();
        out.push((
            (parsed.user_key.to_vec(), std::cmp::Reverse(parsed.sequence)),
            (parsed.kind, it.value().to_vec()),
        ));
        it.next().unwrap();
    }
    out
}

/// The newest entry of `user_key` at or below `snapshot` in the model.
fn model_get(model: &Model, user_key: &[u8], snapshot: u64) -> Option<(u64, ValueKind, Vec<u8>)> {
    model
        .range((user_key.to_vec(), std::cmp::Reverse(snapshot))..)
        .next()
        .filter(|((k, _), _)| k.as_slice() == user_key)
        .map(|((_, s), (kind, v))| (s.0, *kind, v.clone()))
}

#[test]
fn concurrent_inserts_keep_every_entry_in_order_live_and_sealed() {
    let mem = Arc::new(Memtable::new(4 << 20, 3).unwrap());
    let model = insert_from_threads(&mem, 3000);
    let expected: Vec<_> = model.clone().into_iter().collect();
    assert_eq!(mem.entries(), expected.len() as u64);
    assert_eq!(collect(&mut mem.iter()), expected, "live order");
    assert_eq!(mem.smallest_seq(), 1);
    assert_eq!(mem.largest_seq(), THREADS * 3000);
    // Lookups at several snapshots agree with the model.
    for snapshot in [5, 777, 6001, u64::MAX >> 9] {
        for k in 0..500u64 {
            let user_key = format!("key{k:04}").into_bytes();
            let got = mem
                .get(&user_key, snapshot)
                .map(|e| (e.sequence, e.kind, e.value.to_vec()));
            assert_eq!(
                got,
                model_get(&model, &user_key, snapshot),
                "key{k:04} at {snapshot}"
            );
        }
    }
    mem.seal().unwrap();
    let image = MemtableImage::open(mem.image_bytes().unwrap(), "test image").unwrap();
    assert_eq!(image.header().entries, expected.len() as u64);
    assert_eq!(collect(&mut image.iter()), expected, "image order");
}

/// The same entries inserted by four threads at once and by one thread in
/// reverse order give the same sealed contents (metamorphic: the order in
/// which nodes are linked changes nothing a reader sees).
#[test]
fn the_order_of_concurrent_inserts_does_not_change_the_contents() {
    let a = Memtable::new(1 << 20, 0).unwrap();
    let model = insert_from_threads(&a, 500);
    let b = Memtable::new(1 << 20, 0).unwrap();
    for i in (0..500).rev() {
        for t in (0..THREADS).rev() {
            let (k, seq, kind, v) = entry(t, i);
            b.insert_concurrent(&k, seq, kind, &v).unwrap();
        }
    }
    let expected: Vec<_> = model.into_iter().collect();
    a.seal().unwrap();
    b.seal().unwrap();
    for mem in [&a, &b] {
        let image = MemtableImage::open(mem.image_bytes().unwrap(), "test image").unwrap();
        assert_eq!(collect(&mut image.iter()), expected);
    }
}

/// Readers look up entries whose insert has returned while four threads
/// keep inserting next to them: each must be found.
#[test]
fn readers_find_every_acknowledged_entry_while_threads_insert() {
    let mem = Memtable::new(8 << 20, 0).unwrap();
    let per_thread = 4000u64;
    let acknowledged: Vec<AtomicU64> = (0..THREADS).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut checked = 0u64;
            let mut round = 0u64;
            while !done.load(Ordering::Acquire) || checked == 0 {
                round += 1;
                for (t, ack) in acknowledged.iter().enumerate() {
                    let n = ack.load(Ordering::Acquire);
                    if n == 0 {
                        continue;
                    }
                    let i = (round * 31) % n;
                    let (k, seq, kind, v) = entry(t as u64, i);
                    // At the entry's own sequence nothing newer hides it.
                    let got = mem.get(&k, seq).expect("an acknowledged entry is missing");
                    assert_eq!(
                        (got.sequence, got.kind, got.value),
                        (seq, kind, v.as_slice())
                    );
                    checked += 1;
                }
            }
            checked
        });
        for (t, ack) in acknowledged.iter().enumerate() {
            let mem = &mem;
            s.spawn(move || {
                for i in 0..per_thread {
                    let (k, seq, kind, v) = entry(t as u64, i);
                    mem.insert_concurrent(&k, seq, kind, &v).unwrap();
                    ack.store(i + 1, Ordering::Release);
                }
            });
        }
        // The scope joins the writers before `done` can be set by them, so
        // wait for them here through the counters.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while acknowledged
            .iter()
            .any(|a| a.load(Ordering::Acquire) < per_thread)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the writers did not finish in time"
            );
            std::thread::yield_now();
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0, "the reader checked nothing");
    });
    assert_eq!(mem.entries(), THREADS * per_thread);
}

/// Threads insert until refused while the memtable is sealed under them:
/// the image holds exactly the acknowledged entries, and every insert after
/// the first refusal of a thread is refused too.
#[test]
fn sealing_waits_for_inserts_in_progress_and_refuses_later_ones() {
    for round in 0..20u64 {
        let mem = Memtable::new(16 << 20, 0).unwrap();
        let started = AtomicU64::new(0);
        let model: Model = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (mem, started) = (&mem, &started);
                    s.spawn(move || {
                        let mut model = Model::new();
                        let mut refused = false;
                        for i in 0..20_000 {
                            let (k, seq, kind, v) = entry(t, i);
                            started.fetch_add(1, Ordering::Relaxed);
                            match mem.insert_concurrent(&k, seq, kind, &v) {
                                Ok(()) => {
                                    assert!(!refused, "an insert succeeded after a refusal");
                                    model.insert((k, std::cmp::Reverse(seq)), (kind, v));
                                }
                                Err(Error::InvalidArgument(m)) => {
                                    assert!(m.contains("sealed"), "{m}");
                                    refused = true;
                                }
                                Err(e) => panic!("unexpected error: {e}"),
                            }
                        }
                        model
                    })
                })
                .collect();
            // Seal once some inserts ran (bounded: the threads stop by
            // themselves after 20,000 inserts each).
            while started.load(Ordering::Relaxed) < 1000 + round * 500 {
                std::thread::yield_now();
            }
            mem.seal().unwrap();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let image = MemtableImage::open(mem.image_bytes().unwrap(), "test image").unwrap();
        let expected: Vec<_> = model.into_iter().collect();
        assert_eq!(
            image.header().entries,
            expected.len() as u64,
            "round {round}"
        );
        assert_eq!(collect(&mut image.iter()), expected, "round {round}");
    }
}

/// A small arena fills: some inserts are refused with `ImageFull`, every
/// acknowledged one is in the image, and nothing else is.
#[test]
fn a_full_arena_refuses_entries_and_keeps_every_acknowledged_one() {
    let mem = Memtable::new(64 << 10, 0).unwrap();
    let (model, refused): (Vec<Model>, Vec<u64>) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let mem = &mem;
                s.spawn(move || {
                    let mut model = Model::new();
                    let mut refused = 0;
                    for i in 0..2000 {
                        let (k, seq, kind, v) = entry(t, i);
                        match mem.insert_concurrent(&k, seq, kind, &v) {
                            Ok(()) => {
                                model.insert((k, std::cmp::Reverse(seq)), (kind, v));
                            }
                            Err(Error::ImageFull { .. }) => refused += 1,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                    (model, refused)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    assert!(refused.iter().sum::<u64>() > 0, "the arena never filled");
    assert!(mem.free_bytes() < Memtable::ENTRY_OVERHEAD_BOUND + 100);
    let expected: Vec<_> = model
        .into_iter()
        .flatten()
        .collect::<Model>()
        .into_iter()
        .collect();
    mem.seal().unwrap();
    let image = MemtableImage::open(mem.image_bytes().unwrap(), "test image").unwrap();
    assert_eq!(collect(&mut image.iter()), expected);
}

/// Every thread appends ascending keys, so all of them link at the same
/// tail node at once: the most contended case for the compare-and-swap.
#[test]
fn threads_appending_at_the_same_tail_lose_no_entry() {
    for round in 0..10u64 {
        let mem = Arc::new(Memtable::new(8 << 20, 0).unwrap());
        let per_thread = 10_000u64;
        let start = Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (mem, start) = (&mem, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..per_thread {
                        let n = i * THREADS + t;
                        let k = format!("tail{n:08}");
                        mem.insert_concurrent(k.as_bytes(), n + 1, ValueKind::Value, b"v")
                            .unwrap();
                    }
                });
            }
        });
        let mut it = mem.iter();
        let got = collect(&mut it);
        assert_eq!(
            got.len() as u64,
            THREADS * per_thread,
            "round {round}: entries lost"
        );
        for (n, ((k, seq), _)) in got.iter().enumerate() {
            assert_eq!(k, format!("tail{n:08}").as_bytes(), "round {round}");
            assert_eq!(seq.0, n as u64 + 1, "round {round}");
        }
    }
}
