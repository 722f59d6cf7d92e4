//! Checkpoint barriers and their alignment at operators with several inputs.
//!
//! A barrier travels in-band, in order with the records, from every source through every path
//! of the graph. An operator with several inputs *aligns*: an input that delivered barrier n
//! delivers nothing more until every other open input delivered n too; then the operator
//! snapshots and passes the barrier on once. Everything before the barrier is in the snapshot,
//! nothing after it (Flink's asynchronous barrier snapshotting, aligned).

use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::CheckpointId;
use crate::batch::Batch;
use crate::error::Result;
use crate::runtime::task::{Pending, Scheduler};
use crate::time::Progress;

/// The marker separating the records before checkpoint `id` from those after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    pub id: CheckpointId,
    /// A savepoint: self-contained, kept until the user deletes it.
    pub savepoint: bool,
}

/// What happened when an input delivered a barrier or ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Still waiting for other inputs: the delivering input must pause.
    Waiting,
    /// Every open input delivered this barrier: snapshot and pass it on.
    Aligned(Barrier),
    /// Nothing to do (no barrier in flight).
    Idle,
}

/// Barrier bookkeeping of an operator with `inputs` inputs.
#[derive(Debug)]
pub struct Aligner {
    current: Option<Barrier>,
    arrived: Vec<bool>,
    ended: Vec<bool>,
}

impl Aligner {
    pub fn new(inputs: usize) -> Self {
        Aligner {
            current: None,
            arrived: vec![false; inputs],
            ended: vec![false; inputs],
        }
    }

    /// True while `input` delivered the barrier in flight and must pause.
    #[inline]
    pub fn is_blocked(&self, input: usize) -> bool {
        self.current.is_some() && self.arrived.get(input).copied().unwrap_or(false)
    }

    /// True while a barrier is in flight.
    pub fn aligning(&self) -> bool {
        self.current.is_some()
    }

    /// Input `input` delivered `barrier`.
    pub fn on_barrier(&mut self, input: usize, barrier: Barrier) -> Alignment {
        match self.current {
            Some(cur) if barrier.id < cur.id => {
                // A barrier of a checkpoint already given up on here: ignore it.
                return Alignment::Idle;
            }
            Some(cur) if barrier.id > cur.id => {
                // A newer checkpoint overtook one that cannot complete any more (an input
                // never delivered it): abandon the old alignment, align on the new one.
                tracing::debug!(old = cur.id, new = barrier.id, "barrier overtaken");
                self.arrived.iter_mut().for_each(|a| *a = false);
                self.current = Some(barrier);
            }
            Some(_) => {}
            None => self.current = Some(barrier),
        }
        if let Some(a) = self.arrived.get_mut(input) {
            *a = true;
        }
        self.check()
    }

    /// Input `input` ended: it holds no barrier back any more.
    pub fn on_end(&mut self, input: usize) -> Alignment {
        if let Some(e) = self.ended.get_mut(input) {
            *e = true;
        }
        self.check()
    }

    fn check(&mut self) -> Alignment {
        let Some(barrier) = self.current else {
            return Alignment::Idle;
        };
        let done = self
            .arrived
            .iter()
            .zip(&self.ended)
            .all(|(&arrived, &ended)| arrived || ended);
        if done {
            self.current = None;
            self.arrived.iter_mut().for_each(|a| *a = false);
            Alignment::Aligned(barrier)
        } else {
            Alignment::Waiting
        }
    }
}

/// Barrier alignment of an operator whose inputs are pushed synchronously by tasks of the
/// shard (`union`, `connect`), as opposed to an exchange inbox, which simply stops reading a
/// producer that delivered the barrier.
///
/// Pausing the task that delivered a barrier is not enough on its own: an input can be fed by
/// several tasks (the output of another union, say), and the others keep pushing. So an input
/// that delivered the barrier in flight *holds* whatever else arrives on it, in order
/// ([`Held`]), and the operator replays that once the barrier is aligned and passed on. Any
/// task that pushes onto a held input is also paused at the input's gate, so holding stays
/// bounded by what tasks already had in hand.
pub(crate) struct InputAlignment {
    aligner: Aligner,
    gates: Rc<AlignmentGates>,
    gate_handles: Vec<Rc<dyn Pending>>,
    scheduler: Rc<Scheduler>,
    /// True while held events are replayed: a replayed barrier must neither start a nested
    /// replay nor pause the task that happens to run the replay (it may feed another input).
    replaying: bool,
}

