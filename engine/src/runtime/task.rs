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
use std::task::{Context, Poll};

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
pub(crate) struct DriveAll {
    tasks: Vec<Option<LocalTask>>,
}

impl DriveAll {
    pub fn new(tasks: Vec<LocalTask>) -> Self {
        DriveAll {
            tasks: tasks.into_iter().map(Some).collect(),
        }
    }
}

impl Future for DriveAll {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut open = 0;
        for slot in self.tasks.iter_mut() {
            if let Some(task) = slot {
                match task.as_mut().poll(cx) {
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
