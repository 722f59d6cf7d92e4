//! Starting the shards, pinning them, and collecting their outcome.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use glommio::{LocalExecutorBuilder, Placement};

use super::builder::{JobContext, ShardBuilder, ShardPart};
use super::metrics::{JobResult, OperatorStats, ShardSnapshot, new_latency_histogram};
use super::task::DriveAll;
use crate::checkpoint::shard::ShardSetup;
use crate::error::{Result, WeirError};
use crate::operator::panic_message;
use crate::state::{JobStateBackend, LsmStateConfig, StateBackendConfig, new_run_dir};

/// How to place and size the shard executors.
#[derive(Clone, Debug)]
pub(crate) struct LaunchConfig {
    pub pin: bool,
    pub io_memory: usize,
    /// Poll this long before an idle executor sleeps (see `EnvBuilder::spin_before_park`).
    pub spin_before_park: Option<Duration>,
    /// Where keyed process functions keep their state.
    pub state_backend: StateBackendConfig,
    /// The nodes that need a state backend on every shard.
    pub keyed_state: Arc<Vec<usize>>,
}

/// Runs the parts of every shard to completion and merges what they report.
pub(crate) fn run_job(
    ctx: &JobContext,
    names: Arc<Vec<String>>,
    parts: Vec<Vec<ShardPart>>,
    setups: Vec<ShardSetup>,
    launch: &LaunchConfig,
) -> Result<JobResult> {
    let (result, measured) = run_job_measured(ctx, names, parts, setups, launch);
    result.map(|()| measured)
}

/// Like [`run_job`], but also returns what the shards measured when the job failed or was
/// cancelled (a stop-with-savepoint reports the work done up to the stop).
pub(crate) fn run_job_measured(
    ctx: &JobContext,
    names: Arc<Vec<String>>,
    parts: Vec<Vec<ShardPart>>,
    setups: Vec<ShardSetup>,
    launch: &LaunchConfig,
) -> (Result<()>, JobResult) {
    super::limits::raise_open_files_limit();
    let mut setups = setups.into_iter();
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let pinned = launch.pin && cpus.len() >= ctx.shards;
    if launch.pin && !pinned {
        tracing::warn!(
            shards = ctx.shards,
            cpus = cpus.len(),
            "fewer CPUs available than shards: running the shards unpinned"
        );
    }
    // LSM state lives in a working directory of this run, removed when the run ends.
    let lsm = match &launch.state_backend {
        StateBackendConfig::Lsm(config) if !launch.keyed_state.is_empty() => {
            let dir = match new_run_dir(&config.dir) {
                Ok(dir) => dir,
                Err(e) => {
                    let nothing = merge(&names, Vec::new(), Duration::ZERO, ctx.shards, false);
                    return (Err(WeirError::Config(e.to_string())), nothing);
                }
            };
            Some(Arc::new(LsmRun {
                dir,
                config: config.clone(),
                nodes: launch.keyed_state.clone(),
            }))
        }
        _ => None,
    };
    let start = Instant::now();
    let input_ended = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(ctx.shards);
    for (index, shard_parts) in parts.into_iter().enumerate() {
        let placement = match cpus.get(index) {
            Some(&cpu) if pinned => Placement::Fixed(cpu),
            _ => Placement::Unbound,
        };
        let info = ctx.shard_info(index);
        let names = names.clone();
        let cancel = ctx.cancel.clone();
        let input_ended = input_ended.clone();
        let setup = setups.next().unwrap_or_default();
        let lsm = lsm.clone();
        let mut executor = LocalExecutorBuilder::new(placement);
        if let Some(spin) = launch.spin_before_park {
            executor = executor.spin_before_park(spin);
        }
        let spawned = executor
            .name(&format!("weir-shard-{index}"))
            .io_memory(launch.io_memory)
            .spawn(move || async move {
                // Held for the shard's whole life (see `KEEPALIVE_PERIOD`).
                let keepalive = match weir_storage::Keepalive::new(Some(KEEPALIVE_PERIOD)).await {
                    Ok(k) => k,
                    Err(e) => {
                        cancel.store(true, Ordering::Release);
                        let error = WeirError::Executor {
                            shard: index,
                            message: format!("starting the keepalive: {e}"),
                        };
                        return (Err(error), None);
                    }
                };
                let hold = keepalive.hold();
                let builder = ShardBuilder::new(info, names, cancel.clone(), input_ended, setup);
                let outcome = std::panic::AssertUnwindSafe(run_shard(builder, shard_parts, lsm))
                    .catch_unwind()
                    .await;
                drop(hold);
                drop(keepalive);
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(payload) => (
                        Err(WeirError::Executor {
                            shard: index,
                            message: format!("panic: {}", panic_message(payload.as_ref())),
                        }),
                        None,
                    ),
                };
                if outcome.0.is_err() {
                    // Tell shards that share no channel with this one to stop too.
                    cancel.store(true, Ordering::Release);
                }
                outcome
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                ctx.cancel.store(true, Ordering::Release);
                // Shards already started see the cancel flag or their channels close.
                for h in handles {
                    let _ = h.join();
                }
                let nothing = merge(&[], Vec::new(), Duration::ZERO, ctx.shards, false);
                let error = WeirError::Executor {
                    shard: index,
                    message: e.to_string(),
                };
                return (Err(error), nothing);
            }
        }
    }
    let mut first_error: Option<WeirError> = None;
    let mut snapshots = Vec::with_capacity(ctx.shards);
    for (index, h) in handles.into_iter().enumerate() {
        let (result, snapshot) = match h.join() {
            Ok(outcome) => outcome,
            Err(e) => (
                Err(WeirError::Executor {
                    shard: index,
                    message: e.to_string(),
                }),
                None,
            ),
        };
        if let Err(e) = result {
            tracing::debug!(shard = index, error = %e, "shard failed");
            let replace = match &first_error {
                None => true,
                Some(prev) => prev.is_secondary() && !e.is_secondary(),
            };
            if replace {
                first_error = Some(e);
            }
        }
        snapshots.extend(snapshot);
    }
    let duration = start.elapsed();
    if let Some(run) = &lsm
        && let Err(e) = std::fs::remove_dir_all(&run.dir)
    {
        tracing::warn!(dir = %run.dir.display(), error = %e, "cannot remove the run's LSM state");
    }
    let measured = merge(&names, snapshots, duration, ctx.shards, pinned);
    match first_error {
        Some(e) => (Err(e), measured),
        None => (Ok(()), measured),
    }
}

