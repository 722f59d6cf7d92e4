//! Exchanges: the edges that move batches between shards (key-by, rebalance, broadcast,
//! global).
//!
//! Every exchange edge has one channel per (producer shard, consumer shard) pair. On the
//! producing side an `Outbox` routes the records of each incoming batch into one staging vector
//! per destination and sends every non-empty one at once: a batch leaves as soon as the
//! producer has nothing more ready, it is never held back to fill up. What does not fit is
//! kept aside and the pushing task waits (see `runtime::task`). On the consuming side an inbox
//! task receives from all producers and pushes into the local operator chain. The drained
//! vectors go back to this shard's outbox of the same exchange (`pool`), not to the allocator.

use crate::checkpoint::shard::TerminalId;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use super::{ChannelReceiver, ChannelSender, RecvError, SendError};
use crate::batch::{Batch, Message};
use crate::checkpoint::Barrier;
use crate::checkpoint::barrier::{Aligner, Alignment};
use crate::error::{Result, WeirError};
use crate::key::KeyGroups;
use crate::operator::{Push, guarded};
use crate::runtime::task::{Pending, Scheduler};
use crate::runtime::{OperatorCtx, ShardMetrics};
use crate::time::{END_OF_TIME, Progress, WatermarkMerger};
use crate::vec_pool::VecPool;

/// Decides which shards receive which records.
pub trait Partitioner<T>: 'static {
    /// Moves every record of `records` into the staging vector of its destination.
    fn route(&mut self, records: &mut Vec<T>, staging: &mut [Vec<T>]);
}

/// Key-by: each record goes to the shard owning its key's key group.
pub struct KeyPartitioner<KF> {
    key_fn: KF,
    groups: KeyGroups,
}

impl<KF> KeyPartitioner<KF> {
    pub fn new(key_fn: KF, groups: KeyGroups) -> Self {
        KeyPartitioner { key_fn, groups }
    }
}

impl<T, K: Hash, KF: FnMut(&T) -> K + 'static> Partitioner<T> for KeyPartitioner<KF> {
    #[inline]
    fn route(&mut self, records: &mut Vec<T>, staging: &mut [Vec<T>]) {
        if staging.len() == 1 {
            staging[0].append(records);
            return;
        }
        for r in records.drain(..) {
            let shard = self.groups.shard_of(&(self.key_fn)(&r));
            staging[shard].push(r);
        }
    }
}

/// Rebalance: whole batches dealt round robin over the shards.
#[derive(Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// Starts at `first`, so shards do not all start sending to shard 0.
    pub fn starting_at(first: usize) -> Self {
        RoundRobin { next: first }
    }
}

impl<T: 'static> Partitioner<T> for RoundRobin {
    fn route(&mut self, records: &mut Vec<T>, staging: &mut [Vec<T>]) {
        let n = staging.len();
        staging[self.next % n].append(records);
        self.next = (self.next + 1) % n;
    }
}

/// Broadcast: every shard gets every record.
pub struct Broadcast;

impl<T: Clone + 'static> Partitioner<T> for Broadcast {
    fn route(&mut self, records: &mut Vec<T>, staging: &mut [Vec<T>]) {
        if let Some((last, rest)) = staging.split_last_mut() {
            for s in rest {
                s.extend_from_slice(records);
            }
            last.append(records);
        }
    }
}

/// Global: everything goes to shard 0 (for single-instance sinks).
pub struct Global;

impl<T: 'static> Partitioner<T> for Global {
    fn route(&mut self, records: &mut Vec<T>, staging: &mut [Vec<T>]) {
        staging[0].append(records);
    }
}

/// The producing side of an exchange on one shard.
struct OutboxState<T, S> {
    senders: Vec<S>,
    staging: Vec<Vec<T>>,
    /// Messages that did not fit, per destination, in order.
    held: Vec<VecDeque<Message<T>>>,
    batch_size: usize,
    /// Where the next staging vectors come from: those this shard's inbox drained.
    pool: Rc<VecPool<T>>,
    name: String,
    shard: usize,
    metrics: Rc<ShardMetrics>,
}

impl<T, S: ChannelSender<Message<T>>> OutboxState<T, S> {
    /// Sends (or holds) `msg` for `dest`, keeping order behind anything already held.
    /// Returns false when something is now held.
    fn send(&mut self, dest: usize, msg: Message<T>) -> Result<bool> {
        if !self.held[dest].is_empty() {
            self.held[dest].push_back(msg);
            self.note_held(dest);
            return Ok(false);
        }
        match self.senders[dest].try_send(msg) {
            Ok(()) => {
                let q = self.senders[dest].queued();
                if q > self.metrics.max_queue_len.get() {
                    self.metrics.max_queue_len.set(q);
                }
                Ok(true)
            }
            Err(SendError::Full(msg)) => {
                self.held[dest].push_back(msg);
                self.note_held(dest);
                Ok(false)
            }
            Err(SendError::Closed(_)) => Err(self.closed(dest)),
        }
    }

