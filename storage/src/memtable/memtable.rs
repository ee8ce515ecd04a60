//! [`Memtable`]: the compute node's writable memtable, built directly in the
//! image format so that sealing it is writing a 64-byte header, and shipping
//! it is copying `[0, used)`.
//!
//! Range tombstones written while the memtable is active are kept in a side
//! list beside the arena ([`Memtable::add_range_tombstone`]), so the image
//! format holds point entries only; readers take them from the published
//! super version, not from here.
//!
//! Writers either take turns ([`Memtable::insert`], a short mutex around
//! each insert) or insert at once from several threads
//! ([`Memtable::insert_concurrent`], which reserves its bytes and links its
//! node with compare-and-swap); the two kinds never run at the same time
//! (the write path's protocol). Any number of lock-free readers. A node is
//! fully written before it is linked, and it is linked level by level from
//! the bottom with Release stores or swaps; readers follow links with
//! Acquire loads, so a reader sees an entry either not at all or complete,
//! and each level stays sorted at every instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::key::{MAX_SEQUENCE, TRAILER_LEN, ValueKind, pack_trailer};
use crate::range_del::RangeTombstone;

use super::EntryRef;
use super::arena::Arena;
use super::header::{FORMAT_VERSION, HEADER_LEN, ImageHeader, checksum_parts};
use super::node::{MAX_HEIGHT, NODE_PREFIX, encode_prefix, link_pos, node_size};
use super::skiplist::{self, Cursor, NodeSource, Target, cursor_iterator};

/// Offset of the head node: right after the header.
const HEAD: u32 = HEADER_LEN as u32;

/// Arena bytes taken by the header and the head node; the smallest capacity.
fn reserved_bytes() -> usize {
    HEADER_LEN + NODE_PREFIX + 4 * MAX_HEIGHT
}

/// Where a node goes when the arena is filled up to `used`: there, unless
/// the bytes a search reads from it — prefix, links and the key's first 16
/// bytes — would straddle a cache-line boundary; then at the next line (the
/// gap stays zero). A search visits each node with a likely cache miss, and
/// a straddling node costs two; the gaps take ~5% of the arena with 16-byte
/// keys and 100-byte values; 2M-key fillrandom, three alternating runs each,
/// went from a median of 359k to 406k ops/s.
/// Arena offsets and cache lines agree because the arena is page-aligned.
fn node_start(used: usize, height: usize, key_len: usize) -> usize {
    const LINE: usize = 64;
    let hot = NODE_PREFIX + 4 * height + key_len.min(16);
    let in_line = used % LINE;
    if in_line != 0 && in_line + hot > LINE && hot <= LINE {
        used + (LINE - in_line)
    } else {
        used
    }
}

/// State only the (single, serialized) writer touches.
#[derive(Debug)]
struct WriterState {
    /// xorshift64 state for tower heights; fixed seed per shard, so a
    /// sequence of inserts always produces the same image bytes.
    rng: u64,
}

impl WriterState {
    /// A height in `1..=MAX_HEIGHT`, each extra level with probability 1/4.
    fn random_height(&mut self) -> usize {
        let mut height = 1;
        while height < MAX_HEIGHT {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if self.rng & 3 != 0 {
                break;
            }
            height += 1;
        }
        height
    }
}

/// A memtable whose arena is its own wire format (see the module docs of
/// [`crate::memtable`]). `Send + Sync`; share it with an `Arc`.
#[derive(Debug)]
pub struct Memtable {
    arena: Arena,
    shard: u32,
    writer: Mutex<WriterState>,
    /// Bytes allocated so far: advanced by the writer, or reserved with a
    /// compare-and-swap by concurrent inserts before they write their node.
    used: AtomicUsize,
    entries: AtomicU64,
    /// Of the arena's entries (what the image header records); `u64::MAX`
    /// / 0 while there are none.
    smallest_seq: AtomicU64,
    largest_seq: AtomicU64,
    /// Range tombstones written to this memtable, in sequence order. Only the
    /// writer appends; the count and bytes are mirrored for lock-free checks.
    range_tombstones: Mutex<Vec<RangeTombstone>>,
    range_tombstone_count: AtomicUsize,
    range_tombstone_bytes: AtomicUsize,
    /// Sequence range of the range tombstones (`u64::MAX` / 0 while none).
    range_smallest_seq: AtomicU64,
    range_largest_seq: AtomicU64,
    /// Set (Release) after the header is written; no insert follows it.
    sealed: AtomicBool,
    /// Set by [`Memtable::seal`] before it waits for `inserting` to drain:
    /// a concurrent insert that sees it backs out.
    sealing: AtomicBool,
    /// Concurrent inserts in progress.
    inserting: AtomicU32,
}

