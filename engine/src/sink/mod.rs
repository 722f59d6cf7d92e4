//! Sinks: where records leave a job.
//!
//! A `Sink` is cloned to every shard and opens one `SinkWriter` per shard, unless it asks to
//! run as a single instance, in which case the job routes every record to shard 0 first (a
//! file with one header, say). The runtime measures end-to-end latency at the sink, once per
//! batch.

mod collect;
mod encode;
mod file;
mod output;
mod partitioned;
mod table;

pub use collect::{CollectSink, CountSink, StdoutSink};
pub use encode::{Csv, CsvRecord, Encoder, JsonLines, JsonRecord, write_csv_field};
pub use file::FileSink;
pub use output::SinkFile;
pub use partitioned::PartitionedFileSink;
pub use table::TableSink;

use crate::checkpoint::shard::TerminalId;
use std::path::{Path, PathBuf};

use crate::batch::Batch;
use crate::checkpoint::{Barrier, OutputPart, StateRestore, StateSnapshot};
use crate::error::{Result, WeirError};
use crate::operator::{Push, guarded};
use crate::runtime::{OperatorCtx, ShardInfo};
use crate::state::StateError;
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
    /// The one file this sink writes and its header, if it is a file sink whose writers
    /// support two-phase output: with checkpoints, the coordinator commits into this file.
    fn output_file(&self) -> Option<(PathBuf, Vec<u8>)> {
        None
    }
    /// Why this sink cannot take part in a checkpointed job, if it cannot: a job whose
    /// output would be duplicated after a recovery is refused at start instead.
    fn checkpoint_refusal(&self) -> Option<&'static str> {
        None
    }
}

/// One shard's writer.
pub trait SinkWriter<T>: 'static {
    /// Writes (takes) every record of `records`.
    fn write(&mut self, records: &mut Vec<T>) -> Result<()>;
    /// End of input: flush and close.
    fn finish(&mut self) -> Result<()>;
    /// The job takes checkpoints: write into part files in `dir` from now on (see
    /// `SinkFile`). Only writers of sinks with an `output_file` are asked.
    fn begin_parts(&mut self, _dir: &Path, _sink: usize, _shard: usize) {}
    /// At a barrier and at the end: make what was written since the last call durable in a
    /// part file and return `(file name, length)`; `None` if there is nothing.
    fn pre_commit(&mut self) -> Result<Option<(String, u64)>> {
        Ok(None)
    }
    /// Writes state the writer holds (a table under construction) into a checkpoint.
    fn snapshot_state(&self, _out: &mut StateSnapshot<'_>) {}
    /// Restores what `snapshot_state` wrote.
    fn restore_state(&mut self, _state: &StateRestore) -> Result<(), StateError> {
        Ok(())
    }
}

/// Adapts a writer to the operator chain and measures latency.
pub(crate) struct SinkPush<W> {
    writer: W,
    ctx: OperatorCtx,
    terminal: TerminalId,
    finished: bool,
}

impl<W> SinkPush<W> {
    /// Wraps `writer`; with checkpoints, switches a file writer to two-phase output and
    /// restores its state. The sink is a terminal of its shard's chain.
    pub fn new<T>(mut writer: W, ctx: OperatorCtx, two_phase: bool) -> Result<Self>
    where
        W: SinkWriter<T>,
    {
        if let (true, Some(dir)) = (two_phase, ctx.checkpoints.pending_dir()) {
            writer.begin_parts(dir, ctx.node, ctx.shard);
        }
        let restore = ctx.take_restore();
        writer
            .restore_state(&restore.part(0))
            .map_err(|e| WeirError::Checkpoint(format!("restoring sink `{}`: {e}", ctx.name)))?;
        let terminal = ctx.checkpoints.register_terminal();
        Ok(SinkPush {
            writer,
            ctx,
            terminal,
            finished: false,
        })
    }

    fn part(&self, checkpoint: u64, (file, len): (String, u64)) -> OutputPart {
        OutputPart {
            sink: self.ctx.node as u32,
            shard: self.ctx.shard as u32,
            checkpoint,
            file,
            len,
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

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let writer = &self.writer;
        self.ctx.save_state(barrier, |out| {
            writer.snapshot_state(out);
            Ok(())
        })?;
        if let Some(part) = self.writer.pre_commit()? {
            let part = self.part(barrier.id, part);
            self.ctx.checkpoints.add_output(barrier, part);
        }
        self.ctx
            .checkpoints
            .terminal_reached(self.terminal, barrier)
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let writer = &mut self.writer;
        guarded(&self.ctx, || writer.finish())??;
        if let Some(part) = self.writer.pre_commit()? {
            let part = self.part(u64::MAX, part);
            self.ctx.checkpoints.final_output(part)?;
        }
        self.ctx.checkpoints.terminal_finished(self.terminal)
    }
}
