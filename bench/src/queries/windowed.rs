//! The windowed queries: q5 (hot items), q7 (highest bid), q11 (user sessions).

use std::collections::BTreeMap;
use std::time::Duration;

use weir::checkpoint::{StateRestore, StateSnapshot};
use weir::key::KeyMap;
use weir::nexmark::{Bid, Event, Str};
use weir::operator::{AggregateFunction, WindowResult};
use weir::state::{KeyedStateStore, StateCodec, StateError, ValueState, ValueStateDescriptor};
use weir::window::{Window, WindowAssigner};
use weir::{CsvRecord, KeyedProcessFunction, ProcessContext, ProcessFunction, Stream, Timestamp};

use super::bids;
use super::rows::Timestamp as Ts;

/// Window sizes of the queries, in ms.
const TEN_SECONDS: i64 = 10_000;
const TWO_SECONDS: i64 = 2_000;

/// Counts records.
#[derive(Clone, Copy, Default)]
pub struct Count;

impl<T> AggregateFunction<T> for Count {
    type Acc = i64;
    type Out = i64;
    fn create_accumulator(&self) -> i64 {
        0
    }
    #[inline]
    fn add(&mut self, acc: &mut i64, _value: T) {
        *acc += 1;
    }
    fn get_result(&self, acc: &i64) -> i64 {
        *acc
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
}

fn window_end(w: &Window) -> Timestamp {
    match w {
        Window::Time(t) => t.end,
        Window::Global => i64::MAX,
    }
}

/// Panes per sliding window of q5 (10 s windows every 2 s).
const PANES_PER_WINDOW: i64 = TEN_SECONDS / TWO_SECONDS;

/// The highest count of one sliding window of q5 on one shard and the auctions at it, each
/// once. Counts only grow, so this follows every add and the window's result is ready the
/// moment the watermark closes it (nothing to sort, scan or ship per auction then).
#[derive(Clone, Debug, Default)]
struct Leaders {
    max: i64,
    at_max: Vec<i64>,
}

impl Leaders {
    /// `auction`'s count in the window grew to `count`.
    #[inline]
    fn offer(&mut self, auction: i64, count: i64) {
        if count > self.max {
            self.max = count;
            self.at_max.clear();
        }
        if count == self.max {
            self.at_max.push(auction);
        }
    }
}

/// One shard's counts of one sliding window of q5 (heap backend), with their running arg-max.
#[derive(Clone, Debug, Default)]
struct WindowCounts {
    counts: KeyMap<i64, i64>,
    leaders: Leaders,
}

impl WindowCounts {
    #[inline]
    fn add(&mut self, auction: i64, n: i64) {
        let count = self.counts.entry(auction).or_insert(0);
        *count += n;
        self.leaders.offer(auction, *count);
    }
}

/// What one shard knows about one sliding window of q5 when it closes: its highest count and
/// the auctions at it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Q5Partial {
    /// The window's end.
    pub end: Timestamp,
    pub max: i64,
    pub auctions: Vec<i64>,
}

impl StateCodec for Q5Partial {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.end, self.max).encode(out);
        self.auctions.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (end, max) = <(Timestamp, i64)>::decode_from(input)?;
        Ok(Q5Partial {
            end,
            max,
            auctions: Vec::decode_from(input)?,
        })
    }
}

/// Stage 2 of q5 (input keyed by auction): each pane count goes into the five sliding
/// windows that hold the pane, and a window closed by the watermark leaves as one partial per
/// shard. (It replaced a sliding window operator whose firing sorted and sent every auction's
/// count to one shard: milliseconds between a window's close and its result.)
///
/// Heap backend: per open window a map of the auctions' counts. A pane's counts arrive just as
/// the first window holding the pane closes, so only that window's add is done at once; the
/// adds into the four later windows wait until that window has fired and a watermark closes
/// nothing (or until one closes them), off the path of the closing window's result: one hash
/// probe per count before it leaves instead of five.
///
/// LSM backend: the counts (they grow with the auctions) are keyed state — per auction its
/// (window end, count) pairs of open windows in one `ValueState`, one read and one write per
/// pane count for all five windows — dropped by a timer when the auction's last window
/// closes. Only each window's `Leaders` stay in the function: per shard and open window one
/// maximum and the auctions at it (ties), a handful of windows at any time.
#[derive(Clone)]
struct Q5Windows {
    /// Open windows by end (heap backend).
    windows: BTreeMap<Timestamp, WindowCounts>,
    /// Pane counts (auction, pane end, count) not yet added to their four later windows.
    deferred: Vec<(i64, Timestamp, i64)>,
    /// The smallest pane end in `deferred` (`Timestamp::MAX` if empty).
    deferred_min: Timestamp,
    /// Open windows' leaders by end (LSM backend).
    leaders: BTreeMap<Timestamp, Leaders>,
    /// LSM backend: an auction's (window end, count) pairs.
    managed: Option<ValueState<Vec<(Timestamp, i64)>>>,
}

