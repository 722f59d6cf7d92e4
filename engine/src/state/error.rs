//! Errors of the keyed-state layer.

use thiserror::Error;

/// Everything that can go wrong in keyed state. Snapshot and codec errors come
/// from untrusted bytes, so they are values, never panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// A snapshot's structure is broken; `offset` is the byte where parsing failed.
    #[error("corrupt key-group snapshot at byte offset {offset}: {reason}")]
    CorruptSnapshot { offset: usize, reason: &'static str },
    /// The snapshot's checksum does not match its contents.
    #[error(
        "key-group snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The snapshot was written by a format version this build cannot read.
    #[error("unsupported key-group snapshot version {version}")]
    UnsupportedSnapshotVersion { version: u8 },
    /// Raw decoding failure, before the state it belongs to is known.
    #[error("cannot decode value: {reason}")]
    Decode { reason: &'static str },
    /// Decoding failure attributed to a declared state.
    #[error("cannot decode state `{state}`: {reason}")]
    Codec { state: String, reason: &'static str },
    /// A state name was redeclared with another kind.
    #[error("state `{name}` is already declared as {existing}, cannot redeclare it as {requested}")]
    KindConflict {
        name: String,
        existing: &'static str,
        requested: &'static str,
    },
    /// A TTL setting is invalid or conflicts with an earlier declaration.
    #[error("TTL misconfigured for state `{state}`: {reason}")]
    TtlMisconfig { state: String, reason: &'static str },
    /// A state id that no declaration produced.
    #[error("unknown state id {0}")]
    UnknownState(u32),
    /// An entry exists but holds the other shape (a list where a value was expected or vice versa).
    #[error("entry of state id {state} holds a {found}, expected a {expected}")]
    WrongEntryKind {
        state: u32,
        expected: &'static str,
        found: &'static str,
    },
    /// The storage under an LSM backend failed: I/O, corruption (with the
    /// file and byte offset when the store names them), a malformed entry,
    /// or a store that failed in the background.
    #[error("state storage error: {message}")]
    Storage {
        /// File concerned, if known.
        path: Option<std::path::PathBuf>,
        /// Byte offset of the bad block or record in `path`, for corruption.
        offset: Option<u64>,
        /// Full description (includes path and offset).
        message: String,
    },
    /// A keyed state was used before `set_current_key`.
    #[error("no current key set on the keyed state store")]
    NoCurrentKey,
    /// A checkpoint holds an operator's state in the layout of the other state backend.
    #[error(
        "the checkpoint holds {what} in the {written} backend's layout: restore it with the \
         {written} state backend"
    )]
    BackendLayout {
        what: &'static str,
        written: &'static str,
    },
}

impl StateError {
    /// For functions that keep rows in their own fields on the heap backend and in keyed
    /// state on the LSM backend: refuses heap-layout rows (`what`) found in a checkpoint
    /// restored into a job on the LSM backend.
    pub fn refuse_heap_rows(on_lsm: bool, heap_rows: bool, what: &'static str) -> Result<(), Self> {
        if on_lsm && heap_rows {
            return Err(StateError::BackendLayout {
                what,
                written: "heap",
            });
        }
        Ok(())
    }

    /// Attributes a raw [`StateError::Decode`] to the state `name`; other errors pass through.
    pub fn in_state(self, name: &str) -> StateError {
        match self {
            StateError::Decode { reason } => StateError::Codec {
                state: name.to_owned(),
                reason,
            },
            other => other,
        }
    }
}
