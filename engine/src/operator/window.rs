//! The keyed window operator: assigns records to windows, keeps per (key, window) contents,
//! asks the trigger when to emit, and cleans windows up once the watermark passes their end
//! plus the allowed lateness. Records later than that go to the `late` side output and are
//! counted, never silently dropped.
//!
//! Contents are either an incremental accumulator (`aggregate`, `reduce`) or the buffered
//! records (`process`): both behind `WindowContents`. Session windows merge through
//! `MergingWindowSet`; their contents and trigger state merge with them.

use std::hash::Hash;
use std::time::Instant;

use super::{AggregateFunction, Push, guarded};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::key::KeyMap;
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::{END_OF_TIME, Progress, Timestamp, wall_clock_ms};
use crate::window::TimestampedValue;
use crate::window::{
    MergeResult, MergingWindowSet, OnMergeContext, TimeDomain, TimeWindow, TimerService, Trigger,
    TriggerContext, TriggerResult, TriggerState, Window, WindowAssigner, cleanup_time, is_late,
};

/// What a window holds between firings.
pub trait WindowContents<T>: Clone + Send + 'static {
    /// The contents of one window.
    type Acc;
    /// Empty contents.
    fn create(&mut self) -> Self::Acc;
    /// Adds one record with its timestamp.
    fn add(&mut self, acc: &mut Self::Acc, value: T, timestamp: Timestamp);
    /// Folds `other` into `into` (session windows merging).
    fn merge(&mut self, into: &mut Self::Acc, other: Self::Acc);
}

/// Incremental aggregation: only the accumulator is kept.
#[derive(Clone)]
pub struct Incremental<A>(pub A);

impl<T, A: AggregateFunction<T>> WindowContents<T> for Incremental<A> {
    type Acc = A::Acc;
    fn create(&mut self) -> A::Acc {
        self.0.create_accumulator()
    }
    #[inline]
    fn add(&mut self, acc: &mut A::Acc, value: T, _timestamp: Timestamp) {
        self.0.add(acc, value)
    }
    fn merge(&mut self, into: &mut A::Acc, other: A::Acc) {
        self.0.merge(into, other)
    }
}

/// Full-window processing: every record is kept until the window fires.
#[derive(Clone, Copy, Default)]
pub struct Buffer;

impl<T: Send + 'static> WindowContents<T> for Buffer {
    type Acc = Vec<T>;
    fn create(&mut self) -> Vec<T> {
        Vec::new()
    }
    #[inline]
    fn add(&mut self, acc: &mut Vec<T>, value: T, _timestamp: Timestamp) {
        acc.push(value)
    }
    fn merge(&mut self, into: &mut Vec<T>, mut other: Vec<T>) {
        into.append(&mut other)
    }
}

/// Full-window processing with an evictor: records are kept with their timestamps, and the
/// evictor removes some before (and after) the window function sees them.
#[derive(Clone, Copy, Default)]
pub struct EvictingBuffer;

impl<T: Send + 'static> WindowContents<T> for EvictingBuffer {
    type Acc = Vec<TimestampedValue<T>>;
    fn create(&mut self) -> Self::Acc {
        Vec::new()
    }
    #[inline]
    fn add(&mut self, acc: &mut Self::Acc, value: T, timestamp: Timestamp) {
        acc.push(TimestampedValue { timestamp, value })
    }
    fn merge(&mut self, into: &mut Self::Acc, mut other: Self::Acc) {
        into.append(&mut other)
    }
}

/// One fired window's result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowResult<K, V> {
    pub key: K,
    pub window: Window,
    pub value: V,
}

impl<K, V> WindowResult<K, V> {
    /// Start of the window (`i64::MIN` for the global window).
    pub fn start(&self) -> Timestamp {
        match self.window {
            Window::Time(w) => w.start,
            Window::Global => i64::MIN,
        }
    }

    /// The window's last millisecond: for sessions, the last record's time plus the gap.
    pub fn max_timestamp(&self) -> Timestamp {
        self.window.max_timestamp()
    }
}

