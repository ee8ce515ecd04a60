//! Feeds arbitrary bytes to the memtable image reader
//! (`docs/memtable_image_format.md`): `MemtableImage::open` must return an
//! error or an image whose lookups, scans and `value_at` stay in bounds and
//! terminate. When the first byte is odd, the rest gets a correct checksum
//! (and `used`) before opening, so inputs reach the structural validation
//! instead of stopping at the CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::user_key;
use o3_storage::memtable::{HEADER_LEN, MemtableImage, decode_entry, store_checksum};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= HEADER_LEN {
        let used = bytes.len() as u32;
        bytes[16..20].copy_from_slice(&used.to_le_bytes());
        store_checksum(&mut bytes);
    }
    let _ = decode_entry(&bytes, usize::from(mode >> 1), "fuzz node", 0);
    let Ok(image) = MemtableImage::open(&bytes, "fuzz") else {
        return;
    };
    let entries = image.header().entries;
    let mut it = image.iter();
    let mut seen = 0u64;
    let mut ok = it.seek_to_first().is_ok();
    while ok && it.valid() {
        seen += 1;
        assert!(seen <= entries, "scan longer than the entry count");
        let entry = image.get(user_key(it.key()), u64::MAX);
        let entry = entry.expect("a scanned key must be found");
        assert!(image.value_at(entry.offset).is_ok());
        ok = it.next().is_ok();
    }
    assert_eq!(seen, entries);
    let mut back = 0u64;
    ok = it.seek_to_last().is_ok();
    while ok && it.valid() {
        back += 1;
        assert!(back <= entries, "reverse scan longer than the entry count");
        ok = it.prev().is_ok();
    }
    for offset in (0..bytes.len() as u32).step_by(4).take(256) {
        let _ = image.value_at(offset);
    }
    let _ = image.key_range();
});
