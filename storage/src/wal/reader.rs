//! Reading records back from a log file (`docs/wal_format.md`, "Reading and
//! recovery rules").
//!
//! The reader holds one block in memory at a time; a record grows only by
//! fragments that passed their checksum, so no stored length can make it
//! allocate more than the file holds.

use std::path::PathBuf;
use std::sync::Arc;

use super::{BLOCK_SIZE, FragmentType, HEADER_LEN, fragment_crc};
use crate::env::RandomAccessFile;
use crate::error::{Error, Result};

/// Reads the records of one log file in order.
pub struct LogReader {
    file: Arc<dyn RandomAccessFile>,
    file_size: u64,
    log_number: u64,
    location: String,
    /// The current block (shorter than [`BLOCK_SIZE`] only for the file's last block).
    block: Vec<u8>,
    /// File offset of `block[0]`.
    block_start: u64,
    /// Next unread byte of `block`.
    pos: usize,
    /// File offset of the next block to load.
    next_block: u64,
    state: State,
    /// Which damage may end the log quietly (see [`TailTolerance`]).
    tail: TailTolerance,
    /// The log is known to be durable up to this offset: damage before it,
    /// and a file shorter than it, are errors whatever `tail` allows.
    synced_len: u64,
}

/// Which damage at the end of a log is taken as a torn tail (the end of the
/// log) rather than an error (`docs/wal_format.md`, "Tail tolerance").
/// Damage followed by a valid fragment is an error under every tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TailTolerance {
    /// Any damage with no valid fragment after it: what a crash can leave
    /// when the file system keeps garbage in unsynced space.
    #[default]
    AnyDamage,
    /// Only what an interrupted append leaves: a record, fragment header or
    /// payload cut off by the end of the file, or zero fill. A complete
    /// fragment that fails its checksum (or has a bad type, length or log
    /// number) is an error.
    InterruptedAppend,
    /// None: the log must end at a record boundary (a log that was synced
    /// whole, or a reader that accepts no loss at all).
    Nothing,
}

#[derive(Debug, Clone)]
enum State {
    Reading,
    /// End of log reached; `Some` when a torn tail was dropped.
    Ended(Option<(u64, String)>),
    /// An error was returned; every later call fails too, with the same
    /// kind (corruption, or I/O), since the reader cannot resume mid-record.
    Failed {
        offset: u64,
        message: String,
        corruption: bool,
    },
}

/// What the next fragment position holds.
enum Scan {
    Fragment {
        kind: FragmentType,
        offset: u64,
        payload: std::ops::Range<usize>,
    },
    /// The file ends exactly at a fragment boundary (or inside block padding).
    End,
    /// A fragment that the writer cannot have produced intact.
    Bad { offset: u64, damage: Damage },
}

/// Why a fragment is not valid.
enum Damage {
    Checksum {
        expected: u32,
        actual: u32,
    },
    /// What an interrupted append leaves: the file ends inside a header or
    /// payload, or zero-filled space where a header should be.
    Incomplete(String),
    Other(String),
}

impl Damage {
    fn describe(&self) -> String {
        match self {
            Damage::Checksum { expected, actual } => format!(
                "fragment checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
            ),
            Damage::Incomplete(reason) | Damage::Other(reason) => reason.clone(),
        }
    }
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("location", &self.location)
            .field("log_number", &self.log_number)
            .field("position", &(self.block_start + self.pos as u64))
            .field("state", &self.state)
            .finish()
    }
}

impl LogReader {
    /// Read log `log_number` from `file`; `location` (normally the file path)
    /// is named in every error.
    pub fn new(file: Arc<dyn RandomAccessFile>, log_number: u64, location: String) -> LogReader {
        LogReader {
            file_size: file.size(),
            file,
            log_number,
            location,
            block: Vec::with_capacity(BLOCK_SIZE),
            block_start: 0,
            pos: 0,
            next_block: 0,
            state: State::Reading,
            tail: TailTolerance::AnyDamage,
            synced_len: 0,
        }
    }

    /// Read a log held in memory (tests, fuzzing, logs fetched over the network).
    pub fn from_bytes(bytes: Vec<u8>, log_number: u64, location: String) -> LogReader {
        let file = Arc::new(LogBytes {
            location: PathBuf::from(&location),
            bytes,
        });
        LogReader::new(file, log_number, location)
    }

    /// In strict mode a damaged last record (a complete fragment that fails
    /// its checksum or has a bad type or length) is an error instead of a
    /// torn tail; only what an interrupted append leaves (a cut header or
    /// payload, zero fill) ends the log quietly. The manifest reads this way:
    /// its records are synced before they count, so a damaged last record is
    /// media damage, and dropping it could silently forget durable state.
    pub fn set_strict_tail(&mut self, strict: bool) {
        self.tail = if strict {
            TailTolerance::InterruptedAppend
        } else {
            TailTolerance::AnyDamage
        };
    }

