//! The runtime: N shards, one pinned glommio executor each, every shard running one instance of
//! every operator of the job graph (timely-style) over its own range of key groups.

mod builder;
pub(crate) mod launch;
mod limits;
mod metrics;
pub(crate) mod task;
mod wake;

pub(crate) use builder::{JobContext, ShardBuilder, ShardPart};
pub(crate) use launch::{run_job, run_job_measured};
pub(crate) use metrics::ShardMetrics;
pub use metrics::{JobResult, OperatorStats};

use std::ops::Range;
use std::rc::Rc;

/// Where an operator instance runs: its shard and the key groups that shard owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// This shard's index, `0..shards`.
    pub index: usize,
    /// How many shards run the job.
    pub shards: usize,
    /// Number of key groups (the maximum parallelism a job can be rescaled to).
    pub max_parallelism: u32,
    /// The contiguous key groups this shard owns.
    pub key_groups: Range<u32>,
    /// The most records a source puts in one batch.
    pub batch_size: usize,
}

/// What every operator instance knows about itself: its name, shard and counters.
#[derive(Clone)]
pub struct OperatorCtx {
    pub(crate) name: String,
    pub(crate) node: usize,
    pub(crate) shard: usize,
    pub(crate) shards: usize,
    pub(crate) batch_size: usize,
    pub(crate) metrics: Rc<ShardMetrics>,
    pub(crate) checkpoints: Rc<crate::checkpoint::shard::ShardCheckpoints>,
    pub(crate) state_backends:
        Rc<std::cell::RefCell<std::collections::HashMap<usize, crate::state::JobStateBackend>>>,
}

impl OperatorCtx {
    /// Counts records entering the operator.
    #[inline]
    pub(crate) fn count_in(&self, n: usize) {
        if let Some(c) = self.metrics.records_in.get(self.node) {
            c.set(c.get() + n as u64);
        }
    }

    /// Counts records that arrived too late for every window.
    #[inline]
    pub(crate) fn count_late(&self, n: usize) {
        if let Some(c) = self.metrics.records_late.get(self.node) {
            c.set(c.get() + n as u64);
        }
    }

    /// Snapshots this operator instance's state for `barrier` (a no-op without checkpoints).
    pub(crate) fn save_state(
        &self,
        barrier: crate::checkpoint::Barrier,
        write: impl FnOnce(&mut crate::checkpoint::StateSnapshot<'_>) -> crate::error::Result<()>,
    ) -> crate::error::Result<()> {
        self.checkpoints.save(self.node, barrier, write)
    }

    /// The state this operator instance restores from (empty on a fresh start).
    pub(crate) fn take_restore(&self) -> crate::checkpoint::StateRestore {
        self.checkpoints.take_restore(self.node)
    }

    /// The keyed-state backend opened for this operator instance (the job's LSM store), or an
    /// empty heap backend.
    pub(crate) fn take_state_backend(&self) -> crate::state::JobStateBackend {
        self.state_backends
            .borrow_mut()
            .remove(&self.node)
            .unwrap_or_default()
    }

    /// Whether the job opened a state backend of its own (an LSM store) for this operator
    /// instance.
    pub(crate) fn has_state_backend(&self) -> bool {
        self.state_backends.borrow().contains_key(&self.node)
    }

    /// Counts records a source emitted.
    #[inline]
    pub(crate) fn count_out(&self, n: usize) {
        if let Some(c) = self.metrics.records_out.get(self.node) {
            c.set(c.get() + n as u64);
        }
    }
}
