//! A shared-memory mailbox: the fast path for small requests and responses
//! between two processes on one host (the `shm` backend; `local` uses its
//! request ring between threads), modelled on RDMA
//! SEND into pre-posted receive buffers. Two rings of fixed-size slots live
//! in one memory block mapped by both ends: requests (requester → owner)
//! and responses (owner → requester). A message is copied into a slot and
//! published by the slot's sequence word; a polling receiver sees it without
//! any system call, so a round trip costs about two cache-line transfers
//! plus the copies.
//!
//! The mailbox only accelerates: a message that does not fit a slot, or
//! finds the ring full, travels as a frame on the connection's socket
//! instead (requests and responses are matched by id, so the two paths may
//! interleave), so a full ring never blocks anyone. The owner answers a
//! request that came by frame by frame, so a requester may ignore the
//! mailbox altogether. One-way messages always use the socket, which keeps
//! them in order.
//!
//! A receiver that stops polling must be woken: before it sleeps on the
//! socket it raises its `sleeping` word and checks its ring once more; a
//! sender publishes, then (after a full fence) looks at the receiver's word
//! and if it was raised lowers it and sends a `Doorbell` frame on the
//! socket. Either the receiver's re-check sees the message or the sender
//! sees the word (the classic store-fence-load handshake), so no message
//! waits for a wake-up that never comes.
//!
//! Layout (little-endian u64 words; offsets in bytes):
//!
//! | offset | field |
//! |--------|-------|
//! | 0      | magic `O3MBOX02` |
//! | 8      | slots per ring |
//! | 16     | slot size |
//! | 128    | owner sleeping (1 = waiting on the socket) |
//! | 256    | requester sleeping |
//! | 384    | request ring: positions consumed (written by the owner) |
//! | 512    | response ring: positions consumed (written by the requester) |
//! | 4096   | request ring: `slots` slots |
//! | 4096 + slots × slot size | response ring |
//!
//! A slot is `seq u64 | id u64 | len u64 | status u64 | payload`. The
//! producer of ring position `p` (slot `p % slots`) fills the slot and then
//! stores `seq = p + 1`; the consumer takes the message when it finds
//! `seq == p + 1` and, once it has copied it out, stores `p + 1` in its
//! ring's consumed word. A producer reuses a slot only when the consumed
//! word says its previous message was taken, and it reads that word only
//! when its last look at it shows the ring full: the consumer never writes
//! a slot and each word has one writer, so in a ping-pong each message
//! costs one cache-line transfer (the slot's, which the waiting receiver
//! pulls), not a read of the slot by the producer first. Every word the
//! two ends write lives on its own 128-byte line (adjacent-line
//! prefetchers pair 64-byte lines), so neither end's writes evict the
//! other's. Each ring has one consumer (the owner's connection thread; the
//! requester's reading thread) and producers serialised by a lock in their
//! process. Lengths and counters read from the peer are checked before use.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::region::RegionMemory;
use crate::verbs::NodeId;

const MAGIC: u64 = u64::from_le_bytes(*b"O3MBOX02");
/// Slots per ring.
pub const SLOTS: u64 = 64;
/// Bytes per slot, header included.
pub const SLOT_LEN: u64 = 512;
const SLOT_HEADER: u64 = 32;
/// The largest payload a slot carries.
pub const MAX_INLINE: usize = (SLOT_LEN - SLOT_HEADER) as usize;
/// Bytes between words written by different ends: two 64-byte lines, as
/// adjacent-line prefetchers move them in pairs.
const LINE: u64 = 128;
const OWNER_SLEEPING: u64 = LINE;
const REQUESTER_SLEEPING: u64 = 2 * LINE;
const REQUESTS_CONSUMED: u64 = 3 * LINE;
const RESPONSES_CONSUMED: u64 = 4 * LINE;
const RINGS_AT: u64 = 4096;
/// Bytes of a mailbox.
pub const MAILBOX_LEN: u64 = RINGS_AT + 2 * SLOTS * SLOT_LEN;

/// Which end of the mailbox this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Owner,
    Requester,
}

/// A message taken from a ring.
#[derive(Debug, PartialEq, Eq)]
pub struct Slotted {
    pub id: u64,
    pub status: u8,
    pub payload: Vec<u8>,
}

/// The producing side's private view of its outgoing ring.
#[derive(Debug, Default)]
struct Producer {
    /// Next position to produce at.
    tail: u64,
    /// The consumer's consumed word as last read: positions below
    /// `consumed + SLOTS` are free without reading it again.
    consumed: u64,
}

