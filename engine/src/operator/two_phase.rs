//! Two-phase (local-global) aggregation of aligned windows, as Flink's and RisingWave's
//! optimizers plan skewed window aggregates.
//!
//! Phase 1, [`LocalWindowCombiner`], runs on the *sending* shard, chained before the key-by
//! exchange: it folds each record into a per-(window, key) accumulator and sends only those
//! partial accumulators through the exchange. Phase 2, [`MergeWindowOp`], runs on the shard
//! owning the key and merges the partials of every sending shard (`AggregateFunction::merge`),
//! firing a window when the watermark passes its end. A hot key then costs one partial per
//! sending shard and window instead of one exchanged record per event, and the records never
//! cross the exchange (only the key and the accumulator do: projection for free).
//!
//! Exactness. The combiner sends a window's partials when *its* watermark passes the window's
//! end, before passing that watermark on; the merging shard's watermark is the minimum over all
//! senders, so a partial is never late there unless the record would have been (its sender's
//! previous watermark was before the window's end). A record for a window the combiner already
//! flushed goes out at once as a partial of one record, so lateness and allowed lateness are
//! decided by the merging stage exactly as the one-phase operator would decide them. At a
//! checkpoint barrier the combiner flushes every open partial before passing the barrier on:
//! its own state is then empty, so the snapshot holds only the merging stage's state, which is
//! keyed (per key group) and follows its keys on a rescale to any shard count.

use std::hash::Hash;
use std::time::Instant;

use super::aligned_window::{WindowKeys, window_slot};
use super::window::{PART_KEYS, WindowResult};
use super::window_emit::{WindowEmit, WindowStage};
use super::{AggregateFunction, Push, guarded};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::{Progress, Timestamp};
use crate::window::{Window, WindowAssigner, cleanup_time, is_late};

/// A partial aggregate: one sending shard's accumulator of `key` in `window`.
pub type WindowPartial<K, Acc> = WindowResult<K, Acc>;

/// Phase 1: per-shard pre-aggregation of aligned windows (see the module docs).
pub struct LocalWindowCombiner<K, T, KF, TF, A: AggregateFunction<T>> {
    key_fn: KF,
    timestamp_fn: TF,
    assigner: WindowAssigner,
    agg: A,
    /// Open windows sorted by (end, window), each with its keys' accumulators.
    windows: Vec<WindowKeys<K, A::Acc>>,
    /// Keys of the last window flushed: a new window's map starts at that capacity.
    keys_hint: usize,
    watermark: Timestamp,
    assigned: Vec<Window>,
    out: Batch<WindowPartial<K, A::Acc>>,
    next: Box<dyn Push<WindowPartial<K, A::Acc>>>,
    last_ingest: Instant,
    ctx: OperatorCtx,
}

