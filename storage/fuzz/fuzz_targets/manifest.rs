//! Arbitrary bytes as a manifest: the log reader (strict tail) and the
//! version-edit decoder must return records or typed errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o3_storage::version::VersionEdit;
use o3_storage::wal::LogReader;

fuzz_target!(|data: &[u8]| {
    // Every payload is also decoded directly, to reach the edit decoder
    // without first forging a valid log record.
    let _ = VersionEdit::decode(data, "fuzz", 0);
    let mut reader = LogReader::from_bytes(data.to_vec(), 1, "MANIFEST-000001".to_string());
    reader.set_strict_tail(true);
    while let Ok(Some((record, offset))) = reader.read_record() {
        let _ = VersionEdit::decode(&record, "MANIFEST-000001", offset);
    }
});
