//! Where a window operator's results and late records go: the output batches, the two
//! downstream pushes and the ingest stamp results carry. Shared by the aligned and session
//! window operators and two-phase merging, whose record and watermark logic differ but whose
//! emission and input handling (`WindowStage`) do not.

use std::time::Instant;

use super::{Push, guarded};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::runtime::OperatorCtx;
use crate::time::{Progress, Timestamp};

/// A window operator seen from its inputs: the aligned (event or processing time) and session
/// window operators and the merging stage of two-phase aggregation differ in what a record, a
/// watermark and the clock do, not in how batches, progress and barriers reach them. Their `Push` is the one
/// blanket impl below.
pub trait WindowStage {
    /// What the stage takes (and sends to its late output).
    type In;
    type Out;
    fn ctx(&self) -> &OperatorCtx;
    fn emit(&mut self) -> &mut WindowEmit<Self::In, Self::Out>;
    /// A batch's records are about to be taken: a processing-time stage reads the clock for
    /// them here, once per batch, and fires what it closed.
    fn begin_records(&mut self) -> Result<()> {
        Ok(())
    }
    /// One input record.
    fn take(&mut self, input: Self::In);
    /// A tick or watermark arrived, so the wall clock may have moved: a processing-time stage
    /// fires what it closed.
    fn clock_moved(&mut self) -> Result<()> {
        Ok(())
    }
    /// The watermark advanced: fire what it closed.
    fn advance(&mut self, watermark: Timestamp) -> Result<()>;
    /// Writes the stage's state for `barrier`.
    fn checkpoint(&self, barrier: Barrier) -> Result<()>;
}

impl<S: WindowStage> Push<S::In> for S {
    fn push(&mut self, batch: &mut Batch<S::In>) -> Result<()> {
        self.ctx().count_in(batch.len());
        self.emit().begin_batch(batch.ingest);
        let ctx = self.ctx().clone();
        guarded(&ctx, || {
            self.begin_records()?;
            for r in batch.records.drain(..) {
                self.take(r);
            }
            Ok(())
        })??;
        self.emit().end_batch()
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        if let Progress::Watermark(_) | Progress::Tick(_) = progress {
            let ctx = self.ctx().clone();
            guarded(&ctx, || {
                self.clock_moved()?;
                match progress {
                    Progress::Watermark(w) => self.advance(w),
                    _ => Ok(()),
                }
            })??;
        }
        self.emit().end_progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.checkpoint(barrier)?;
        self.emit().barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.emit().finish()
    }
}

pub struct WindowEmit<T, Out> {
    out: Batch<Out>,
    late: Batch<T>,
    next: Box<dyn Push<Out>>,
    late_out: Box<dyn Push<T>>,
    batch_size: usize,
    /// Ingest time of the last batch seen: results fired by a watermark are stamped with it,
    /// so their latency runs from the record that closed the window to the sink.
    last_ingest: Instant,
}

impl<T, Out> WindowEmit<T, Out> {
    pub(super) fn new(
        next: Box<dyn Push<Out>>,
        late_out: Box<dyn Push<T>>,
        batch_size: usize,
    ) -> Self {
        WindowEmit {
            out: Batch::with_capacity(batch_size),
            late: Batch::with_capacity(0),
            next,
            late_out,
            batch_size,
            last_ingest: Instant::now(),
        }
    }

    /// Where fired results go.
    #[inline]
    pub(super) fn results(&mut self) -> &mut Vec<Out> {
        &mut self.out.records
    }

    /// A record too late for every window (the operator counts it).
    #[inline]
    pub(super) fn late(&mut self, record: T) {
        self.late.records.push(record);
    }

    /// A batch of records arrives, ingested at `ingest`.
    pub(super) fn begin_batch(&mut self, ingest: Instant) {
        self.last_ingest = ingest;
    }

    /// The batch is processed: its results and late records go downstream.
    pub(super) fn end_batch(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.out.ingest = self.last_ingest;
            self.next.push(&mut self.out)?;
        }
        if !self.late.is_empty() {
            self.late.ingest = self.last_ingest;
            self.late_out.push(&mut self.late)?;
        }
        Ok(())
    }

    /// Sends the results fired so far once they fill a batch, so a window closing for many
    /// keys streams out instead of leaving as one huge batch.
    pub(super) fn flush_full(&mut self) -> Result<()> {
        if self.out.len() >= self.batch_size {
            self.out.ingest = self.last_ingest;
            self.next.push(&mut self.out)?;
        }
        Ok(())
    }

    /// One window of several closed by the same watermark has fired: its results go out now,
    /// followed by the watermark at its last millisecond (later windows' results are all
    /// later than that), so downstream operators — on other shards too — can act on this
    /// window while the next one fires, instead of after the whole burst.
    pub(super) fn window_done(&mut self, max_timestamp: crate::time::Timestamp) -> Result<()> {
        if !self.out.is_empty() {
            self.out.ingest = self.last_ingest;
            self.next.push(&mut self.out)?;
        }
        self.next.progress(Progress::Watermark(max_timestamp))
    }

    /// Progress was handled (windows fired): results go out, then the progress itself.
    pub(super) fn end_progress(&mut self, progress: Progress) -> Result<()> {
        if !self.out.is_empty() {
            self.out.ingest = self.last_ingest;
            self.next.push(&mut self.out)?;
        }
        self.late_out.progress(progress)?;
        self.next.progress(progress)
    }

    /// Passes a barrier on (after the operator's snapshot).
    pub(super) fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.late_out.barrier(barrier)?;
        self.next.barrier(barrier)
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        self.late_out.finish()?;
        self.next.finish()
    }
}