impl Default for Q5Windows {
    fn default() -> Self {
        Q5Windows {
            windows: BTreeMap::new(),
            deferred: Vec::new(),
            deferred_min: Timestamp::MAX,
            leaders: BTreeMap::new(),
            managed: None,
        }
    }
}

/// A q5 window's end and one auction's count in it, as the LSM layout checkpoints the leaders
/// (a trailing marker, so a heap-layout `(end, count)` entry is told apart and refused).
type LeaderEntry = (Timestamp, i64, bool);

impl Q5Windows {
    /// Adds the deferred counts of panes ending at or before `upto` to their later windows.
    fn apply_deferred(&mut self, upto: Timestamp) {
        if self.deferred_min > upto {
            return;
        }
        let windows = &mut self.windows;
        let mut min = Timestamp::MAX;
        self.deferred.retain(|&(auction, pane_end, count)| {
            if pane_end > upto {
                min = min.min(pane_end);
                return true;
            }
            for k in 1..PANES_PER_WINDOW {
                let end = pane_end.saturating_add(k * TWO_SECONDS);
                windows.entry(end).or_default().add(auction, count);
            }
            false
        });
        self.deferred_min = min;
    }

    /// LSM layout: adds `auction`'s pane count to the windows holding the pane.
    fn add_managed(
        &mut self,
        counts: ValueState<Vec<(Timestamp, i64)>>,
        auction: i64,
        pane_end: Timestamp,
        n: i64,
        ctx: &mut ProcessContext<'_, Q5Partial>,
    ) {
        // A window is fired once the watermark passes its last millisecond (`end - 1`).
        let limit = ctx
            .current_watermark()
            .map_or(Timestamp::MIN, |w| w.saturating_add(1));
        let last_end = pane_end.saturating_add((PANES_PER_WINDOW - 1) * TWO_SECONDS);
        ctx.register_event_time_timer(last_end.saturating_sub(1));
        let leaders = &mut self.leaders;
        let stored = ctx.state().and_then(|store| {
            let mut open = counts.get(store)?.unwrap_or_default();
            open.retain(|&(end, _)| end > limit);
            for k in 0..PANES_PER_WINDOW {
                let end = pane_end.saturating_add(k * TWO_SECONDS);
                let count = match open.iter_mut().find(|(e, _)| *e == end) {
                    Some((_, c)) => {
                        *c += n;
                        *c
                    }
                    None => {
                        open.push((end, n));
                        n
                    }
                };
                leaders.entry(end).or_default().offer(auction, count);
            }
            counts.set(store, &open)
        });
        if let Err(e) = stored {
            ctx.fail(e);
        }
    }
}

