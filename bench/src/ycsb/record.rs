//! A YCSB record as one o3 value.
//!
//! - `fieldlengthdistribution=constant` (YCSB's default): the `fieldcount`
//!   fields of `fieldlength` bytes, back to back; field `i` is at bytes
//!   `[i * fieldlength, (i + 1) * fieldlength)`. No framing, so the value is
//!   exactly `fieldcount * fieldlength` bytes.
//! - `uniform` or `zipfian`: each field's length is drawn from
//!   `minfieldlength..=fieldlength` (YCSB draws one per field), and each
//!   field is preceded by its length as 4 little-endian bytes, so one field
//!   can be found and replaced (YCSB's RocksDB binding frames its fields with
//!   lengths too).
//!
//! Field bytes are random printable characters cut from a buffer filled
//! once per thread.

use rand::Rng;
use rand::rngs::SmallRng;

use crate::ycsb::generator::{Uniform, Zipfian};
use crate::ycsb::spec::{FieldLengthDistribution, WorkloadSpec};

/// Bytes of the length in front of each field of a variable-length record.
const LENGTH_BYTES: usize = 4;

/// Random printable bytes that fields are cut from.
#[derive(Debug)]
struct FieldSource {
    data: Vec<u8>,
}

impl FieldSource {
    fn new(record_len: usize, rng: &mut SmallRng) -> FieldSource {
        let len = (1 << 20).max(2 * record_len);
        FieldSource {
            data: (0..len).map(|_| rng.random_range(b' '..=b'~')).collect(),
        }
    }

    /// `len` bytes at a random offset (`len` is at most half the buffer).
    fn slice(&self, len: usize, rng: &mut SmallRng) -> &[u8] {
        let start = rng.random_range(0..=self.data.len() - len);
        &self.data[start..start + len]
    }
}

/// How each field's length is drawn.
#[derive(Debug, Clone)]
enum FieldLengths {
    Constant(usize),
    Uniform(Uniform),
    Zipfian(Zipfian),
}

impl FieldLengths {
    fn next(&mut self, rng: &mut SmallRng) -> usize {
        match self {
            FieldLengths::Constant(n) => *n,
            FieldLengths::Uniform(g) => g.next(rng) as usize,
            FieldLengths::Zipfian(g) => g.next(rng) as usize,
        }
    }
}

/// Builds new records and records with one field replaced; one per thread.
#[derive(Debug)]
pub struct RecordBuilder {
    source: FieldSource,
    lengths: FieldLengths,
    fieldcount: usize,
    fieldlength: usize,
    /// The record being built (variable-length records only).
    buf: Vec<u8>,
}

impl RecordBuilder {
    pub fn new(s: &WorkloadSpec, rng: &mut SmallRng) -> RecordBuilder {
        let (min, max) = (s.minfieldlength as u64, s.fieldlength as u64);
        let lengths = match s.fieldlengthdistribution {
            FieldLengthDistribution::Constant => FieldLengths::Constant(s.fieldlength),
            FieldLengthDistribution::Uniform => FieldLengths::Uniform(Uniform::new(min, max)),
            FieldLengthDistribution::Zipfian => FieldLengths::Zipfian(Zipfian::new(min, max)),
        };
        RecordBuilder {
            source: FieldSource::new(s.fieldcount * s.fieldlength, rng),
            lengths,
            fieldcount: s.fieldcount,
            fieldlength: s.fieldlength,
            buf: Vec::new(),
        }
    }

    fn framed(&self) -> bool {
        !matches!(self.lengths, FieldLengths::Constant(_))
    }

    /// A new record with every field written.
    pub fn record(&mut self, rng: &mut SmallRng) -> &[u8] {
        if !self.framed() {
            return self.source.slice(self.fieldcount * self.fieldlength, rng);
        }
        self.buf.clear();
        for _ in 0..self.fieldcount {
            let len = self.lengths.next(rng);
            self.buf.extend_from_slice(&(len as u32).to_le_bytes());
            self.buf.extend_from_slice(self.source.slice(len, rng));
        }
        &self.buf
    }