/// One end's view of a mailbox.
#[derive(Debug)]
pub struct Mailbox {
    memory: RegionMemory,
    end: End,
    peer: NodeId,
    producer: Mutex<Producer>,
    /// Next position this end consumes at, in its incoming ring. Only the
    /// end's single consumer touches it, and a hand-over of that role
    /// between threads goes through the caller's lock, so relaxed access
    /// suffices (no lock on the polling path).
    head: AtomicU64,
}

impl Mailbox {
    /// Lay out a fresh mailbox in `memory` (the owner, before telling the
    /// requester where it is). Fresh memory is zeroed, which is what every
    /// slot's `seq` and both consumed words start as.
    pub fn create(memory: RegionMemory, peer: NodeId) -> Result<Self> {
        if (memory.len() as u64) < MAILBOX_LEN {
            return Err(Error::InvalidArgument(format!(
                "mailbox of {} bytes (needs {MAILBOX_LEN})",
                memory.len()
            )));
        }
        let mailbox = Mailbox {
            memory,
            end: End::Owner,
            peer,
            producer: Mutex::new(Producer::default()),
            head: AtomicU64::new(0),
        };
        for ring in [End::Owner, End::Requester] {
            for slot in 0..SLOTS {
                mailbox
                    .word(mailbox.slot_at(ring, slot))?
                    .store(0, Ordering::Relaxed);
            }
        }
        for at in [
            OWNER_SLEEPING,
            REQUESTER_SLEEPING,
            REQUESTS_CONSUMED,
            RESPONSES_CONSUMED,
        ] {
            mailbox.word(at)?.store(0, Ordering::Relaxed);
        }
        mailbox.word(8)?.store(SLOTS, Ordering::Relaxed);
        mailbox.word(16)?.store(SLOT_LEN, Ordering::Relaxed);
        mailbox.word(0)?.store(MAGIC, Ordering::Release);
        Ok(mailbox)
    }

    /// Open a mailbox the owner laid out (the requester).
    pub fn open(memory: RegionMemory, peer: NodeId) -> Result<Self> {
        let mailbox = Mailbox {
            memory,
            end: End::Requester,
            peer,
            producer: Mutex::new(Producer::default()),
            head: AtomicU64::new(0),
        };
        if (mailbox.memory.len() as u64) < MAILBOX_LEN
            || mailbox.word(0)?.load(Ordering::Acquire) != MAGIC
            || mailbox.word(8)?.load(Ordering::Relaxed) != SLOTS
            || mailbox.word(16)?.load(Ordering::Relaxed) != SLOT_LEN
        {
            return Err(Error::protocol(
                &mailbox.peer,
                "the mailbox does not have the expected layout",
            ));
        }
        Ok(mailbox)
    }

    fn word(&self, at: u64) -> Result<&AtomicU64> {
        self.memory
            .word(at)
            .ok_or_else(|| Error::protocol(&self.peer, format!("mailbox word {at} outside")))
    }

    /// Offset of `slot` in the ring that `ring`'s end consumes (the owner
    /// consumes requests, the requester responses).
    fn slot_at(&self, ring: End, slot: u64) -> u64 {
        let base = match ring {
            End::Owner => RINGS_AT,
            End::Requester => RINGS_AT + SLOTS * SLOT_LEN,
        };
        base + slot * SLOT_LEN
    }

    /// The consumed word of the ring that `ring`'s end consumes.
    fn consumed_word(&self, ring: End) -> Result<&AtomicU64> {
        self.word(match ring {
            End::Owner => REQUESTS_CONSUMED,
            End::Requester => RESPONSES_CONSUMED,
        })
    }

    fn other(&self) -> End {
        match self.end {
            End::Owner => End::Requester,
            End::Requester => End::Owner,
        }
    }

    fn sleeping_word(&self, end: End) -> Result<&AtomicU64> {
        self.word(match end {
            End::Owner => OWNER_SLEEPING,
            End::Requester => REQUESTER_SLEEPING,
        })
    }

