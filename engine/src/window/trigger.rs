//! Triggers decide when a window's contents are emitted (and purged).
//!
//! Like Flink, a trigger is a stateless policy object shared by all windows;
//! everything per window (timers, counters) goes through the `TriggerContext`
//! the window operator implements, so it lands in checkpointed state.

use super::error::WindowError;
use super::types::Window;

/// What the operator should do with a window after a trigger call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerResult {
    /// Nothing.
    Continue,
    /// Emit the window's result, keep its contents.
    Fire,
    /// Drop the contents without emitting.
    Purge,
    /// Emit, then drop the contents.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window must be emitted.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the window's contents must be dropped.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// How a piece of trigger state combines when session windows merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateMerge {
    /// Add the values (counters), saturating.
    Sum,
    /// Keep the smallest (next fire time).
    Min,
    /// Keep the largest.
    Max,
}

impl StateMerge {
    /// Combines two values of merged windows.
    pub fn combine(self, a: i64, b: i64) -> i64 {
        match self {
            StateMerge::Sum => a.saturating_add(b),
            StateMerge::Min => a.min(b),
            StateMerge::Max => a.max(b),
        }
    }
}

/// Names one `i64` of per-window trigger state and how it merges; a trigger
/// declares these as constants, the operator stores values under `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TriggerState {
    /// Unique name within the trigger (namespaced per window by the operator).
    pub name: &'static str,
    /// How values of merged windows combine.
    pub merge: StateMerge,
}

/// What a trigger may do, scoped to the current key and window; implemented by
/// the window operator on top of its timer service and state backend.
pub trait TriggerContext {
    /// The shard's current event-time watermark.
    fn current_watermark(&self) -> i64;
    /// The shard's current processing time.
    fn current_processing_time(&self) -> i64;
    /// Calls `on_event_time` once the watermark reaches `time` (deduplicated).
    fn register_event_time_timer(&mut self, time: i64);
    /// Cancels an event-time timer of this key and window.
    fn delete_event_time_timer(&mut self, time: i64);
    /// Calls `on_processing_time` once processing time reaches `time` (deduplicated).
    fn register_processing_time_timer(&mut self, time: i64);
    /// Cancels a processing-time timer of this key and window.
    fn delete_processing_time_timer(&mut self, time: i64);
    /// Reads per-window trigger state.
    fn get_state(&self, state: &TriggerState) -> Option<i64>;
    /// Writes per-window trigger state.
    fn set_state(&mut self, state: &TriggerState, value: i64);
    /// Deletes per-window trigger state.
    fn clear_state(&mut self, state: &TriggerState);
}

/// The context of `Trigger::on_merge`: the window is the merge result and the
/// operator knows which windows were merged into it.
pub trait OnMergeContext: TriggerContext {
    /// Folds this state of all merged windows (and the result window's own, if
    /// any) with `state.merge` into the result window, clearing the sources.
    fn merge_state(&mut self, state: &TriggerState);
}

/// A firing policy for windows with elements of type `T`.
pub trait Trigger<T> {
    /// Called for every element added to `window`.
    fn on_element(
        &self,
        element: &T,
        timestamp: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult;

    /// Called when an event-time timer registered for `window` fires at `time`.
    fn on_event_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult;

    /// Called when a processing-time timer registered for `window` fires at `time`.
    fn on_processing_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult;

    /// True if this trigger fires a window exactly when the watermark passes its end (and
    /// for every element arriving within the allowed lateness after that), keeps no state
    /// and registers no other timers — `EventTimeTrigger`'s contract. The window operator
    /// then keeps aligned windows window-first, without a timer per key and window.
    fn fires_only_at_window_end(&self) -> bool {
        false
    }

    /// True if this trigger fires a window once, when processing time passes its end, never
    /// on an element, keeps no state and registers no other timers — `ProcessingTimeTrigger`'s
    /// contract. Aligned processing-time windows then run window-first too (no timer per key
    /// and window).
    fn fires_only_at_processing_time_window_end(&self) -> bool {
        false
    }

    /// Whether the trigger supports merging windows; the operator must refuse
    /// a session assigner with a trigger that does not.
    fn can_merge(&self) -> bool {
        false
    }

    /// Called when windows merged into `window`: merge state, re-register timers.
    fn on_merge(&self, _window: &Window, _ctx: &mut dyn OnMergeContext) {}

    /// Called when the window is purged for good: drop timers and state.
    fn clear(&self, window: &Window, ctx: &mut dyn TriggerContext);

    /// True if `on_element` for a window that already holds records, before the watermark
    /// passed its end, does nothing the window's first `on_element` did not already do
    /// (returns `Continue`, registers the same timers). The operator then skips the call: for
    /// the default event-time trigger that saves a timer lookup per record.
    fn repeat_elements_are_no_ops(&self) -> bool {
        false
    }
}

/// Fires once the watermark passes the window's end; elements arriving later
/// (within the allowed lateness) fire the window again right away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTimeTrigger;

impl<T> Trigger<T> for EventTimeTrigger {
    fn fires_only_at_window_end(&self) -> bool {
        true
    }

