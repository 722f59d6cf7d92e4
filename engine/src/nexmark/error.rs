//! Errors of the Nexmark module: invalid configurations and I/O of the event dumps.

use std::path::PathBuf;

/// Everything that can go wrong in this module; config errors name the field so a
/// command-line user can tell which option to fix.
#[derive(Debug, thiserror::Error)]
pub enum NexmarkError {
    /// A numeric configuration field that must be positive is zero.
    #[error("invalid nexmark config: `{field}` must be greater than zero")]
    ZeroField {
        /// Name of the offending `NexmarkConfig` field.
        field: &'static str,
    },
    /// The three proportions add up to more than `u64::MAX`.
    #[error(
        "invalid nexmark config: person_proportion + auction_proportion + bid_proportion overflows u64"
    )]
    ProportionOverflow,
    /// Reading or writing a file failed; the path says which.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
