//! The task that drives one shard's source reader into its operator chain.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{SourceReader, SourceStatus};
use crate::batch::Batch;
use crate::error::{Result, WeirError};
use crate::operator::Push;
use crate::runtime::OperatorCtx;
use crate::runtime::task::{Scheduler, yield_now};

/// Reads batches until the reader is finished, pushing each one as soon as it is read.
pub(crate) async fn run_source<T, R: SourceReader<T>>(
    mut reader: R,
    mut next: Box<dyn Push<T>>,
    scheduler: Rc<Scheduler>,
    ctx: OperatorCtx,
    cancel: Arc<AtomicBool>,
) -> Result<()> {
    let task = scheduler.new_task();
    let mut batch = Batch::with_capacity(ctx.batch_size);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(WeirError::Cancelled { shard: ctx.shard });
        }
        let status = reader
            .next_batch(&mut batch.records, ctx.batch_size)
            .await?;
        if !batch.is_empty() {
            batch.ingest = Instant::now();
            ctx.count_out(batch.len());
            scheduler.enter(task);
            next.push(&mut batch)?;
            // Whatever the chain did not consume is not ours to keep.
            batch.records.clear();
            scheduler.drain(task).await?;
        }
        if status == SourceStatus::Finished {
            break;
        }
        yield_now().await;
    }
    scheduler.enter(task);
    next.finish()?;
    scheduler.drain(task).await
}