    /// Choose which damage at the end of the log is a torn tail
    /// ([`TailTolerance::AnyDamage`] unless set).
    pub fn set_tail_tolerance(&mut self, tail: TailTolerance) {
        self.tail = tail;
    }

    /// Declare that the log was synced through `len` bytes (for example, a
    /// WAL segment whose length the manifest recorded at a clean close):
    /// then a file shorter than `len`, or damage in a record that starts
    /// before `len`, is an error under every tail tolerance.
    pub fn set_synced_length(&mut self, len: u64) {
        self.synced_len = len;
    }

    /// The next whole record and the file offset of its first fragment;
    /// `Ok(None)` at the end of the log. Mid-log damage is an error
    /// ([`Error::ChecksumMismatch`] or [`Error::Corruption`] with the exact
    /// offset of the bad fragment); after an error every call fails again.
    pub fn read_record(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        match &self.state {
            State::Reading => {}
            State::Ended(_) => return Ok(None),
            State::Failed {
                offset,
                message,
                corruption,
            } => {
                let message = format!("reading stopped at an earlier error: {message}");
                return Err(if *corruption {
                    Error::corruption(&self.location, *offset, message)
                } else {
                    Error::io(&self.location, std::io::Error::other(message))
                });
            }
        }
        let result = self.assemble_record();
        if let Err(e) = &result {
            let offset = match e {
                Error::Corruption { offset, .. } | Error::ChecksumMismatch { offset, .. } => {
                    *offset
                }
                _ => self.block_start + self.pos as u64,
            };
            self.state = State::Failed {
                offset,
                message: e.to_string(),
                corruption: e.is_corruption(),
            };
        }
        result
    }

    /// After `read_record` returned `Ok(None)`: the offset where the valid
    /// log ends and why the bytes after it were dropped, or `None` when the
    /// log ended cleanly.
    pub fn torn_tail(&self) -> Option<(u64, String)> {
        match &self.state {
            State::Ended(torn) => torn.clone(),
            State::Reading | State::Failed { .. } => None,
        }
    }

    /// The log number fragments must carry.
    pub fn log_number(&self) -> u64 {
        self.log_number
    }

    fn assemble_record(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        let mut record = Vec::new();
        let mut record_start: Option<u64> = None;
        loop {
            match self.next_fragment()? {
                Scan::Fragment {
                    kind,
                    offset,
                    payload,
                } => {
                    let bytes = &self.block[payload];
                    match (kind, record_start) {
                        (FragmentType::Full, None) => return Ok(Some((bytes.to_vec(), offset))),
                        (FragmentType::First, None) => {
                            record_start = Some(offset);
                            record.extend_from_slice(bytes);
                        }
                        (FragmentType::Middle, Some(_)) => record.extend_from_slice(bytes),
                        (FragmentType::Last, Some(start)) => {
                            record.extend_from_slice(bytes);
                            return Ok(Some((record, start)));
                        }
                        (FragmentType::Full | FragmentType::First, Some(start)) => {
                            return Err(Error::corruption(
                                &self.location,
                                offset,
                                format!(
                                    "{kind:?} fragment inside the record that starts at offset {start}"
                                ),
                            ));
                        }
                        (FragmentType::Middle | FragmentType::Last, None) => {
                            return Err(Error::corruption(
                                &self.location,
                                offset,
                                format!("{kind:?} fragment without a First fragment before it"),
                            ));
                        }
                    }
                }
                Scan::End => {
                    return match record_start {
                        None => self.end_cleanly(),
                        Some(start) => self.end_in_damage(
                            start,
                            start,
                            None,
                            format!(
                                "the record at offset {start} is cut off by the end of the file \
                                 (its Last fragment is missing)"
                            ),
                        ),
                    };
                }
                Scan::Bad { offset, damage } => {
                    return match self.find_valid_fragment(offset)? {
                        Some(next) => Err(match damage {
                            Damage::Checksum { expected, actual } => Error::ChecksumMismatch {
                                location: self.location.clone(),
                                offset,
                                expected,
                                actual,
                            },
                            Damage::Incomplete(reason) | Damage::Other(reason) => {
                                Error::corruption(
                                    &self.location,
                                    offset,
                                    format!(
                                        "{reason}; a valid fragment follows at offset {next}, \
                                         so this is not a torn tail"
                                    ),
                                )
                            }
                        }),
                        None => {
                            let reason = format!(
                                "{} at offset {offset}, and no valid fragment follows",
                                damage.describe()
                            );
                            self.end_in_damage(
                                record_start.unwrap_or(offset),
                                offset,
                                Some(damage),
                                reason,
                            )
                        }
                    };
                }
            }
        }
    }