impl InputAlignment {
    pub(crate) fn new(inputs: usize, scheduler: Rc<Scheduler>) -> Self {
        let (gates, gate_handles) = AlignmentGates::new(inputs);
        InputAlignment {
            aligner: Aligner::new(inputs),
            gates,
            gate_handles,
            scheduler,
            replaying: false,
        }
    }

    /// True while `input` delivered the barrier in flight: what it delivers now is held.
    #[inline]
    pub(crate) fn is_blocked(&self, input: usize) -> bool {
        self.aligner.is_blocked(input)
    }

    /// An event was held on `input`: the task that pushed it waits at the input's gate.
    pub(crate) fn pause_pusher(&self, input: usize) {
        if self.replaying {
            return;
        }
        if let Some(gate) = self.gate_handles.get(input) {
            self.scheduler.block_current(gate.clone());
        }
    }

    /// Input `input` delivered `barrier`.
    pub(crate) fn on_barrier(&mut self, input: usize, barrier: Barrier) -> Alignment {
        let alignment = self.aligner.on_barrier(input, barrier);
        self.gates.sync(&self.aligner);
        if self.aligner.is_blocked(input) {
            self.pause_pusher(input);
        }
        alignment
    }

    /// Input `input` ended.
    pub(crate) fn on_end(&mut self, input: usize) -> Alignment {
        let alignment = self.aligner.on_end(input);
        self.gates.sync(&self.aligner);
        alignment
    }

    /// Starts replaying held events; false if a replay is already running further up the
    /// stack (that one's loop picks up whatever became replayable).
    pub(crate) fn begin_replay(&mut self) -> bool {
        !std::mem::replace(&mut self.replaying, true)
    }

    pub(crate) fn end_replay(&mut self) {
        self.replaying = false;
    }
}

/// What an input delivered after its barrier, held until the alignment completes.
pub(crate) enum Held<T> {
    Records(Batch<T>),
    Progress(Progress),
    Barrier(Barrier),
    End,
}

impl<T> Held<T> {
    /// Holds the records of `batch`, leaving the caller's vector (and its capacity) in place.
    pub(crate) fn records(batch: &mut Batch<T>) -> Self {
        Held::Records(Batch {
            records: batch.records.drain(..).collect(),
            ingest: batch.ingest,
        })
    }
}

/// Pauses the tasks feeding inputs that already delivered the barrier in flight: each input
/// has its own gate, registered with the shard's scheduler like a full queue and "flushed" once
/// the alignment it waits for completes. Per input, because the task feeding another input may
/// deliver the *next* barrier right after completing this alignment: that must pause only
/// its own input, not one still on its way to the next barrier.
pub(crate) struct AlignmentGates {
    state: RefCell<GateState>,
}

struct GateState {
    closed: Vec<bool>,
    wakers: Vec<Waker>,
}

/// The gate of one input, as the scheduler sees it.
struct InputGate {
    gates: Rc<AlignmentGates>,
    input: usize,
}

impl AlignmentGates {
    /// Gates for `inputs` inputs, and the handle of each for the scheduler.
    pub(crate) fn new(inputs: usize) -> (Rc<Self>, Vec<Rc<dyn Pending>>) {
        let gates = Rc::new(AlignmentGates {
            state: RefCell::new(GateState {
                closed: vec![false; inputs],
                wakers: Vec::new(),
            }),
        });
        let handles = (0..inputs)
            .map(|input| {
                Rc::new(InputGate {
                    gates: gates.clone(),
                    input,
                }) as Rc<dyn Pending>
            })
            .collect();
        (gates, handles)
    }

