//! [`ThrottledStorage`]: any [`Storage`] slowed down to behave like remote
//! storage (a network volume, a disaggregated storage pool), for
//! experiments on one machine.
//!
//! Cost model ([`RemoteStorageModel`]), chosen to match how remote volumes
//! behave: bytes cross the network at a bounded rate, and every round trip
//! costs a fixed latency.
//! - Reads and writes have separate bandwidths (network links and volume
//!   limits are per direction). Each direction is a token bucket with no
//!   stored burst: an operation's bytes reserve the direction from the later
//!   of now and the end of the previous reservation, for
//!   `bytes / bandwidth`, so the channel never moves bytes faster than
//!   configured, however operations are sized or interleaved across threads
//!   and files.
//! - A positional read pays one latency plus its bytes (a request and its
//!   answer).
//! - An append pays its bytes but no latency: remote volumes pipeline
//!   writes, and only `sync` waits for the remote side to confirm, so `sync`
//!   pays one latency. `flush` is free (the bytes stay on this node).
//! - Every namespace operation (`create`, `open`, `list`, `delete`,
//!   `rename`, `link`, `sync_dir`, `create_dir_all`, `exists`, `file_size`,
//!   `lock`) is one round trip: one latency.
//! - An operation pays before it runs, whether or not it then succeeds (a
//!   refused request still made the round trip).
//!
//! One `ThrottledStorage` is one node's channel to its storage: its clones,
//! and every file opened through them, share its buckets. Give each
//! emulated node its own.
//!
//! Time comes from a [`ThrottleClock`] (`throttle_clock.rs`): real waits,
//! never shorter than computed, or virtual ones that only advance a counter.

use std::fmt;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{
    FileLock, RandomAccessFile, Storage, SystemThrottleClock, ThrottleClock, WritableFile,
};
use crate::error::Result;

/// Latency and bandwidths of emulated remote storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteStorageModel {
    /// Paid once by every round trip (a read, a `sync`, a namespace
    /// operation).
    pub latency: Duration,
    /// Bytes per second read across the channel; `None` = unlimited.
    pub read_bytes_per_sec: Option<NonZeroU64>,
    /// Bytes per second written across the channel; `None` = unlimited.
    pub write_bytes_per_sec: Option<NonZeroU64>,
}

impl RemoteStorageModel {
    /// No added cost.
    pub const UNLIMITED: RemoteStorageModel = RemoteStorageModel {
        latency: Duration::ZERO,
        read_bytes_per_sec: None,
        write_bytes_per_sec: None,
    };

    /// The time `bytes` occupy a direction of `rate` bytes per second,
    /// rounded up to the nanosecond: never faster than configured.
    pub fn transfer_time(rate: Option<NonZeroU64>, bytes: u64) -> Duration {
        let Some(rate) = rate else {
            return Duration::ZERO;
        };
        let scaled = u128::from(bytes) * 1_000_000_000;
        let rate = u128::from(rate.get());
        let nanos = scaled.div_ceil(rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for RemoteStorageModel {
    /// As reported with benchmark results: `latency 500µs, read 125.0 MB/s,
    /// write unlimited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn rate(f: &mut fmt::Formatter<'_>, r: Option<NonZeroU64>) -> fmt::Result {
            match r {
                None => f.write_str("unlimited"),
                Some(r) => write!(f, "{:.1} MB/s", r.get() as f64 / 1e6),
            }
        }
        write!(f, "latency {:?}, read ", self.latency)?;
        rate(f, self.read_bytes_per_sec)?;
        f.write_str(", write ")?;
        rate(f, self.write_bytes_per_sec)
    }
}

/// A [`Storage`] that pays a [`RemoteStorageModel`]'s costs before forwarding
/// each operation to the storage it wraps. Data and errors pass through
/// unchanged.
#[derive(Clone, Debug)]
pub struct ThrottledStorage {
    inner: Arc<dyn Storage>,
    channel: Arc<Channel>,
}

impl ThrottledStorage {
    /// Wrap `inner` with its own channel of `model`, waiting in real time.
    pub fn new(inner: Arc<dyn Storage>, model: RemoteStorageModel) -> Self {
        Self::with_clock(inner, model, Arc::new(SystemThrottleClock::new()))
    }

