//! The keyed window operator: assigns records to windows, keeps per (key, window) contents,
//! asks the trigger when to emit, and cleans windows up once the watermark passes their end
//! plus the allowed lateness. Records later than that go to the `late` side output and are
//! counted, never silently dropped.
//!
//! Contents are either an incremental accumulator (`aggregate`, `reduce`) or the buffered
//! records (`process`): both behind `WindowContents`. Session windows merge through
//! `MergingWindowSet`; their contents and trigger state merge with them.
//!
//! Per-key state lives where the job's state backend says (`KeyStates`): objects on the heap
//! backend, the keyed-state store on the LSM backend. Timers stay in memory on both.

use std::hash::Hash;
use std::time::Instant;

use super::{AggregateFunction, Push, guarded};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::error::Result;
use crate::key::KeyMap;
use crate::runtime::OperatorCtx;
use crate::state::{
    KeyedStateStore, MapState, MapStateDescriptor, StateCodec, StateError, ValueState,
    ValueStateDescriptor,
};
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
    /// True if the contents are records that only accumulate between firings, so that
    /// `merge` of the contents added in pieces is the contents added at once: on the LSM
    /// backend each piece is then appended to a list per window (no read, no rewrite of the
    /// window per record) instead of stored inside the key's windows.
    const APPENDS: bool = false;
    /// True if `acc` holds nothing (only asked when `APPENDS`).
    fn is_empty(&self, _acc: &Self::Acc) -> bool {
        false
    }
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
    const APPENDS: bool = true;
    fn is_empty(&self, acc: &Vec<T>) -> bool {
        acc.is_empty()
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
    const APPENDS: bool = true;
    fn is_empty(&self, acc: &Self::Acc) -> bool {
        acc.is_empty()
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

/// One key's windows encoded as `KeySnapshot`: the checkpoint entry of the heap layout and
/// the value of the LSM layout are the same bytes.
impl<Acc: StateCodec> StateCodec for KeyWindows<Acc> {
    fn encode(&self, out: &mut Vec<u8>) {
        // In place, without building a `KeySnapshot` (no copy of the contents).
        (self.contents.len() as u32).encode(out);
        for (window, acc) in &self.contents {
            window.encode(out);
            acc.encode(out);
        }
        match &self.sessions {
            None => out.push(0),
            Some(sessions) => {
                out.push(1);
                (sessions.len() as u32).encode(out);
                for (window, state_window) in sessions.pairs() {
                    window.encode(out);
                    state_window.encode(out);
                }
            }
        }
        self.trigger_state.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> std::result::Result<Self, StateError> {
        let (contents, sessions, trigger_state) = KeySnapshot::<Acc>::decode_from(input)?;
        Ok(KeyWindows {
            contents,
            sessions: sessions.map(MergingWindowSet::from_pairs),
            trigger_state,
        })
    }
}

/// Where the operator keeps every key's windows, chosen once in `new` by the job's state
/// backend; one enum branch per access, no dynamic dispatch.
///
/// The LSM layout is one `ValueState<KeyWindows>` per key rather than a `MapState` keyed by
/// window: a record touches all of its key's open windows anyway (sliding windows: several;
/// sessions: the merging set and every merged window), so one read and one write per record
/// and key is the fewest store operations, and the heap layout's logic runs unchanged on it.
/// Buffered contents (`process` windows, `WindowContents::APPENDS`) are the exception: the
/// records added by one call are written as one *piece*, an entry of a `MapState` per (key,
/// state window) under its sequence number (counted in the key's value), read back in order
/// only when the window fires or merges, so a window of n records costs O(n), not O(n²).
/// (Not a `ListState`: the store folds each list append into the memtable's entry for the
/// list, a copy of the whole list per append.)
enum KeyStates<K, T, C: WindowContents<T>> {
    /// Objects in a map (heap backend): no encoding per record.
    Heap(KeyMap<K, KeyWindows<C::Acc>>),
    /// Encoded in the operator's keyed-state store (LSM backend), so windows can outgrow
    /// memory and checkpoint as the store's files.
    Lsm(Box<LsmWindows<T, C>>),
}

/// One key's value on the LSM layout: its windows, and how many pieces of buffered records
/// each state window has stored (windows with none are left out).
struct LsmKey<Acc> {
    windows: KeyWindows<Acc>,
    pieces: Vec<(Window, u32)>,
}

impl<Acc: StateCodec> StateCodec for LsmKey<Acc> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.windows.encode(out);
        self.pieces.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> std::result::Result<Self, StateError> {
        Ok(LsmKey {
            windows: KeyWindows::decode_from(input)?,
            pieces: Vec::decode_from(input)?,
        })
    }
}

/// The LSM layout's store and state handles.
struct LsmWindows<T, C: WindowContents<T>> {
    store: KeyedStateStore,
    windows: ValueState<LsmKey<C::Acc>>,
    /// Pieces of buffered records per (key, state window), if the contents append.
    lists: Option<MapState<u32, C::Acc>>,
    /// The operator's contents (a copy), to rebuild buffered contents from their pieces.
    contents: C,
    max_parallelism: u32,
    _t: std::marker::PhantomData<fn(T)>,
}

/// A window's stored pieces, numbered in the order they were written.
type StoredPieces<Acc> = Vec<(u32, Acc)>;

/// Contents kept outside `KeyWindows`: buffered records of the LSM layout, in pieces per
/// (key, state window). Inside `KeyWindows` such a window holds only the records added since
/// it was last stored; `load` makes it whole before it is fired or merged, `discard` drops
/// the stored part with the window.
enum Lists<'a, K, T, C: WindowContents<T>> {
    /// Everything is in `KeyWindows` (heap layout; accumulators on LSM).
    InPlace,
    /// Buffered records on the LSM layout.
    Lsm {
        key: &'a K,
        group: u32,
        lsm: &'a mut LsmWindows<T, C>,
        map: MapState<u32, C::Acc>,
        /// Stored pieces per state window (the key's `LsmKey::pieces`).
        pieces: &'a mut Vec<(Window, u32)>,
    },
}

impl<K: StateCodec, T, C: WindowContents<T>> Lists<'_, K, T, C>
where
    C::Acc: StateCodec,
{
    /// Makes `acc`, the pending records of `window`, the window's whole contents: the stored
    /// pieces (taken out of the store, in order) followed by the pending ones.
    #[inline]
    fn load(&mut self, window: &Window, acc: &mut C::Acc) -> std::result::Result<(), StateError> {
        let Some(stored) = self.take_stored(window, true)? else {
            return Ok(());
        };
        let Lists::Lsm { lsm, .. } = self else {
            return Ok(());
        };
        let mut whole = lsm.contents.create();
        for (_, piece) in stored {
            lsm.contents.merge(&mut whole, piece);
        }
        let pending = std::mem::replace(acc, whole);
        lsm.contents.merge(acc, pending);
        Ok(())
    }

    /// Drops what is stored of `window`'s contents (the window was purged or is gone).
    #[inline]
    fn discard(&mut self, window: &Window) -> std::result::Result<(), StateError> {
        self.take_stored(window, false).map(drop)
    }

    /// Removes `window`'s stored pieces from the store (point deletes: one tombstone per
    /// piece, as many as were written); returns them in order if `read`, or `None` if the
    /// window has nothing stored.
    fn take_stored(
        &mut self,
        window: &Window,
        read: bool,
    ) -> std::result::Result<Option<StoredPieces<C::Acc>>, StateError> {
        let Lists::Lsm {
            key,
            group,
            lsm,
            map,
            pieces,
        } = self
        else {
            return Ok(None);
        };
        let Some(i) = pieces.iter().position(|(w, _)| w == window) else {
            return Ok(None);
        };
        let (_, count) = pieces.swap_remove(i);
        lsm.store.set_current_key_with(*group, |buf| {
            key.encode(buf);
            window.encode(buf);
        });
        let stored = if read {
            map.iter(&mut lsm.store)?
        } else {
            Vec::new()
        };
        for n in 0..count {
            map.remove(&mut lsm.store, &n)?;
        }
        Ok(Some(stored))
    }
}

impl<K, T, C> KeyStates<K, T, C>
where
    K: Hash + Eq + Clone + StateCodec,
    C: WindowContents<T>,
    C::Acc: StateCodec,
{
    /// Runs `f` on `key`'s windows and keeps what it leaves: a key left without windows is
    /// dropped. A key without windows starts empty if `create` says whether its assigner
    /// merges; with `create == None`, `f` is not called for it and the result is `None`.
    #[inline]
    fn with_key<R>(
        &mut self,
        key: &K,
        create: Option<bool>,
        f: impl FnOnce(
            &mut KeyWindows<C::Acc>,
            &mut Lists<'_, K, T, C>,
        ) -> std::result::Result<R, StateError>,
    ) -> std::result::Result<Option<R>, StateError> {
        match self {
            KeyStates::Heap(keys) => {
                let state = match create {
                    Some(merging) => keys
                        .entry(key.clone())
                        .or_insert_with(|| KeyWindows::new(merging)),
                    None => match keys.get_mut(key) {
                        Some(state) => state,
                        None => return Ok(None),
                    },
                };
                let r = f(state, &mut Lists::InPlace);
                if state.is_empty() {
                    keys.remove(key);
                }
                r.map(Some)
            }
            KeyStates::Lsm(lsm) => {
                let group = crate::key::key_group(key, lsm.max_parallelism);
                lsm.store.set_current_key_with(group, |buf| key.encode(buf));
                let (stored, existed) = match lsm.windows.get(&mut lsm.store)? {
                    Some(stored) => (stored, true),
                    None => match create {
                        Some(merging) => (
                            LsmKey {
                                windows: KeyWindows::new(merging),
                                pieces: Vec::new(),
                            },
                            false,
                        ),
                        None => return Ok(None),
                    },
                };
                let LsmKey {
                    windows: mut state,
                    mut pieces,
                } = stored;
                let handle = lsm.windows;
                let r = match lsm.lists {
                    None => f(&mut state, &mut Lists::InPlace)?,
                    Some(map) => {
                        let r = f(
                            &mut state,
                            &mut Lists::Lsm {
                                key,
                                group,
                                lsm,
                                map,
                                pieces: &mut pieces,
                            },
                        )?;
                        // Pending records become their window's next piece; the key's
                        // windows keep empty contents (they only say which windows exist).
                        for (window, acc) in &mut state.contents {
                            if lsm.contents.is_empty(acc) {
                                continue;
                            }
                            let pending = std::mem::replace(acc, lsm.contents.create());
                            let n = match pieces.iter_mut().find(|(w, _)| w == window) {
                                Some((_, count)) => count,
                                None => {
                                    pieces.push((*window, 0));
                                    match pieces.last_mut() {
                                        Some((_, count)) => count,
                                        None => continue,
                                    }
                                }
                            };
                            lsm.store.set_current_key_with(group, |buf| {
                                key.encode(buf);
                                window.encode(buf);
                            });
                            map.put(&mut lsm.store, n, &pending)?;
                            *n += 1;
                        }
                        lsm.store.set_current_key_with(group, |buf| key.encode(buf));
                        r
                    }
                };
                let stored = LsmKey {
                    windows: state,
                    pieces,
                };
                if !stored.windows.is_empty() {
                    handle.set(&mut lsm.store, &stored)?;
                } else if existed {
                    handle.clear(&mut lsm.store)?;
                }
                Ok(Some(r))
            }
        }
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
    keys: KeyStates<K, T, C>,
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
    /// Keeps the windows where the job's state backend says (see `KeyStates`) and restores
    /// them and the timers of this shard's key groups if the job resumes from a checkpoint
    /// (the LSM store was already restored from its files when it was opened).
    pub fn new(
        spec: WindowSpec<KF, TF, Tr, C, WF>,
        next: Box<dyn Push<Out>>,
        late_out: Box<dyn Push<T>>,
        ctx: OperatorCtx,
        max_parallelism: u32,
    ) -> Result<Self> {
        let restore = ctx.take_restore();
        let backend = ctx.take_state_backend();
        let keys = if backend.as_lsm().is_some() {
            let mut store = KeyedStateStore::new(backend);
            let windows = store
                .value_state(&ValueStateDescriptor::new("window-contents"))
                .map_err(|e| super::process::failed(&ctx, format!("open: {e}")))?;
            if !restore.part(PART_KEYS).is_empty() {
                return Err(super::process::restore_failed(
                    &ctx,
                    StateError::BackendLayout {
                        what: "window contents",
                        written: "heap",
                    },
                ));
            }
            let lists = if C::APPENDS {
                Some(
                    store
                        .map_state(&MapStateDescriptor::new("window-records"))
                        .map_err(|e| super::process::failed(&ctx, format!("open: {e}")))?,
                )
            } else {
                None
            };
            KeyStates::Lsm(Box::new(LsmWindows {
                store,
                windows,
                lists,
                contents: spec.contents.clone(),
                max_parallelism,
                _t: std::marker::PhantomData,
            }))
        } else {
            if crate::checkpoint::lsm::has_references(&restore) {
                return Err(super::process::lsm_layout_refused(&ctx));
            }
            let mut keys: KeyMap<K, KeyWindows<C::Acc>> = KeyMap::default();
            for entry in restore.part(PART_KEYS).keyed::<K, KeyWindows<C::Acc>>() {
                let (key, windows) = entry.map_err(|e| super::process::restore_failed(&ctx, e))?;
                keys.insert(key, windows);
            }
            KeyStates::Heap(keys)
        };
        let mut timers = TimerService::new();
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

    /// Writes every key's windows (heap layout: one entry per key; LSM layout: the store's
    /// file snapshot) and every timer into the checkpoint. Timers stay in memory on both
    /// backends, as Flink keeps heap timers beside RocksDB state.
    fn snapshot(&self, barrier: Barrier) -> Result<()> {
        let (keys, timers, ctx) = (&self.keys, &self.timers, &self.ctx);
        self.ctx.save_state(barrier, |out| {
            match keys {
                KeyStates::Heap(keys) => {
                    out.set_part(PART_KEYS);
                    for (key, w) in keys.iter() {
                        out.keyed_encoded(key, |bytes| w.encode(bytes));
                    }
                }
                KeyStates::Lsm(lsm) => super::process::snapshot_keyed_store(
                    &lsm.store,
                    ctx,
                    barrier,
                    lsm.max_parallelism,
                    out,
                )?,
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

    /// Places one record in its windows; a storage error fails the operator.
    fn on_record(&mut self, record: T, now: Timestamp) -> std::result::Result<(), StateError> {
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
            return Ok(());
        }
        let key = (self.spec.key_fn)(&record);
        let merging = self.spec.assigner.is_merging();
        let watermark = self.watermark;
        let assigned = std::mem::take(&mut self.assigned);
        let (spec, timers, out) = (&mut self.spec, &mut self.timers, &mut self.out.records);
        let mut slot = Some(record);
        let placed = self.keys.with_key(&key, Some(merging), |state, lists| {
            place(
                state, lists, &key, &assigned, &mut slot, ts, watermark, spec, timers, out,
            )
        });
        self.assigned = assigned;
        if !placed?.unwrap_or(false)
            && let Some(record) = slot
        {
            self.late.records.push(record);
            self.ctx.count_late(1);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark)?;
        if watermark == END_OF_TIME {
            // End of input: processing-time windows close too.
            self.fire(TimeDomain::ProcessingTime, i64::MAX)?;
        }
        Ok(())
    }

    /// Fires the timers of `domain` due at `time`, in order, and cleans up windows whose
    /// cleanup timer it was. Results leave in batch-size pieces as they fill up, so a firing
    /// of many keys streams out instead of leaving as one huge batch.
    fn fire(&mut self, domain: TimeDomain, time: Timestamp) -> Result<()> {
        let event_time = self.spec.assigner.is_event_time();
        let lateness = if event_time {
            self.spec.allowed_lateness
        } else {
            0
        };
        let cleanup_domain = if event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
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
            let (spec, timers, out) = (&mut self.spec, &mut self.timers, &mut self.out.records);
            let fired = self.keys.with_key(&key, None, |state, lists| {
                let state_window = match (&window, state.sessions.as_ref()) {
                    (Window::Time(tw), Some(sessions)) => match sessions.state_window(tw) {
                        Some(sw) => Window::Time(sw),
                        // Merged away: its timers are stale.
                        None => return Ok(()),
                    },
                    _ => window,
                };
                let mut tctx = Ctx::new(&key, window, watermark, timers, &mut state.trigger_state);
                let result = match domain {
                    TimeDomain::EventTime => {
                        spec.trigger
                            .on_event_time(timer.timestamp, &window, &mut tctx)
                    }
                    TimeDomain::ProcessingTime => {
                        spec.trigger
                            .on_processing_time(timer.timestamp, &window, &mut tctx)
                    }
                };
                handle(
                    result,
                    &key,
                    &window,
                    &state_window,
                    state,
                    lists,
                    spec,
                    watermark,
                    out,
                )?;
                if domain == cleanup_domain && timer.timestamp == cleanup_time(&window, lateness) {
                    let mut tctx =
                        Ctx::new(&key, window, watermark, timers, &mut state.trigger_state);
                    spec.trigger.clear(&window, &mut tctx);
                    if state.take_contents(&state_window).is_some() {
                        lists.discard(&state_window)?;
                    }
                    state.trigger_state.retain(|(w, _, _)| *w != window);
                    if let (Window::Time(tw), Some(sessions)) = (&window, state.sessions.as_mut()) {
                        sessions.retire_window(tw);
                    }
                }
                Ok(())
            });
            fired.map_err(|e| super::process::failed(&self.ctx, e.to_string()))?;
            if self.out.len() >= self.ctx.batch_size {
                self.out.ingest = self.last_ingest;
                self.next.push(&mut self.out)?;
            }
        }
        Ok(())
    }

    /// Processing time moved to `now`: fire what is due (checked once per batch). Records of
    /// this batch are stamped `now`, so only windows ending before `now` may close.
    fn on_processing_time(&mut self, now: Timestamp) -> Result<()> {
        let due = now.saturating_sub(1);
        if self.timers.next_processing_time().is_some_and(|t| t <= due) {
            self.fire(TimeDomain::ProcessingTime, due)?;
        }
        Ok(())
    }
}

/// Adds the record in `slot` to the `assigned` windows of `key` (whose windows are `state`),
/// running the trigger for each; takes the record out of `slot` for the last window. Returns
/// false if no window took it (late).
#[allow(clippy::too_many_arguments)]
#[inline]
fn place<K, T, Out, KF, TF, Tr, C, WF>(
    state: &mut KeyWindows<C::Acc>,
    lists: &mut Lists<'_, K, T, C>,
    key: &K,
    assigned: &[Window],
    slot: &mut Option<T>,
    ts: Timestamp,
    watermark: Timestamp,
    spec: &mut WindowSpec<KF, TF, Tr, C, WF>,
    timers: &mut TimerService<K, Window>,
    out: &mut Vec<Out>,
) -> std::result::Result<bool, StateError>
where
    K: Ord + Hash + Clone + StateCodec,
    T: Clone,
    Tr: Trigger<T>,
    C: WindowContents<T>,
    C::Acc: StateCodec,
    WF: WindowFunction<K, C::Acc, Out>,
{
    let event_time = spec.assigner.is_event_time();
    let merging = spec.assigner.is_merging();
    let lateness = spec.allowed_lateness;
    let last = assigned.len().saturating_sub(1);
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
                    lists,
                    &spec.trigger,
                    key,
                    watermark,
                    timers,
                    &mut spec.contents,
                    lateness,
                );
                state.sessions = Some(sessions);
                match merged? {
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
            && spec.trigger.repeat_elements_are_no_ops();
        let result = if skip {
            TriggerResult::Continue
        } else {
            let mut tctx = Ctx::new(key, window, watermark, timers, &mut state.trigger_state);
            spec.trigger.on_element(record, ts, &window, &mut tctx)
        };
        // Clone for every window but the last, which takes the record itself.
        let value = if i == last {
            slot.take()
        } else {
            Some(record.clone())
        };
        if fresh {
            let acc = spec.contents.create();
            state.contents.push((state_window, acc));
        }
        if let (Some(contents), Some(v)) = (state.contents_mut(&state_window), value) {
            spec.contents.add(contents, v, ts);
        }
        // A window needs one cleanup timer: registered when its contents are created, and
        // again for sessions, whose end moves as they grow.
        let cleanup = cleanup_time(&window, if event_time { lateness } else { 0 });
        if (fresh || merging) && cleanup < i64::MAX {
            if event_time {
                timers.register_event_time(key.clone(), window, cleanup);
            } else {
                timers.register_processing_time(key.clone(), window, cleanup);
            }
        }
        handle(
            result,
            key,
            &window,
            &state_window,
            state,
            lists,
            spec,
            watermark,
            out,
        )?;
    }
    Ok(placed)
}

/// Adds a session window to the key's set, merging contents and trigger state of the windows
/// it joins. Returns (window, state window), or None if the merged window is already late.
#[allow(clippy::too_many_arguments)]
fn merge_session<K, T, Tr, C>(
    new: TimeWindow,
    sessions: &mut MergingWindowSet,
    state: &mut KeyWindows<C::Acc>,
    lists: &mut Lists<'_, K, T, C>,
    trigger: &Tr,
    key: &K,
    watermark: Timestamp,
    timers: &mut TimerService<K, Window>,
    contents: &mut C,
    lateness: u64,
) -> std::result::Result<Option<(Window, Window)>, StateError>
where
    K: Ord + Hash + Clone + StateCodec,
    Tr: Trigger<T>,
    C: WindowContents<T>,
    C::Acc: StateCodec,
{
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
            let sw = Window::Time(*sw);
            if let Some(mut other) = state.take_contents(&sw) {
                // Whole, and out of its list: it moves into the state window's.
                lists.load(&sw, &mut other)?;
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
        if state.take_contents(&state_window).is_some() {
            lists.discard(&state_window)?;
        }
        return Ok(None);
    }
    Ok(Some((window, state_window)))
}

/// Applies a trigger's verdict to one window.
#[allow(clippy::too_many_arguments)]
fn handle<K, T, Out, KF, TF, Tr, C, WF>(
    result: TriggerResult,
    key: &K,
    window: &Window,
    state_window: &Window,
    state: &mut KeyWindows<C::Acc>,
    lists: &mut Lists<'_, K, T, C>,
    spec: &mut WindowSpec<KF, TF, Tr, C, WF>,
    watermark: Timestamp,
    out: &mut Vec<Out>,
) -> std::result::Result<(), StateError>
where
    K: StateCodec,
    C: WindowContents<T>,
    C::Acc: StateCodec,
    WF: WindowFunction<K, C::Acc, Out>,
{
    if result.is_fire()
        && let Some(acc) = state.contents_mut(state_window)
    {
        lists.load(state_window, acc)?;
        spec.function.fire(key, window, acc, watermark, out);
    }
    if result.is_purge() && state.take_contents(state_window).is_some() {
        lists.discard(state_window)?;
    }
    Ok(())
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
            self.on_processing_time(now)?;
            for r in batch.records.drain(..) {
                self.on_record(r, now)
                    .map_err(|e| super::process::failed(&ctx, e.to_string()))?;
            }
            Ok(())
        })??;
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
        if let Progress::Watermark(_) | Progress::Tick(_) = progress {
            let ctx = self.ctx.clone();
            guarded(&ctx, || {
                self.on_processing_time(wall_clock_ms())?;
                match progress {
                    Progress::Watermark(w) => self.on_watermark(w),
                    _ => Ok(()),
                }
            })??;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::state::{StateBackendConfig, tiny_lsm};
    use crate::window::CountTrigger;
    use crate::{Env, VecSource, WatermarkStrategy};

    /// (key, event time).
    type Rec = (u8, i64);
    /// (key, window start, window's last ms) -> (records, sum of their times).
    type Table = BTreeMap<(u8, i64, i64), (i64, i64)>;
    /// Firings as (key, start, last ms, records, sum of times), sorted.
    type Firings = Vec<(u8, i64, i64, i64, i64)>;

    /// Counts records and sums their times.
    #[derive(Clone, Copy)]
    struct CountSum;

    impl AggregateFunction<Rec> for CountSum {
        type Acc = (i64, i64);
        type Out = (i64, i64);
        fn create_accumulator(&self) -> (i64, i64) {
            (0, 0)
        }
        fn add(&mut self, acc: &mut (i64, i64), r: Rec) {
            acc.0 += 1;
            acc.1 += r.1;
        }
        fn get_result(&self, acc: &(i64, i64)) -> (i64, i64) {
            *acc
        }
        fn merge(&self, acc: &mut (i64, i64), other: (i64, i64)) {
            acc.0 += other.0;
            acc.1 += other.1;
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Tumbling(i64),
        Sliding(i64, i64),
        Session(i64),
        Global,
    }

    fn assigner(kind: Kind) -> WindowAssigner {
        match kind {
            Kind::Tumbling(size) => WindowAssigner::tumbling(size, 0),
            Kind::Sliding(size, slide) => WindowAssigner::sliding(size, slide, 0),
            Kind::Session(gap) => WindowAssigner::session(gap),
            Kind::Global => Ok(WindowAssigner::global()),
        }
        .expect("valid window")
    }

    /// The windows of every kind computed the plain way, over all records at once.
    fn reference(kind: Kind, input: &[Rec]) -> Table {
        let mut out = Table::new();
        let mut add = |k: u8, start: i64, last: i64, t: i64| {
            let e = out.entry((k, start, last)).or_insert((0, 0));
            e.0 += 1;
            e.1 += t;
        };
        match kind {
            Kind::Tumbling(size) | Kind::Sliding(size, _) => {
                let slide = match kind {
                    Kind::Sliding(_, slide) => slide,
                    _ => size,
                };
                for &(k, t) in input {
                    let mut start = t - t.rem_euclid(slide);
                    while start > t - size {
                        add(k, start, start + size - 1, t);
                        start -= slide;
                    }
                }
            }
            Kind::Session(gap) => {
                let mut by_key: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
                for &(k, t) in input {
                    by_key.entry(k).or_default().push(t);
                }
                for (k, mut ts) in by_key {
                    ts.sort_unstable();
                    let mut session: Vec<i64> = Vec::new();
                    for t in ts {
                        if let Some(&last) = session.last()
                            && t - last > gap
                        {
                            for &s in &session {
                                add(k, session[0], last + gap, s);
                            }
                            session.clear();
                        }
                        session.push(t);
                    }
                    if let (Some(&first), Some(&last)) = (session.first(), session.last()) {
                        for &s in &session {
                            add(k, first, last + gap, s);
                        }
                    }
                }
            }
            Kind::Global => {
                for &(k, t) in input {
                    add(k, i64::MIN, i64::MAX, t);
                }
            }
        }
        out
    }

    fn backend(lsm: bool, dir: &std::path::Path) -> StateBackendConfig {
        if lsm {
            tiny_lsm(dir)
        } else {
            StateBackendConfig::Heap
        }
    }

    /// Runs `input` through a window of `kind` (disorder up to `bound` ms: nothing is late),
    /// incrementally (`aggregate`) or buffered (`process`), on the chosen backend.
    fn run(
        kind: Kind,
        input: &[Rec],
        bound: i64,
        buffered: bool,
        shards: usize,
        lsm: bool,
    ) -> Firings {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Env::builder()
            .cores(shards)
            .batch_size(4)
            .state_backend(backend(lsm, dir.path()))
            .build()
            .expect("env");
        let strategy = WatermarkStrategy::bounded_out_of_orderness(
            Duration::from_millis(bound as u64),
            |r: &Rec| r.1,
        );
        let windowed = env
            .from_source_with_watermarks(VecSource::new(input.to_vec()), strategy)
            .key_by(|r: &Rec| r.0)
            .window(assigner(kind), |r: &Rec| r.1);
        let fired = if buffered {
            windowed.process(|k: &u8, w: &Window, rs: &[Rec], out: &mut Vec<_>| {
                let (start, last) = match w {
                    Window::Time(t) => (t.start, w.max_timestamp()),
                    Window::Global => (i64::MIN, i64::MAX),
                };
                out.push((
                    *k,
                    start,
                    last,
                    rs.len() as i64,
                    rs.iter().map(|r| r.1).sum(),
                ));
            })
        } else {
            windowed
                .aggregate(CountSum)
                .map(|r: WindowResult<u8, (i64, i64)>| {
                    (r.key, r.start(), r.max_timestamp(), r.value.0, r.value.1)
                })
        }
        .collect();
        env.execute().expect("job runs");
        let mut fired = fired.take();
        fired.sort_unstable();
        fired
    }

    fn kinds() -> impl Strategy<Value = Kind> {
        prop_oneof![
            (1i64..20).prop_map(Kind::Tumbling),
            (1i64..20, 1i64..20).prop_filter_map("slide <= size", |(a, b)| (b <= a)
                .then_some(Kind::Sliding(a, b))),
            (1i64..15).prop_map(Kind::Session),
            Just(Kind::Global),
        ]
    }

    /// Sorted times pulled back by up to `bound`: each record is at most `bound` behind the
    /// largest time before it, so a watermark `bound` behind never makes one late.
    fn disordered(bound: i64) -> impl Strategy<Value = Vec<Rec>> {
        prop::collection::vec((0u8..4, -50i64..150, 0..=bound), 1..200).prop_map(|mut v| {
            v.sort_by_key(|r| r.1);
            v.into_iter().map(|(k, t, back)| (k, t - back)).collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Every assigner kind (sessions merge out of order), incremental and buffered
        /// contents, on both backends (the LSM one with 4 KiB memtables, so its stores flush
        /// and compact during the job), against the sequential reference.
        #[test]
        fn windows_match_the_reference_on_both_backends(
            kind in kinds(),
            (bound, input) in (0i64..8).prop_flat_map(|b| (Just(b), disordered(b))),
            buffered in any::<bool>(),
            shards in 1usize..3,
            lsm in any::<bool>(),
        ) {
            let got = run(kind, &input, bound, buffered, shards, lsm);
            let table: Table = got.iter().map(|f| ((f.0, f.1, f.2), (f.3, f.4))).collect();
            prop_assert_eq!(got.len(), table.len(), "a window fired twice");
            prop_assert_eq!(table, reference(kind, &input));
        }
    }

    /// A purging count trigger keeps its count in the trigger state: per (key, window), one
    /// firing of `n` records per full `n`, whatever the order, on both backends.
    #[test]
    fn count_trigger_state_lives_in_the_backend() {
        let input: Vec<Rec> = (0..400)
            .map(|i| ((i % 7) as u8, (i * 13 % 97) as i64))
            .collect();
        let n = 3;
        for lsm in [false, true] {
            for kind in [Kind::Tumbling(20), Kind::Sliding(30, 10), Kind::Global] {
                let dir = tempfile::tempdir().expect("tempdir");
                let env = Env::builder()
                    .cores(2)
                    .batch_size(8)
                    .state_backend(backend(lsm, dir.path()))
                    .build()
                    .expect("env");
                let fired = env
                    .from_source_with_watermarks(
                        VecSource::new(input.clone()),
                        WatermarkStrategy::bounded_out_of_orderness(
                            Duration::from_millis(100),
                            |r: &Rec| r.1,
                        ),
                    )
                    .key_by(|r: &Rec| r.0)
                    .window(assigner(kind), |r: &Rec| r.1)
                    .trigger(CountTrigger::purging(n).expect("n > 0"))
                    .aggregate(CountSum)
                    .map(|r: WindowResult<u8, (i64, i64)>| (r.key, r.start(), r.value.0))
                    .collect();
                env.execute().expect("job runs");
                let mut got: BTreeMap<(u8, i64), Vec<i64>> = BTreeMap::new();
                for (k, start, count) in fired.take() {
                    got.entry((k, start)).or_default().push(count);
                }
                let mut expected: BTreeMap<(u8, i64), Vec<i64>> = BTreeMap::new();
                for ((k, start, _), (count, _)) in reference(kind, &input) {
                    let firings = count / n as i64;
                    if firings > 0 {
                        expected.insert((k, start), vec![n as i64; firings as usize]);
                    }
                }
                assert_eq!(got, expected, "{kind:?}, lsm: {lsm}");
            }
        }
    }

    /// Buffered session windows with a count evictor keep the last records in arrival order:
    /// the LSM layout (records appended to a list per window, lists moved on every merge)
    /// hands the function the same records in the same order as the heap layout.
    #[test]
    fn buffered_sessions_keep_record_order_on_both_backends() {
        // Per key and block: three sessions (gap 6), then records between them that bridge
        // them into one (merges of several stored windows).
        let mut input: Vec<Rec> = Vec::new();
        for block in 0..40i64 {
            let base = block * 100;
            for offset in [0, 1, 10, 11, 20, 21, 5, 15, 2] {
                for k in 0..3u8 {
                    input.push((k, base + offset + i64::from(k)));
                }
            }
        }
        let run_on = |lsm: bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let env = Env::builder()
                .cores(1)
                .batch_size(3)
                .state_backend(backend(lsm, dir.path()))
                .build()
                .expect("env");
            let fired = env
                .from_source_with_watermarks(
                    VecSource::new(input.clone()),
                    WatermarkStrategy::bounded_out_of_orderness(
                        Duration::from_millis(250),
                        |r: &Rec| r.1,
                    ),
                )
                .key_by(|r: &Rec| r.0)
                .window(assigner(Kind::Session(6)), |r: &Rec| r.1)
                .evict_and_process(
                    crate::window::CountEvictor::new(3).expect("max > 0"),
                    |k: &u8, w: &Window, rs: &[TimestampedValue<Rec>], out: &mut Vec<_>| {
                        let times: Vec<i64> = rs.iter().map(|r| r.value.1).collect();
                        out.push((*k, w.max_timestamp(), times));
                    },
                )
                .collect();
            env.execute().expect("job runs");
            let mut fired = fired.take();
            fired.sort_unstable();
            fired
        };
        let heap = run_on(false);
        // One session per key and block, of 9 records, of which the function sees 3.
        assert_eq!(heap.len(), 3 * 40);
        assert!(heap.iter().all(|f| f.2.len() == 3), "{heap:?}");
        assert_eq!(run_on(true), heap);
    }

    /// A count trigger fires buffered windows as records arrive: the records added in the
    /// same call come after the stored ones, as on the heap (the evictor keeps the last 3).
    #[test]
    fn early_firings_see_stored_records_first() {
        let input: Vec<Rec> = (0..300).map(|i: i64| ((i % 3) as u8, i / 2)).collect();
        let run_on = |lsm: bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let env = Env::builder()
                .cores(1)
                .batch_size(5)
                .state_backend(backend(lsm, dir.path()))
                .build()
                .expect("env");
            let fired = env
                .from_source_with_watermarks(
                    VecSource::new(input.clone()),
                    WatermarkStrategy::monotonous(|r: &Rec| r.1),
                )
                .key_by(|r: &Rec| r.0)
                .window(assigner(Kind::Tumbling(40)), |r: &Rec| r.1)
                .trigger(CountTrigger::new(4).expect("n > 0"))
                .evict_and_process(
                    crate::window::CountEvictor::new(3).expect("max > 0"),
                    |k: &u8, w: &Window, rs: &[TimestampedValue<Rec>], out: &mut Vec<_>| {
                        let times: Vec<i64> = rs.iter().map(|r| r.value.1).collect();
                        out.push((*k, w.max_timestamp(), times));
                    },
                )
                .collect();
            env.execute().expect("job runs");
            fired.take()
        };
        let heap = run_on(false);
        assert!(heap.len() > 20, "early firings: {}", heap.len());
        assert_eq!(run_on(true), heap);
    }

    /// Buffered records on the LSM layout: pieces come back whole and in order, a load takes
    /// them out of the store, and a window that is gone leaves no entry behind.
    #[test]
    fn buffered_pieces_load_in_order_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crate::state::StateBackendConfig::Lsm(config) = tiny_lsm(dir.path()) else {
            panic!("tiny_lsm is an LSM config")
        };
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor");
        ex.run(async move {
            let lsm = crate::state::open_lsm(dir.path(), &config)
                .await
                .expect("open store");
            let mut store = KeyedStateStore::new(crate::state::JobStateBackend::Lsm(lsm));
            let windows = store
                .value_state(&ValueStateDescriptor::new("window-contents"))
                .expect("declare");
            let lists = store
                .map_state(&MapStateDescriptor::new("window-records"))
                .expect("declare");
            let mut keys: KeyStates<u32, Rec, Buffer> = KeyStates::Lsm(Box::new(LsmWindows {
                store,
                windows,
                lists: Some(lists),
                contents: Buffer,
                max_parallelism: 128,
                _t: std::marker::PhantomData,
            }));
            let w = Window::Global;
            let add = |keys: &mut KeyStates<u32, Rec, Buffer>, t: i64| {
                keys.with_key(&1, Some(false), |state, _| {
                    if state.contents_mut(&w).is_none() {
                        state.contents.push((w, Vec::new()));
                    }
                    if let Some(acc) = state.contents_mut(&w) {
                        acc.push((1, t));
                    }
                    Ok(())
                })
                .expect("add");
            };
            let load = |keys: &mut KeyStates<u32, Rec, Buffer>| -> Vec<i64> {
                let loaded = keys.with_key(&1, None, |state, lists| match state.contents_mut(&w) {
                    Some(acc) => {
                        lists.load(&w, acc)?;
                        Ok(acc.iter().map(|r| r.1).collect())
                    }
                    None => Ok(Vec::new()),
                });
                loaded.expect("load").expect("key has windows")
            };
            for t in 0..10 {
                add(&mut keys, t);
            }
            assert_eq!(load(&mut keys), (0..10).collect::<Vec<_>>());
            for t in 10..12 {
                add(&mut keys, t);
            }
            // The first load's records are one piece now; nothing of the old ten is left.
            assert_eq!(load(&mut keys), (0..12).collect::<Vec<_>>());
            keys.with_key(&1, None, |state, lists| {
                if state.take_contents(&w).is_some() {
                    lists.discard(&w)?;
                }
                Ok(())
            })
            .expect("discard");
            let KeyStates::Lsm(lsm) = &keys else {
                panic!("LSM layout")
            };
            assert_eq!(
                crate::state::StateBackend::len(lsm.store.backend()),
                0,
                "entries left behind"
            );
        });
    }

    /// A storage error reading a key's windows reaches the caller (the operator fails with
    /// it): the function is not run on made-up empty windows.
    #[test]
    fn a_corrupt_entry_is_an_error_not_empty_windows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crate::state::StateBackendConfig::Lsm(config) = tiny_lsm(dir.path()) else {
            panic!("tiny_lsm is an LSM config")
        };
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor");
        ex.run(async move {
            let lsm = crate::state::open_lsm(dir.path(), &config)
                .await
                .expect("open store");
            let mut store = KeyedStateStore::new(crate::state::JobStateBackend::Lsm(lsm));
            let windows: ValueState<LsmKey<(i64, i64)>> = store
                .value_state(&ValueStateDescriptor::new("window-contents"))
                .expect("declare");
            // The same state written with another type: one byte, not a `KeyWindows`.
            let raw: ValueState<u8> = store
                .value_state(&ValueStateDescriptor::new("window-contents"))
                .expect("redeclare");
            let max_parallelism = 128;
            store.set_current_key_with(crate::key::key_group(&5u32, max_parallelism), |b| {
                5u32.encode(b)
            });
            raw.set(&mut store, &7).expect("write");
            let mut keys: KeyStates<u32, Rec, Incremental<CountSum>> =
                KeyStates::Lsm(Box::new(LsmWindows {
                    store,
                    windows,
                    lists: None,
                    contents: Incremental(CountSum),
                    max_parallelism,
                    _t: std::marker::PhantomData,
                }));
            let mut called = false;
            let r = keys.with_key(&5, Some(false), |_, _| {
                called = true;
                Ok(())
            });
            assert!(r.is_err(), "corrupt windows decoded: {:?}", r.is_ok());
            assert!(!called);
            // Another key is unaffected, and what it leaves is read back.
            keys.with_key(&6, Some(false), |w, _| {
                w.contents.push((Window::Global, (1, 9)));
                Ok(())
            })
            .expect("write key 6");
            let back = keys
                .with_key(&6, None, |w, _| Ok(w.contents.clone()))
                .expect("read key 6");
            assert_eq!(back, Some(vec![(Window::Global, (1, 9))]));
        });
    }
}
