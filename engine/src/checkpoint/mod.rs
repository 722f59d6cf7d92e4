//! Checkpoints: consistent snapshots of a running job (Flink's asynchronous barrier
//! snapshotting), their storage, and the two-phase commit of transactional output.

mod types;

pub use types::{
    CheckpointId, CheckpointMeta, OperatorState, OutputPart, Scope, ShardState, StateEntry,
};
