//! The checkpoint coordinator: one thread per running job. It triggers checkpoints (asks every
//! shard's sources to inject barrier n), collects the shards' snapshots as they acknowledge,
//! writes them to the checkpoint store, completes a checkpoint once every shard acknowledged,
//! and then commits the transactional output the checkpoint covers (phase two of the
//! two-phase commit). At the end of a successful job it writes a final, `finished` checkpoint
//! that commits the rest of the output, so a re-run knows the job is done.
//!
//! Checkpoints go on after some sources finished. A shard whose every output ended is
//! acknowledged by the coordinator itself from then on (with its sources' final positions),
//! and the last part a transactional sink wrote after its final barrier is committed with
//! the first checkpoint that sink never reached: a restore from that checkpoint finds the
//! sink's input ended and does not write those rows again, so they must be in it.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::shard::{CoordinatorEvent, ShardTrigger};
use super::snapshot::encode_deferred;
use super::{
    CheckpointConfig, CheckpointId, CheckpointMeta, CheckpointStore, EncodedShard, OutputCommitter,
    OutputPart, ShardState,
};
use crate::error::{Result, WeirError};
use crate::state::CowStats;

/// What the checkpoints of one job run did.
#[derive(Clone, Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints completed (savepoints and the final one included).
    pub completed: u64,
    /// Checkpoints aborted (timed out, overtaken by a newer one, or of a failed attempt).
    pub aborted: u64,
    /// The checkpoint the last attempt resumed from, if any.
    pub restored_from: Option<CheckpointId>,
    /// Attempts made (1 + restarts).
    pub attempts: u32,
    /// Trigger-to-complete time of every completed checkpoint, in microseconds.
    pub durations_us: Vec<u64>,
    /// Longest time one shard spent between the first barrier and its acknowledgement.
    pub max_align_us: u64,
    /// Longest time one shard's operators spent copying state for one checkpoint: how long
    /// the barrier stopped record processing.
    pub max_snapshot_us: u64,
    /// That time for every acknowledgement of every shard, in arrival order (microseconds).
    pub snapshot_us: Vec<u64>,
    /// What copy-on-write of heap state cost the shards after their snapshots (chunk copies
    /// and splits: pauses of record processing too), summed over shards and checkpoints.
    pub cow: CowStats,
    /// Longest time the coordinator spent encoding one shard's frozen heap state.
    pub max_encode_us: u64,
    /// Savepoints completed, by path.
    pub savepoints: Vec<PathBuf>,
    /// The job had already finished in an earlier run: nothing was run.
    pub already_complete: bool,
}

/// Asks a running job for a savepoint, from any thread.
#[derive(Clone, Default, Debug)]
pub struct SavepointHandle {
    requests: Arc<Mutex<Vec<SavepointRequest>>>,
}

#[derive(Clone, Copy, Debug)]
struct SavepointRequest {
    /// Stop the job once the savepoint completed.
    stop: bool,
}

impl SavepointHandle {
    /// Requests a savepoint; with `stop`, the job is stopped once it completed (its output up
    /// to the savepoint committed), to be resumed later — possibly at another shard count.
    pub fn request(&self, stop: bool) {
        if let Ok(mut r) = self.requests.lock() {
            r.push(SavepointRequest { stop });
        }
    }

    fn take(&self) -> Option<SavepointRequest> {
        self.requests.lock().ok().and_then(|mut r| r.pop())
    }
}

struct InFlight {
    savepoint: bool,
    acked: Vec<bool>,
    outputs: Vec<OutputPart>,
    started: Instant,
}

