//! `Stream<T>`: a typed handle on one node's output, with the transformations on it.

use std::marker::PhantomData;
use std::rc::Rc;

use super::env::Env;
use super::graph::{OutputFile, per_shard};
use super::keyed::KeyedStream;
use crate::Data;
use crate::channel::exchange::{Broadcast, Global, Outbox, Partitioner, RoundRobin, run_inbox};
use crate::channel::spsc;
use crate::operator::{
    FilterOp, FlatMapOp, MapOp, ProcessFunction, ProcessOp, Push, SideOutputs, union_inputs,
};
use crate::runtime::{JobContext, OperatorCtx, ShardBuilder, ShardPart};
use crate::sink::{CollectSink, CountSink, Sink, SinkParallelism, SinkPush, StdoutSink};
use crate::vec_pool::VecPool;

/// Names a side output of type `T` (Flink's `OutputTag`).
pub struct OutputTag<T> {
    pub(crate) name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag {
            name: self.name.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> OutputTag<T> {
    /// A tag called `name` (unique per operator).
    pub fn new(name: &str) -> Self {
        OutputTag {
            name: name.to_string(),
            _t: PhantomData,
        }
    }

    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A stream of records of type `T`.
pub struct Stream<T> {
    pub(crate) env: Env,
    pub(crate) node: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            env: self.env.clone(),
            node: self.node,
            _t: PhantomData,
        }
    }
}

impl<T: Data> Stream<T> {
    pub(crate) fn new(env: Env, node: usize) -> Self {
        Stream {
            env,
            node,
            _t: PhantomData,
        }
    }

    /// Renames the operator that produces this stream (names appear in `JobResult` and errors).
    pub fn name(self, name: &str) -> Self {
        if let Some(node) = self.env.graph.borrow_mut().nodes.get_mut(self.node) {
            node.name = name.to_string();
        }
        self
    }

    /// Adds a one-input operator chained to this stream (forward edge: a direct call).
    pub(crate) fn unary<U: Data, Op, M>(&self, name: &str, make: M) -> Stream<U>
    where
        Op: Push<T> + 'static,
        M: FnOnce(Box<dyn Push<U>>, OperatorCtx) -> Op + Clone + Send + 'static,
    {
        self.unary_fallible(name, move |out, ctx| Ok(make(out, ctx)))
    }

    /// Like `unary`, for operators whose creation can fail (an error fails the job at start).
    pub(crate) fn unary_fallible<U: Data, Op, M>(&self, name: &str, make: M) -> Stream<U>
    where
        Op: Push<T> + 'static,
        M: FnOnce(Box<dyn Push<U>>, OperatorCtx) -> crate::error::Result<Op>
            + Clone
            + Send
            + 'static,
    {
        self.add_unary(name, move |out, b, id| make(out, b.operator_ctx(id)))
    }

    /// Like `unary_fallible`, for operators with side outputs (`Stream::side_output`).
    pub(crate) fn unary_with_sides<U: Data, Op, M>(&self, name: &str, make: M) -> Stream<U>
    where
        Op: Push<T> + 'static,
        M: FnOnce(Box<dyn Push<U>>, OperatorCtx, SideOutputs) -> crate::error::Result<Op>
            + Clone
            + Send
            + 'static,
    {
        self.add_unary(name, move |out, b, id| {
            let sides = b.take_side_channels(id);
            make(out, b.operator_ctx(id), sides)
        })
    }