impl Memtable {
    /// A memtable of `capacity` bytes for `shard`; the arena is allocated once
    /// and never grows. `capacity` must be at most `u32::MAX` (offsets are 32
    /// bits) and leave room for the header and head node.
    pub fn new(capacity: usize, shard: u32) -> Result<Memtable> {
        if capacity > u32::MAX as usize || capacity < reserved_bytes() {
            return Err(Error::InvalidArgument(format!(
                "memtable capacity {capacity} must be between {} and {} bytes",
                reserved_bytes(),
                u32::MAX
            )));
        }
        let arena = Arena::new(capacity).ok_or_else(|| {
            Error::InvalidArgument(format!("memtable capacity {capacity} is not allocatable"))
        })?;
        let head = encode_prefix(MAX_HEIGHT as u8, 0, 0);
        // SAFETY: the arena is not shared yet; the head prefix is in bounds
        // (capacity >= reserved_bytes()) and holds no link. Its links stay
        // zero from the zeroed allocation.
        unsafe { arena.write(HEAD as usize, &head) };
        Ok(Memtable {
            arena,
            shard,
            writer: Mutex::new(WriterState {
                rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(shard),
            }),
            used: AtomicUsize::new(reserved_bytes()),
            entries: AtomicU64::new(0),
            smallest_seq: AtomicU64::new(u64::MAX),
            largest_seq: AtomicU64::new(0),
            range_tombstones: Mutex::new(Vec::new()),
            range_tombstone_count: AtomicUsize::new(0),
            range_tombstone_bytes: AtomicUsize::new(0),
            range_smallest_seq: AtomicU64::new(u64::MAX),
            range_largest_seq: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            sealing: AtomicBool::new(false),
            inserting: AtomicU32::new(0),
        })
    }

    /// The smallest capacity of a memtable that holds one entry with these
    /// key and value lengths whatever tower height it draws: what the write
    /// path gives an entry too large for an ordinary memtable. `None` when
    /// no memtable can hold it (image offsets are 32 bits, so an image is
    /// below 4 GiB).
    pub fn capacity_for_entry(key_len: usize, value_len: usize) -> Option<usize> {
        let node = node_size(MAX_HEIGHT, key_len.checked_add(TRAILER_LEN)?, value_len)?;
        // A node may be moved to the next cache line (`node_start`).
        let capacity = reserved_bytes().checked_add(64)?.checked_add(node)?;
        (capacity <= u32::MAX as usize).then_some(capacity)
    }

