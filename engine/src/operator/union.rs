//! `union`: several inputs of one type merged into one downstream chain.
//!
//! The inputs may be driven by different tasks of the shard (a local source and an exchange
//! inbox), so the downstream chain is shared through `Rc<RefCell<_>>`. Borrows never overlap:
//! pushes are synchronous and tasks interleave only at await points. End-of-input is passed on
//! once every input has ended; the watermark passed on is the minimum over the inputs.
//! Checkpoint barriers are aligned: an input that delivered barrier n pauses the task feeding
//! it (through an `AlignmentGate`) until every other open input delivered n as well.

use std::cell::RefCell;
use std::rc::Rc;

use super::Push;
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::checkpoint::barrier::{Aligner, Alignment, AlignmentGates};
use crate::error::Result;
use crate::runtime::task::{Pending, Scheduler};
use crate::time::{Progress, WatermarkMerger};

struct Shared<T> {
    next: Box<dyn Push<T>>,
    open_inputs: usize,
    watermarks: WatermarkMerger,
    aligner: Aligner,
    gates: Rc<AlignmentGates>,
    gate_handles: Vec<Rc<dyn Pending>>,
    scheduler: Rc<Scheduler>,
}

impl<T> Shared<T> {
    fn aligned(&mut self, alignment: Alignment) -> Result<()> {
        match alignment {
            Alignment::Aligned(b) => {
                self.gates.open_all();
                self.next.barrier(b)
            }
            Alignment::Waiting | Alignment::Idle => Ok(()),
        }
    }
}

/// One input of a union.
pub struct UnionInput<T> {
    shared: Rc<RefCell<Shared<T>>>,
    index: usize,
    finished: bool,
}

/// Creates `inputs` union inputs that all feed `next`.
pub(crate) fn union_inputs<T>(
    next: Box<dyn Push<T>>,
    inputs: usize,
    scheduler: Rc<Scheduler>,
) -> Vec<UnionInput<T>> {
    let (gates, gate_handles) = AlignmentGates::new(inputs);
    let shared = Rc::new(RefCell::new(Shared {
        next,
        open_inputs: inputs,
        watermarks: WatermarkMerger::new(inputs),
        aligner: Aligner::new(inputs),
        gates,
        gate_handles,
        scheduler,
    }));
    (0..inputs)
        .map(|index| UnionInput {
            shared: shared.clone(),
            index,
            finished: false,
        })
        .collect()
}

impl<T> Push<T> for UnionInput<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.shared.borrow_mut().next.push(batch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        let mut shared = self.shared.borrow_mut();
        match shared.watermarks.update(self.index, progress) {
            Some(p) => shared.next.progress(p),
            None => Ok(()),
        }
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let mut shared = self.shared.borrow_mut();
        let alignment = shared.aligner.on_barrier(self.index, barrier);
        if alignment == Alignment::Waiting {
            // The task feeding this input waits until the other inputs caught up.
            shared.gates.close(self.index);
            if let Some(gate) = shared.gate_handles.get(self.index) {
                shared.scheduler.block_current(gate.clone());
            }
        }
        shared.aligned(alignment)
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut shared = self.shared.borrow_mut();
        shared.open_inputs -= 1;
        let alignment = shared.aligner.on_end(self.index);
        shared.aligned(alignment)?;
        if shared.open_inputs == 0 {
            shared.next.finish()
        } else {
            Ok(())
        }
    }
}