    fn repeat_elements_are_no_ops(&self) -> bool {
        // Before the end: register the end-of-window timer (already registered by the
        // window's first element; only `clear` deletes it, and a cleared window holds no
        // records) and continue.
        true
    }

    fn on_element(
        &self,
        _element: &T,
        _timestamp: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        let max = window.max_timestamp();
        if max <= ctx.current_watermark() {
            // Late but not dropped: the window already fired, fire the update.
            TriggerResult::Fire
        } else {
            ctx.register_event_time_timer(max);
            TriggerResult::Continue
        }
    }

    fn on_event_time(
        &self,
        time: i64,
        window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }

    fn on_processing_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &Window, ctx: &mut dyn OnMergeContext) {
        // Only when the merged window is still in the future; otherwise the
        // late-element path fires it (as Flink does).
        let max = window.max_timestamp();
        if max > ctx.current_watermark() {
            ctx.register_event_time_timer(max);
        }
    }

    fn clear(&self, window: &Window, ctx: &mut dyn TriggerContext) {
        ctx.delete_event_time_timer(window.max_timestamp());
    }
}

/// Fires when the shard's processing time passes the window's end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessingTimeTrigger;

impl<T> Trigger<T> for ProcessingTimeTrigger {
    fn fires_only_at_processing_time_window_end(&self) -> bool {
        true
    }

    fn on_element(
        &self,
        _element: &T,
        _timestamp: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        ctx.register_processing_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Fire
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &Window, ctx: &mut dyn OnMergeContext) {
        let max = window.max_timestamp();
        if max > ctx.current_processing_time() {
            ctx.register_processing_time_timer(max);
        }
    }

    fn clear(&self, window: &Window, ctx: &mut dyn TriggerContext) {
        ctx.delete_processing_time_timer(window.max_timestamp());
    }
}

/// Never fires: the default of the global window, which needs a custom trigger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeverTrigger;

impl<T> Trigger<T> for NeverTrigger {
    fn on_element(
        &self,
        _element: &T,
        _timestamp: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn clear(&self, _window: &Window, _ctx: &mut dyn TriggerContext) {}
}

/// Fires every `n` elements of a window (counted in trigger state, summed on merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountTrigger {
    n: u64,
    purge: bool,
}

impl CountTrigger {
    /// Per-window element count.
    pub const COUNT: TriggerState = TriggerState {
        name: "count",
        merge: StateMerge::Sum,
    };

    /// Fires (keeping the contents) on every `n`-th element; `n > 0`.
    pub fn new(n: u64) -> Result<Self, WindowError> {
        if n == 0 {
            return Err(WindowError::InvalidCount { count: n });
        }
        Ok(Self { n, purge: false })
    }

    /// Fires and purges on every `n`-th element, so each firing sees only the last `n`.
    pub fn purging(n: u64) -> Result<Self, WindowError> {
        Ok(Self {
            purge: true,
            ..Self::new(n)?
        })
    }
}

