//! Checkpoints: consistent snapshots of a running job (Flink's asynchronous barrier
//! snapshotting), their storage, and the two-phase commit of transactional output.

mod codec;
mod error;
mod output;
mod store;
mod types;

pub use error::CheckpointError;
pub use output::{OutputCommitter, clean_pending};
pub use store::{CheckpointStore, LoadedCheckpoint, RestoredOperator};
pub use types::{
    CheckpointId, CheckpointMeta, OperatorState, OutputPart, Scope, ShardState, StateEntry,
};