    /// The file ends at a record boundary: the end of the log, unless the
    /// log is known to be durable past the end of the file.
    fn end_cleanly(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        if self.file_size < self.synced_len {
            return Err(Error::corruption(
                &self.location,
                self.file_size,
                format!(
                    "the file ends after {} bytes, but it was synced through offset {}: \
                     it was truncated",
                    self.file_size, self.synced_len
                ),
            ));
        }
        self.state = State::Ended(None);
        Ok(None)
    }

    /// The log ends in damage with nothing valid after it. The record that
    /// starts at `valid_end` is dropped as a torn tail when the tail rules
    /// (`wal_format.md`, "Tail tolerance") allow it; otherwise it is an error
    /// at `offset` (the bad fragment, or the cut-off record).
    fn end_in_damage(
        &mut self,
        valid_end: u64,
        offset: u64,
        damage: Option<Damage>,
        reason: String,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        // A record cut off by the end of the file, a header cut off, and
        // zero fill are what an interrupted append leaves; a complete
        // fragment that fails its checks is not.
        let interrupted = matches!(damage, None | Some(Damage::Incomplete(_)));
        let refusal = if valid_end < self.synced_len {
            Some(format!(
                "the log was synced through offset {}, so this is damage, not an unfinished append",
                self.synced_len
            ))
        } else {
            match self.tail {
                TailTolerance::AnyDamage => None,
                TailTolerance::InterruptedAppend if interrupted => None,
                TailTolerance::InterruptedAppend => {
                    Some("an interrupted append cannot cause this".to_string())
                }
                TailTolerance::Nothing => Some("this log may not end in a torn record".to_string()),
            }
        };
        let Some(refusal) = refusal else {
            self.state = State::Ended(Some((valid_end, reason)));
            return Ok(None);
        };
        Err(match damage {
            Some(Damage::Checksum { expected, actual }) => Error::ChecksumMismatch {
                location: self.location.clone(),
                offset,
                expected,
                actual,
            },
            _ => Error::corruption(&self.location, offset, format!("{reason}; {refusal}")),
        })
    }

    /// Advance past the next fragment (or padding) and classify it.
    fn next_fragment(&mut self) -> Result<Scan> {
        loop {
            if self.pos == self.block.len() {
                if !self.load_next_block()? {
                    return Ok(Scan::End);
                }
                continue;
            }
            let offset = self.block_start + self.pos as u64;
            let rest = &self.block[self.pos..];
            if BLOCK_SIZE - self.pos < HEADER_LEN {
                // Block trailer too small for a header: the writer zero-fills it.
                self.pos = self.block.len();
                if rest.iter().any(|&b| b != 0) {
                    return Ok(Scan::Bad {
                        offset,
                        damage: Damage::Other(
                            "non-zero bytes in the zero padding at the end of a block".into(),
                        ),
                    });
                }
                continue;
            }
            if rest.len() < HEADER_LEN {
                self.pos = self.block.len();
                return Ok(Scan::Bad {
                    offset,
                    damage: Damage::Incomplete(format!(
                        "the file ends {} bytes into a fragment header",
                        rest.len()
                    )),
                });
            }
            return Ok(
                match parse_fragment(&self.block, self.pos, self.log_number) {
                    Ok((kind, payload)) => {
                        self.pos = payload.end;
                        Scan::Fragment {
                            kind,
                            offset,
                            payload,
                        }
                    }
                    Err(damage) => {
                        self.pos = self.block.len();
                        Scan::Bad { offset, damage }
                    }
                },
            );
        }
    }

    /// Load the next block; false at the end of the file.
    fn load_next_block(&mut self) -> Result<bool> {
        if self.next_block >= self.file_size {
            return Ok(false);
        }
        self.load_block(self.next_block)?;
        self.next_block += BLOCK_SIZE as u64;
        Ok(true)
    }

    fn load_block(&mut self, start: u64) -> Result<()> {
        // Bounded by BLOCK_SIZE, so the cast cannot truncate.
        let len = (self.file_size - start).min(BLOCK_SIZE as u64) as usize;
        self.block.resize(len, 0);
        self.file.read_exact_at(start, &mut self.block)?;
        self.block_start = start;
        self.pos = 0;
        Ok(())
    }

