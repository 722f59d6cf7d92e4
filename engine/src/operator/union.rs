//! `union`: several inputs of one type merged into one downstream chain.
//!
//! The inputs may be driven by different tasks of the shard (a local source and an exchange
//! inbox), so the downstream chain is shared through `Rc<RefCell<_>>`. Borrows never overlap:
//! pushes are synchronous and tasks interleave only at await points. End-of-input is passed on
//! once every input has ended; the watermark passed on is the minimum over the inputs.

use std::cell::RefCell;
use std::rc::Rc;

use super::Push;
use crate::batch::Batch;
use crate::error::Result;
use crate::time::{Progress, WatermarkMerger};

struct Shared<T> {
    next: Box<dyn Push<T>>,
    open_inputs: usize,
    watermarks: WatermarkMerger,
}

/// One input of a union.
pub struct UnionInput<T> {
    shared: Rc<RefCell<Shared<T>>>,
    index: usize,
    finished: bool,
}

/// Creates `inputs` union inputs that all feed `next`.
pub fn union_inputs<T>(next: Box<dyn Push<T>>, inputs: usize) -> Vec<UnionInput<T>> {
    let shared = Rc::new(RefCell::new(Shared {
        next,
        open_inputs: inputs,
        watermarks: WatermarkMerger::new(inputs),
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

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut shared = self.shared.borrow_mut();
        shared.open_inputs -= 1;
        if shared.open_inputs == 0 {
            shared.next.finish()
        } else {
            Ok(())
        }
    }
}
