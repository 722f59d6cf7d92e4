//! q5 (hot items): per sliding window (10 s every 2 s), the auctions with the most bids.
//!
//! Two stages. [`Q5Counts`] (keyed by auction) counts each bid as it arrives into its
//! auction's 2-second pane and offers the auction's new count in each of the five sliding
//! windows holding the pane to that window's running arg-max ([`Leaders`]). Counts only grow,
//! so a window's leaders are final the moment the watermark closes it: the close emits one
//! partial per shard and window and touches no auction. (Earlier layouts counted panes first —
//! one- or two-phase — and at each pane close pushed every auction's pane count through one
//! or two more stages before the maximum was known: milliseconds of work per close on the path
//! of the result.) An auction's counts are complete on the shard owning its key, so a
//! per-shard arg-max is exact; [`Q5Hot`] (partitioned by window end) combines the shards'
//! partials of a window when the watermark passes it.
//!
//! Two layouts keep the per-bid work in the cache: bids are first counted per (auction, pane)
//! in a small [`Combiner`] drained at every watermark, and the per-auction counts live in a
//! [`DenseMap`] (auction ids are handed out in order and bid on while new), not a hash map
//! whose every new auction and lookup was a cache miss.

use std::collections::BTreeMap;

use weir::checkpoint::{StateRestore, StateSnapshot};
use weir::dense::DenseMap;
use weir::key::KeyMap;
use weir::nexmark::Event;
use weir::state::{KeyedStateStore, StateCodec, StateError, ValueState, ValueStateDescriptor};
use weir::{KeyedProcessFunction, ProcessContext, ProcessFunction, Stream, Timestamp};

/// Pane length (the windows' slide), in ms.
const PANE: i64 = 2_000;
/// Panes per sliding window of q5 (10 s windows every 2 s).
const PANES_PER_WINDOW: i64 = 5;

/// The pane (index) of event time `ts`: pane `p` covers `[p * PANE, (p + 1) * PANE)`.
#[inline]
fn pane_of(ts: Timestamp) -> i64 {
    ts.div_euclid(PANE)
}

/// The end of pane `p`, which is also the end of the sliding window *ending with* pane `p`
/// (window `q` holds panes `q - 4 ..= q`). Saturates at the top of the range.
#[inline]
fn end_of(p: i64) -> Timestamp {
    p.saturating_add(1).saturating_mul(PANE)
}

/// The highest count of one sliding window of q5 on one shard and the auctions at it, each
/// once. Counts only grow, so this follows every add and the window's result is ready the
/// moment the watermark closes it.
#[derive(Clone, Debug, Default)]
struct Leaders {
    max: i64,
    at_max: Vec<i64>,
}

impl Leaders {
    /// `auction`'s count in the window grew to `count` (each auction's counts offered to one
    /// window strictly increase, so an auction is never listed twice).
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

/// One auction's bid counts per live pane, sorted by pane. Nearly every auction has bids in
/// one or two live panes, kept inline (no allocation per auction); more spill to a vector.
#[derive(Clone, Debug)]
enum Panes {
    Inline { len: u8, slots: [(i64, i64); 2] },
    Spilled(Vec<(i64, i64)>),
}

impl Default for Panes {
    fn default() -> Self {
        Panes::Inline {
            len: 0,
            slots: [(0, 0); 2],
        }
    }
}

impl Panes {
    /// (pane, count) pairs, ascending by pane.
    #[inline]
    fn as_slice(&self) -> &[(i64, i64)] {
        match self {
            Panes::Inline { len, slots } => &slots[..usize::from(*len)],
            Panes::Spilled(v) => v,
        }
    }

    /// Adds `n` to pane `p`'s count (inserting the pane in order).
    #[inline]
    fn add(&mut self, p: i64, n: i64) {
        if let Panes::Inline { len, slots } = self {
            let l = usize::from(*len);
            // The common cases: the auction's latest pane, or a new latest pane.
            if l > 0 && slots[l - 1].0 == p {
                slots[l - 1].1 += n;
                return;
            }
            if l < slots.len() && (l == 0 || slots[l - 1].0 < p) {
                slots[l] = (p, n);
                *len += 1;
                return;
            }
            *self = Panes::Spilled(slots[..l].to_vec());
        }
        if let Panes::Spilled(v) = self {
            match v.binary_search_by_key(&p, |&(pane, _)| pane) {
                Ok(i) => v[i].1 += n,
                Err(i) => v.insert(i, (p, n)),
            }
        }
    }

