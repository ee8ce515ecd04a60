//! Decoders of the manifest never panic on arbitrary bytes, and every
//! single-byte flip of an encoded edit inside a manifest log is an error or
//! decodes to the edit that was written (never a different edit).

use o3_storage::key::{ValueKind, make_internal_key};
use o3_storage::range_del::RangeTombstone;
use o3_storage::version::{FileMeta, VersionEdit};
use o3_storage::wal::LogReader;
use proptest::prelude::*;

fn sample_edit(n: u64) -> VersionEdit {
    VersionEdit {
        shard_splits: Some(vec![b"m".to_vec()]),
        log_number: Some(n),
        next_file_number: Some(n + 10),
        last_sequence: Some(n * 100),
        shard_flushed: vec![(0, n * 50)],
        deleted_files: vec![(1, n + 1)],
        new_files: vec![(
            1,
            FileMeta {
                number: n + 2,
                size: 1234,
                smallest: make_internal_key(b"a", 1, ValueKind::Value),
                largest: make_internal_key(b"z", 9, ValueKind::Tombstone),
                smallest_seq: 1,
                largest_seq: 9,
                entries: 5,
                tombstones: 1,
                shard: 0,
                created_ms: 77,
            },
        )],
        new_range_tombstones: vec![(
            0,
            RangeTombstone {
                start: b"c".to_vec(),
                end: b"f".to_vec(),
                seq: n * 100 - 1,
            },
        )],
        deleted_range_tombstones: vec![(0, n * 10)],
        ..VersionEdit::default()
    }
}

fn manifest_bytes(edits: &[VersionEdit]) -> Vec<u8> {
    use o3_storage::env::{FaultInjectingFs, Storage};
    let fs = FaultInjectingFs::new();
    let dir = std::path::Path::new("/m");
    fs.create_dir_all(dir).unwrap();
    let path = dir.join("MANIFEST-000001");
    let mut w = o3_storage::wal::LogWriter::new(fs.create(&path).unwrap(), 1);
    for e in edits {
        w.add_record(&e.encode()).unwrap();
    }
    w.sync().unwrap();
    fs.read_all(&path).unwrap()
}

fn read_edits(bytes: Vec<u8>) -> o3_storage::Result<Vec<VersionEdit>> {
    let mut r = LogReader::from_bytes(bytes, 1, "MANIFEST-000001".into());
    r.set_strict_tail(true);
    let mut out = Vec::new();
    while let Some((rec, off)) = r.read_record()? {
        out.push(VersionEdit::decode(&rec, "MANIFEST-000001", off)?);
    }
    Ok(out)
}

#[test]
fn every_flip_is_an_error_or_harmless() {
    let edits: Vec<_> = (1..5).map(sample_edit).collect();
    let bytes = manifest_bytes(&edits);
    assert_eq!(read_edits(bytes.clone()).unwrap(), edits);
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            match read_edits(b) {
                Ok(got) => assert_eq!(got, edits, "flip {mask:#x} at byte {i} changed the edits"),
                Err(e) => {
                    assert!(
                        e.is_corruption(),
                        "flip at {i}: not a corruption error: {e}"
                    );
                    assert!(
                        e.to_string().contains("MANIFEST-000001"),
                        "flip at {i}: {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_cut_last_record_is_a_torn_tail_not_an_error() {
    let edits: Vec<_> = (1..4).map(sample_edit).collect();
    let bytes = manifest_bytes(&edits);
    let last_start = manifest_bytes(&edits[..2]).len();
    for cut in last_start + 1..bytes.len() {
        let got = read_edits(bytes[..cut].to_vec()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(got, edits[..2], "cut at {cut}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn edit_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = VersionEdit::decode(&bytes, "fuzz", 0);
    }

    #[test]
    fn manifest_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read_edits(bytes);
    }
}