type ShardOutcome = (Result<()>, Option<ShardSnapshot>);

/// How often the keepalive thread wakes a shard's executor. glommio 0.9's executor loop can
/// park while tasks are runnable (a latency-ring completion — its preemption timer, its
/// blocking thread's eventfd — landing between the I/O poll and running the task queues
/// makes it believe nothing ran), and then sleeps in `io_uring_enter` until some other
/// completion arrives; a shard whose pending work was woken in-process (an SPSC consumer
/// woken by a producer task of the same shard, a yielded task) would hang. Seen in a test
/// run: a q7 job with both shards parked and nothing in flight, freed by attaching a
/// debugger. A timer on the shard is not a guard: it is disarmed by its own firing, and a
/// wrong park in that very iteration sleeps with no deadline (`weir-storage`'s `keepalive`
/// module has the mechanism and a test that fails with a timer). So every shard holds the
/// storage crate's [`weir_storage::Keepalive`] for its whole life: a process-wide thread
/// wakes it from outside every period (an eventfd write ends any park), one cross-thread
/// wake-up per period per shard.
const KEEPALIVE_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

/// The LSM state of one run: where its stores go and which nodes need one.
struct LsmRun {
    dir: PathBuf,
    config: LsmStateConfig,
    nodes: Arc<Vec<usize>>,
}

/// Opens this shard's LSM store for every keyed-state node, holding the state of the
/// checkpoint being restored (async, so before the synchronous building of the operators,
/// which take their stores from the builder).
async fn open_state_backends(builder: &ShardBuilder, run: &LsmRun) -> Result<()> {
    let shard = builder.info.index;
    for &node in run.nodes.iter() {
        let dir = run.dir.join(format!("node-{node}-shard-{shard}"));
        let backend = crate::checkpoint::lsm::restore(
            &dir,
            &run.config,
            &builder.checkpoints.restore_of(node),
            builder.checkpoints.restore_dir(),
            builder.info.key_groups.clone(),
        )
        .await
        .map_err(|e| WeirError::OperatorFailed {
            operator: builder.names.get(node).cloned().unwrap_or_default(),
            shard,
            message: format!("opening its LSM state store: {e}"),
        })?;
        builder.scheduler.add_store(backend.store().clone());
        builder.provide_state_backend(node, JobStateBackend::Lsm(backend));
    }
    Ok(())
}

async fn run_shard(
    mut builder: ShardBuilder,
    parts: Vec<ShardPart>,
    lsm: Option<Arc<LsmRun>>,
) -> ShardOutcome {
    let started = Instant::now();
    let shard = builder.info.index;
    if let Some(run) = &lsm
        && let Err(e) = open_state_backends(&builder, run).await
    {
        return (Err(e), None);
    }
    for part in parts.into_iter().rev() {
        if let Err(e) = part(&mut builder) {
            return (Err(e), None);
        }
    }
    if let Err(e) = builder.finish_unclaimed_sides() {
        return (Err(e), None);
    }
    // Building includes restoring operator state: this is the shard's share of recovery time.
    tracing::debug!(
        shard,
        millis = started.elapsed().as_millis() as u64,
        "shard built"
    );
    let (tasks, metrics) = builder.into_tasks();
    let result = DriveAll::new(tasks).await;
    (result, Some(metrics.snapshot()))
}

fn merge(
    names: &[String],
    snapshots: Vec<ShardSnapshot>,
    duration: std::time::Duration,
    shards: usize,
    pinned: bool,
) -> JobResult {
    let mut operators: Vec<OperatorStats> = names
        .iter()
        .enumerate()
        .map(|(id, name)| OperatorStats {
            id,
            name: name.clone(),
            records_in: 0,
            records_out: 0,
            records_late: 0,
        })
        .collect();
    let mut latency = new_latency_histogram();
    let mut latency_steady = new_latency_histogram();
    let mut max_queue_len = 0;
    let mut max_held = 0;
    for s in snapshots {
        for (id, op) in operators.iter_mut().enumerate() {
            op.records_in += s.records_in.get(id).copied().unwrap_or(0);
            op.records_out += s.records_out.get(id).copied().unwrap_or(0);
            op.records_late += s.records_late.get(id).copied().unwrap_or(0);
        }
        // Both histograms have the same bounds, so adding cannot fail; ignore if it ever did.
        let _ = latency.add(&s.latency);
        let _ = latency_steady.add(&s.latency_steady);
        max_queue_len = max_queue_len.max(s.max_queue_len);
        max_held = max_held.max(s.max_held);
    }
    JobResult {
        duration,
        shards,
        pinned,
        operators,
        latency,
        latency_steady,
        max_queue_len,
        max_held,
        checkpoints: None,
    }
}
