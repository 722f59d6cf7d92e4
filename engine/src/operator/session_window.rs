//! The window operator for event-time session windows under the default trigger, with no
//! allowed lateness.
//!
//! Every record of a session moves the session's end, and the general [`super::WindowOp`]
//! follows each move with the trigger's timers: delete the old end's timers, register the new
//! ones, merge the window sets — several hash-set operations per record. Here each key keeps
//! its open sessions in a short vector sorted by start (disjoint, so also by end) and has at
//! most one timer, registered *lazily*: it may be earlier than the key's first session end.
//! When it fires early, it is moved to that end (a later timestamp, so it still fires in order
//! during the same watermark advance); when it fires on time, the session fires and the timer
//! moves to the next one. A session extended by many records therefore costs one timer per
//! watermark advance instead of several per record.
//!
//! Results, their order and the checkpoint layout are the general operator's (merged contents
//! are folded into the earliest merged session's, as `MergingWindowSet` does), so either
//! operator restores the other's snapshot.

use std::hash::Hash;

use smallvec::SmallVec;

use super::window::{KeySnapshot, PART_KEYS};
use super::window_emit::{WindowEmit, WindowStage};
use super::{Push, WindowContents, WindowFunction, WindowSpec};
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::key::KeyMap;
use crate::runtime::OperatorCtx;
use crate::state::StateCodec;
use crate::time::Timestamp;
use crate::window::{TimeWindow, TimerService, Trigger, Window, WindowAssigner};

/// One open session of a key.
struct Session<Acc> {
    window: TimeWindow,
    acc: Acc,
}

/// A key's open sessions (disjoint, sorted by start) and the time of its one timer.
struct KeySessions<Acc> {
    /// Most keys have one open session: it lives in the key's map entry, so a record costs
    /// one cache miss (the hash probe) instead of two (probe, then the vector's heap block):
    /// measured as 18% of this operator's time on q11 with a `Vec`.
    sessions: SmallVec<[Session<Acc>; 1]>,
    /// At or before the first session's end; `None` once the key has no session.
    timer: Option<Timestamp>,
}

/// Whether `assigner` under `trigger` with `allowed_lateness` can run on the session operator.
pub(crate) fn is_plain_session<T, Tr: Trigger<T>>(
    assigner: &WindowAssigner,
    trigger: &Tr,
    allowed_lateness: u64,
) -> bool {
    assigner.is_merging()
        && assigner.is_event_time()
        && trigger.fires_only_at_window_end()
        && allowed_lateness == 0
}

/// The session-window operator (see the module docs).
pub struct SessionWindowOp<K, T, Out, KF, TF, Tr, C: WindowContents<T>, WF> {
    spec: WindowSpec<KF, TF, Tr, C, WF>,
    keys: KeyMap<K, KeySessions<C::Acc>>,
    timers: TimerService<K, ()>,
    watermark: Timestamp,
    assigned: Vec<Window>,
    emit: WindowEmit<T, Out>,
    ctx: OperatorCtx,
}

