//! A one-shot reply slot: where the owner's receiving thread of a `local`
//! connection leaves one call's answer for the caller waiting on it.
//!
//! The slot is one heap block shared by two halves, a [`ReplyWaiter`] (the
//! caller's) and a [`ReplySender`] (the owner's, which travels through the
//! request ring as a raw id). One atomic state word decides everything, so
//! that a polled round trip moves the slot's cache line once from the owner
//! to the caller and nothing else: no lock, no condition variable and no
//! reference count is touched on the way.
//!
//! States: `PENDING` → `FILLED` (the sender answered, or was dropped
//! unanswered) or `PENDING` → `SLEEPING` (the caller stopped polling and
//! parks; the sender then unparks it) → `FILLED`; either of the unfilled
//! states → `ABANDONED` (the caller stopped waiting). The side that makes
//! the *second* transition frees the block: the waiter after it sees
//! `FILLED`, the sender when it finds `ABANDONED`. After its successful
//! transition to `FILLED` the sender does not touch the block again (it
//! takes the parked caller's thread handle out before), so the waiter may
//! free it at once.
//!
//! A small successful answer is copied into the block and its vector
//! dropped on the owner's thread: a vector allocated by one thread and
//! freed by another goes back to the first one's allocator arena under
//! that arena's lock, which both threads would then take on every call.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::dispatch::Answer;
use crate::poll::PollMode;

const PENDING: u32 = 0;
const SLEEPING: u32 = 1;
const FILLED: u32 = 2;
const ABANDONED: u32 = 3;

/// The largest answer carried in the block itself.
const INLINE: usize = 64;

/// What the sender left.
enum Filled {
    /// Dropped unanswered.
    Unanswered,
    /// A successful answer of at most [`INLINE`] bytes.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Answer(Answer),
}

impl Filled {
    fn new(answer: Option<Answer>) -> Self {
        match answer {
            None => Filled::Unanswered,
            Some(Ok(response)) if response.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..response.len()].copy_from_slice(&response);
                Filled::Inline {
                    len: response.len() as u8,
                    bytes,
                }
            }
            Some(answer) => Filled::Answer(answer),
        }
    }

    fn into_answer(self) -> Option<Answer> {
        match self {
            Filled::Unanswered => None,
            Filled::Inline { len, bytes } => Some(Ok(bytes[..usize::from(len)].to_vec())),
            Filled::Answer(answer) => Some(answer),
        }
    }
}

/// How often a parked caller wakes to look whether it should stop waiting
/// (its owner went down); a wake-up from the sender comes at once.
const CHECK_EVERY: Duration = Duration::from_millis(10);

struct Slot {
    state: AtomicU32,
    /// Written by the sender before its transition to `FILLED`, read by the
    /// waiter after it.
    answer: UnsafeCell<Filled>,
    /// The parked caller: written by the waiter before its transition to
    /// `SLEEPING`, taken by the sender after it sees that state.
    sleeper: UnsafeCell<Option<Thread>>,
}

/// Why a wait ended without an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// The sender was dropped without answering.
    Dropped,
    /// The caller's `give_up` said so.
    GaveUp,
    TimedOut,
}

/// The caller's half.
pub struct ReplyWaiter {
    slot: NonNull<Slot>,
}

/// The owner's half: answer with [`ReplySender::fill`]; dropping it
/// unanswered tells the waiter [`NoAnswer::Dropped`].
pub struct ReplySender {
    slot: NonNull<Slot>,
}

// SAFETY: each half is used by one thread at a time, the block's contents
// are `Send`, and every access to them is ordered by the state word as the
// module documentation describes.
unsafe impl Send for ReplyWaiter {}
// SAFETY: as for `ReplyWaiter`.
unsafe impl Send for ReplySender {}

impl std::fmt::Debug for ReplyWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyWaiter")
    }
}

impl std::fmt::Debug for ReplySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplySender")
    }
}

/// A fresh slot's two halves.
pub fn reply_slot() -> (ReplyWaiter, ReplySender) {
    let slot = NonNull::from(Box::leak(Box::new(Slot {
        state: AtomicU32::new(PENDING),
        answer: UnsafeCell::new(Filled::Unanswered),
        sleeper: UnsafeCell::new(None),
    })));
    (ReplyWaiter { slot }, ReplySender { slot })
}