impl KeyedProcessFunction<i64, WindowResult<i64, i64>, Q5Partial> for Q5Windows {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("q5-counts"))?);
        }
        Ok(())
    }

    fn process(
        &mut self,
        _auction: &i64,
        pane: WindowResult<i64, i64>,
        ctx: &mut ProcessContext<'_, Q5Partial>,
    ) {
        let pane_end = window_end(&pane.window);
        if let Some(counts) = self.managed {
            self.add_managed(counts, pane.key, pane_end, pane.value, ctx);
            return;
        }
        self.windows
            .entry(pane_end)
            .or_default()
            .add(pane.key, pane.value);
        self.deferred.push((pane.key, pane_end, pane.value));
        self.deferred_min = self.deferred_min.min(pane_end);
    }

    /// LSM layout: the last window of an auction's pane closes at `timestamp + 1`: drops the
    /// auction's counts of closed windows (all of them unless a later pane came).
    fn on_timer(
        &mut self,
        _auction: &i64,
        timestamp: Timestamp,
        ctx: &mut ProcessContext<'_, Q5Partial>,
    ) {
        let Some(counts) = self.managed else { return };
        let limit = timestamp.saturating_add(1);
        let pruned = ctx.state().and_then(|store| {
            let mut open = counts.get(store)?.unwrap_or_default();
            open.retain(|&(end, _)| end > limit);
            if open.is_empty() {
                counts.clear(store)
            } else {
                counts.set(store, &open)
            }
        });
        if let Err(e) = pruned {
            ctx.fail(e);
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, Q5Partial>) {
        // A window fires once the watermark passes its last millisecond.
        let limit = watermark.saturating_add(1);
        if self.managed.is_some() {
            while let Some(entry) = self.leaders.first_entry() {
                if *entry.key() > limit {
                    break;
                }
                let end = *entry.key();
                let l = entry.remove();
                if !l.at_max.is_empty() {
                    ctx.emit(Q5Partial {
                        end,
                        max: l.max,
                        auctions: l.at_max,
                    });
                }
            }
            return;
        }
        // A jump of two seconds or more closes a deferred count's later window too: add first.
        self.apply_deferred(limit.saturating_sub(TWO_SECONDS));
        let mut fired = false;
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > limit {
                break;
            }
            fired = true;
            let end = *entry.key();
            let w = entry.remove();
            if !w.leaders.at_max.is_empty() {
                ctx.emit(Q5Partial {
                    end,
                    max: w.leaders.max,
                    auctions: w.leaders.at_max,
                });
            }
        }
        if !fired {
            self.apply_deferred(limit);
        }
    }

    /// Keyed by auction. Heap layout: every (auction, window) count, deferred adds included
    /// (restore adds them up). LSM layout (the counts are in the store): each window's leaders
    /// with their count — after a rescale every auction at a window's overall maximum is still
    /// among some shard's leaders, which is all the final merge needs.
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for (end, l) in &self.leaders {
            for auction in &l.at_max {
                out.keyed(auction, &(*end, l.max, true));
            }
        }
        for (end, w) in &self.windows {
            for (auction, count) in &w.counts {
                out.keyed(auction, &(*end, *count));
            }
        }
        for (auction, pane_end, count) in &self.deferred {
            for k in 1..PANES_PER_WINDOW {
                out.keyed(auction, &(pane_end.saturating_add(k * TWO_SECONDS), *count));
            }
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        if self.managed.is_some() {
            for entry in state.keyed::<i64, LeaderEntry>() {
                let (auction, (end, count, _)) = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        let heap = state.keyed::<i64, (Timestamp, i64)>().any(|r| r.is_ok());
                        StateError::refuse_heap_rows(true, heap, "q5 window counts")?;
                        return Err(e);
                    }
                };
                self.leaders.entry(end).or_default().offer(auction, count);
            }
            return Ok(());
        }
        for entry in state.keyed::<i64, (Timestamp, i64)>() {
            let (auction, (end, count)) = entry?;
            self.windows.entry(end).or_default().add(auction, count);
        }
        Ok(())
    }
}

/// Stage 3 of q5 (input partitioned by window end): the shards' partials of a window,
/// combined once the watermark closed it. On both backends in the function: per open window
/// (a handful) one maximum and its tied auctions, nothing that grows with the auctions.
#[derive(Clone, Default)]
struct Q5Hot {
    windows: BTreeMap<Timestamp, Q5Partial>,
}

impl Q5Hot {
    fn merge_partial(windows: &mut BTreeMap<Timestamp, Q5Partial>, p: Q5Partial) {
        let w = windows.entry(p.end).or_insert_with(|| Q5Partial {
            end: p.end,
            max: i64::MIN,
            auctions: Vec::new(),
        });
        if p.max > w.max {
            *w = p;
        } else if p.max == w.max {
            w.auctions.extend(p.auctions);
        }
    }
}

