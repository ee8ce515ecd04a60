//! Feeds arbitrary bytes to the SST footer decoder and to `Table::open` over
//! an in-memory file (`docs/sst_format.md`): they must never panic and never
//! allocate beyond the file's size; an opened table must survive a lookup and
//! a full scan.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use o3_storage::env::RandomAccessFile;
use o3_storage::iterator::InternalIterator;
use o3_storage::sst::{FOOTER_LEN, Footer, Table};
use o3_storage::{Error, Result};

struct MemFile(Vec<u8>);

impl RandomAccessFile for MemFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or_else(|| {
                Error::io(
                    "fuzz",
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past end"),
                )
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

fuzz_target!(|data: &[u8]| {
    let tail = &data[data.len().saturating_sub(FOOTER_LEN)..];
    let _ = Footer::decode(tail, data.len() as u64, "fuzz");
    let Ok(table) = Table::open(Arc::new(MemFile(data.to_vec())), "fuzz".into(), None) else {
        return;
    };
    let table = Arc::new(table);
    let _ = table.get(b"k", &o3_storage::key::make_lookup_key(b"k", 1));
    let mut it = table.iter(false);
    let mut r = it.seek_to_first();
    let mut steps = 0usize;
    while r.is_ok() && it.valid() {
        r = it.next();
        steps += 1;
        assert!(steps <= data.len(), "scan did not terminate");
    }
});
