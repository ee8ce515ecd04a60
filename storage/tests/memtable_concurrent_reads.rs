//! A memtable is read while its writer inserts: a lookup of a key inserted
//! earlier must find it whatever the writer links meanwhile. A search that
//! found the node before its target and then re-read that node's successor
//! could return a node linked in between (one that sorts before the
//! target) and report the key missing; a database read then fell through
//! to an older memtable or table and returned a stale value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use o3_storage::key::ValueKind;
use o3_storage::memtable::Memtable;

/// Keys cycle through 300 names, so later inserts keep landing just before
/// and after the first one; each round starts the cycle at another key.
#[test]
fn a_lookup_racing_inserts_always_finds_an_inserted_key() {
    for round in 0..300u64 {
        let mem = Arc::new(Memtable::new(8 << 10, 0).unwrap());
        let inserted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let first = format!("key{:05}", round % 300);
        let reader = {
            let (mem, inserted, stop, first) =
                (mem.clone(), inserted.clone(), stop.clone(), first.clone());
            std::thread::spawn(move || {
                let mut misses = 0;
                let mut lookups = 0u64;
                while !stop.load(Ordering::Acquire) || lookups == 0 {
                    if inserted.load(Ordering::Acquire) >= 1 {
                        lookups += 1;
                        if mem.get(first.as_bytes(), u64::MAX >> 9).is_none() {
                            misses += 1;
                        }
                    }
                }
                misses
            })
        };
        let mut seq = 1;
        loop {
            let key = format!("key{:05}", (round + seq - 1) % 300);
            let value = seq.to_string();
            if mem
                .insert(key.as_bytes(), seq, ValueKind::Value, value.as_bytes())
                .is_err()
            {
                break;
            }
            inserted.store(seq, Ordering::Release);
            seq += 1;
        }
        stop.store(true, Ordering::Release);
        let misses = reader.join().unwrap();
        assert_eq!(misses, 0, "round {round}: {first} missed {misses} times");
    }
}