    /// Drops the panes before `first_live`; returns whether any pane is left.
    fn prune(&mut self, first_live: i64) -> bool {
        match self {
            Panes::Inline { len, slots } => {
                let l = usize::from(*len);
                let dead = slots[..l].iter().take_while(|s| s.0 < first_live).count();
                if dead > 0 {
                    slots.copy_within(dead..l, 0);
                    *len -= dead as u8;
                }
                *len > 0
            }
            Panes::Spilled(v) => {
                v.retain(|s| s.0 >= first_live);
                !v.is_empty()
            }
        }
    }

    /// The auction's counts in the five windows ending with panes `p ..= p + 4` (the windows
    /// holding pane `p`), from its panes `p - 4 ..= p + 4`.
    #[inline]
    fn window_counts(&self, p: i64) -> [i64; PANES_PER_WINDOW as usize] {
        let mut sums = [0i64; PANES_PER_WINDOW as usize];
        for &(pane, count) in self.as_slice() {
            // Pane `pane` is in windows `pane ..= pane + 4`; keep those in `p ..= p + 4`.
            let lo = pane.max(p);
            let hi = pane
                .saturating_add(PANES_PER_WINDOW - 1)
                .min(p + PANES_PER_WINDOW - 1);
            let mut q = lo;
            while q <= hi {
                // In range: 0 <= q - p < 5.
                sums[(q - p) as usize] += count;
                q += 1;
            }
        }
        sums
    }
}

/// Heap backend: bids counted per (auction, pane) since the last watermark, in front of the
/// per-auction map. A bid lands in a small direct-mapped table (its slot is the auction id's
/// low bits: Nexmark's ids are dense and bids go to the hundred-odd newest auctions, which
/// then sit in distinct slots); a bid of another (auction, pane) in the slot first moves the
/// slot's count on. Counts reach the map, and the windows' leaders, once per (auction, pane)
/// and watermark instead of once per bid: the map is large and cold (one cache miss per
/// lookup), this table is small and hot. Exact, because a window's leaders depend only on
/// the counts when it closes and every close first drains the table.
#[derive(Clone, Debug)]
struct Combiner {
    /// (auction, pane, bids); 0 bids = free.
    slots: Box<[(i64, i64, i64)]>,
    /// Indexes of the occupied slots, so a drain touches only those.
    occupied: Vec<usize>,
}

/// Slots of the [`Combiner`]: a power of two, well above the generator's live auctions
/// (≈ 110) and small enough to stay in the L1 cache (12 KiB).
const COMBINER_SLOTS: usize = 512;

impl Combiner {
    fn with_slots(slots: usize) -> Self {
        Combiner {
            slots: vec![(0, 0, 0); slots.next_power_of_two()].into_boxed_slice(),
            occupied: Vec::new(),
        }
    }

    /// Counts one bid of `auction` in pane `p`; returns the (auction, pane, bids) it evicted.
    #[inline]
    fn add(&mut self, auction: i64, p: i64) -> Option<(i64, i64, i64)> {
        let i = (auction as usize) & (self.slots.len() - 1);
        let slot = &mut self.slots[i];
        if slot.2 > 0 && slot.0 == auction && slot.1 == p {
            slot.2 += 1;
            return None;
        }
        let evicted = (slot.2 > 0).then_some(*slot);
        if evicted.is_none() {
            self.occupied.push(i);
        }
        *slot = (auction, p, 1);
        evicted
    }

    /// Takes the occupied slots' indexes out (hand the vector back with [`Combiner::refill`]
    /// to keep its allocation); [`Combiner::take`] then empties each.
    fn take_occupied(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.occupied)
    }

    /// Empties slot `i`, returning what it held.
    fn take(&mut self, i: usize) -> (i64, i64, i64) {
        std::mem::take(&mut self.slots[i])
    }

    /// Gives back the (emptied) vector of [`Combiner::take_occupied`].
    fn refill(&mut self, mut occupied: Vec<usize>) {
        occupied.clear();
        self.occupied = occupied;
    }

