//! The execution environment: configuration, sources, and `execute`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::graph::{JobGraph, Node, per_shard};
use super::stream::Stream;
use crate::Data;
use crate::checkpoint::SourceRestore;
use crate::checkpoint::job::{CheckpointedJob, run_checkpointed};
use crate::checkpoint::{CheckpointConfig, SavepointHandle};
use crate::error::{Result, WeirError};
use crate::runtime::launch::LaunchConfig;
use crate::runtime::{JobContext, JobResult, ShardPart, run_job};
use crate::source::{Source, SourcePosition, VecSource, run_source};
use crate::state::{StateBackendConfig, StateCodec};
use crate::time::{WatermarkGenerator, WatermarkStrategy};

/// Most key groups a job may have (Flink's limit).
pub const MAX_KEY_GROUPS: u32 = 32_768;

/// Configures an `Env`.
#[derive(Clone, Debug)]
pub struct EnvBuilder {
    cores: Option<usize>,
    max_parallelism: u32,
    batch_size: usize,
    queue_capacity: usize,
    pin: bool,
    io_memory: usize,
    spin_before_park: Option<std::time::Duration>,
    checkpointing: Option<CheckpointConfig>,
    state_backend: StateBackendConfig,
    savepoints: SavepointHandle,
}

impl Default for EnvBuilder {
    fn default() -> Self {
        EnvBuilder {
            cores: None,
            max_parallelism: 128,
            batch_size: 1024,
            queue_capacity: 64,
            pin: true,
            io_memory: 2 << 20,
            spin_before_park: None,
            checkpointing: None,
            state_backend: StateBackendConfig::Heap,
            savepoints: SavepointHandle::default(),
        }
    }
}

impl EnvBuilder {
    /// Number of shards (one executor thread each). Default: the CPUs available to the process.
    pub fn cores(mut self, cores: usize) -> Self {
        self.cores = Some(cores);
        self
    }

    /// Number of key groups: the most shards the job's keyed state can ever be spread over.
    /// Default 128.
    pub fn max_parallelism(mut self, key_groups: u32) -> Self {
        self.max_parallelism = key_groups;
        self
    }

    /// The most records a source puts into one batch. Default 1024. Sources never wait to fill
    /// a batch: this bounds batches, it does not delay them.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records;
        self
    }

    /// Batches each cross-shard channel holds before the producer waits. Default 64.
    pub fn queue_capacity(mut self, batches: usize) -> Self {
        self.queue_capacity = batches;
        self
    }

    /// Whether to pin each shard to its own CPU. Default true; if fewer CPUs than shards are
    /// available the job runs unpinned anyway and logs that.
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Memory glommio registers per shard for I/O buffers. Default 2 MiB, which works without
    /// `CAP_IPC_LOCK`.
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = bytes;
        self
    }

    /// Lets an idle shard poll for this long before it sleeps (pinned shards only). Default:
    /// sleep at once. A sleeping shard is woken by a write to its eventfd: a records batch
    /// from another shard, or its own timer, then waits for the kernel (and, in a VM, the
    /// hypervisor) to run it again. Polling instead sees both within microseconds, at the cost
    /// of up to this much CPU after every burst of work — a core per shard under a steady
    /// trickle of input. For latency-critical jobs on dedicated cores.
    pub fn spin_before_park(mut self, spin: std::time::Duration) -> Self {
        self.spin_before_park = Some(spin);
        self
    }

    /// Takes checkpoints as `config` says: the job resumes from the latest completed
    /// checkpoint in `config.dir` (after a failure, or when run again), file sinks commit
    /// their output through two-phase commit (exactly once), and a finished job is recorded
    /// as finished.
    pub fn checkpointing(mut self, config: CheckpointConfig) -> Self {
        self.checkpointing = Some(config);
        self
    }

    /// Where keyed process functions keep their state (`ctx.state()`): in memory (default) or
    /// in an LSM store per operator instance, for state larger than memory.
    pub fn state_backend(mut self, backend: StateBackendConfig) -> Self {
        self.state_backend = backend;
        self
    }

    /// A handle to request savepoints of the running job from another thread.
    pub fn savepoint_handle(&self) -> SavepointHandle {
        self.savepoints.clone()
    }

    /// Checks the configuration and creates the environment.
    pub fn build(self) -> Result<Env> {
        let cores = match self.cores {
            Some(c) => c,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if cores == 0 {
            return Err(WeirError::Config("cores must be at least 1".into()));
        }
        if self.max_parallelism == 0 || self.max_parallelism > MAX_KEY_GROUPS {
            return Err(WeirError::Config(format!(
                "max_parallelism must be in 1..={MAX_KEY_GROUPS}, got {}",
                self.max_parallelism
            )));
        }
        if cores as u64 > u64::from(self.max_parallelism) {
            return Err(WeirError::Config(format!(
                "cores ({cores}) cannot exceed max_parallelism ({}): every shard needs a key group",
                self.max_parallelism
            )));
        }
        if self.batch_size == 0 {
            return Err(WeirError::Config("batch_size must be at least 1".into()));
        }
        if let Some(c) = &self.checkpointing {
            if c.interval.is_zero() {
                return Err(WeirError::Config(
                    "checkpoint interval must be above zero".into(),
                ));
            }
            if c.retain == 0 {
                return Err(WeirError::Config(
                    "checkpoints to retain must be at least 1".into(),
                ));
            }
        }
        if let StateBackendConfig::Lsm(lsm) = &self.state_backend
            && (lsm.memtable_bytes < 4096 || lsm.block_cache_bytes == 0)
        {
            return Err(WeirError::Config(format!(
                "LSM state backend: memtable must be at least 4 KiB and the block cache above \
                 zero (got {} and {} bytes)",
                lsm.memtable_bytes, lsm.block_cache_bytes
            )));
        }
        if self.queue_capacity == 0 {
            return Err(WeirError::Config(
                "queue_capacity must be at least 1".into(),
            ));
        }
        Ok(Env {
            graph: Rc::new(RefCell::new(JobGraph::default())),
            config: Rc::new(EnvBuilder {
                cores: Some(cores),
                ..self
            }),
        })
    }
}

