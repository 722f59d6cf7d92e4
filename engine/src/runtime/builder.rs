//! Instantiating the job graph on one shard.
//!
//! Each graph node is prepared on the caller's thread into one `ShardPart` per shard (cloning
//! user functions, creating the channel matrix of an exchange). On the shard's own thread the
//! parts are applied in reverse graph order: a node first takes the pushes its consumers
//! registered, wraps them in its operator, and registers that operator as a consumer of its
//! own inputs. Sources and exchange inboxes become the shard's tasks.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::task::{LocalTask, Scheduler};
use super::{OperatorCtx, ShardInfo, ShardMetrics};
use crate::checkpoint::shard::{ShardCheckpoints, ShardSetup};
use crate::error::{Result, WeirError};
use crate::operator::{Discard, Push, SideChannel, SideOutputs, Tee, TypedSide};
use crate::state::JobStateBackend;

/// Job-wide settings every node sees when it is prepared.
#[derive(Clone)]
pub(crate) struct JobContext {
    pub shards: usize,
    pub max_parallelism: u32,
    pub batch_size: usize,
    pub queue_capacity: usize,
    pub cancel: Arc<AtomicBool>,
}

impl JobContext {
    pub fn shard_info(&self, index: usize) -> ShardInfo {
        ShardInfo {
            index,
            shards: self.shards,
            max_parallelism: self.max_parallelism,
            key_groups: crate::key::key_group_range(index, self.shards, self.max_parallelism),
            batch_size: self.batch_size,
        }
    }
}

/// One node's work on one shard, run on that shard's thread.
pub(crate) type ShardPart = Box<dyn FnOnce(&mut ShardBuilder) -> Result<()> + Send>;

/// The state of instantiating the graph on one shard.
pub(crate) struct ShardBuilder {
    pub info: ShardInfo,
    pub names: Arc<Vec<String>>,
    pub metrics: Rc<ShardMetrics>,
    pub scheduler: Rc<Scheduler>,
    pub cancel: Arc<AtomicBool>,
    pub checkpoints: Rc<ShardCheckpoints>,
    /// State backends opened for keyed operators before building (LSM stores), by node.
    state_backends: Rc<RefCell<HashMap<usize, JobStateBackend>>>,
    outputs: HashMap<usize, Vec<Box<dyn Any>>>,
    /// Consumers of side outputs, by (producing node, tag name).
    side_outputs: HashMap<(usize, String), Vec<Box<dyn SideChannel>>>,
    tasks: Vec<LocalTask>,
}

impl ShardBuilder {
    pub fn new(
        info: ShardInfo,
        names: Arc<Vec<String>>,
        cancel: Arc<AtomicBool>,
        input_ended: Arc<AtomicBool>,
        setup: ShardSetup,
    ) -> Self {
        let metrics = Rc::new(ShardMetrics::new(names.len(), input_ended));
        let checkpoints = Rc::new(ShardCheckpoints::new(
            info.index,
            info.max_parallelism,
            setup.wiring,
            setup.restore,
            setup.sources,
            setup.restore_dir,
        ));
        ShardBuilder {
            checkpoints,
            info,
            names,
            metrics,
            scheduler: Rc::new(Scheduler::default()),
            cancel,
            state_backends: Rc::default(),
            outputs: HashMap::new(),
            side_outputs: HashMap::new(),
            tasks: Vec::new(),
        }
    }

    /// The context of node `node`'s instance on this shard.
    pub fn operator_ctx(&self, node: usize) -> OperatorCtx {
        OperatorCtx {
            name: self.names.get(node).cloned().unwrap_or_default(),
            node,
            shard: self.info.index,
            shards: self.info.shards,
            batch_size: self.info.batch_size,
            metrics: self.metrics.clone(),
            checkpoints: self.checkpoints.clone(),
            state_backends: self.state_backends.clone(),
        }
    }

