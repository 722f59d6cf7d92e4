//! Errors of checkpoint storage and output commit.
//!
//! Every variant names the file (and, for corruption, the byte offset) it is about: an operator
//! looking at a failed restore must be able to tell which file to inspect or delete.

use std::path::PathBuf;

use super::CheckpointId;

/// Why a checkpoint could not be written, read, or its output committed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A filesystem operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not what was written: bad magic, checksum mismatch, truncation,
    /// an impossible length or value.
    #[error("corrupt file {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// A file's checksum is right but its rkyv archive fails validation (a pointer, length
    /// or tag out of bounds): written by a broken or foreign writer, never read unchecked.
    #[error("invalid archive in {path}: rkyv validation failed: {source}")]
    InvalidArchive {
        path: PathBuf,
        #[source]
        source: rkyv::rancor::Error,
    },
    /// The file was written by a format version this build does not read.
    #[error("unsupported format version {found} in {path} (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A checkpoint directory has no (committed) `_metadata`: it never completed.
    #[error("checkpoint {path} is incomplete: it has no _metadata")]
    Incomplete { path: PathBuf },
    /// `complete` was asked for a checkpoint that lacks one of its shard files.
    #[error("cannot complete checkpoint: shard file {path} is missing")]
    MissingShard { path: PathBuf },
    /// The checkpoint was taken by a different job graph.
    #[error(
        "checkpoint {path} belongs to a different job (job fingerprint {found:#018x}, this job is {expected:#018x})"
    )]
    IncompatibleJob {
        expected: u64,
        found: u64,
        path: PathBuf,
    },
    /// The checkpoint is already complete, so it can be neither completed again nor aborted.
    #[error("checkpoint {id} at {path} is already complete")]
    AlreadyCommitted { id: CheckpointId, path: PathBuf },
    /// A pre-committed output part that a commit needs does not exist.
    #[error("output part {path} is missing")]
    PartMissing { path: PathBuf },
    /// An output part's file name is not a plain file name inside `pending/` (it has a
    /// directory part or is absolute): committing it would read and delete some other file.
    #[error("output part name {name:?} is not a plain file name")]
    BadPartName { name: String },
    /// A pre-committed output part is shorter than when it was pre-committed.
    #[error("output part {path} is {found} bytes, but {expected} bytes were pre-committed")]
    PartTooShort {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The output file is shorter than what was committed to it: committed output was lost.
    #[error("output file {path} is {found} bytes, but {committed} bytes were committed to it")]
    OutputTruncated {
        path: PathBuf,
        committed: u64,
        found: u64,
    },
    /// A value to be written does not fit the format (a byte string or count over 4 Gi).
    #[error("cannot write {path}: a length or count exceeds the format's u32 limit")]
    TooLarge { path: PathBuf },
    /// A configuration value is out of range.
    #[error("invalid checkpoint configuration: {reason}")]
    InvalidConfig { reason: &'static str },
}

impl CheckpointError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CheckpointError::Io { path, source }
    }
}