    /// Records how many messages wait behind a full queue: bounded, because the pushing task
    /// waits as soon as anything is held.
    fn note_held(&self, dest: usize) {
        let held = self.held[dest].len();
        if held > self.metrics.max_held.get() {
            self.metrics.max_held.set(held);
        }
    }

    fn closed(&self, dest: usize) -> WeirError {
        WeirError::Disconnected {
            operator: self.name.clone(),
            shard: dest,
            from: self.shard,
        }
    }
}

impl<T, S: ChannelSender<Message<T>>> Pending for RefCell<OutboxState<T, S>> {
    fn try_flush(&self) -> Result<bool> {
        let mut st = self.borrow_mut();
        let mut all_sent = true;
        for dest in 0..st.senders.len() {
            while let Some(msg) = st.held[dest].pop_front() {
                match st.senders[dest].try_send(msg) {
                    Ok(()) => {}
                    Err(SendError::Full(msg)) => {
                        st.held[dest].push_front(msg);
                        all_sent = false;
                        break;
                    }
                    Err(SendError::Closed(_)) => return Err(st.closed(dest)),
                }
            }
        }
        Ok(all_sent)
    }

    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.borrow_mut();
        let st = &mut *st;
        let mut holding = false;
        for (sender, held) in st.senders.iter_mut().zip(st.held.iter()) {
            if held.is_empty() {
                continue;
            }
            holding = true;
            if sender.poll_ready(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        // Another task sharing this outbox (a union) may have sent everything already.
        if holding {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// The push side of an exchange: what the upstream chain calls.
pub struct Outbox<T, S, P> {
    state: Rc<RefCell<OutboxState<T, S>>>,
    partitioner: P,
    scheduler: Rc<Scheduler>,
    ctx: OperatorCtx,
    terminal: TerminalId,
    finished: bool,
}

impl<T: 'static, S: ChannelSender<Message<T>> + 'static, P: Partitioner<T>> Outbox<T, S, P> {
    pub(crate) fn new(
        senders: Vec<S>,
        partitioner: P,
        pool: Rc<VecPool<T>>,
        scheduler: Rc<Scheduler>,
        ctx: OperatorCtx,
    ) -> Self {
        let n = senders.len();
        let state = OutboxState {
            senders,
            staging: (0..n).map(|_| Vec::new()).collect(),
            held: (0..n).map(|_| VecDeque::new()).collect(),
            batch_size: ctx.batch_size,
            pool,
            name: ctx.name.clone(),
            shard: ctx.shard,
            metrics: ctx.metrics.clone(),
        };
        // The barrier leaves this shard's chain here (the receiving inboxes carry it on).
        let terminal = ctx.checkpoints.register_terminal();
        Outbox {
            terminal,
            state: Rc::new(RefCell::new(state)),
            partitioner,
            scheduler,
            ctx,
            finished: false,
        }
    }

    fn block(&self) {
        self.scheduler
            .block_current(self.state.clone() as Rc<dyn Pending>);
    }

    /// Sends a control message to every destination.
    fn broadcast(&mut self, message: impl Fn() -> Message<T>) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let mut blocked = false;
        for dest in 0..st.senders.len() {
            blocked |= !st.send(dest, message())?;
        }
        drop(st);
        if blocked {
            self.block();
        }
        Ok(())
    }
}

impl<T: 'static, S: ChannelSender<Message<T>> + 'static, P: Partitioner<T>> Push<T>
    for Outbox<T, S, P>
{
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        let blocked = {
            let mut guard = self.state.borrow_mut();
            let st = &mut *guard;
            let (partitioner, staging) = (&mut self.partitioner, &mut st.staging);
            guarded(&self.ctx, || partitioner.route(&mut batch.records, staging))?;
            let mut blocked = false;
            for dest in 0..st.staging.len() {
                if st.staging[dest].is_empty() {
                    continue;
                }
                let fresh = st
                    .pool
                    .take(st.batch_size.min(st.staging[dest].len().max(16)));
                let records = std::mem::replace(&mut st.staging[dest], fresh);
                let msg = Message::Data(Batch {
                    records,
                    ingest: batch.ingest,
                });
                blocked |= !st.send(dest, msg)?;
            }
            blocked
        };
        if blocked {
            self.block();
        }
        Ok(())
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        // Staging is empty between pushes, so this follows every record sent before it.
        self.broadcast(|| Message::Progress(progress))
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.broadcast(|| Message::Barrier(barrier))?;
        self.ctx
            .checkpoints
            .terminal_reached(self.terminal, barrier)
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.broadcast(|| Message::End)?;
        self.ctx.checkpoints.terminal_finished(self.terminal)
    }
}

/// The consuming side of an exchange on one shard: receives from every producer shard and
/// pushes into the local chain until every producer sent end-of-input. The watermark passed on
/// is the minimum over the producers (idle ones left out).
pub(crate) async fn run_inbox<T, R: ChannelReceiver<Message<T>>>(
    mut inputs: Vec<R>,
    next: Box<dyn Push<T>>,
    pool: Rc<VecPool<T>>,
    scheduler: Rc<Scheduler>,
    ctx: OperatorCtx,
    cancel: Arc<AtomicBool>,
) -> Result<()> {
    /// Messages taken from one channel before looking at the next: fairness between producers.
    const BURST: usize = 8;
    let task = scheduler.new_task();
    let mut state = InboxState {
        ended: vec![false; inputs.len()],
        aligner: Aligner::new(inputs.len()),
        open: inputs.len(),
        watermarks: WatermarkMerger::new(inputs.len()),
        next,
        pool,
    };
    let disconnected = |from: usize| WeirError::Disconnected {
        operator: ctx.name.clone(),
        shard: ctx.shard,
        from,
    };
    while state.open > 0 {
        if cancel.load(Ordering::Relaxed) {
            return Err(WeirError::Cancelled { shard: ctx.shard });
        }
        let mut progressed = false;
        for (from, input) in inputs.iter_mut().enumerate() {
            for _ in 0..BURST {
                if state.ended[from] || state.aligner.is_blocked(from) {
                    break;
                }
                match input.try_recv() {
                    Ok(msg) => {
                        progressed = true;
                        scheduler.enter(task);
                        state.handle(from, msg)?;
                        scheduler.drain(task).await?;
                    }
                    Err(RecvError::Empty) => break,
                    Err(RecvError::Closed) => return Err(disconnected(from)),
                }
            }
        }
        if state.open == 0 {
            break;
        }
        if progressed {
            scheduler.between_batches().await?;
            continue;
        }
        // Nothing anywhere: park until some producer sends (it wakes us; see `spsc`).
        let (ended, aligner) = (&state.ended, &state.aligner);
        let (from, msg) = std::future::poll_fn(|cx| {
            for (from, input) in inputs.iter_mut().enumerate() {
                if ended[from] || aligner.is_blocked(from) {
                    continue;
                }
                if let Poll::Ready(msg) = input.poll_recv(cx) {
                    return Poll::Ready((from, msg));
                }
            }
            Poll::Pending
        })
        .await;
        let Some(msg) = msg else {
            return Err(disconnected(from));
        };
        scheduler.enter(task);
        state.handle(from, msg)?;
        scheduler.drain(task).await?;
    }
    scheduler.enter(task);
    state.next.finish()?;
    scheduler.drain(task).await
}

/// What an inbox tracks about its producers.
struct InboxState<T> {
    ended: Vec<bool>,
    /// Producers that delivered the barrier in flight are not read until it is aligned.
    aligner: Aligner,
    open: usize,
    watermarks: WatermarkMerger,
    next: Box<dyn Push<T>>,
    /// Shared with this shard's outbox of the same exchange.
    pool: Rc<VecPool<T>>,
}

impl<T> InboxState<T> {
    fn handle(&mut self, from: usize, msg: Message<T>) -> Result<()> {
        match msg {
            Message::Data(mut batch) => {
                self.next.push(&mut batch)?;
                self.pool.give(batch.records);
                Ok(())
            }
            Message::Progress(p) => self.progress(from, p),
            Message::Barrier(b) => {
                let aligned = self.aligner.on_barrier(from, b);
                self.aligned(aligned)
            }
            Message::End => {
                self.ended[from] = true;
                self.open -= 1;
                // A finished producer holds no watermark back, nor a barrier.
                self.progress(from, Progress::Watermark(END_OF_TIME))?;
                let aligned = self.aligner.on_end(from);
                self.aligned(aligned)
            }
        }
    }

    fn aligned(&mut self, alignment: Alignment) -> Result<()> {
        match alignment {
            Alignment::Aligned(b) => self.next.barrier(b),
            Alignment::Waiting | Alignment::Idle => Ok(()),
        }
    }

    fn progress(&mut self, from: usize, p: Progress) -> Result<()> {
        match self.watermarks.update(from, p) {
            Some(p) => self.next.progress(p),
            None => Ok(()),
        }
    }
}