impl ProcessFunction<Q5Partial, (i64, i64)> for Q5Hot {
    fn process(&mut self, p: Q5Partial, _ctx: &mut ProcessContext<'_, (i64, i64)>) {
        Self::merge_partial(&mut self.windows, p);
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, (i64, i64)>) {
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > watermark.saturating_add(1) {
                break;
            }
            let w = entry.remove();
            for a in w.auctions {
                ctx.emit((a, w.max));
            }
        }
    }

    /// Keyed by window end (the stream is partitioned by it).
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for (end, w) in &self.windows {
            out.keyed(end, w);
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        for entry in state.keyed::<Timestamp, Q5Partial>() {
            let (_, w) = entry?;
            Self::merge_partial(&mut self.windows, w);
        }
        Ok(())
    }
}

/// q5: per sliding window (10 s every 2 s), the auctions with the most bids → auction, num.
///
/// Sliding windows are computed from 2-second panes (Flink SQL slices hop windows the same
/// way): each bid updates one pane count instead of five window counts, and each pane's count
/// then goes to the five windows that contain it, where a running arg-max per window and shard
/// keeps the result ready for the window's close (two-phase, as q7).
pub fn q5(events: &Stream<Event>) -> Stream<(i64, i64)> {
    let Ok(panes) = WindowAssigner::tumbling(TWO_SECONDS, 0) else {
        unreachable_config()
    };
    let counts = bids(events)
        .key_by(|b: &Bid| b.auction)
        .window(panes, |b: &Bid| b.date_time)
        .aggregate_two_phase(Count)
        .name("q5-panes");
    counts
        .key_by(|p: &WindowResult<i64, i64>| p.key)
        .process(Q5Windows::default())
        .name("q5-windows")
        .key_by(|p: &Q5Partial| p.end)
        .partitioned()
        .process(Q5Hot::default())
        .name("q5-hot")
}

/// q7 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q7Row {
    pub auction: i64,
    pub price: i64,
    pub bidder: i64,
    pub date_time: Ts,
    pub extra: Str,
}

impl CsvRecord for Q7Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.price,
            self.bidder,
            self.date_time,
            self.extra,
        )
            .write_csv(out)
    }
}

/// What one shard knows about one 10-second window of q7.
#[derive(Clone, Debug, Default)]
pub struct Q7Partial {
    /// The window's end.
    pub end: Timestamp,
    /// The highest price seen in the window (None: no bid in the window on this shard).
    pub max: Option<i64>,
    /// The window's bids at that price.
    pub at_max: Vec<Bid>,
    /// Bids exactly at the window's end: outside the window, but in `[end − 10 s, end]`.
    pub at_end: Vec<Bid>,
}

impl StateCodec for Q7Partial {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.end, self.max).encode(out);
        self.at_max.encode(out);
        self.at_end.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (end, max) = <(Timestamp, Option<i64>)>::decode_from(input)?;
        Ok(Q7Partial {
            end,
            max,
            at_max: Vec::decode_from(input)?,
            at_end: Vec::decode_from(input)?,
        })
    }
}

/// Stage 1 of q7: per shard and window, the bids at the local maximum, released once the
/// watermark has passed the window's end (so bids *at* the end have arrived too).
///
/// In the function on both backends: its input is not keyed, and its state is per shard and
/// tiny — per open window (two or three at a time) one maximum with the bids tied at it and
/// the bids at the window's first millisecond — nothing that grows with auctions or bidders.
#[derive(Clone, Default)]
struct Q7Local {
    windows: BTreeMap<Timestamp, Q7Partial>,
}

impl ProcessFunction<Bid, Q7Partial> for Q7Local {
    fn process(&mut self, b: Bid, _ctx: &mut ProcessContext<'_, Q7Partial>) {
        let start = b.date_time - b.date_time.rem_euclid(TEN_SECONDS);
        let end = start.saturating_add(TEN_SECONDS);
        let w = self.windows.entry(end).or_insert_with(|| Q7Partial {
            end,
            ..Q7Partial::default()
        });
        match w.max {
            Some(m) if b.price < m => {}
            Some(m) if b.price == m => w.at_max.push(b),
            _ => {
                w.max = Some(b.price);
                w.at_max.clear();
                w.at_max.push(b);
            }
        }
        if b.date_time == start {
            // Also a candidate of the window that ends here.
            let prev = self.windows.entry(start).or_insert_with(|| Q7Partial {
                end: start,
                ..Q7Partial::default()
            });
            prev.at_end.push(b);
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, Q7Partial>) {
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            ctx.emit(entry.remove());
        }
    }

