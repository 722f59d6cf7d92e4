//! Bounded lock-free single-producer single-consumer (SPSC) ring buffer.
//!
//! This is the channel that carries batches of records between shards (one
//! executor per pinned core). Exactly one [`Producer`] and one [`Consumer`]
//! exist per channel; both are `Send` (each moves to its own thread/executor)
//! and neither is `Clone`.
//!
//! # Layout
//!
//! * `head` (next slot to read, written only by the consumer) and `tail`
//!   (next slot to write, written only by the producer) are monotonically
//!   increasing `usize` counters (wrapping with `wrapping_add`), each in its
//!   own [`CachePadded`] cache line. The slot of an index is `index & mask`;
//!   the capacity is a power of two, so `tail - head` (wrapping) is the number
//!   of occupied slots.
//! * Each side keeps a private copy of its own index and a *cached* copy of the
//!   other side's index. The producer only reloads `head` when its cached value
//!   says the ring is full; the consumer only reloads `tail` when its cached
//!   value says the ring is empty. In the steady state the hot path therefore
//!   touches the other side's cache line once per "lap" instead of once per
//!   operation.
//! * Memory ordering: the producer writes the slot, then stores `tail` with
//!   `Release`; the consumer loads `tail` with `Acquire` before reading the
//!   slot. Symmetrically the consumer moves the value out of the slot, then
//!   stores `head` with `Release`; the producer loads `head` with `Acquire`
//!   before overwriting the slot.
//!
//! # Capacity
//!
//! `channel(capacity)` rounds `capacity` up to the next power of two. A
//! capacity of `0` is treated as `1` (a channel that can never hold an item is
//! useless and would make every `push` wait forever). Capacities that cannot be
//! rounded up without overflowing `usize` are clamped to the largest power of
//! two (allocation will fail long before that in practice).
//!
//! # Wake-up protocol (no lost wake-ups, no wake on the hot path)
//!
//! There are two wakers: `data_waker` (the consumer waits for data) and
//! `room_waker` (the producer waits for room), each paired with a flag
//! (`consumer_waiting` / `producer_waiting`). The waiting side (shown for the
//! consumer; the producer is symmetric with `head`/room):
//!
//! 1. tries the operation; if it succeeds (or the channel is closed) it returns;
//! 2. registers its waker in `data_waker`;
//! 3. stores `consumer_waiting = true` (`Release`, so a notifier that observes
//!    the flag with `Acquire` also observes the completed registration);
//! 4. issues `fence(SeqCst)`;
//! 5. re-checks `tail` and `closed`; if data (or closure) is now visible it
//!    clears the flag and returns `Ready`, otherwise `Pending`.
//!
//! The notifying side (producer after a push):
//!
//! 1. publishes the item (`tail.store(Release)`);
//! 2. issues `fence(SeqCst)`;
//! 3. loads `consumer_waiting` (`Acquire`); only if it is `true` does it clear
//!    it (`swap(false)`) and call `data_waker.wake()`.
//!
//! The two `SeqCst` fences form a Dekker pair: either the waiter's re-check
//! (step 5) sees the new `tail`, or the notifier's flag load (step 3) sees
//! `true` and wakes the already-registered waker. The waker is registered
//! *before* the flag is raised, so a notifier that sees the flag always finds
//! the waker in place. The common-case cost of the notification is one fence
//! plus one load of a flag that is almost never written (it stays in the
//! notifier's L1 cache in shared state). Since the channel carries batches,
//! this is paid once per batch, not per record.
//!
//! Closing (dropping either side) sets `closed` (`SeqCst`) and wakes the other
//! side *unconditionally* (dropping is rare). `AtomicWaker` guarantees that a
//! `wake()` racing with a `register()` is not lost, and the waiter re-checks
//! `closed` after registering.
//!
//! # Cost of the notification
//!
//! The `SeqCst` fence after every successful `try_push`/`try_pop` is what
//! makes the flag check sound, and it is the dominant cost of this channel
//! when items are tiny: on x86 it drains the store buffer, i.e. waits until
//! the just-written `head`/`tail` line has been acquired from the other core.
//! Any lost-wake-up-free notification without help from the waiter (e.g.
//! `AtomicWaker::wake()` on every operation, which is a locked RMW) pays the
//! same store-buffer drain. A wait-free ring without wake-ups (such as `rtrb`)
//! does not, and is several times faster per `u64` (about 8x on the 2-vCPU
//! dev VM: ~20 M/s vs ~180 M/s); with batches (the intended use: one push per
//! batch of records) the gap shrinks to under 2x (~410 M vs ~740 M u64/s in
//! `Vec<u64>` batches of 64), see `examples/spsc_throughput.rs`. Removing the fence makes the loom model
//! `loom_async_consumer_woken` deadlock (checked), so it cannot simply go.
//!
//! # Verification
//!
//! * Unit tests and a proptest against a `VecDeque` model.
//! * [loom](https://docs.rs/loom) models (`RUSTFLAGS="--cfg loom" cargo test
//!   --release --lib loom`). Under `cfg(loom)` the atomics, `UnsafeCell`,
//!   `Arc` and the waker slot are replaced by loom's instrumented versions via
//!   the private `sync` shim below. `atomic-waker` uses `core` atomics that loom
//!   cannot see, so the loom build uses `loom::future::AtomicWaker` (a modelled
//!   mutex-protected waker slot with the same API). This lets loom check both
//!   the non-waking path (`try_push`/`try_pop`) *and* the waking path
//!   (`push`/`pop` driven by `loom::future::block_on`, where a lost wake-up
//!   shows up as a deadlock). The real `atomic_waker::AtomicWaker` is exercised
//!   by the std-thread tests.
//! * Miri is not installed in this environment (no rustup downloads), so the
//!   `unsafe` code has not been run under Miri; loom's `UnsafeCell` tracking
//!   checks for concurrent slot access instead.

