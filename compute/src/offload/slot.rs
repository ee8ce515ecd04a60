//! A sealed memtable wherever its bytes are: in local memory, or shipped to
//! a memory node. Readers, flushes and the super version hold the slot; what
//! it holds may change from local to offloaded (shipped) and back (rebuilt
//! from the WAL after the memory node was lost), and both forms answer
//! every read identically, so a reader never cares which it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use o3_storage::key::{SequenceNumber, ValueKind};
use o3_storage::memtable::{EntryRef, Memtable};
use o3_storage::range_del::RangeTombstone;
use o3_storage::{Error, Result};

use crate::image_id::ImageId;
use crate::offload::image::OffloadedImage;

/// Where a sealed memtable's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    Local(Arc<Memtable>),
    Offloaded(Arc<OffloadedImage>),
}

/// A point lookup's answer from one source: the entry's sequence and its
/// value, `None` for a tombstone.
pub(crate) type FoundEntry = (SequenceNumber, Option<Vec<u8>>);

/// A memtable entry copied out of the memtable.
pub(crate) fn copied(e: EntryRef<'_>) -> FoundEntry {
    (
        e.sequence,
        match e.kind {
            ValueKind::Value => Some(e.value.to_vec()),
            ValueKind::Tombstone => None,
        },
    )
}

/// What [`ImageSlot::local_get`] found: the local memtable's answer, the
/// image to ask, or an image whose key range or bloom filter rules the key
/// out (nothing to ask, and no reference taken).
pub(crate) enum LocalGet {
    Local(Option<FoundEntry>),
    Offloaded(Arc<OffloadedImage>),
    Excluded,
}

/// One sealed memtable. Its description is fixed when it is sealed.
#[derive(Debug)]
pub(crate) struct ImageSlot {
    pub id: ImageId,
    /// Arena size of the memtable: the local memory it holds while local,
    /// and the capacity a rebuild needs.
    pub capacity: usize,
    pub entries: u64,
    /// Sequence range of its entries (range tombstones excluded): a rebuild
    /// takes exactly the shard's WAL entries in it.
    pub entries_smallest_seq: SequenceNumber,
    pub entries_largest_seq: SequenceNumber,
    /// Largest sequence of anything in it, range tombstones included.
    pub largest_seq: SequenceNumber,
    /// Its range tombstones, kept here so they never leave the compute node
    /// (the image holds only the arena's entries).
    pub range_tombstones: Vec<RangeTombstone>,
    held: RwLock<Held>,
    /// A flush has claimed it: it is not shipped any more.
    claimed: AtomicBool,
    /// A shipping thread is shipping it.
    shipping: AtomicBool,
    /// The memory node had no room for it (counted once).
    refused: AtomicBool,
}

impl ImageSlot {
    /// The slot of a memtable that was just sealed.
    pub fn sealed(id: ImageId, mem: Arc<Memtable>) -> ImageSlot {
        let entries_largest_seq = mem.entries_largest_seq();
        let range_tombstones = mem.range_tombstones();
        // `smallest_seq` covers range tombstones too, so the range may start
        // below the first entry: a superset of the entries' sequences, never
        // missing one (the rebuild also filters by shard and entry kind).
        let smallest = mem.smallest_seq();
        ImageSlot {
            id,
            capacity: mem.capacity(),
            entries: mem.entries(),
            entries_smallest_seq: smallest,
            entries_largest_seq,
            largest_seq: mem.largest_seq(),
            range_tombstones,
            held: RwLock::new(Held::Local(mem)),
            claimed: AtomicBool::new(false),
            shipping: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        }
    }

    /// What it holds now.
    pub fn held(&self) -> Held {
        self.held.read().clone()
    }

    /// Look `key` (whose bloom hash is `hash`) up in the local memtable
    /// (copying the entry out), or hand back the offloaded image to ask
    /// when its filter admits the key, in one look at the slot. Filtering
    /// here keeps a lookup from taking a reference to every image it
    /// passes: most are ruled out.
    pub fn local_get(&self, key: &[u8], hash: u64, seq: SequenceNumber) -> LocalGet {
        match &*self.held.read() {
            Held::Local(m) => LocalGet::Local(m.get(key, seq).map(copied)),
            Held::Offloaded(image) if image.may_contain(key, hash) => {
                LocalGet::Offloaded(image.clone())
            }
            Held::Offloaded(_) => LocalGet::Excluded,
        }
    }

    /// The local memtable, when it is local.
    pub fn local(&self) -> Option<Arc<Memtable>> {
        match &*self.held.read() {
            Held::Local(m) => Some(m.clone()),
            Held::Offloaded(_) => None,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(&*self.held.read(), Held::Local(_))
    }

    /// Replace what it holds (shipping done, or rebuilt from the WAL).
    pub fn set(&self, held: Held) {
        *self.held.write() = held;
    }

    /// Local memory it holds.
    pub fn local_bytes(&self) -> u64 {
        if self.is_local() {
            self.capacity as u64
        } else {
            0
        }
    }

    pub fn claim(&self) {
        self.claimed.store(true, Ordering::SeqCst);
    }

    pub fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::SeqCst)
    }

    /// Mark it as being shipped; false if it already was.
    pub fn start_shipping(&self) -> bool {
        !self.shipping.swap(true, Ordering::SeqCst)
    }

    pub fn end_shipping(&self) {
        self.shipping.store(false, Ordering::SeqCst);
    }

    /// Record that there was no room for it; true the first time.
    pub fn note_refusal(&self) -> bool {
        !self.refused.swap(true, Ordering::SeqCst)
    }

    /// Whether the memory node had no room for it.
    pub fn was_refused(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn is_shipping(&self) -> bool {
        self.shipping.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The image's bytes: copied from the local memtable, or read back from
    /// the memory node; an image the memory node lost is rebuilt from the
    /// WAL first.
    pub fn image_bytes(&self) -> Result<Vec<u8>> {
        match self.held() {
            Held::Local(m) => Ok(m.image_bytes()?.to_vec()),
            Held::Offloaded(image) => match image.read_back() {
                Err(e @ Error::MemoryNode { lost: true, .. }) => {
                    image.runtime.recover(&e)?;
                    match self.held() {
                        Held::Local(m) => Ok(m.image_bytes()?.to_vec()),
                        Held::Offloaded(_) => Err(e),
                    }
                }
                other => other,
            },
        }
    }
}