impl<K: StateCodec, V: StateCodec> StateCodec for WindowResult<K, V> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.key.encode(out);
        self.window.encode(out);
        self.value.encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> std::result::Result<Self, crate::state::StateError> {
        Ok(WindowResult {
            key: K::decode_from(input)?,
            window: Window::decode_from(input)?,
            value: V::decode_from(input)?,
        })
    }
}

/// The per-key state of the operator.
struct KeyWindows<Acc> {
    /// Contents by (state) window.
    contents: Vec<(Window, Acc)>,
    /// Session windows of this key (merging assigners only).
    sessions: Option<MergingWindowSet>,
    /// Trigger state by (window, name).
    trigger_state: Vec<(Window, &'static str, i64)>,
}

impl<Acc> KeyWindows<Acc> {
    fn new(merging: bool) -> Self {
        KeyWindows {
            contents: Vec::new(),
            sessions: merging.then(MergingWindowSet::new),
            trigger_state: Vec::new(),
        }
    }

    fn contents_mut(&mut self, w: &Window) -> Option<&mut Acc> {
        self.contents
            .iter_mut()
            .find(|(x, _)| x == w)
            .map(|(_, a)| a)
    }

    fn take_contents(&mut self, w: &Window) -> Option<Acc> {
        let i = self.contents.iter().position(|(x, _)| x == w)?;
        Some(self.contents.swap_remove(i).1)
    }

    fn is_empty(&self) -> bool {
        self.contents.is_empty()
            && self.trigger_state.is_empty()
            && self
                .sessions
                .as_ref()
                .is_none_or(MergingWindowSet::is_empty)
    }
}

/// The trigger's view of one key and window.
struct Ctx<'a, K> {
    key: &'a K,
    window: Window,
    watermark: Timestamp,
    timers: &'a mut TimerService<K, Window>,
    state: &'a mut Vec<(Window, &'static str, i64)>,
    /// Windows merged into `window` (for `merge_state`).
    merged: &'a [Window],
}

impl<'a, K> Ctx<'a, K> {
    /// The trigger's view of `window` of `key` (no merged windows).
    fn new(
        key: &'a K,
        window: Window,
        watermark: Timestamp,
        timers: &'a mut TimerService<K, Window>,
        state: &'a mut Vec<(Window, &'static str, i64)>,
    ) -> Self {
        Ctx {
            key,
            window,
            watermark,
            timers,
            state,
            merged: &[],
        }
    }
}

impl<K: Ord + Hash + Clone> TriggerContext for Ctx<'_, K> {
    fn current_watermark(&self) -> i64 {
        self.watermark
    }
    fn current_processing_time(&self) -> i64 {
        wall_clock_ms()
    }
    fn register_event_time_timer(&mut self, time: i64) {
        self.timers
            .register_event_time(self.key.clone(), self.window, time);
    }
    fn delete_event_time_timer(&mut self, time: i64) {
        self.timers.delete_event_time(self.key, &self.window, time);
    }
    fn register_processing_time_timer(&mut self, time: i64) {
        self.timers
            .register_processing_time(self.key.clone(), self.window, time);
    }
    fn delete_processing_time_timer(&mut self, time: i64) {
        self.timers
            .delete_processing_time(self.key, &self.window, time);
    }
    fn get_state(&self, s: &TriggerState) -> Option<i64> {
        self.state
            .iter()
            .find(|(w, n, _)| *w == self.window && *n == s.name)
            .map(|(_, _, v)| *v)
    }
    fn set_state(&mut self, s: &TriggerState, value: i64) {
        match self
            .state
            .iter_mut()
            .find(|(w, n, _)| *w == self.window && *n == s.name)
        {
            Some(slot) => slot.2 = value,
            None => self.state.push((self.window, s.name, value)),
        }
    }
    fn clear_state(&mut self, s: &TriggerState) {
        let window = self.window;
        self.state
            .retain(|(w, n, _)| !(*w == window && *n == s.name));
    }
}

impl<K: Ord + Hash + Clone> OnMergeContext for Ctx<'_, K> {
    fn merge_state(&mut self, s: &TriggerState) {
        let mut acc: Option<i64> = self.get_state(s);
        for m in self.merged {
            if let Some(i) = self
                .state
                .iter()
                .position(|(w, n, _)| w == m && *n == s.name)
            {
                let v = self.state.swap_remove(i).2;
                acc = Some(acc.map_or(v, |a| s.merge.combine(a, v)));
            }
        }
        if let Some(v) = acc {
            self.set_state(s, v);
        }
    }
}

