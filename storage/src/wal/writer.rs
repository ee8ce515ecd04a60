//! Appending records to a log file (`docs/wal_format.md`, "Writing").

use super::{BLOCK_SIZE, FragmentType, HEADER_LEN, encode_header};
use crate::env::WritableFile;
use crate::error::{Error, Result};

/// Zeros used to fill a block tail that is too small for a fragment header.
const PADDING: [u8; HEADER_LEN] = [0; HEADER_LEN];

/// Writes records to one log file.
///
/// Invariant: after every successful call the file holds a valid log (a
/// sequence of whole records). After any failed call the file may end in a
/// partial fragment, so the writer refuses all later calls with
/// [`Error::Poisoned`]: appending more records after a partial fragment would
/// turn a harmless torn tail into mid-log corruption, and a failed sync must
/// never be retried and ignored.
pub struct LogWriter {
    file: Box<dyn WritableFile>,
    log_number: u64,
    /// Bytes in the file; the position in the current block is `len % BLOCK_SIZE`.
    len: u64,
    /// Why the writer stopped accepting calls, if it did.
    failed: Option<String>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("log_number", &self.log_number)
            .field("len", &self.len)
            .field("failed", &self.failed)
            .finish()
    }
}

impl LogWriter {
    /// Start writing log `log_number` at the end of `file` (normally empty).
    pub fn new(file: Box<dyn WritableFile>, log_number: u64) -> LogWriter {
        let len = file.len();
        LogWriter {
            file,
            log_number,
            len,
            failed: None,
        }
    }

    /// Append one record; returns the file offset of its first fragment
    /// header, which is also the offset [`super::LogReader`] reports for it.
    pub fn add_record(&mut self, payload: &[u8]) -> Result<u64> {
        self.check_usable()?;
        let result = self.write_fragments(payload);
        self.note_failure(result)
    }

    /// Hand appended bytes to the operating system (survives a process crash).
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.file.flush();
        self.note_failure(result)
    }

    /// Make appended bytes durable (survives a machine crash).
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.file.sync();
        self.note_failure(result)
    }

    /// Bytes written to the file so far, padding included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The log number stamped into (and checked in) every fragment.
    pub fn log_number(&self) -> u64 {
        self.log_number
    }

    fn write_fragments(&mut self, payload: &[u8]) -> Result<u64> {
        let mut rest = payload;
        let mut record_start = None;
        loop {
            let leftover = BLOCK_SIZE - self.block_offset();
            if leftover < HEADER_LEN {
                self.append(&PADDING[..leftover])?;
            }
            let is_first = record_start.is_none();
            let start = *record_start.get_or_insert(self.len);
            let room = BLOCK_SIZE - self.block_offset() - HEADER_LEN;
            let (piece, after) = rest.split_at(room.min(rest.len()));
            let kind = match (is_first, after.is_empty()) {
                (true, true) => FragmentType::Full,
                (true, false) => FragmentType::First,
                (false, false) => FragmentType::Middle,
                (false, true) => FragmentType::Last,
            };
            let header = encode_header(kind, self.log_number, piece);
            self.append(&header)?;
            self.append(piece)?;
            rest = after;
            if rest.is_empty() {
                return Ok(start);
            }
        }
    }

    fn block_offset(&self) -> usize {
        (self.len % BLOCK_SIZE as u64) as usize
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.append(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(Error::Poisoned(format!(
                "log {} refuses writes after an earlier failure: {reason}",
                self.log_number
            ))),
        }
    }

    fn note_failure<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{FaultInjectingFs, FaultPlan, Storage};
    use std::path::Path;

    fn writer_on(fs: &FaultInjectingFs, log_number: u64) -> LogWriter {
        fs.create_dir_all(Path::new("/db")).unwrap();
        LogWriter::new(fs.create(Path::new("/db/000001.log")).unwrap(), log_number)
    }

    #[test]
    fn fragments_never_cross_blocks_and_tails_are_padded() {
        let fs = FaultInjectingFs::new();
        let mut w = writer_on(&fs, 1);
        // Leave exactly HEADER_LEN - 1 bytes in the first block.
        let first = BLOCK_SIZE - 2 * HEADER_LEN + 1;
        assert_eq!(w.add_record(&vec![7; first]).unwrap(), 0);
        assert_eq!(w.len(), (BLOCK_SIZE - HEADER_LEN + 1) as u64);
        // The next record starts in the next block, after zero padding.
        assert_eq!(w.add_record(b"x").unwrap(), BLOCK_SIZE as u64);
        let bytes = fs.read_all(Path::new("/db/000001.log")).unwrap();
        assert!(
            bytes[BLOCK_SIZE - HEADER_LEN + 1..BLOCK_SIZE]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(bytes[BLOCK_SIZE + 6], FragmentType::Full as u8);
    }

    #[test]
    fn exact_header_room_gives_an_empty_first_fragment() {
        let fs = FaultInjectingFs::new();
        let mut w = writer_on(&fs, 3);
        w.add_record(&vec![1; BLOCK_SIZE - 2 * HEADER_LEN]).unwrap();
        let start = w.add_record(b"spans").unwrap();
        assert_eq!(start, (BLOCK_SIZE - HEADER_LEN) as u64);
        let bytes = fs.read_all(Path::new("/db/000001.log")).unwrap();
        let h = &bytes[start as usize..start as usize + HEADER_LEN];
        assert_eq!(u16::from_le_bytes([h[4], h[5]]), 0);
        assert_eq!(h[6], FragmentType::First as u8);
        assert_eq!(bytes[BLOCK_SIZE + 6], FragmentType::Last as u8);
    }

    #[test]
    fn a_failed_append_poisons_the_writer() {
        let fs = FaultInjectingFs::new();
        let mut w = writer_on(&fs, 1);
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(1),
            ..FaultPlan::default()
        });
        // Header append succeeds, payload append fails.
        assert!(w.add_record(b"abc").is_err());
        fs.set_plan(FaultPlan::default());
        assert!(matches!(w.add_record(b"abc"), Err(Error::Poisoned(_))));
        assert!(matches!(w.sync(), Err(Error::Poisoned(_))));
    }
}
