//! The table's bloom filter over user keys, blocked by cache line
//! (`docs/sst_format.md`, "Filter block"): each key picks one 64-byte line and
//! sets all its probes inside it, so a lookup costs one cache miss.

use bytes::Bytes;

use crate::error::{Error, Result};

const LINE_BYTES: usize = 64;
const LINE_BITS: u64 = 512;
/// `num_probes: u8 | num_lines: u32`.
const FILTER_TAIL: usize = 5;
const MAX_PROBES: u8 = 30;
/// Multiplier that derives successive probe positions from one 32-bit hash.
const PROBE_MUL: u32 = 0x9E37_79B9;

/// The 64-bit hash every filter uses for a user key.
#[inline]
pub fn bloom_hash(user_key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(user_key)
}

#[inline]
fn line_of(hash: u64, num_lines: u32) -> usize {
    (((hash >> 32) * num_lines as u64) >> 32) as usize
}

/// Collects the hashes of a table's distinct user keys and encodes the filter.
#[derive(Debug)]
pub struct BloomBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl BloomBuilder {
    pub fn new(bits_per_key: u32) -> BloomBuilder {
        BloomBuilder {
            bits_per_key,
            hashes: Vec::new(),
        }
    }

    /// Record a user key; the caller adds each distinct key once.
    pub fn add_key(&mut self, user_key: &[u8]) {
        self.hashes.push(bloom_hash(user_key));
    }

    /// Encode the filter block into `out` (cleared first).
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        let bits = self.hashes.len() as u64 * self.bits_per_key as u64;
        let num_lines = bits.div_ceil(LINE_BITS).clamp(1, u32::MAX as u64) as u32;
        let num_probes = (self.bits_per_key * 69 / 100).clamp(1, MAX_PROBES as u32) as u8;
        out.clear();
        out.resize(num_lines as usize * LINE_BYTES, 0);
        for &h in &self.hashes {
            let line = &mut out[line_of(h, num_lines) * LINE_BYTES..][..LINE_BYTES];
            let mut x = h as u32;
            for _ in 0..num_probes {
                x = x.wrapping_mul(PROBE_MUL);
                let bit = (x >> 23) as usize;
                line[bit / 8] |= 1 << (bit % 8);
            }
        }
        out.push(num_probes);
        out.extend_from_slice(&num_lines.to_le_bytes());
    }
}

/// One filter line, aligned so that it occupies exactly one cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; LINE_BYTES]);

/// A decoded filter block. Its lines are copied into cache-line-aligned
/// memory: a block read from a file lands at an arbitrary address, where
/// most lines would straddle two cache lines and a probe would cost two
/// misses instead of one.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    /// At most `u32::MAX` lines (the count is stored as a u32).
    lines: Box<[Line]>,
    num_probes: u8,
}

impl BloomFilter {
    /// Check the filter block's framing (`offset` is its file offset, for
    /// errors).
    pub fn new(data: Bytes, location: &str, offset: u64) -> Result<BloomFilter> {
        let corrupt = |reason: String| Error::corruption(location, offset, reason);
        let Some(tail) = data.len().checked_sub(FILTER_TAIL) else {
            return Err(corrupt(format!(
                "filter block of {} bytes is shorter than its tail",
                data.len()
            )));
        };
        let num_probes = data[tail];
        let mut n = [0u8; 4];
        n.copy_from_slice(&data[tail + 1..]);
        let num_lines = u32::from_le_bytes(n);
        if !(1..=MAX_PROBES).contains(&num_probes) {
            return Err(corrupt(format!(
                "filter has {num_probes} probes (valid: 1..={MAX_PROBES})"
            )));
        }
        if num_lines == 0 || num_lines as u64 * LINE_BYTES as u64 != tail as u64 {
            return Err(corrupt(format!(
                "filter declares {num_lines} lines but holds {tail} bytes of lines"
            )));
        }
        let lines = data[..tail]
            .chunks_exact(LINE_BYTES)
            .map(|c| {
                let mut line = Line([0; LINE_BYTES]);
                line.0.copy_from_slice(c);
                line
            })
            .collect();
        Ok(BloomFilter { lines, num_probes })
    }

    /// False only when `user_key` is certainly not in the table.
    #[inline]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(bloom_hash(user_key))
    }

    /// Start loading the line [`BloomFilter::may_contain_hash`] will read
    /// for `hash`, so the miss overlaps the caller's other work.
    #[inline]
    pub fn prefetch_hash(&self, hash: u64) {
        if let Some(line) = self.lines.get(line_of(hash, self.lines.len() as u32)) {
            crate::prefetch::prefetch_ptr(line.0.as_ptr());
        }
    }

    /// [`BloomFilter::may_contain`] for a precomputed [`bloom_hash`].
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        let Some(Line(line)) = self.lines.get(line_of(hash, self.lines.len() as u32)) else {
            return true;
        };
        let mut x = hash as u32;
        for _ in 0..self.num_probes {
            x = x.wrapping_mul(PROBE_MUL);
            let bit = (x >> 23) as usize;
            if line[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_of(n: u32, bits: u32) -> BloomFilter {
        let mut b = BloomBuilder::new(bits);
        for i in 0..n {
            b.add_key(format!("present-{i}").as_bytes());
        }
        let mut out = Vec::new();
        b.finish_into(&mut out);
        BloomFilter::new(Bytes::from(out), "t", 0).unwrap()
    }

    #[test]
    fn no_false_negatives_and_low_false_positive_rate() {
        let f = filter_of(10_000, 10);
        assert!((0..10_000).all(|i| f.may_contain(format!("present-{i}").as_bytes())));
        let fp = (0..10_000)
            .filter(|i| f.may_contain(format!("absent-{i}").as_bytes()))
            .count();
        assert!(fp < 200, "false positive rate {fp}/10000 at 10 bits/key");
    }

    #[test]
    fn empty_filter_rejects_everything() {
        let f = filter_of(0, 10);
        assert!(!f.may_contain(b"x"));
    }

    #[test]
    fn bad_framing_is_corruption() {
        let mut out = Vec::new();
        BloomBuilder::new(10).finish_into(&mut out);
        for cut in 0..out.len() {
            assert!(BloomFilter::new(Bytes::copy_from_slice(&out[..cut]), "t", 0).is_err());
        }
        let mut bad = out.clone();
        bad[64] = 0;
        assert!(BloomFilter::new(Bytes::from(bad), "t", 0).is_err());
    }
}
