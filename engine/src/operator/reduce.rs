//! Rolling `reduce` per key: folds every record into its key's accumulator and emits the new
//! accumulator (Flink's `KeyedStream::reduce`).

use std::hash::Hash;

use super::{Push, guarded, restore_key_map, save_key_map};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::key::KeyMap;
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::Progress;

/// The operator behind `KeyedStream::reduce`.
pub struct ReduceOp<K, T, KF, F> {
    key_fn: KF,
    f: F,
    state: KeyMap<K, T>,
    out: Batch<T>,
    next: Box<dyn Push<T>>,
    ctx: OperatorCtx,
}

impl<K, T, KF, F> ReduceOp<K, T, KF, F>
where
    K: Hash + Eq + StateCodec,
    T: Clone + StateCodec,
    KF: FnMut(&T) -> K,
    F: FnMut(&mut T, T),
{
    /// Restores the accumulators of this shard's key groups if the job resumes.
    pub fn new(key_fn: KF, f: F, next: Box<dyn Push<T>>, ctx: OperatorCtx) -> Result<Self> {
        Ok(ReduceOp {
            key_fn,
            f,
            state: restore_key_map(&ctx)?,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
        })
    }
}

impl<K, T, KF, F> Push<T> for ReduceOp<K, T, KF, F>
where
    K: Hash + Eq + StateCodec,
    T: Clone + StateCodec,
    KF: FnMut(&T) -> K,
    F: FnMut(&mut T, T),
{
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        let (key_fn, f, state, out) = (
            &mut self.key_fn,
            &mut self.f,
            &mut self.state,
            &mut self.out.records,
        );
        guarded(&self.ctx, || {
            for record in batch.records.drain(..) {
                let key = key_fn(&record);
                match state.get_mut(&key) {
                    Some(acc) => {
                        f(acc, record);
                        out.push(acc.clone());
                    }
                    None => {
                        out.push(record.clone());
                        state.insert(key, record);
                    }
                }
            }
        })?;
        self.out.ingest = batch.ingest;
        self.next.push(&mut self.out)
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        save_key_map(&self.ctx, barrier, &self.state)?;
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.next.finish()
    }
}
