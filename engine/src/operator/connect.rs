//! Two-input operators: `connect` + co-process functions, the building block of joins.
//!
//! Both inputs feed one operator instance per shard. Like `union`, the operator is shared by
//! the two input paths through `Rc<RefCell<_>>` (they may be driven by different tasks of the
//! shard; pushes never overlap). The watermark passed on is the minimum of the two inputs';
//! end of input is passed on once both ended.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::Hash;
use std::rc::Rc;
use std::time::Instant;

use super::{Push, SideOutputs, guarded};
use crate::batch::Batch;
use crate::checkpoint::barrier::{Alignment, Held, InputAlignment};
use crate::checkpoint::{Barrier, StateRestore, StateSnapshot};
use crate::error::Result;
use crate::runtime::OperatorCtx;
use crate::runtime::task::Scheduler;
use crate::state::{KeyedStateStore, StateCodec, StateError};
use crate::time::{Progress, Timestamp, WatermarkMerger};

use super::ProcessContext;
use super::process::{
    TimerRequest, apply_timers, failed, fire_due_timers, open_keyed_store, restore_timers,
    snapshot_keyed_store, snapshot_timers,
};
use crate::window::TimerService;

/// A keyed co-process function: sees the records of both inputs with their (common) key.
/// Per-key state goes in the job's state backend: declare it in `open` and reach it through
/// `ctx.state()`, scoped to the record's key (checkpointed and rescaled like a keyed process
/// function's). State kept in the function's own fields is per shard. Side outputs
/// (`ctx.output`) are read with `side_output` on the result, as for process functions. Timers
/// registered
/// through `ctx` (event or processing time, per key, deduplicated) call `on_timer` with their
/// key, and are checkpointed with the key's state.
pub trait KeyedCoProcessFunction<K, A, B, Out>: Clone + Send + 'static {
    /// Declares keyed state (called once per shard before any record).
    fn open(&mut self, _store: &mut KeyedStateStore) -> Result<(), StateError> {
        Ok(())
    }
    /// A record of the first input.
    fn process_left(&mut self, key: &K, value: A, ctx: &mut ProcessContext<'_, Out>);
    /// A record of the second input.
    fn process_right(&mut self, key: &K, value: B, ctx: &mut ProcessContext<'_, Out>);
    /// A timer registered for `key` is due (the watermark, or the wall clock for a
    /// processing-time timer, reached `timestamp`); `ctx.timer_domain()` says which. Timers of
    /// a watermark fire in timestamp order before `on_watermark` sees it.
    fn on_timer(&mut self, _key: &K, _timestamp: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// The combined watermark advanced: fire event-time work.
    fn on_watermark(&mut self, _watermark: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Both inputs ended.
    fn on_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Writes state kept in the function's fields into a checkpoint. The default writes
    /// nothing: fields are then not restored after a failure.
    fn snapshot_state(&self, _out: &mut StateSnapshot<'_>) {}
    /// Restores what `snapshot_state` wrote (this shard's key groups only).
    fn restore_state(&mut self, _state: &StateRestore) -> Result<(), StateError> {
        Ok(())
    }
}

struct CoState<K, A, B, Out, KA, KB, F> {
    key_left: KA,
    key_right: KB,
    f: F,
    out: Batch<Out>,
    next: Box<dyn Push<Out>>,
    sides: SideOutputs,
    watermarks: WatermarkMerger,
    watermark: Option<Timestamp>,
    open_inputs: usize,
    alignment: InputAlignment,
    /// What each input delivered after the barrier in flight (see [`InputAlignment`]).
    held_left: VecDeque<Held<A>>,
    held_right: VecDeque<Held<B>>,
    ctx: OperatorCtx,
    /// Ingest time of the last batch from either input: watermark-fired output carries it.
    last_ingest: Instant,
    /// Keyed state of the function (the job's backend).
    store: KeyedStateStore,
    max_parallelism: u32,
    /// Timer requests of user code for the current key, applied after each call.
    timer_requests: Vec<TimerRequest>,
    timers: TimerService<K, ()>,
    _types: std::marker::PhantomData<fn(K, A, B)>,
}

impl<K, A, B, Out, KA, KB, F> CoState<K, A, B, Out, KA, KB, F>
where
    K: Ord + Hash + Clone + StateCodec,
    KA: FnMut(&A) -> K,
    KB: FnMut(&B) -> K,
    F: KeyedCoProcessFunction<K, A, B, Out>,
{
    fn context(&mut self) -> (ProcessContext<'_, Out>, &mut F, &mut KA, &mut KB) {
        (
            ProcessContext::new(&mut self.out.records, &self.ctx, self.watermark)
                .with_sides(&mut self.sides),
            &mut self.f,
            &mut self.key_left,
            &mut self.key_right,
        )
    }

    fn emit(&mut self, ingest: Instant) -> Result<()> {
        self.sides.flush(ingest)?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.out.ingest = ingest;
        self.next.push(&mut self.out)
    }

    /// Runs the function on every record of `batch`, each in its key's context: `key_fn`
    /// picks the input's key extractor, `call` the function's method for that input.
    fn process_records<V, KV>(
        &mut self,
        batch: &mut Batch<V>,
        key_fn: impl for<'a> FnOnce(&'a mut KA, &'a mut KB) -> &'a mut KV,
        call: impl Fn(&mut F, &K, V, &mut ProcessContext<'_, Out>),
    ) -> Result<()>
    where
        KV: FnMut(&V) -> K,
    {
        self.ctx.count_in(batch.len());
        self.store
            .set_time(u64::try_from(crate::time::wall_clock_ms()).unwrap_or(0));
        let key_of = key_fn(&mut self.key_left, &mut self.key_right);
        let (ctx, f) = (&self.ctx, &mut self.f);
        let (out, store) = (&mut self.out.records, &mut self.store);
        let (timers, requests) = (&mut self.timers, &mut self.timer_requests);
        let sides = &mut self.sides;
        let (watermark, max_parallelism) = (self.watermark, self.max_parallelism);
        let failure = guarded(ctx, || {
            for r in batch.records.drain(..) {
                let key = key_of(&r);
                let mut pctx = ProcessContext::keyed(
                    out,
                    ctx,
                    watermark,
                    &key,
                    store,
                    requests,
                    max_parallelism,
                )
                .with_sides(sides);
                call(f, &key, r, &mut pctx);
                if let Some(message) = pctx.take_failure() {
                    return Some(message);
                }
                if !requests.is_empty() {
                    apply_timers(timers, &key, requests);
                }
            }
            None
        })?;
        if let Some(message) = failure {
            return Err(failed(ctx, message));
        }
        self.last_ingest = batch.ingest;
        self.emit(batch.ingest)
    }

    fn process_left(&mut self, batch: &mut Batch<A>) -> Result<()> {
        self.process_records(batch, |left, _| left, |f, k, v, c| f.process_left(k, v, c))
    }

    fn process_right(&mut self, batch: &mut Batch<B>) -> Result<()> {
        self.process_records(
            batch,
            |_, right| right,
            |f, k, v, c| f.process_right(k, v, c),
        )
    }

    fn progress(&mut self, input: usize, progress: Progress) -> Result<()> {
        let Some(p) = self.watermarks.update(input, progress) else {
            return Ok(());
        };
        match p {
            Progress::Watermark(w) => {
                self.watermark = Some(w);
                self.fire_timers(Some(w))?;
                let ctx = self.ctx.clone();
                let (mut pctx, f, _, _) = self.context();
                guarded(&ctx, || f.on_watermark(w, &mut pctx))?;
                self.emit(self.last_ingest)?;
            }
            // The wall clock moved on: processing-time timers may be due.
            Progress::Tick(_) => {
                self.fire_timers(self.watermark)?;
                self.emit(self.last_ingest)?;
            }
            Progress::Idle => {}
        }
        self.sides.progress(p)?;
        self.next.progress(p)
    }

    /// Fires the timers due at `watermark` and the wall clock (see `fire_due_timers`).
    fn fire_timers(&mut self, watermark: Option<Timestamp>) -> Result<()> {
        let w = watermark.unwrap_or(Timestamp::MIN);
        let (ctx, f, out, store) = (
            &self.ctx,
            &mut self.f,
            &mut self.out.records,
            &mut self.store,
        );
        let (timers, requests) = (&mut self.timers, &mut self.timer_requests);
        let sides = &mut self.sides;
        let max_parallelism = self.max_parallelism;
        let failure = guarded(ctx, || {
            fire_due_timers(timers, requests, w, |key, timestamp, domain, requests| {
                let mut pctx = ProcessContext::keyed(
                    out,
                    ctx,
                    watermark,
                    key,
                    store,
                    requests,
                    max_parallelism,
                )
                .in_timer(domain)
                .with_sides(sides);
                f.on_timer(key, timestamp, &mut pctx);
                pctx.take_failure()
            })
        })?;
        match failure {
            Some(message) => Err(failed(ctx, message)),
            None => Ok(()),
        }
    }

    fn barrier(&mut self, input: usize, barrier: Barrier) -> Result<()> {
        let alignment = self.alignment.on_barrier(input, barrier);
        self.aligned(alignment)
    }

    fn aligned(&mut self, alignment: Alignment) -> Result<()> {
        if let Alignment::Aligned(b) = alignment {
            let (f, store, ctx, timers) = (&self.f, &self.store, &self.ctx, &self.timers);
            let max_parallelism = self.max_parallelism;
            self.ctx.save_state(b, |out| {
                f.snapshot_state(out);
                snapshot_keyed_store(store, ctx, b, max_parallelism, out)?;
                snapshot_timers(timers, out);
                Ok(())
            })?;
            self.sides.barrier(b)?;
            self.next.barrier(b)?;
        }
        self.replay()
    }

    fn finish_input(&mut self, input: usize) -> Result<()> {
        // Decided before the replay in `aligned`, which may end the other input.
        self.open_inputs = self.open_inputs.saturating_sub(1);
        let last = self.open_inputs == 0;
        let alignment = self.alignment.on_end(input);
        self.aligned(alignment)?;
        if !last {
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let (mut pctx, f, _, _) = self.context();
        guarded(&ctx, || f.on_end(&mut pctx))?;
        self.emit(self.last_ingest)?;
        self.sides.finish()?;
        self.next.finish()
    }

    /// True if what input `input` delivers now must wait behind the barrier in flight.
    #[inline]
    fn holds(&self, input: usize) -> bool {
        self.alignment.is_blocked(input)
            || match input {
                0 => !self.held_left.is_empty(),
                _ => !self.held_right.is_empty(),
            }
    }

    fn deliver_left(&mut self, event: Held<A>) -> Result<()> {
        if self.holds(0) {
            self.held_left.push_back(event);
            self.alignment.pause_pusher(0);
            return self.replay();
        }
        self.apply_left(event)
    }

    fn deliver_right(&mut self, event: Held<B>) -> Result<()> {
        if self.holds(1) {
            self.held_right.push_back(event);
            self.alignment.pause_pusher(1);
            return self.replay();
        }
        self.apply_right(event)
    }

    fn apply_left(&mut self, event: Held<A>) -> Result<()> {
        match event {
            Held::Records(mut batch) => self.process_left(&mut batch),
            Held::Progress(p) => self.progress(0, p),
            Held::Barrier(b) => self.barrier(0, b),
            Held::End => self.finish_input(0),
        }
    }

    fn apply_right(&mut self, event: Held<B>) -> Result<()> {
        match event {
            Held::Records(mut batch) => self.process_right(&mut batch),
            Held::Progress(p) => self.progress(1, p),
            Held::Barrier(b) => self.barrier(1, b),
            Held::End => self.finish_input(1),
        }
    }

    /// Replays held events of the inputs no longer blocked, in order per input, until nothing
    /// more can go (a replayed barrier may block its input again).
    fn replay(&mut self) -> Result<()> {
        if (self.held_left.is_empty() && self.held_right.is_empty())
            || !self.alignment.begin_replay()
        {
            return Ok(());
        }
        let result = (|| loop {
            let mut replayed = false;
            while !self.alignment.is_blocked(0) {
                let Some(event) = self.held_left.pop_front() else {
                    break;
                };
                replayed = true;
                self.apply_left(event)?;
            }
            while !self.alignment.is_blocked(1) {
                let Some(event) = self.held_right.pop_front() else {
                    break;
                };
                replayed = true;
                self.apply_right(event)?;
            }
            if !replayed {
                return Ok(());
            }
        })();
        self.alignment.end_replay();
        result
    }
}

type Shared<K, A, B, Out, KA, KB, F> = Rc<RefCell<CoState<K, A, B, Out, KA, KB, F>>>;

/// The first input of a keyed co-process operator.
pub struct CoLeft<K, A, B, Out, KA, KB, F> {
    shared: Shared<K, A, B, Out, KA, KB, F>,
    finished: bool,
}

/// The second input of a keyed co-process operator.
pub struct CoRight<K, A, B, Out, KA, KB, F> {
    shared: Shared<K, A, B, Out, KA, KB, F>,
    finished: bool,
}

/// Creates both inputs of a keyed co-process operator feeding `next`.
#[allow(clippy::type_complexity)]
pub(crate) fn keyed_co_process<K, A, B, Out, KA, KB, F>(
    (key_left, key_right): (KA, KB),
    mut f: F,
    next: Box<dyn Push<Out>>,
    sides: SideOutputs,
    ctx: OperatorCtx,
    scheduler: Rc<Scheduler>,
    max_parallelism: u32,
) -> Result<(
    CoLeft<K, A, B, Out, KA, KB, F>,
    CoRight<K, A, B, Out, KA, KB, F>,
)>
where
    K: Ord + Hash + Clone + StateCodec,
    F: KeyedCoProcessFunction<K, A, B, Out>,
{
    let restore = ctx.take_restore();
    let store = open_keyed_store(&ctx, &restore, |store| f.open(store))?;
    let timers = restore_timers(&ctx, &restore)?;
    f.restore_state(&restore.part(0)).map_err(|e| {
        crate::error::WeirError::Checkpoint(format!(
            "restoring `{}` on shard {}: {e}",
            ctx.name, ctx.shard
        ))
    })?;
    let shared = Rc::new(RefCell::new(CoState {
        key_left,
        key_right,
        f,
        out: Batch::with_capacity(ctx.batch_size),
        next,
        sides,
        watermarks: WatermarkMerger::new(2),
        watermark: None,
        open_inputs: 2,
        alignment: InputAlignment::new(2, scheduler),
        held_left: VecDeque::new(),
        held_right: VecDeque::new(),
        ctx,
        last_ingest: Instant::now(),
        store,
        max_parallelism,
        timer_requests: Vec::new(),
        timers,
        _types: std::marker::PhantomData,
    }));
    Ok((
        CoLeft {
            shared: shared.clone(),
            finished: false,
        },
        CoRight {
            shared,
            finished: false,
        },
    ))
}

impl<K, A, B, Out, KA, KB, F> Push<A> for CoLeft<K, A, B, Out, KA, KB, F>
where
    K: Ord + Hash + Clone + StateCodec,
    KA: FnMut(&A) -> K,
    KB: FnMut(&B) -> K,
    F: KeyedCoProcessFunction<K, A, B, Out>,
{
    fn push(&mut self, batch: &mut Batch<A>) -> Result<()> {
        let mut st = self.shared.borrow_mut();
        if st.holds(0) {
            return st.deliver_left(Held::records(batch));
        }
        st.process_left(batch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.shared
            .borrow_mut()
            .deliver_left(Held::Progress(progress))
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.shared
            .borrow_mut()
            .deliver_left(Held::Barrier(barrier))
    }

    fn finish(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        self.shared.borrow_mut().deliver_left(Held::End)
    }
}

impl<K, A, B, Out, KA, KB, F> Push<B> for CoRight<K, A, B, Out, KA, KB, F>
where
    K: Ord + Hash + Clone + StateCodec,
    KA: FnMut(&A) -> K,
    KB: FnMut(&B) -> K,
    F: KeyedCoProcessFunction<K, A, B, Out>,
{
    fn push(&mut self, batch: &mut Batch<B>) -> Result<()> {
        let mut st = self.shared.borrow_mut();
        if st.holds(1) {
            return st.deliver_right(Held::records(batch));
        }
        st.process_right(batch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.shared
            .borrow_mut()
            .deliver_right(Held::Progress(progress))
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.shared
            .borrow_mut()
            .deliver_right(Held::Barrier(barrier))
    }

    fn finish(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        self.shared.borrow_mut().deliver_right(Held::End)
    }
}
