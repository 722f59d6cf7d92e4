//! Running a job with checkpoints: attempt after attempt, each resuming from the latest
//! completed checkpoint, until the job finishes or the restart strategy gives up.
//!
//! Before an attempt starts, recovery makes the output files exactly what the restored
//! checkpoint committed (truncating rows an interrupted commit appended, re-committing a
//! checkpoint whose commit was interrupted) and deletes pre-committed parts no checkpoint
//! refers to: rows of a failed attempt after its last checkpoint are produced again by the
//! replay, once. Directory outputs (rolling parts) are recovered alike, by renames and deletes.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::coordinator::{Coordinator, checkpoint_error, job_ended};
use super::shard::{ShardSetup, ShardTrigger, ShardWiring};
use super::snapshot::Slice;
use super::{
    CheckpointConfig, CheckpointStats, CheckpointStore, LoadedCheckpoint, OutputCommitter,
    SavepointHandle, Scope, SourceRestore, StateRestore, clean_pending,
};
use crate::api::graph::OutputFile;
use crate::error::{Result, WeirError};
use crate::key::{KeyHasher, shard_for_key_group};
use crate::runtime::launch::LaunchConfig;
use crate::runtime::{JobContext, JobResult, ShardPart, run_job_measured};

/// What a checkpointed run needs to know about the job graph.
pub(crate) struct CheckpointedJob<'a> {
    pub config: &'a CheckpointConfig,
    pub names: Arc<Vec<String>>,
    pub outputs: Vec<OutputFile>,
    pub sources: Vec<usize>,
    pub savepoints: SavepointHandle,
}

