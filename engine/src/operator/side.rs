//! Side outputs of process functions: extra typed streams next to the main output
//! (Flink's `ctx.output(tag, value)`).
//!
//! The consumers of a side output are registered by `Stream::side_output`, which knows the
//! side's type; the operator that produces it does not, so each side is kept behind the
//! type-erased `SideChannel`. Emitting finds the side by name and downcasts its buffer once per
//! record (a type-id comparison, no allocation); buffers are flushed as batches after each
//! input batch, like the main output.

use std::any::Any;
use std::time::Instant;

use super::Push;
use crate::batch::Batch;
use crate::error::Result;
use crate::time::Progress;

/// One side output's consumers and its pending records, type-erased.
pub trait SideChannel {
    /// The tag's name.
    fn name(&self) -> &str;
    /// The buffer of pending records: a `Vec<S>` for the side's type `S`.
    fn buffer(&mut self) -> &mut dyn Any;
    /// Sends the pending records downstream.
    fn flush(&mut self, ingest: Instant) -> Result<()>;
    /// Passes event-time progress on.
    fn progress(&mut self, progress: Progress) -> Result<()>;
    /// Passes a checkpoint barrier on.
    fn barrier(&mut self, barrier: crate::checkpoint::Barrier) -> Result<()>;
    /// Passes end of input on.
    fn finish(&mut self) -> Result<()>;
    /// The typed consumer (`Box<dyn Push<S>>`), for operators that know the side's type.
    fn into_push(self: Box<Self>) -> Box<dyn Any>;
}

/// A side output of type `S`.
pub(crate) struct TypedSide<S> {
    name: String,
    push: Box<dyn Push<S>>,
    batch: Batch<S>,
}

impl<S> TypedSide<S> {
    pub fn new(name: &str, push: Box<dyn Push<S>>) -> Self {
        TypedSide {
            name: name.to_string(),
            push,
            batch: Batch::with_capacity(0),
        }
    }
}

impl<S: 'static> SideChannel for TypedSide<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn buffer(&mut self) -> &mut dyn Any {
        &mut self.batch.records
    }

    fn flush(&mut self, ingest: Instant) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch.ingest = ingest;
        self.push.push(&mut self.batch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.push.progress(progress)
    }

    fn barrier(&mut self, barrier: crate::checkpoint::Barrier) -> Result<()> {
        self.push.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.push.finish()
    }

    fn into_push(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.push)
    }
}

/// The side outputs of one operator instance.
#[derive(Default)]
pub struct SideOutputs {
    channels: Vec<Box<dyn SideChannel>>,
}

impl SideOutputs {
    pub(crate) fn new(channels: Vec<Box<dyn SideChannel>>) -> Self {
        SideOutputs { channels }
    }

    /// Emits `value` on every side output called `name` whose type is `S` (cloning for all
    /// but the last). A side nobody consumes drops it.
    pub(crate) fn emit<S: Clone + 'static>(&mut self, name: &str, value: S) {
        let mut targets = self
            .channels
            .iter_mut()
            .filter(|c| c.name() == name)
            .filter_map(|c| c.buffer().downcast_mut::<Vec<S>>())
            .peekable();
        while let Some(buf) = targets.next() {
            if targets.peek().is_some() {
                buf.push(value.clone());
            } else {
                buf.push(value);
                return;
            }
        }
    }

    pub(crate) fn flush(&mut self, ingest: Instant) -> Result<()> {
        self.channels.iter_mut().try_for_each(|c| c.flush(ingest))
    }

    pub(crate) fn progress(&mut self, progress: Progress) -> Result<()> {
        self.channels
            .iter_mut()
            .try_for_each(|c| c.progress(progress))
    }

    pub(crate) fn barrier(&mut self, barrier: crate::checkpoint::Barrier) -> Result<()> {
        self.channels
            .iter_mut()
            .try_for_each(|c| c.barrier(barrier))
    }

    pub(crate) fn finish(&mut self) -> Result<()> {
        self.channels.iter_mut().try_for_each(|c| c.finish())
    }
}
