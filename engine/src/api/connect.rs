//! Connected streams: two keyed streams with the same key type, processed together.

use std::hash::Hash;

use super::graph::per_shard;
use super::keyed::KeyedStream;
use super::stream::Stream;
use crate::Data;
use crate::operator::{KeyedCoProcessFunction, keyed_co_process};
use crate::runtime::{JobContext, ShardPart};
use crate::state::StateCodec;

/// Two keyed streams whose records with equal keys meet on the same shard.
pub struct ConnectedKeyedStreams<A, B, K, KA, KB> {
    left: KeyedStream<A, K, KA>,
    right: KeyedStream<B, K, KB>,
}

impl<A, K, KA> KeyedStream<A, K, KA>
where
    A: Data,
    K: Hash + Eq + Clone + Send + 'static,
    KA: FnMut(&A) -> K + Clone + Send + 'static,
{
    /// Connects this keyed stream with `other` (same key type) for a co-process function:
    /// the way to write joins.
    pub fn connect<B, KB>(
        &self,
        other: &KeyedStream<B, K, KB>,
    ) -> ConnectedKeyedStreams<A, B, K, KA, KB>
    where
        B: Data,
        KB: FnMut(&B) -> K + Clone + Send + 'static,
    {
        ConnectedKeyedStreams {
            left: self.clone(),
            right: other.clone(),
        }
    }
}

impl<A, B, K, KA, KB> ConnectedKeyedStreams<A, B, K, KA, KB>
where
    A: Data,
    B: Data,
    K: Hash + Eq + Clone + Send + 'static,
    KA: FnMut(&A) -> K + Clone + Send + 'static,
    KB: FnMut(&B) -> K + Clone + Send + 'static,
{
    /// Runs `f` over both inputs, each record with its key (and keyed state through
    /// `ctx.state()`, in the job's state backend).
    pub fn process<Out: Data, F: KeyedCoProcessFunction<K, A, B, Out>>(&self, f: F) -> Stream<Out>
    where
        K: Ord + StateCodec,
    {
        let left = self.left.partitioned();
        let right = self.right.partitioned();
        let (left_node, right_node) = (left.node, right.node);
        let key_left = self.left.key_fn();
        let key_right = self.right.key_fn();
        let env = left.env.clone();
        let mut graph = env.graph.borrow_mut();
        if !std::rc::Rc::ptr_eq(&left.env.graph, &right.env.graph) {
            graph
                .errors
                .push("connect of streams from different environments".into());
        }
        let id = graph.next_id();
        let max_parallelism = env.max_parallelism();
        let node = graph.add(
            "co-process",
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let (key_left, key_right, f) = (key_left.clone(), key_right.clone(), f.clone());
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<Out>(id)?;
                        let sides = b.take_side_channels(id);
                        let (l, r) = keyed_co_process(
                            (key_left, key_right),
                            f,
                            out,
                            sides,
                            b.operator_ctx(id),
                            b.scheduler.clone(),
                            max_parallelism,
                        )?;
                        b.add_input::<A>(left_node, Box::new(l));
                        b.add_input::<B>(right_node, Box::new(r));
                        Ok(())
                    });
                    part
                })
            }),
        );
        graph.keyed_state.push(node);
        drop(graph);
        Stream::new(env, node)
    }
}