    /// Record a range tombstone written while this memtable is active. Its
    /// keys are charged against the memtable's capacity together with the
    /// arena (`Err(ImageFull)` when they do not fit in what the arena left;
    /// nothing changes), so a stream of range deletions fills and seals a
    /// memtable like any other write. `Err(InvalidArgument)` after
    /// [`Memtable::seal`], for an empty range, or for a sequence above
    /// [`MAX_SEQUENCE`].
    pub fn add_range_tombstone(&self, tombstone: RangeTombstone) -> Result<()> {
        let _writer = self.writer.lock();
        if self.sealed.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(format!(
                "range tombstone added to sealed memtable of shard {}",
                self.shard
            )));
        }
        if tombstone.seq > MAX_SEQUENCE {
            return Err(Error::InvalidArgument(format!(
                "sequence {} exceeds the maximum {MAX_SEQUENCE}",
                tombstone.seq
            )));
        }
        if tombstone.start >= tombstone.end {
            return Err(Error::InvalidArgument(format!(
                "empty range tombstone at sequence {} in shard {}",
                tombstone.seq, self.shard
            )));
        }
        let size = tombstone.memory_bytes();
        let held = self.range_tombstone_bytes.load(Ordering::Relaxed);
        let available = self
            .capacity()
            .saturating_sub(self.used.load(Ordering::Relaxed))
            .saturating_sub(held);
        if size > available {
            return Err(Error::ImageFull {
                needed: size,
                available,
            });
        }
        let seq = tombstone.seq;
        self.range_tombstones.lock().push(tombstone);
        self.range_tombstone_bytes
            .store(held + size, Ordering::Relaxed);
        self.range_smallest_seq.fetch_min(seq, Ordering::Relaxed);
        self.range_largest_seq.fetch_max(seq, Ordering::Relaxed);
        self.range_tombstone_count.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The range tombstones written to this memtable, oldest first.
    pub fn range_tombstones(&self) -> Vec<RangeTombstone> {
        self.range_tombstones.lock().clone()
    }

    /// The range tombstones written after the first `skip`, oldest first.
    pub fn range_tombstones_after(&self, skip: usize) -> Vec<RangeTombstone> {
        self.range_tombstones
            .lock()
            .get(skip..)
            .map_or_else(Vec::new, <[RangeTombstone]>::to_vec)
    }

    /// Number of range tombstones written to this memtable.
    pub fn range_tombstone_count(&self) -> usize {
        self.range_tombstone_count.load(Ordering::Acquire)
    }

    /// Insert one entry. Writers are serialized internally; readers running
    /// concurrently see the memtable before or after the insert.
    /// `Err(ImageFull)` when the arena cannot hold the entry (nothing
    /// changes); `Err(InvalidArgument)` after [`Memtable::seal`], for a
    /// sequence above [`MAX_SEQUENCE`], or for an entry with the same user
    /// key, sequence and kind as an existing one.
    pub fn insert(&self, user_key: &[u8], seq: u64, kind: ValueKind, value: &[u8]) -> Result<()> {
        let mut writer = self.writer.lock();
        debug_assert_eq!(
            self.inserting.load(Ordering::Relaxed),
            0,
            "insert while concurrent inserts run"
        );
        self.check_insert(self.sealed.load(Ordering::Acquire), seq)?;
        let trailer = pack_trailer(seq, kind);
        let target = Target::internal_parts(user_key, trailer);
        let mut splice = [0u32; MAX_HEIGHT];
        let before = skiplist::find_before(self, &target, false, Some(&mut splice));
        let after = self.next(before, 0);
        if after != 0 && target.order_of(self.key(after)).is_eq() {
            return Err(Error::InvalidArgument(format!(
                "memtable of shard {} already holds this key at sequence {seq}",
                self.shard
            )));
        }

        let key_len = user_key.len() + TRAILER_LEN;
        let height = writer.random_height();
        let used = node_start(self.used.load(Ordering::Relaxed), height, key_len);
        let available = self.capacity().saturating_sub(used);
        let size = node_size(height, key_len, value.len()).unwrap_or(usize::MAX);
        if size > available {
            return Err(Error::ImageFull {
                needed: size,
                available,
            });
        }
        // Lengths fit in u32: the node fits in the arena, whose capacity does.
        let node = used as u32;
        // SAFETY: `[used, used + size)` is inside the arena (size <= available)
        // and unreachable: no link points to `node` until the stores below,
        // which happen after these writes.
        unsafe { self.write_node(node, height, user_key, trailer, value) };
        for (level, &prev) in splice.iter().enumerate().take(height) {
            // SAFETY: `node` has `height` links and `prev` is the head or a
            // published node of height > level (it was reached on `level`).
            unsafe {
                let next = self
                    .arena
                    .link(link_pos(prev, level))
                    .load(Ordering::Acquire);
                self.arena
                    .link(link_pos(node, level))
                    .store(next, Ordering::Relaxed);
                // Publishes the node's bytes and its lower links to readers.
                self.arena
                    .link(link_pos(prev, level))
                    .store(node, Ordering::Release);
            }
        }
        self.used.store(used + size, Ordering::Release);
        self.entries.fetch_add(1, Ordering::Release);
        self.smallest_seq.fetch_min(seq, Ordering::Relaxed);
        self.largest_seq.fetch_max(seq, Ordering::Relaxed);
        drop(writer);
        Ok(())
    }

    /// Most arena bytes one entry takes besides its user key and value:
    /// prefix, the tallest tower of links, trailer, padding to the node
    /// alignment and the move to the next cache line (`node_start`). The
    /// write path bounds a group's bytes with it before inserting the group
    /// from several threads ([`Memtable::insert_concurrent`]).
    pub const ENTRY_OVERHEAD_BOUND: usize = NODE_PREFIX + 4 * MAX_HEIGHT + TRAILER_LEN + 3 + 63;

    /// Arena bytes still free (range tombstones count against them).
    pub fn free_bytes(&self) -> usize {
        self.free_bytes_after(self.used.load(Ordering::Acquire))
    }

    /// Insert one entry while other threads insert into this memtable too
    /// (never while [`Memtable::insert`] or [`Memtable::add_range_tombstone`]
    /// runs: the caller's protocol keeps them apart). The node's bytes are
    /// reserved with a compare-and-swap on `used` and each level is linked
    /// with a compare-and-swap, searching again from the last node before
    /// the key when another insert linked there first. The tower height
    /// comes from a hash of `seq`, so it does not depend on which thread
    /// inserts first. [`Memtable::seal`] waits for inserts in progress; one
    /// that starts after sealing began fails with `InvalidArgument`, as does
    /// a sequence above [`MAX_SEQUENCE`]; `Err(ImageFull)` when the arena
    /// cannot hold the entry (nothing changes). Duplicates are not checked:
    /// the caller gives every entry its own sequence.
    pub fn insert_concurrent(
        &self,
        user_key: &[u8],
        seq: u64,
        kind: ValueKind,
        value: &[u8],
    ) -> Result<()> {
        self.inserting.fetch_add(1, Ordering::SeqCst);
        let _leave = LeaveOnDrop(&self.inserting);
        self.check_insert(self.sealing.load(Ordering::SeqCst), seq)?;
        let trailer = pack_trailer(seq, kind);
        let key_len = user_key.len() + TRAILER_LEN;
        let height = height_of_sequence(seq);
        let size = node_size(height, key_len, value.len()).unwrap_or(usize::MAX);
        let mut used = self.used.load(Ordering::Relaxed);
        let node = loop {
            let start = node_start(used, height, key_len);
            let available = self.free_bytes_after(start);
            if size > available {
                return Err(Error::ImageFull {
                    needed: size,
                    available,
                });
            }
            match self.used.compare_exchange_weak(
                used,
                start + size,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break start,
                Err(now) => used = now,
            }
        };
        // Lengths fit in u32: the node fits in the arena, whose capacity does.
        let node = node as u32;
        // SAFETY: `[node, node + size)` is inside the arena and reserved for
        // this insert alone by the swap above; nothing links to it before the
        // swaps below, which come after these writes.
        unsafe { self.write_node(node, height, user_key, trailer, value) };
        let target = Target::internal_parts(user_key, trailer);
        let mut splice = [0u32; MAX_HEIGHT];
        skiplist::find_before(self, &target, false, Some(&mut splice));
        for (level, &found) in splice.iter().enumerate().take(height) {
            let mut prev = found;
            loop {
                // Step over nodes linked before the key since the search.
                let mut next = self.next(prev, level);
                while next != 0 && target.order_of(self.key(next)).is_lt() {
                    prev = next;
                    next = self.next(prev, level);
                }
                // SAFETY: `node` has `height` links; `prev` is the head or a
                // published node reached on `level`, so it has a link there.
                let swapped = unsafe {
                    self.arena
                        .link(link_pos(node, level))
                        .store(next, Ordering::Relaxed);
                    // Publishes the node's bytes and its lower links.
                    self.arena.link(link_pos(prev, level)).compare_exchange(
                        next,
                        node,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                };
                if swapped.is_ok() {
                    break;
                }
            }
        }
        self.entries.fetch_add(1, Ordering::Release);
        self.smallest_seq.fetch_min(seq, Ordering::Relaxed);
        self.largest_seq.fetch_max(seq, Ordering::Relaxed);
        Ok(())
    }

    /// Write a node's prefix, internal key and value at `node`, skipping
    /// its link slots (zero from the allocation; only ever accessed
    /// atomically).
    ///
    /// # Safety
    /// The node's bytes (`node_size(height, ..)` from `node`) lie inside
    /// the arena, belong to this insert alone, and nothing links to `node`
    /// until after this call.
    unsafe fn write_node(
        &self,
        node: u32,
        height: usize,
        user_key: &[u8],
        trailer: u64,
        value: &[u8],
    ) {
        let key_len = user_key.len() + TRAILER_LEN;
        let prefix = encode_prefix(height as u8, key_len as u32, value.len() as u32);
        let key_at = link_pos(node, height);
        // SAFETY: in bounds and unobserved, by the caller's contract.
        unsafe {
            self.arena.write(node as usize, &prefix);
            self.arena.write(key_at, user_key);
            self.arena
                .write(key_at + user_key.len(), &trailer.to_le_bytes());
            self.arena.write(key_at + key_len, value);
        }
    }

    /// Refuse an insert into a memtable that is `sealed` (or being sealed)
    /// or at a sequence above [`MAX_SEQUENCE`].
    fn check_insert(&self, sealed: bool, seq: u64) -> Result<()> {
        if sealed {
            return Err(Error::InvalidArgument(format!(
                "insert into sealed memtable of shard {}",
                self.shard
            )));
        }
        if seq > MAX_SEQUENCE {
            return Err(Error::InvalidArgument(format!(
                "sequence {seq} exceeds the maximum {MAX_SEQUENCE}"
            )));
        }
        Ok(())
    }

    /// Arena bytes free after offset `start`.
    fn free_bytes_after(&self, start: usize) -> usize {
        self.capacity()
            .saturating_sub(start)
            .saturating_sub(self.range_tombstone_bytes.load(Ordering::Relaxed))
    }

    /// The newest entry of `user_key` with sequence `<= snapshot` (which may
    /// be a tombstone).
    pub fn get(&self, user_key: &[u8], snapshot: u64) -> Option<EntryRef<'_>> {
        let n = skiplist::find_visible(self, user_key, snapshot);
        if n == 0 {
            return None;
        }
        skiplist::entry_ref(self.key(n), self.value(n), n)
    }

    /// Write the header with its checksum; afterwards the memtable is
    /// immutable and [`Memtable::image_bytes`] is available. Sealing twice is
    /// a no-op.
    pub fn seal(&self) -> Result<()> {
        let _writer = self.writer.lock();
        if self.sealed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Concurrent inserts that started before this store finish their
        // node first; later ones see it and back out (both sides SeqCst).
        self.sealing.store(true, Ordering::SeqCst);
        while self.inserting.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        let used = self.used.load(Ordering::Relaxed);
        let mut header = ImageHeader {
            format_version: FORMAT_VERSION,
            max_height: MAX_HEIGHT as u32,
            used: used as u32,
            head: HEAD,
            entries: self.entries(),
            smallest_seq: none_as_zero(self.smallest_seq.load(Ordering::Relaxed)),
            largest_seq: self.entries_largest_seq(),
            shard: self.shard,
            first_entry: self.next(HEAD, 0),
            last_entry: skiplist::last(self),
            checksum: 0,
        };
        // SAFETY: `[HEADER_LEN, used)` is allocated and fully written (nodes
        // and padding are written or zero), and we hold the writer lock, so
        // neither plain bytes nor links change while the slice lives.
        let rest = unsafe { self.arena.slice(HEADER_LEN, used - HEADER_LEN) };
        header.checksum = checksum_parts(&header.encode(), rest);
        // SAFETY: the header region holds no link and nobody reads it before
        // `sealed` is set below (Release), which orders this write first.
        unsafe { self.arena.write(0, &header.encode()) };
        self.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// The sealed image: bytes `[0, used)`. `Err(InvalidArgument)` before
    /// [`Memtable::seal`].
    pub fn image_bytes(&self) -> Result<&[u8]> {
        if !self.sealed.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(format!(
                "memtable of shard {} is not sealed",
                self.shard
            )));
        }
        // SAFETY: sealed (Acquire pairs with the Release in `seal`): every
        // byte of `[0, used)` was written before, and nothing writes any more.
        Ok(unsafe { self.arena.slice(0, self.used.load(Ordering::Acquire)) })
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }
    /// Bytes of the arena in use, including header and head node.
    pub fn used_bytes(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
    pub fn capacity(&self) -> usize {
        self.arena.capacity()
    }
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Acquire)
    }
    /// True when the memtable holds neither entries nor range tombstones.
    pub fn is_empty(&self) -> bool {
        self.entries() == 0 && self.range_tombstone_count() == 0
    }
    pub fn shard(&self) -> u32 {
        self.shard
    }
    /// Smallest sequence number written (entries and range tombstones); 0
    /// when empty.
    pub fn smallest_seq(&self) -> u64 {
        none_as_zero(
            self.smallest_seq
                .load(Ordering::Relaxed)
                .min(self.range_smallest_seq.load(Ordering::Relaxed)),
        )
    }
    /// Largest sequence number written (entries and range tombstones); 0
    /// when empty.
    pub fn largest_seq(&self) -> u64 {
        self.entries_largest_seq()
            .max(self.range_largest_seq.load(Ordering::Relaxed))
    }
    /// Largest sequence number of the arena's entries, which the image
    /// header records (range tombstones excluded); 0 when there are none.
    pub fn entries_largest_seq(&self) -> u64 {
        self.largest_seq.load(Ordering::Relaxed)
    }

    /// An iterator over the entries, which keeps the memtable alive. It runs
    /// concurrently with inserts and sees entries published before each move.
    pub fn iter(self: &Arc<Self>) -> MemtableIter {
        MemtableIter {
            cursor: Cursor::new(Arc::clone(self)),
        }
    }

    /// The node prefix of a published node (or the head).
    fn layout(&self, node: u32) -> (usize, usize, usize) {
        // SAFETY: by the NodeSource invariant `node` is the head or published,
        // so its prefix was written before the Acquire load that found it and
        // is never written again.
        let prefix = unsafe { self.arena.slice(node as usize, NODE_PREFIX) };
        let height = prefix[0] as usize;
        let key_len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
        let value_len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize;
        (link_pos(node, height), key_len, value_len)
    }
}

