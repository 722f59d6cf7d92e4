//! `KeyedStream`: a stream partitioned by key, with the per-key operators.

use std::hash::Hash;

use super::stream::Stream;
use crate::Data;
use crate::channel::exchange::KeyPartitioner;
use crate::key::KeyGroups;
use crate::operator::{
    AggregateFunction, AggregateOp, KeyedProcessFunction, KeyedProcessOp, ReduceOp,
};
use crate::state::StateCodec;

/// A stream whose records are routed by key: each key's records reach one shard, in the order
/// each upstream shard sent them.
#[derive(Clone)]
pub struct KeyedStream<T, K, KF> {
    stream: Stream<T>,
    key_fn: KF,
    _k: std::marker::PhantomData<fn() -> K>,
}

impl<T, K, KF> KeyedStream<T, K, KF>
where
    T: Data,
    K: Hash + Eq + Clone + Send + 'static,
    KF: FnMut(&T) -> K + Clone + Send + 'static,
{
    pub(crate) fn new(stream: Stream<T>, key_fn: KF) -> Self {
        KeyedStream {
            stream,
            key_fn,
            _k: std::marker::PhantomData,
        }
    }

    /// The stream before the key-by exchange.
    pub(crate) fn unpartitioned(&self) -> &Stream<T> {
        &self.stream
    }

    /// The key selector.
    pub(crate) fn key_fn(&self) -> KF {
        self.key_fn.clone()
    }

    /// The stream after the key-by exchange (each record on the shard owning its key).
    pub fn partitioned(&self) -> Stream<T> {
        let key_fn = self.key_fn.clone();
        self.stream.exchange("key_by", move |ctx, _| {
            KeyPartitioner::new(
                key_fn.clone(),
                KeyGroups {
                    max_parallelism: ctx.max_parallelism,
                    shards: ctx.shards,
                },
            )
        })
    }

    /// Rolling reduce: folds each record into its key's accumulator with `f(acc, record)` and
    /// emits the accumulator after every record. The first record of a key is its accumulator.
    pub fn reduce<F>(&self, f: F) -> Stream<T>
    where
        K: StateCodec,
        T: StateCodec,
        F: FnMut(&mut T, T) + Clone + Send + 'static,
    {
        let key_fn = self.key_fn.clone();
        self.partitioned()
            .unary_fallible("reduce", move |out, ctx| ReduceOp::new(key_fn, f, out, ctx))
    }

    /// Rolling aggregation: emits `(key, result)` after every record.
    pub fn aggregate<A>(&self, agg: A) -> Stream<(K, A::Out)>
    where
        K: StateCodec,
        A: AggregateFunction<T>,
        A::Acc: StateCodec,
        A::Out: Data,
    {
        let key_fn = self.key_fn.clone();
        self.partitioned()
            .unary_fallible("aggregate", move |out, ctx| {
                AggregateOp::new(key_fn, agg, out, ctx)
            })
    }

    /// Runs a keyed process function: it sees each record with its key, keyed state scoped
    /// to that key (`ctx.state()`), and event-time timers (`on_timer`).
    pub fn process<U: Data, P: KeyedProcessFunction<K, T, U>>(&self, f: P) -> Stream<U>
    where
        K: Ord + StateCodec,
    {
        let key_fn = self.key_fn.clone();
        let partitioned = self.partitioned();
        let max_parallelism = partitioned.env.max_parallelism();
        let stream = partitioned.unary_with_sides("process", move |out, ctx, sides| {
            KeyedProcessOp::new(key_fn, f, out, ctx, sides, max_parallelism)
        });
        // Its keyed state lives in the job's state backend, opened per shard before the run.
        stream.env.graph.borrow_mut().keyed_state.push(stream.node);
        stream
    }
}