    /// Publish a message to the other end. `Ok(None)` when it does not fit
    /// a slot or the ring is full (send it on the socket instead);
    /// `Ok(Some(true))` when the receiver was asleep and needs a doorbell.
    pub fn push(&self, id: u64, status: u8, payload: &[u8]) -> Result<Option<bool>> {
        if payload.len() > MAX_INLINE {
            return Ok(None);
        }
        let ring = self.other();
        let mut producer = self.producer.lock();
        let tail = producer.tail;
        if tail - producer.consumed >= SLOTS {
            let consumed = self.consumed_word(ring)?.load(Ordering::Acquire);
            if consumed > tail || tail - consumed > SLOTS {
                return Err(Error::protocol(
                    &self.peer,
                    format!("mailbox consumed {consumed} messages of {tail} sent"),
                ));
            }
            producer.consumed = consumed;
            if tail - consumed >= SLOTS {
                return Ok(None);
            }
        }
        let at = self.slot_at(ring, tail % SLOTS);
        self.word(at + 8)?.store(id, Ordering::Relaxed);
        self.word(at + 16)?
            .store(payload.len() as u64, Ordering::Relaxed);
        self.word(at + 24)?
            .store(u64::from(status), Ordering::Relaxed);
        self.memory.copy_in(at + SLOT_HEADER, payload);
        self.word(at)?.store(tail + 1, Ordering::Release);
        producer.tail = tail + 1;
        drop(producer);
        // Pairs with the fence in `prepare_to_sleep`: the receiver either
        // sees this message on its re-check or we see its word raised. The
        // word is only read unless raised, so a polling receiver's line
        // stays where it is.
        fence(Ordering::SeqCst);
        let sleeping = self.sleeping_word(ring)?;
        Ok(Some(
            sleeping.load(Ordering::SeqCst) == 1 && sleeping.swap(0, Ordering::SeqCst) == 1,
        ))
    }

    /// Whether a message waits in this end's incoming ring.
    pub fn ready(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let at = self.slot_at(self.end, head % SLOTS);
        self.word(at)
            .is_ok_and(|seq| seq.load(Ordering::Acquire) == head + 1)
    }

    /// Take the next message from this end's incoming ring. Only one
    /// thread of this end consumes at a time.
    pub fn pop(&self) -> Result<Option<Slotted>> {
        self.pop_with(|id, status, payload| Slotted {
            id,
            status,
            payload: payload.to_vec(),
        })
    }

    /// Take the next message and hand it to `take` as `(id, status,
    /// payload)` without allocating: the payload is copied out to the stack
    /// and the slot released before `take` runs, so a slow `take` never
    /// holds up the ring. Only one thread of this end consumes at a time.
    pub fn pop_with<T>(&self, take: impl FnOnce(u64, u8, &[u8]) -> T) -> Result<Option<T>> {
        let head = self.head.load(Ordering::Relaxed);
        let at = self.slot_at(self.end, head % SLOTS);
        if self.word(at)?.load(Ordering::Acquire) != head + 1 {
            return Ok(None);
        }
        let id = self.word(at + 8)?.load(Ordering::Relaxed);
        let len = self.word(at + 16)?.load(Ordering::Relaxed);
        let status = self.word(at + 24)?.load(Ordering::Relaxed);
        if len > MAX_INLINE as u64 || status > u64::from(u8::MAX) {
            return Err(Error::protocol(
                &self.peer,
                format!("mailbox slot at offset {at}: length {len}, status {status}"),
            ));
        }
        let mut buf = [0u8; MAX_INLINE];
        let payload = &mut buf[..len as usize];
        self.memory.copy_out(at + SLOT_HEADER, payload);
        self.consumed_word(self.end)?
            .store(head + 1, Ordering::Release);
        self.head.store(head + 1, Ordering::Relaxed);
        Ok(Some(take(id, status as u8, payload)))
    }

    /// Raise this end's sleeping word before waiting on the socket; `true`
    /// means a message arrived meanwhile (do not sleep, the word is
    /// lowered again).
    pub fn prepare_to_sleep(&self) -> Result<bool> {
        let word = self.sleeping_word(self.end)?;
        word.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.ready() {
            word.store(0, Ordering::SeqCst);
            return Ok(true);
        }
        Ok(false)
    }

    /// Lower this end's sleeping word after waking.
    pub fn awake(&self) {
        if let Ok(word) = self.sleeping_word(self.end) {
            word.store(0, Ordering::SeqCst);
        }
    }
}

/// A 128-byte line of mailbox memory: the in-process mailbox is laid out on
/// lines as a page-aligned mapping would be, so no slot header straddles
/// two of them.
#[repr(align(128))]
struct Line {
    _words: [AtomicU64; 16],
}