    /// The counts held, as (auction, pane, bids).
    fn held(&self) -> impl Iterator<Item = (i64, i64, i64)> + '_ {
        self.occupied.iter().map(|&i| self.slots[i])
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

/// A checkpoint entry of [`Q5Counts`], keyed by auction: `(kind, a, b, c)`.
/// Heap layout, kind [`ENTRY_PANE`]: (pane, count, the shard's close limit at the snapshot).
/// LSM layout, kind [`ENTRY_LEADER`]: (window, count, 0) of a window's leader; kind
/// [`ENTRY_PENDING`]: (timer, pane, count) of a pane count not yet in the store.
type Entry = (u8, i64, i64, i64);
const ENTRY_PANE: u8 = 0;
const ENTRY_LEADER: u8 = 1;
const ENTRY_PENDING: u8 = 2;

/// Stage 1 of q5 (input: (auction, bid time), keyed by auction): per-auction pane counts and
/// each open window's running arg-max (see the module docs).
///
/// Heap backend: per auction its counts of live panes (a pane is live until the last window
/// holding it closes) in the function's map; an auction whose panes all died is dropped by a
/// sweep after a close, deferred to the next watermark that closes nothing (off the path of
/// the closing window's result).
///
/// LSM backend: the counts grow with the auctions, so they are keyed state — per auction its
/// (window end, count) pairs of open windows in one `ValueState`. Bids are counted per
/// (auction, pane) on the heap first and each pane count goes to the store once, by a timer at
/// the pane's end (which fires just before the watermark closes the pane's first window): one
/// read and one write per pane count, not per bid.
#[derive(Clone)]
struct Q5Counts {
    /// Heap backend: auction → its live panes' counts. Auction ids are handed out in order
    /// and bid on while new, so the live ones are a sliding range ([`DenseMap`]).
    auctions: DenseMap<Panes>,
    /// Heap backend: bids not yet in `auctions`, drained at every watermark.
    recent: Combiner,
    /// Open windows' leaders, sorted by the window's last pane (both backends): a handful of
    /// windows, found by a binary search and a step per window (a `BTreeMap` lookup per bid
    /// cost more).
    leaders: Vec<(i64, Leaders)>,
    /// Windows ending at or before this have fired (the last watermark + 1).
    closed: Timestamp,
    /// A window closed since the last sweep of dead auctions (heap backend).
    sweep_due: bool,
    /// The first live pane at the last sweep: the next waits until five more panes died, so
    /// a sweep (a walk over every auction) costs little per pane.
    swept_upto: i64,
    /// Bids for panes whose first window had already fired (dropped, as a window operator
    /// without allowed lateness drops them).
    late: u64,
    /// LSM backend: bids per (auction, timer of the pane) not yet in the store, with the pane.
    pending: KeyMap<(i64, Timestamp), (i64, i64)>,
    /// LSM backend: an auction's (window end, count) pairs.
    managed: Option<ValueState<Vec<(Timestamp, i64)>>>,
}

impl Default for Q5Counts {
    fn default() -> Self {
        Q5Counts {
            auctions: DenseMap::default(),
            recent: Combiner::with_slots(COMBINER_SLOTS),
            leaders: Vec::new(),
            closed: Timestamp::MIN,
            sweep_due: false,
            swept_upto: i64::MIN,
            late: 0,
            pending: KeyMap::default(),
            managed: None,
        }
    }
}

impl Q5Counts {
    /// The first pane still in an open window: pane `p` dies once window `p + 4` fired, i.e.
    /// once `(p + 5) * PANE <= closed`.
    fn first_live_pane(&self) -> i64 {
        if self.closed == Timestamp::MAX {
            return i64::MAX;
        }
        self.closed.div_euclid(PANE) - (PANES_PER_WINDOW - 1)
    }

    /// Heap backend: counts `n` bids of `auction` in pane `p`.
    fn count(&mut self, auction: i64, p: i64, n: i64) {
        let panes = self.auctions.get_or_insert_with(auction, Panes::default);
        panes.add(p, n);
        let sums = panes.window_counts(p);
        self.offer(auction, p, &sums);
    }

    /// Heap backend: moves the combined counts on to the map and the leaders.
    fn drain_recent(&mut self) {
        let occupied = self.recent.take_occupied();
        for &i in &occupied {
            let (auction, p, n) = self.recent.take(i);
            self.count(auction, p, n);
        }
        self.recent.refill(occupied);
    }

