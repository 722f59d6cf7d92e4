//! The task that drives one shard's source reader into its operator chain, generating
//! watermarks from what it reads.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use super::{SourceReader, SourceStatus};
use crate::batch::Batch;
use crate::checkpoint::{Barrier, CheckpointId, ShardTrigger};
use crate::error::{Result, WeirError};
use crate::operator::Push;
use crate::runtime::OperatorCtx;
use crate::runtime::task::Scheduler;
use crate::state::{StateCodec, StateError};
use crate::time::{
    END_OF_TIME, Progress, TICK_INTERVAL, Timestamp, WatermarkGenerator, wall_clock_ms,
};

/// Reads batches until the reader is finished, pushing each one as soon as it is read, and
/// the watermark after it whenever it advanced.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_source<T, R: SourceReader<T>, G: WatermarkGenerator<T>>(
    mut reader: R,
    mut watermarks: G,
    idle_timeout: Option<Duration>,
    mut next: Box<dyn Push<T>>,
    scheduler: Rc<Scheduler>,
    ctx: OperatorCtx,
    cancel: Arc<AtomicBool>,
    restored_watermark: Option<Timestamp>,
) -> Result<()> {
    let task = scheduler.new_task();
    let mut batch = Batch::with_capacity(ctx.batch_size);
    let mut emitted: Option<Timestamp> = None;
    let trigger = ctx.checkpoints.trigger();
    let mut barriers = Barriers {
        // Barriers requested before this attempt started belong to an earlier attempt.
        // Not `requested()`: a checkpoint triggered while this shard was still being built
        // (opening state stores takes a while) must be injected too, or it never completes.
        injected: trigger.as_ref().map_or(0, |t| t.base()),
        trigger,
        position: Vec::new(),
    };
    if let Some(w) = restored_watermark {
        // Resume with the watermark the checkpointed run had reached here, so nothing that was
        // late before the failure is on time after it.
        scheduler.enter(task);
        emitted = Some(w);
        next.progress(Progress::Watermark(w))?;
        scheduler.drain(task).await?;
    }
    let mut idle = false;
    let mut last_data = Instant::now();
    // Processing-time timers downstream fire on these when nothing else arrives.
    let mut last_tick = Instant::now();
    // The timer a pending read races against, with its deadline.
    let mut wake_timer: Option<(Instant, glommio::timer::Timer)> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(WeirError::Cancelled { shard: ctx.shard });
        }
        // Where the read below starts: a barrier due while it is pending goes out with this
        // position (the records it will return come after the barrier).
        barriers.note_position(&reader);
        let status = {
            let mut read = std::pin::pin!(reader.next_batch(&mut batch.records, ctx.batch_size));
            loop {
                // Wait for the read at most until the next tick or the idle deadline; then
                // announce that and keep waiting for the same read (readers need not be
                // cancel-safe). A read that is ready at once costs no timer.
                let tick_at = last_tick + TICK_INTERVAL;
                let idle_at = idle_timeout.filter(|_| !idle).map(|t| last_data + t);
                let wake_at = idle_at.map_or(tick_at, |i| i.min(tick_at));
                let first = std::future::poll_fn(|cx| {
                    if let Poll::Ready(status) = read.as_mut().poll(cx) {
                        return Poll::Ready(Some(status));
                    }
                    // One timer per deadline, not per pending read: a rate-limited reader is
                    // pending for every batch, and a timer each cost a sixth of an idle
                    // shard's CPU (tests/tests/parking.rs).
                    let timer = match &mut wake_timer {
                        Some((at, timer)) if *at == wake_at => timer,
                        slot => {
                            let wait = wake_at.saturating_duration_since(Instant::now());
                            &mut slot.insert((wake_at, glommio::timer::Timer::new(wait))).1
                        }
                    };
                    std::pin::Pin::new(timer).poll(cx).map(|_| None)
                })
                .await;
                if let Some(status) = first {
                    break status?;
                }
                let now = Instant::now();
                scheduler.enter(task);
                if idle_at.is_some_and(|at| now >= at) {
                    idle = true;
                    next.progress(Progress::Idle)?;
                }
                if now >= tick_at {
                    last_tick = now;
                    next.progress(Progress::Tick(wall_clock_ms()))?;
                }
                // A source waiting for input must not hold checkpoints back.
                if barriers.due() {
                    barriers.inject(emitted, &mut next, &ctx)?;
                }
                scheduler.drain(task).await?;
            }
        };
        scheduler.enter(task);
        if !batch.is_empty() {
            batch.ingest = Instant::now();
            last_data = batch.ingest;
            ctx.count_out(batch.len());
            for r in &batch.records {
                watermarks.on_event(r);
            }
            next.push(&mut batch)?;
            // Whatever the chain did not consume is not ours to keep.
            batch.records.clear();
            if let Some(w) = watermarks.current_watermark()
                && (idle || emitted.is_none_or(|e| w > e))
            {
                idle = false;
                emitted = Some(w);
                next.progress(Progress::Watermark(w))?;
            }
            if batch.ingest.saturating_duration_since(last_tick) >= TICK_INTERVAL {
                last_tick = batch.ingest;
                next.progress(Progress::Tick(wall_clock_ms()))?;
            }
            scheduler.drain(task).await?;
        } else if let Some(timeout) = idle_timeout
            && !idle
            && last_data.elapsed() >= timeout
            && status != SourceStatus::Finished
        {
            // The reader keeps returning empty batches: idle as well.
            idle = true;
            next.progress(Progress::Idle)?;
            scheduler.drain(task).await?;
        }
        if status == SourceStatus::Finished {
            // From here on the job's sinks see the end-of-input flush, not the steady state.
            ctx.metrics.input_ended.store(true, Ordering::Relaxed);
            break;
        }
        if barriers.due() {
            scheduler.enter(task);
            barriers.note_position(&reader);
            barriers.inject(emitted, &mut next, &ctx)?;
            scheduler.drain(task).await?;
        }
        scheduler.between_batches().await?;
    }
    barriers.finished(&reader, emitted, &ctx)?;
    scheduler.enter(task);
    // End of input is the final watermark: every window fires, every timer runs.
    next.progress(Progress::Watermark(END_OF_TIME))?;
    next.finish()?;
    scheduler.drain(task).await
}

