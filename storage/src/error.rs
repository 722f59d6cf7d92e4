//! Typed errors. Corruption always names the file and byte offset so an
//! operator can find the bad block without a debugger.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory the call was about.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// On-disk bytes failed a checksum or a structural check.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// File holding the bad bytes.
        path: PathBuf,
        /// Byte offset of the bad block or record in that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A merge was requested but no [`crate::MergeOperator`] is configured.
    #[error("merge called but StoreOptions::merge_operator is None")]
    NoMergeOperator,
    /// Invalid argument or option.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            path: path.into(),
            source: source.into(),
        }
    }

    /// Builds a corruption error.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
