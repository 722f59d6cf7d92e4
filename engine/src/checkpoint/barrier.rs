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
use crate::error::Result;
use crate::runtime::task::Pending;

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

    /// Closes input `input`'s gate: the task feeding it waits.
    pub fn close(&self, input: usize) {
        if let Some(c) = self.state.borrow_mut().closed.get_mut(input) {
            *c = true;
        }
    }

    /// Alignment completed: open every gate and wake the waiting tasks.
    pub fn open_all(&self) {
        let mut st = self.state.borrow_mut();
        st.closed.iter_mut().for_each(|c| *c = false);
        for w in st.wakers.drain(..) {
            w.wake();
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
        gates.close(0);
        assert_eq!(handles[0].try_flush().ok(), Some(false));
        assert_eq!(handles[1].try_flush().ok(), Some(true));
        gates.open_all();
        assert_eq!(handles[0].try_flush().ok(), Some(true));
    }
}
