//! The window operator for aligned windows: tumbling and sliding windows that fire only when
//! their clock passes their end — the watermark (`EventTimeTrigger`) or processing time
//! (`ProcessingTimeTrigger`).
//!
//! Such windows have the same boundaries for every key, so their state is kept window-first:
//! one map from key to contents per window, in firing order. A window's timer is implied by
//! its end, so there is no timer per (key, window) to register, deduplicate or pop; firing a
//! window walks its map once (sorted by key, the order of the general operator's timers) and
//! drops it. This is the layout streaming SQL engines use for window aggregates; the general
//! [`super::WindowOp`] (one map per key, a timer per window) stays for session windows, custom
//! triggers, the global window and the LSM state backend.
//!
//! Results are exactly the general operator's (in the same order for event time), and its
//! checkpoints use the general operator's layout, so either operator restores the other's
//! snapshot.
//!
//! Processing-time windows follow the general operator: a batch's records are stamped with
//! the wall clock read once per batch; windows ending before it fire first (and on every tick
//! and watermark), at once dropped; there is no allowed lateness, so no record is late unless
//! no window can hold its time; end of input (the final watermark) closes them all.

use std::hash::Hash;

use super::window::{KeySnapshot, PART_KEYS, PART_TIMERS};
use super::window_emit::{WindowEmit, WindowStage};
use super::{Push, WindowContents, WindowFunction, WindowSpec};
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::key::KeyMap;
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::{END_OF_TIME, Timestamp, wall_clock_ms};
use crate::window::{AssignerKind, TimeWindow, Trigger, Window, cleanup_time, is_late};

/// Every key's contents of one window.
pub(super) struct WindowKeys<K, Acc> {
    /// When it fires (its last millisecond) and the window: the operator's sort order.
    pub(super) end: Timestamp,
    pub(super) window: Window,
    pub(super) keys: KeyMap<K, Acc>,
    /// The watermark passed the window's end: it fired, and only waits for its cleanup
    /// (allowed lateness); records still arriving fire it again at once. Never set for
    /// processing-time windows, which are dropped as they fire.
    pub(super) fired: bool,
}

/// The aligned-window operator (see the module docs).
pub struct AlignedWindowOp<K, T, Out, KF, TF, Tr, C: WindowContents<T>, WF> {
    spec: WindowSpec<KF, TF, Tr, C, WF>,
    /// Live windows sorted by (end, window), the order they fire in. A handful at a time
    /// (size / slide, plus those waiting out their lateness), and records mostly hit the
    /// newest: a vector searched from the back beats a tree.
    windows: Vec<WindowKeys<K, C::Acc>>,
    /// Keys of the last window that fired: a new window's map starts at that capacity
    /// instead of rehashing its way up.
    keys_hint: usize,
    watermark: Timestamp,
    /// Windows on the wall clock (`ProcessingTimeTrigger`) rather than the watermark.
    processing_time: bool,
    /// The wall clock read for the current batch: its records' time (processing time only).
    now: Timestamp,
    assigned: Vec<Window>,
    /// Fired entries of one window, sorted by key before they fire (reused).
    firing: Vec<(K, C::Acc)>,
    emit: WindowEmit<T, Out>,
    ctx: OperatorCtx,
}

/// Whether windows of `assigner` under `trigger` are aligned: same boundaries for every key
/// (tumbling or sliding), fired only when their clock passes their end — the watermark in
/// event time, the wall clock in processing time.
pub(crate) fn is_aligned<T, Tr: Trigger<T>>(
    assigner: &crate::window::WindowAssigner,
    trigger: &Tr,
) -> bool {
    let shape = matches!(
        assigner.kind(),
        AssignerKind::Tumbling { .. } | AssignerKind::Sliding { .. }
    );
    shape
        && if assigner.is_event_time() {
            trigger.fires_only_at_window_end()
        } else {
            trigger.fires_only_at_processing_time_window_end()
        }
}

