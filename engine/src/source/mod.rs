//! Sources: where records enter a job.
//!
//! A `Source` is a description, cloned once per shard; each shard opens its own `SourceReader`
//! on its own thread (so readers may hold thread-local handles such as glommio files) and reads
//! its own share of the input. A reader hands over whatever is ready now, up to the batch size:
//! it never waits to fill a batch.

pub mod nexmark;
mod run;
mod vec;

pub(crate) use run::{SourcePosition, run_source};
pub use vec::VecSource;

use std::future::Future;

use crate::checkpoint::SourceRestore;
use crate::error::Result;
use crate::runtime::ShardInfo;

/// Whether a reader has more to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// More may follow (the batch may still be empty if nothing was ready).
    More,
    /// The input is exhausted: end-of-input flows downstream.
    Finished,
}

/// A source of records of type `T`: cloned to every shard.
pub trait Source<T>: Clone + Send + 'static {
    /// The per-shard reader.
    type Reader: SourceReader<T>;
    /// Opens this shard's reader.
    fn create_reader(&self, shard: &ShardInfo) -> Result<Self::Reader>;
    /// True if readers report positions and can resume from them (required for checkpoints).
    fn supports_checkpoints(&self) -> bool {
        false
    }
    /// Opens this shard's reader resuming after everything the checkpointed run had read:
    /// `restore` holds the position of every shard of that run (which may have had another
    /// shard count), so the reader reads exactly what no old shard had read.
    fn restore_reader(&self, shard: &ShardInfo, restore: &SourceRestore) -> Result<Self::Reader> {
        let _ = (shard, restore);
        Err(crate::error::WeirError::Source {
            source_name: std::any::type_name::<Self>().into(),
            message: "this source cannot resume from a checkpoint".into(),
        })
    }
}

/// One shard's reader of a source.
pub trait SourceReader<T>: 'static {
    /// Appends to `out` up to `max` records that are ready, waiting only when none is.
    fn next_batch(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
    ) -> impl Future<Output = Result<SourceStatus>>;
    /// Appends the encoded position of the next record to read (for checkpoints).
    fn position(&self, _out: &mut Vec<u8>) {}
}
