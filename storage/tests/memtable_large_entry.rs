//! `Memtable::capacity_for_entry`: a memtable of that capacity takes the
//! entry whatever tower height and cache-line placement it draws, and an
//! entry no 32-bit image can hold gets `None`.

use o3_storage::key::ValueKind;
use o3_storage::memtable::Memtable;

#[test]
fn a_memtable_of_the_computed_capacity_holds_the_entry() {
    for (key_len, value_len) in [(0, 0), (1, 1), (16, 100), (7, 3 << 20), (300, 65_537)] {
        let cap = Memtable::capacity_for_entry(key_len, value_len).expect("fits an image");
        // Each shard seeds a different tower height sequence.
        for shard in 0..64 {
            let m = Memtable::new(cap, shard).expect("memtable");
            let key = vec![b'k'; key_len];
            let value = vec![b'v'; value_len];
            m.insert(&key, 1, ValueKind::Value, &value)
                .unwrap_or_else(|e| panic!("{key_len}/{value_len} in shard {shard}: {e}"));
            m.seal().expect("seal");
            let got = m.get(&key, 1).expect("entry");
            assert_eq!(got.value, &value[..]);
        }
    }
}

#[test]
fn entries_beyond_the_image_limit_have_no_capacity() {
    assert!(Memtable::capacity_for_entry(0, u32::MAX as usize).is_none());
    assert!(Memtable::capacity_for_entry(usize::MAX, 1).is_none());
    let near = u32::MAX as usize - 4096;
    assert!(Memtable::capacity_for_entry(10, near).is_some_and(|c| c <= u32::MAX as usize));
}
