//! Stateless one-input operators: map, filter, flat_map, and the plumbing of fan-out.

use super::{Push, guarded};
use crate::checkpoint::shard::TerminalId;
use std::rc::Rc;
use std::time::Instant;

use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::checkpoint::shard::ShardCheckpoints;
use crate::error::Result;
use crate::runtime::OperatorCtx;
use crate::time::Progress;

/// `map`: one output per input record.
pub struct MapOp<T, U, F> {
    f: F,
    out: Batch<U>,
    next: Box<dyn Push<U>>,
    ctx: OperatorCtx,
    _in: std::marker::PhantomData<fn(T)>,
}

impl<T, U, F: FnMut(T) -> U> MapOp<T, U, F> {
    pub fn new(f: F, next: Box<dyn Push<U>>, ctx: OperatorCtx) -> Self {
        MapOp {
            f,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
            _in: std::marker::PhantomData,
        }
    }
}

impl<T, U, F: FnMut(T) -> U> MapOp<T, U, F> {
    /// Maps one batch's records (taken out of it, or copies) and pushes the result on.
    fn map_batch(&mut self, records: impl Iterator<Item = T>, ingest: Instant) -> Result<()> {
        let (f, out) = (&mut self.f, &mut self.out.records);
        guarded(&self.ctx, || out.extend(records.map(f)))?;
        self.out.ingest = ingest;
        self.next.push(&mut self.out)
    }
}

impl<T, U, F: FnMut(T) -> U> Push<T> for MapOp<T, U, F> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        self.map_batch(batch.records.drain(..), batch.ingest)
    }

    fn push_shared(&mut self, batch: &Batch<T>, _scratch: &mut Batch<T>) -> Result<()>
    where
        T: Clone,
    {
        self.ctx.count_in(batch.len());
        self.map_batch(batch.records.iter().cloned(), batch.ingest)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.next.finish()
    }
}

/// `filter`: keeps the records the predicate accepts, in place (no copy).
pub struct FilterOp<T, F> {
    f: F,
    next: Box<dyn Push<T>>,
    ctx: OperatorCtx,
}

impl<T, F: FnMut(&T) -> bool> FilterOp<T, F> {
    pub fn new(f: F, next: Box<dyn Push<T>>, ctx: OperatorCtx) -> Self {
        FilterOp { f, next, ctx }
    }
}

impl<T, F: FnMut(&T) -> bool> Push<T> for FilterOp<T, F> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        let f = &mut self.f;
        guarded(&self.ctx, || batch.records.retain(|r| f(r)))?;
        if batch.is_empty() {
            return Ok(());
        }
        self.next.push(batch)
    }

    fn push_shared(&mut self, batch: &Batch<T>, scratch: &mut Batch<T>) -> Result<()>
    where
        T: Clone,
    {
        self.ctx.count_in(batch.len());
        let f = &mut self.f;
        scratch.records.clear();
        guarded(&self.ctx, || {
            scratch
                .records
                .extend(batch.records.iter().filter(|r| f(r)).cloned())
        })?;
        if scratch.is_empty() {
            return Ok(());
        }
        scratch.ingest = batch.ingest;
        self.next.push(scratch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.next.finish()
    }
}

/// `flat_map`: zero or more outputs per input record.
pub struct FlatMapOp<T, U, I, F> {
    f: F,
    out: Batch<U>,
    next: Box<dyn Push<U>>,
    ctx: OperatorCtx,
    _in: std::marker::PhantomData<fn(T) -> I>,
}

impl<T, U, I: IntoIterator<Item = U>, F: FnMut(T) -> I> FlatMapOp<T, U, I, F> {
    pub fn new(f: F, next: Box<dyn Push<U>>, ctx: OperatorCtx) -> Self {
        FlatMapOp {
            f,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
            _in: std::marker::PhantomData,
        }
    }
}

impl<T, U, I: IntoIterator<Item = U>, F: FnMut(T) -> I> FlatMapOp<T, U, I, F> {
    /// Flat-maps one batch's records (taken out of it, or copies) and pushes what came out.
    fn flat_map_batch(&mut self, records: impl Iterator<Item = T>, ingest: Instant) -> Result<()> {
        let (f, out) = (&mut self.f, &mut self.out.records);
        guarded(&self.ctx, || {
            for r in records {
                out.extend(f(r));
            }
        })?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.out.ingest = ingest;
        self.next.push(&mut self.out)
    }
}

impl<T, U, I: IntoIterator<Item = U>, F: FnMut(T) -> I> Push<T> for FlatMapOp<T, U, I, F> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        self.flat_map_batch(batch.records.drain(..), batch.ingest)
    }

    fn push_shared(&mut self, batch: &Batch<T>, _scratch: &mut Batch<T>) -> Result<()>
    where
        T: Clone,
    {
        self.ctx.count_in(batch.len());
        self.flat_map_batch(batch.records.iter().cloned(), batch.ingest)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.next.finish()
    }
}

/// Fan-out of one stream to several consumers: every consumer but the last reads the batch
/// through `push_shared` (copying what it keeps), the last takes it.
pub struct Tee<T> {
    outputs: Vec<Box<dyn Push<T>>>,
    scratch: Batch<T>,
}

impl<T: Clone> Tee<T> {
    pub fn new(outputs: Vec<Box<dyn Push<T>>>) -> Self {
        Tee {
            outputs,
            scratch: Batch::with_capacity(0),
        }
    }
}

impl<T: Clone> Push<T> for Tee<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        let Some((last, rest)) = self.outputs.split_last_mut() else {
            batch.records.clear();
            return Ok(());
        };
        for out in rest {
            out.push_shared(batch, &mut self.scratch)?;
        }
        last.push(batch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        for out in &mut self.outputs {
            out.progress(progress)?;
        }
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        for out in &mut self.outputs {
            out.barrier(barrier)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        for out in &mut self.outputs {
            out.finish()?;
        }
        Ok(())
    }
}

/// The consumer of a stream nobody reads: drops what it gets. A terminal of its shard's
/// chain for checkpoint barriers.
pub struct Discard {
    checkpoints: Rc<ShardCheckpoints>,
    terminal: TerminalId,
    finished: bool,
}

impl Discard {
    pub(crate) fn new(checkpoints: Rc<ShardCheckpoints>) -> Self {
        let terminal = checkpoints.register_terminal();
        Discard {
            checkpoints,
            terminal,
            finished: false,
        }
    }
}

impl<T> Push<T> for Discard {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        batch.records.clear();
        Ok(())
    }

    fn progress(&mut self, _progress: Progress) -> Result<()> {
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.checkpoints.terminal_reached(self.terminal, barrier)
    }

    fn finish(&mut self) -> Result<()> {
        if !self.finished {
            self.finished = true;
            self.checkpoints.terminal_finished(self.terminal)?;
        }
        Ok(())
    }
}
