//! `union`: several inputs of one type merged into one downstream chain.
//!
//! The inputs may be driven by different tasks of the shard (a local source and an exchange
//! inbox), so the downstream chain is shared through `Rc<RefCell<_>>`. Borrows never overlap:
//! pushes are synchronous and tasks interleave only at await points. End-of-input is passed on
//! once every input has ended; the watermark passed on is the minimum over the inputs.
//! Checkpoint barriers are aligned (see [`InputAlignment`]): what an input delivers after
//! barrier n is held, in order, until every other open input delivered n as well, then
//! replayed after the barrier was passed on.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::Push;
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::checkpoint::barrier::{Alignment, Held, InputAlignment};
use crate::error::Result;
use crate::runtime::task::Scheduler;
use crate::time::{Progress, WatermarkMerger};

struct Shared<T> {
    next: Box<dyn Push<T>>,
    open_inputs: usize,
    watermarks: WatermarkMerger,
    alignment: InputAlignment,
    /// Per input, what it delivered after the barrier in flight.
    held: Vec<VecDeque<Held<T>>>,
}

impl<T> Shared<T> {
    /// True if what `input` delivers now must wait behind the barrier in flight.
    #[inline]
    fn holds(&self, input: usize) -> bool {
        self.alignment.is_blocked(input) || self.held.get(input).is_some_and(|h| !h.is_empty())
    }

    fn hold(&mut self, input: usize, event: Held<T>) -> Result<()> {
        if let Some(queue) = self.held.get_mut(input) {
            queue.push_back(event);
        }
        self.alignment.pause_pusher(input);
        self.replay()
    }

    fn deliver(&mut self, input: usize, event: Held<T>) -> Result<()> {
        if self.holds(input) {
            return self.hold(input, event);
        }
        self.apply(input, event)
    }

    fn apply(&mut self, input: usize, event: Held<T>) -> Result<()> {
        match event {
            Held::Records(mut batch) => self.next.push(&mut batch),
            Held::Progress(progress) => match self.watermarks.update(input, progress) {
                Some(p) => self.next.progress(p),
                None => Ok(()),
            },
            Held::Barrier(barrier) => {
                let alignment = self.alignment.on_barrier(input, barrier);
                self.aligned(alignment)
            }
            Held::End => {
                // Decided before the replay below, which may end another input.
                self.open_inputs = self.open_inputs.saturating_sub(1);
                let last = self.open_inputs == 0;
                let alignment = self.alignment.on_end(input);
                self.aligned(alignment)?;
                if last { self.next.finish() } else { Ok(()) }
            }
        }
    }

    fn aligned(&mut self, alignment: Alignment) -> Result<()> {
        if let Alignment::Aligned(b) = alignment {
            self.next.barrier(b)?;
        }
        self.replay()
    }