    /// Offers `auction`'s counts in windows `p ..= p + 4` to those windows' leaders.
    #[inline]
    fn offer(&mut self, auction: i64, p: i64, sums: &[i64; PANES_PER_WINDOW as usize]) {
        let mut j = self.leaders.partition_point(|(q, _)| *q < p);
        for (k, &count) in sums.iter().enumerate() {
            let q = p + k as i64;
            if self.leaders.get(j).is_none_or(|(at, _)| *at != q) {
                // Window `q` is open (pane `p` is, and `q >= p`) but has no bid yet.
                if end_of(q) <= self.closed {
                    continue;
                }
                self.leaders.insert(j, (q, Leaders::default()));
            }
            self.leaders[j].1.offer(auction, count);
            j += 1;
        }
    }

    /// The leaders of window `q`, inserted if missing.
    fn leaders_of(&mut self, q: i64) -> &mut Leaders {
        let j = self.leaders.partition_point(|(at, _)| *at < q);
        if self.leaders.get(j).is_none_or(|(at, _)| *at != q) {
            self.leaders.insert(j, (q, Leaders::default()));
        }
        &mut self.leaders[j].1
    }

    /// Takes one bid (heap backend); `false` if it was late (dropped).
    #[inline]
    fn take(&mut self, auction: i64, ts: Timestamp) -> bool {
        let p = pane_of(ts);
        // The pane's first window (the one ending with it) fired already: late.
        if end_of(p) <= self.closed {
            self.late += 1;
            return false;
        }
        if let Some((auction, p, n)) = self.recent.add(auction, p) {
            self.count(auction, p, n);
        }
        true
    }

    /// The watermark reached `watermark`: every window whose last millisecond it passed
    /// leaves as one partial (if it has any bid). A sweep due from an earlier close runs on
    /// the next advance that closes nothing.
    fn advance(&mut self, watermark: Timestamp, mut emit: impl FnMut(Q5Partial)) {
        let limit = watermark.saturating_add(1);
        if limit <= self.closed {
            return;
        }
        // Leaders are read below: every bid counted so far must be in them.
        self.drain_recent();
        self.closed = limit;
        let n = self.leaders.partition_point(|(q, _)| end_of(*q) <= limit);
        for (q, l) in self.leaders.drain(..n) {
            if !l.at_max.is_empty() {
                emit(Q5Partial {
                    end: end_of(q),
                    max: l.max,
                    auctions: l.at_max,
                });
            }
        }
        if n > 0 {
            self.sweep_due = true;
        } else if self.sweep_due
            && self.managed.is_none()
            && self.first_live_pane() >= self.swept_upto.saturating_add(PANES_PER_WINDOW)
        {
            self.sweep();
        }
    }

    /// Heap backend: drops the panes (and auctions) no open window holds.
    fn sweep(&mut self) {
        let first_live = self.first_live_pane();
        self.auctions.retain(|_, panes| panes.prune(first_live));
        self.sweep_due = false;
        self.swept_upto = first_live;
    }

