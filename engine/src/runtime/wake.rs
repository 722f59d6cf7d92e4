//! Coalesced wake-ups for a shard's task, so other shards cannot overflow its waker count.
//!
//! Why this exists: glommio 0.9 delivers a wake from another thread by cloning the task's waker
//! into the executor's foreign-wake queue — on every call, whether or not one is queued
//! already — and drains that queue only between task-queue runs, i.e. at most once per
//! preemption period (100 ms) while the shard has runnable work. The task counts its wakers in
//! an `i16`, so 32,767 queued cross-thread wakes within one period abort the process ("Waker
//! invariant broken"). That is what a busy shard met: its source yields after every (small,
//! rate-limited) batch, so the shard task is polled every few microseconds; each poll re-arms
//! the waker of an inbox parked on an empty ring, and the other shard, sending a message (a
//! watermark) per batch, wakes it again each time. Two-phase aggregation made it likely by
//! taking the records off the exchange: the inbox was almost always parked.
//!
//! Here every subtask of the shard sees one waker of our own. Woken on the shard's thread it
//! wakes the shard task directly (glommio schedules it at most once). Woken from any other
//! thread it sets `pending` and, only if that was clear, rings a *doorbell*: a tiny glommio
//! task of the shard that clears `pending` and wakes the shard task. Until the doorbell has
//! run — which takes glommio processing the one queued wake — further foreign wakes only find
//! `pending` set: at most one foreign wake per shard is ever queued.
//!
//! No wake-up is lost: a waker that finds `pending` set knows the doorbell has yet to run (it
//! clears the flag before waking the shard task, which then polls every subtask again and sees
//! whatever the waker published before its `swap`; the swaps order the two).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

thread_local! {
    /// Only its address matters: it tells the shard's thread from any other.
    static THREAD_MARK: u8 = const { 0 };
}

/// A value unique to the calling thread among live threads (one TLS access, no `Arc` clone as
/// `std::thread::current()` would take).
fn thread_mark() -> usize {
    THREAD_MARK.with(|m| m as *const u8 as usize)
}

/// The waker every subtask of one shard task gets.
pub(crate) struct ShardWake {
    /// `thread_mark()` of the shard's thread.
    owner: usize,
    /// The shard task's own (glommio) waker: woken on the shard's thread only, once the
    /// doorbell exists.
    task: Waker,
    /// A foreign wake rang the doorbell, which has not run since.
    pending: AtomicBool,
    /// The doorbell task's waker, set on its first poll.
    doorbell: OnceLock<Waker>,
    /// The shard task ended: the doorbell ends too.
    closed: AtomicBool,
    /// Foreign wakes that rang the doorbell (each queues one glommio wake): for tests.
    #[cfg(test)]
    pub(crate) rung: std::sync::atomic::AtomicUsize,
}

impl ShardWake {
    /// A waker for the shard task woken by `task`, with its doorbell spawned on this (the
    /// shard's) glommio executor.
    pub(crate) fn spawn(task: &Waker) -> (Arc<Self>, Waker) {
        let shared = Arc::new(ShardWake {
            owner: thread_mark(),
            task: task.clone(),
            pending: AtomicBool::new(false),
            doorbell: OnceLock::new(),
            closed: AtomicBool::new(false),
            #[cfg(test)]
            rung: std::sync::atomic::AtomicUsize::new(0),
        });
        glommio::spawn_local(Doorbell(shared.clone())).detach();
        let waker = Waker::from(shared.clone());
        (shared, waker)
    }

    /// Whether this was made for the task `waker` wakes.
    pub(crate) fn wakes(&self, waker: &Waker) -> bool {
        self.task.will_wake(waker)
    }

    /// The shard task ended (or got a new waker): lets the doorbell task finish.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(d) = self.doorbell.get() {
            d.wake_by_ref();
        }
    }
}

impl Wake for ShardWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if thread_mark() == self.owner {
            self.task.wake_by_ref();
        } else if !self.pending.swap(true, Ordering::AcqRel) {
            #[cfg(test)]
            self.rung.fetch_add(1, Ordering::Relaxed);
            match self.doorbell.get() {
                Some(doorbell) => doorbell.wake_by_ref(),
                // The doorbell has not run yet; when it does, it sees `pending` and wakes the
                // task. Waking the task as well only saves that hop (and happens once).
                None => self.task.wake_by_ref(),
            }
        }
    }
}

/// The doorbell task: turns the one queued foreign wake into a local wake of the shard task.
struct Doorbell(Arc<ShardWake>);

impl Future for Doorbell {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.0;
        if shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        // A glommio task's waker never changes, so the first one stays valid.
        let _ = shared.doorbell.get_or_init(|| cx.waker().clone());
        // Cleared before the shard task runs, so a wake arriving from here on rings again.
        if shared.pending.swap(false, Ordering::AcqRel) {
            shared.task.wake_by_ref();
        }
        Poll::Pending
    }
}
