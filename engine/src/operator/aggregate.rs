//! Rolling `aggregate` per key with an accumulator type distinct from the records.

use std::hash::Hash;

use super::{Push, guarded, restore_key_map, save_key_map};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::key::KeyMap;
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::Progress;

/// An incremental aggregation (Flink's `AggregateFunction`): records are folded into an
/// accumulator, and the result is read from the accumulator.
pub trait AggregateFunction<T>: Clone + Send + 'static {
    /// The running state of one key.
    type Acc;
    /// What is emitted for a key after each update.
    type Out;
    /// A fresh accumulator for a key seen for the first time.
    fn create_accumulator(&self) -> Self::Acc;
    /// Folds one record into the accumulator.
    fn add(&mut self, acc: &mut Self::Acc, value: T);
    /// The current result of an accumulator.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// Folds `other` into `acc`: session windows merge their accumulators.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
}

/// The operator behind `KeyedStream::aggregate`: emits `(key, result)` after every record.
pub struct AggregateOp<K, T, KF, A: AggregateFunction<T>> {
    key_fn: KF,
    agg: A,
    state: KeyMap<K, A::Acc>,
    out: Batch<(K, A::Out)>,
    next: Box<dyn Push<(K, A::Out)>>,
    ctx: OperatorCtx,
}

impl<K, T, KF, A> AggregateOp<K, T, KF, A>
where
    K: Hash + Eq + Clone + StateCodec,
    KF: FnMut(&T) -> K,
    A: AggregateFunction<T>,
    A::Acc: StateCodec,
{
    /// Restores the accumulators of this shard's key groups if the job resumes.
    pub fn new(
        key_fn: KF,
        agg: A,
        next: Box<dyn Push<(K, A::Out)>>,
        ctx: OperatorCtx,
    ) -> Result<Self> {
        Ok(AggregateOp {
            key_fn,
            agg,
            state: restore_key_map(&ctx)?,
            out: Batch::with_capacity(ctx.batch_size),
            next,
            ctx,
        })
    }
}

impl<K, T, KF, A> Push<T> for AggregateOp<K, T, KF, A>
where
    K: Hash + Eq + Clone + StateCodec,
    KF: FnMut(&T) -> K,
    A: AggregateFunction<T>,
    A::Acc: StateCodec,
{
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        let (key_fn, agg, state, out) = (
            &mut self.key_fn,
            &mut self.agg,
            &mut self.state,
            &mut self.out.records,
        );
        guarded(&self.ctx, || {
            for record in batch.records.drain(..) {
                let key = key_fn(&record);
                let acc = match state.get_mut(&key) {
                    Some(acc) => acc,
                    None => state
                        .entry(key.clone())
                        .or_insert_with(|| agg.create_accumulator()),
                };
                agg.add(acc, record);
                out.push((key, agg.get_result(acc)));
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
