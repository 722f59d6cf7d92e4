//! The logical job graph: nodes in creation order (which is a topological order, since a node
//! can only consume streams that already exist).

use crate::error::Result;
use crate::runtime::{JobContext, ShardPart};

/// Prepares one node for a run: one part per shard.
pub(crate) type Prepare = Box<dyn FnMut(&JobContext) -> Result<Vec<ShardPart>>>;

pub(crate) struct Node {
    pub name: String,
    pub prepare: Prepare,
}

#[derive(Default)]
pub(crate) struct JobGraph {
    pub nodes: Vec<Node>,
    /// Problems found while the graph was built, reported by `execute`.
    pub errors: Vec<String>,
    pub sinks: usize,
    /// Source nodes (their checkpointed positions are restored specially).
    pub sources: Vec<usize>,
    /// File sinks whose output is committed by checkpoints (two-phase commit).
    pub outputs: Vec<OutputFile>,
    /// Nodes whose keyed state lives in the job's state backend (one store each per shard).
    pub keyed_state: Vec<usize>,
}

/// A file sink's output (a file or a directory of parts), committed by the checkpoint
/// coordinator.
#[derive(Clone, Debug)]
pub(crate) struct OutputFile {
    pub sink: usize,
    pub target: crate::checkpoint::OutputTarget,
}

impl JobGraph {
    /// The id the next node will get.
    pub fn next_id(&self) -> usize {
        self.nodes.len()
    }

    pub fn add(&mut self, name: &str, prepare: Prepare) -> usize {
        self.nodes.push(Node {
            name: name.to_string(),
            prepare,
        });
        self.nodes.len() - 1
    }
}

/// Builds one part per shard with `make(shard_index)`.
pub(crate) fn per_shard(
    ctx: &JobContext,
    mut make: impl FnMut(usize) -> ShardPart,
) -> Result<Vec<ShardPart>> {
    Ok((0..ctx.shards).map(&mut make).collect())
}
