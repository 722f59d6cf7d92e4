//! Typed errors of the engine. Every error names what was wrong and where.

use std::path::PathBuf;

/// Everything that can make building or running a job fail.
#[derive(Debug, thiserror::Error)]
pub enum WeirError {
    /// The environment configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The job graph is malformed (for example a stream consumed by nothing that needs it).
    #[error("invalid job graph: {0}")]
    Graph(String),
    /// User code panicked inside an operator.
    #[error("operator `{operator}` panicked on shard {shard}: {message}")]
    OperatorPanicked {
        operator: String,
        shard: usize,
        message: String,
    },
    /// An operator returned an error.
    #[error("operator `{operator}` failed on shard {shard}: {message}")]
    OperatorFailed {
        operator: String,
        shard: usize,
        message: String,
    },
    /// A channel from another shard closed before it delivered end-of-input: that shard failed.
    #[error(
        "shard {shard}: input channel of `{operator}` from shard {from} closed before end of input"
    )]
    Disconnected {
        operator: String,
        shard: usize,
        from: usize,
    },
    /// The job was cancelled because another shard failed.
    #[error("shard {shard} cancelled because another shard failed")]
    Cancelled { shard: usize },
    /// A shard's executor could not be started or stopped.
    #[error("shard {shard}: executor error: {message}")]
    Executor { shard: usize, message: String },
    /// File input or output failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Taking, storing or restoring a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A source could not be created or read.
    #[error("source `{source_name}`: {message}")]
    Source {
        source_name: String,
        message: String,
    },
}

impl WeirError {
    /// True for errors that are only a consequence of a failure elsewhere, so that the
    /// runtime can report the root cause instead.
    /// True for failures a restart may get past (user code, I/O, lost shards), false for
    /// those it would only repeat (configuration, graph, checkpoint format).
    pub(crate) fn is_restartable(&self) -> bool {
        !matches!(
            self,
            WeirError::Config(_) | WeirError::Graph(_) | WeirError::Checkpoint(_)
        )
    }

    pub(crate) fn is_secondary(&self) -> bool {
        matches!(
            self,
            WeirError::Disconnected { .. } | WeirError::Cancelled { .. }
        )
    }
}

/// Result alias used across the engine.
pub type Result<T, E = WeirError> = std::result::Result<T, E>;