    /// Wrap `inner` with its own channel of `model`, timed by `clock`.
    pub fn with_clock(
        inner: Arc<dyn Storage>,
        model: RemoteStorageModel,
        clock: Arc<dyn ThrottleClock>,
    ) -> Self {
        ThrottledStorage {
            inner,
            channel: Arc::new(Channel {
                model,
                clock,
                read_free_at: Mutex::new(Duration::ZERO),
                write_free_at: Mutex::new(Duration::ZERO),
            }),
        }
    }
}

/// One node's channel to its storage: the model, the clock and, per
/// direction, when the bytes reserved so far finish crossing.
#[derive(Debug)]
struct Channel {
    model: RemoteStorageModel,
    clock: Arc<dyn ThrottleClock>,
    read_free_at: Mutex<Duration>,
    write_free_at: Mutex<Duration>,
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Channel {
    /// Reserve `direction` for `bytes`, add one latency if `round_trip`, and
    /// wait until both are paid.
    fn pay(&self, direction: Direction, bytes: u64, round_trip: bool) {
        let (free_at, rate) = match direction {
            Direction::Read => (&self.read_free_at, self.model.read_bytes_per_sec),
            Direction::Write => (&self.write_free_at, self.model.write_bytes_per_sec),
        };
        let transferred = {
            let mut free_at = free_at.lock();
            let start = (*free_at).max(self.clock.now());
            *free_at = start + RemoteStorageModel::transfer_time(rate, bytes);
            *free_at
        };
        let latency = if round_trip {
            self.model.latency
        } else {
            Duration::ZERO
        };
        self.clock.wait_until(transferred + latency);
    }

    /// One round trip carrying no data.
    fn round_trip(&self) {
        self.clock.wait_until(self.clock.now() + self.model.latency);
    }
}

impl Storage for ThrottledStorage {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.channel.round_trip();
        Ok(Box::new(ThrottledWritable {
            inner: self.inner.create(path)?,
            channel: self.channel.clone(),
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        self.channel.round_trip();
        Ok(Arc::new(ThrottledRandomAccess {
            inner: self.inner.open(path)?,
            channel: self.channel.clone(),
        }))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.channel.round_trip();
        self.inner.list(dir)
    }

    fn delete(&self, path: &Path) -> Result<()> {
        self.channel.round_trip();
        self.inner.delete(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.channel.round_trip();
        self.inner.rename(from, to)
    }

    fn link(&self, from: &Path, to: &Path) -> Result<()> {
        self.channel.round_trip();
        self.inner.link(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.channel.round_trip();
        self.inner.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.channel.round_trip();
        self.inner.create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        self.channel.round_trip();
        self.inner.exists(path)
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        self.channel.round_trip();
        self.inner.file_size(path)
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.channel.round_trip();
        self.inner.lock(path)
    }
}

struct ThrottledWritable {
    inner: Box<dyn WritableFile>,
    channel: Arc<Channel>,
}

impl WritableFile for ThrottledWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.channel.pay(Direction::Write, data.len() as u64, false);
        self.inner.append(data)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }

    fn sync(&mut self) -> Result<()> {
        self.channel.round_trip();
        self.inner.sync()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

struct ThrottledRandomAccess {
    inner: Arc<dyn RandomAccessFile>,
    channel: Arc<Channel>,
}

impl RandomAccessFile for ThrottledRandomAccess {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.channel.pay(Direction::Read, buf.len() as u64, true);
        self.inner.read_exact_at(offset, buf)
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn advise_random(&self) {
        self.inner.advise_random();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::env::{FaultInjectingFs, VirtualThrottleClock};

    fn rate(bytes_per_sec: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(bytes_per_sec)
    }

    #[test]
    fn transfer_time_rounds_up_and_unlimited_is_free() {
        let t = RemoteStorageModel::transfer_time;
        assert_eq!(t(rate(3), 3), Duration::from_secs(1));
        assert_eq!(t(rate(3), 1), Duration::from_nanos(333_333_334));
        assert_eq!(t(rate(1_000_000), 5), Duration::from_micros(5));
        assert_eq!(t(rate(7), 0), Duration::ZERO);
        assert_eq!(t(None, 1 << 40), Duration::ZERO);
    }

    #[test]
    fn a_model_prints_its_condition() {
        let model = RemoteStorageModel {
            latency: Duration::from_micros(500),
            read_bytes_per_sec: rate(125_000_000),
            ..RemoteStorageModel::UNLIMITED
        };
        assert_eq!(
            model.to_string(),
            "latency 500µs, read 125.0 MB/s, write unlimited"
        );
    }

    /// Reads through clones and separate handles on several threads draw on
    /// one read bucket: with no latency, the channel is busy for exactly the
    /// sum of their transfer times, in whatever order they ran.
    #[test]
    fn threads_reading_through_clones_share_one_read_bandwidth() {
        let fs = FaultInjectingFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let mut f = fs.create(&dir.join("f")).unwrap();
        f.append(&[7u8; 1000]).unwrap();
        drop(f);
        let clock = Arc::new(VirtualThrottleClock::new());
        let model = RemoteStorageModel {
            latency: Duration::ZERO,
            read_bytes_per_sec: rate(1_000_000),
            write_bytes_per_sec: None,
        };
        let storage = ThrottledStorage::with_clock(Arc::new(fs), model, clock.clone());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let storage = storage.clone();
                std::thread::spawn(move || {
                    let file = storage.open(Path::new("/d/f")).unwrap();
                    let mut buf = [0u8; 100];
                    for i in 0..10 {
                        file.read_exact_at(i * 100, &mut buf).unwrap();
                        assert_eq!(buf, [7u8; 100]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 4 threads x 1000 bytes at 1 byte per microsecond.
        assert_eq!(clock.now(), Duration::from_micros(4000));
    }

    const NAMES: usize = 4;

    /// A file-system operation on one of [`NAMES`] files in `/d`.
    #[derive(Debug, Clone)]
    enum FileOp {
        Create(usize),
        Append(usize, usize),
        Flush(usize),
        Sync(usize),
        Open(usize),
        ReadAt(usize, u64, usize),
        Delete(usize),
        Rename(usize, usize),
        Link(usize, usize),
        List,
        Exists(usize),
        FileSize(usize),
        SyncDir,
        Lock(usize),
        Unlock(usize),
    }

    fn file_op() -> impl Strategy<Value = FileOp> {
        let n = 0..NAMES;
        prop_oneof![
            2 => n.clone().prop_map(FileOp::Create),
            6 => (n.clone(), 0..300usize).prop_map(|(i, len)| FileOp::Append(i, len)),
            1 => n.clone().prop_map(FileOp::Flush),
            2 => n.clone().prop_map(FileOp::Sync),
            2 => n.clone().prop_map(FileOp::Open),
            6 => (n.clone(), 0..600u64, 0..200usize).prop_map(|(i, o, l)| FileOp::ReadAt(i, o, l)),
            1 => n.clone().prop_map(FileOp::Delete),
            1 => (n.clone(), n.clone()).prop_map(|(a, b)| FileOp::Rename(a, b)),
            1 => (n.clone(), n.clone()).prop_map(|(a, b)| FileOp::Link(a, b)),
            1 => Just(FileOp::List),
            1 => n.clone().prop_map(FileOp::Exists),
            1 => n.clone().prop_map(FileOp::FileSize),
            1 => Just(FileOp::SyncDir),
            1 => n.clone().prop_map(FileOp::Lock),
            1 => n.prop_map(FileOp::Unlock),
        ]
    }

    fn path(i: usize) -> PathBuf {
        PathBuf::from(format!("/d/f{i}"))
    }

    /// A storage under test and the handles and locks held on it.
    struct Side {
        storage: Arc<dyn Storage>,
        writers: BTreeMap<usize, Box<dyn WritableFile>>,
        readers: BTreeMap<usize, Arc<dyn RandomAccessFile>>,
        locks: BTreeMap<usize, Box<dyn FileLock>>,
    }

    fn outcome<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => format!("error {e}"),
        }
    }

    impl Side {
        fn new(storage: Arc<dyn Storage>) -> Side {
            Side {
                storage,
                writers: BTreeMap::new(),
                readers: BTreeMap::new(),
                locks: BTreeMap::new(),
            }
        }

        /// Run `op`; the answer, for comparison with the other side.
        fn apply(&mut self, op: &FileOp) -> String {
            let s = &self.storage;
            match *op {
                FileOp::Create(i) => match s.create(&path(i)) {
                    Ok(w) => {
                        self.writers.insert(i, w);
                        "created".into()
                    }
                    Err(e) => format!("error {e}"),
                },
                FileOp::Append(i, len) => match self.writers.get_mut(&i) {
                    Some(w) => {
                        let data: Vec<u8> = (0..len).map(|b| (b + i) as u8).collect();
                        outcome(w.append(&data).map(|()| w.len()))
                    }
                    None => "no writer".into(),
                },
                FileOp::Flush(i) => match self.writers.get_mut(&i) {
                    Some(w) => outcome(w.flush()),
                    None => "no writer".into(),
                },
                FileOp::Sync(i) => match self.writers.get_mut(&i) {
                    Some(w) => outcome(w.sync()),
                    None => "no writer".into(),
                },
                FileOp::Open(i) => match s.open(&path(i)) {
                    Ok(r) => {
                        let size = r.size();
                        self.readers.insert(i, r);
                        format!("opened, {size} bytes")
                    }
                    Err(e) => format!("error {e}"),
                },
                FileOp::ReadAt(i, offset, len) => match self.readers.get(&i) {
                    Some(r) => {
                        let mut buf = vec![0; len];
                        outcome(r.read_exact_at(offset, &mut buf).map(|()| buf))
                    }
                    None => "no reader".into(),
                },
                FileOp::Delete(i) => outcome(s.delete(&path(i))),
                FileOp::Rename(a, b) => outcome(s.rename(&path(a), &path(b))),
                FileOp::Link(a, b) => outcome(s.link(&path(a), &path(b))),
                FileOp::List => outcome(s.list(Path::new("/d"))),
                FileOp::Exists(i) => format!("{}", s.exists(&path(i))),
                FileOp::FileSize(i) => outcome(s.file_size(&path(i))),
                FileOp::SyncDir => outcome(s.sync_dir(Path::new("/d"))),
                FileOp::Lock(i) => match s.lock(&path(i)) {
                    Ok(l) => {
                        self.locks.insert(i, l);
                        "locked".into()
                    }
                    Err(e) => format!("error {e}"),
                },
                FileOp::Unlock(i) => format!("{}", self.locks.remove(&i).is_some()),
            }
        }

        /// What `op` costs under `model`, by the module's cost table; asked
        /// before `op` runs (its cost depends only on the handles held).
        fn cost(&self, op: &FileOp, model: &RemoteStorageModel) -> Duration {
            let latency = model.latency;
            match *op {
                FileOp::Append(i, len) if self.writers.contains_key(&i) => {
                    RemoteStorageModel::transfer_time(model.write_bytes_per_sec, len as u64)
                }
                FileOp::Sync(i) if self.writers.contains_key(&i) => latency,
                FileOp::ReadAt(i, _, len) if self.readers.contains_key(&i) => {
                    latency
                        + RemoteStorageModel::transfer_time(model.read_bytes_per_sec, len as u64)
                }
                FileOp::Append(..)
                | FileOp::Sync(_)
                | FileOp::ReadAt(..)
                | FileOp::Flush(_)
                | FileOp::Unlock(_) => Duration::ZERO,
                FileOp::Create(_)
                | FileOp::Open(_)
                | FileOp::Delete(_)
                | FileOp::Rename(..)
                | FileOp::Link(..)
                | FileOp::List
                | FileOp::Exists(_)
                | FileOp::FileSize(_)
                | FileOp::SyncDir
                | FileOp::Lock(_) => latency,
            }
        }
    }

    fn remote_model() -> impl Strategy<Value = RemoteStorageModel> {
        let rate = prop::option::of(1..2_000_000_000u64).prop_map(|r| r.and_then(NonZeroU64::new));
        (0..2_000_000u64, rate.clone(), rate).prop_map(|(nanos, read, write)| RemoteStorageModel {
            latency: Duration::from_nanos(nanos),
            read_bytes_per_sec: read,
            write_bytes_per_sec: write,
        })
    }

    proptest! {
        /// Any sequence of file operations answers exactly as on the bare
        /// storage (data, sizes, names, errors), and, run from one thread,
        /// makes the channel wait exactly the sum of the operations' costs.
        #[test]
        fn throttled_storage_answers_like_its_inner_storage_and_charges_each_operation(
            ops in prop::collection::vec(file_op(), 1..120),
            model in remote_model(),
        ) {
            let bare_fs = FaultInjectingFs::new();
            let inner_fs = FaultInjectingFs::new();
            bare_fs.create_dir_all(Path::new("/d")).unwrap();
            inner_fs.create_dir_all(Path::new("/d")).unwrap();
            let clock = Arc::new(VirtualThrottleClock::new());
            let throttled = ThrottledStorage::with_clock(Arc::new(inner_fs), model, clock.clone());
            let mut bare = Side::new(Arc::new(bare_fs));
            let mut under_test = Side::new(Arc::new(throttled));
            let mut expected = Duration::ZERO;
            for (n, op) in ops.iter().enumerate() {
                expected += bare.cost(op, &model);
                let want = bare.apply(op);
                let got = under_test.apply(op);
                prop_assert_eq!(got, want, "operation {}: {:?}", n, op);
                prop_assert_eq!(clock.now(), expected, "time after operation {}: {:?}", n, op);
            }
        }
    }
}
