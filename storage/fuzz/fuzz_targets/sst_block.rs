//! Feeds arbitrary bytes to the SST block decoders (`docs/sst_format.md`):
//! the stored-block decoder (trailer, checksum, lz4, zstd) and the key/value block
//! iterator. They must never panic, never loop and never allocate beyond the
//! input's bounds. The first byte picks the decoder and splits off a seek
//! target, so inputs can reach the iterator without a valid checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o3_storage::iterator::InternalIterator;
use o3_storage::sst::{Block, decode_stored_block};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector >> 1).min(rest.len());
    let (target, body) = rest.split_at(split);
    let block = if selector & 1 == 0 {
        Block::new(body.to_vec().into(), "fuzz", 0)
    } else {
        decode_stored_block(body.to_vec(), 0, "fuzz").and_then(|bytes| Block::new(bytes, "fuzz", 0))
    };
    let Ok(block) = block else {
        return;
    };
    let mut it = block.iter("fuzz".into(), 0);
    let mut steps = 0usize;
    let mut r = it.seek_to_first();
    while r.is_ok() && it.valid() {
        assert!(it.value().len() <= block.len());
        r = it.next();
        steps += 1;
        assert!(steps <= block.len(), "forward scan did not terminate");
    }
    let mut r = it.seek_to_last();
    steps = 0;
    while r.is_ok() && it.valid() {
        r = it.prev();
        steps += 1;
        assert!(steps <= block.len(), "backward scan did not terminate");
    }
    if it.seek(target).is_err() {
        assert!(!it.valid());
    }
});
