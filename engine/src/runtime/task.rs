//! How a shard runs its tasks: one glommio task per shard polls every source and inbox of the
//! shard, and waits (parks) when none can make progress.
//!
//! Backpressure: a push into a full cross-shard queue never blocks and never drops. The outbox
//! keeps the batch aside and registers itself with the *task* that was pushing; that task then
//! awaits room in exactly those queues before it takes more input. A task waits only for
//! queues downstream of itself, so in an acyclic graph the waits cannot form a cycle.
//!
//! Parking: when every task of a shard is waiting, the glommio executor sleeps in the kernel
//! (io_uring wait). A producer on another shard wakes the consumer's waker only if the consumer
//! announced it is waiting (see `channel::spsc`), so a busy pipeline pays no wake-ups and an
//! idle one burns no CPU.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::wake::ShardWake;
use crate::error::Result;

/// Something holding batches that did not fit in their queue.
pub(crate) trait Pending {
    /// Moves held batches into their queues; true when nothing is held any more.
    fn try_flush(&self) -> Result<bool>;
    /// Ready when some held batch may now fit (or the queue closed).
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The tasks of one shard and what each of them is waiting on.
#[derive(Default)]
pub(crate) struct Scheduler {
    current: Cell<usize>,
    blocked: RefCell<Vec<Vec<Rc<dyn Pending>>>>,
    /// The shard's LSM state stores, whose flushes need the shard to wait now and then.
    stores: RefCell<Vec<weir_storage::Store>>,
}

impl Scheduler {
    /// Registers a new task and returns its id.
    pub fn new_task(&self) -> usize {
        let mut blocked = self.blocked.borrow_mut();
        blocked.push(Vec::new());
        blocked.len() - 1
    }

    /// Registers an LSM store of this shard (see [`Scheduler::between_batches`]).
    pub fn add_store(&self, store: weir_storage::Store) {
        self.stores.borrow_mut().push(store);
    }

    /// What a task does between two batches: applies the LSM stores' write backpressure,
    /// then yields to the shard's other tasks.
    ///
    /// Keyed operators write their state synchronously, so a frozen memtable is flushed by
    /// a background task. Its I/O only progresses while the shard waits, and a busy pipeline
    /// never does by itself: without this, frozen memtables pile up in memory. Relieving
    /// pressure flushes inline (awaiting the I/O) once too many memtables wait, and slows
    /// writers down while compaction is behind — a write stall, as in RocksDB. It costs a
    /// few comparisons when the stores keep up, and nothing on shards without LSM state.
    pub async fn between_batches(&self) -> Result<()> {
        // By index, one handle at a time: no borrow across the await, no allocation per batch.
        let count = self.stores.borrow().len();
        for i in 0..count {
            let store = self.stores.borrow().get(i).cloned();
            if let Some(store) = store {
                store.relieve_pressure().await.map_err(|e| {
                    crate::error::WeirError::Checkpoint(format!("LSM state store: {e}"))
                })?;
            }
        }
        yield_now().await;
        Ok(())
    }

    /// Marks `task` as the one pushing now.
    #[inline]
    pub fn enter(&self, task: usize) {
        self.current.set(task);
    }

    /// Called by an outbox that could not send everything: the current task must wait for it.
    pub fn block_current(&self, pending: Rc<dyn Pending>) {
        let task = self.current.get();
        if let Some(list) = self.blocked.borrow_mut().get_mut(task)
            && !list.iter().any(|p| Rc::ptr_eq(p, &pending))
        {
            list.push(pending);
        }
    }