/// A source task's side of checkpointing: injects the barriers the coordinator asked for, at
/// a point between two batches, together with the reader's position.
struct Barriers {
    trigger: Option<Arc<ShardTrigger>>,
    injected: CheckpointId,
    /// The reader's position before its current read.
    position: Vec<u8>,
}

impl Barriers {
    /// True if the coordinator asked for a barrier not injected yet (one atomic load).
    #[inline]
    fn due(&self) -> bool {
        self.trigger
            .as_ref()
            .is_some_and(|t| t.requested() > self.injected)
    }

    /// Records the reader's position for the next barrier (only when checkpointing: one
    /// small encode per batch, reusing the buffer).
    fn note_position<T, R: SourceReader<T>>(&mut self, reader: &R) {
        if self.trigger.is_some() {
            self.position.clear();
            reader.position(&mut self.position);
        }
    }

    /// Injects every barrier requested so far, each with the position last noted.
    fn inject<T>(
        &mut self,
        watermark: Option<Timestamp>,
        next: &mut Box<dyn Push<T>>,
        ctx: &OperatorCtx,
    ) -> Result<()> {
        let Some(trigger) = self.trigger.clone() else {
            return Ok(());
        };
        let requested = trigger.requested();
        while self.injected < requested {
            self.injected += 1;
            let barrier = Barrier {
                id: self.injected,
                savepoint: trigger.is_savepoint(self.injected),
            };
            let position = self.position.clone();
            ctx.save_state(barrier, |out| {
                out.shard(&SourcePosition {
                    position,
                    watermark,
                });
                Ok(())
            })?;
            next.barrier(barrier)?;
        }
        Ok(())
    }

    /// The reader finished: barriers asked for but not injected will never be. Its final
    /// position stands for it in those checkpoints (they go on without it), so a restore from
    /// one of them resumes at the end instead of reading the input again.
    fn finished<T, R: SourceReader<T>>(
        &mut self,
        reader: &R,
        watermark: Option<Timestamp>,
        ctx: &OperatorCtx,
    ) -> Result<()> {
        if self.trigger.is_none() {
            return Ok(());
        }
        self.note_position(reader);
        let position = std::mem::take(&mut self.position);
        ctx.checkpoints
            .source_finished(ctx.node, self.injected, |out| {
                out.shard(&SourcePosition {
                    position,
                    watermark,
                });
                Ok(())
            })
    }
}

/// What a source task writes into a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SourcePosition {
    pub position: Vec<u8>,
    pub watermark: Option<Timestamp>,
}

impl StateCodec for SourcePosition {
    fn encode(&self, out: &mut Vec<u8>) {
        self.position.encode(out);
        self.watermark.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> std::result::Result<Self, StateError> {
        Ok(SourcePosition {
            position: Vec::<u8>::decode_from(input)?,
            watermark: Option::<Timestamp>::decode_from(input)?,
        })
    }
}
