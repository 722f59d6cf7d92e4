//! Process functions: user code with a context, the lowest-level operator.
//!
//! The context gives the shard and an output collector; keyed state, timers, the watermark
//! and side outputs join it with the event-time work.

use std::hash::Hash;

use super::{Push, guarded};
use crate::api::OutputTag;
use crate::batch::Batch;
use crate::checkpoint::{Barrier, StateRestore, StateSnapshot};
use crate::error::{Result, WeirError};
use crate::runtime::OperatorCtx;

use super::SideOutputs;
use crate::state::{KeyGroupSnapshot, KeyedStateStore, StateBackend, StateCodec, StateError};
use crate::time::{Progress, Timestamp, wall_clock_ms};
use crate::window::{TimeDomain, TimerService};

/// What a process function sees besides its record.
pub struct ProcessContext<'a, Out> {
    out: &'a mut Vec<Out>,
    shard: usize,
    shards: usize,
    watermark: Option<Timestamp>,
    keyed: Option<KeyedScope<'a>>,
    sides: Option<&'a mut SideOutputs>,
    timer_domain: Option<TimeDomain>,
    /// Set by `fail`: the operator fails with it once the call returns.
    failure: Option<String>,
}

/// The keyed services of a keyed process function: state scoped to the current key, and
/// event-time timers.
pub(crate) struct KeyedScope<'a> {
    key: &'a dyn ScopeKey,
    key_set: bool,
    store: &'a mut KeyedStateStore,
    timers: &'a mut Vec<TimerRequest>,
    max_parallelism: u32,
}

/// A key as the state store needs it: its bytes and its key group.
pub trait ScopeKey {
    /// Appends the key's encoded bytes.
    fn encode_key(&self, out: &mut Vec<u8>);
    /// The key's key group.
    fn key_group(&self, max_parallelism: u32) -> u32;
}

impl<K: StateCodec + Hash> ScopeKey for K {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.encode(out)
    }
    fn key_group(&self, max_parallelism: u32) -> u32 {
        crate::key::key_group(self, max_parallelism)
    }
}

/// A timer change asked for by user code, applied for the current key after the call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimerRequest {
    Register(TimeDomain, Timestamp),
    Delete(TimeDomain, Timestamp),
}

impl<'a, Out> ProcessContext<'a, Out> {
    /// A context for one record of `key` whose keyed state is in `store` (co-process
    /// functions: their timer requests go to `timers`, applied after the call).
    pub(crate) fn keyed(
        out: &'a mut Vec<Out>,
        ctx: &OperatorCtx,
        watermark: Option<Timestamp>,
        key: &'a dyn ScopeKey,
        store: &'a mut KeyedStateStore,
        timers: &'a mut Vec<TimerRequest>,
        max_parallelism: u32,
    ) -> Self {
        ProcessContext {
            out,
            shard: ctx.shard,
            shards: ctx.shards,
            watermark,
            keyed: Some(KeyedScope {
                key,
                key_set: false,
                store,
                timers,
                max_parallelism,
            }),
            sides: None,
            timer_domain: None,
            failure: None,
        }
    }

    /// The same context, with side outputs (`output`) going to `sides`.
    pub(crate) fn with_sides(mut self, sides: &'a mut SideOutputs) -> Self {
        self.sides = Some(sides);
        self
    }

    /// The same context, running a timer of `domain` (see `timer_domain`).
    pub(crate) fn in_timer(mut self, domain: TimeDomain) -> Self {
        self.timer_domain = Some(domain);
        self
    }

    /// A context emitting into `out` for the operator `ctx`.
    pub(crate) fn new(
        out: &'a mut Vec<Out>,
        ctx: &OperatorCtx,
        watermark: Option<Timestamp>,
    ) -> Self {
        ProcessContext {
            out,
            shard: ctx.shard,
            shards: ctx.shards,
            watermark,
            keyed: None,
            sides: None,
            timer_domain: None,
            failure: None,
        }
    }

    /// Emits one record downstream.
    #[inline]
    pub fn emit(&mut self, value: Out) {
        self.out.push(value);
    }

    /// The index of the shard running this instance.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// How many shards run the job.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The operator's current event-time watermark (`None` before the first one).
    pub fn current_watermark(&self) -> Option<Timestamp> {
        self.watermark
    }

