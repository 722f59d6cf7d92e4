//! `WindowedStream`: a keyed stream cut into windows.

use std::hash::Hash;
use std::time::Duration;

use super::graph::per_shard;
use super::keyed::KeyedStream;
use super::stream::{OutputTag, Stream};
use crate::Data;
use crate::operator::{
    AggregateFunction, AlignedWindowOp, Buffer, EvictingBuffer, Incremental, LocalWindowCombiner,
    MergeWindowOp, SessionWindowOp, WindowFunction, WindowOp, WindowPartial, WindowResult,
    WindowSpec, is_aligned, is_plain_session,
};
use crate::runtime::{JobContext, ShardPart};
use crate::state::StateCodec;
use crate::time::{Timestamp, wall_clock_ms};
use crate::window::{
    EventTimeTrigger, Evictor, EvictorContext, TimestampedValue, Trigger, Window, WindowAssigner,
};

/// The name of every window operator's side output of late records.
pub const LATE_DATA: &str = "late";

/// A keyed stream with a window assigner: finish it with `aggregate`, `reduce` or `process`.
pub struct WindowedStream<T, K, KF, TF, Tr> {
    keyed: KeyedStream<T, K, KF>,
    timestamp_fn: TF,
    assigner: WindowAssigner,
    trigger: Tr,
    allowed_lateness: u64,
}

impl<T, K, KF> KeyedStream<T, K, KF>
where
    T: Data,
    K: Hash + Eq + Ord + Clone + Send + 'static,
    KF: FnMut(&T) -> K + Clone + Send + 'static,
{
    /// Cuts the keyed stream into the windows of `assigner`, with each record's event time
    /// given by `timestamp_fn`. Fires when the watermark passes a window's end
    /// (`EventTimeTrigger`) unless another trigger is set.
    pub fn window<TF>(
        &self,
        assigner: WindowAssigner,
        timestamp_fn: TF,
    ) -> WindowedStream<T, K, KF, TF, EventTimeTrigger>
    where
        TF: Fn(&T) -> Timestamp + Clone + Send + 'static,
    {
        WindowedStream {
            keyed: self.clone(),
            timestamp_fn,
            assigner,
            trigger: EventTimeTrigger,
            allowed_lateness: 0,
        }
    }
}

