//! Feeds arbitrary bytes to the log reader (`docs/wal_format.md`): it must
//! never panic, never loop forever and never allocate beyond the input.
//! The first byte picks the log number (0..4) so that inputs can carry
//! fragments that pass the log-number check and reach the checksum and
//! sequence logic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o3_storage::wal::LogReader;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, log)) = data.split_first() else {
        return;
    };
    let mut reader = LogReader::from_bytes(log.to_vec(), u64::from(selector % 4), "fuzz".into());
    while let Ok(Some((record, offset))) = reader.read_record() {
        assert!(offset < log.len() as u64);
        assert!(record.len() <= log.len());
    }
    let _ = reader.torn_tail();
});
