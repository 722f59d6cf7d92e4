//! Sinks: where records leave a job.
//!
//! A `Sink` is cloned to every shard and opens one `SinkWriter` per shard, unless it asks to
//! run as a single instance, in which case the job routes every record to shard 0 first (a
//! file with one header, say). The runtime measures end-to-end latency at the sink, once per
//! batch.
//!
//! File output with checkpoints is exactly-once by two-phase commit: at a barrier a writer
//! pre-commits (closes and fsyncs) its pending part files and the checkpoint lists them; once
//! the checkpoint is complete the coordinator commits them — `FileSink` and `TableSink` by
//! appending to their one file, `RollingFileSink` and `PartitionedFileSink` (directories of
//! rolling part files, one writer per shard, and per partition) by renaming each hidden part
//! into place. Recovery re-commits the restored checkpoint's parts and deletes the others.

mod collect;
mod encode;
mod file;
mod output;
mod partitioned;
mod rolling;
mod table;

pub use collect::{CollectSink, CountSink, StdoutSink};
pub use encode::{Csv, CsvRecord, Encoder, JsonLines, JsonRecord, write_csv_field};
pub use file::FileSink;
pub use output::SinkFile;
pub use partitioned::PartitionedFileSink;
pub use rolling::{RollingFileSink, RollingPolicy};
pub use table::TableSink;

use crate::checkpoint::shard::TerminalId;
use std::path::Path;

use crate::batch::Batch;
use crate::checkpoint::{Barrier, OutputPart, OutputTarget, StateRestore, StateSnapshot};
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
    /// Where this sink's output is committed, if it is a file sink whose writers support
    /// two-phase output: with checkpoints, the coordinator commits into this file (appending
    /// parts) or directory (renaming parts).
    fn output_target(&self) -> Option<OutputTarget> {
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
    /// The job takes checkpoints: from now on, write into part files that the checkpoint
    /// coordinator commits — in `dir` (the checkpoint directory's `pending/`, see `SinkFile`)
    /// for a file output, hidden in the output directory for a directory output. Only writers
    /// of sinks with an `output_target` are asked.
    fn begin_parts(&mut self, _dir: &Path, _sink: usize, _shard: usize) {}
    /// At a barrier and at the end: make what was written since the last call durable in part
    /// files and append each as `(file name, length)` to `parts` (nothing if nothing was
    /// written), in the order they were written.
    fn pre_commit(&mut self, _parts: &mut Vec<(String, u64)>) -> Result<()> {
        Ok(())
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
    /// Parts handed over by the last pre-commit (reused: no allocation per barrier).
    parts: Vec<(String, u64)>,
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
            parts: Vec::new(),
        })
    }

    /// The writer's pre-committed parts since the last call, as parts of `checkpoint`.
    fn pre_commit<T>(&mut self, checkpoint: u64) -> Result<impl Iterator<Item = OutputPart> + '_>
    where
        W: SinkWriter<T>,
    {
        self.parts.clear();
        self.writer.pre_commit(&mut self.parts)?;
        let (sink, shard) = (self.ctx.node as u32, self.ctx.shard as u32);
        Ok(self.parts.drain(..).map(move |(file, len)| OutputPart {
            sink,
            shard,
            checkpoint,
            file,
            len,
        }))
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
        self.ctx.metrics.record_latency(nanos, n as u64);
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
        let checkpoints = self.ctx.checkpoints.clone();
        for part in self.pre_commit(barrier.id)? {
            checkpoints.add_output(barrier, part);
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
        let (checkpoints, terminal) = (self.ctx.checkpoints.clone(), self.terminal);
        for part in self.pre_commit(u64::MAX)? {
            checkpoints.final_output(terminal, part)?;
        }
        self.ctx.checkpoints.terminal_finished(self.terminal)
    }
}
