//! Sinks: where records leave a job.
//!
//! A `Sink` is cloned to every shard and opens one `SinkWriter` per shard, unless it asks to
//! run as a single instance, in which case the job routes every record to shard 0 first (a
//! file with one header, say). The runtime measures end-to-end latency at the sink, once per
//! batch.

mod collect;
mod encode;
mod file;
mod partitioned;
mod table;

pub use collect::{CollectSink, CountSink, StdoutSink};
pub use encode::{Csv, CsvRecord, Encoder, JsonLines, JsonRecord, write_csv_field};
pub use file::FileSink;
pub use partitioned::PartitionedFileSink;
pub use table::TableSink;

use crate::batch::Batch;
use crate::error::Result;
use crate::operator::{Push, guarded};
use crate::runtime::{OperatorCtx, ShardInfo};
use crate::time::Progress;

/// How many instances of a sink run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkParallelism {
    /// One writer per shard.
    PerShard,
    /// One writer on shard 0; all records are routed there.
    Single,
}

/// A sink of records of type `T`: cloned to every shard.
pub trait Sink<T>: Clone + Send + 'static {
    /// The per-shard writer.
    type Writer: SinkWriter<T>;
    /// How many writers the sink needs.
    fn parallelism(&self) -> SinkParallelism {
        SinkParallelism::PerShard
    }
    /// Opens the writer of this shard.
    fn create_writer(&self, shard: &ShardInfo) -> Result<Self::Writer>;
}

/// One shard's writer.
pub trait SinkWriter<T>: 'static {
    /// Writes (takes) every record of `records`.
    fn write(&mut self, records: &mut Vec<T>) -> Result<()>;
    /// End of input: flush and close.
    fn finish(&mut self) -> Result<()>;
}

/// Adapts a writer to the operator chain and measures latency.
pub(crate) struct SinkPush<W> {
    writer: W,
    ctx: OperatorCtx,
    finished: bool,
}

impl<W> SinkPush<W> {
    pub fn new(writer: W, ctx: OperatorCtx) -> Self {
        SinkPush {
            writer,
            ctx,
            finished: false,
        }
    }
}

impl<T, W: SinkWriter<T>> Push<T> for SinkPush<W> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        self.ctx.count_in(n);
        let writer = &mut self.writer;
        guarded(&self.ctx, || writer.write(&mut batch.records))??;
        let nanos = batch.ingest.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        // A value beyond the histogram's one-hour bound is clamped rather than lost.
        let mut h = self.ctx.metrics.latency.borrow_mut();
        let v = nanos.clamp(1, h.high());
        let _ = h.record_n(v, n as u64);
        Ok(())
    }

    fn progress(&mut self, _progress: Progress) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let writer = &mut self.writer;
        guarded(&self.ctx, || writer.finish())?
    }
}