    /// Emits `value` on the side output `tag` (read it with `Stream::side_output(&tag)` on
    /// this operator's result). Dropped if nobody reads that side output.
    pub fn output<S: Clone + 'static>(&mut self, tag: &OutputTag<S>, value: S) {
        if let Some(sides) = self.sides.as_mut() {
            sides.emit(tag.name(), value);
        }
    }

    /// Keyed state of the current key (keyed process and co-process functions only): pass it
    /// to the handles declared in `open`.
    pub fn state(&mut self) -> Result<&mut KeyedStateStore, StateError> {
        let scope = self.keyed.as_mut().ok_or(StateError::NoCurrentKey)?;
        if !scope.key_set {
            let group = scope.key.key_group(scope.max_parallelism);
            let key = scope.key;
            scope
                .store
                .set_current_key_with(group, |buf| key.encode_key(buf));
            scope.key_set = true;
        }
        Ok(scope.store)
    }

    /// Calls `on_timer` for the current key once the watermark reaches `timestamp` (keyed
    /// process and co-process functions only; registering the same time twice fires once).
    pub fn register_event_time_timer(&mut self, timestamp: Timestamp) {
        if let Some(scope) = self.keyed.as_mut() {
            scope
                .timers
                .push(TimerRequest::Register(TimeDomain::EventTime, timestamp));
        }
    }

    /// Calls `on_timer` for the current key once the wall clock passes `timestamp` (ms since
    /// the epoch). Checked whenever the watermark advances; all fire at end of input.
    pub fn register_processing_time_timer(&mut self, timestamp: Timestamp) {
        if let Some(scope) = self.keyed.as_mut() {
            scope.timers.push(TimerRequest::Register(
                TimeDomain::ProcessingTime,
                timestamp,
            ));
        }
    }

    /// Cancels a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, timestamp: Timestamp) {
        if let Some(scope) = self.keyed.as_mut() {
            scope
                .timers
                .push(TimerRequest::Delete(TimeDomain::ProcessingTime, timestamp));
        }
    }

    /// Fails the operator with `error` once this call returns: the job stops with
    /// `WeirError::OperatorFailed` naming the operator and shard (a checkpointed job restarts
    /// from its latest checkpoint). For errors the function cannot handle — typically a
    /// `StateError` from the state backend (an LSM store's I/O) — which must not be dropped
    /// with the record. The first failure of a call wins.
    pub fn fail(&mut self, error: impl std::fmt::Display) {
        if self.failure.is_none() {
            self.failure = Some(error.to_string());
        }
    }

    /// What `fail` recorded, if anything (taken).
    pub(crate) fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    /// Inside `on_timer`: which clock the firing timer belongs to.
    pub fn timer_domain(&self) -> Option<TimeDomain> {
        self.timer_domain
    }

    /// Cancels an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, timestamp: Timestamp) {
        if let Some(scope) = self.keyed.as_mut() {
            scope
                .timers
                .push(TimerRequest::Delete(TimeDomain::EventTime, timestamp));
        }
    }
}

