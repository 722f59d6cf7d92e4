//! Checkpoints: consistent snapshots of a running job (Flink's asynchronous barrier
//! snapshotting), their storage, and the two-phase commit of transactional output.
//!
//! - `barrier`: the in-band marker and its alignment at multi-input operators;
//! - `snapshot`: how operators and functions write and read their state;
//! - `shard`: a shard's trigger, collection and acknowledgement.

pub mod barrier;
pub(crate) mod shard;
pub mod snapshot;
mod types;

pub use barrier::Barrier;
pub use shard::ShardTrigger;
pub use snapshot::{SourceRestore, StateRestore, StateSnapshot};
pub use types::{
    CheckpointId, CheckpointMeta, OperatorState, OutputPart, Scope, ShardState, StateEntry,
};