impl<K, T, KF, TF, A> LocalWindowCombiner<K, T, KF, TF, A>
where
    K: Hash + Eq + Clone,
    T: Clone,
    KF: FnMut(&T) -> K,
    TF: Fn(&T) -> Timestamp,
    A: AggregateFunction<T>,
{
    pub fn new(
        key_fn: KF,
        timestamp_fn: TF,
        assigner: WindowAssigner,
        agg: A,
        next: Box<dyn Push<WindowPartial<K, A::Acc>>>,
        ctx: OperatorCtx,
    ) -> Self {
        LocalWindowCombiner {
            key_fn,
            timestamp_fn,
            assigner,
            agg,
            windows: Vec::new(),
            keys_hint: 0,
            watermark: i64::MIN,
            assigned: Vec::new(),
            out: Batch::with_capacity(ctx.batch_size),
            next,
            last_ingest: Instant::now(),
            ctx,
        }
    }

    #[inline]
    fn on_record(&mut self, record: T) {
        let ts = (self.timestamp_fn)(&record);
        if self.assigner.assign(ts, &mut self.assigned).is_err() {
            // No window can hold this timestamp (the one-phase operator sends it to its late
            // output; here it is counted and dropped).
            self.ctx.count_late(1);
            return;
        }
        let key = (self.key_fn)(&record);
        let last = self.assigned.len().saturating_sub(1);
        let mut slot = Some(record);
        for (i, window) in self.assigned.iter().enumerate() {
            let value = if i == last { slot.take() } else { slot.clone() };
            let Some(value) = value else { break };
            if window.max_timestamp() <= self.watermark {
                // Already flushed here: a partial of one record, for the merging stage to
                // judge (it may still be on time there).
                let mut acc = self.agg.create_accumulator();
                self.agg.add(&mut acc, value);
                self.out.records.push(WindowResult {
                    key: key.clone(),
                    window: *window,
                    value: acc,
                });
                continue;
            }
            let i = window_slot(&mut self.windows, *window, false, self.keys_hint);
            let keys = &mut self.windows[i].keys;
            let acc = match keys.get_mut(&key) {
                Some(acc) => acc,
                None => keys
                    .entry(key.clone())
                    .or_insert_with(|| self.agg.create_accumulator()),
            };
            self.agg.add(acc, value);
        }
    }

    /// Sends the partials of every window ending at or before `until`, in window order.
    fn flush(&mut self, until: Timestamp) -> Result<()> {
        let n = self.windows.partition_point(|w| w.end <= until);
        for w in self.windows.drain(..n) {
            self.keys_hint = self.keys_hint.max(w.keys.len());
            for (key, acc) in w.keys {
                self.out.records.push(WindowResult {
                    key,
                    window: w.window,
                    value: acc,
                });
                if self.out.records.len() >= self.ctx.batch_size {
                    self.out.ingest = self.last_ingest;
                    self.next.push(&mut self.out)?;
                }
            }
        }
        self.send()
    }

    fn send(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.out.ingest = self.last_ingest;
            self.next.push(&mut self.out)?;
        }
        Ok(())
    }
}

impl<K, T, KF, TF, A> Push<T> for LocalWindowCombiner<K, T, KF, TF, A>
where
    K: Hash + Eq + Clone,
    T: Clone,
    KF: FnMut(&T) -> K,
    TF: Fn(&T) -> Timestamp,
    A: AggregateFunction<T>,
{
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        self.last_ingest = batch.ingest;
        let ctx = self.ctx.clone();
        guarded(&ctx, || {
            for r in batch.records.drain(..) {
                self.on_record(r);
            }
        })?;
        // Only single-record partials of flushed windows are sent per batch.
        self.send()
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        if let Progress::Watermark(w) = progress
            && w > self.watermark
        {
            self.watermark = w;
            self.flush(w)?;
        }
        self.next.progress(progress)
    }

    /// Flushes every partial, so the checkpoint needs no state of this operator (see the
    /// module docs): the merging stage snapshots them, keyed.
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.flush(i64::MAX)?;
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.flush(i64::MAX)?;
        self.next.finish()
    }
}

