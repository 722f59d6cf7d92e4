//! # Weir
//!
//! A stream and batch processing engine built thread-per-core: one pinned glommio executor per
//! CPU, each owning a key-range shard of every operator and its state, shared nothing. Records
//! cross shards in batches through lock-free SPSC rings; within a shard, operators are chained
//! by direct calls.
//!
//! Start with [`Env`]: build a job from sources and transformations, add a sink, `execute`.

pub mod api;
pub mod batch;
pub mod changelog;
pub mod channel;
pub mod checkpoint;
pub mod dense;
pub mod error;
pub mod id_map;
pub mod key;
pub mod nexmark;
pub mod operator;
pub mod runtime;
pub mod segmented;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
pub mod vec_pool;
pub mod window;

pub use api::{Env, EnvBuilder, KeyedStream, OutputTag, Stream};
pub use changelog::Change;
pub use error::{Result, WeirError};
pub use operator::{
    AggregateFunction, KeyedCoProcessFunction, KeyedProcessFunction, ProcessContext,
    ProcessFunction,
};
pub use runtime::{JobResult, OperatorStats, ShardInfo};
pub use sink::{
    CollectSink, CountSink, Csv, CsvRecord, FileSink, JsonLines, JsonRecord, PartitionedFileSink,
    RollingFileSink, RollingPolicy, Sink, SinkWriter, StdoutSink, TableSink,
};
pub use source::{Source, SourceReader, SourceStatus, VecSource};
pub use time::{Progress, Timestamp, WatermarkGenerator, WatermarkStrategy};

/// What records must be to flow through a job: cloneable (for fan-out and broadcast) and
/// sendable between shards.
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}

/// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
