//! Process functions: user code with a context, the lowest-level operator.
//!
//! The context gives the shard and an output collector; keyed state, timers, the watermark
//! and side outputs join it with the event-time work.

use std::hash::Hash;

use super::{Push, guarded};
use crate::batch::Batch;
use crate::error::Result;
use crate::runtime::OperatorCtx;
use crate::time::{Progress, Timestamp};

/// What a process function sees besides its record.
pub struct ProcessContext<'a, Out> {
    out: &'a mut Vec<Out>,
    shard: usize,
    shards: usize,
    watermark: Option<Timestamp>,
}

impl<'a, Out> ProcessContext<'a, Out> {
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
}

/// A non-keyed process function. Closures `FnMut(In, &mut ProcessContext<Out>)` are one.
pub trait ProcessFunction<In, Out>: Clone + Send + 'static {
    /// Called for every record.
    fn process(&mut self, value: In, ctx: &mut ProcessContext<'_, Out>);
    /// Called when the watermark advances (before it is passed downstream).
    fn on_watermark(&mut self, _watermark: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called once at end of input, to emit what was held back.
    fn on_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
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
    /// Called for every record, with its key.
    fn process(&mut self, key: &K, value: In, ctx: &mut ProcessContext<'_, Out>);
    /// Called when the watermark advances (before it is passed downstream).
    fn on_watermark(&mut self, _watermark: Timestamp, _ctx: &mut ProcessContext<'_, Out>) {}
    /// Called once at end of input, to emit what was held back.
    fn on_end(&mut self, _ctx: &mut ProcessContext<'_, Out>) {}
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
    watermark: Option<Timestamp>,
    out: Batch<Out>,
    next: Box<dyn Push<Out>>,
    ctx: OperatorCtx,
    _in: std::marker::PhantomData<fn(In)>,
}

impl<In, Out, P: ProcessFunction<In, Out>> ProcessOp<In, Out, P> {
    pub fn new(f: P, next: Box<dyn Push<Out>>, ctx: OperatorCtx) -> Self {
        ProcessOp {
            f,
            watermark: None,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
            _in: std::marker::PhantomData,
        }
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
        };
        let f = &mut self.f;
        guarded(&self.ctx, || {
            for r in batch.records.drain(..) {
                f.process(r, &mut pctx);
            }
        })?;
        self.out.ingest = batch.ingest;
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
            };
            let f = &mut self.f;
            guarded(&self.ctx, || f.on_watermark(w, &mut pctx))?;
            if !self.out.is_empty() {
                self.next.push(&mut self.out)?;
            }
        }
        self.next.progress(progress)
    }

    fn finish(&mut self) -> Result<()> {
        let mut pctx = ProcessContext {
            out: &mut self.out.records,
            shard: self.ctx.shard,
            shards: self.ctx.shards,
            watermark: self.watermark,
        };
        let f = &mut self.f;
        guarded(&self.ctx, || f.on_end(&mut pctx))?;
        self.emit()?;
        self.next.finish()
    }
}

/// The operator behind `KeyedStream::process`.
pub struct KeyedProcessOp<K, In, Out, KF, P> {
    key_fn: KF,
    f: P,
    watermark: Option<Timestamp>,
    out: Batch<Out>,
    next: Box<dyn Push<Out>>,
    ctx: OperatorCtx,
    _types: std::marker::PhantomData<fn(K, In)>,
}

impl<K, In, Out, KF, P> KeyedProcessOp<K, In, Out, KF, P>
where
    K: Hash + Eq,
    KF: FnMut(&In) -> K,
    P: KeyedProcessFunction<K, In, Out>,
{
    pub fn new(key_fn: KF, f: P, next: Box<dyn Push<Out>>, ctx: OperatorCtx) -> Self {
        KeyedProcessOp {
            key_fn,
            f,
            watermark: None,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
            _types: std::marker::PhantomData,
        }
    }
}

impl<K, In, Out, KF, P> Push<In> for KeyedProcessOp<K, In, Out, KF, P>
where
    K: Hash + Eq,
    KF: FnMut(&In) -> K,
    P: KeyedProcessFunction<K, In, Out>,
{
    fn push(&mut self, batch: &mut Batch<In>) -> Result<()> {
        self.ctx.count_in(batch.len());
        let mut pctx = ProcessContext {
            out: &mut self.out.records,
            shard: self.ctx.shard,
            shards: self.ctx.shards,
            watermark: self.watermark,
        };
        let (key_fn, f) = (&mut self.key_fn, &mut self.f);
        guarded(&self.ctx, || {
            for r in batch.records.drain(..) {
                let key = key_fn(&r);
                f.process(&key, r, &mut pctx);
            }
        })?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.out.ingest = batch.ingest;
        self.next.push(&mut self.out)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        if let Progress::Watermark(w) = progress {
            self.watermark = Some(w);
            let mut pctx = ProcessContext {
                out: &mut self.out.records,
                shard: self.ctx.shard,
                shards: self.ctx.shards,
                watermark: Some(w),
            };
            let f = &mut self.f;
            guarded(&self.ctx, || f.on_watermark(w, &mut pctx))?;
            if !self.out.is_empty() {
                self.next.push(&mut self.out)?;
            }
        }
        self.next.progress(progress)
    }

    fn finish(&mut self) -> Result<()> {
        let mut pctx = ProcessContext {
            out: &mut self.out.records,
            shard: self.ctx.shard,
            shards: self.ctx.shards,
            watermark: self.watermark,
        };
        let f = &mut self.f;
        guarded(&self.ctx, || f.on_end(&mut pctx))?;
        if !self.out.is_empty() {
            self.next.push(&mut self.out)?;
        }
        self.next.finish()
    }
}