    /// Hands node `node`'s instance on this shard the state backend to use.
    pub fn provide_state_backend(&self, node: usize, backend: JobStateBackend) {
        self.state_backends.borrow_mut().insert(node, backend);
    }

    /// Registers `push` as a consumer of node `upstream`'s output.
    pub fn add_input<T: 'static>(&mut self, upstream: usize, push: Box<dyn Push<T>>) {
        self.outputs
            .entry(upstream)
            .or_default()
            .push(Box::new(push));
    }

    /// Registers `push` as a consumer of the side output `tag` of node `upstream`.
    pub fn add_side_input<T: 'static>(
        &mut self,
        upstream: usize,
        tag: &str,
        push: Box<dyn Push<T>>,
    ) {
        self.side_outputs
            .entry((upstream, tag.to_string()))
            .or_default()
            .push(Box::new(TypedSide::new(tag, push)));
    }

    /// The push that feeds every consumer of the side output `tag` of node `node`, for
    /// operators that know the side's type.
    pub fn take_side_output<T: Clone + 'static>(
        &mut self,
        node: usize,
        tag: &str,
    ) -> Result<Box<dyn Push<T>>> {
        let consumers = self
            .side_outputs
            .remove(&(node, tag.to_string()))
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.into_push())
            .collect();
        self.combine(node, consumers)
    }

    /// Every side output of node `node`, type-erased (for process functions).
    pub fn take_side_channels(&mut self, node: usize) -> SideOutputs {
        let keys: Vec<(usize, String)> = self
            .side_outputs
            .keys()
            .filter(|(n, _)| *n == node)
            .cloned()
            .collect();
        let mut channels = Vec::new();
        for k in keys {
            channels.extend(self.side_outputs.remove(&k).unwrap_or_default());
        }
        SideOutputs::new(channels)
    }

    /// The push that feeds every consumer of node `node`'s output.
    pub fn take_output<T: Clone + 'static>(&mut self, node: usize) -> Result<Box<dyn Push<T>>> {
        let consumers = self.outputs.remove(&node).unwrap_or_default();
        self.combine(node, consumers)
    }

    fn combine<T: Clone + 'static>(
        &self,
        node: usize,
        consumers: Vec<Box<dyn Any>>,
    ) -> Result<Box<dyn Push<T>>> {
        let mut pushes: Vec<Box<dyn Push<T>>> = Vec::with_capacity(consumers.len());
        for c in consumers {
            match c.downcast::<Box<dyn Push<T>>>() {
                Ok(p) => pushes.push(*p),
                Err(_) => {
                    return Err(WeirError::Graph(format!(
                        "consumer of `{}` expects another record type",
                        self.names.get(node).map(String::as_str).unwrap_or("?")
                    )));
                }
            }
        }
        Ok(match pushes.len() {
            0 => Box::new(self.discard()),
            1 => match pushes.pop() {
                Some(p) => p,
                None => Box::new(self.discard()),
            },
            _ => Box::new(Tee::new(pushes)),
        })
    }

    /// A terminal that drops what it gets (an output nobody consumes).
    pub fn discard(&self) -> Discard {
        Discard::new(self.checkpoints.clone())
    }

    /// Adds a task (a source or an exchange inbox) to this shard.
    pub fn spawn(&mut self, task: LocalTask) {
        self.tasks.push(task);
    }

    /// Ends the side outputs no operator claimed (a side output of an operator that has
    /// none is an empty stream), so their consumers do not wait forever.
    pub fn finish_unclaimed_sides(&mut self) -> Result<()> {
        for (_, channels) in self.side_outputs.drain() {
            for mut c in channels {
                c.progress(crate::time::Progress::Watermark(crate::time::END_OF_TIME))?;
                c.finish()?;
            }
        }
        Ok(())
    }

    pub fn into_tasks(self) -> (Vec<LocalTask>, Rc<ShardMetrics>) {
        (self.tasks, self.metrics)
    }
}