    /// `current` with one random field given a new value, or `None` when
    /// `current` does not have this workload's layout (the caller then
    /// writes a whole new record).
    pub fn with_one_field_replaced(
        &mut self,
        mut current: Vec<u8>,
        rng: &mut SmallRng,
    ) -> Option<Vec<u8>> {
        let f = rng.random_range(0..self.fieldcount);
        if !self.framed() {
            if current.len() != self.fieldcount * self.fieldlength {
                return None;
            }
            let range = f * self.fieldlength..(f + 1) * self.fieldlength;
            current[range].copy_from_slice(self.source.slice(self.fieldlength, rng));
            return Some(current);
        }
        let fields = split_fields(&current, self.fieldcount)?;
        let mut out = Vec::with_capacity(current.len() + self.fieldlength);
        for (i, field) in fields.iter().enumerate() {
            let value = if i == f {
                let len = self.lengths.next(rng);
                self.source.slice(len, rng)
            } else {
                field
            };
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        Some(out)
    }
}

/// The fields of a length-framed record, or `None` unless it holds exactly
/// `count` well-framed fields.
fn split_fields(record: &[u8], count: usize) -> Option<Vec<&[u8]>> {
    let mut fields = Vec::with_capacity(count);
    let mut rest = record;
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<LENGTH_BYTES>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return None;
        }
        let (field, tail) = tail.split_at(len);
        fields.push(field);
        rest = tail;
    }
    rest.is_empty().then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ycsb::properties::Properties;
    use rand::SeedableRng;

    fn builder(text: &str) -> (RecordBuilder, SmallRng) {
        let mut p = Properties::default();
        p.parse(text, "t").unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        (RecordBuilder::new(&p.to_spec("t").unwrap(), &mut rng), rng)
    }

    #[test]
    fn constant_records_are_unframed_and_patched_in_place() {
        let (mut b, mut rng) = builder("recordcount=1\nfieldcount=4\nfieldlength=8\n");
        let r = b.record(&mut rng).to_vec();
        assert_eq!(r.len(), 32);
        let patched = b.with_one_field_replaced(r.clone(), &mut rng).unwrap();
        assert_eq!(patched.len(), 32);
        let changed = (0..4).filter(|i| r[i * 8..i * 8 + 8] != patched[i * 8..i * 8 + 8]);
        assert!(changed.count() <= 1);
        assert!(b.with_one_field_replaced(vec![0; 5], &mut rng).is_none());
    }

    #[test]
    fn variable_field_lengths_stay_in_range_and_vary() {
        for dist in ["uniform", "zipfian"] {
            let (mut b, mut rng) = builder(&format!(
                "recordcount=1\nfieldcount=5\nfieldlength=50\nminfieldlength=10\nfieldlengthdistribution={dist}\n"
            ));
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let r = b.record(&mut rng).to_vec();
                let fields = split_fields(&r, 5).unwrap();
                for f in &fields {
                    assert!((10..=50).contains(&f.len()), "{dist}: {}", f.len());
                    seen.insert(f.len());
                }
                let patched = b.with_one_field_replaced(r.clone(), &mut rng).unwrap();
                let after = split_fields(&patched, 5).unwrap();
                let same = fields.iter().zip(&after).filter(|(a, b)| a == b).count();
                assert!(same >= 4, "{dist}: one field at most changes");
            }
            assert!(seen.len() > 5, "{dist}: lengths vary: {seen:?}");
        }
    }

    #[test]
    fn misframed_records_are_refused() {
        assert!(split_fields(&[3, 0, 0, 0, b'a'], 1).is_none());
        assert!(split_fields(&[1, 0, 0, 0, b'a', b'b'], 1).is_none());
        assert_eq!(split_fields(&[1, 0, 0, 0, b'a'], 1).unwrap(), vec![b"a"]);
    }
}