/// Both ends of a mailbox in one process's heap (the `local` backend):
/// `(owner end, requester end)`.
pub fn in_process(owner: NodeId, requester: NodeId) -> Result<(Mailbox, Mailbox)> {
    let lines: Box<[Line]> = (0..MAILBOX_LEN / LINE)
        .map(|_| Line {
            _words: std::array::from_fn(|_| AtomicU64::new(0)),
        })
        .collect();
    let ptr = std::ptr::NonNull::new(lines.as_ptr() as *mut u8)
        .ok_or_else(|| Error::InvalidArgument("null mailbox memory".into()))?;
    let len = MAILBOX_LEN as usize;
    let lines = std::sync::Arc::new(lines);
    // SAFETY: both views alias the lines kept alive by the `Arc` each holds
    // as its keepalive (moving the box into it does not move the lines),
    // valid and 128-byte aligned for `len` bytes, and accessed only through
    // copies and atomics (as a mapping shared by two processes would be).
    let (owner_view, requester_view) = unsafe {
        (
            RegionMemory::from_raw(ptr, len, Box::new(std::sync::Arc::clone(&lines))),
            RegionMemory::from_raw(ptr, len, Box::new(lines)),
        )
    };
    Ok((
        Mailbox::create(owner_view, requester)?,
        Mailbox::open(requester_view, owner)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ends over the same memory, as two processes would map it.
    fn pair() -> (Mailbox, Mailbox) {
        in_process(NodeId::from("owner"), NodeId::from("requester")).unwrap()
    }

    #[test]
    fn messages_cross_in_order_and_the_ring_refuses_when_full() {
        let (owner, requester) = pair();
        assert_eq!(owner.pop().unwrap(), None);
        for i in 0..SLOTS {
            let pushed = requester.push(i, 0, &i.to_le_bytes()).unwrap();
            assert_eq!(pushed, Some(false), "slot {i}");
        }
        assert_eq!(requester.push(99, 0, b"full").unwrap(), None);
        assert_eq!(
            requester.push(1, 0, &vec![0; MAX_INLINE + 1]).unwrap(),
            None
        );
        for i in 0..SLOTS {
            let got = owner.pop().unwrap().unwrap();
            assert_eq!((got.id, got.payload), (i, i.to_le_bytes().to_vec()));
        }
        assert_eq!(owner.pop().unwrap(), None);
        // Slots are reused, and responses flow the other way.
        assert_eq!(owner.push(7, 1, b"answer").unwrap(), Some(false));
        assert_eq!(
            requester.pop().unwrap(),
            Some(Slotted {
                id: 7,
                status: 1,
                payload: b"answer".to_vec()
            })
        );
        assert_eq!(requester.push(3, 0, b"again").unwrap(), Some(false));
        assert_eq!(owner.pop().unwrap().unwrap().payload, b"again");
    }

    #[test]
    fn a_sleeping_receiver_is_told_to_wake_once() {
        let (owner, requester) = pair();
        assert!(!owner.prepare_to_sleep().unwrap());
        assert_eq!(requester.push(1, 0, b"a").unwrap(), Some(true));
        assert_eq!(requester.push(2, 0, b"b").unwrap(), Some(false));
        assert!(owner.prepare_to_sleep().unwrap(), "messages are waiting");
        owner.awake();
        assert_eq!(owner.pop().unwrap().unwrap().id, 1);
    }

    #[test]
    fn a_corrupt_slot_is_a_protocol_error() {
        let (owner, requester) = pair();
        requester.push(1, 0, b"x").unwrap();
        let at = owner.slot_at(End::Owner, 0);
        owner
            .word(at + 16)
            .unwrap()
            .store(1 << 40, Ordering::Relaxed);
        assert!(matches!(owner.pop(), Err(Error::Protocol { .. })));
    }

    #[test]
    fn a_consumed_count_beyond_what_was_sent_is_a_protocol_error() {
        let (owner, requester) = pair();
        for i in 0..SLOTS {
            requester.push(i, 0, b"x").unwrap();
        }
        // The owner claims to have taken more than was ever sent: the
        // requester must not believe it and overwrite unread slots.
        owner
            .consumed_word(End::Owner)
            .unwrap()
            .store(SLOTS + 1, Ordering::Relaxed);
        assert!(matches!(
            requester.push(99, 0, b"y"),
            Err(Error::Protocol { .. })
        ));
    }
}
