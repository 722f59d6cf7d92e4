//! What a checkpoint consists of, independent of how it is stored.
//!
//! A checkpoint is one `ShardState` per shard plus one `CheckpointMeta`. Operator state is a
//! list of entries, each scoped either to a key group (moved to whichever shard owns that key
//! group on restore, so a job can be rescaled) or to the shard that wrote it (source positions,
//! non-keyed operator state: handed to shard `old_index % new_shards` on restore).

/// Checkpoints are numbered from 1 upwards within one checkpoint directory.
pub type CheckpointId = u64;

/// Who owns a state entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Keyed state of one key group.
    KeyGroup(u32),
    /// State of the writing shard's operator instance as a whole.
    Shard,
}

/// One piece of an operator instance's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    pub scope: Scope,
    pub bytes: Vec<u8>,
}

/// The state one operator instance (graph node `node` on one shard) wrote.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OperatorState {
    pub node: u32,
    pub entries: Vec<StateEntry>,
}

/// Everything one shard wrote for one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ShardState {
    pub shard: u32,
    pub operators: Vec<OperatorState>,
}

/// One operator instance's state already encoded as the entries of a shard file (see
/// `store`): what operators write at a barrier, so a snapshot costs appends to one buffer, not
/// an allocation per entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EncodedOperator {
    pub node: u32,
    /// Entries in `body`.
    pub entries: u32,
    /// The entries, each `scope u8 [key group u32] | length u32 | bytes`, little-endian.
    pub body: Vec<u8>,
}

/// Everything one shard wrote for one checkpoint, encoded.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EncodedShard {
    pub shard: u32,
    pub operators: Vec<EncodedOperator>,
}

/// A pre-committed piece of transactional sink output: for a single-file output, a file in the
/// checkpoint directory's `pending/` folder, appended to the output file when its checkpoint
/// commits; for a directory output, a hidden in-progress part file in that directory, renamed
/// into place when its checkpoint commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPart {
    /// The sink's graph node.
    pub sink: u32,
    /// The shard that wrote it.
    pub shard: u32,
    /// The checkpoint whose barrier closed it (`u64::MAX`: closed at end of input).
    pub checkpoint: CheckpointId,
    /// File name inside `pending/`, or (directory output) the hidden part's path relative to
    /// the output directory, `/`-separated.
    pub file: String,
    /// Its length in bytes when it was pre-committed (fsynced).
    pub len: u64,
}

/// Where a transactional sink's output is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// One file: pre-committed parts (in `pending/`) are appended to it at commit, `header`
    /// (may be empty) written once at its very start.
    File {
        path: std::path::PathBuf,
        header: Vec<u8>,
    },
    /// A directory of rolling part files: every part is written as a hidden in-progress file
    /// under `dir` (or a partition directory below it) and renamed at commit to
    /// `part-<shard>-<checkpoint>-<k><suffix>` in the same directory (see `rolling`).
    Parts {
        dir: std::path::PathBuf,
        suffix: String,
    },
}

/// The record that makes a checkpoint complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub id: CheckpointId,
    /// Fingerprint of the job graph: a checkpoint restores only into the same graph.
    pub job: u64,
    /// Shards of the job that wrote it.
    pub shards: u32,
    pub max_parallelism: u32,
    /// Savepoints are self-contained and never deleted by retention.
    pub savepoint: bool,
    /// The job ran to completion: nothing is left to do after committing `outputs`.
    pub finished: bool,
    /// Wall-clock milliseconds when it completed.
    pub timestamp_ms: i64,
    /// Transactional output this checkpoint commits, in commit order.
    pub outputs: Vec<OutputPart>,
}