/// A non-keyed process function. Closures `FnMut(In, &mut ProcessContext<Out>)` are one.
pub trait ProcessFunction<In, Out>: Clone + Send + 'static {
    /// Called for every record.
    fn process(&mut self, value: In, ctx: &mut ProcessContext<'_, Out>);
    /// Called when the watermark advances (before it is passed downstream).
    fn on_watermark(&mut self, _watermark: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called after every input batch, once `process` has seen each of its records, before
    /// the batch's output goes on. For combining before an exchange (Flink's local
    /// aggregation): a function that folds a batch's records per group emits the groups here,
    /// so fewer records cross shards, and nothing is held across a watermark or a barrier
    /// (both arrive between batches) — nor does any record wait for more input.
    fn on_batch_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called once at end of input, to emit what was held back.
    fn on_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Writes state kept in the function's fields into a checkpoint. The default writes
    /// nothing: fields are then not restored after a failure (keep such state in `ctx.state()`,
    /// or implement this and `restore_state`).
    fn snapshot_state(&self, _out: &mut StateSnapshot<'_>) {}
    /// Restores what `snapshot_state` wrote (for keyed entries: this shard's key groups only).
    fn restore_state(&mut self, _state: &StateRestore) -> Result<(), StateError> {
        Ok(())
    }
}

impl<In, Out, F> ProcessFunction<In, Out> for F
where
    F: FnMut(In, &mut ProcessContext<'_, Out>) + Clone + Send + 'static,
{
    fn process(&mut self, value: In, ctx: &mut ProcessContext<'_, Out>) {
        self(value, ctx)
    }
}

/// A keyed process function: gets the record's key with every record.
pub trait KeyedProcessFunction<K, In, Out>: Clone + Send + 'static {
    /// Called once per shard before any record: declare keyed state here (keep the handles).
    fn open(&mut self, _store: &mut KeyedStateStore) -> Result<(), StateError> {
        Ok(())
    }
    /// Called for every record, with its key; `ctx.state()` is scoped to that key.
    fn process(&mut self, key: &K, value: In, ctx: &mut ProcessContext<'_, Out>);
    /// Called when an event-time timer of `key` fires (the watermark reached `timestamp`).
    fn on_timer(&mut self, _key: &K, _timestamp: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called when the watermark advances (before it is passed downstream).
    fn on_watermark(&mut self, _watermark: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called after every input batch, once `process` has seen each of its records, before
    /// the batch's output goes on (`ctx.state()` is not scoped to a key here). For
    /// mini-batching: a function that folds a batch's records into one change per group emits
    /// it here, so per-record output shrinks to per-batch output while nothing is ever held
    /// across a watermark or a barrier (both arrive between batches).
    fn on_batch_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called once at end of input, to emit what was held back.
    fn on_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Writes state kept in the function's fields into a checkpoint. The default writes
    /// nothing: fields are then not restored after a failure (keep such state in `ctx.state()`,
    /// or implement this and `restore_state`).
    fn snapshot_state(&self, _out: &mut StateSnapshot<'_>) {}
    /// Restores what `snapshot_state` wrote (for keyed entries: this shard's key groups only).
    fn restore_state(&mut self, _state: &StateRestore) -> Result<(), StateError> {
        Ok(())
    }
}

impl<K, In, Out, F> KeyedProcessFunction<K, In, Out> for F
where
    F: FnMut(&K, In, &mut ProcessContext<'_, Out>) + Clone + Send + 'static,
{
    fn process(&mut self, key: &K, value: In, ctx: &mut ProcessContext<'_, Out>) {
        self(key, value, ctx)
    }
}

/// The operator behind `Stream::process`.
pub struct ProcessOp<In, Out, P> {
    f: P,
    sides: SideOutputs,
    watermark: Option<Timestamp>,
    out: Batch<Out>,
    next: Box<dyn Push<Out>>,
    ctx: OperatorCtx,
    _in: std::marker::PhantomData<fn(In)>,
}

impl<In, Out, P: ProcessFunction<In, Out>> ProcessOp<In, Out, P> {
    /// Restores the function's state if the job resumes from a checkpoint.
    pub fn new(
        mut f: P,
        next: Box<dyn Push<Out>>,
        ctx: OperatorCtx,
        sides: SideOutputs,
    ) -> Result<Self> {
        let restore = ctx.take_restore();
        f.restore_state(&restore.part(0))
            .map_err(|e| restore_failed(&ctx, e))?;
        Ok(ProcessOp {
            f,
            sides,
            watermark: None,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
            _in: std::marker::PhantomData,
        })
    }

    fn emit(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.next.push(&mut self.out)
    }
}

impl<In, Out, P: ProcessFunction<In, Out>> Push<In> for ProcessOp<In, Out, P> {
    fn push(&mut self, batch: &mut Batch<In>) -> Result<()> {
        self.ctx.count_in(batch.len());
        let mut pctx = ProcessContext {
            out: &mut self.out.records,
            shard: self.ctx.shard,
            shards: self.ctx.shards,
            watermark: self.watermark,
            keyed: None,
            sides: Some(&mut self.sides),
            timer_domain: None,
            failure: None,
        };
        let f = &mut self.f;
        let failure = guarded(&self.ctx, || {
            for r in batch.records.drain(..) {
                f.process(r, &mut pctx);
                if let Some(message) = pctx.take_failure() {
                    return Some(message);
                }
            }
            f.on_batch_end(&mut pctx);
            pctx.take_failure()
        })?;
        if let Some(message) = failure {
            return Err(failed(&self.ctx, message));
        }
        self.out.ingest = batch.ingest;
        self.sides.flush(batch.ingest)?;
        self.emit()
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        if let Progress::Watermark(w) = progress {
            self.watermark = Some(w);
            let mut pctx = ProcessContext {
                out: &mut self.out.records,
                shard: self.ctx.shard,
                shards: self.ctx.shards,
                watermark: Some(w),
                keyed: None,
                sides: Some(&mut self.sides),
                timer_domain: None,
                failure: None,
            };
            let f = &mut self.f;
            guarded(&self.ctx, || f.on_watermark(w, &mut pctx))?;
            self.sides.flush(self.out.ingest)?;
            if !self.out.is_empty() {
                self.next.push(&mut self.out)?;
            }
        }
        self.sides.progress(progress)?;
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let f = &self.f;
        self.ctx.save_state(barrier, |out| {
            f.snapshot_state(out);
            Ok(())
        })?;
        self.sides.barrier(barrier)?;
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        let mut pctx = ProcessContext {
            out: &mut self.out.records,
            shard: self.ctx.shard,
            shards: self.ctx.shards,
            watermark: self.watermark,
            keyed: None,
            sides: Some(&mut self.sides),
            timer_domain: None,
            failure: None,
        };
        let f = &mut self.f;
        guarded(&self.ctx, || f.on_end(&mut pctx))?;
        self.sides.flush(self.out.ingest)?;
        self.sides.finish()?;
        self.emit()?;
        self.next.finish()
    }
}

/// The operator behind `KeyedStream::process`: user code with keyed state and event-time
/// timers.
pub struct KeyedProcessOp<K, In, Out, KF, P> {
    key_fn: KF,
    f: P,
    sides: SideOutputs,
    watermark: Option<Timestamp>,
    store: KeyedStateStore,
    timers: TimerService<K, ()>,
    requests: Vec<TimerRequest>,
    out: Batch<Out>,
    next: Box<dyn Push<Out>>,
    ctx: OperatorCtx,
    max_parallelism: u32,
    /// Ingest time of the last batch: output fired by timers is stamped with it.
    last_ingest: std::time::Instant,
    _types: std::marker::PhantomData<fn(In)>,
}

impl<K, In, Out, KF, P> KeyedProcessOp<K, In, Out, KF, P>
where
    K: Hash + Eq + Ord + Clone + StateCodec,
    KF: FnMut(&In) -> K,
    P: KeyedProcessFunction<K, In, Out>,
{
    /// Opens the function (it declares its state); an error names the operator.
    pub fn new(
        key_fn: KF,
        mut f: P,
        next: Box<dyn Push<Out>>,
        ctx: OperatorCtx,
        sides: SideOutputs,
        max_parallelism: u32,
    ) -> crate::error::Result<Self> {
        let restore = ctx.take_restore();
        let store = open_keyed_store(&ctx, &restore, |store| f.open(store))?;
        f.restore_state(&restore.part(0))
            .map_err(|e| restore_failed(&ctx, e))?;
        let timers = restore_timers(&ctx, &restore)?;
        Ok(KeyedProcessOp {
            key_fn,
            f,
            sides,
            watermark: None,
            store,
            timers,
            requests: Vec::new(),
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
            max_parallelism,
            last_ingest: std::time::Instant::now(),
            _types: std::marker::PhantomData,
        })
    }

    /// The keyed state backend (for snapshots).
    pub fn state(&self) -> &KeyedStateStore {
        &self.store
    }
}

/// The keyed-state store of an operator instance: the job's backend (opened for it on the
/// shard), the states `open` declares, and the state `restore` holds (the LSM backend was
/// already restored from its files when it was opened).
pub(crate) fn open_keyed_store(
    ctx: &OperatorCtx,
    restore: &StateRestore,
    open: impl FnOnce(&mut KeyedStateStore) -> Result<(), StateError>,
) -> crate::error::Result<KeyedStateStore> {
    let mut store = KeyedStateStore::new(ctx.take_state_backend());
    open(&mut store).map_err(|e| crate::error::WeirError::OperatorFailed {
        operator: ctx.name.clone(),
        shard: ctx.shard,
        message: format!("open: {e}"),
    })?;
    if store.backend().as_lsm().is_none() && crate::checkpoint::lsm::has_references(restore) {
        return Err(lsm_layout_refused(ctx));
    }
    for (_, bytes) in restore.part(PART_STORE).key_group_bytes() {
        let snapshot =
            KeyGroupSnapshot::from_bytes(bytes.to_vec()).map_err(|e| restore_failed(ctx, e))?;
        store
            .backend_mut()
            .restore(&snapshot)
            .map_err(|e| restore_failed(ctx, e))?;
    }
    Ok(store)
}

/// Writes an operator instance's keyed-state store into the snapshot for `barrier`: the LSM
/// store as its file snapshot, the heap backend as a frozen view encoded later (one entry per
/// key group either way).
pub(crate) fn snapshot_keyed_store(
    store: &KeyedStateStore,
    ctx: &OperatorCtx,
    barrier: Barrier,
    max_parallelism: u32,
    out: &mut StateSnapshot<'_>,
) -> crate::error::Result<()> {
    let backend = store.backend();
    if let Some(heap) = backend.as_heap() {
        // A copy-on-write view of the chunks (microseconds), encoded by the coordinator: the
        // shard goes on processing records meanwhile.
        out.set_part(PART_STORE);
        out.defer_key_groups(heap.freeze(0..max_parallelism));
        out.add_cow_stats(&heap.take_cow_stats());
        return Ok(());
    }
    match (backend.as_lsm(), ctx.checkpoints.checkpoint_dir(barrier)) {
        // The store's files, linked into the checkpoint: a pause of the memtables' size, not
        // the state's.
        (Some(lsm), Some(dir)) => {
            // The write-back cache's dirty entries go into the memtable first, so the snapshot
            // holds every write before the barrier.
            lsm.flush_cache()
                .map_err(|e| WeirError::Checkpoint(format!("`{}`: {e}", ctx.name)))?;
            let key_groups = crate::key::key_group_range(ctx.shard, ctx.shards, max_parallelism);
            crate::checkpoint::lsm::snapshot(
                lsm, &dir, barrier, ctx.node, ctx.shard, key_groups, out,
            )
            .map_err(|e| WeirError::Checkpoint(format!("`{}`: {e}", ctx.name)))
        }
        _ => {
            out.set_part(PART_STORE);
            let groups: Vec<u32> = backend.key_groups().collect();
            for kg in groups {
                let snapshot = backend
                    .snapshot_key_groups(kg..kg + 1)
                    .map_err(|e| WeirError::Checkpoint(e.to_string()))?;
                out.key_group_bytes(kg, snapshot.as_bytes());
            }
            Ok(())
        }
    }
}

/// The error of a heap-backend operator restoring a checkpoint whose keyed state is in LSM
/// store files.
pub(crate) fn lsm_layout_refused(ctx: &OperatorCtx) -> WeirError {
    restore_failed(
        ctx,
        "the checkpoint keeps this operator's keyed state in LSM store files: run the job with \
         the LSM state backend to restore it",
    )
}

/// The error of an operator whose function called `ProcessContext::fail`.
pub(crate) fn failed(ctx: &OperatorCtx, message: String) -> WeirError {
    WeirError::OperatorFailed {
        operator: ctx.name.clone(),
        shard: ctx.shard,
        message,
    }
}

/// The error of an operator whose checkpointed state cannot be restored.
pub(crate) fn restore_failed(ctx: &OperatorCtx, e: impl std::fmt::Display) -> WeirError {
    WeirError::Checkpoint(format!(
        "restoring the state of `{}` on shard {}: {e}",
        ctx.name, ctx.shard
    ))
}

/// Part tags of a keyed process operator's snapshot (0 is the function's).
const PART_STORE: u8 = 1;
const PART_TIMERS: u8 = 2;

/// Applies the timer requests user code made for `key`.
pub(crate) fn apply_timers<K: Ord + Hash + Clone>(
    timers: &mut TimerService<K, ()>,
    key: &K,
    requests: &mut Vec<TimerRequest>,
) {
    for r in requests.drain(..) {
        match r {
            TimerRequest::Register(TimeDomain::EventTime, t) => {
                timers.register_event_time(key.clone(), (), t);
            }
            TimerRequest::Register(TimeDomain::ProcessingTime, t) => {
                timers.register_processing_time(key.clone(), (), t);
            }
            TimerRequest::Delete(TimeDomain::EventTime, t) => {
                timers.delete_event_time(key, &(), t);
            }
            TimerRequest::Delete(TimeDomain::ProcessingTime, t) => {
                timers.delete_processing_time(key, &(), t);
            }
        }
    }
}

/// The timers of a keyed operator instance in the checkpoint it resumes from.
pub(crate) fn restore_timers<K: Ord + Hash + Clone + StateCodec>(
    ctx: &OperatorCtx,
    restore: &StateRestore,
) -> crate::error::Result<TimerService<K, ()>> {
    let mut timers = TimerService::new();
    for timer in restore.part(PART_TIMERS).keyed::<K, (u8, Timestamp)>() {
        let (key, (domain, timestamp)) = timer.map_err(|e| restore_failed(ctx, e))?;
        match domain {
            0 => timers.register_event_time(key, (), timestamp),
            _ => timers.register_processing_time(key, (), timestamp),
        };
    }
    Ok(timers)
}

/// Writes a keyed operator instance's timers into its snapshot (each under its key, so they
/// follow their key group on a rescale).
pub(crate) fn snapshot_timers<K: Ord + Hash + Clone + StateCodec>(
    timers: &TimerService<K, ()>,
    out: &mut StateSnapshot<'_>,
) {
    out.set_part(PART_TIMERS);
    for (domain, timer) in timers.timers() {
        let d: u8 = match domain {
            TimeDomain::EventTime => 0,
            TimeDomain::ProcessingTime => 1,
        };
        out.keyed(&timer.key, &(d, timer.timestamp));
    }
}

/// Fires the timers due at watermark `w`: event-time timers up to `w`, then processing-time
/// timers up to the wall clock (all of them at end of input), each in timestamp order. `fire`
/// runs user code for one timer with a request list for the timers it registers or deletes;
/// those are applied at once, so a timer registered by a firing one that is also due fires in
/// the same call. Stops at the first failure `fire` reports.
pub(crate) fn fire_due_timers<K: Ord + Hash + Clone>(
    timers: &mut TimerService<K, ()>,
    requests: &mut Vec<TimerRequest>,
    w: Timestamp,
    mut fire: impl FnMut(&K, Timestamp, TimeDomain, &mut Vec<TimerRequest>) -> Option<String>,
) -> Option<String> {
    let now = if w == crate::time::END_OF_TIME {
        i64::MAX
    } else {
        wall_clock_ms().saturating_sub(1)
    };
    for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
        loop {
            let timer = match domain {
                TimeDomain::EventTime => timers.pop_event_time(w),
                TimeDomain::ProcessingTime => timers.pop_processing_time(now),
            };
            let Some(timer) = timer else { break };
            if let Some(message) = fire(&timer.key, timer.timestamp, domain, requests) {
                return Some(message);
            }
            if !requests.is_empty() {
                apply_timers(timers, &timer.key, requests);
            }
        }
    }
    None
}

impl<K, In, Out, KF, P> Push<In> for KeyedProcessOp<K, In, Out, KF, P>
where
    K: Hash + Eq + Ord + Clone + StateCodec,
    KF: FnMut(&In) -> K,
    P: KeyedProcessFunction<K, In, Out>,
{
    fn push(&mut self, batch: &mut Batch<In>) -> Result<()> {
        self.ctx.count_in(batch.len());
        self.last_ingest = batch.ingest;
        // State TTL runs on processing time, read once per batch.
        self.store
            .set_time(u64::try_from(wall_clock_ms()).unwrap_or(0));
        let (key_fn, f, store, timers, requests, out, sides) = (
            &mut self.key_fn,
            &mut self.f,
            &mut self.store,
            &mut self.timers,
            &mut self.requests,
            &mut self.out.records,
            &mut self.sides,
        );
        let (watermark, shard, shards, max_parallelism) = (
            self.watermark,
            self.ctx.shard,
            self.ctx.shards,
            self.max_parallelism,
        );
        let failure = guarded(&self.ctx, || {
            for r in batch.records.drain(..) {
                let key = key_fn(&r);
                let mut pctx = ProcessContext {
                    out: &mut *out,
                    shard,
                    shards,
                    watermark,
                    keyed: Some(KeyedScope {
                        key: &key,
                        key_set: false,
                        store: &mut *store,
                        timers: &mut *requests,
                        max_parallelism,
                    }),
                    sides: Some(&mut *sides),
                    timer_domain: None,
                    failure: None,
                };
                f.process(&key, r, &mut pctx);
                if let Some(message) = pctx.take_failure() {
                    return Some(message);
                }
                if !requests.is_empty() {
                    apply_timers(timers, &key, requests);
                }
            }
            let mut pctx = ProcessContext {
                out: &mut *out,
                shard,
                shards,
                watermark,
                keyed: None,
                sides: Some(&mut *sides),
                timer_domain: None,
                failure: None,
            };
            f.on_batch_end(&mut pctx);
            pctx.take_failure()
        })?;
        if let Some(message) = failure {
            return Err(failed(&self.ctx, message));
        }
        self.sides.flush(batch.ingest)?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.out.ingest = batch.ingest;
        self.next.push(&mut self.out)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        // A watermark fires the event-time timers it passed, then `on_watermark`; a tick
        // (the wall clock moved on) fires due processing-time timers only.
        let advanced = match progress {
            Progress::Watermark(w) => {
                self.watermark = Some(w);
                Some(w)
            }
            Progress::Tick(_) => None,
            Progress::Idle => {
                self.sides.progress(progress)?;
                return self.next.progress(progress);
            }
        };
        {
            let watermark = self.watermark;
            let w = watermark.unwrap_or(Timestamp::MIN);
            let (f, store, timers, requests, out, sides) = (
                &mut self.f,
                &mut self.store,
                &mut self.timers,
                &mut self.requests,
                &mut self.out.records,
                &mut self.sides,
            );
            let (shard, shards, max_parallelism) =
                (self.ctx.shard, self.ctx.shards, self.max_parallelism);
            let failure = guarded(&self.ctx, || {
                let failure =
                    fire_due_timers(timers, requests, w, |key, timestamp, domain, requests| {
                        let mut pctx = ProcessContext {
                            out: &mut *out,
                            shard,
                            shards,
                            watermark,
                            keyed: Some(KeyedScope {
                                key,
                                key_set: false,
                                store: &mut *store,
                                timers: requests,
                                max_parallelism,
                            }),
                            sides: Some(&mut *sides),
                            timer_domain: Some(domain),
                            failure: None,
                        };
                        f.on_timer(key, timestamp, &mut pctx);
                        pctx.take_failure()
                    });
                if failure.is_some() {
                    return failure;
                }
                let w = advanced?;
                let mut pctx = ProcessContext {
                    out: &mut *out,
                    shard,
                    shards,
                    watermark: Some(w),
                    keyed: None,
                    sides: Some(&mut *sides),
                    timer_domain: None,
                    failure: None,
                };
                f.on_watermark(w, &mut pctx);
                pctx.take_failure()
            })?;
            if let Some(message) = failure {
                return Err(failed(&self.ctx, message));
            }
            self.sides.flush(self.last_ingest)?;
            if !self.out.is_empty() {
                self.out.ingest = self.last_ingest;
                self.next.push(&mut self.out)?;
            }
        }
        self.sides.progress(progress)?;
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let (f, store, timers, ctx) = (&self.f, &self.store, &self.timers, &self.ctx);
        let max_parallelism = self.max_parallelism;
        self.ctx.save_state(barrier, |out| {
            f.snapshot_state(out);
            snapshot_keyed_store(store, ctx, barrier, max_parallelism, out)?;
            snapshot_timers(timers, out);
            Ok(())
        })?;
        self.sides.barrier(barrier)?;
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        let mut pctx = ProcessContext::new(&mut self.out.records, &self.ctx, self.watermark);
        let f = &mut self.f;
        guarded(&self.ctx, || f.on_end(&mut pctx))?;
        self.sides.finish()?;
        if !self.out.is_empty() {
            self.next.push(&mut self.out)?;
        }
        self.next.finish()
    }
}
