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
//! sender publishes, then (after a full fence) takes the receiver's word and
//! if it was raised sends a `Doorbell` frame on the socket. Either the
//! receiver's re-check sees the message or the sender sees the word (the
//! classic store-fence-load handshake), so no message waits for a wake-up
//! that never comes.
//!
//! Layout (little-endian u64 words; offsets in bytes):
//!
//! | offset | field |
//! |--------|-------|
//! | 0      | magic `O3MBOX01` |
//! | 8      | slots per ring |
//! | 16     | slot size |
//! | 64     | owner sleeping (1 = waiting on the socket) |
//! | 128    | requester sleeping |
//! | 4096   | request ring: `slots` slots |
//! | 4096 + slots × slot size | response ring |
//!
//! A slot is `seq u64 | id u64 | len u64 | status u64 | payload`. A ring
//! slot at position `p` (slot `p % slots`) is free for the producer when
//! `seq == p` and holds a message for the consumer when `seq == p + 1`; the
//! consumer frees it by storing `p + slots`. Each ring has one consumer (the
//! owner's connection thread; the requester's reading thread) and producers
//! serialised by a lock in their process. Lengths read from the peer are
//! checked before any copy.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::region::RegionMemory;
use crate::verbs::NodeId;

const MAGIC: u64 = u64::from_le_bytes(*b"O3MBOX01");
/// Slots per ring.
pub const SLOTS: u64 = 64;
/// Bytes per slot, header included.
pub const SLOT_LEN: u64 = 512;
const SLOT_HEADER: u64 = 32;
/// The largest payload a slot carries.
pub const MAX_INLINE: usize = (SLOT_LEN - SLOT_HEADER) as usize;
const OWNER_SLEEPING: u64 = 64;
const REQUESTER_SLEEPING: u64 = 128;
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

/// One end's view of a mailbox.
#[derive(Debug)]
pub struct Mailbox {
    memory: RegionMemory,
    end: End,
    peer: NodeId,
    /// Next position this end produces at, in its outgoing ring.
    tail: Mutex<u64>,
    /// Next position this end consumes at, in its incoming ring. Only the
    /// end's single consumer touches it, and a hand-over of that role
    /// between threads goes through the caller's lock, so relaxed access
    /// suffices (no lock on the polling path).
    head: AtomicU64,
}

impl Mailbox {
    /// Lay out a fresh mailbox in `memory` (the owner, before telling the
    /// requester where it is).
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
            tail: Mutex::new(0),
            head: AtomicU64::new(0),
        };
        for ring in [End::Owner, End::Requester] {
            for slot in 0..SLOTS {
                mailbox
                    .word(mailbox.slot_at(ring, slot))?
                    .store(slot, Ordering::Relaxed);
            }
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
            tail: Mutex::new(0),
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
        let mut tail = self.tail.lock();
        let at = self.slot_at(ring, *tail % SLOTS);
        let seq = self.word(at)?;
        if seq.load(Ordering::Acquire) != *tail {
            return Ok(None);
        }
        self.word(at + 8)?.store(id, Ordering::Relaxed);
        self.word(at + 16)?
            .store(payload.len() as u64, Ordering::Relaxed);
        self.word(at + 24)?
            .store(u64::from(status), Ordering::Relaxed);
        self.memory.copy_in(at + SLOT_HEADER, payload);
        seq.store(*tail + 1, Ordering::Release);
        *tail += 1;
        drop(tail);
        // Pairs with the fence in `prepare_to_sleep`: the receiver either
        // sees this message on its re-check or we see its word raised.
        fence(Ordering::SeqCst);
        Ok(Some(
            self.sleeping_word(ring)?.swap(0, Ordering::SeqCst) == 1,
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
        let head = self.head.load(Ordering::Relaxed);
        let at = self.slot_at(self.end, head % SLOTS);
        let seq = self.word(at)?;
        if seq.load(Ordering::Acquire) != head + 1 {
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
        let mut payload = vec![0u8; len as usize];
        self.memory.copy_out(at + SLOT_HEADER, &mut payload);
        seq.store(head + SLOTS, Ordering::Release);
        self.head.store(head + 1, Ordering::Relaxed);
        Ok(Some(Slotted {
            id,
            status: status as u8,
            payload,
        }))
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

/// Both ends of a mailbox in one process's heap (the `local` backend):
/// `(owner end, requester end)`.
pub fn in_process(owner: NodeId, requester: NodeId) -> Result<(Mailbox, Mailbox)> {
    let memory = std::sync::Arc::new(RegionMemory::heap(MAILBOX_LEN)?);
    let ptr = std::ptr::NonNull::new(memory.as_ptr())
        .ok_or_else(|| Error::InvalidArgument("null mailbox memory".into()))?;
    let len = memory.len();
    // SAFETY: both views alias memory kept alive by the `Arc` each holds as
    // its keepalive, valid and 8-byte aligned for `len` bytes, and accessed
    // only through copies and atomics (as a mapping shared by two
    // processes would be).
    let (owner_view, requester_view) = unsafe {
        (
            RegionMemory::from_raw(ptr, len, Box::new(std::sync::Arc::clone(&memory))),
            RegionMemory::from_raw(ptr, len, Box::new(memory)),
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
}