use std::fmt;
use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::task::{Context, Poll};

use crossbeam_utils::CachePadded;

use self::sync::{Arc, AtomicBool, AtomicUsize, AtomicWaker, Ordering, SlotCell, fence};

/// Synchronisation primitives: loom's instrumented versions under `cfg(loom)`,
/// std / `atomic-waker` otherwise.
mod sync {
    /// `loom::future::AtomicWaker` with `atomic_waker::AtomicWaker`'s
    /// `register(&Waker)` signature.
    #[cfg(loom)]
    pub(super) struct AtomicWaker(loom::future::AtomicWaker);

    #[cfg(loom)]
    impl AtomicWaker {
        pub(super) fn new() -> Self {
            Self(loom::future::AtomicWaker::new())
        }

        pub(super) fn register(&self, waker: &std::task::Waker) {
            self.0.register_by_ref(waker);
        }

        pub(super) fn wake(&self) {
            self.0.wake();
        }
    }
    #[cfg(loom)]
    pub(super) use loom::sync::Arc;
    #[cfg(loom)]
    pub(super) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

    #[cfg(not(loom))]
    pub(super) use atomic_waker::AtomicWaker;
    #[cfg(not(loom))]
    pub(super) use std::sync::Arc;
    #[cfg(not(loom))]
    pub(super) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

    /// `UnsafeCell` with loom's closure-based API, so both builds compile the
    /// same call sites.
    #[cfg(loom)]
    pub(super) struct SlotCell<T>(loom::cell::UnsafeCell<T>);

    #[cfg(loom)]
    impl<T> SlotCell<T> {
        pub(super) fn new(value: T) -> Self {
            Self(loom::cell::UnsafeCell::new(value))
        }

        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            self.0.with_mut(f)
        }
    }

    #[cfg(not(loom))]
    pub(super) struct SlotCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(loom))]
    impl<T> SlotCell<T> {
        #[inline(always)]
        pub(super) fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        #[inline(always)]
        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// Error returned by [`Producer::try_push`] and [`Producer::push`]; gives the
/// value back.
#[derive(PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full (only from `try_push`).
    Full(T),
    /// The consumer has been dropped; the value can never be delivered.
    Closed(T),
}