impl<T> Trigger<T> for CountTrigger {
    fn on_element(
        &self,
        _element: &T,
        _timestamp: i64,
        _window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        let count = ctx.get_state(&Self::COUNT).unwrap_or(0).saturating_add(1);
        // n > 0 and counts are positive, so the comparison in u64 is exact.
        if count.unsigned_abs() >= self.n {
            ctx.clear_state(&Self::COUNT);
            if self.purge {
                TriggerResult::FireAndPurge
            } else {
                TriggerResult::Fire
            }
        } else {
            ctx.set_state(&Self::COUNT, count);
            TriggerResult::Continue
        }
    }

    fn on_event_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, _window: &Window, ctx: &mut dyn OnMergeContext) {
        // Like Flink: the merged count fires on the next element, not during the merge.
        ctx.merge_state(&Self::COUNT);
    }

    fn clear(&self, _window: &Window, ctx: &mut dyn TriggerContext) {
        ctx.clear_state(&Self::COUNT);
    }
}

/// Fires early every `interval` ms of event time (aligned to the epoch) and
/// once more at the window's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
}

impl ContinuousEventTimeTrigger {
    /// Next early-fire time of the window.
    pub const FIRE_AT: TriggerState = TriggerState {
        name: "continuous-fire-at",
        merge: StateMerge::Min,
    };

    /// Fires every `interval` ms (> 0).
    pub fn new(interval: i64) -> Result<Self, WindowError> {
        if interval <= 0 {
            return Err(WindowError::InvalidInterval { interval });
        }
        Ok(Self { interval })
    }

    fn register_next(&self, time: i64, window: &Window, ctx: &mut dyn TriggerContext) {
        let next = time.min(window.max_timestamp());
        ctx.set_state(&Self::FIRE_AT, next);
        ctx.register_event_time_timer(next);
    }
}

impl<T> Trigger<T> for ContinuousEventTimeTrigger {
    fn on_element(
        &self,
        _element: &T,
        timestamp: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        let max = window.max_timestamp();
        if max <= ctx.current_watermark() {
            return TriggerResult::Fire;
        }
        ctx.register_event_time_timer(max);
        if ctx.get_state(&Self::FIRE_AT).is_none() {
            // Next multiple of the interval after the element; saturating near i64::MAX.
            let start = timestamp.saturating_sub(timestamp.rem_euclid(self.interval));
            self.register_next(start.saturating_add(self.interval), window, ctx);
        }
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            return TriggerResult::Fire;
        }
        if ctx.get_state(&Self::FIRE_AT) == Some(time) {
            ctx.clear_state(&Self::FIRE_AT);
            self.register_next(time.saturating_add(self.interval), window, ctx);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _time: i64,
        _window: &Window,
        _ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &Window, ctx: &mut dyn OnMergeContext) {
        ctx.merge_state(&Self::FIRE_AT);
        let max = window.max_timestamp();
        if max > ctx.current_watermark() {
            ctx.register_event_time_timer(max);
        }
        if let Some(next) = ctx.get_state(&Self::FIRE_AT) {
            ctx.register_event_time_timer(next);
        }
    }

    fn clear(&self, window: &Window, ctx: &mut dyn TriggerContext) {
        if let Some(next) = ctx.get_state(&Self::FIRE_AT) {
            ctx.delete_event_time_timer(next);
        }
        ctx.clear_state(&Self::FIRE_AT);
        ctx.delete_event_time_timer(window.max_timestamp());
    }
}

/// Turns every `Fire` of the inner trigger into `FireAndPurge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgingTrigger<U>(pub U);

impl<U> PurgingTrigger<U> {
    fn purge(r: TriggerResult) -> TriggerResult {
        if r.is_fire() {
            TriggerResult::FireAndPurge
        } else {
            r
        }
    }
}

impl<T, U: Trigger<T>> Trigger<T> for PurgingTrigger<U> {
    fn on_element(
        &self,
        element: &T,
        timestamp: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        Self::purge(self.0.on_element(element, timestamp, window, ctx))
    }

