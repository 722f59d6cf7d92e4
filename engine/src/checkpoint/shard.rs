//! One shard's side of checkpointing: receiving triggers, collecting what its operators
//! snapshot, and acknowledging to the coordinator once every path of the shard passed the
//! barrier.
//!
//! A shard's snapshot for barrier n is complete when every *terminal* of the shard (sinks,
//! exchange outboxes, discarded outputs) has received barrier n: by then every operator between
//! the shard's sources/inboxes and those terminals has snapshotted. A terminal whose input ended
//! no longer holds back barriers it did not reach (it reached every one it will ever see).
//!
//! Sources finish at different times, and checkpoints go on after the first one did (Flink's
//! FLIP-147): a finished source leaves its final position with the shard, which adds it to
//! every later acknowledgement, so a restore from a later checkpoint knows that source has
//! nothing left to read. Once every terminal of a shard ended, the shard tells the coordinator
//! so once ([`CoordinatorEvent::ShardFinished`]), which then acknowledges every later
//! checkpoint on its behalf: operators that ended keep no state a restore would need.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::barrier::Barrier;
use super::snapshot::{DeferredState, SourceRestore, StateRestore, StateSnapshot};
use super::{CheckpointId, EncodedOperator, EncodedShard, OutputPart};
use crate::error::{Result, WeirError};
use crate::state::CowStats;

/// The coordinator's request to one shard's sources: inject every barrier up to `requested`.
#[derive(Default, Debug)]
pub struct ShardTrigger {
    /// The id before the first this trigger asks for.
    base: CheckpointId,
    requested: AtomicU64,
    /// The highest requested id that is a savepoint.
    savepoint: AtomicU64,
}

impl ShardTrigger {
    /// A trigger whose first request will be `last + 1` (a resumed job numbers on).
    pub fn starting_after(last: CheckpointId) -> Self {
        ShardTrigger {
            base: last,
            requested: AtomicU64::new(last),
            savepoint: AtomicU64::new(0),
        }
    }

    /// Asks for barrier `id` (ids increase).
    pub fn request(&self, id: CheckpointId, savepoint: bool) {
        if savepoint {
            self.savepoint.fetch_max(id, Ordering::AcqRel);
        }
        self.requested.fetch_max(id, Ordering::AcqRel);
    }

    /// The highest barrier requested so far (0: none). One relaxed-acquire load: sources call
    /// it once per batch.
    #[inline]
    pub fn requested(&self) -> CheckpointId {
        self.requested.load(Ordering::Acquire)
    }

    /// The id before the first barrier this trigger asks for: where a source starts counting,
    /// so that barriers requested before the source task started are still injected.
    pub fn base(&self) -> CheckpointId {
        self.base
    }

    /// True if barrier `id` is a savepoint.
    pub fn is_savepoint(&self, id: CheckpointId) -> bool {
        self.savepoint.load(Ordering::Acquire) == id
    }
}

/// What shards tell the coordinator.
#[derive(Debug)]
pub(crate) enum CoordinatorEvent {
    /// The shard's snapshot for checkpoint `id` is complete.
    Ack {
        id: CheckpointId,
        state: EncodedShard,
        outputs: Vec<OutputPart>,
        /// Time from the first barrier reaching the shard to the last terminal.
        align_micros: u64,
        /// Time spent copying state into the snapshot (the barrier's pause).
        snapshot_micros: u64,
        /// Heap state frozen at the barrier, for the coordinator to encode into `state`.
        deferred: Vec<DeferredState>,
        /// Copy-on-write costs of the shard's heap state since its previous checkpoint.
        cow: Box<CowStats>,
    },
    /// A transactional sink closed its last part at end of input, after reaching barriers
    /// up to `after`: the part belongs to the first checkpoint after that one to complete
    /// (a restore from it finds the sink's input ended and would not write the part again).
    FinalOutput {
        part: OutputPart,
        after: CheckpointId,
    },
    /// Every terminal of `shard` ended: the shard acknowledges no more barriers itself, and
    /// `state` (the final positions of its sources) stands for it in every later checkpoint.
    /// Sent after the shard's last `Ack` and `FinalOutput`.
    ShardFinished { shard: u32, state: EncodedShard },
    /// The job attempt ended (sent by the thread that ran it, after every shard stopped).
    JobEnded { ok: bool },
}