    /// Closes the gates of the inputs `aligner` holds and opens the others, waking the tasks
    /// waiting if any gate opened (also when a newer barrier overtook an abandoned one).
    pub(crate) fn sync(&self, aligner: &Aligner) {
        let mut st = self.state.borrow_mut();
        let mut opened = false;
        for (input, closed) in st.closed.iter_mut().enumerate() {
            let blocked = aligner.is_blocked(input);
            opened |= *closed && !blocked;
            *closed = blocked;
        }
        if opened {
            for w in st.wakers.drain(..) {
                w.wake();
            }
        }
    }

    fn is_closed(&self, input: usize) -> bool {
        self.state
            .borrow()
            .closed
            .get(input)
            .copied()
            .unwrap_or(false)
    }
}

impl Pending for InputGate {
    fn try_flush(&self) -> Result<bool> {
        Ok(!self.gates.is_closed(self.input))
    }

    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.gates.is_closed(self.input) {
            return Poll::Ready(());
        }
        let mut st = self.gates.state.borrow_mut();
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: u64) -> Barrier {
        Barrier {
            id,
            savepoint: false,
        }
    }

    #[test]
    fn aligns_once_every_open_input_delivered() {
        let mut a = Aligner::new(3);
        assert_eq!(a.on_barrier(0, b(1)), Alignment::Waiting);
        assert!(a.is_blocked(0));
        assert!(!a.is_blocked(1));
        assert_eq!(a.on_end(2), Alignment::Waiting);
        assert_eq!(a.on_barrier(1, b(1)), Alignment::Aligned(b(1)));
        assert!(!a.is_blocked(0));
        assert!(!a.aligning());
        // The ended input does not hold the next barrier back.
        assert_eq!(a.on_barrier(1, b(2)), Alignment::Waiting);
        assert_eq!(a.on_barrier(0, b(2)), Alignment::Aligned(b(2)));
    }

    #[test]
    fn ending_input_completes_alignment() {
        let mut a = Aligner::new(2);
        assert_eq!(a.on_barrier(0, b(4)), Alignment::Waiting);
        assert_eq!(a.on_end(1), Alignment::Aligned(b(4)));
        assert_eq!(a.on_end(0), Alignment::Idle);
    }

    #[test]
    fn newer_barrier_overtakes_and_stale_one_is_ignored() {
        let mut a = Aligner::new(2);
        assert_eq!(a.on_barrier(0, b(1)), Alignment::Waiting);
        assert_eq!(a.on_barrier(1, b(2)), Alignment::Waiting);
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(0, b(1)), Alignment::Idle);
        assert_eq!(a.on_barrier(0, b(2)), Alignment::Aligned(b(2)));
    }

    #[test]
    fn single_input_aligns_at_once() {
        let mut a = Aligner::new(1);
        assert_eq!(a.on_barrier(0, b(9)), Alignment::Aligned(b(9)));
    }

    #[test]
    fn gates_are_per_input() {
        let (gates, handles) = AlignmentGates::new(2);
        let mut a = Aligner::new(2);
        assert_eq!(a.on_barrier(0, b(1)), Alignment::Waiting);
        gates.sync(&a);
        assert_eq!(handles[0].try_flush().ok(), Some(false));
        assert_eq!(handles[1].try_flush().ok(), Some(true));
        // A newer barrier on the other input abandons checkpoint 1: input 0's gate opens.
        assert_eq!(a.on_barrier(1, b(2)), Alignment::Waiting);
        gates.sync(&a);
        assert_eq!(handles[0].try_flush().ok(), Some(true));
        assert_eq!(handles[1].try_flush().ok(), Some(false));
        assert_eq!(a.on_barrier(0, b(2)), Alignment::Aligned(b(2)));
        gates.sync(&a);
        assert_eq!(handles[1].try_flush().ok(), Some(true));
    }
}