    /// Per shard (the input is not keyed): the open windows' local partials.
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for w in self.windows.values() {
            out.shard(w);
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        // After a rescale one shard may get several old shards' partials of a window: merge
        // them as stage 2 would (the result is the same partial a single shard would hold).
        for w in state.shard::<Q7Partial>() {
            Q7Global::merge_partial(&mut self.windows, w?);
        }
        Ok(())
    }
}

/// Stage 2 of q7: all partials of one window, combined once the watermark passed its end.
/// In the function on both backends, like stage 1: per open window one merged partial.
#[derive(Clone, Default)]
struct Q7Global {
    windows: BTreeMap<Timestamp, Q7Partial>,
}

impl Q7Global {
    /// Folds partial `p` into its window.
    fn merge_partial(windows: &mut BTreeMap<Timestamp, Q7Partial>, p: Q7Partial) {
        let w = windows.entry(p.end).or_insert_with(|| Q7Partial {
            end: p.end,
            ..Q7Partial::default()
        });
        match (w.max, p.max) {
            (_, None) => {}
            (Some(m), Some(pm)) if pm < m => {}
            (Some(m), Some(pm)) if pm == m => w.at_max.extend(p.at_max),
            (_, Some(pm)) => {
                w.max = Some(pm);
                w.at_max = p.at_max;
            }
        }
        w.at_end.extend(p.at_end);
    }
}

impl ProcessFunction<Q7Partial, Q7Row> for Q7Global {
    fn process(&mut self, p: Q7Partial, _ctx: &mut ProcessContext<'_, Q7Row>) {
        Self::merge_partial(&mut self.windows, p);
    }

    /// Keyed by window end (the stream is partitioned by it), so a rescale moves each
    /// window to the shard that owns its end.
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for (end, w) in &self.windows {
            out.keyed(end, w);
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        for entry in state.keyed::<Timestamp, Q7Partial>() {
            let (_, w) = entry?;
            Self::merge_partial(&mut self.windows, w);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, Q7Row>) {
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let w = entry.remove();
            let Some(max) = w.max else { continue };
            for b in w
                .at_max
                .iter()
                .chain(w.at_end.iter().filter(|b| b.price == max))
            {
                ctx.emit(Q7Row {
                    auction: b.auction,
                    price: b.price,
                    bidder: b.bidder,
                    date_time: Ts(b.date_time),
                    extra: b.extra,
                });
            }
        }
    }
}

/// q7: the highest bids of every 10-second window.
pub fn q7(events: &Stream<Event>) -> Stream<Q7Row> {
    bids(events)
        .process(Q7Local::default())
        .name("q7-local-max")
        .key_by(|p: &Q7Partial| p.end)
        .partitioned()
        .process(Q7Global::default())
        .name("q7-max")
}

/// q11 row: a bidder's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q11Row {
    pub bidder: i64,
    pub bid_count: i64,
    pub starttime: Ts,
    pub endtime: Ts,
}

impl CsvRecord for Q11Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.bidder, self.bid_count, self.starttime, self.endtime).write_csv(out)
    }
}

/// q11: bids per bidder session (gap 10 s) → bidder, count, session start, last bid + 10 s.
pub fn q11(events: &Stream<Event>) -> Stream<Q11Row> {
    let Ok(sessions) = WindowAssigner::session(TEN_SECONDS) else {
        unreachable_config()
    };
    bids(events)
        .key_by(|b: &Bid| b.bidder)
        .window(sessions, |b: &Bid| b.date_time)
        .aggregate(Count)
        .map(|r: WindowResult<i64, i64>| Q11Row {
            bidder: r.key,
            bid_count: r.value,
            starttime: Ts(r.start()),
            // The session window's last millisecond is the last bid plus the gap.
            endtime: Ts(r.max_timestamp()),
        })
        .name("q11-sessions")
}

/// The queries' window sizes are constants the assigners accept.
#[cold]
pub(super) fn unreachable_config() -> ! {
    panic!("constant window sizes are valid")
}

/// The watermark delay of the Nexmark source for windowed queries (Flink's DDL uses 4 s).
pub const WATERMARK_DELAY: Duration = Duration::from_secs(4);