impl<T, K, KF, TF, Tr> WindowedStream<T, K, KF, TF, Tr>
where
    T: Data,
    K: Hash + Eq + Ord + Clone + Send + 'static,
    KF: FnMut(&T) -> K + Clone + Send + 'static,
    TF: Fn(&T) -> Timestamp + Clone + Send + 'static,
    Tr: Trigger<T> + Clone + Send + 'static,
{
    /// Replaces the trigger (when windows fire and purge).
    pub fn trigger<Tr2: Trigger<T> + Clone + Send + 'static>(
        self,
        trigger: Tr2,
    ) -> WindowedStream<T, K, KF, TF, Tr2> {
        WindowedStream {
            keyed: self.keyed,
            timestamp_fn: self.timestamp_fn,
            assigner: self.assigner,
            trigger,
            allowed_lateness: self.allowed_lateness,
        }
    }

    /// Keeps windows for `lateness` after the watermark passed their end: records arriving
    /// in that time update and re-fire the window; later ones go to the late side output.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = u64::try_from(lateness.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// The tag of the late records' side output: `result.side_output(&windowed.late_data())`.
    pub fn late_data(&self) -> OutputTag<T> {
        OutputTag::new(LATE_DATA)
    }

    /// Incremental aggregation per key and window; emits the result when the window fires.
    pub fn aggregate<A>(&self, agg: A) -> Stream<WindowResult<K, A::Out>>
    where
        K: StateCodec,
        A: AggregateFunction<T>,
        A::Acc: StateCodec,
        A::Out: Data,
    {
        self.build(
            "window-aggregate",
            Incremental(agg.clone()),
            move |key: &K,
                  window: &Window,
                  acc: &mut A::Acc,
                  _watermark: Timestamp,
                  out: &mut Vec<WindowResult<K, A::Out>>| {
                out.push(WindowResult {
                    key: key.clone(),
                    window: *window,
                    value: agg.get_result(acc),
                })
            },
        )
    }

    /// `aggregate` in two phases (local-global, for skewed keys): each sending shard folds its
    /// records into per-(key, window) accumulators *before* the key-by exchange and sends only
    /// those partials when its watermark passes a window's end (and at every checkpoint
    /// barrier); the key's shard merges them with `AggregateFunction::merge` and fires.
    /// Results, their order and lateness are those of `aggregate`. A hot key then costs one
    /// exchanged partial per shard and window, not one record per event.
    ///
    /// Only for aligned windows (tumbling or sliding, event time, default trigger) on the heap
    /// backend; any other window, or a job on the LSM backend (whose one-phase operator keeps
    /// windows in the store), falls back to `aggregate`. Difference: late records (a timestamp
    /// no window can hold, or a window already cleaned up) are counted, but the late side
    /// output carries the merging stage's late partials, not records.
    pub fn aggregate_two_phase<A>(&self, agg: A) -> Stream<WindowResult<K, A::Out>>
    where
        K: StateCodec,
        A: AggregateFunction<T>,
        A::Acc: StateCodec + Data,
        A::Out: Data,
    {
        // On the LSM backend the one-phase operator keeps the windows in the job's store; the
        // merge stage here keeps them on the heap.
        if !is_aligned(&self.assigner, &self.trigger)
            || !self.assigner.is_event_time()
            || self.keyed.unpartitioned().env.uses_lsm()
        {
            return self.aggregate(agg);
        }
        let (key_fn, timestamp_fn, assigner) = (
            self.keyed.key_fn(),
            self.timestamp_fn.clone(),
            self.assigner,
        );
        let local_agg = agg.clone();
        let partials = self
            .keyed
            .unpartitioned()
            .unary("window-combine", move |out, ctx| {
                LocalWindowCombiner::new(key_fn, timestamp_fn, assigner, local_agg, out, ctx)
            })
            .key_by(|p: &WindowPartial<K, A::Acc>| p.key.clone())
            .partitioned();
        let input_node = partials.node;
        let lateness = self.allowed_lateness;
        let mut graph = partials.env.graph.borrow_mut();
        let id = graph.next_id();
        let node = graph.add(
            "window-merge",
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let agg = agg.clone();
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<WindowResult<K, A::Out>>(id)?;
                        let late = b.take_side_output::<WindowPartial<K, A::Acc>>(id, LATE_DATA)?;
                        let ctx = b.operator_ctx(id);
                        let op = MergeWindowOp::<K, T, A>::new(agg, lateness, out, late, ctx)?;
                        b.add_input::<WindowPartial<K, A::Acc>>(input_node, Box::new(op));
                        Ok(())
                    });
                    part
                })
            }),
        );
        drop(graph);
        Stream::new(partials.env.clone(), node)
    }

    /// Reduces each key's records per window with `f(acc, record)`.
    pub fn reduce<F>(&self, f: F) -> Stream<WindowResult<K, T>>
    where
        K: StateCodec,
        T: StateCodec,
        F: Fn(&mut T, T) + Clone + Send + 'static,
    {
        self.aggregate(ReduceAggregate(f))
    }

    /// Full-window processing: `f(key, window, records, out)` sees every record of the window
    /// when it fires.
    pub fn process<Out, F>(&self, f: F) -> Stream<Out>
    where
        K: StateCodec,
        T: StateCodec,
        Out: Data,
        F: FnMut(&K, &Window, &[T], &mut Vec<Out>) + Clone + Send + 'static,
    {
        let mut f = f;
        self.build(
            "window-process",
            Buffer,
            move |key: &K,
                  window: &Window,
                  records: &mut Vec<T>,
                  _watermark: Timestamp,
                  out: &mut Vec<Out>| { f(key, window, records, out) },
        )
    }

    /// Full-window processing with an evictor: `evictor` removes records before (and after)
    /// `f(key, window, records, out)` sees them; records come with their timestamps.
    pub fn evict_and_process<Out, E, F>(&self, evictor: E, f: F) -> Stream<Out>
    where
        K: StateCodec,
        T: StateCodec,
        Out: Data,
        E: Evictor<T> + Clone + Send + 'static,
        F: FnMut(&K, &Window, &[TimestampedValue<T>], &mut Vec<Out>) + Clone + Send + 'static,
    {
        let mut f = f;
        self.build(
            "window-evict-process",
            EvictingBuffer,
            move |key: &K,
                  window: &Window,
                  records: &mut Vec<TimestampedValue<T>>,
                  watermark: Timestamp,
                  out: &mut Vec<Out>| {
                let ctx = EvictorContext {
                    watermark,
                    processing_time: wall_clock_ms(),
                };
                evictor.evict_before(records, window, &ctx);
                f(key, window, records, out);
                evictor.evict_after(records, window, &ctx);
            },
        )
    }

    fn build<C, WF, Out>(&self, name: &str, contents: C, function: WF) -> Stream<Out>
    where
        Out: Data,
        K: StateCodec,
        C: crate::operator::WindowContents<T>,
        C::Acc: StateCodec,
        WF: WindowFunction<K, C::Acc, Out>,
    {
        let input = self.keyed.partitioned();
        let spec = WindowSpec {
            key_fn: self.keyed.key_fn(),
            timestamp_fn: self.timestamp_fn.clone(),
            assigner: self.assigner,
            trigger: self.trigger.clone(),
            contents,
            function,
            allowed_lateness: self.allowed_lateness,
        };
        let mut graph = input.env.graph.borrow_mut();
        if self.assigner.is_merging() && !self.trigger.can_merge() {
            graph
                .errors
                .push(format!("{name}: the trigger cannot merge session windows"));
        }
        let input_node = input.node;
        let max_parallelism = input.env.max_parallelism();
        let id = graph.next_id();
        let aligned = is_aligned(&self.assigner, &self.trigger);
        let session = is_plain_session(&self.assigner, &self.trigger, self.allowed_lateness);
        let node = graph.add(
            name,
            Box::new(move |ctx: &JobContext| {
                per_shard(ctx, |_| {
                    let spec = spec.clone();
                    let part: ShardPart = Box::new(move |b| {
                        let out = b.take_output::<Out>(id)?;
                        let late = b.take_side_output::<T>(id, LATE_DATA)?;
                        let ctx = b.operator_ctx(id);
                        // Aligned windows and plain sessions have operators of their own on
                        // the heap; the general one serves every other case and keeps its
                        // state in the job's LSM store when there is one.
                        let own_backend = ctx.has_state_backend();
                        let op: Box<dyn crate::operator::Push<T>> = if aligned && !own_backend {
                            Box::new(AlignedWindowOp::new(spec, out, late, ctx)?)
                        } else if session && !own_backend {
                            Box::new(SessionWindowOp::new(spec, out, late, ctx)?)
                        } else {
                            Box::new(WindowOp::new(spec, out, late, ctx, max_parallelism)?)
                        };
                        b.add_input::<T>(input_node, op);
                        Ok(())
                    });
                    part
                })
            }),
        );
        // Its windows live in the job's state backend, opened per shard before the run.
        graph.keyed_state.push(node);
        drop(graph);
        Stream::new(input.env.clone(), node)
    }
}

/// `reduce` as an aggregation whose accumulator is the reduced record so far.
#[derive(Clone)]
struct ReduceAggregate<F>(F);

impl<T: Data, F: Fn(&mut T, T) + Clone + Send + 'static> AggregateFunction<T>
    for ReduceAggregate<F>
{
    type Acc = Option<T>;
    type Out = T;

    fn create_accumulator(&self) -> Option<T> {
        None
    }

    fn add(&mut self, acc: &mut Option<T>, value: T) {
        match acc {
            Some(a) => (self.0)(a, value),
            None => *acc = Some(value),
        }
    }

    fn get_result(&self, acc: &Option<T>) -> T {
        // A window fires only after a record was added, so the accumulator is set; the
        // aggregate API has no way to skip a result, hence the explicit match.
        match acc {
            Some(v) => v.clone(),
            None => unreachable_empty_window(),
        }
    }

    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        match (acc.as_mut(), other) {
            (Some(a), Some(b)) => (self.0)(a, b),
            (None, Some(b)) => *acc = Some(b),
            (_, None) => {}
        }
    }
}

#[cold]
fn unreachable_empty_window<T>() -> T {
    panic!("a window fired without contents")
}