    /// Waits until every outbox `task` filled has sent what it held.
    pub async fn drain(&self, task: usize) -> Result<()> {
        loop {
            let mut list = match self.blocked.borrow_mut().get_mut(task) {
                Some(list) if !list.is_empty() => std::mem::take(list),
                _ => return Ok(()),
            };
            let mut still = Vec::new();
            for p in list.drain(..) {
                if !p.try_flush()? {
                    still.push(p);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            std::future::poll_fn(|cx| {
                if still.iter().any(|p| p.poll_room(cx).is_ready()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            if let Some(list) = self.blocked.borrow_mut().get_mut(task) {
                list.extend(still);
            }
        }
    }
}

/// Yields once to the other tasks of the shard.
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// A boxed task of a shard.
pub(crate) type LocalTask = Pin<Box<dyn Future<Output = Result<()>>>>;

/// Polls every task; completes when all completed, or with the first error.
///
/// The tasks are polled with a [`ShardWake`] waker, not the glommio task's own: wakes from
/// other shards are coalesced to at most one queued at a time (see `runtime::wake`).
pub(crate) struct DriveAll {
    tasks: Vec<Option<LocalTask>>,
    wake: Option<(Arc<ShardWake>, Waker)>,
}

impl DriveAll {
    pub fn new(tasks: Vec<LocalTask>) -> Self {
        DriveAll {
            tasks: tasks.into_iter().map(Some).collect(),
            wake: None,
        }
    }

    /// The subtasks' waker for the shard task `cx` belongs to (made on the first poll).
    fn waker(&mut self, cx: &Context<'_>) -> Waker {
        match &self.wake {
            Some((shared, waker)) if shared.wakes(cx.waker()) => waker.clone(),
            _ => {
                if let Some((old, _)) = self.wake.take() {
                    old.close();
                }
                let (shared, waker) = ShardWake::spawn(cx.waker());
                self.wake = Some((shared, waker.clone()));
                waker
            }
        }
    }
}

impl Drop for DriveAll {
    fn drop(&mut self) {
        if let Some((shared, _)) = &self.wake {
            shared.close();
        }
    }
}

impl Future for DriveAll {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let waker = self.waker(cx);
        let mut inner = Context::from_waker(&waker);
        let mut open = 0;
        for slot in self.tasks.iter_mut() {
            if let Some(task) = slot {
                match task.as_mut().poll(&mut inner) {
                    Poll::Ready(Ok(())) => *slot = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => open += 1,
                }
            }
        }
        if open == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::spsc;
    use glommio::{LocalExecutorBuilder, Placement};
    use std::time::Duration;

    /// A shard kept busy by one of its tasks (a source yielding after every small batch) while
    /// another thread hands it messages one at a time through a ring, each one once the
    /// shard's inbox parked: every message is a cross-thread wake. The preemption timer is set
    /// far away, so glommio never drains its foreign-wake queue meanwhile (in a job that window
    /// is 100 ms). Without coalescing, each wake queued one more clone of the task's waker and
    /// glommio panicked on the shard's thread after 32,767 ("Waker invariant broken", refcount
    /// -32768), the symptom q5 with `aggregate_two_phase` had.
    #[test]
    fn busy_shard_survives_many_cross_thread_wakes() {
        const N: u64 = 40_000;
        let (mut tx, mut rx) = spsc::channel::<u64>(4);
        // Set once the shard is gone: if glommio panicked there, the ring is never dropped.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_producer = stop.clone();
        let stopped = move || stop_producer.load(std::sync::atomic::Ordering::Relaxed);
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                let mut item = i;
                loop {
                    match tx.try_push(item) {
                        Ok(()) => break,
                        Err(spsc::PushError::Full(v)) => item = v,
                        Err(spsc::PushError::Closed(_)) => return false,
                    }
                    if stopped() {
                        return false;
                    }
                    std::hint::spin_loop();
                }
                // Wait until it is taken and the consumer parked again (re-armed its waker), so
                // that the next push is a wake-up.
                while i + 1 < N && !(tx.is_empty() && tx.consumer_parked()) {
                    if stopped() {
                        return false;
                    }
                    std::hint::spin_loop();
                }
            }
            true
        });
        let shard = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(2 << 20)
            .preempt_timer(Duration::from_secs(600))
            .spawn(move || async move {
                let done = Rc::new(Cell::new(false));
                let received = Rc::new(Cell::new(0u64));
                let spinner: LocalTask = {
                    let done = done.clone();
                    Box::pin(async move {
                        while !done.get() {
                            yield_now().await;
                        }
                        Ok(())
                    })
                };
                let consumer: LocalTask = {
                    let received = received.clone();
                    Box::pin(async move {
                        for expected in 0..N {
                            let got = std::future::poll_fn(|cx| rx.poll_pop(cx)).await;
                            assert_eq!(got, Some(expected));
                            received.set(received.get() + 1);
                        }
                        done.set(true);
                        Ok(())
                    })
                };
                let result = DriveAll::new(vec![spinner, consumer]).await;
                (result.is_ok(), received.get())
            })
            .expect("test executor starts");
        let shard = shard.join();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let producer = producer.join();
        assert_eq!(
            shard.ok(),
            Some((true, N)),
            "the shard panicked or lost messages"
        );
        assert!(matches!(producer, Ok(true)), "the producer stopped early");
    }

    /// However often other threads wake a shard before it runs, glommio is asked for one wake.
    #[test]
    fn foreign_wakes_ring_the_doorbell_once() {
        let shard = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(2 << 20)
            .spawn(|| async {
                let (shared, waker) = super::super::wake::ShardWake::spawn(Waker::noop());
                let wakers: Vec<Waker> = (0..4).map(|_| waker.clone()).collect();
                let threads: Vec<_> = wakers
                    .into_iter()
                    .map(|w| {
                        std::thread::spawn(move || {
                            for _ in 0..10_000 {
                                w.wake_by_ref();
                            }
                        })
                    })
                    .collect();
                let joined = threads.into_iter().all(|t| t.join().is_ok());
                let rung = shared.rung.load(std::sync::atomic::Ordering::Relaxed);
                shared.close();
                (joined, rung)
            })
            .expect("test executor starts");
        assert_eq!(shard.join().ok(), Some((true, 1)));
    }
}