/// The coordinator of one job attempt.
pub(crate) struct Coordinator {
    pub config: CheckpointConfig,
    pub store: CheckpointStore,
    pub committers: Vec<OutputCommitter>,
    pub triggers: Vec<Arc<ShardTrigger>>,
    pub max_parallelism: u32,
    pub job: u64,
    pub next_id: CheckpointId,
    pub savepoints: SavepointHandle,
    /// Set to stop the job after a stop-with-savepoint.
    pub cancel: Arc<AtomicBool>,
    pub stopped_with_savepoint: Arc<AtomicBool>,
    pub stats: CheckpointStats,
    in_flight: BTreeMap<CheckpointId, InFlight>,
    aborted: HashSet<CheckpointId>,
    /// Output parts of aborted checkpoints: committed with the next completed one.
    carried: Vec<OutputPart>,
    /// Last parts of sinks whose input ended, with the last barrier each sink reached.
    finals: Vec<(CheckpointId, OutputPart)>,
    /// The final state of every shard whose outputs all ended (see `ShardFinished`).
    finished_shards: Vec<Option<EncodedShard>>,
    stop_after: Option<CheckpointId>,
    last_completed: Instant,
    next_trigger: Instant,
}

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: CheckpointConfig,
        store: CheckpointStore,
        committers: Vec<OutputCommitter>,
        triggers: Vec<Arc<ShardTrigger>>,
        max_parallelism: u32,
        job: u64,
        next_id: CheckpointId,
        savepoints: SavepointHandle,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        let now = Instant::now();
        let shards = triggers.len();
        Coordinator {
            next_trigger: now + config.interval,
            config,
            store,
            committers,
            triggers,
            max_parallelism,
            job,
            next_id,
            savepoints,
            cancel,
            stopped_with_savepoint: Arc::new(AtomicBool::new(false)),
            stats: CheckpointStats::default(),
            in_flight: BTreeMap::new(),
            aborted: HashSet::new(),
            carried: Vec::new(),
            finals: Vec::new(),
            finished_shards: vec![None; shards],
            stop_after: None,
            last_completed: now,
        }
    }

    fn shards(&self) -> usize {
        self.triggers.len()
    }

    /// Runs until the job ends (the `JobEnded` event) and returns what happened.
    pub fn run(mut self, events: Receiver<CoordinatorEvent>) -> Result<CheckpointStats> {
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match events.recv_timeout(wait.max(Duration::from_micros(100))) {
                Ok(CoordinatorEvent::JobEnded { ok }) => {
                    if ok {
                        self.finish()?;
                    } else {
                        self.abort_all();
                    }
                    return Ok(self.stats);
                }
                Ok(event) => self.handle(event)?,
                Err(RecvTimeoutError::Timeout) => self.tick()?,
                Err(RecvTimeoutError::Disconnected) => return Ok(self.stats),
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let timeout = self
            .in_flight
            .values()
            .map(|f| f.started + self.config.timeout)
            .min();
        // Savepoint requests are polled at least this often.
        let poll = Instant::now() + Duration::from_millis(20);
        match timeout {
            Some(t) => t.min(self.next_trigger).min(poll),
            None => self.next_trigger.min(poll),
        }
    }

    fn tick(&mut self) -> Result<()> {
        let now = Instant::now();
        let expired: Vec<CheckpointId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now.duration_since(f.started) >= self.config.timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::warn!(checkpoint = id, "checkpoint timed out: aborted");
            self.abort(id);
        }
        if self.stop_after.is_some() || self.finished_shards.iter().all(Option::is_some) {
            // Stopping, or every shard is done and the job about to end.
            return Ok(());
        }
        if let Some(req) = self.savepoints.take() {
            let id = self.trigger(true)?;
            if req.stop {
                self.stop_after = Some(id);
            }
            return Ok(());
        }
        if now < self.next_trigger {
            return Ok(());
        }
        self.next_trigger = now + self.config.interval;
        if self.in_flight.len() < self.config.max_concurrent.max(1)
            && now.duration_since(self.last_completed) >= self.config.min_pause
        {
            self.trigger(false)?;
        }
        Ok(())
    }

    fn trigger(&mut self, savepoint: bool) -> Result<CheckpointId> {
        let id = self.next_id;
        self.next_id += 1;
        tracing::debug!(checkpoint = id, savepoint, "triggering checkpoint");
        self.in_flight.insert(
            id,
            InFlight {
                savepoint,
                acked: vec![false; self.shards()],
                outputs: Vec::new(),
                started: Instant::now(),
            },
        );
        for t in &self.triggers {
            t.request(id, savepoint);
        }
        for shard in 0..self.shards() {
            self.acknowledge_finished(id, shard)?;
        }
        Ok(id)
    }

    /// Acknowledges checkpoint `id` for `shard` if every output of that shard ended.
    fn acknowledge_finished(&mut self, id: CheckpointId, shard: usize) -> Result<()> {
        match self.finished_shards.get(shard) {
            Some(Some(state)) => {
                let state = state.clone();
                self.acknowledged(id, state, Vec::new(), Vec::new())
            }
            _ => Ok(()),
        }
    }

    /// Shard `state.shard` acknowledged checkpoint `id` with `state` and pre-committed
    /// `outputs`; the last acknowledgement completes the checkpoint.
    fn acknowledged(
        &mut self,
        id: CheckpointId,
        mut state: EncodedShard,
        outputs: Vec<OutputPart>,
        deferred: Vec<super::snapshot::DeferredState>,
    ) -> Result<()> {
        let Some(flight) = self.in_flight.get_mut(&id) else {
            // Aborted (or unknown): its output still has to be committed later; its
            // frozen state is dropped unencoded.
            self.carried.extend(outputs);
            return Ok(());
        };
        let shard = state.shard as usize;
        flight.outputs.extend(outputs);
        if let Some(a) = flight.acked.get_mut(shard) {
            *a = true;
        }
        let savepoint = flight.savepoint;
        let all = flight.acked.iter().all(|a| *a);
        // The shard froze its heap state at the barrier and went on processing; the
        // state is encoded here, off its record path.
        let started = Instant::now();
        encode_deferred(&mut state, deferred, self.max_parallelism).map_err(|node| {
            WeirError::Checkpoint(format!(
                "shard {shard}: a state entry of node {node} exceeds 4 GiB"
            ))
        })?;
        let encode_us = started.elapsed().as_micros() as u64;
        self.stats.max_encode_us = self.stats.max_encode_us.max(encode_us);
        self.store
            .write_encoded_shard(id, savepoint, &state)
            .map_err(checkpoint_error)?;
        if all {
            self.complete(id)?;
        }
        Ok(())
    }

    fn handle(&mut self, event: CoordinatorEvent) -> Result<()> {
        match event {
            CoordinatorEvent::Ack {
                id,
                state,
                outputs,
                align_micros,
                snapshot_micros,
                deferred,
                cow,
            } => {
                self.stats.max_align_us = self.stats.max_align_us.max(align_micros);
                self.stats.max_snapshot_us = self.stats.max_snapshot_us.max(snapshot_micros);
                self.stats.snapshot_us.push(snapshot_micros);
                self.stats.cow.merge(&cow);
                self.acknowledged(id, state, outputs, deferred)?;
            }
            CoordinatorEvent::FinalOutput { part, after } => self.finals.push((after, part)),
            CoordinatorEvent::ShardFinished { shard, state } => {
                tracing::debug!(shard, "every output of the shard ended");
                let shard = shard as usize;
                if let Some(slot) = self.finished_shards.get_mut(shard) {
                    *slot = Some(state);
                }
                let waiting: Vec<CheckpointId> = self
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.acked.get(shard).is_some_and(|a| !a))
                    .map(|(id, _)| *id)
                    .collect();
                for id in waiting {
                    self.acknowledge_finished(id, shard)?;
                }
            }
            CoordinatorEvent::JobEnded { .. } => {}
        }
        Ok(())
    }

    fn meta(&self, id: CheckpointId, savepoint: bool, finished: bool) -> CheckpointMeta {
        CheckpointMeta {
            id,
            job: self.job,
            shards: self.shards() as u32,
            max_parallelism: self.max_parallelism,
            savepoint,
            finished,
            timestamp_ms: crate::time::wall_clock_ms(),
            outputs: Vec::new(),
        }
    }

    fn complete(&mut self, id: CheckpointId) -> Result<()> {
        // Older checkpoints still in flight can no longer be the latest: give them up.
        let older: Vec<CheckpointId> = self.in_flight.range(..id).map(|(k, _)| *k).collect();
        for old in older {
            self.abort(old);
        }
        let Some(mut flight) = self.in_flight.remove(&id) else {
            return Ok(());
        };
        let mut meta = self.meta(id, flight.savepoint, false);
        flight.outputs.sort_by_key(|p| (p.sink, p.shard));
        meta.outputs = std::mem::take(&mut self.carried);
        meta.outputs.append(&mut flight.outputs);
        // Sinks that ended before this barrier: a restore from it will not write their last
        // parts again. (Their `FinalOutput` came before their shard's acknowledgement.)
        meta.outputs.extend(self.take_finals(|after| after < id));
        self.store.complete(&meta).map_err(checkpoint_error)?;
        self.commit(&meta)?;
        let took = flight.started.elapsed();
        self.stats.completed += 1;
        self.stats.durations_us.push(took.as_micros() as u64);
        self.last_completed = Instant::now();
        tracing::info!(
            checkpoint = id,
            savepoint = flight.savepoint,
            millis = took.as_millis() as u64,
            "checkpoint complete"
        );
        if flight.savepoint {
            self.stats
                .savepoints
                .push(self.store.checkpoint_path(id, true));
        }
        if self.stop_after == Some(id) {
            tracing::info!(checkpoint = id, "stopping the job after its savepoint");
            self.stopped_with_savepoint.store(true, Ordering::Release);
            self.cancel.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Removes the final parts whose sink's last barrier satisfies `due`, in (sink, shard)
    /// order.
    fn take_finals(&mut self, due: impl Fn(CheckpointId) -> bool) -> Vec<OutputPart> {
        let (mut taken, kept): (Vec<_>, Vec<_>) =
            self.finals.drain(..).partition(|(after, _)| due(*after));
        self.finals = kept;
        taken.sort_by_key(|(_, p)| (p.sink, p.shard));
        taken.into_iter().map(|(_, p)| p).collect()
    }

    fn commit(&self, meta: &CheckpointMeta) -> Result<()> {
        for c in &self.committers {
            c.commit(meta.id, &meta.outputs).map_err(checkpoint_error)?;
        }
        Ok(())
    }

    fn abort(&mut self, id: CheckpointId) {
        if let Some(mut flight) = self.in_flight.remove(&id) {
            self.carried.append(&mut flight.outputs);
            self.aborted.insert(id);
            self.stats.aborted += 1;
            if let Err(e) = self.store.abort(id) {
                tracing::warn!(checkpoint = id, error = %e, "could not discard an aborted checkpoint");
            }
        }
    }

    fn abort_all(&mut self) {
        let ids: Vec<CheckpointId> = self.in_flight.keys().copied().collect();
        for id in ids {
            self.abort(id);
        }
    }

    /// The job finished: one last checkpoint commits everything not committed yet and marks
    /// the job finished.
    fn finish(&mut self) -> Result<()> {
        if self.stopped_with_savepoint.load(Ordering::Acquire) {
            return Ok(());
        }
        self.abort_all();
        let id = self.next_id;
        self.next_id += 1;
        for shard in 0..self.shards() {
            let empty = ShardState {
                shard: shard as u32,
                operators: Vec::new(),
            };
            self.store
                .write_shard(id, false, &empty)
                .map_err(checkpoint_error)?;
        }
        let mut meta = self.meta(id, false, true);
        meta.outputs = std::mem::take(&mut self.carried);
        meta.outputs.extend(self.take_finals(|_| true));
        self.store.complete(&meta).map_err(checkpoint_error)?;
        self.commit(&meta)?;
        for c in &self.committers {
            c.ensure_header().map_err(checkpoint_error)?;
        }
        self.stats.completed += 1;
        tracing::info!(checkpoint = id, "job finished: final output committed");
        Ok(())
    }
}

pub(crate) fn checkpoint_error(e: super::CheckpointError) -> WeirError {
    WeirError::Checkpoint(e.to_string())
}

/// Sends the end of a job attempt to its coordinator.
pub(crate) fn job_ended(events: &Sender<CoordinatorEvent>, ok: bool) {
    // A coordinator that already stopped has nothing left to do.
    let _ = events.send(CoordinatorEvent::JobEnded { ok });
}
