//! Operators: what runs inside a shard.
//!
//! Operators on a forward edge are chained: each holds its downstream as a `Box<dyn Push<_>>`
//! and calls it directly with a whole batch (operator fusion: no queue, no copy of the batch
//! container). Dynamic dispatch happens once per batch; per record, user functions are called
//! through generics and inlined.

mod aggregate;
mod aligned_window;
mod basic;
mod connect;
mod dedup;
mod join;
mod process;
mod reduce;
mod session_window;
mod side;
mod topn;
mod two_phase;
mod union;
mod window;
mod window_emit;

pub use aggregate::{AggregateFunction, AggregateOp};
pub use aligned_window::AlignedWindowOp;
pub(crate) use aligned_window::is_aligned;
pub use basic::{Discard, FilterOp, FlatMapOp, MapOp, Tee};
pub(crate) use connect::keyed_co_process;
pub use connect::{CoLeft, CoRight, KeyedCoProcessFunction};
pub use dedup::{Deduplicate, Keep};
pub use join::{IntervalJoin, RegularJoin, WindowJoin};
pub use process::{
    KeyedProcessFunction, KeyedProcessOp, ProcessContext, ProcessFunction, ProcessOp,
};
pub use reduce::ReduceOp;
pub use session_window::SessionWindowOp;
pub(crate) use session_window::is_plain_session;
pub(crate) use side::TypedSide;
pub use side::{SideChannel, SideOutputs};
pub use topn::TopN;
pub use two_phase::{LocalWindowCombiner, MergeWindowOp, WindowPartial};
pub use union::UnionInput;
pub(crate) use union::union_inputs;
pub use window::{
    Buffer, EvictingBuffer, Incremental, WindowContents, WindowFunction, WindowOp, WindowResult,
    WindowSpec,
};

use std::hash::Hash;

use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::{Result, WeirError};
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::Progress;

/// The receiving end of a chained edge.
pub trait Push<T> {
    /// Processes every record of `batch`, taking them out of it (the batch is left empty,
    /// its capacity kept for reuse by the caller).
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()>;

    /// Processes a copy of every record of `batch`, leaving `batch` as it is: what a fan-out
    /// (`Tee`) calls for every consumer but the last. The default copies the batch into
    /// `scratch` and pushes that. Operators that read records one at a time (map, filter,
    /// flat_map) copy each record as they take it instead, so a consumer that keeps few
    /// records copies only those: q8's person and auction filters keep 8% of the events, and
    /// used to copy every 80-byte event of every batch first.
    fn push_shared(&mut self, batch: &Batch<T>, scratch: &mut Batch<T>) -> Result<()>
    where
        T: Clone,
    {
        scratch.records.clear();
        scratch.records.extend_from_slice(&batch.records);
        scratch.ingest = batch.ingest;
        self.push(scratch)
    }

    /// Event-time progress on this path: pass it on (operators with timers fire them first).
    fn progress(&mut self, progress: Progress) -> Result<()>;

    /// Checkpoint barrier on this path: operators with several inputs align it, stateful ones
    /// snapshot, every one passes it on; sinks and exchanges are where it leaves the shard's
    /// chain (see `checkpoint::shard`).
    fn barrier(&mut self, barrier: Barrier) -> Result<()>;

    /// End of input on this path: flush what is buffered and pass the end on.
    fn finish(&mut self) -> Result<()>;
}

impl<T> Push<T> for Box<dyn Push<T>> {
    #[inline]
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        (**self).push(batch)
    }

    #[inline]
    fn push_shared(&mut self, batch: &Batch<T>, scratch: &mut Batch<T>) -> Result<()>
    where
        T: Clone,
    {
        (**self).push_shared(batch, scratch)
    }

    #[inline]
    fn progress(&mut self, progress: Progress) -> Result<()> {
        (**self).progress(progress)
    }

    #[inline]
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        (**self).barrier(barrier)
    }

    #[inline]
    fn finish(&mut self) -> Result<()> {
        (**self).finish()
    }
}

/// Per-key state held in a `KeyMap` (rolling reduce and aggregate): checkpointed one entry
/// per key, so it follows its key group on a rescale.
pub(crate) fn save_key_map<K: Hash + StateCodec, V: StateCodec>(
    ctx: &OperatorCtx,
    barrier: Barrier,
    map: &crate::key::KeyMap<K, V>,
) -> Result<()> {
    ctx.save_state(barrier, |out| {
        out.key_map(map);
        Ok(())
    })
}

/// The `KeyMap` `save_key_map` wrote, for this shard's key groups.
pub(crate) fn restore_key_map<K: Hash + Eq + StateCodec, V: StateCodec>(
    ctx: &OperatorCtx,
) -> Result<crate::key::KeyMap<K, V>> {
    ctx.take_restore()
        .part(0)
        .key_map()
        .map_err(|e| process::restore_failed(ctx, e))
}

/// Runs user code of one operator over a batch, turning a panic into an error that names the
/// operator and the shard. `catch_unwind` costs nothing unless a panic happens.
#[inline]
pub(crate) fn guarded<R>(ctx: &OperatorCtx, f: impl FnOnce() -> R) -> Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        WeirError::OperatorPanicked {
            operator: ctx.name.clone(),
            shard: ctx.shard,
            message: panic_message(payload.as_ref()),
        }
    })
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