/// A tower height in `1..=MAX_HEIGHT` from a hash of `seq` (each extra
/// level with probability 1/4), for inserts whose order across threads is
/// not fixed.
fn height_of_sequence(seq: u64) -> usize {
    // splitmix64's finalizer: every input bit reaches every output bit.
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // Two bits per level: the count of trailing zero pairs.
    let extra = (z.trailing_zeros() / 2) as usize;
    (1 + extra).min(MAX_HEIGHT)
}

/// Leaves a concurrent insert (decrements its counter) when dropped, on
/// every return path.
struct LeaveOnDrop<'a>(&'a AtomicU32);

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A sequence counter's "nothing written yet" value reported as 0.
fn none_as_zero(seq: u64) -> u64 {
    if seq == u64::MAX { 0 } else { seq }
}

impl NodeSource for Memtable {
    fn head(&self) -> u32 {
        HEAD
    }
    fn max_height(&self) -> usize {
        MAX_HEIGHT
    }
    fn next(&self, node: u32, level: usize) -> u32 {
        // SAFETY: by the NodeSource invariant, `node` has a link at `level`;
        // links are only accessed atomically.
        unsafe { self.arena.link(link_pos(node, level)) }.load(Ordering::Acquire)
    }
    fn key(&self, node: u32) -> &[u8] {
        let (key_at, key_len, _) = self.layout(node);
        // SAFETY: the key of a published node, written before publication and
        // never again.
        unsafe { self.arena.slice(key_at, key_len) }
    }
    fn value(&self, node: u32) -> &[u8] {
        let (key_at, key_len, value_len) = self.layout(node);
        // SAFETY: as for `key`.
        unsafe { self.arena.slice(key_at + key_len, value_len) }
    }
    #[inline]
    fn prefetch(&self, node: u32) {
        self.arena.prefetch(node as usize);
    }
}

impl NodeSource for Arc<Memtable> {
    fn head(&self) -> u32 {
        HEAD
    }
    fn max_height(&self) -> usize {
        MAX_HEIGHT
    }
    fn next(&self, node: u32, level: usize) -> u32 {
        (**self).next(node, level)
    }
    fn key(&self, node: u32) -> &[u8] {
        (**self).key(node)
    }
    fn value(&self, node: u32) -> &[u8] {
        (**self).value(node)
    }
}

/// An [`crate::iterator::InternalIterator`] over a live or sealed
/// [`Memtable`]; owns an `Arc` of it.
#[derive(Debug)]
pub struct MemtableIter {
    cursor: Cursor<Arc<Memtable>>,
}

cursor_iterator!(MemtableIter);

impl MemtableIter {
    /// The current entry's offset in the memtable's arena, which is its
    /// offset in the sealed memtable's image (what
    /// [`super::MemtableImage::value_at`] and [`super::EntryRef::offset`]
    /// use); 0 when not positioned.
    pub fn offset(&self) -> u32 {
        self.cursor.node()
    }
}
