//! Reusable joins on keyed connected streams, written as keyed co-process functions:
//! a regular (unbounded) inner join, a window join, and an interval join. All emit
//! `(left, right)` pairs.
//!
//! Where the waiting records live follows the job's state backend, as for deduplication: on
//! the heap backend as objects in the function's fields (a hash lookup per record,
//! checkpointed through `snapshot_state`); on the LSM backend in two `ListState`s per key (a
//! record is appended without reading: the store's merge operator), so a join's state can
//! outgrow memory and checkpoints as the store's files. Expiry (interval join) and window
//! firing (window join on the LSM backend) run on per-key event-time timers.

use std::collections::BTreeMap;
use std::hash::Hash;

use super::{KeyedCoProcessFunction, ProcessContext};
use crate::checkpoint::{StateRestore, StateSnapshot};
use crate::segmented::SegmentedMap;
use crate::state::{KeyedStateStore, ListState, ListStateDescriptor, StateCodec, StateError};
use crate::time::Timestamp;
use crate::window::{Window, WindowAssigner};

/// Both sides of one key.
#[derive(Clone)]
struct Sides<A, B> {
    left: Vec<A>,
    right: Vec<B>,
}

impl<A: StateCodec, B: StateCodec> StateCodec for Sides<A, B> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.left.encode(out);
        self.right.encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(Sides {
            left: Vec::decode_from(input)?,
            right: Vec::decode_from(input)?,
        })
    }
}