    /// Adds a node with this stream as its one input; `make(output, builder, node id)` builds
    /// the operator on each shard.
    fn add_unary<U: Data, Op, M>(&self, name: &str, make: M) -> Stream<U>
    where
        Op: Push<T> + 'static,
        M: FnOnce(Box<dyn Push<U>>, &mut ShardBuilder, usize) -> crate::error::Result<Op>
            + Clone
            + Send
            + 'static,
    {
        let input = self.node;
        let mut graph = self.env.graph.borrow_mut();
        let id = graph.next_id();
        let node = graph.add(
            name,
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let make = make.clone();
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<U>(id)?;
                        let op = make(out, b, id)?;
                        b.add_input::<T>(input, Box::new(op));
                        Ok(())
                    });
                    part
                })
            }),
        );
        drop(graph);
        Stream::new(self.env.clone(), node)
    }

    /// Adds an exchange: records move to the shards `partitioner` picks.
    pub(crate) fn exchange<P, MP>(&self, name: &str, make_partitioner: MP) -> Stream<T>
    where
        P: Partitioner<T> + Send,
        MP: Fn(&JobContext, usize) -> P + 'static,
    {
        let input = self.node;
        let mut graph = self.env.graph.borrow_mut();
        let id = graph.next_id();
        let node = graph.add(
            name,
            Box::new(move |ctx: &JobContext| {
                let n = ctx.shards;
                let mut senders: Vec<Vec<_>> = (0..n).map(|_| Vec::with_capacity(n)).collect();
                let mut receivers: Vec<Vec<_>> = (0..n).map(|_| Vec::with_capacity(n)).collect();
                for row in senders.iter_mut() {
                    for col in receivers.iter_mut() {
                        let (tx, rx) = spsc::channel(ctx.queue_capacity);
                        row.push(tx);
                        col.push(rx);
                    }
                }
                let mut parts: Vec<ShardPart> = Vec::with_capacity(n);
                for (shard, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
                    let partitioner = make_partitioner(ctx, shard);
                    parts.push(Box::new(move |b| {
                        let out = b.take_output::<T>(id)?;
                        // Enough for a batch per destination in flight both ways.
                        let ctx = b.operator_ctx(id);
                        let pool = Rc::new(VecPool::new(4 * ctx.batch_size, 4 * n));
                        let inbox = run_inbox(
                            rx,
                            out,
                            pool.clone(),
                            b.scheduler.clone(),
                            ctx,
                            b.cancel.clone(),
                        );
                        b.spawn(Box::pin(inbox));
                        let outbox = Outbox::new(
                            tx,
                            partitioner,
                            pool,
                            b.scheduler.clone(),
                            b.operator_ctx(id),
                        );
                        b.add_input::<T>(input, Box::new(outbox));
                        Ok(())
                    }));
                }
                Ok(parts)
            }),
        );
        drop(graph);
        Stream::new(self.env.clone(), node)
    }

    /// Applies `f` to every record.
    pub fn map<U: Data, F>(&self, f: F) -> Stream<U>
    where
        F: FnMut(T) -> U + Clone + Send + 'static,
    {
        self.unary("map", move |out, ctx| MapOp::new(f, out, ctx))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(&self, f: F) -> Stream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + 'static,
    {
        self.unary("filter", move |out, ctx| FilterOp::new(f, out, ctx))
    }

    /// Replaces every record by the records `f` returns (none, one or many).
    pub fn flat_map<U: Data, I, F>(&self, f: F) -> Stream<U>
    where
        I: IntoIterator<Item = U> + 'static,
        F: FnMut(T) -> I + Clone + Send + 'static,
    {
        self.unary("flat_map", move |out, ctx| FlatMapOp::new(f, out, ctx))
    }

    /// Runs a process function over every record of this shard; it may emit to side outputs
    /// (`ctx.output`), read with `side_output` on the result.
    pub fn process<U: Data, P: ProcessFunction<T, U>>(&self, f: P) -> Stream<U> {
        self.unary_with_sides("process", move |out, ctx, sides| {
            ProcessOp::new(f, out, ctx, sides)
        })
    }

    /// Partitions the stream by `key_fn`: records with equal keys go to the same shard.
    pub fn key_by<K, KF>(&self, key_fn: KF) -> KeyedStream<T, K, KF>
    where
        K: std::hash::Hash + Eq + Clone + Send + 'static,
        KF: FnMut(&T) -> K + Clone + Send + 'static,
    {
        KeyedStream::new(self.clone(), key_fn)
    }

    /// Deals whole batches round robin over all shards (evens out skew).
    pub fn rebalance(&self) -> Stream<T> {
        self.exchange("rebalance", |_, shard| RoundRobin::starting_at(shard))
    }

    /// Sends every record to every shard.
    pub fn broadcast(&self) -> Stream<T> {
        self.exchange("broadcast", |_, _| Broadcast)
    }

    /// Sends every record to shard 0.
    pub fn global(&self) -> Stream<T> {
        self.exchange("global", |_, _| Global)
    }

    /// Merges this stream with `other` (same record type).
    pub fn union(&self, other: &Stream<T>) -> Stream<T> {
        self.union_all(std::slice::from_ref(other))
    }

    /// Merges this stream with all of `others`.
    pub fn union_all(&self, others: &[Stream<T>]) -> Stream<T> {
        let mut inputs = vec![self.node];
        let mut graph = self.env.graph.borrow_mut();
        for o in others {
            if !Rc::ptr_eq(&o.env.graph, &self.env.graph) {
                graph
                    .errors
                    .push("union of streams from different environments".into());
                continue;
            }
            inputs.push(o.node);
        }
        let id = graph.next_id();
        let node = graph.add(
            "union",
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let inputs = inputs.clone();
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<T>(id)?;
                        for (input, push) in
                            inputs
                                .iter()
                                .zip(union_inputs(out, inputs.len(), b.scheduler.clone()))
                        {
                            b.add_input::<T>(*input, Box::new(push));
                        }
                        Ok(())
                    });
                    part
                })
            }),
        );
        drop(graph);
        Stream::new(self.env.clone(), node)
    }

    /// Writes the stream to `sink`. A single-instance sink gets every record routed to shard 0.
    pub fn sink<S: Sink<T>>(&self, sink: S) {
        // The global edge exists at one shard too, so the graph (and a checkpoint of it) does
        // not depend on the shard count: a savepoint can be resumed at another one.
        let input = if sink.parallelism() == SinkParallelism::Single {
            self.global().node
        } else {
            self.node
        };
        let mut graph = self.env.graph.borrow_mut();
        graph.sinks += 1;
        let id = graph.next_id();
        if let Some(target) = sink.output_target() {
            graph.outputs.push(OutputFile { sink: id, target });
        }
        graph.add(
            "sink",
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |shard| {
                    let sink = sink.clone();
                    let part: ShardPart = Box::new(move |b| {
                        if sink.parallelism() == SinkParallelism::Single && shard != 0 {
                            let discard = b.discard();
                            b.add_input::<T>(input, Box::new(discard));
                            return Ok(());
                        }
                        if let (true, Some(why)) =
                            (b.checkpoints.enabled(), sink.checkpoint_refusal())
                        {
                            return Err(crate::error::WeirError::Config(format!(
                                "sink `{}` cannot run in a checkpointed job: {why}",
                                b.names.get(id).map(String::as_str).unwrap_or("?")
                            )));
                        }
                        let writer = sink.create_writer(&b.info)?;
                        let two_phase = sink.output_target().is_some();
                        let push = SinkPush::new(writer, b.operator_ctx(id), two_phase)?;
                        b.add_input::<T>(input, Box::new(push));
                        Ok(())
                    });
                    part
                })
            }),
        );
    }

    /// The side output `tag` of the operator producing this stream (late records of a window,
    /// for instance). Operators without that side output give an empty stream.
    pub fn side_output<S: Data>(&self, tag: &OutputTag<S>) -> Stream<S> {
        let input = self.node;
        let name = tag.name.clone();
        let mut graph = self.env.graph.borrow_mut();
        let id = graph.next_id();
        let node = graph.add(
            &format!("side:{}", tag.name),
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let name = name.clone();
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<S>(id)?;
                        b.add_side_input::<S>(input, &name, out);
                        Ok(())
                    });
                    part
                })
            }),
        );
        drop(graph);
        Stream::new(self.env.clone(), node)
    }

    /// Collects every record; read them with `CollectSink::take` after `execute`.
    pub fn collect(&self) -> CollectSink<T> {
        let sink = CollectSink::new();
        self.sink(sink.clone());
        sink
    }

    /// Counts the records; read the count with `CountSink::count` after `execute`.
    pub fn count(&self) -> CountSink {
        let sink = CountSink::new();
        self.sink(sink.clone());
        sink
    }

    /// Prints every record with `Debug`.
    pub fn print(&self)
    where
        T: std::fmt::Debug,
    {
        self.sink(StdoutSink);
    }
}
