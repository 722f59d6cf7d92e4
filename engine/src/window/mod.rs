//! Event-time windowing and timers: the pure logic of window assignment,
//! session merging, triggers, evictors, lateness and a per-shard timer
//! service. Nothing here touches the runtime, so the window operator can be
//! tested (and reasoned about) without an executor.

pub mod assigner;
pub mod error;
pub mod evictor;
pub mod lateness;
pub mod merging;
pub mod timer;
pub mod trigger;
pub mod types;

#[cfg(test)]
mod proptests;

pub use assigner::{AssignerKind, MAX_WINDOWS_PER_ELEMENT, WindowAssigner};
pub use error::WindowError;
pub use evictor::{CountEvictor, Evictor, EvictorContext, TimeEvictor, TimestampedValue};
pub use lateness::{cleanup_time, is_element_late, is_late};
pub use merging::{MergeResult, MergingWindowSet};
pub use timer::{Timer, TimerService};
pub use trigger::{
    ContinuousEventTimeTrigger, CountTrigger, EventTimeTrigger, NeverTrigger, OnMergeContext,
    ProcessingTimeTrigger, PurgingTrigger, StateMerge, Trigger, TriggerContext, TriggerResult,
    TriggerState,
};
pub use types::{TimeDomain, TimeWindow, Window};
