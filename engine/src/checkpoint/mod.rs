//! Checkpoints: consistent snapshots of a running job (Flink's asynchronous barrier
//! snapshotting), their storage, and the two-phase commit of transactional output.
//!
//! - `barrier`: the in-band marker and its alignment at multi-input operators;
//! - `snapshot`: how operators and functions write and read their state;
//! - `shard`: a shard's trigger, collection and acknowledgement;
//! - `coordinator`: triggers checkpoints, completes them, commits output;
//! - `job`: runs a job attempt after attempt, each resuming from the latest checkpoint;
//! - `store` / `output`: the checkpoint directory and the output commit records;
//! - `rolling`: committing and recovering directories of rolling part files.

pub mod barrier;
mod codec;
mod config;
pub(crate) mod coordinator;
mod error;
pub(crate) mod job;
pub(crate) mod lsm;
mod output;
pub mod rolling;
pub(crate) mod shard;
pub mod snapshot;
mod store;
mod types;

pub use barrier::Barrier;
pub use config::{CheckpointConfig, RestartStrategy};
pub use coordinator::{CheckpointStats, SavepointHandle};
pub use error::CheckpointError;
pub use output::{OutputCommitter, clean_pending};
pub use shard::ShardTrigger;
pub use snapshot::{KeyedCollection, SourceRestore, StateRestore, StateSnapshot};
pub use store::{
    CheckpointStore, FileBuffer, LoadedCheckpoint, LoadedOperator, LoadedShard, RestoredOperator,
};
pub use types::{
    CheckpointId, CheckpointMeta, EncodedOperator, EncodedShard, EntryHead, OperatorState,
    OutputPart, OutputTarget, Scope, ShardState, StateEntry,
};