/// Job-wide checkpointing wiring handed to every shard.
#[derive(Clone)]
pub(crate) struct ShardWiring {
    pub trigger: Arc<ShardTrigger>,
    pub events: Sender<CoordinatorEvent>,
    pub pending_dir: PathBuf,
    /// The checkpoint store, for state written as files (LSM snapshots).
    pub store: super::CheckpointStore,
}

/// What one shard starts with: its checkpoint wiring (none: checkpoints off) and the state
/// it restores.
#[derive(Default)]
pub(crate) struct ShardSetup {
    pub wiring: Option<ShardWiring>,
    pub restore: HashMap<u32, StateRestore>,
    pub sources: HashMap<u32, SourceRestore>,
    /// The directory of the checkpoint being restored (files referenced by the state).
    pub restore_dir: Option<PathBuf>,
}

/// Names one terminal of a shard (see [`ShardCheckpoints::register_terminal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TerminalId(usize);

/// How far one terminal got.
#[derive(Clone, Copy, Debug, Default)]
struct TerminalProgress {
    /// The highest barrier it received (0: none).
    reached: CheckpointId,
    /// Its input ended.
    finished: bool,
}

struct Building {
    state: EncodedShard,
    outputs: Vec<OutputPart>,
    started: Instant,
    snapshot_micros: u64,
    deferred: Vec<DeferredState>,
    cow: CowStats,
}

/// A shard's checkpoint bookkeeping, shared by its operators through `OperatorCtx`.
pub(crate) struct ShardCheckpoints {
    shard: u32,
    max_parallelism: u32,
    wiring: Option<ShardWiring>,
    /// Every terminal of the shard: the last barrier it reached and whether its input ended.
    terminals: RefCell<Vec<TerminalProgress>>,
    building: RefCell<BTreeMap<CheckpointId, Building>>,
    restore: RefCell<HashMap<u32, StateRestore>>,
    source_restore: RefCell<HashMap<u32, SourceRestore>>,
    restore_dir: Option<PathBuf>,
    /// Finished sources: the last barrier each injected and its final position, added to
    /// every later acknowledgement.
    finished_sources: RefCell<Vec<(CheckpointId, EncodedOperator)>>,
    /// `ShardFinished` was sent.
    shard_finished: std::cell::Cell<bool>,
}

impl ShardCheckpoints {
    pub fn new(
        shard: usize,
        max_parallelism: u32,
        wiring: Option<ShardWiring>,
        restore: HashMap<u32, StateRestore>,
        source_restore: HashMap<u32, SourceRestore>,
        restore_dir: Option<PathBuf>,
    ) -> Self {
        ShardCheckpoints {
            shard: shard as u32,
            max_parallelism,
            wiring,
            terminals: RefCell::new(Vec::new()),
            building: RefCell::new(BTreeMap::new()),
            restore: RefCell::new(restore),
            source_restore: RefCell::new(source_restore),
            restore_dir,
            finished_sources: RefCell::new(Vec::new()),
            shard_finished: std::cell::Cell::new(false),
        }
    }

    /// The state node `node` restores from, without taking it (to prepare files first).
    pub fn restore_of(&self, node: usize) -> StateRestore {
        self.restore
            .borrow()
            .get(&(node as u32))
            .cloned()
            .unwrap_or_default()
    }

    /// The directory of the checkpoint being restored, if any.
    pub fn restore_dir(&self) -> Option<&std::path::Path> {
        self.restore_dir.as_deref()
    }

    /// The directory checkpoint `barrier` is written to, for state kept as files.
    pub fn checkpoint_dir(&self, barrier: Barrier) -> Option<PathBuf> {
        self.wiring
            .as_ref()
            .map(|w| w.store.checkpoint_path(barrier.id, barrier.savepoint))
    }

    /// True when the job takes checkpoints.
    pub fn enabled(&self) -> bool {
        self.wiring.is_some()
    }

    /// The trigger sources poll.
    pub fn trigger(&self) -> Option<Arc<ShardTrigger>> {
        self.wiring.as_ref().map(|w| w.trigger.clone())
    }

    /// Where transactional sinks put pre-committed parts.
    pub fn pending_dir(&self) -> Option<&std::path::Path> {
        self.wiring.as_ref().map(|w| w.pending_dir.as_path())
    }