/// How a fired window becomes output records.
pub trait WindowFunction<K, Acc, Out>: Clone + Send + 'static {
    /// Emits the results of `window` of `key` with `contents` into `out`.
    /// `watermark` is the operator's current one (for evictors).
    fn fire(
        &mut self,
        key: &K,
        window: &Window,
        contents: &mut Acc,
        watermark: Timestamp,
        out: &mut Vec<Out>,
    );
}

impl<K, Acc, Out, F> WindowFunction<K, Acc, Out> for F
where
    F: FnMut(&K, &Window, &mut Acc, Timestamp, &mut Vec<Out>) + Clone + Send + 'static,
{
    fn fire(
        &mut self,
        key: &K,
        window: &Window,
        contents: &mut Acc,
        watermark: Timestamp,
        out: &mut Vec<Out>,
    ) {
        self(key, window, contents, watermark, out)
    }
}

/// The configuration of a window operator, cloned to every shard.
#[derive(Clone)]
pub struct WindowSpec<KF, TF, Tr, C, WF> {
    pub key_fn: KF,
    pub timestamp_fn: TF,
    pub assigner: WindowAssigner,
    pub trigger: Tr,
    pub contents: C,
    pub function: WF,
    pub allowed_lateness: u64,
}

/// The keyed window operator.
pub struct WindowOp<K, T, Out, KF, TF, Tr, C: WindowContents<T>, WF> {
    spec: WindowSpec<KF, TF, Tr, C, WF>,
    keys: KeyMap<K, KeyWindows<C::Acc>>,
    timers: TimerService<K, Window>,
    watermark: Timestamp,
    assigned: Vec<Window>,
    out: Batch<Out>,
    late: Batch<T>,
    next: Box<dyn Push<Out>>,
    late_out: Box<dyn Push<T>>,
    ctx: OperatorCtx,
    /// Ingest time of the last batch seen: results fired by a watermark are stamped with it,
    /// so their latency runs from the record that closed the window to the sink.
    last_ingest: Instant,
}

/// Part tags of the window operator's snapshot.
pub(super) const PART_KEYS: u8 = 1;
pub(super) const PART_TIMERS: u8 = 2;