    /// LSM backend: adds `auction`'s pane count `n` (pane `p`) to the stored counts of the
    /// windows holding the pane and offers them to those windows' leaders.
    fn add_managed(
        &mut self,
        counts: ValueState<Vec<(Timestamp, i64)>>,
        auction: i64,
        p: i64,
        n: i64,
        ctx: &mut ProcessContext<'_, Q5Partial>,
    ) {
        let closed = self.closed;
        // The auction's counts are dropped when the last window holding the pane closes.
        ctx.register_event_time_timer(end_of(p + PANES_PER_WINDOW - 1).saturating_sub(1));
        let mut sums = [0i64; PANES_PER_WINDOW as usize];
        let stored = ctx.state().and_then(|store| {
            let mut open = counts.get(store)?.unwrap_or_default();
            open.retain(|&(end, _)| end > closed);
            for (k, sum) in sums.iter_mut().enumerate() {
                let end = end_of(p + k as i64);
                *sum = match open.iter_mut().find(|(e, _)| *e == end) {
                    Some((_, c)) => {
                        *c += n;
                        *c
                    }
                    None => {
                        open.push((end, n));
                        n
                    }
                };
            }
            counts.set(store, &open)
        });
        match stored {
            Ok(()) => self.offer(auction, p, &sums),
            Err(e) => ctx.fail(e),
        }
    }
}

impl KeyedProcessFunction<i64, (i64, Timestamp), Q5Partial> for Q5Counts {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("q5-counts"))?);
        }
        Ok(())
    }

    #[inline]
    fn process(
        &mut self,
        &auction: &i64,
        (_, ts): (i64, Timestamp),
        ctx: &mut ProcessContext<'_, Q5Partial>,
    ) {
        if self.managed.is_none() {
            self.take(auction, ts);
            return;
        }
        let p = pane_of(ts);
        if end_of(p) <= self.closed {
            self.late += 1;
            return;
        }
        // A window fires once the watermark passes its last millisecond: the timer at the
        // pane's last millisecond runs just before.
        let timer = end_of(p).saturating_sub(1);
        let slot = self.pending.entry((auction, timer)).or_insert((p, 0));
        slot.1 += 1;
        if slot.1 == 1 {
            ctx.register_event_time_timer(timer);
        }
    }

    /// LSM backend: a pane of the auction ends (its count goes to the store), or the last
    /// window of an earlier pane closed (the auction's counts of closed windows are dropped).
    fn on_timer(
        &mut self,
        &auction: &i64,
        timestamp: Timestamp,
        ctx: &mut ProcessContext<'_, Q5Partial>,
    ) {
        let Some(counts) = self.managed else { return };
        if let Some((p, n)) = self.pending.remove(&(auction, timestamp)) {
            self.add_managed(counts, auction, p, n, ctx);
            return;
        }
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
        self.advance(watermark, |p| ctx.emit(p));
    }

    fn on_end(&mut self, _ctx: &mut ProcessContext<'_, Q5Partial>) {
        if self.late > 0 {
            tracing::warn!(late = self.late, "q5: dropped bids of already closed panes");
        }
    }

    /// Keyed by auction (see [`Entry`]). Heap: every live pane count with the close limit, so
    /// a restore (on any shard count) rebuilds the open windows' leaders and nothing of a
    /// fired window. LSM (the counts are in the store): each window's leaders with their count
    /// — after a rescale every auction at a window's overall maximum is still among some
    /// shard's leaders, which is all the final merge needs — and the pane counts not yet
    /// stored (their timers are in the operator's checkpoint).
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for (auction, panes) in self.auctions.iter() {
            for &(p, count) in panes.as_slice() {
                out.keyed(&auction, &(ENTRY_PANE, p, count, self.closed));
            }
        }
        // The restore adds pane counts up, so combined bids are written as more of them.
        for (auction, p, n) in self.recent.held() {
            out.keyed(&auction, &(ENTRY_PANE, p, n, self.closed));
        }
        if self.managed.is_none() {
            return;
        }
        for (q, l) in &self.leaders {
            for auction in &l.at_max {
                out.keyed(auction, &(ENTRY_LEADER, *q, l.max, 0i64));
            }
        }
        for (&(auction, timer), &(p, n)) in &self.pending {
            out.keyed(&auction, &(ENTRY_PENDING, timer, p, n));
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let on_lsm = self.managed.is_some();
        let mut heap_rows = false;
        // Heap layout: each auction's close limit (its shard's at the snapshot; shards may
        // have been at different watermarks).
        let mut closed_of: KeyMap<i64, Timestamp> = KeyMap::default();
        for entry in state.keyed::<i64, Entry>() {
            let (auction, (kind, a, b, c)) = entry?;
            match (kind, on_lsm) {
                (ENTRY_PANE, false) => {
                    closed_of.insert(auction, c);
                    self.auctions
                        .get_or_insert_with(auction, Panes::default)
                        .add(a, b);
                }
                (ENTRY_PANE, true) => heap_rows = true,
                (ENTRY_LEADER, true) => self.leaders_of(a).offer(auction, b),
                (ENTRY_PENDING, true) => {
                    let slot = self.pending.entry((auction, a)).or_insert((b, 0));
                    slot.1 += c;
                }
                _ => {
                    return Err(StateError::Decode {
                        reason: "q5 window counts of another layout",
                    });
                }
            }
        }
        StateError::refuse_heap_rows(on_lsm, heap_rows, "q5 window counts")?;
        // Restored in key-group order, not in sequence.
        self.auctions.compact();
        // Heap layout: rebuild the leaders of the windows still open on the auction's shard.
        let auctions = std::mem::take(&mut self.auctions);
        for (auction, panes) in auctions.iter() {
            let closed = closed_of.get(&auction).copied().unwrap_or(Timestamp::MIN);
            let (Some(&(first, _)), Some(&(last, _))) =
                (panes.as_slice().first(), panes.as_slice().last())
            else {
                continue;
            };
            // Every window holding one of the auction's panes, each offered once.
            let mut q = first;
            while q <= last.saturating_add(PANES_PER_WINDOW - 1) {
                if end_of(q) > closed {
                    let count = panes.window_counts(q)[0];
                    self.leaders_of(q).offer(auction, count);
                }
                q += 1;
            }
        }
        self.auctions = auctions;
        Ok(())
    }
}