    /// The offset of a valid fragment of this log after the bad fragment at
    /// `bad`, if there is one anywhere in the file: this decides between a
    /// torn tail (none) and mid-log corruption (some). Reuses the block
    /// buffer, since reading ends either way.
    fn find_valid_fragment(&mut self, bad: u64) -> Result<Option<u64>> {
        let block_size = BLOCK_SIZE as u64;
        let bad_block = bad - bad % block_size;
        let in_block = (bad - bad_block) as usize;
        self.load_block_at(bad_block)?;
        // Probe first where an intact writer put the next fragment: after the
        // bad fragment's stated length, and at the next block's start. These
        // settle single damage without the byte-by-byte search below.
        let after_stated_length = self.block.get(in_block + 4..in_block + 6).map(|len| {
            bad + (HEADER_LEN + usize::from(u16::from_le_bytes([len[0], len[1]]))) as u64
        });
        for probe in [after_stated_length, Some(bad_block + block_size)]
            .into_iter()
            .flatten()
        {
            if probe < self.file_size {
                let probe_block = probe - probe % block_size;
                self.load_block_at(probe_block)?;
                if self.valid_fragment_at((probe - probe_block) as usize) {
                    return Ok(Some(probe));
                }
            }
        }
        let mut start = bad_block;
        let mut first = in_block + 1;
        while start < self.file_size {
            self.load_block_at(start)?;
            let tag = self.log_number.to_le_bytes();
            // Cheap filter: the stored log number must match byte for byte.
            let candidates = self
                .block
                .get(first + 7..)
                .unwrap_or_default()
                .windows(tag.len())
                .enumerate()
                .filter(|(_, stored)| *stored == tag)
                .map(|(i, _)| first + i);
            for p in candidates {
                if parse_fragment(&self.block, p, self.log_number).is_ok() {
                    return Ok(Some(start + p as u64));
                }
            }
            start += block_size;
            first = 0;
        }
        Ok(None)
    }

    /// Load the block at `start` unless it is the one already held.
    fn load_block_at(&mut self, start: u64) -> Result<()> {
        // Blocks are never empty once loaded, so an empty buffer means none is.
        if self.block_start == start && !self.block.is_empty() {
            return Ok(());
        }
        self.load_block(start)
    }

    /// True when a valid fragment of this log starts at `block[p]`.
    fn valid_fragment_at(&self, p: usize) -> bool {
        // Cheap filter first: the stored log number must match byte for byte.
        match self.block.get(p + 7..p + HEADER_LEN) {
            Some(stored) if stored == self.log_number.to_le_bytes() => {
                parse_fragment(&self.block, p, self.log_number).is_ok()
            }
            _ => false,
        }
    }
}

/// Decode and verify the fragment whose header starts at `block[pos]`
/// (the caller guarantees `HEADER_LEN` bytes are there). Returns its type and
/// the payload's range within `block`.
fn parse_fragment(
    block: &[u8],
    pos: usize,
    log_number: u64,
) -> std::result::Result<(FragmentType, std::ops::Range<usize>), Damage> {
    let Some(h) = block.get(pos..pos + HEADER_LEN) else {
        return Err(Damage::Other("truncated fragment header".into()));
    };
    if h.iter().all(|&b| b == 0) {
        return Err(Damage::Incomplete(
            "zero-filled space where a fragment header should be".into(),
        ));
    }
    let Some(kind) = FragmentType::from_byte(h[6]) else {
        return Err(Damage::Other(format!("unknown fragment type {}", h[6])));
    };
    let len = usize::from(u16::from_le_bytes([h[4], h[5]]));
    let start = pos + HEADER_LEN;
    let end = start + len;
    if end > BLOCK_SIZE {
        return Err(Damage::Other(format!(
            "fragment length {len} runs past the end of its block"
        )));
    }
    let expected = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let Some(payload) = block.get(start..end) else {
        let present = block.get(start..).unwrap_or(&[]);
        // If the bytes up to the end of the file verify, the record is
        // complete and its length field is what is damaged.
        if fragment_crc(&h[6..HEADER_LEN], present) == expected {
            return Err(Damage::Other(format!(
                "fragment length field says {len} bytes, but the checksum matches the {} bytes \
                 before the end of the file: the length field is damaged",
                present.len()
            )));
        }
        return Err(Damage::Incomplete(format!(
            "the file ends inside a fragment payload ({} of {len} bytes)",
            present.len()
        )));
    };
    let actual = fragment_crc(&h[6..HEADER_LEN], payload);
    if expected != actual {
        return Err(Damage::Checksum { expected, actual });
    }
    let mut stored_log = [0u8; 8];
    stored_log.copy_from_slice(&h[7..HEADER_LEN]);
    let stored_log = u64::from_le_bytes(stored_log);
    if stored_log != log_number {
        return Err(Damage::Other(format!(
            "stale fragment of log {stored_log} (reading log {log_number})"
        )));
    }
    Ok((kind, start..end))
}

/// A log held in memory, readable like a file.
struct LogBytes {
    location: PathBuf,
    bytes: Vec<u8>,
}

impl RandomAccessFile for LogBytes {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?));
        match range.and_then(|r| self.bytes.get(r)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::io(
                &self.location,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("reading {} bytes at offset {offset}", buf.len()),
                ),
            )),
        }
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}