/// Free the block.
///
/// # Safety
/// The caller made the second transition (see the module documentation),
/// so the other half no longer touches the block; called once.
unsafe fn free(slot: NonNull<Slot>) {
    // SAFETY: the block came from `Box::leak` in `reply_slot`, and per the
    // contract nobody else uses it any more.
    drop(unsafe { Box::from_raw(slot.as_ptr()) });
}

impl ReplySender {
    /// The sender as a number, to pass through a request ring.
    pub fn into_id(self) -> u64 {
        let id = self.slot.as_ptr() as usize as u64;
        std::mem::forget(self);
        id
    }

    /// The sender an id from [`ReplySender::into_id`] stands for.
    ///
    /// # Safety
    /// `id` came from `into_id` and is turned back only once.
    pub unsafe fn from_id(id: u64) -> Self {
        ReplySender {
            // SAFETY: per the contract, a non-null pointer from `into_id`.
            slot: unsafe { NonNull::new_unchecked(id as usize as *mut Slot) },
        }
    }

    /// Answer the call.
    pub fn fill(self, answer: Answer) {
        self.finish(Some(answer));
    }

    fn finish(self, answer: Option<Answer>) {
        let slot = self.slot;
        std::mem::forget(self);
        // SAFETY: the block lives until the second transition, which at the
        // earliest is ours below.
        let shared = unsafe { slot.as_ref() };
        // SAFETY: until our transition to `FILLED` the waiter does not read
        // the answer.
        unsafe { *shared.answer.get() = Filled::new(answer) };
        let mut sleeper = None;
        let mut expected = PENDING;
        loop {
            match shared.state.compare_exchange(
                expected,
                FILLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // The block may be gone already: only the thread handle
                    // taken out before is used.
                    if let Some(thread) = sleeper {
                        Thread::unpark(&thread);
                    }
                    return;
                }
                Err(SLEEPING) => {
                    // SAFETY: the waiter wrote the handle before its
                    // transition to `SLEEPING`, which we acquired, and does
                    // not touch it again.
                    sleeper = unsafe { (*shared.sleeper.get()).take() };
                    expected = SLEEPING;
                }
                Err(_) => {
                    // ABANDONED: the waiter is gone; ours is the second
                    // transition.
                    // SAFETY: as above.
                    unsafe { free(slot) };
                    return;
                }
            }
        }
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        ReplySender { slot: self.slot }.finish(None);
    }
}

impl ReplyWaiter {
    /// Wait for the answer until `deadline`: busy-poll for `poll`'s budget,
    /// then park. `give_up` is asked while waiting whether to stop (the
    /// owner went down).
    pub fn wait(
        self,
        poll: PollMode,
        deadline: Instant,
        give_up: impl Fn() -> bool,
    ) -> Result<Answer, NoAnswer> {
        // SAFETY: we have made no transition yet, so the block lives.
        let shared = unsafe { self.slot.as_ref() };
        let polled = poll.spin_until(deadline, || {
            if shared.state.load(Ordering::Acquire) == FILLED {
                Some(true)
            } else {
                give_up().then_some(false)
            }
        });
        match polled {
            Some(true) => return self.take(),
            Some(false) if self.abandon() => return Err(NoAnswer::GaveUp),
            // Filled meanwhile: take the answer after all.
            Some(false) => return self.take(),
            None => {}
        }
        // SAFETY: only we write the handle, and before our transition
        // to `SLEEPING` (the sender reads it only after).
        unsafe { *shared.sleeper.get() = Some(std::thread::current()) };
        let _ =
            shared
                .state
                .compare_exchange(PENDING, SLEEPING, Ordering::AcqRel, Ordering::Acquire);
        loop {
            if shared.state.load(Ordering::Acquire) == FILLED {
                break;
            }
            let now = Instant::now();
            if give_up() || now >= deadline {
                let why = if now >= deadline {
                    NoAnswer::TimedOut
                } else {
                    NoAnswer::GaveUp
                };
                if self.abandon() {
                    return Err(why);
                }
                // Filled meanwhile: take the answer after all.
                break;
            }
            std::thread::park_timeout((deadline - now).min(CHECK_EVERY));
        }
        self.take()
    }