/// One key's windows as they are checkpointed: contents, session windows (merging assigners)
/// and trigger state.
pub(super) type KeySnapshot<Acc> = (
    Vec<(Window, Acc)>,
    Option<Vec<(TimeWindow, TimeWindow)>>,
    Vec<(Window, &'static str, i64)>,
);

impl<K, T, Out, KF, TF, Tr, C, WF> WindowOp<K, T, Out, KF, TF, Tr, C, WF>
where
    K: Hash + Eq + Ord + Clone + StateCodec,
    T: Clone,
    KF: FnMut(&T) -> K,
    TF: Fn(&T) -> Timestamp,
    Tr: Trigger<T>,
    C: WindowContents<T>,
    C::Acc: StateCodec,
    WF: WindowFunction<K, C::Acc, Out>,
{
    /// Restores the windows and timers of this shard's key groups if the job resumes from a
    /// checkpoint.
    pub fn new(
        spec: WindowSpec<KF, TF, Tr, C, WF>,
        next: Box<dyn Push<Out>>,
        late_out: Box<dyn Push<T>>,
        ctx: OperatorCtx,
    ) -> Result<Self> {
        let restore = ctx.take_restore();
        let mut keys: KeyMap<K, KeyWindows<C::Acc>> = KeyMap::default();
        let mut timers = TimerService::new();
        for entry in restore.part(PART_KEYS).keyed::<K, KeySnapshot<C::Acc>>() {
            let (key, (contents, sessions, trigger_state)) =
                entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
            keys.insert(
                key,
                KeyWindows {
                    contents,
                    sessions: sessions.map(MergingWindowSet::from_pairs),
                    trigger_state,
                },
            );
        }
        for entry in restore.part(PART_TIMERS).keyed::<K, (u8, Window, i64)>() {
            let (key, (domain, window, t)) =
                entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
            match domain {
                0 => timers.register_event_time(key, window, t),
                _ => timers.register_processing_time(key, window, t),
            };
        }
        Ok(WindowOp {
            spec,
            keys,
            timers,
            watermark: i64::MIN,
            assigned: Vec::new(),
            out: Batch::with_capacity(ctx.batch_size),
            late: Batch::with_capacity(0),
            next,
            late_out,
            ctx,
            last_ingest: Instant::now(),
        })
    }

    /// Writes every key's windows and every timer into the checkpoint.
    fn snapshot(&self, barrier: Barrier) -> Result<()> {
        let (keys, timers) = (&self.keys, &self.timers);
        self.ctx.save_state(barrier, |out| {
            out.set_part(PART_KEYS);
            for (key, w) in keys.iter() {
                // Encoded in place (no copy of the contents) in `KeySnapshot`'s layout.
                out.keyed_encoded(key, |bytes| {
                    (w.contents.len() as u32).encode(bytes);
                    for (window, acc) in &w.contents {
                        window.encode(bytes);
                        acc.encode(bytes);
                    }
                    w.sessions
                        .as_ref()
                        .map(|s| s.pairs().collect::<Vec<_>>())
                        .encode(bytes);
                    w.trigger_state.encode(bytes);
                });
            }
            out.set_part(PART_TIMERS);
            for (domain, timer) in timers.timers() {
                let d: u8 = match domain {
                    TimeDomain::EventTime => 0,
                    TimeDomain::ProcessingTime => 1,
                };
                out.keyed(&timer.key, &(d, timer.namespace, timer.timestamp));
            }
            Ok(())
        })
    }

    fn on_record(&mut self, record: T, now: Timestamp) {
        let event_time = self.spec.assigner.is_event_time();
        let ts = if event_time {
            (self.spec.timestamp_fn)(&record)
        } else {
            now
        };
        if self.spec.assigner.assign(ts, &mut self.assigned).is_err() {
            // A timestamp no window can hold cannot be placed: it goes out as late data.
            self.late.records.push(record);
            self.ctx.count_late(1);
            return;
        }
        let key = (self.spec.key_fn)(&record);
        let merging = self.spec.assigner.is_merging();
        let lateness = self.spec.allowed_lateness;
        let watermark = self.watermark;
        let state = self
            .keys
            .entry(key.clone())
            .or_insert_with(|| KeyWindows::new(merging));
        let assigned = std::mem::take(&mut self.assigned);
        let last = assigned.len().saturating_sub(1);
        let mut slot = Some(record);
        let mut placed = false;
        for (i, assigned_window) in assigned.iter().enumerate() {
            let Some(record) = slot.as_ref() else { break };
            let (window, state_window) = match assigned_window {
                Window::Time(tw) if merging => {
                    let Some(mut sessions) = state.sessions.take() else {
                        continue;
                    };
                    let merged = merge_session(
                        *tw,
                        &mut sessions,
                        state,
                        &self.spec.trigger,
                        &key,
                        watermark,
                        &mut self.timers,
                        &mut self.spec.contents,
                        lateness,
                    );
                    state.sessions = Some(sessions);
                    match merged {
                        Some(ws) => ws,
                        None => continue,
                    }
                }
                _ => (*assigned_window, *assigned_window),
            };
            if event_time && is_late(&window, watermark, lateness) {
                continue;
            }
            placed = true;
            let fresh = state.contents_mut(&state_window).is_none();
            // The trigger sees the record before it is moved into the last window's contents
            // (unless it declared that repeat elements of an open window change nothing).
            let skip = !fresh
                && !merging
                && window.max_timestamp() > watermark
                && self.spec.trigger.repeat_elements_are_no_ops();
            let result = if skip {
                TriggerResult::Continue
            } else {
                let mut tctx = Ctx::new(
                    &key,
                    window,
                    watermark,
                    &mut self.timers,
                    &mut state.trigger_state,
                );
                self.spec.trigger.on_element(record, ts, &window, &mut tctx)
            };
            // Clone for every window but the last, which takes the record itself.
            let value = if i == last {
                slot.take()
            } else {
                Some(record.clone())
            };
            if fresh {
                let acc = self.spec.contents.create();
                state.contents.push((state_window, acc));
            }
            if let (Some(contents), Some(v)) = (state.contents_mut(&state_window), value) {
                self.spec.contents.add(contents, v, ts);
            }
            // A window needs one cleanup timer: registered when its contents are created, and
            // again for sessions, whose end moves as they grow.
            let cleanup = cleanup_time(&window, if event_time { lateness } else { 0 });
            if (fresh || merging) && cleanup < i64::MAX {
                if event_time {
                    self.timers
                        .register_event_time(key.clone(), window, cleanup);
                } else {
                    self.timers
                        .register_processing_time(key.clone(), window, cleanup);
                }
            }
            handle(
                result,
                &key,
                &window,
                &state_window,
                state,
                &mut self.spec,
                watermark,
                &mut self.out.records,
            );
        }
        self.assigned = assigned;
        if !placed && let Some(record) = slot {
            self.late.records.push(record);
            self.ctx.count_late(1);
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark);
        if watermark == END_OF_TIME {
            // End of input: processing-time windows close too.
            self.fire(TimeDomain::ProcessingTime, i64::MAX);
        }
    }

    /// Fires the timers of `domain` due at `time`, in order, and cleans up windows whose
    /// cleanup timer it was.
    fn fire(&mut self, domain: TimeDomain, time: Timestamp) {
        let event_time = self.spec.assigner.is_event_time();
        let lateness = if event_time {
            self.spec.allowed_lateness
        } else {
            0
        };
        let watermark = self.watermark;
        loop {
            let timer = match domain {
                TimeDomain::EventTime => self.timers.pop_event_time(time),
                TimeDomain::ProcessingTime => self.timers.pop_processing_time(time),
            };
            let Some(timer) = timer else { break };
            let key = timer.key;
            let window = timer.namespace;
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            let state_window = match (&window, state.sessions.as_ref()) {
                (Window::Time(tw), Some(sessions)) => match sessions.state_window(tw) {
                    Some(sw) => Window::Time(sw),
                    // Merged away: its timers are stale.
                    None => continue,
                },
                _ => window,
            };
            let mut tctx = Ctx::new(
                &key,
                window,
                watermark,
                &mut self.timers,
                &mut state.trigger_state,
            );
            let result = match domain {
                TimeDomain::EventTime => {
                    self.spec
                        .trigger
                        .on_event_time(timer.timestamp, &window, &mut tctx)
                }
                TimeDomain::ProcessingTime => {
                    self.spec
                        .trigger
                        .on_processing_time(timer.timestamp, &window, &mut tctx)
                }
            };
            handle(
                result,
                &key,
                &window,
                &state_window,
                state,
                &mut self.spec,
                watermark,
                &mut self.out.records,
            );
            let cleanup_domain = if event_time {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            if domain == cleanup_domain && timer.timestamp == cleanup_time(&window, lateness) {
                let mut tctx = Ctx::new(
                    &key,
                    window,
                    watermark,
                    &mut self.timers,
                    &mut state.trigger_state,
                );
                self.spec.trigger.clear(&window, &mut tctx);
                state.take_contents(&state_window);
                state.trigger_state.retain(|(w, _, _)| *w != window);
                if let (Window::Time(tw), Some(sessions)) = (&window, state.sessions.as_mut()) {
                    sessions.retire_window(tw);
                }
                if state.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Processing time moved to `now`: fire what is due (checked once per batch). Records of
    /// this batch are stamped `now`, so only windows ending before `now` may close.
    fn on_processing_time(&mut self, now: Timestamp) {
        let due = now.saturating_sub(1);
        if self.timers.next_processing_time().is_some_and(|t| t <= due) {
            self.fire(TimeDomain::ProcessingTime, due);
        }
    }
}

/// Adds a session window to the key's set, merging contents and trigger state of the windows
/// it joins. Returns (window, state window), or None if the merged window is already late.
#[allow(clippy::too_many_arguments)]
fn merge_session<K: Ord + Hash + Clone, T, Tr: Trigger<T>, C: WindowContents<T>>(
    new: TimeWindow,
    sessions: &mut MergingWindowSet,
    state: &mut KeyWindows<C::Acc>,
    trigger: &Tr,
    key: &K,
    watermark: Timestamp,
    timers: &mut TimerService<K, Window>,
    contents: &mut C,
    lateness: u64,
) -> Option<(Window, Window)> {
    let result = sessions.add_window(new);
    let window = Window::Time(result.window());
    let state_window = Window::Time(result.state_window());
    if let MergeResult::Merged {
        merged_windows,
        merged_state_windows,
        ..
    } = &result
    {
        let merged: Vec<Window> = merged_windows.iter().map(|w| Window::Time(*w)).collect();
        let mut tctx = Ctx {
            key,
            window,
            watermark,
            timers: &mut *timers,
            state: &mut state.trigger_state,
            merged: &merged,
        };
        trigger.on_merge(&window, &mut tctx);
        for m in &merged {
            let mut tctx = Ctx::new(key, *m, watermark, &mut *timers, &mut state.trigger_state);
            trigger.clear(m, &mut tctx);
            timers.delete_event_time(key, m, cleanup_time(m, lateness));
        }
        for sw in merged_state_windows {
            if let Some(other) = state.take_contents(&Window::Time(*sw)) {
                match state.contents_mut(&state_window) {
                    Some(acc) => contents.merge(acc, other),
                    None => state.contents.push((state_window, other)),
                }
            }
        }
    }
    if is_late(&window, watermark, lateness) {
        // Flink drops a merged window that is already late, contents and all.
        if let Window::Time(tw) = &window {
            sessions.retire_window(tw);
        }
        state.take_contents(&state_window);
        return None;
    }
    Some((window, state_window))
}

/// Applies a trigger's verdict to one window.
#[allow(clippy::too_many_arguments)]
fn handle<K, T, Out, KF, TF, Tr, C: WindowContents<T>, WF: WindowFunction<K, C::Acc, Out>>(
    result: TriggerResult,
    key: &K,
    window: &Window,
    state_window: &Window,
    state: &mut KeyWindows<C::Acc>,
    spec: &mut WindowSpec<KF, TF, Tr, C, WF>,
    watermark: Timestamp,
    out: &mut Vec<Out>,
) {
    if result.is_fire()
        && let Some(acc) = state.contents_mut(state_window)
    {
        spec.function.fire(key, window, acc, watermark, out);
    }
    if result.is_purge() {
        state.take_contents(state_window);
    }
}

impl<K, T, Out, KF, TF, Tr, C, WF> Push<T> for WindowOp<K, T, Out, KF, TF, Tr, C, WF>
where
    K: Hash + Eq + Ord + Clone + StateCodec,
    T: Clone,
    KF: FnMut(&T) -> K,
    TF: Fn(&T) -> Timestamp,
    Tr: Trigger<T>,
    C: WindowContents<T>,
    C::Acc: StateCodec,
    WF: WindowFunction<K, C::Acc, Out>,
{
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        self.ctx.count_in(batch.len());
        self.last_ingest = batch.ingest;
        let now = wall_clock_ms();
        let ctx = self.ctx.clone();
        guarded(&ctx, || {
            self.on_processing_time(now);
            for r in batch.records.drain(..) {
                self.on_record(r, now);
            }
        })?;
        if !self.out.is_empty() {
            self.out.ingest = batch.ingest;
            self.next.push(&mut self.out)?;
        }
        if !self.late.is_empty() {
            self.late.ingest = batch.ingest;
            self.late_out.push(&mut self.late)?;
        }
        Ok(())
    }

    fn progress(&mut self, progress: Progress) -> Result<()> {
        if let Progress::Watermark(w) = progress {
            let ctx = self.ctx.clone();
            guarded(&ctx, || {
                self.on_processing_time(wall_clock_ms());
                self.on_watermark(w)
            })?;
            if !self.out.is_empty() {
                self.out.ingest = self.last_ingest;
                self.next.push(&mut self.out)?;
            }
        }
        self.late_out.progress(progress)?;
        self.next.progress(progress)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.snapshot(barrier)?;
        self.late_out.barrier(barrier)?;
        self.next.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.late_out.finish()?;
        self.next.finish()
    }
}