    fn on_event_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        Self::purge(self.0.on_event_time(time, window, ctx))
    }

    fn on_processing_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        Self::purge(self.0.on_processing_time(time, window, ctx))
    }

    fn can_merge(&self) -> bool {
        self.0.can_merge()
    }

    fn on_merge(&self, window: &Window, ctx: &mut dyn OnMergeContext) {
        self.0.on_merge(window, ctx);
    }

    fn clear(&self, window: &Window, ctx: &mut dyn TriggerContext) {
        self.0.clear(window, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::assigner::WindowAssigner;
    use crate::window::merging::{MergeResult, MergingWindowSet};
    use crate::window::timer::TimerService;
    use crate::window::types::TimeWindow;
    use std::collections::HashMap;

    /// A miniature window operator's context for one key: timers in a real
    /// `TimerService`, trigger state in a map keyed by window.
    struct Ctx {
        window: Window,
        watermark: i64,
        now: i64,
        timers: TimerService<u32, Window>,
        state: HashMap<(Window, &'static str), i64>,
        merged: Vec<Window>,
    }

    impl Ctx {
        fn new() -> Self {
            Ctx {
                window: Window::Global,
                watermark: i64::MIN,
                now: 0,
                timers: TimerService::new(),
                state: HashMap::new(),
                merged: Vec::new(),
            }
        }
        fn at(&mut self, w: Window) -> &mut Self {
            self.window = w;
            self
        }
    }

    impl TriggerContext for Ctx {
        fn current_watermark(&self) -> i64 {
            self.watermark
        }
        fn current_processing_time(&self) -> i64 {
            self.now
        }
        fn register_event_time_timer(&mut self, time: i64) {
            self.timers.register_event_time(0, self.window, time);
        }
        fn delete_event_time_timer(&mut self, time: i64) {
            self.timers.delete_event_time(&0, &self.window, time);
        }
        fn register_processing_time_timer(&mut self, time: i64) {
            self.timers.register_processing_time(0, self.window, time);
        }
        fn delete_processing_time_timer(&mut self, time: i64) {
            self.timers.delete_processing_time(&0, &self.window, time);
        }
        fn get_state(&self, s: &TriggerState) -> Option<i64> {
            self.state.get(&(self.window, s.name)).copied()
        }
        fn set_state(&mut self, s: &TriggerState, v: i64) {
            self.state.insert((self.window, s.name), v);
        }
        fn clear_state(&mut self, s: &TriggerState) {
            self.state.remove(&(self.window, s.name));
        }
    }

    impl OnMergeContext for Ctx {
        fn merge_state(&mut self, s: &TriggerState) {
            let mut acc = self.state.remove(&(self.window, s.name));
            for m in std::mem::take(&mut self.merged) {
                if let Some(v) = self.state.remove(&(m, s.name)) {
                    acc = Some(acc.map_or(v, |a| s.merge.combine(a, v)));
                }
                self.merged.push(m);
            }
            if let Some(v) = acc {
                self.state.insert((self.window, s.name), v);
            }
        }
    }

    fn tw(s: i64, e: i64) -> Window {
        Window::Time(TimeWindow::new(s, e))
    }

    /// Advances the watermark and returns the trigger results of fired timers.
    fn advance(ctx: &mut Ctx, t: &dyn Trigger<()>, wm: i64) -> Vec<(i64, Window, TriggerResult)> {
        ctx.watermark = wm;
        let mut out = Vec::new();
        while let Some(timer) = ctx.timers.pop_event_time(wm) {
            ctx.window = timer.namespace;
            let r = t.on_event_time(timer.timestamp, &timer.namespace, ctx);
            out.push((timer.timestamp, timer.namespace, r));
        }
        out
    }

    #[test]
    fn event_time_fires_when_watermark_reaches_max_timestamp() {
        let t = EventTimeTrigger;
        let mut ctx = Ctx::new();
        let w = tw(0, 10);
        assert_eq!(t.on_element(&(), 3, &w, ctx.at(w)), TriggerResult::Continue);
        assert_eq!(t.on_element(&(), 4, &w, ctx.at(w)), TriggerResult::Continue);
        assert_eq!(ctx.timers.len(), 1, "timer deduplicated");
        assert!(advance(&mut ctx, &t, 8).is_empty());
        assert_eq!(advance(&mut ctx, &t, 9), vec![(9, w, TriggerResult::Fire)]);
        // Late element inside the allowed lateness re-fires immediately.
        assert_eq!(t.on_element(&(), 5, &w, ctx.at(w)), TriggerResult::Fire);
        assert!(ctx.timers.is_empty());
        // Clear deletes the timer of a window that has not fired yet.
        let w2 = tw(10, 20);
        t.on_element(&(), 12, &w2, ctx.at(w2));
        assert_eq!(ctx.timers.len(), 1);
        Trigger::<()>::clear(&t, &w2, ctx.at(w2));
        assert!(ctx.timers.is_empty());
    }

    #[test]
    fn global_window_event_time_fires_at_end_of_input() {
        let t = EventTimeTrigger;
        let mut ctx = Ctx::new();
        let w = Window::Global;
        t.on_element(&(), 1, &w, ctx.at(w));
        assert!(advance(&mut ctx, &t, i64::MAX - 1).is_empty());
        assert_eq!(
            advance(&mut ctx, &t, i64::MAX),
            vec![(i64::MAX, w, TriggerResult::Fire)]
        );
        let d = WindowAssigner::global().default_trigger::<()>();
        assert_eq!(d.on_element(&(), 1, &w, ctx.at(w)), TriggerResult::Continue);
    }

    #[test]
    fn count_trigger_fires_every_n() {
        let t = CountTrigger::new(3).unwrap();
        let mut ctx = Ctx::new();
        let w = Window::Global;
        let results: Vec<_> = (0..7)
            .map(|i| t.on_element(&(), i, &w, ctx.at(w)))
            .collect();
        use TriggerResult::*;
        assert_eq!(
            results,
            vec![Continue, Continue, Fire, Continue, Continue, Fire, Continue]
        );
        let p = CountTrigger::purging(2).unwrap();
        let mut ctx = Ctx::new();
        let results: Vec<_> = (0..4)
            .map(|i| p.on_element(&(), i, &w, ctx.at(w)))
            .collect();
        assert_eq!(
            results,
            vec![Continue, FireAndPurge, Continue, FireAndPurge]
        );
        assert_eq!(
            CountTrigger::new(0),
            Err(WindowError::InvalidCount { count: 0 })
        );
        let one = CountTrigger::new(1).unwrap();
        assert_eq!(one.on_element(&(), 0, &w, ctx.at(w)), Fire);
    }

    /// Drives session windows through a `MergingWindowSet` the way the
    /// operator must: `on_merge` on the result, then `clear` on each merged window.
    fn add_session_element(
        set: &mut MergingWindowSet,
        ctx: &mut Ctx,
        t: &dyn Trigger<()>,
        gap: i64,
        ts: i64,
    ) -> (Window, TriggerResult) {
        let a = WindowAssigner::session(gap).unwrap();
        let mut ws = Vec::new();
        a.assign(ts, &mut ws).unwrap();
        let r = set.add_window(*ws[0].as_time().unwrap());
        let window = Window::Time(r.window());
        if let MergeResult::Merged { merged_windows, .. } = &r {
            ctx.merged = merged_windows.iter().map(|m| Window::Time(*m)).collect();
            t.on_merge(&window, ctx.at(window));
            for m in merged_windows {
                let m = Window::Time(*m);
                t.clear(&m, ctx.at(m));
            }
        }
        (window, t.on_element(&(), ts, &window, ctx.at(window)))
    }

    #[test]
    fn count_state_merges_across_sessions() {
        use TriggerResult::*;
        let t = CountTrigger::new(4).unwrap();
        let mut ctx = Ctx::new();
        let mut set = MergingWindowSet::new();
        // Each step: element, resulting session, trigger result. Exact 10 ms gaps merge.
        let steps = [
            (0, tw(0, 11), Continue),
            (100, tw(100, 111), Continue),
            (101, tw(100, 112), Continue),
            (50, tw(50, 61), Continue),
            (10, tw(0, 21), Continue),  // count 1 + 1
            (30, tw(30, 41), Continue), // 30 - 10 = 20 > gap: new session
            (40, tw(30, 61), Continue), // bridges 30 and 50 exactly: 1 + 1 + 1
            (20, tw(0, 61), Fire),      // bridges everything: 2 + 3 + 1 = 6 >= 4
        ];
        for (ts, session, result) in steps {
            assert_eq!(
                add_session_element(&mut set, &mut ctx, &t, 10, ts),
                (session, result),
                "element {ts}"
            );
        }
        // Merged windows' counts were folded and cleared; the fired one reset.
        let mut left: Vec<_> = ctx.state.iter().map(|(k, v)| (k.0, *v)).collect();
        left.sort();
        assert_eq!(left, vec![(tw(100, 112), 2)]);
    }

    #[test]
    fn event_time_trigger_on_merged_sessions_fires_once_at_session_end() {
        let t = EventTimeTrigger;
        let mut ctx = Ctx::new();
        let mut set = MergingWindowSet::new();
        let gap = 10;
        for ts in [0, 10, 20] {
            add_session_element(&mut set, &mut ctx, &t, gap, ts);
        }
        // Session [0, 30]: fires when the watermark reaches last + gap = 30, not before.
        assert!(advance(&mut ctx, &t, 29).is_empty());
        assert_eq!(
            advance(&mut ctx, &t, 30),
            vec![(30, tw(0, 31), TriggerResult::Fire)]
        );
        assert!(ctx.timers.is_empty());
    }

    #[test]
    fn continuous_event_time_fires_early_and_at_end() {
        let t = ContinuousEventTimeTrigger::new(4).unwrap();
        let mut ctx = Ctx::new();
        let w = tw(0, 10);
        assert_eq!(t.on_element(&(), 1, &w, ctx.at(w)), TriggerResult::Continue);
        let fired = advance(&mut ctx, &t, 100);
        let times: Vec<_> = fired
            .iter()
            .filter(|f| f.2.is_fire())
            .map(|f| f.0)
            .collect();
        assert_eq!(times, vec![4, 8, 9]);
        assert_eq!(
            ContinuousEventTimeTrigger::new(0),
            Err(WindowError::InvalidInterval { interval: 0 })
        );
        let p = PurgingTrigger(t);
        let mut ctx = Ctx::new();
        p.on_element(&(), 1, &w, ctx.at(w));
        let fired = advance(&mut ctx, &p, 4);
        assert_eq!(fired, vec![(4, w, TriggerResult::FireAndPurge)]);
        Trigger::<()>::clear(&p, &w, ctx.at(w));
        assert!(ctx.timers.is_empty());
    }

    #[test]
    fn continuous_trigger_merges_next_fire_time() {
        let t = ContinuousEventTimeTrigger::new(4).unwrap();
        let mut ctx = Ctx::new();
        let mut set = MergingWindowSet::new();
        add_session_element(&mut set, &mut ctx, &t, 10, 1);
        let (w, _) = add_session_element(&mut set, &mut ctx, &t, 10, 11);
        assert_eq!(w, tw(1, 22));
        assert_eq!(ctx.state.get(&(w, "continuous-fire-at")), Some(&4));
        // Stale timers of the merged-away window fire into nothing.
        let fired: Vec<_> = advance(&mut ctx, &t, 100)
            .into_iter()
            .filter(|f| f.2.is_fire())
            .map(|f| (f.0, f.1))
            .collect();
        let expect: Vec<_> = [4, 8, 12, 16, 20, 21].iter().map(|&t| (t, w)).collect();
        assert_eq!(fired, expect);
    }

    #[test]
    fn processing_time_trigger() {
        let t = ProcessingTimeTrigger;
        let mut ctx = Ctx::new();
        let w = tw(0, 10);
        t.on_element(&(), 0, &w, ctx.at(w));
        let mut fired = Vec::new();
        ctx.timers
            .advance_processing_time(9, |timer| fired.push(timer.timestamp));
        assert_eq!(fired, vec![9]);
        assert_eq!(
            Trigger::<()>::on_processing_time(&t, 9, &w, ctx.at(w)),
            TriggerResult::Fire
        );
    }
}