impl<A, B> Default for Sides<A, B> {
    fn default() -> Self {
        Sides {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// The two lists of a join's key on the LSM backend (declared in `open`).
struct ManagedSides<A, B> {
    left: ListState<A>,
    right: ListState<B>,
}

impl<A, B> Clone for ManagedSides<A, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, B> Copy for ManagedSides<A, B> {}

/// The lists of `join` if the job runs on the LSM backend, none on the heap backend.
fn managed_sides<A: StateCodec, B: StateCodec>(
    store: &mut KeyedStateStore,
    join: &str,
) -> Result<Option<ManagedSides<A, B>>, StateError> {
    if store.backend().as_lsm().is_none() {
        return Ok(None);
    }
    Ok(Some(ManagedSides {
        left: store.list_state(&ListStateDescriptor::new(format!("{join}-left")))?,
        right: store.list_state(&ListStateDescriptor::new(format!("{join}-right")))?,
    }))
}

/// Regular inner join: every record is kept forever (per key) and joined with every record of
/// the other side with the same key, whenever it arrives. Output is insert-only.
pub struct RegularJoin<K, A, B> {
    state: SegmentedMap<K, Sides<A, B>>,
    managed: Option<ManagedSides<A, B>>,
}

impl<K: Clone, A: Clone, B: Clone> Clone for RegularJoin<K, A, B> {
    fn clone(&self) -> Self {
        RegularJoin {
            state: self.state.clone(),
            managed: self.managed,
        }
    }
}

impl<K, A, B> Default for RegularJoin<K, A, B> {
    fn default() -> Self {
        RegularJoin {
            state: SegmentedMap::default(),
            managed: None,
        }
    }
}

impl<K, A, B> KeyedCoProcessFunction<K, A, B, (A, B)> for RegularJoin<K, A, B>
where
    K: Hash + Eq + Clone + Send + StateCodec + 'static,
    A: Clone + Send + StateCodec + 'static,
    B: Clone + Send + StateCodec + 'static,
{
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.managed = managed_sides(store, "regular-join")?;
        Ok(())
    }

    fn process_left(&mut self, key: &K, a: A, ctx: &mut ProcessContext<'_, (A, B)>) {
        if let Some(m) = self.managed {
            let stored = ctx.state().and_then(|store| {
                let rights = m.right.get(store)?;
                m.left.add(store, &a)?;
                Ok(rights)
            });
            match stored {
                Ok(rights) => rights.into_iter().for_each(|b| ctx.emit((a.clone(), b))),
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let sides = self.state.get_or_insert_with(key, Default::default);
        for b in &sides.right {
            ctx.emit((a.clone(), b.clone()));
        }
        sides.left.push(a);
    }

    fn process_right(&mut self, key: &K, b: B, ctx: &mut ProcessContext<'_, (A, B)>) {
        if let Some(m) = self.managed {
            let stored = ctx.state().and_then(|store| {
                let lefts = m.left.get(store)?;
                m.right.add(store, &b)?;
                Ok(lefts)
            });
            match stored {
                Ok(lefts) => lefts.into_iter().for_each(|a| ctx.emit((a, b.clone()))),
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let sides = self.state.get_or_insert_with(key, Default::default);
        for a in &sides.left {
            ctx.emit((a.clone(), b.clone()));
        }
        sides.right.push(b);
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let rows: SegmentedMap<K, Sides<A, B>> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !rows.is_empty(), "join rows")?;
        self.state = rows;
        Ok(())
    }
}

/// Window join: records of both sides with the same key in the same window are paired when
/// the window closes (the watermark passes its end).
pub struct WindowJoin<K, A, B, TA, TB> {
    assigner: WindowAssigner,
    ts_left: TA,
    ts_right: TB,
    /// (window, key) → both sides; ordered by window end so closed windows pop first.
    windows: BTreeMap<(Timestamp, Window, K), Sides<A, B>>,
    /// On the LSM backend: per key, each side's (window, record), fired by a timer at the
    /// window's end.
    managed: Option<ManagedSides<(Window, A), (Window, B)>>,
    scratch: Vec<Window>,
    late: u64,
}

impl<K: Clone, A: Clone, B: Clone, TA: Clone, TB: Clone> Clone for WindowJoin<K, A, B, TA, TB> {
    fn clone(&self) -> Self {
        WindowJoin {
            assigner: self.assigner,
            ts_left: self.ts_left.clone(),
            ts_right: self.ts_right.clone(),
            windows: self.windows.clone(),
            managed: self.managed,
            scratch: Vec::new(),
            late: self.late,
        }
    }
}

impl<K, A, B, TA, TB> WindowJoin<K, A, B, TA, TB> {
    /// A window join over `assigner`'s windows (tumbling or sliding), with each side's time.
    pub fn new(assigner: WindowAssigner, ts_left: TA, ts_right: TB) -> Self {
        WindowJoin {
            assigner,
            ts_left,
            ts_right,
            windows: BTreeMap::new(),
            managed: None,
            scratch: Vec::new(),
            late: 0,
        }
    }

    /// Records dropped because their windows had already closed (or their time had none).
    pub fn late_records(&self) -> u64 {
        self.late
    }
}

impl<K, A, B, TA, TB> WindowJoin<K, A, B, TA, TB>
where
    K: Ord + Clone,
    A: StateCodec,
    B: StateCodec,
{
    /// Places a record of time `ts` in each of its windows that is still open: `put` stores it
    /// (`last`: the final window, which may take the record itself).
    fn add<Out>(
        &mut self,
        key: &K,
        ts: Timestamp,
        ctx: &mut ProcessContext<'_, Out>,
        mut put: impl FnMut(Place<'_, A, B>, bool) -> Result<(), StateError>,
    ) {
        let mut windows = std::mem::take(&mut self.scratch);
        let watermark = ctx.current_watermark();
        if self.assigner.assign(ts, &mut windows).is_err() {
            self.late += 1;
        } else {
            let mut placed = false;
            let last = windows.len().saturating_sub(1);
            for (i, w) in windows.iter().enumerate() {
                let end = w.max_timestamp();
                if watermark.is_some_and(|wm| end <= wm) {
                    continue;
                }
                placed = true;
                let stored = match self.managed {
                    Some(m) => {
                        ctx.register_event_time_timer(end);
                        ctx.state()
                            .and_then(|store| put(Place::Lists(m, store, *w), i == last))
                    }
                    None => {
                        let sides = self.windows.entry((end, *w, key.clone())).or_default();
                        put(Place::Sides(sides), i == last)
                    }
                };
                if let Err(e) = stored {
                    ctx.fail(e);
                    break;
                }
            }
            if !placed {
                self.late += 1;
            }
        }
        self.scratch = windows;
    }
}

/// Where a window join stores one record for one window.
enum Place<'a, A, B> {
    Sides(&'a mut Sides<A, B>),
    Lists(
        ManagedSides<(Window, A), (Window, B)>,
        &'a mut KeyedStateStore,
        Window,
    ),
}

impl<K, A, B, TA, TB> KeyedCoProcessFunction<K, A, B, (A, B)> for WindowJoin<K, A, B, TA, TB>
where
    K: Ord + Hash + Clone + Send + StateCodec + 'static,
    A: Clone + Send + StateCodec + 'static,
    B: Clone + Send + StateCodec + 'static,
    TA: Fn(&A) -> Timestamp + Clone + Send + 'static,
    TB: Fn(&B) -> Timestamp + Clone + Send + 'static,
{
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.managed = managed_sides(store, "window-join")?;
        Ok(())
    }

    fn process_left(&mut self, key: &K, a: A, ctx: &mut ProcessContext<'_, (A, B)>) {
        let ts = (self.ts_left)(&a);
        let mut slot = Some(a);
        self.add(key, ts, ctx, |place, last| {
            let v = if last { slot.take() } else { slot.clone() };
            match (place, v) {
                (Place::Sides(sides), v) => sides.left.extend(v),
                (Place::Lists(m, store, w), Some(v)) => m.left.add(store, &(w, v))?,
                (Place::Lists(..), None) => {}
            }
            Ok(())
        });
    }

    fn process_right(&mut self, key: &K, b: B, ctx: &mut ProcessContext<'_, (A, B)>) {
        let ts = (self.ts_right)(&b);
        let mut slot = Some(b);
        self.add(key, ts, ctx, |place, last| {
            let v = if last { slot.take() } else { slot.clone() };
            match (place, v) {
                (Place::Sides(sides), v) => sides.right.extend(v),
                (Place::Lists(m, store, w), Some(v)) => m.right.add(store, &(w, v))?,
                (Place::Lists(..), None) => {}
            }
            Ok(())
        });
    }

    /// LSM layout: the windows of `key` ending at `end` closed; pair their records in arrival
    /// order and keep the rest.
    fn on_timer(&mut self, _key: &K, end: Timestamp, ctx: &mut ProcessContext<'_, (A, B)>) {
        let Some(m) = self.managed else { return };
        let fired = ctx.state().and_then(|store| {
            let due = |w: &Window| w.max_timestamp() <= end;
            let (lefts, kept_left): (Vec<_>, Vec<_>) =
                m.left.get(store)?.into_iter().partition(|(w, _)| due(w));
            let (rights, kept_right): (Vec<_>, Vec<_>) =
                m.right.get(store)?.into_iter().partition(|(w, _)| due(w));
            m.left.update(store, &kept_left)?;
            m.right.update(store, &kept_right)?;
            Ok((lefts, rights))
        });
        match fired {
            Ok((lefts, rights)) => {
                for (wa, a) in &lefts {
                    for (_, b) in rights.iter().filter(|(wb, _)| wb == wa) {
                        ctx.emit((a.clone(), b.clone()));
                    }
                }
            }
            Err(e) => ctx.fail(e),
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, (A, B)>) {
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let sides = entry.remove();
            for a in &sides.left {
                for b in &sides.right {
                    ctx.emit((a.clone(), b.clone()));
                }
            }
        }
    }

    /// Each open window's two sides, keyed by the join key.
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for ((end, window, key), sides) in &self.windows {
            out.keyed_encoded(key, |bytes| {
                end.encode(bytes);
                window.encode(bytes);
                sides.encode(bytes);
            });
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        for entry in state.keyed::<K, (Timestamp, Window, Sides<A, B>)>() {
            let (key, (end, window, sides)) = entry?;
            StateError::refuse_heap_rows(self.managed.is_some(), true, "join rows")?;
            self.windows.insert((end, window, key), sides);
        }
        Ok(())
    }
}

/// Interval join: pairs `a` with every `b` of the same key whose time lies in
/// `[ts(a) + lower, ts(a) + upper]`. A record is kept until the watermark shows no partner
/// can still arrive: a per-key event-time timer at that time drops it.
pub struct IntervalJoin<K, A, B, TA, TB> {
    lower: i64,
    upper: i64,
    ts_left: TA,
    ts_right: TB,
    state: SegmentedMap<K, Timed<A, B>>,
    managed: Option<ManagedSides<(Timestamp, A), (Timestamp, B)>>,
}

impl<K: Clone, A: Clone, B: Clone, TA: Clone, TB: Clone> Clone for IntervalJoin<K, A, B, TA, TB> {
    fn clone(&self) -> Self {
        IntervalJoin {
            lower: self.lower,
            upper: self.upper,
            ts_left: self.ts_left.clone(),
            ts_right: self.ts_right.clone(),
            state: self.state.clone(),
            managed: self.managed,
        }
    }
}

/// Both sides of one key of an interval join, with their times.
type Timed<A, B> = (Vec<(Timestamp, A)>, Vec<(Timestamp, B)>);

impl<K, A, B, TA, TB> IntervalJoin<K, A, B, TA, TB> {
    /// An interval join with bounds in ms (`lower <= upper`; either may be negative).
    pub fn new(
        lower: i64,
        upper: i64,
        ts_left: TA,
        ts_right: TB,
    ) -> Result<Self, crate::WeirError> {
        if lower > upper {
            return Err(crate::WeirError::Config(format!(
                "interval join: lower bound {lower} is above upper bound {upper}"
            )));
        }
        Ok(IntervalJoin {
            lower,
            upper,
            ts_left,
            ts_right,
            state: SegmentedMap::default(),
            managed: None,
        })
    }

    /// When a left record at `ta` can meet no right still to come (their times exceed the
    /// watermark), and likewise a right at `tb`.
    fn left_expiry(&self, ta: Timestamp) -> Timestamp {
        ta.saturating_add(self.upper)
    }
    fn right_expiry(&self, tb: Timestamp) -> Timestamp {
        tb.saturating_sub(self.lower)
    }
}

impl<K, A, B, TA, TB> KeyedCoProcessFunction<K, A, B, (A, B)> for IntervalJoin<K, A, B, TA, TB>
where
    K: Hash + Eq + Clone + Send + StateCodec + 'static,
    A: Clone + Send + StateCodec + 'static,
    B: Clone + Send + StateCodec + 'static,
    TA: Fn(&A) -> Timestamp + Clone + Send + 'static,
    TB: Fn(&B) -> Timestamp + Clone + Send + 'static,
{
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.managed = managed_sides(store, "interval-join")?;
        Ok(())
    }

    fn process_left(&mut self, key: &K, a: A, ctx: &mut ProcessContext<'_, (A, B)>) {
        let ta = (self.ts_left)(&a);
        let (lo, hi) = (ta.saturating_add(self.lower), ta.saturating_add(self.upper));
        ctx.register_event_time_timer(self.left_expiry(ta));
        if let Some(m) = self.managed {
            let stored = ctx.state().and_then(|store| {
                let rights = m.right.get(store)?;
                m.left.add(store, &(ta, a.clone()))?;
                Ok(rights)
            });
            match stored {
                Ok(rights) => rights
                    .into_iter()
                    .filter(|(tb, _)| (lo..=hi).contains(tb))
                    .for_each(|(_, b)| ctx.emit((a.clone(), b))),
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let (lefts, rights) = self.state.get_or_insert_with(key, Default::default);
        for (tb, b) in rights.iter() {
            if (lo..=hi).contains(tb) {
                ctx.emit((a.clone(), b.clone()));
            }
        }
        lefts.push((ta, a));
    }

    fn process_right(&mut self, key: &K, b: B, ctx: &mut ProcessContext<'_, (A, B)>) {
        let tb = (self.ts_right)(&b);
        let (lower, upper) = (self.lower, self.upper);
        let meets = move |ta: Timestamp| {
            (ta.saturating_add(lower)..=ta.saturating_add(upper)).contains(&tb)
        };
        ctx.register_event_time_timer(self.right_expiry(tb));
        if let Some(m) = self.managed {
            let stored = ctx.state().and_then(|store| {
                let lefts = m.left.get(store)?;
                m.right.add(store, &(tb, b.clone()))?;
                Ok(lefts)
            });
            match stored {
                Ok(lefts) => lefts
                    .into_iter()
                    .filter(|(ta, _)| meets(*ta))
                    .for_each(|(_, a)| ctx.emit((a, b.clone()))),
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let (lefts, rights) = self.state.get_or_insert_with(key, Default::default);
        for (ta, a) in lefts.iter() {
            if meets(*ta) {
                ctx.emit((a.clone(), b.clone()));
            }
        }
        rights.push((tb, b));
    }

    /// The watermark reached `t`: drop the key's records that expire by then.
    fn on_timer(&mut self, key: &K, t: Timestamp, ctx: &mut ProcessContext<'_, (A, B)>) {
        let (lower, upper) = (self.lower, self.upper);
        let left_live = move |ta: &Timestamp| ta.saturating_add(upper) > t;
        let right_live = move |tb: &Timestamp| tb.saturating_sub(lower) > t;
        if let Some(m) = self.managed {
            let cleaned = ctx.state().and_then(|store| {
                let mut lefts = m.left.get(store)?;
                let mut rights = m.right.get(store)?;
                let before = (lefts.len(), rights.len());
                lefts.retain(|(ta, _)| left_live(ta));
                rights.retain(|(tb, _)| right_live(tb));
                if lefts.len() != before.0 {
                    m.left.update(store, &lefts)?;
                }
                if rights.len() != before.1 {
                    m.right.update(store, &rights)?;
                }
                Ok(())
            });
            if let Err(e) = cleaned {
                ctx.fail(e);
            }
            return;
        }
        if let Some((lefts, rights)) = self.state.get_mut(key) {
            lefts.retain(|(ta, _)| left_live(ta));
            rights.retain(|(tb, _)| right_live(tb));
            if lefts.is_empty() && rights.is_empty() {
                self.state.remove(key);
            }
        }
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let rows: SegmentedMap<K, Timed<A, B>> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !rows.is_empty(), "join rows")?;
        self.state = rows;
        Ok(())
    }
}