    /// Replays held events of every input that is no longer blocked, in order per input,
    /// until nothing more can go (a replayed barrier may block its input again).
    fn replay(&mut self) -> Result<()> {
        if self.held.iter().all(VecDeque::is_empty) || !self.alignment.begin_replay() {
            return Ok(());
        }
        let result = (|| loop {
            let mut replayed = false;
            for input in 0..self.held.len() {
                while !self.alignment.is_blocked(input) {
                    let Some(event) = self.held.get_mut(input).and_then(VecDeque::pop_front) else {
                        break;
                    };
                    replayed = true;
                    self.apply(input, event)?;
                }
            }
            if !replayed {
                return Ok(());
            }
        })();
        self.alignment.end_replay();
        result
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
    let shared = Rc::new(RefCell::new(Shared {
        next,
        open_inputs: inputs,
        watermarks: WatermarkMerger::new(inputs),
        alignment: InputAlignment::new(inputs, scheduler),
        held: (0..inputs).map(|_| VecDeque::new()).collect(),
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
        let mut shared = self.shared.borrow_mut();
        if shared.holds(self.index) {
            return shared.hold(self.index, Held::records(batch));
        }
        shared.next.push(batch)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.shared
            .borrow_mut()
            .deliver(self.index, Held::Progress(progress))
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.shared
            .borrow_mut()
            .deliver(self.index, Held::Barrier(barrier))
    }

    fn finish(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        self.shared.borrow_mut().deliver(self.index, Held::End)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    /// What reached the union's downstream, in order.
    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Seen {
        Record(u32),
        Watermark(Timestamp),
        Barrier(u64),
        End,
    }

    struct Record(Rc<RefCell<Vec<Seen>>>);

    impl Push<u32> for Record {
        fn push(&mut self, batch: &mut Batch<u32>) -> Result<()> {
            let mut seen = self.0.borrow_mut();
            seen.extend(batch.records.drain(..).map(Seen::Record));
            Ok(())
        }
        fn progress(&mut self, progress: Progress) -> Result<()> {
            if let Progress::Watermark(w) = progress {
                self.0.borrow_mut().push(Seen::Watermark(w));
            }
            Ok(())
        }
        fn barrier(&mut self, barrier: Barrier) -> Result<()> {
            self.0.borrow_mut().push(Seen::Barrier(barrier.id));
            Ok(())
        }
        fn finish(&mut self) -> Result<()> {
            self.0.borrow_mut().push(Seen::End);
            Ok(())
        }
    }

    fn barrier(id: u64) -> Barrier {
        Barrier {
            id,
            savepoint: false,
        }
    }

    fn batch(records: &[u32]) -> Batch<u32> {
        Batch::from_records(records.to_vec())
    }

    fn union(inputs: usize) -> (Vec<UnionInput<u32>>, Rc<RefCell<Vec<Seen>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let scheduler = Rc::new(Scheduler::default());
        scheduler.new_task();
        let inputs = union_inputs(Box::new(Record(seen.clone())), inputs, scheduler);
        (inputs, seen)
    }

    /// An input fed by several tasks (the output of another union) keeps receiving records
    /// after its barrier, from the tasks that were not paused: they must reach the downstream
    /// only after the aligned barrier, or the snapshot would contain post-barrier records.
    #[test]
    fn records_after_an_inputs_barrier_wait_for_the_alignment() {
        let (mut inputs, seen) = union(2);
        inputs[0].push(&mut batch(&[1])).unwrap();
        inputs[0].barrier(barrier(7)).unwrap();
        inputs[0].push(&mut batch(&[2, 3])).unwrap();
        inputs[0].progress(Progress::Watermark(50)).unwrap();
        inputs[1].push(&mut batch(&[10])).unwrap();
        inputs[1].progress(Progress::Watermark(40)).unwrap();
        assert_eq!(
            *seen.borrow(),
            vec![Seen::Record(1), Seen::Record(10)],
            "nothing from input 0 may pass before the barrier is aligned"
        );
        inputs[1].barrier(barrier(7)).unwrap();
        inputs[1].push(&mut batch(&[11])).unwrap();
        assert_eq!(
            *seen.borrow(),
            vec![
                Seen::Record(1),
                Seen::Record(10),
                Seen::Barrier(7),
                Seen::Record(2),
                Seen::Record(3),
                Seen::Watermark(40),
                Seen::Record(11),
            ]
        );
    }

    /// A held barrier of the next checkpoint blocks its input again during the replay; the
    /// rest of that input stays held until the next alignment, and an end-of-input is held too.
    #[test]
    fn a_held_next_barrier_and_end_of_input_replay_in_order() {
        let (mut inputs, seen) = union(2);
        inputs[0].barrier(barrier(1)).unwrap();
        inputs[0].push(&mut batch(&[1])).unwrap();
        inputs[0].barrier(barrier(2)).unwrap();
        inputs[0].push(&mut batch(&[2])).unwrap();
        inputs[0].finish().unwrap();
        inputs[1].barrier(barrier(1)).unwrap();
        assert_eq!(
            *seen.borrow(),
            vec![Seen::Barrier(1), Seen::Record(1)],
            "after barrier 2 input 0 is held again"
        );
        inputs[1].push(&mut batch(&[5])).unwrap();
        inputs[1].barrier(barrier(2)).unwrap();
        inputs[1].finish().unwrap();
        assert_eq!(
            *seen.borrow(),
            vec![
                Seen::Barrier(1),
                Seen::Record(1),
                Seen::Record(5),
                Seen::Barrier(2),
                Seen::Record(2),
                Seen::End,
            ]
        );
    }
}