/// A job under construction, and the way to run it.
///
/// ```
/// use std::collections::BTreeMap;
/// use weir::Env;
///
/// let env = Env::builder().cores(2).build()?;
/// let totals = env
///     .from_iter(1..=100u64)
///     .filter(|n| n % 2 == 0)
///     .map(|n| (n % 10, n))
///     .key_by(|(digit, _)| *digit)
///     .reduce(|(_, sum), (_, n)| *sum += n)
///     .collect();
/// let result = env.execute()?;
/// assert_eq!(result.records_in("reduce"), 50);
/// // The last update of each key is its total.
/// let last: BTreeMap<u64, u64> = totals.take().into_iter().fold(BTreeMap::new(), |mut m, (k, s)| {
///     let e = m.entry(k).or_insert(0);
///     *e = (*e).max(s);
///     m
/// });
/// assert_eq!(last[&0], 10 + 20 + 30 + 40 + 50 + 60 + 70 + 80 + 90 + 100);
/// assert_eq!(last.values().sum::<u64>(), (2..=100).step_by(2).sum::<u64>());
/// # Ok::<(), weir::WeirError>(())
/// ```
#[derive(Clone)]
pub struct Env {
    pub(crate) graph: Rc<RefCell<JobGraph>>,
    config: Rc<EnvBuilder>,
}

impl Env {
    /// Starts configuring an environment.
    pub fn builder() -> EnvBuilder {
        EnvBuilder::default()
    }

    /// True if jobs of this environment keep keyed state in the LSM backend.
    pub(crate) fn uses_lsm(&self) -> bool {
        matches!(self.config.state_backend, StateBackendConfig::Lsm(_))
    }

    /// Number of shards jobs of this environment run on.
    pub fn shards(&self) -> usize {
        self.config.cores.unwrap_or(1)
    }

    /// Number of key groups.
    pub fn max_parallelism(&self) -> u32 {
        self.config.max_parallelism
    }

    /// A stream read from `source`, one reader per shard, with no watermarks but the final
    /// one at end of input.
    pub fn from_source<T: Data, S: Source<T>>(&self, source: S) -> Stream<T> {
        self.from_source_with_watermarks(source, WatermarkStrategy::none())
    }