impl<T> PushError<T> {
    /// Returns the value that could not be pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Closed(v) => v,
        }
    }

    /// `true` for [`PushError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// `true` for [`PushError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, PushError::Closed(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("spsc channel is full"),
            PushError::Closed(_) => f.write_str("spsc channel is closed (consumer dropped)"),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Error returned by [`Consumer::try_pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// The ring is currently empty but the producer is alive.
    Empty,
    /// The producer has been dropped and the ring is drained.
    Closed,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Empty => f.write_str("spsc channel is empty"),
            PopError::Closed => {
                f.write_str("spsc channel is closed (producer dropped) and drained")
            }
        }
    }
}

impl std::error::Error for PopError {}

/// The other side of the channel has been dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("spsc channel is closed")
    }
}

impl std::error::Error for Closed {}

struct Shared<T> {
    /// Next index to read. Written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next index to write. Written only by the producer.
    tail: CachePadded<AtomicUsize>,
    /// Consumer announced it waits for data (see module docs).
    consumer_waiting: CachePadded<AtomicBool>,
    /// Producer announced it waits for room (see module docs).
    producer_waiting: CachePadded<AtomicBool>,
    data_waker: AtomicWaker,
    room_waker: AtomicWaker,
    /// Read-mostly fields, together so their line stays shared in both caches.
    closed: AtomicBool,
    mask: usize,
    slots: Box<[SlotCell<MaybeUninit<T>>]>,
}

impl<T> Shared<T> {
    #[inline(always)]
    fn capacity(&self) -> usize {
        self.mask.wrapping_add(1)
    }

    #[inline(always)]
    fn slot(&self, index: usize) -> &SlotCell<MaybeUninit<T>> {
        // `index & mask < slots.len()`, so this bounds check never fails; it
        // is a predictable branch and keeps the indexing safe code.
        &self.slots[index & self.mask]
    }

    /// Notify-side half of the Dekker pair: call after publishing.
    #[inline(always)]
    fn notify(flag: &AtomicBool, waker: &AtomicWaker) {
        fence(Ordering::SeqCst);
        if flag.load(Ordering::Acquire) && flag.swap(false, Ordering::AcqRel) {
            waker.wake();
        }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // We are the last owner (the `Arc` count reached zero, which
        // synchronises with both sides' final operations), so relaxed loads
        // observe the final indices.
        let mut head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        while head != tail {
            self.slot(head).with_mut(|p| {
                // SAFETY: every index in `head..tail` holds a value written by
                // the producer and not yet moved out by the consumer; both
                // sides are gone, so nobody else accesses the slot, and each
                // slot is dropped exactly once because `head` advances.
                unsafe { (*p).assume_init_drop() }
            });
            head = head.wrapping_add(1);
        }
    }
}

/// Creates a bounded SPSC channel.
///
/// `capacity` is rounded up to the next power of two; `0` is treated as `1`.
pub fn channel<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(1 << (usize::BITS - 1));
    let slots: Box<[SlotCell<MaybeUninit<T>>]> = (0..capacity)
        .map(|_| SlotCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        consumer_waiting: CachePadded::new(AtomicBool::new(false)),
        producer_waiting: CachePadded::new(AtomicBool::new(false)),
        data_waker: AtomicWaker::new(),
        room_waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
        mask: capacity - 1,
        slots,
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            head_cache: 0,
        },
        Consumer {
            shared,
            head: 0,
            tail_cache: 0,
        },
    )
}

/// Sending half of an SPSC channel. `Send`, not `Clone`.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Private copy of `shared.tail` (only we write it).
    tail: usize,
    /// Last observed value of `shared.head`.
    head_cache: usize,
}

// SAFETY: the producer only moves `T` values into the ring (to be taken out on
// the consumer's thread), which is sound for `T: Send`. All shared state is
// atomics or slots whose access is serialised by the head/tail protocol.
unsafe impl<T: Send> Send for Producer<T> {}

/// Receiving half of an SPSC channel. `Send`, not `Clone`.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Private copy of `shared.head` (only we write it).
    head: usize,
    /// Last observed value of `shared.tail`.
    tail_cache: usize,
}

// SAFETY: the consumer only moves `T` values out of the ring (put there on the
// producer's thread), which is sound for `T: Send`. All shared state is
// atomics or slots whose access is serialised by the head/tail protocol.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T: Send> Producer<T> {
    /// `true` if there is room for one more item, refreshing the cached head
    /// if needed.
    #[inline(always)]
    fn has_room(&mut self) -> bool {
        let cap = self.shared.capacity();
        if self.tail.wrapping_sub(self.head_cache) < cap {
            return true;
        }
        // Acquire: pairs with the consumer's Release store of `head`, so its
        // move out of the slot happens-before our overwrite.
        self.head_cache = self.shared.head.load(Ordering::Acquire);
        self.tail.wrapping_sub(self.head_cache) < cap
    }

    /// Whether the consumer is parked waiting for data (its waker armed): a push now wakes it.
    /// For tests that need every push to be a wake-up.
    #[cfg(test)]
    pub(crate) fn consumer_parked(&self) -> bool {
        self.shared.consumer_waiting.load(Ordering::Acquire)
    }

    /// Pushes `value` without waiting.
    ///
    /// Returns [`PushError::Full`] if the ring is full and
    /// [`PushError::Closed`] if the consumer has been dropped.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(PushError::Closed(value));
        }
        if !self.has_room() {
            return Err(PushError::Full(value));
        }
        let tail = self.tail;
        self.shared.slot(tail).with_mut(|p| {
            // SAFETY: `tail - head < capacity` (checked by `has_room` with an
            // Acquire load of `head`), so the slot is free: the consumer has
            // finished moving its previous value out, and it will not read the
            // slot until we publish `tail + 1` below. Only the producer writes
            // slots, and `&mut self` excludes concurrent producers.
            unsafe { (*p).write(value) };
        });
        self.tail = tail.wrapping_add(1);
        // Release: publishes the slot write to the consumer's Acquire load.
        self.shared.tail.store(self.tail, Ordering::Release);
        Shared::<T>::notify(&self.shared.consumer_waiting, &self.shared.data_waker);
        Ok(())
    }

    /// Polls for room in the ring.
    ///
    /// Returns `Ready(Ok(()))` when the next [`try_push`](Self::try_push) will
    /// not fail with `Full`, `Ready(Err(Closed))` if the consumer has been
    /// dropped, and `Pending` (after registering `cx`'s waker) otherwise.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        if let Some(ready) = self.check_ready() {
            return Poll::Ready(ready);
        }
        let shared = &*self.shared;
        shared.room_waker.register(cx.waker());
        shared.producer_waiting.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        match self.check_ready() {
            Some(ready) => {
                self.shared.producer_waiting.store(false, Ordering::Relaxed);
                Poll::Ready(ready)
            }
            None => Poll::Pending,
        }
    }

    #[inline(always)]
    fn check_ready(&mut self) -> Option<Result<(), Closed>> {
        if self.shared.closed.load(Ordering::Acquire) {
            Some(Err(Closed))
        } else if self.has_room() {
            Some(Ok(()))
        } else {
            None
        }
    }

    /// Pushes `value`, waiting (not spinning) for room.
    ///
    /// Fails only with [`PushError::Closed`] (the consumer has been dropped).
    pub async fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        match self.try_push(value) {
            Err(PushError::Full(value)) => match poll_fn(|cx| self.poll_ready(cx)).await {
                // Room only grows while we hold `&mut self`, so this can only
                // fail with `Closed` (consumer dropped meanwhile).
                Ok(()) => self.try_push(value),
                Err(Closed) => Err(PushError::Closed(value)),
            },
            other => other,
        }
    }

    /// Number of items currently in the ring (a snapshot).
    pub fn len(&self) -> usize {
        self.tail
            .wrapping_sub(self.shared.head.load(Ordering::Acquire))
    }

    /// `true` if the ring is currently empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity of the ring (a power of two, at least 1).
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// `true` once the consumer has been dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.data_waker.wake();
    }
}

impl<T: Send> Consumer<T> {
    /// Pops the oldest item without waiting.
    ///
    /// Returns [`PopError::Empty`] if the ring is empty and
    /// [`PopError::Closed`] if it is empty and the producer has been dropped.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        let head = self.head;
        if head == self.tail_cache {
            // Acquire: pairs with the producer's Release store of `tail`, so
            // the slot write happens-before our read.
            self.tail_cache = self.shared.tail.load(Ordering::Acquire);
            if head == self.tail_cache {
                if !self.shared.closed.load(Ordering::Acquire) {
                    return Err(PopError::Empty);
                }
                // The producer stores `closed` after its last `tail` store;
                // having acquired `closed`, reload `tail` to drain what it
                // pushed just before dropping.
                self.tail_cache = self.shared.tail.load(Ordering::Acquire);
                if head == self.tail_cache {
                    return Err(PopError::Closed);
                }
            }
        }
        let value = self.shared.slot(head).with_mut(|p| {
            // SAFETY: `head != tail` as observed with an Acquire load, so the
            // producer initialised this slot and published it; it will not
            // touch it again until we publish `head + 1` below. Only the
            // consumer reads slots, and `&mut self` excludes concurrent
            // consumers. The value is moved out exactly once.
            unsafe { (*p).assume_init_read() }
        });
        self.head = head.wrapping_add(1);
        // Release: our move out of the slot happens-before the producer's
        // overwrite (it loads `head` with Acquire).
        self.shared.head.store(self.head, Ordering::Release);
        Shared::<T>::notify(&self.shared.producer_waiting, &self.shared.room_waker);
        Ok(value)
    }

    /// Polls for the next item.
    ///
    /// `Ready(Some(v))` for an item, `Ready(None)` once the producer has been
    /// dropped and the ring is drained, `Pending` (after registering `cx`'s
    /// waker) otherwise.
    pub fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.try_pop() {
            Ok(v) => return Poll::Ready(Some(v)),
            Err(PopError::Closed) => return Poll::Ready(None),
            Err(PopError::Empty) => {}
        }
        let shared = &*self.shared;
        shared.data_waker.register(cx.waker());
        shared.consumer_waiting.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        let result = match self.try_pop() {
            Ok(v) => Some(v),
            Err(PopError::Closed) => None,
            Err(PopError::Empty) => return Poll::Pending,
        };
        self.shared.consumer_waiting.store(false, Ordering::Relaxed);
        Poll::Ready(result)
    }

    /// Pops the next item, waiting (not spinning) for one. `None` once the
    /// producer has been dropped and the ring is drained.
    pub async fn pop(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_pop(cx)).await
    }

    /// Number of items currently in the ring (a snapshot).
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// `true` if the ring is currently empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity of the ring (a power of two, at least 1).
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// `true` once the producer has been dropped. Items may still be left to
    /// pop; [`try_pop`](Self::try_pop) reports `Closed` only when drained.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.room_waker.wake();
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.shared.capacity())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.shared.capacity())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::time::Duration;

    #[test]
    fn fill_then_full() {
        let (mut p, mut c) = channel::<u32>(4);
        for i in 0..4 {
            p.try_push(i).unwrap();
        }
        assert_eq!(p.len(), 4);
        assert_eq!(p.try_push(99), Err(PushError::Full(99)));
        assert_eq!(c.try_pop(), Ok(0));
        p.try_push(4).unwrap();
        assert_eq!(p.try_push(5).unwrap_err().into_inner(), 5);
        for i in 1..5 {
            assert_eq!(c.try_pop(), Ok(i));
        }
        assert_eq!(c.try_pop(), Err(PopError::Empty));
    }

    #[test]
    fn empty_pop() {
        let (p, mut c) = channel::<String>(8);
        assert_eq!(c.try_pop(), Err(PopError::Empty));
        assert!(c.is_empty());
        assert!(p.is_empty());
        assert!(!c.is_closed());
    }

    #[test]
    fn wrap_around_fifo() {
        let (mut p, mut c) = channel::<usize>(4);
        let mut next_in = 0;
        let mut next_out = 0;
        for round in 0..10_000 {
            let n = 1 + round % 4;
            for _ in 0..n {
                p.try_push(next_in).unwrap();
                next_in += 1;
            }
            assert_eq!(c.len(), n);
            for _ in 0..n {
                assert_eq!(c.try_pop(), Ok(next_out));
                next_out += 1;
            }
        }
        assert_eq!(next_out, next_in);
    }

    #[test]
    fn capacity_rounding() {
        for (asked, got) in [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (5, 8),
            (1000, 1024),
            (1024, 1024),
        ] {
            let (p, c) = channel::<u8>(asked);
            assert_eq!(p.capacity(), got, "asked {asked}");
            assert_eq!(c.capacity(), got, "asked {asked}");
        }
        // Capacity 0 behaves as capacity 1.
        let (mut p, mut c) = channel::<u8>(0);
        p.try_push(1).unwrap();
        assert!(p.try_push(2).unwrap_err().is_full());
        assert_eq!(c.try_pop(), Ok(1));
    }

    #[test]
    fn closed_when_consumer_dropped() {
        let (mut p, c) = channel::<u8>(2);
        assert!(!p.is_closed());
        drop(c);
        assert!(p.is_closed());
        assert_eq!(p.try_push(1), Err(PushError::Closed(1)));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(p.poll_ready(&mut cx), Poll::Ready(Err(Closed)));
        assert_eq!(
            futures_lite::future::block_on(p.push(7)),
            Err(PushError::Closed(7))
        );
    }

    #[test]
    fn closed_when_producer_dropped_after_drain() {
        let (mut p, mut c) = channel::<u8>(2);
        p.try_push(1).unwrap();
        p.try_push(2).unwrap();
        drop(p);
        assert!(c.is_closed());
        assert_eq!(c.try_pop(), Ok(1));
        assert_eq!(futures_lite::future::block_on(c.pop()), Some(2));
        assert_eq!(c.try_pop(), Err(PopError::Closed));
        assert_eq!(futures_lite::future::block_on(c.pop()), None);
    }

    struct DropCounter<'a>(&'a StdAtomicUsize);
    impl Drop for DropCounter<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn remaining_elements_dropped() {
        let drops = StdAtomicUsize::new(0);
        {
            let (mut p, mut c) = channel(8);
            // Wrap around first so the live range straddles the end.
            for _ in 0..6 {
                p.try_push(DropCounter(&drops)).unwrap();
            }
            for _ in 0..6 {
                drop(c.try_pop().unwrap());
            }
            assert_eq!(drops.load(Ordering::Relaxed), 6);
            for _ in 0..5 {
                p.try_push(DropCounter(&drops)).unwrap();
            }
            drop(c.try_pop().unwrap());
            assert_eq!(drops.load(Ordering::Relaxed), 7);
            drop(p);
            assert_eq!(drops.load(Ordering::Relaxed), 7);
            drop(c);
        }
        assert_eq!(drops.load(Ordering::Relaxed), 11);
        // Consumer dropped first, producer last.
        let drops = StdAtomicUsize::new(0);
        let (mut p, c) = channel(4);
        p.try_push(DropCounter(&drops)).unwrap();
        p.try_push(DropCounter(&drops)).unwrap();
        drop(c);
        let err = p.try_push(DropCounter(&drops)).unwrap_err();
        assert!(err.is_closed());
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(err);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        drop(p);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn two_threads_million_in_order() {
        const N: u64 = 1_000_000;
        let (mut p, mut c) = channel::<u64>(64);
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                let mut v = i;
                loop {
                    match p.try_push(v) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            v = back;
                            std::hint::spin_loop();
                        }
                        Err(PushError::Closed(_)) => panic!("consumer vanished"),
                    }
                }
            }
        });
        let mut expected = 0u64;
        let mut sum = 0u64;
        loop {
            match c.try_pop() {
                Ok(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                    sum += v;
                }
                Err(PopError::Empty) => std::hint::spin_loop(),
                Err(PopError::Closed) => break,
            }
        }
        producer.join().unwrap();
        assert_eq!(expected, N);
        assert_eq!(sum, N * (N - 1) / 2);
    }

    /// Wraps a future and counts how often it is polled.
    fn counting<'a, F: std::future::Future + 'a>(
        polls: &'a StdAtomicUsize,
        fut: F,
    ) -> impl std::future::Future<Output = F::Output> + 'a {
        let mut fut = Box::pin(fut);
        poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            fut.as_mut().poll(cx)
        })
    }

    #[test]
    fn async_consumer_is_woken_not_spinning() {
        const N: usize = 200;
        let (mut p, mut c) = channel::<usize>(4);
        let producer = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                for i in 0..N {
                    if i % 20 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    p.push(i).await.unwrap();
                }
            })
        });
        let polls = StdAtomicUsize::new(0);
        let got = futures_lite::future::block_on(counting(&polls, async {
            let mut got = Vec::new();
            while let Some(v) = c.pop().await {
                got.push(v);
            }
            got
        }));
        producer.join().unwrap();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        let polls = polls.load(Ordering::Relaxed);
        eprintln!("async consumer: {polls} polls for {N} items");
        // One poll per wake-up; a spinning consumer would poll millions of
        // times during the sleeps.
        assert!(
            polls <= N + 1,
            "consumer polled {polls} times for {N} items"
        );
    }

    #[test]
    fn async_producer_is_woken_not_spinning() {
        const N: usize = 200;
        let (mut p, mut c) = channel::<usize>(2);
        let polls = StdAtomicUsize::new(0);
        let consumer = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                let mut got = Vec::new();
                loop {
                    if got.len() % 20 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    match c.pop().await {
                        Some(v) => got.push(v),
                        None => break got,
                    }
                }
            })
        });
        futures_lite::future::block_on(counting(&polls, async {
            for i in 0..N {
                p.push(i).await.unwrap();
            }
        }));
        let polls = polls.load(Ordering::Relaxed);
        eprintln!("async producer: {polls} polls for {N} items");
        drop(p);
        let got = consumer.join().unwrap();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        assert!(
            polls <= N + 1,
            "producer polled {polls} times for {N} items"
        );
    }

    #[test]
    fn async_million_across_threads() {
        const N: u64 = 1_000_000;
        let (mut p, mut c) = channel::<u64>(128);
        let producer = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                for i in 0..N {
                    p.push(i).await.unwrap();
                }
            })
        });
        let (count, sum) = futures_lite::future::block_on(async {
            let (mut count, mut sum) = (0u64, 0u64);
            while let Some(v) = c.pop().await {
                assert_eq!(v, count);
                count += 1;
                sum += v;
            }
            (count, sum)
        });
        producer.join().unwrap();
        assert_eq!(count, N);
        assert_eq!(sum, N * (N - 1) / 2);
    }

    #[test]
    fn dropping_producer_wakes_waiting_consumer() {
        let (p, mut c) = channel::<u8>(2);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(p);
        });
        assert_eq!(futures_lite::future::block_on(c.pop()), None);
        t.join().unwrap();
    }

    #[test]
    fn dropping_consumer_wakes_waiting_producer() {
        let (mut p, c) = channel::<u8>(1);
        p.try_push(0).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(c);
        });
        assert_eq!(
            futures_lite::future::block_on(p.push(1)),
            Err(PushError::Closed(1))
        );
        t.join().unwrap();
    }

    #[test]
    fn is_send() {
        fn assert_send<S: Send>() {}
        assert_send::<Producer<Vec<u8>>>();
        assert_send::<Consumer<Vec<u8>>>();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u16),
        Pop,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![any::<u16>().prop_map(Op::Push), Just(Op::Pop)]
    }

    proptest::proptest! {
        #[test]
        fn matches_vecdeque_model(
            cap in 0usize..20,
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let (mut p, mut c) = channel::<u16>(cap);
            let cap = p.capacity();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(v) => {
                        let got = p.try_push(v);
                        if model.len() < cap {
                            model.push_back(v);
                            proptest::prop_assert_eq!(got, Ok(()));
                        } else {
                            proptest::prop_assert_eq!(got, Err(PushError::Full(v)));
                        }
                    }
                    Op::Pop => {
                        let want = model.pop_front().ok_or(PopError::Empty);
                        proptest::prop_assert_eq!(c.try_pop(), want);
                    }
                }
                proptest::prop_assert_eq!(p.len(), model.len());
                proptest::prop_assert_eq!(c.len(), model.len());
            }
            drop(p);
            while let Some(v) = model.pop_front() {
                proptest::prop_assert_eq!(c.try_pop(), Ok(v));
            }
            proptest::prop_assert_eq!(c.try_pop(), Err(PopError::Closed));
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Two threads, capacity 2, 3 items pushed with retry and popped in order.
    #[test]
    fn loom_try_push_pop_order() {
        loom::model(|| {
            let (mut p, mut c) = channel::<usize>(2);
            let t = thread::spawn(move || {
                for i in 0..3 {
                    let mut v = i;
                    loop {
                        match p.try_push(v) {
                            Ok(()) => break,
                            Err(PushError::Full(back)) => {
                                v = back;
                                thread::yield_now();
                            }
                            Err(PushError::Closed(_)) => panic!("consumer alive"),
                        }
                    }
                }
            });
            let mut next = 0;
            while next < 3 {
                match c.try_pop() {
                    Ok(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(PopError::Closed) => panic!("closed before drained"),
                }
            }
            t.join().unwrap();
            assert_eq!(c.try_pop(), Err(PopError::Closed));
        });
    }

    /// Producer pushes one item and drops; the consumer must see the item and
    /// then `Closed`, never `Closed` first.
    #[test]
    fn loom_close_detection_consumer() {
        loom::model(|| {
            let (mut p, mut c) = channel::<usize>(2);
            let t = thread::spawn(move || {
                p.try_push(7).unwrap();
                drop(p);
            });
            let mut got = Vec::new();
            loop {
                match c.try_pop() {
                    Ok(v) => got.push(v),
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(PopError::Closed) => break,
                }
            }
            t.join().unwrap();
            assert_eq!(got, vec![7]);
        });
    }

    /// Consumer drops while the producer pushes; the producer eventually sees
    /// `Closed`, and every pushed value is dropped exactly once (loom checks
    /// for leaks of its `Arc`).
    #[test]
    fn loom_close_detection_producer() {
        loom::model(|| {
            let (mut p, c) = channel::<loom::sync::Arc<()>>(1);
            let t = thread::spawn(move || drop(c));
            let item = loom::sync::Arc::new(());
            while !p.try_push(item.clone()).is_err_and(|e| e.is_closed()) {
                thread::yield_now();
            }
            t.join().unwrap();
            drop(p);
            assert_eq!(loom::sync::Arc::strong_count(&item), 1);
        });
    }

    /// Bounded model for the waking-path tests (they explore far more
    /// interleavings than the `try_*` ones because of the waker mutexes).
    fn bounded_model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(5);
        }
        builder.check(f);
    }

    /// Waking path, "data available": the consumer waits in `pop().await`
    /// while the producer pushes one item. The producer thread hands the
    /// `Producer` back through `join` instead of dropping it, so only the push
    /// notification (not the close wake-up) can wake the consumer; a lost
    /// wake-up shows up as a deadlock. Then the close wake-up is checked.
    #[test]
    fn loom_async_consumer_woken() {
        bounded_model(|| {
            let (mut p, mut c) = channel::<usize>(1);
            let t = thread::spawn(move || {
                p.try_push(1).unwrap();
                p
            });
            assert_eq!(loom::future::block_on(c.pop()), Some(1));
            let p = t.join().unwrap();
            let t = thread::spawn(move || drop(p));
            assert_eq!(loom::future::block_on(c.pop()), None);
            t.join().unwrap();
        });
    }

    /// Waking path, "room available": the producer waits in `push().await`
    /// on a full capacity-1 ring while the consumer pops.
    #[test]
    fn loom_async_producer_woken() {
        bounded_model(|| {
            let (mut p, mut c) = channel::<usize>(1);
            p.try_push(0).unwrap();
            let t = thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 2 {
                    match c.try_pop() {
                        Ok(v) => got.push(v),
                        Err(PopError::Empty) => thread::yield_now(),
                        Err(PopError::Closed) => break,
                    }
                }
                got
            });
            loom::future::block_on(p.push(1)).unwrap();
            assert_eq!(t.join().unwrap(), vec![0, 1]);
        });
    }
}
