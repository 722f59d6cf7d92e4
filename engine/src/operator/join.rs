//! Reusable joins on keyed connected streams, written as keyed co-process functions:
//! a regular (unbounded) inner join, a window join, and an interval join. All emit
//! `(left, right)` pairs.

use std::collections::BTreeMap;
use std::hash::Hash;

use super::{KeyedCoProcessFunction, ProcessContext};
use crate::checkpoint::{StateRestore, StateSnapshot};
use crate::key::KeyMap;
use crate::state::{StateCodec, StateError};
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

/// Regular inner join: every record is kept forever (per key) and joined with every record of
/// the other side with the same key, whenever it arrives. Output is insert-only.
#[derive(Clone)]
pub struct RegularJoin<K, A, B> {
    state: KeyMap<K, Sides<A, B>>,
}

impl<K, A, B> Default for RegularJoin<K, A, B> {
    fn default() -> Self {
        RegularJoin {
            state: KeyMap::default(),
        }
    }
}

impl<K, A, B> KeyedCoProcessFunction<K, A, B, (A, B)> for RegularJoin<K, A, B>
where
    K: Hash + Eq + Clone + Send + StateCodec + 'static,
    A: Clone + Send + StateCodec + 'static,
    B: Clone + Send + StateCodec + 'static,
{
    fn process_left(&mut self, key: &K, a: A, ctx: &mut ProcessContext<'_, (A, B)>) {
        let sides = self.state.entry(key.clone()).or_default();
        for b in &sides.right {
            ctx.emit((a.clone(), b.clone()));
        }
        sides.left.push(a);
    }

    fn process_right(&mut self, key: &K, b: B, ctx: &mut ProcessContext<'_, (A, B)>) {
        let sides = self.state.entry(key.clone()).or_default();
        for a in &sides.left {
            ctx.emit((a.clone(), b.clone()));
        }
        sides.right.push(b);
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        self.state = state.key_map()?;
        Ok(())
    }
}

/// Window join: records of both sides with the same key in the same window are paired when
/// the window closes (the watermark passes its end).
#[derive(Clone)]
pub struct WindowJoin<K, A, B, TA, TB> {
    assigner: WindowAssigner,
    ts_left: TA,
    ts_right: TB,
    /// (window, key) → both sides; ordered by window end so closed windows pop first.
    windows: BTreeMap<(Timestamp, Window, K), Sides<A, B>>,
    scratch: Vec<Window>,
    late: u64,
}

impl<K, A, B, TA, TB> WindowJoin<K, A, B, TA, TB> {
    /// A window join over `assigner`'s windows (tumbling or sliding), with each side's time.
    pub fn new(assigner: WindowAssigner, ts_left: TA, ts_right: TB) -> Self {
        WindowJoin {
            assigner,
            ts_left,
            ts_right,
            windows: BTreeMap::new(),
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
{
    fn add(
        &mut self,
        key: &K,
        ts: Timestamp,
        watermark: Option<Timestamp>,
        put: &mut dyn FnMut(&mut Sides<A, B>, bool),
    ) {
        let mut windows = std::mem::take(&mut self.scratch);
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
                let sides = self.windows.entry((end, *w, key.clone())).or_default();
                put(sides, i == last);
            }
            if !placed {
                self.late += 1;
            }
        }
        self.scratch = windows;
    }
}

impl<K, A, B, TA, TB> KeyedCoProcessFunction<K, A, B, (A, B)> for WindowJoin<K, A, B, TA, TB>
where
    K: Ord + Hash + Clone + Send + StateCodec + 'static,
    A: Clone + Send + StateCodec + 'static,
    B: Clone + Send + StateCodec + 'static,
    TA: Fn(&A) -> Timestamp + Clone + Send + 'static,
    TB: Fn(&B) -> Timestamp + Clone + Send + 'static,
{
    fn process_left(&mut self, key: &K, a: A, ctx: &mut ProcessContext<'_, (A, B)>) {
        let ts = (self.ts_left)(&a);
        let mut slot = Some(a);
        self.add(key, ts, ctx.current_watermark(), &mut |sides, last| {
            let v = if last { slot.take() } else { slot.clone() };
            sides.left.extend(v);
        });
    }

    fn process_right(&mut self, key: &K, b: B, ctx: &mut ProcessContext<'_, (A, B)>) {
        let ts = (self.ts_right)(&b);
        let mut slot = Some(b);
        self.add(key, ts, ctx.current_watermark(), &mut |sides, last| {
            let v = if last { slot.take() } else { slot.clone() };
            sides.right.extend(v);
        });
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
            self.windows.insert((end, window, key), sides);
        }
        Ok(())
    }
}

/// Interval join: pairs `a` with every `b` of the same key whose time lies in
/// `[ts(a) + lower, ts(a) + upper]`. Records are kept until the watermark shows no partner can
/// still arrive.
#[derive(Clone)]
pub struct IntervalJoin<K, A, B, TA, TB> {
    lower: i64,
    upper: i64,
    ts_left: TA,
    ts_right: TB,
    state: KeyMap<K, Timed<A, B>>,
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
            state: KeyMap::default(),
        })
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
    fn process_left(&mut self, key: &K, a: A, ctx: &mut ProcessContext<'_, (A, B)>) {
        let ta = (self.ts_left)(&a);
        let (lo, hi) = (ta.saturating_add(self.lower), ta.saturating_add(self.upper));
        let (lefts, rights) = self.state.entry(key.clone()).or_default();
        for (tb, b) in rights.iter() {
            if (lo..=hi).contains(tb) {
                ctx.emit((a.clone(), b.clone()));
            }
        }
        lefts.push((ta, a));
    }

    fn process_right(&mut self, key: &K, b: B, ctx: &mut ProcessContext<'_, (A, B)>) {
        let tb = (self.ts_right)(&b);
        let (lefts, rights) = self.state.entry(key.clone()).or_default();
        for (ta, a) in lefts.iter() {
            if (ta.saturating_add(self.lower)..=ta.saturating_add(self.upper)).contains(&tb) {
                ctx.emit((a.clone(), b.clone()));
            }
        }
        rights.push((tb, b));
    }

    fn on_watermark(&mut self, watermark: Timestamp, _ctx: &mut ProcessContext<'_, (A, B)>) {
        // Records still to come have times above the watermark. A left at `ta` can meet rights
        // up to `ta + upper`; a right at `tb` can meet lefts up to `tb - lower`.
        let (lower, upper) = (self.lower, self.upper);
        self.state.retain(|_, (lefts, rights)| {
            lefts.retain(|(ta, _)| ta.saturating_add(upper) > watermark);
            rights.retain(|(tb, _)| tb.saturating_sub(lower) > watermark);
            !(lefts.is_empty() && rights.is_empty())
        });
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        self.state = state.key_map()?;
        Ok(())
    }
}