    /// A stream read from `source` whose watermarks follow `strategy` (computed per shard from
    /// the records it reads; downstream operators see the minimum over shards).
    pub fn from_source_with_watermarks<T: Data, S: Source<T>, G: WatermarkGenerator<T>>(
        &self,
        source: S,
        strategy: WatermarkStrategy<G>,
    ) -> Stream<T> {
        let mut graph = self.graph.borrow_mut();
        let id = graph.next_id();
        graph.sources.push(id);
        let node = graph.add(
            "source",
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let source = source.clone();
                    let generator = strategy.generator.clone();
                    let idle_timeout = strategy.idle_timeout;
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<T>(id)?;
                        if b.checkpoints.enabled() && !source.supports_checkpoints() {
                            return Err(WeirError::Config(format!(
                                "source `{}` cannot be checkpointed: it cannot report and resume \
                                 from positions",
                                b.names.get(id).map(String::as_str).unwrap_or("?")
                            )));
                        }
                        let (reader, watermark) = match b.checkpoints.take_source_restore(id) {
                            Some(restore) => {
                                let (restore, watermark) = decode_source_restore(&restore)?;
                                (source.restore_reader(&b.info, &restore)?, watermark)
                            }
                            None => (source.create_reader(&b.info)?, None),
                        };
                        let task = run_source(
                            reader,
                            generator,
                            idle_timeout,
                            out,
                            b.scheduler.clone(),
                            b.operator_ctx(id),
                            b.cancel.clone(),
                            watermark,
                        );
                        b.spawn(Box::pin(task));
                        Ok(())
                    });
                    part
                })
            }),
        );
        Stream::new(self.clone(), node)
    }

    /// A bounded stream of the items of `items`, split into one contiguous slice per shard.
    pub fn from_iter<T, I>(&self, items: I) -> Stream<T>
    where
        T: Data + Sync,
        I: IntoIterator<Item = T>,
    {
        self.from_source(VecSource::new(items.into_iter().collect()))
    }

    /// Runs the job built so far on this environment's shards until every source is
    /// exhausted (or forever, for unbounded sources), and reports what happened.
    pub fn execute(&self) -> Result<JobResult> {
        let mut graph = self.graph.borrow_mut();
        if !graph.errors.is_empty() {
            return Err(WeirError::Graph(graph.errors.join("; ")));
        }
        if graph.sinks == 0 {
            return Err(WeirError::Graph(
                "the job has no sink: add one with `Stream::sink` (or collect/count/print)".into(),
            ));
        }
        let ctx = JobContext {
            shards: self.shards(),
            max_parallelism: self.config.max_parallelism,
            batch_size: self.config.batch_size,
            queue_capacity: self.config.queue_capacity,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let names: Arc<Vec<String>> =
            Arc::new(graph.nodes.iter().map(|n| n.name.clone()).collect());
        let launch = LaunchConfig {
            pin: self.config.pin,
            io_memory: self.config.io_memory,
            spin_before_park: self.config.spin_before_park,
            state_backend: self.config.state_backend.clone(),
            keyed_state: Arc::new(graph.keyed_state.clone()),
        };
        tracing::info!(shards = ctx.shards, nodes = names.len(), "starting job");
        let graph = &mut *graph;
        let mut prepare = |ctx: &JobContext| prepare_parts(&mut graph.nodes, ctx);
        let result = match &self.config.checkpointing {
            Some(config) => {
                let job = CheckpointedJob {
                    config,
                    names,
                    outputs: graph.outputs.clone(),
                    sources: graph.sources.clone(),
                    savepoints: self.config.savepoints.clone(),
                };
                run_checkpointed(job, &ctx, &mut prepare, &launch)?
            }
            None => {
                let parts = prepare(&ctx)?;
                run_job(&ctx, names, parts, Vec::new(), &launch)?
            }
        };
        tracing::info!(
            seconds = result.duration.as_secs_f64(),
            pinned = result.pinned,
            "job finished"
        );
        Ok(result)
    }
}

/// Splits what the source tasks of the checkpointed run wrote into the readers' positions and
/// the watermark to resume with: the smallest any old shard had emitted (none if one had none),
/// since a new shard may read what any old shard had not.
fn decode_source_restore(
    restore: &SourceRestore,
) -> Result<(SourceRestore, Option<crate::time::Timestamp>)> {
    let mut positions = Vec::with_capacity(restore.positions.len());
    let mut watermark: Option<Option<crate::time::Timestamp>> = None;
    for (shard, bytes) in &restore.positions {
        let p = SourcePosition::decode(bytes).map_err(|e| {
            WeirError::Checkpoint(format!("source position of old shard {shard}: {e}"))
        })?;
        watermark = Some(match (watermark, p.watermark) {
            (None, w) => w,
            (Some(Some(a)), Some(b)) => Some(a.min(b)),
            _ => None,
        });
        positions.push((*shard, p.position));
    }
    Ok((
        SourceRestore {
            old_shards: restore.old_shards,
            positions,
        },
        watermark.flatten(),
    ))
}

/// Prepares every node of the graph for one run: one part per shard and node.
fn prepare_parts(nodes: &mut [Node], ctx: &JobContext) -> Result<Vec<Vec<ShardPart>>> {
    let mut parts: Vec<Vec<ShardPart>> = (0..ctx.shards).map(|_| Vec::new()).collect();
    for node in nodes.iter_mut() {
        let node_parts = (node.prepare)(ctx)?;
        if node_parts.len() != ctx.shards {
            return Err(WeirError::Graph(format!(
                "node `{}` prepared {} parts for {} shards",
                node.name,
                node_parts.len(),
                ctx.shards
            )));
        }
        for (shard, part) in node_parts.into_iter().enumerate() {
            parts[shard].push(part);
        }
    }
    Ok(parts)
}