/// Phase 2: merges the partials of every sending shard per (key, window) and fires each
/// window, in (end, key) order like the one-phase aligned operator, when the watermark passes
/// its end.
pub struct MergeWindowOp<K, T, A: AggregateFunction<T>> {
    agg: A,
    allowed_lateness: u64,
    windows: Vec<WindowKeys<K, A::Acc>>,
    keys_hint: usize,
    watermark: Timestamp,
    emit: WindowEmit<WindowPartial<K, A::Acc>, WindowResult<K, A::Out>>,
    ctx: OperatorCtx,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<K, T, A> MergeWindowOp<K, T, A>
where
    K: Hash + Eq + Ord + Clone + StateCodec,
    A: AggregateFunction<T>,
    A::Acc: StateCodec,
{
    /// Restores this shard's key groups if the job resumes from a checkpoint.
    pub fn new(
        agg: A,
        allowed_lateness: u64,
        next: Box<dyn Push<WindowResult<K, A::Out>>>,
        late_out: Box<dyn Push<WindowPartial<K, A::Acc>>>,
        ctx: OperatorCtx,
    ) -> Result<Self> {
        let restore = ctx.take_restore();
        let mut windows: Vec<WindowKeys<K, A::Acc>> = Vec::new();
        for entry in restore.part(PART_KEYS).keyed::<K, (Window, bool, A::Acc)>() {
            let (key, (window, fired, acc)) =
                entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
            let i = window_slot(&mut windows, window, fired, 0);
            let keys = &mut windows[i].keys;
            match keys.get_mut(&key) {
                // A rescale never puts one key's window in two entries, but merging is right
                // if it ever did.
                Some(old) => agg.merge(old, acc),
                None => {
                    keys.insert(key, acc);
                }
            }
        }
        Ok(MergeWindowOp {
            agg,
            allowed_lateness,
            windows,
            keys_hint: 0,
            watermark: i64::MIN,
            emit: WindowEmit::new(next, late_out, ctx.batch_size),
            ctx,
            _t: std::marker::PhantomData,
        })
    }

    fn snapshot(&self, barrier: Barrier) -> Result<()> {
        let windows = &self.windows;
        self.ctx.save_state(barrier, |out| {
            out.set_part(PART_KEYS);
            for w in windows {
                for (key, acc) in &w.keys {
                    out.keyed_encoded(key, |bytes| {
                        w.window.encode(bytes);
                        w.fired.encode(bytes);
                        acc.encode(bytes);
                    });
                }
            }
            Ok(())
        })
    }

    #[inline]
    fn on_partial(&mut self, p: WindowPartial<K, A::Acc>) {
        let (watermark, lateness) = (self.watermark, self.allowed_lateness);
        if is_late(&p.window, watermark, lateness) {
            self.ctx.count_late(1);
            self.emit.late(p);
            return;
        }
        let fired = p.window.max_timestamp() <= watermark;
        let i = window_slot(&mut self.windows, p.window, fired, self.keys_hint);
        let w = &mut self.windows[i];
        let acc = match w.keys.get_mut(&p.key) {
            Some(acc) => {
                self.agg.merge(acc, p.value);
                acc
            }
            None => w.keys.entry(p.key.clone()).or_insert(p.value),
        };
        if w.fired {
            // Late but within the allowed lateness: fire the update at once.
            self.emit.results().push(WindowResult {
                key: p.key,
                window: p.window,
                value: self.agg.get_result(acc),
            });
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        let lateness = self.allowed_lateness;
        let mut i = 0;
        while let Some(w) = self.windows.get_mut(i) {
            if w.end > watermark {
                break;
            }
            let cleanup = cleanup_time(&w.window, lateness) <= watermark;
            if !w.fired {
                w.fired = true;
                self.keys_hint = w.keys.len();
                let mut entries: Vec<(&K, &A::Acc)> = w.keys.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (key, acc) in entries {
                    self.emit.results().push(WindowResult {
                        key: key.clone(),
                        window: w.window,
                        value: self.agg.get_result(acc),
                    });
                    self.emit.flush_full()?;
                }
            }
            if cleanup {
                self.windows.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }
}

impl<K, T, A> WindowStage for MergeWindowOp<K, T, A>
where
    K: Hash + Eq + Ord + Clone + StateCodec,
    A: AggregateFunction<T>,
    A::Acc: StateCodec,
{
    type In = WindowPartial<K, A::Acc>;
    type Out = WindowResult<K, A::Out>;

    fn ctx(&self) -> &OperatorCtx {
        &self.ctx
    }

    fn emit(&mut self) -> &mut WindowEmit<Self::In, Self::Out> {
        &mut self.emit
    }

    fn take(&mut self, input: Self::In) {
        self.on_partial(input);
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<()> {
        self.on_watermark(watermark)
    }

    fn checkpoint(&self, barrier: Barrier) -> Result<()> {
        self.snapshot(barrier)
    }
}