    /// The state node `node` had in the checkpoint being restored (empty on a fresh start).
    pub fn take_restore(&self, node: usize) -> StateRestore {
        self.restore
            .borrow_mut()
            .remove(&(node as u32))
            .unwrap_or_default()
    }

    /// The positions of source node `node` in the checkpoint being restored, if any.
    pub fn take_source_restore(&self, node: usize) -> Option<SourceRestore> {
        self.source_restore.borrow_mut().remove(&(node as u32))
    }

    /// A terminal push exists on this shard; it reports under the returned id.
    pub fn register_terminal(&self) -> TerminalId {
        let mut terminals = self.terminals.borrow_mut();
        terminals.push(TerminalProgress::default());
        TerminalId(terminals.len() - 1)
    }

    /// A terminal's input ended: it will see no more barriers, so it no longer holds back
    /// the checkpoints it did not reach.
    pub fn terminal_finished(&self, terminal: TerminalId) -> Result<()> {
        if let Some(t) = self.terminals.borrow_mut().get_mut(terminal.0) {
            t.finished = true;
        }
        self.acknowledge_ready()?;
        let all_ended = self.terminals.borrow().iter().all(|t| t.finished);
        if all_ended && !self.shard_finished.replace(true) {
            // Every barrier this shard's sources injected was acknowledged just above; any
            // later one finds every source finished.
            let state = EncodedShard {
                shard: self.shard,
                operators: self
                    .finished_sources
                    .borrow()
                    .iter()
                    .map(|(_, op)| op.clone())
                    .collect(),
            };
            self.send(CoordinatorEvent::ShardFinished {
                shard: self.shard,
                state,
            })?;
        }
        Ok(())
    }

    fn send(&self, event: CoordinatorEvent) -> Result<()> {
        match &self.wiring {
            Some(w) => w
                .events
                .send(event)
                .map_err(|_| coordinator_gone(self.shard)),
            None => Ok(()),
        }
    }

    /// Acknowledges every checkpoint in progress that each terminal either reached or will
    /// never see (its input ended before the barrier). A terminal that reached a barrier and
    /// then ended counts once: counting arrivals and subtracting ended terminals would count
    /// it twice and acknowledge before the operators upstream of other terminals snapshot.
    fn acknowledge_ready(&self) -> Result<()> {
        let ready: Vec<CheckpointId> = {
            let terminals = self.terminals.borrow();
            self.building
                .borrow()
                .keys()
                .copied()
                .filter(|id| terminals.iter().all(|t| t.reached >= *id || t.finished))
                .collect()
        };
        for id in ready {
            self.acknowledge(id)?;
        }
        Ok(())
    }

    fn building<R>(&self, id: CheckpointId, f: impl FnOnce(&mut Building) -> R) -> R {
        let mut building = self.building.borrow_mut();
        let b = building.entry(id).or_insert_with(|| Building {
            state: EncodedShard {
                shard: self.shard,
                operators: Vec::new(),
            },
            outputs: Vec::new(),
            started: Instant::now(),
            snapshot_micros: 0,
            deferred: Vec::new(),
            cow: CowStats::default(),
        });
        f(b)
    }