    /// Take the answer once the state is `FILLED`, and free the block.
    fn take(self) -> Result<Answer, NoAnswer> {
        let slot = self.slot;
        std::mem::forget(self);
        // SAFETY: the sender made its transition to `FILLED` (acquired by
        // our caller) and no longer touches the block; ours is the second
        // transition.
        let answer =
            unsafe { std::mem::replace(&mut *slot.as_ref().answer.get(), Filled::Unanswered) };
        // SAFETY: as above.
        unsafe { free(slot) };
        answer.into_answer().ok_or(NoAnswer::Dropped)
    }

    /// Stop waiting: `true` if the sender will free the block, `false` if
    /// it was filled meanwhile (then the block is still ours).
    fn abandon(&self) -> bool {
        // SAFETY: we have made no transition yet, so the block lives.
        let state = unsafe { &self.slot.as_ref().state };
        let mut current = state.load(Ordering::Acquire);
        while current != FILLED {
            match state.compare_exchange(current, ABANDONED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
        false
    }
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        if !self.abandon() {
            // SAFETY: filled, so the sender is done with it and ours is the
            // second transition.
            unsafe { free(self.slot) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn spinning() -> PollMode {
        PollMode::spinning(Duration::from_micros(50))
    }

    #[test]
    fn an_answer_reaches_a_polling_or_a_parked_waiter() {
        for poll in [PollMode::Park, spinning()] {
            let (waiter, sender) = reply_slot();
            let id = sender.into_id();
            let owner = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                // SAFETY: `id` came from `into_id` and is used once.
                unsafe { ReplySender::from_id(id) }.fill(Ok(b"pong".to_vec()));
            });
            assert_eq!(waiter.wait(poll, far(), || false), Ok(Ok(b"pong".to_vec())));
            owner.join().unwrap();
        }
    }

    #[test]
    fn answers_of_every_size_and_failures_arrive_intact() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 4096] {
            let response: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (waiter, sender) = reply_slot();
            sender.fill(Ok(response.clone()));
            assert_eq!(
                waiter.wait(PollMode::Park, far(), || false),
                Ok(Ok(response)),
                "{len} bytes"
            );
        }
        let (waiter, sender) = reply_slot();
        sender.fill(Err("no such command".into()));
        assert_eq!(
            waiter.wait(PollMode::Park, far(), || false),
            Ok(Err("no such command".into()))
        );
    }

    #[test]
    fn a_sender_dropped_unanswered_ends_the_wait() {
        let (waiter, sender) = reply_slot();
        let owner = std::thread::spawn(move || drop(sender));
        assert_eq!(
            waiter.wait(PollMode::Park, far(), || false),
            Err(NoAnswer::Dropped)
        );
        owner.join().unwrap();
    }

    #[test]
    fn a_waiter_that_stops_waiting_leaves_the_block_to_the_sender() {
        // Give up at once, time out, and drop without waiting: in each case
        // the later answer must neither be lost to a freed block nor leak
        // (run under Miri or a sanitizer to see the latter).
        let (waiter, sender) = reply_slot();
        assert_eq!(
            waiter.wait(PollMode::Park, far(), || true),
            Err(NoAnswer::GaveUp)
        );
        sender.fill(Ok(vec![1]));

        let (waiter, sender) = reply_slot();
        assert_eq!(
            waiter.wait(spinning(), Instant::now(), || false),
            Err(NoAnswer::TimedOut)
        );
        sender.fill(Ok(vec![2]));

        let (waiter, sender) = reply_slot();
        drop(waiter);
        sender.fill(Err("late".into()));

        // Filled before the waiter looks: the answer is there.
        let (waiter, sender) = reply_slot();
        sender.fill(Err("early".into()));
        assert_eq!(
            waiter.wait(PollMode::Park, Instant::now(), || true),
            Ok(Err("early".into()))
        );
    }
}