/// Stage 2 of q5 (input partitioned by window end): the shards' partials of a window,
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
/// Bids cross the exchange once, projected to (auction, time), to the shard owning the
/// auction, which keeps each open window's arg-max current per bid (see the module docs);
/// the shards' partials of a closed window meet on one shard.
pub fn q5(events: &Stream<Event>) -> Stream<(i64, i64)> {
    super::bids_as(events, |b| (b.auction, b.date_time))
        .name("q5-bids")
        .key_by(|&(auction, _): &(i64, Timestamp)| auction)
        .process(Q5Counts::default())
        .name("q5-counts")
        .key_by(|p: &Q5Partial| p.end)
        .partitioned()
        .process(Q5Hot::default())
        .name("q5-hot")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the heap layout emits for a sequence of bids and watermarks, as (window end,
    /// count, auction) rows; late bids are left out of `accepted`.
    fn run(ops: &[Op], accepted: &mut Vec<(i64, Timestamp)>) -> Vec<(Timestamp, i64, i64)> {
        run_with(COMBINER_SLOTS, ops, accepted)
    }

    /// [`run`] with a combiner of `slots` slots (few: bids of other auctions evict counts).
    fn run_with(
        slots: usize,
        ops: &[Op],
        accepted: &mut Vec<(i64, Timestamp)>,
    ) -> Vec<(Timestamp, i64, i64)> {
        let mut f = Q5Counts {
            recent: Combiner::with_slots(slots),
            ..Q5Counts::default()
        };
        let mut rows = Vec::new();
        let mut emit = |p: Q5Partial| {
            for a in p.auctions {
                rows.push((p.end, p.max, a));
            }
        };
        let mut watermark = Timestamp::MIN;
        for op in ops {
            match *op {
                Op::Bid(auction, ts) => {
                    // On time while the watermark is before its pane's last millisecond.
                    let on_time = ts - ts.rem_euclid(PANE) + PANE - 1 > watermark;
                    assert_eq!(
                        f.take(auction, ts),
                        on_time,
                        "bid at {ts}, watermark {watermark}"
                    );
                    if on_time {
                        accepted.push((auction, ts));
                    }
                }
                Op::Watermark(w) => {
                    watermark = watermark.max(w);
                    f.advance(w, &mut emit);
                }
            }
        }
        f.advance(Timestamp::MAX, &mut emit);
        rows.sort_unstable();
        rows
    }

    /// The sequential definition: per sliding window, the auctions with the most bids.
    fn reference(bids: &[(i64, Timestamp)]) -> Vec<(Timestamp, i64, i64)> {
        let mut counts: BTreeMap<(Timestamp, i64), i64> = BTreeMap::new();
        for &(auction, ts) in bids {
            let first_end = ts - ts.rem_euclid(PANE) + PANE;
            for k in 0..PANES_PER_WINDOW {
                *counts.entry((first_end + k * PANE, auction)).or_default() += 1;
            }
        }
        let mut max: BTreeMap<Timestamp, i64> = BTreeMap::new();
        for (&(end, _), &c) in &counts {
            let m = max.entry(end).or_default();
            *m = (*m).max(c);
        }
        let mut rows: Vec<_> = counts
            .iter()
            .filter(|((end, _), c)| max.get(end) == Some(c))
            .map(|(&(end, a), &c)| (end, c, a))
            .collect();
        rows.sort_unstable();
        rows
    }

    #[derive(Clone, Debug)]
    enum Op {
        Bid(i64, Timestamp),
        Watermark(Timestamp),
    }

    /// Bids around a clock that moves forward, some far behind it (late, or in panes several
    /// behind the auction's latest) or ahead of it; watermarks trail the clock.
    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec((0u8..10, 0i64..6, -12_000i64..3_000, 0i64..1_500), 1..400).prop_map(
            |steps| {
                let mut clock = 0i64;
                let mut ops = Vec::new();
                for (kind, auction, offset, tick) in steps {
                    clock += tick;
                    if kind == 0 {
                        ops.push(Op::Watermark(clock - 4_000));
                    } else {
                        ops.push(Op::Bid(auction, clock + offset));
                    }
                }
                ops
            },
        )
    }

    proptest! {
        #[test]
        fn heap_layout_matches_the_sequential_definition(ops in ops()) {
            let mut accepted = Vec::new();
            let got = run(&ops, &mut accepted);
            prop_assert_eq!(got, reference(&accepted));
        }

        #[test]
        fn a_combiner_that_evicts_gives_the_same_windows(ops in ops(), slots in 1usize..4) {
            let mut accepted = Vec::new();
            let got = run_with(slots, &ops, &mut accepted);
            prop_assert_eq!(got, reference(&accepted));
        }
    }

    #[test]
    fn late_bids_are_dropped_and_an_early_close_is_final() {
        let ops = [
            Op::Bid(1, 100),
            Op::Bid(2, 2_100),
            Op::Bid(2, 2_200),
            // Closes the window ending at 2000 (auction 1, one bid).
            Op::Watermark(1_999),
            // Late: its pane's first window fired.
            Op::Bid(3, 1_500),
            Op::Bid(3, 1_600),
        ];
        let mut accepted = Vec::new();
        let got = run(&ops, &mut accepted);
        assert_eq!(accepted.len(), 3);
        assert_eq!(got[0], (2_000, 1, 1));
        assert_eq!(got, reference(&accepted));
    }

    #[test]
    fn the_combiner_counts_runs_and_evicts_on_a_new_pane_or_auction() {
        let mut c = Combiner::with_slots(4);
        assert_eq!(c.add(1, 7), None);
        assert_eq!(c.add(1, 7), None);
        assert_eq!(c.add(2, 7), None);
        // Slot of auction 5 is auction 1's (5 & 3 == 1).
        assert_eq!(c.add(5, 7), Some((1, 7, 2)));
        assert_eq!(c.add(5, 8), Some((5, 7, 1)));
        let mut held: Vec<_> = c.held().collect();
        held.sort_unstable();
        assert_eq!(held, [(2, 7, 1), (5, 8, 1)]);
        let occupied = c.take_occupied();
        let mut taken: Vec<_> = occupied.iter().map(|&i| c.take(i)).collect();
        taken.sort_unstable();
        assert_eq!(taken, [(2, 7, 1), (5, 8, 1)]);
        c.refill(occupied);
        assert_eq!(c.held().count(), 0);
        assert_eq!(c.add(2, 7), None);
        assert_eq!(c.held().collect::<Vec<_>>(), [(2, 7, 1)]);
    }

    #[test]
    fn panes_stay_sorted_and_prune() {
        let mut panes = Panes::default();
        for p in [5, 7, 6, 5, 9, 1] {
            panes.add(p, 1);
        }
        assert_eq!(panes.as_slice(), &[(1, 1), (5, 2), (6, 1), (7, 1), (9, 1)]);
        // Windows 5..=9: window q holds panes q-4..=q.
        assert_eq!(panes.window_counts(5), [3, 3, 4, 4, 5]);
        assert!(panes.prune(6));
        assert_eq!(panes.as_slice(), &[(6, 1), (7, 1), (9, 1)]);
        assert!(!panes.prune(10));
        // An earlier pane than the latest, while still inline.
        let mut panes = Panes::default();
        panes.add(7, 1);
        panes.add(5, 2);
        assert_eq!(panes.as_slice(), &[(5, 2), (7, 1)]);
    }

    #[test]
    fn a_window_fires_when_the_watermark_reaches_its_last_millisecond() {
        let mut f = Q5Counts::default();
        assert!(f.take(1, 100));
        assert!(f.take(2, 1_900));
        assert!(f.take(2, 2_000));
        let mut rows = Vec::new();
        f.advance(1_998, |p| rows.push(p));
        assert!(rows.is_empty());
        f.advance(1_999, |p| rows.push(p));
        // Tied auctions come in no particular order.
        rows[0].auctions.sort_unstable();
        assert_eq!(
            rows,
            [Q5Partial {
                end: 2_000,
                max: 1,
                auctions: vec![1, 2]
            }]
        );
    }
}