impl<K, T, Out, KF, TF, Tr, C, WF> AlignedWindowOp<K, T, Out, KF, TF, Tr, C, WF>
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
    /// Restores this shard's key groups if the job resumes from a checkpoint (written by this
    /// operator or the general one).
    pub fn new(
        spec: WindowSpec<KF, TF, Tr, C, WF>,
        next: Box<dyn Push<Out>>,
        late_out: Box<dyn Push<T>>,
        ctx: OperatorCtx,
    ) -> Result<Self> {
        let processing_time = !spec.assigner.is_event_time();
        let restore = ctx.take_restore();
        if crate::checkpoint::lsm::has_references(&restore) {
            return Err(super::process::lsm_layout_refused(&ctx));
        }
        let mut windows: Vec<WindowKeys<K, C::Acc>> = Vec::new();
        for entry in restore.part(PART_KEYS).keyed::<K, KeySnapshot<C::Acc>>() {
            let (key, (contents, sessions, trigger_state)) =
                entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
            if sessions.is_some() || !trigger_state.is_empty() {
                return Err(super::process::restore_failed(
                    &ctx,
                    "the checkpoint holds session windows or trigger state, which aligned \
                     windows do not have: was the job's window assigner or trigger changed?",
                ));
            }
            for (window, acc) in contents {
                // Event time: fired unless a timer at its end says otherwise (below).
                // Processing time: a window still held has not fired (firing drops it).
                let i = window_slot(&mut windows, window, !processing_time, 0);
                windows[i].keys.insert(key.clone(), acc);
            }
        }
        for entry in restore.part(PART_TIMERS).keyed::<K, (u8, Window, i64)>() {
            let (_, (domain, window, t)) =
                entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
            if domain == 0
                && t == window.max_timestamp()
                && let Some(w) = windows.iter_mut().find(|w| w.window == window)
            {
                w.fired = false;
            }
        }
        Ok(AlignedWindowOp {
            spec,
            windows,
            keys_hint: 0,
            watermark: i64::MIN,
            processing_time,
            now: i64::MIN,
            assigned: Vec::new(),
            firing: Vec::new(),
            emit: WindowEmit::new(next, late_out, ctx.batch_size),
            ctx,
        })
    }

    /// Writes every window in the general operator's layout: per key its windows' contents,
    /// and the timers it would have. Event time: end of an unfired window, cleanup after
    /// lateness. Processing time: one processing-time timer at the end (the trigger's and
    /// the cleanup timer are the same one there).
    fn snapshot(&self, barrier: Barrier) -> Result<()> {
        let lateness = self.spec.allowed_lateness;
        let processing_time = self.processing_time;
        let mut by_key: KeyMap<&K, Vec<(Window, &C::Acc)>> = KeyMap::default();
        for w in &self.windows {
            for (key, acc) in &w.keys {
                by_key.entry(key).or_default().push((w.window, acc));
            }
        }
        let windows = &self.windows;
        self.ctx.save_state(barrier, |out| {
            out.set_part(PART_KEYS);
            for (key, contents) in &by_key {
                out.keyed_encoded(*key, |bytes| {
                    (contents.len() as u32).encode(bytes);
                    for (window, acc) in contents {
                        window.encode(bytes);
                        acc.encode(bytes);
                    }
                    None::<Vec<(TimeWindow, TimeWindow)>>.encode(bytes);
                    Vec::<(Window, &'static str, i64)>::new().encode(bytes);
                });
            }
            out.set_part(PART_TIMERS);
            for w in windows {
                if processing_time {
                    for key in w.keys.keys() {
                        out.keyed(key, &(1u8, w.window, w.end));
                    }
                    continue;
                }
                let cleanup = cleanup_time(&w.window, lateness);
                for key in w.keys.keys() {
                    if !w.fired {
                        out.keyed(key, &(0u8, w.window, w.end));
                    }
                    if cleanup != w.end && cleanup < i64::MAX {
                        out.keyed(key, &(0u8, w.window, cleanup));
                    }
                }
            }
            Ok(())
        })
    }

    fn on_record(&mut self, record: T) {
        let processing_time = self.processing_time;
        let ts = if processing_time {
            self.now
        } else {
            (self.spec.timestamp_fn)(&record)
        };
        if self.spec.assigner.assign(ts, &mut self.assigned).is_err() {
            // A timestamp no window can hold cannot be placed: it goes out as late data.
            self.emit.late(record);
            self.ctx.count_late(1);
            return;
        }
        let key = (self.spec.key_fn)(&record);
        let (watermark, lateness) = (self.watermark, self.spec.allowed_lateness);
        let last = self.assigned.len().saturating_sub(1);
        let mut slot = Some(record);
        let mut placed = false;
        for (i, window) in self.assigned.iter().enumerate() {
            let Some(record) = slot.as_ref() else { break };
            // No lateness in processing time: the clock put the record in open windows.
            if !processing_time && is_late(window, watermark, lateness) {
                continue;
            }
            placed = true;
            // Clone for every window but the last, which takes the record itself.
            let value = if i == last {
                slot.take()
            } else {
                Some(record.clone())
            };
            let Some(value) = value else { break };
            let i = window_slot(
                &mut self.windows,
                *window,
                !processing_time && window.max_timestamp() <= watermark,
                self.keys_hint,
            );
            let w = &mut self.windows[i];
            let acc = match w.keys.get_mut(&key) {
                Some(acc) => acc,
                None => w
                    .keys
                    .entry(key.clone())
                    .or_insert_with(|| self.spec.contents.create()),
            };
            self.spec.contents.add(acc, value, ts);
            if w.fired {
                // Late but within the allowed lateness: the trigger fires the update at once.
                self.spec
                    .function
                    .fire(&key, window, acc, watermark, self.emit.results());
            }
        }
        if !placed && let Some(record) = slot {
            self.emit.late(record);
            self.ctx.count_late(1);
        }
    }

    /// Fires every window whose end the watermark passed, in (end, key) order, and drops the
    /// windows whose allowed lateness is over. When one advance closes several windows, each
    /// one's results leave (with the watermark at its end) before the next one fires.
    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        if self.processing_time {
            if watermark == END_OF_TIME {
                // End of input: processing-time windows close too.
                self.fire_processing_time(i64::MAX)?;
            }
            return Ok(());
        }
        let lateness = self.spec.allowed_lateness;
        let mut i = 0;
        // The last millisecond of the window fired last in this advance, if any.
        let mut previous: Option<Timestamp> = None;
        while let Some(w) = self.windows.get_mut(i) {
            if w.end > watermark {
                break;
            }
            let window = w.window;
            let cleanup = cleanup_time(&window, lateness) <= watermark;
            if !w.fired {
                let end = w.end;
                if let Some(p) = previous.replace(end)
                    && p < end
                {
                    self.emit.window_done(p)?;
                }
                let Some(w) = self.windows.get_mut(i) else {
                    break;
                };
                self.keys_hint = w.keys.len();
                if cleanup {
                    // Fired and cleaned up at once: take the contents.
                    self.firing.extend(std::mem::take(&mut w.keys));
                    self.firing.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    let mut firing = std::mem::take(&mut self.firing);
                    for (key, acc) in firing.iter_mut() {
                        self.spec
                            .function
                            .fire(key, &window, acc, watermark, self.emit.results());
                        self.emit.flush_full()?;
                    }
                    firing.clear();
                    self.firing = firing;
                } else {
                    w.fired = true;
                    let mut entries: Vec<(&K, &mut C::Acc)> = w.keys.iter_mut().collect();
                    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (key, acc) in entries {
                        self.spec
                            .function
                            .fire(key, &window, acc, watermark, self.emit.results());
                    }
                    self.emit.flush_full()?;
                }
            }
            if cleanup {
                self.windows.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Fires and drops every processing-time window whose last millisecond is at or before
    /// `due`, in end order. Each window's map is walked once in its own (hash) order, not
    /// sorted by key as the general operator's timers fire: processing-time results depend on
    /// the wall clock anyway, and the sort would cost a pass over every key on the shard
    /// while it does nothing else.
    fn fire_processing_time(&mut self, due: Timestamp) -> Result<()> {
        while self.windows.first().is_some_and(|w| w.end <= due) {
            let w = self.windows.remove(0);
            self.keys_hint = w.keys.len();
            let window = w.window;
            for (key, mut acc) in w.keys {
                self.spec.function.fire(
                    &key,
                    &window,
                    &mut acc,
                    self.watermark,
                    self.emit.results(),
                );
                self.emit.flush_full()?;
            }
        }
        Ok(())
    }

    /// The wall clock moved to `now`: windows that ended before it fire (records stamped
    /// `now` belong to later ones), as the general operator's timers do.
    fn on_processing_time(&mut self, now: Timestamp) -> Result<()> {
        if self.processing_time {
            self.fire_processing_time(now.saturating_sub(1))?;
        }
        Ok(())
    }
}

/// The index of `window` in `windows` (sorted by end, then window), inserted in place with
/// `fired` and room for `capacity` keys if new. Searched from the back: records mostly belong
/// to the newest windows.
#[inline]
pub(super) fn window_slot<K, Acc>(
    windows: &mut Vec<WindowKeys<K, Acc>>,
    window: Window,
    fired: bool,
    capacity: usize,
) -> usize {
    let end = window.max_timestamp();
    let key = (end, window);
    let mut i = windows.len();
    while i > 0 {
        let w = &windows[i - 1];
        match (w.end, w.window).cmp(&key) {
            std::cmp::Ordering::Equal => return i - 1,
            std::cmp::Ordering::Less => break,
            std::cmp::Ordering::Greater => i -= 1,
        }
    }
    windows.insert(
        i,
        WindowKeys {
            end,
            window,
            keys: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            fired,
        },
    );
    i
}

impl<K, T, Out, KF, TF, Tr, C, WF> WindowStage for AlignedWindowOp<K, T, Out, KF, TF, Tr, C, WF>
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
    type In = T;
    type Out = Out;

    fn ctx(&self) -> &OperatorCtx {
        &self.ctx
    }

    fn emit(&mut self) -> &mut WindowEmit<Self::In, Self::Out> {
        &mut self.emit
    }

    fn begin_records(&mut self) -> Result<()> {
        if self.processing_time {
            self.now = wall_clock_ms();
            self.on_processing_time(self.now)?;
        }
        Ok(())
    }

    fn take(&mut self, input: Self::In) {
        self.on_record(input);
    }

    fn clock_moved(&mut self) -> Result<()> {
        if self.processing_time {
            self.on_processing_time(wall_clock_ms())?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<()> {
        self.on_watermark(watermark)
    }

    fn checkpoint(&self, barrier: Barrier) -> Result<()> {
        self.snapshot(barrier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{
        CountTrigger, EventTimeTrigger, ProcessingTimeTrigger, PurgingTrigger, WindowAssigner,
    };

    fn tumbling() -> WindowAssigner {
        WindowAssigner::tumbling(10, 0).expect("valid")
    }

    fn sliding() -> WindowAssigner {
        WindowAssigner::sliding(10, 5, 0).expect("valid")
    }

    #[test]
    fn aligned_windows_are_tumbling_or_sliding_fired_only_at_their_end() {
        for assigner in [tumbling(), sliding()] {
            assert!(is_aligned::<u8, _>(&assigner, &EventTimeTrigger));
            let processing = assigner.with_processing_time();
            assert!(is_aligned::<u8, _>(&processing, &ProcessingTimeTrigger));
            // Each trigger only on its own clock.
            assert!(!is_aligned::<u8, _>(&assigner, &ProcessingTimeTrigger));
            assert!(!is_aligned::<u8, _>(&processing, &EventTimeTrigger));
            // Custom triggers stay on the general operator.
            assert!(!is_aligned::<u8, _>(
                &processing,
                &PurgingTrigger(ProcessingTimeTrigger)
            ));
            assert!(!is_aligned::<u8, _>(
                &processing,
                &CountTrigger::new(3).expect("valid")
            ));
        }
        let session = WindowAssigner::session(10).expect("valid");
        assert!(!is_aligned::<u8, _>(&session, &EventTimeTrigger));
        assert!(!is_aligned::<u8, _>(
            &session.with_processing_time(),
            &ProcessingTimeTrigger
        ));
        // The global window is on processing time, but not aligned.
        assert!(!is_aligned::<u8, _>(
            &WindowAssigner::global(),
            &ProcessingTimeTrigger
        ));
    }
}