/// Identifies a job graph: a checkpoint restores only into a graph with the same nodes.
pub(crate) fn fingerprint(names: &[String]) -> u64 {
    let mut h = KeyHasher::default();
    h.write_usize(names.len());
    for n in names {
        h.write(n.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// Runs the job (prepared anew for every attempt by `prepare`) under checkpoints.
pub(crate) fn run_checkpointed(
    job: CheckpointedJob<'_>,
    base: &JobContext,
    prepare: &mut dyn FnMut(&JobContext) -> Result<Vec<Vec<ShardPart>>>,
    launch: &LaunchConfig,
) -> Result<JobResult> {
    let config = job.config;
    let store = CheckpointStore::open(&config.dir, config.retain).map_err(checkpoint_error)?;
    let fp = fingerprint(&job.names);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let loading = std::time::Instant::now();
        let (latest, external) = match store.latest().map_err(checkpoint_error)? {
            Some(l) => (Some(l), false),
            None => match &config.restore_from {
                Some(path) => (
                    Some(CheckpointStore::load_dir(path).map_err(checkpoint_error)?),
                    true,
                ),
                None => (None, false),
            },
        };
        if let Some(l) = &latest {
            l.check_job(fp).map_err(checkpoint_error)?;
        }
        let committers: Vec<OutputCommitter> = job
            .outputs
            .iter()
            .map(|o| OutputCommitter::for_target(store.dir(), o.sink as u32, &o.target))
            .collect();
        recover_outputs(&committers, latest.as_ref(), external)?;
        let mut stats = CheckpointStats {
            restored_from: latest.as_ref().map(|l| l.meta.id),
            attempts,
            ..CheckpointStats::default()
        };
        if latest.as_ref().is_some_and(|l| l.meta.finished) {
            tracing::info!(dir = %config.dir.display(), "the job already completed in an earlier run");
            stats.already_complete = true;
            let mut result = JobResult::empty(base.shards);
            result.checkpoints = Some(stats);
            return Ok(result);
        }
        clean_pending(store.dir(), &HashSet::new()).map_err(checkpoint_error)?;
        if let Some(l) = &latest {
            tracing::info!(
                checkpoint = l.meta.id,
                path = %l.path.display(),
                load_millis = loading.elapsed().as_millis() as u64,
                "restoring from checkpoint"
            );
        }
        let next_id = store
            .last_id()
            .map_err(checkpoint_error)?
            .max(latest.as_ref().map_or(0, |l| l.meta.id))
            + 1;

        let ctx = JobContext {
            cancel: Arc::new(AtomicBool::new(false)),
            ..base.clone()
        };
        let (events, receiver) = std::sync::mpsc::channel();
        let triggers: Vec<Arc<ShardTrigger>> = (0..ctx.shards)
            .map(|_| Arc::new(ShardTrigger::starting_after(next_id - 1)))
            .collect();
        let setups = shard_setups(&ctx, &job, latest, &triggers, &events, &store);
        let parts = prepare(&ctx)?;
        let coordinator = Coordinator::new(
            config.clone(),
            store.clone(),
            committers,
            triggers,
            ctx.max_parallelism,
            fp,
            next_id,
            job.savepoints.clone(),
            ctx.cancel.clone(),
        );
        let stopped = coordinator.stopped_with_savepoint.clone();
        let thread = std::thread::Builder::new()
            .name("weir-checkpoints".into())
            .spawn(move || coordinator.run(receiver))
            .map_err(|e| WeirError::Checkpoint(format!("cannot start the coordinator: {e}")))?;
        let (result, measured) = run_job_measured(&ctx, job.names.clone(), parts, setups, launch);
        job_ended(&events, result.is_ok());
        drop(events);
        let run_stats = thread
            .join()
            .map_err(|_| WeirError::Checkpoint("the checkpoint coordinator panicked".into()))??;
        stats.completed = run_stats.completed;
        stats.aborted = run_stats.aborted;
        stats.durations_us = run_stats.durations_us;
        stats.max_align_us = run_stats.max_align_us;
        stats.max_snapshot_us = run_stats.max_snapshot_us;
        stats.snapshot_us = run_stats.snapshot_us;
        stats.cow = run_stats.cow;
        stats.max_encode_us = run_stats.max_encode_us;
        stats.savepoints = run_stats.savepoints;
        match result {
            Ok(()) => {
                let mut r = measured;
                r.checkpoints = Some(stats);
                return Ok(r);
            }
            // Stopped with a savepoint: what ran up to the stop.
            Err(_) if stopped.load(Ordering::Acquire) => {
                let mut r = measured;
                r.checkpoints = Some(stats);
                return Ok(r);
            }
            Err(e) => match config
                .restart
                .delay(attempts)
                .filter(|_| e.is_restartable())
            {
                Some(delay) => {
                    tracing::warn!(error = %e, attempt = attempts, "job failed: restarting from the latest checkpoint");
                    std::thread::sleep(delay);
                }
                None => return Err(e),
            },
        }
    }
}

/// Makes every output file hold exactly what the checkpoint to restore committed.
fn recover_outputs(
    committers: &[OutputCommitter],
    latest: Option<&LoadedCheckpoint>,
    external: bool,
) -> Result<()> {
    for c in committers {
        if c.is_directory() {
            // Rename-committed parts: re-commit the restored checkpoint's (idempotent), abort
            // every other in-progress part, drop parts of newer, unreadable checkpoints.
            let restored = latest.map_or(0, |l| l.meta.id);
            let outputs = latest
                .filter(|_| !external)
                .map(|l| l.meta.outputs.as_slice());
            let done = c
                .recover_directory(restored, outputs)
                .map_err(checkpoint_error)?;
            if done != Default::default() {
                tracing::info!(
                    checkpoint = restored,
                    committed = done.committed,
                    aborted = done.aborted,
                    rewound = done.rewound,
                    "output directory recovered"
                );
            }
            continue;
        }
        if let (Some(l), true) = (latest, external) {
            // A savepoint from elsewhere: its output was committed by the run that took it.
            c.adopt_existing(l.meta.id).map_err(checkpoint_error)?;
        }
        let committed = c.recover().map_err(checkpoint_error)?;
        let Some(l) = latest else { continue };
        if external {
            continue;
        }
        if l.meta.id > committed {
            // The commit of the restored checkpoint was interrupted: finish it.
            c.commit(l.meta.id, &l.meta.outputs)
                .map_err(checkpoint_error)?;
        } else if committed > l.meta.id {
            // Newer checkpoints committed output but cannot be read: cut the output back to
            // what the restored one had committed; the replay produces the rest again.
            let rewound = c.rewind_to(l.meta.id).map_err(|e| {
                WeirError::Checkpoint(format!(
                    "output holds rows of checkpoint {committed}, newer than the newest readable \
                     checkpoint {} ({}), and cannot be rewound: {e}",
                    l.meta.id,
                    l.path.display()
                ))
            })?;
            tracing::warn!(
                from = committed,
                to = rewound,
                "output rewound to the restored checkpoint: rows of unreadable newer checkpoints \
                 are produced again"
            );
            if l.meta.id > rewound {
                c.commit(l.meta.id, &l.meta.outputs)
                    .map_err(checkpoint_error)?;
            }
        }
    }
    Ok(())
}

/// What every shard starts with: its trigger and channel to the coordinator, and the state of
/// the key groups it owns now (from whichever old shard held them). The checkpoint's bytes are
/// shared, not copied: each shard gets ranges into the loaded files — keyed entries to the
/// owner of their key group, shard-scoped entries of old shard `i` to `i % shards` — and
/// source positions of every old shard go to every new one.
fn shard_setups(
    ctx: &JobContext,
    job: &CheckpointedJob<'_>,
    latest: Option<LoadedCheckpoint>,
    triggers: &[Arc<ShardTrigger>],
    events: &std::sync::mpsc::Sender<super::shard::CoordinatorEvent>,
    store: &CheckpointStore,
) -> Vec<ShardSetup> {
    type Entries = (Vec<(u32, Slice)>, Vec<Slice>);
    let n = ctx.shards;
    let mut operators: Vec<HashMap<u32, Entries>> = (0..n).map(|_| HashMap::new()).collect();
    let mut sources: HashMap<u32, SourceRestore> = HashMap::new();
    let mut buffers: Vec<Arc<super::FileBuffer>> = Vec::new();
    let restore_dir = latest.as_ref().map(|l| l.path.clone());
    if let Some(l) = latest {
        for (buffer, old) in l.shards.into_iter().enumerate() {
            for op in &old.operators {
                let is_source = job.sources.contains(&(op.node as usize));
                for (scope, range) in &op.entries {
                    let slice = Slice {
                        buffer,
                        range: range.clone(),
                    };
                    match *scope {
                        Scope::Shard if is_source => {
                            let restore = sources.entry(op.node).or_insert_with(|| SourceRestore {
                                old_shards: l.meta.shards,
                                positions: Vec::new(),
                            });
                            // Drop the part tag the snapshot writer put in front.
                            let entry = old.entry(range);
                            let position = entry.get(1..).unwrap_or_default().to_vec();
                            restore.positions.push((old.shard, position));
                        }
                        Scope::Shard => {
                            let to = old.shard as usize % n;
                            operators[to].entry(op.node).or_default().1.push(slice);
                        }
                        Scope::KeyGroup(kg) => {
                            let to = shard_for_key_group(kg, ctx.max_parallelism, n);
                            if let Some(ops) = operators.get_mut(to) {
                                ops.entry(op.node).or_default().0.push((kg, slice));
                            }
                        }
                    }
                }
            }
            buffers.push(old.data);
        }
    }
    operators
        .into_iter()
        .enumerate()
        .map(|(i, ops)| ShardSetup {
            wiring: triggers.get(i).map(|t| ShardWiring {
                trigger: t.clone(),
                events: events.clone(),
                pending_dir: store.pending_dir(),
                store: store.clone(),
            }),
            restore: ops
                .into_iter()
                .map(|(node, (keyed, shard))| {
                    (
                        node,
                        StateRestore::from_buffers(buffers.clone(), keyed, shard),
                    )
                })
                .collect(),
            sources: sources.clone(),
            restore_dir: restore_dir.clone(),
        })
        .collect()
}
