//! What a checkpoint consists of, independent of how it is stored.
//!
//! A checkpoint is one `ShardState` per shard plus one `CheckpointMeta`. Operator state is a
//! list of entries, each scoped either to a key group (moved to whichever shard owns that key
//! group on restore, so a job can be rescaled) or to the shard that wrote it (source positions,
//! non-keyed operator state: handed to shard `old_index % new_shards` on restore).

/// Checkpoints are numbered from 1 upwards within one checkpoint directory.
pub type CheckpointId = u64;

/// Who owns a state entry.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
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

/// One entry of an [`EncodedOperator`]: its scope and how many bytes of the operator's body it
/// takes (entries lie back to back in write order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
pub struct EntryHead {
    pub scope: Scope,
    pub len: u32,
}

/// One operator instance's state in the shard file's layout (see `store`): what operators
/// write at a barrier, so a snapshot costs appends to two growing buffers, not an allocation
/// per entry. It is archived with rkyv as it is: the body becomes one byte array of the file
/// (one copy), and a restore reads each entry in place from it.
#[derive(Clone, Debug, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize)]
pub struct EncodedOperator {
    pub node: u32,
    /// Every entry's scope and length, in write order.
    pub entries: Vec<EntryHead>,
    /// The entries' bytes, concatenated.
    pub body: Vec<u8>,
}

impl EncodedOperator {
    /// Appends one entry whose bytes `encode` writes. Returns false if they exceed the
    /// format's u32 entry length (the entry is then unusable and the snapshot must fail).
    pub fn push_entry(&mut self, scope: Scope, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        let at = self.body.len();
        encode(&mut self.body);
        let len = u32::try_from(self.body.len() - at);
        self.entries.push(EntryHead {
            scope,
            len: len.unwrap_or(u32::MAX),
        });
        len.is_ok()
    }
}

/// Everything one shard wrote for one checkpoint, encoded: the root of a shard file's archive.
#[derive(Clone, Debug, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize)]
pub struct EncodedShard {
    pub shard: u32,
    pub operators: Vec<EncodedOperator>,
}

impl EncodedShard {
    /// The encoded form of owned state (the store's `write_shard`, tests).
    pub fn from_state(state: &ShardState) -> Self {
        EncodedShard {
            shard: state.shard,
            operators: state
                .operators
                .iter()
                .map(|op| {
                    let mut out = EncodedOperator {
                        node: op.node,
                        entries: Vec::with_capacity(op.entries.len()),
                        body: Vec::with_capacity(op.entries.iter().map(|e| e.bytes.len()).sum()),
                    };
                    for e in &op.entries {
                        // A > 4 GiB entry is caught by `store` (its length no longer adds up).
                        out.push_entry(e.scope, |b| b.extend_from_slice(&e.bytes));
                    }
                    out
                })
                .collect(),
        }
    }
}

/// A pre-committed piece of transactional sink output: for a single-file output, a file in the
/// checkpoint directory's `pending/` folder, appended to the output file when its checkpoint
/// commits; for a directory output, a hidden in-progress part file in that directory, renamed
/// into place when its checkpoint commits.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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

/// The record that makes a checkpoint complete (the root of `_metadata`'s archive).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