    /// Node `node` snapshots for `barrier`: `write` puts its state into the snapshot.
    pub fn save(
        &self,
        node: usize,
        barrier: Barrier,
        write: impl FnOnce(&mut StateSnapshot<'_>) -> Result<()>,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let started = Instant::now();
        let (encoded, deferred, cow) = self.encode(node, write)?;
        let micros = started.elapsed().as_micros() as u64;
        self.building(barrier.id, |b| {
            b.snapshot_micros += micros;
            b.cow.merge(&cow);
            b.deferred
                .extend(deferred.into_iter().map(|(part, frozen)| DeferredState {
                    node: node as u32,
                    part,
                    frozen,
                }));
            if !encoded.entries.is_empty() {
                b.state.operators.push(encoded);
            }
        });
        Ok(())
    }

    /// Runs `write` into a fresh snapshot of node `node`.
    #[allow(clippy::type_complexity)]
    fn encode(
        &self,
        node: usize,
        write: impl FnOnce(&mut StateSnapshot<'_>) -> Result<()>,
    ) -> Result<(
        EncodedOperator,
        Vec<(u8, crate::state::FrozenKeyGroups)>,
        CowStats,
    )> {
        let mut encoded = EncodedOperator {
            node: node as u32,
            ..EncodedOperator::default()
        };
        let mut snapshot = StateSnapshot::new(&mut encoded, self.max_parallelism);
        write(&mut snapshot)?;
        if snapshot.overflow {
            return Err(WeirError::Checkpoint(format!(
                "shard {}: a state entry of node {node} exceeds 4 GiB",
                self.shard
            )));
        }
        let deferred = std::mem::take(&mut snapshot.deferred);
        let cow = snapshot.cow;
        Ok((encoded, deferred, cow))
    }

    /// A transactional sink pre-committed `part` at `barrier`.
    pub fn add_output(&self, barrier: Barrier, part: OutputPart) {
        self.building(barrier.id, |b| b.outputs.push(part));
    }

    /// The transactional sink behind `terminal` closed its last part at end of input.
    pub fn final_output(&self, terminal: TerminalId, part: OutputPart) -> Result<()> {
        let after = self
            .terminals
            .borrow()
            .get(terminal.0)
            .map_or(0, |t| t.reached);
        self.send(CoordinatorEvent::FinalOutput { part, after })
    }

    /// A terminal received `barrier`; the last one completes the shard's snapshot.
    pub fn terminal_reached(&self, terminal: TerminalId, barrier: Barrier) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.building(barrier.id, |_| ());
        if let Some(t) = self.terminals.borrow_mut().get_mut(terminal.0) {
            t.reached = t.reached.max(barrier.id);
        }
        self.acknowledge_ready()
    }

    fn acknowledge(&self, id: CheckpointId) -> Result<()> {
        let Some(mut b) = self.building.borrow_mut().remove(&id) else {
            return Ok(());
        };
        // Sources that finished before this barrier: their final positions.
        b.state.operators.extend(
            self.finished_sources
                .borrow()
                .iter()
                .filter(|(last, _)| *last < id)
                .map(|(_, op)| op.clone()),
        );
        self.send(CoordinatorEvent::Ack {
            id,
            state: b.state,
            outputs: b.outputs,
            align_micros: b.started.elapsed().as_micros() as u64,
            snapshot_micros: b.snapshot_micros,
            deferred: b.deferred,
            cow: Box::new(b.cow),
        })
    }

    /// Source node `node` of this shard finished after injecting barriers up to
    /// `last_injected`; `write` puts its final position into a snapshot, which every later
    /// acknowledgement of the shard carries.
    pub fn source_finished(
        &self,
        node: usize,
        last_injected: CheckpointId,
        write: impl FnOnce(&mut StateSnapshot<'_>) -> Result<()>,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let (encoded, deferred, _) = self.encode(node, write)?;
        debug_assert!(deferred.is_empty(), "a source position is written directly");
        tracing::debug!(
            shard = self.shard,
            node,
            last_injected,
            "source finished: its final position goes into later checkpoints"
        );
        self.finished_sources
            .borrow_mut()
            .push((last_injected, encoded));
        Ok(())
    }
}

fn coordinator_gone(shard: u32) -> WeirError {
    WeirError::Checkpoint(format!("shard {shard}: the checkpoint coordinator stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_with_wiring() -> (
        ShardCheckpoints,
        std::sync::mpsc::Receiver<CoordinatorEvent>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::super::CheckpointStore::open(dir.path(), 1).expect("store");
        let (events, receiver) = std::sync::mpsc::channel();
        let wiring = ShardWiring {
            trigger: Arc::new(ShardTrigger::starting_after(0)),
            events,
            pending_dir: store.pending_dir(),
            store,
        };
        let shard =
            ShardCheckpoints::new(0, 128, Some(wiring), HashMap::new(), HashMap::new(), None);
        (shard, receiver, dir)
    }

    fn acked(receiver: &std::sync::mpsc::Receiver<CoordinatorEvent>) -> Vec<CheckpointId> {
        receiver
            .try_iter()
            .filter_map(|e| match e {
                CoordinatorEvent::Ack { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    const B1: Barrier = Barrier {
        id: 1,
        savepoint: false,
    };
    const B2: Barrier = Barrier {
        id: 2,
        savepoint: false,
    };

    /// A terminal that reached barrier 1 and then ended must not stand in for another
    /// terminal that has not reached it yet (the operators before that one have not
    /// snapshotted): the shard acknowledges only once every terminal reached 1 or ended.
    #[test]
    fn an_ended_terminal_is_not_counted_twice() {
        let (shard, receiver, _dir) = shard_with_wiring();
        let (a, b, c) = (
            shard.register_terminal(),
            shard.register_terminal(),
            shard.register_terminal(),
        );
        shard.terminal_reached(a, B1).expect("reach");
        shard.terminal_reached(b, B1).expect("reach");
        shard.terminal_finished(a).expect("finish");
        shard.terminal_finished(b).expect("finish");
        assert_eq!(
            acked(&receiver),
            Vec::<CheckpointId>::new(),
            "c has not reached 1"
        );
        shard.terminal_reached(c, B1).expect("reach");
        assert_eq!(acked(&receiver), vec![1]);
    }

    /// A terminal that ended before a barrier will never see it and does not hold it back.
    #[test]
    fn an_ended_terminal_does_not_hold_back_later_barriers() {
        let (shard, receiver, _dir) = shard_with_wiring();
        let (a, b) = (shard.register_terminal(), shard.register_terminal());
        shard.terminal_reached(a, B1).expect("reach");
        shard.terminal_reached(b, B1).expect("reach");
        assert_eq!(acked(&receiver), vec![1]);
        shard.terminal_finished(a).expect("finish");
        shard.terminal_reached(b, B2).expect("reach");
        assert_eq!(acked(&receiver), vec![2]);
    }

    /// The nodes in an acknowledged or finished shard's state.
    fn nodes(state: &EncodedShard) -> Vec<u32> {
        state.operators.iter().map(|o| o.node).collect()
    }

    /// A finished source's final position is in every acknowledgement after its last barrier
    /// (and not in the one of that barrier, which has its position at the barrier), and in the
    /// state the shard leaves once all its terminals ended, sent after its last ack.
    #[test]
    fn a_finished_source_stands_in_later_checkpoints() {
        let (shard, receiver, _dir) = shard_with_wiring();
        let t = shard.register_terminal();
        shard
            .save(5, B1, |out| {
                out.shard(&7u64);
                Ok(())
            })
            .expect("save");
        shard
            .source_finished(5, 1, |out| {
                out.shard(&9u64);
                Ok(())
            })
            .expect("finish");
        shard.terminal_reached(t, B1).expect("reach");
        shard.terminal_reached(t, B2).expect("reach");
        shard.terminal_finished(t).expect("finish");
        let events: Vec<CoordinatorEvent> = receiver.try_iter().collect();
        match events.as_slice() {
            [
                CoordinatorEvent::Ack {
                    id: 1, state: s1, ..
                },
                CoordinatorEvent::Ack {
                    id: 2, state: s2, ..
                },
                CoordinatorEvent::ShardFinished {
                    shard: 0,
                    state: fin,
                },
            ] => {
                assert_eq!(nodes(s1), vec![5], "the position at barrier 1 only");
                assert_eq!(s1.operators[0].body, s_body(7));
                assert_eq!(nodes(s2), vec![5]);
                assert_eq!(s2.operators[0].body, s_body(9), "the final position");
                assert_eq!(nodes(fin), vec![5]);
                assert_eq!(fin.operators[0].body, s_body(9));
            }
            other => panic!("unexpected events {other:?}"),
        }
    }

    /// The bytes of a shard-scoped entry holding `v`, as a snapshot writes them.
    fn s_body(v: u64) -> Vec<u8> {
        let mut op = EncodedOperator::default();
        let mut snapshot = StateSnapshot::new(&mut op, 128);
        snapshot.shard(&v);
        op.body
    }

    /// A shard whose terminals ended tells the coordinator once, even if more end later.
    #[test]
    fn a_shard_finishes_once() {
        let (shard, receiver, _dir) = shard_with_wiring();
        let (a, b) = (shard.register_terminal(), shard.register_terminal());
        shard.terminal_finished(a).expect("finish");
        assert_eq!(receiver.try_iter().count(), 0, "b is still open");
        shard.terminal_finished(b).expect("finish");
        shard.terminal_finished(b).expect("finish again");
        let finished = receiver
            .try_iter()
            .filter(|e| matches!(e, CoordinatorEvent::ShardFinished { .. }))
            .count();
        assert_eq!(finished, 1);
    }
}