impl<K, T, Out, KF, TF, Tr, C, WF> SessionWindowOp<K, T, Out, KF, TF, Tr, C, WF>
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
    /// operator or the general one: sessions and their state windows' contents).
    pub fn new(
        spec: WindowSpec<KF, TF, Tr, C, WF>,
        next: Box<dyn Push<Out>>,
        late_out: Box<dyn Push<T>>,
        ctx: OperatorCtx,
    ) -> Result<Self> {
        let restore = ctx.take_restore();
        if crate::checkpoint::lsm::has_references(&restore) {
            return Err(super::process::lsm_layout_refused(&ctx));
        }
        let mut keys: KeyMap<K, KeySessions<C::Acc>> = KeyMap::default();
        let mut timers = TimerService::new();
        for entry in restore.part(PART_KEYS).keyed::<K, KeySnapshot<C::Acc>>() {
            let (key, (mut contents, sessions, trigger_state)) =
                entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
            if !trigger_state.is_empty() {
                return Err(super::process::restore_failed(
                    &ctx,
                    "the checkpoint holds trigger state, which the event-time trigger does not \
                     keep: was the job's trigger changed?",
                ));
            }
            let mut open = Vec::new();
            for (window, state_window) in sessions.unwrap_or_default() {
                let at = contents
                    .iter()
                    .position(|(w, _)| *w == Window::Time(state_window));
                if let Some(i) = at {
                    let (_, acc) = contents.swap_remove(i);
                    open.push(Session { window, acc });
                }
            }
            open.sort_unstable_by_key(|s| s.window.start);
            if let Some(first) = open.first() {
                let at = first.window.max_timestamp();
                timers.register_event_time(key.clone(), (), at);
                keys.insert(
                    key,
                    KeySessions {
                        sessions: SmallVec::from_vec(open),
                        timer: Some(at),
                    },
                );
            }
        }
        Ok(SessionWindowOp {
            spec,
            keys,
            timers,
            watermark: i64::MIN,
            assigned: Vec::new(),
            emit: WindowEmit::new(next, late_out, ctx.batch_size),
            ctx,
        })
    }

    /// Writes every key's sessions in the general operator's layout: each session is its own
    /// state window, with the timer the event-time trigger would hold at its end.
    fn snapshot(&self, barrier: Barrier) -> Result<()> {
        let keys = &self.keys;
        self.ctx.save_state(barrier, |out| {
            out.set_part(PART_KEYS);
            for (key, k) in keys {
                out.keyed_encoded(key, |bytes| {
                    (k.sessions.len() as u32).encode(bytes);
                    for s in &k.sessions {
                        Window::Time(s.window).encode(bytes);
                        s.acc.encode(bytes);
                    }
                    let pairs: Vec<(TimeWindow, TimeWindow)> =
                        k.sessions.iter().map(|s| (s.window, s.window)).collect();
                    Some(pairs).encode(bytes);
                    Vec::<(Window, &'static str, i64)>::new().encode(bytes);
                });
            }
            out.set_part(super::window::PART_TIMERS);
            for (key, k) in keys {
                for s in &k.sessions {
                    let window = Window::Time(s.window);
                    out.keyed(key, &(0u8, window, s.window.max_timestamp()));
                }
            }
            Ok(())
        })
    }

    fn on_record(&mut self, record: T) {
        let ts = (self.spec.timestamp_fn)(&record);
        let new = match self.spec.assigner.assign(ts, &mut self.assigned) {
            Ok(()) => match self.assigned.first() {
                Some(Window::Time(w)) => *w,
                _ => {
                    self.emit.late(record);
                    self.ctx.count_late(1);
                    return;
                }
            },
            Err(_) => {
                // A timestamp no window can hold cannot be placed: it goes out as late data.
                self.emit.late(record);
                self.ctx.count_late(1);
                return;
            }
        };
        let key = (self.spec.key_fn)(&record);
        let watermark = self.watermark;
        let state = match self.keys.get_mut(&key) {
            Some(state) => state,
            None => self.keys.entry(key.clone()).or_insert(KeySessions {
                sessions: SmallVec::new(),
                timer: None,
            }),
        };
        // The sessions `new` shares a millisecond with: a contiguous run (disjoint, sorted).
        let sessions = &mut state.sessions;
        let hi = sessions.partition_point(|s| s.window.start < new.end);
        let mut lo = hi;
        while lo > 0 && sessions[lo - 1].window.intersects(&new) {
            lo -= 1;
        }
        let merged = sessions[lo..hi].iter().fold(new, |w, s| w.cover(&s.window));
        if merged.max_timestamp() <= watermark {
            // Already late as a whole (no allowed lateness): the general operator retires it
            // with its contents, so do the same.
            sessions.drain(lo..hi);
            self.emit.late(record);
            self.ctx.count_late(1);
            self.forget_if_empty(&key);
            return;
        }
        let index = if lo == hi {
            let acc = self.spec.contents.create();
            sessions.insert(
                lo,
                Session {
                    window: merged,
                    acc,
                },
            );
            lo
        } else {
            // Fold the later sessions into the earliest one, in start order.
            for _ in lo + 1..hi {
                let s = sessions.remove(lo + 1);
                self.spec.contents.merge(&mut sessions[lo].acc, s.acc);
            }
            sessions[lo].window = merged;
            lo
        };
        self.spec.contents.add(&mut sessions[index].acc, record, ts);
        // The key's timer must not be later than its first session's end.
        let first_end = sessions[0].window.max_timestamp();
        if state.timer.is_none_or(|t| t > first_end) {
            if let Some(t) = state.timer {
                self.timers.delete_event_time(&key, &(), t);
            }
            self.timers.register_event_time(key, (), first_end);
            state.timer = Some(first_end);
        }
    }

    /// Drops a key without sessions (and its timer).
    fn forget_if_empty(&mut self, key: &K) {
        if let Some(state) = self.keys.get(key)
            && state.sessions.is_empty()
        {
            if let Some(t) = state.timer {
                self.timers.delete_event_time(key, &(), t);
            }
            self.keys.remove(key);
        }
    }

    /// Fires every session whose end the watermark passed, in (end, key) order.
    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        while let Some(timer) = self.timers.pop_event_time(watermark) {
            let key = timer.key;
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            state.timer = None;
            let Some(first) = state.sessions.first() else {
                self.keys.remove(&key);
                continue;
            };
            let end = first.window.max_timestamp();
            if end == timer.timestamp {
                let mut session = state.sessions.remove(0);
                let window = Window::Time(session.window);
                self.spec.function.fire(
                    &key,
                    &window,
                    &mut session.acc,
                    watermark,
                    self.emit.results(),
                );
            }
            // On time or early: the timer moves to the (next) first session's end, which is
            // later than this one, so it fires in order within this same advance if due.
            match state.sessions.first() {
                Some(next) => {
                    let at = next.window.max_timestamp();
                    self.timers.register_event_time(key, (), at);
                    state.timer = Some(at);
                }
                None => {
                    self.keys.remove(&key);
                }
            }
            self.emit.flush_full()?;
        }
        Ok(())
    }
}

impl<K, T, Out, KF, TF, Tr, C, WF> WindowStage for SessionWindowOp<K, T, Out, KF, TF, Tr, C, WF>
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

    fn take(&mut self, input: Self::In) {
        self.on_record(input);
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<()> {
        self.on_watermark(watermark)
    }

    fn checkpoint(&self, barrier: Barrier) -> Result<()> {
        self.snapshot(barrier)
    }
}
