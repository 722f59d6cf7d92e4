//! The updating queries: q15–q17 (unbounded aggregations per day), q18 (deduplication) and
//! q19 (top-N). Their results change as bids arrive, so each emits a changelog whose final
//! table is what a batch SQL engine computes over the same bids.
//!
//! Per-record work stays free of allocation and formatting: groups are keyed by integers (the
//! day number) and the channel's `&'static str`; days and minutes are written as text only when
//! a row is encoded (by the row types `Day` and `HourMinute`).

use weir::checkpoint::{StateRestore, StateSnapshot};
use weir::id_map::IdMap;
use weir::key::KeyMap;
use weir::nexmark::csv::write_i64;
use weir::nexmark::{Bid, Event, Str};
use weir::operator::{Deduplicate, Keep, TopN};
use weir::segmented::SegmentedMap;
use weir::state::{
    KeyedStateStore, MapState, MapStateDescriptor, StateCodec, StateError, ValueState,
    ValueStateDescriptor,
};
use weir::{Change, CsvRecord, KeyedProcessFunction, ProcessContext, ProcessFunction, Stream};

use super::bids;
use super::rows::{Day, HourMinute, Timestamp as Ts};

const MS_PER_DAY: i64 = 86_400_000;

/// Upper bounds (exclusive) of the first two price bands; the third is everything above.
const RANK1_BELOW: i64 = 10_000;
const RANK2_BELOW: i64 = 1_000_000;

/// How many bids per auction q19 ranks.
const TOP_BIDS: usize = 10;

/// The UTC day of a timestamp, as days since 1970-01-01.
#[inline]
fn day_of(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

/// The price band of a bid: 0 (< 10,000), 1 (< 1,000,000) or 2.
#[inline]
fn band(price: i64) -> usize {
    usize::from(price >= RANK1_BELOW) + usize::from(price >= RANK2_BELOW)
}

/// Writes integers as comma-separated fields: the rows below have more columns than the
/// tuples `CsvRecord` is implemented for.
fn write_ints(out: &mut Vec<u8>, values: &[i64]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_i64(out, *v);
    }
}

/// The twelve counts of q15 and q16: bids, distinct bidders and distinct auctions, each in
/// total and per price band.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BidStats {
    pub total_bids: i64,
    pub rank1_bids: i64,
    pub rank2_bids: i64,
    pub rank3_bids: i64,
    pub total_bidders: i64,
    pub rank1_bidders: i64,
    pub rank2_bidders: i64,
    pub rank3_bidders: i64,
    pub total_auctions: i64,
    pub rank1_auctions: i64,
    pub rank2_auctions: i64,
    pub rank3_auctions: i64,
}

impl BidStats {
    /// The twelve counts in column order (CSV and checkpoint encoding).
    fn counts(&self) -> [i64; 12] {
        [
            self.total_bids,
            self.rank1_bids,
            self.rank2_bids,
            self.rank3_bids,
            self.total_bidders,
            self.rank1_bidders,
            self.rank2_bidders,
            self.rank3_bidders,
            self.total_auctions,
            self.rank1_auctions,
            self.rank2_auctions,
            self.rank3_auctions,
        ]
    }
}

impl CsvRecord for BidStats {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_ints(out, &self.counts());
    }
}

/// Exact distinct counts of one column, in total and per price band. One map entry per
/// distinct value, holding the bands it was seen in as bits: one hash lookup per record
/// answers both "new overall?" and "new in this band?".
///
/// An `IdMap`: most of q16's ~20 000 sets a day hold a few dozen ids and are cold when a bid
/// comes, so they are flat tables probed without a segment directory in front; the hot
/// channels' sets grow to tens of thousands and turn segmented (no stop-the-world resize). Its
/// hash keeps runs of consecutive ids on shared cache lines, and the bids' ids are recent ones
/// (see `weir::id_map`).
#[derive(Clone, Default)]
struct DistinctByBand {
    seen: IdMap<u8>,
}

impl DistinctByBand {
    /// Records `value` in `band`; returns (new overall, new in the band).
    #[inline]
    fn add(&mut self, value: i64, band: usize) -> (bool, bool) {
        let bit = 1u8 << band;
        let (bands, new) = self.seen.find_or_insert_with(value, || 0);
        let new_in_band = *bands & bit == 0;
        *bands |= bit;
        (new, new_in_band)
    }
}

/// Running state of one q16 group (q15 splits its state, see `q15`).
#[derive(Clone, Default)]
struct StatsState {
    stats: BidStats,
    bidders: DistinctByBand,
    auctions: DistinctByBand,
}

/// The column of a distinct set: bidders or auctions.
#[derive(Clone, Copy)]
enum Distinct {
    Bidder = 0,
    Auction = 1,
}

impl StatsState {
    #[inline]
    fn add(&mut self, b: &Bid) {
        let (bidders, auctions) = (&mut self.bidders, &mut self.auctions);
        // Infallible: the sets are the state's own.
        let _ = self.stats.fold(b, |column, value, band| {
            Ok(match column {
                Distinct::Bidder => bidders.add(value, band),
                Distinct::Auction => auctions.add(value, band),
            })
        });
    }
}

impl BidStats {
    /// Counts one bid in, asking `seen(column, value, band)` whether its bidder and auction
    /// are new overall and new in the bid's price band (and recording them).
    #[inline]
    fn fold(
        &mut self,
        b: &Bid,
        mut seen: impl FnMut(Distinct, i64, usize) -> Result<(bool, bool), StateError>,
    ) -> Result<(), StateError> {
        let band = band(b.price);
        let (new_bidder, new_band_bidder) = seen(Distinct::Bidder, b.bidder, band)?;
        let (new_auction, new_band_auction) = seen(Distinct::Auction, b.auction, band)?;
        self.total_bids += 1;
        self.total_bidders += i64::from(new_bidder);
        self.total_auctions += i64::from(new_auction);
        let (bids, bidders, auctions) = self.band_counts(band);
        *bids += 1;
        *bidders += i64::from(new_band_bidder);
        *auctions += i64::from(new_band_auction);
        Ok(())
    }

    /// The bid, bidder and auction counts of price band `band` (0, 1 or 2).
    #[inline]
    fn band_counts(&mut self, band: usize) -> (&mut i64, &mut i64, &mut i64) {
        let s = self;
        match band {
            0 => (
                &mut s.rank1_bids,
                &mut s.rank1_bidders,
                &mut s.rank1_auctions,
            ),
            1 => (
                &mut s.rank2_bids,
                &mut s.rank2_bidders,
                &mut s.rank2_auctions,
            ),
            _ => (
                &mut s.rank3_bids,
                &mut s.rank3_bidders,
                &mut s.rank3_auctions,
            ),
        }
    }

    /// Adds `other`'s counts (a partial of the split q15 aggregation) to these.
    fn add_counts(&mut self, other: &BidStats) {
        let mut sums = self.counts();
        for (sum, v) in sums.iter_mut().zip(other.counts()) {
            *sum += v;
        }
        *self = BidStats::from_counts(sums);
    }
}

/// The state of one group of an unbounded group-by over bids, and the row it stands for.
trait GroupState<K>: Default + Clone + Send + StateCodec + 'static {
    /// The group's result row.
    type Row: Clone + Send + 'static;
    /// The state has a fixed, small size (q17's counters), so reading and writing it whole
    /// per record is cheap: on the LSM backend it goes to a `ValueState`. States holding
    /// distinct sets (q16) split there: their counters go to a `ValueState` (sets left
    /// empty) and the sets' members to a `MapState`, looked up one per record through
    /// `add_split`, since a whole-state value would decode the sets per record.
    const FIXED_SIZE: bool;
    /// Folds one bid of the group in.
    fn add(&mut self, b: &Bid);
    /// Folds one bid in with the distinct sets kept outside the state: `seen(column, value,
    /// band)` answers (new overall, new in the band) and records the value. States without
    /// sets just `add`.
    fn add_split(
        &mut self,
        b: &Bid,
        _seen: impl FnMut(Distinct, i64, usize) -> Result<(bool, bool), StateError>,
    ) -> Result<(), StateError> {
        self.add(b);
        Ok(())
    }
    /// The group's current row.
    fn row(&self, key: &K) -> Self::Row;
}

/// An unbounded group-by (no window): after each bid, the change of its group's row — an
/// `Insert` for a new group, `UpdateBefore`/`UpdateAfter` otherwise — as Flink emits it
/// without mini-batching. Groups live as objects in a map of the function (heap backend, or
/// states with distinct sets), or in a `ValueState` on the LSM backend for fixed-size states.
#[derive(Clone)]
struct GroupBy<K, S> {
    groups: SegmentedMap<K, S>,
    /// The current group's state in the managed keyed state (LSM backend): the whole state,
    /// or for states with distinct sets their counters, with the sets' members in `members`.
    managed: Option<ValueState<S>>,
    members: Option<MapState<(u8, i64), u8>>,
}

impl<K, S> Default for GroupBy<K, S> {
    fn default() -> Self {
        GroupBy {
            groups: SegmentedMap::default(),
            managed: None,
            members: None,
        }
    }
}

impl<K, S> KeyedProcessFunction<K, Bid, Change<S::Row>> for GroupBy<K, S>
where
    K: std::hash::Hash + Eq + Clone + Send + StateCodec + 'static,
    S: GroupState<K>,
{
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("group"))?);
            if !S::FIXED_SIZE {
                self.members = Some(store.map_state(&MapStateDescriptor::new("group-members"))?);
            }
        }
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        // Managed groups are in the keyed state, snapshotted with it.
        out.key_map(&self.groups);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let groups: SegmentedMap<K, S> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !groups.is_empty(), "group-by state")?;
        self.groups = groups;
        Ok(())
    }

    #[inline]
    fn process(&mut self, key: &K, b: Bid, ctx: &mut ProcessContext<'_, Change<S::Row>>) {
        if let Some(group) = self.managed {
            let members = self.members;
            let folded = ctx.state().and_then(|store| {
                let before = group.get(store)?;
                let mut after = before.clone().unwrap_or_default();
                match members {
                    None => after.add(&b),
                    Some(members) => after.add_split(&b, |column, value, band| {
                        let member = (column as u8, value);
                        let bit = 1u8 << band;
                        let bands = members.get(store, &member)?;
                        let seen = bands.unwrap_or(0);
                        if seen & bit == 0 {
                            members.put(store, &member, &(seen | bit))?;
                        }
                        Ok((bands.is_none(), seen & bit == 0))
                    })?,
                }
                group.set(store, &after)?;
                Ok((before, after))
            });
            match folded {
                Ok((Some(before), after)) => {
                    ctx.emit(Change::UpdateBefore(before.row(key)));
                    ctx.emit(Change::UpdateAfter(after.row(key)));
                }
                Ok((None, after)) => ctx.emit(Change::Insert(after.row(key))),
                Err(e) => ctx.fail(e),
            }
            return;
        }
        match self.groups.get_mut(key) {
            Some(group) => {
                ctx.emit(Change::UpdateBefore(group.row(key)));
                group.add(&b);
                ctx.emit(Change::UpdateAfter(group.row(key)));
            }
            None => {
                let mut group = S::default();
                group.add(&b);
                ctx.emit(Change::Insert(group.row(key)));
                self.groups.insert(key.clone(), group);
            }
        }
    }
}

/// q15 row: the bidding statistics of one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q15Row {
    pub day: Day,
    pub stats: BidStats,
}

impl CsvRecord for Q15Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.day, self.stats).write_csv(out)
    }
}

/// q15: bidding statistics per day → day, then the twelve counts of `BidStats`.
///
/// A split distinct aggregation (Flink's `distinct-agg.split`), because keying every bid by its
/// day leaves all but one shard idle: stage 1 (`q15-distinct`) is keyed by (day, column,
/// value) for each of the two distinct columns — every bid enters it twice, once tagged with
/// its bidder and once with its auction — and stage 2 (`q15-per-day`) keyed by day sums the
/// partial counts stage 1 emits once per batch.
///
/// Why each bid goes in twice: the two distinct counts need two different partitions. A
/// bidder counted as new by one stage-1 key must never be counted by another, so its bids must
/// all meet in one place; the same bid's auction must meet all other bids of that auction,
/// which a bidder-based partition scatters. Any single combined bucket (of bidder and auction
/// together) would count a value once per bucket it falls into. Two tagged copies keep both
/// counts exact (the plain bid counts ride on the bidder copy only); the alternative, a second
/// exchange after stage 1 for the other column, would move whole bids twice as well.
///
/// Before the exchange, `q15-columns` combines each source batch's copies per (day, column,
/// value): one entry per group with the price bands seen and, for bidders, the bids per band
/// (Flink's local aggregation). The generator sends almost every bid to one of a few hot
/// bidders and auctions, so a batch of 1024 bids shrinks to a few dozen entries. Nothing waits
/// for more input: a batch's groups leave at its end.
///
/// Why the key is the value itself rather than Flink's `(day, hash(value) % 1024)` bucket: here
/// a stage-1 key's state is one entry (the price bands the value was seen in), so a record
/// costs one lookup, where a bucket key would cost the bucket's map and then the set inside.
/// The key group is the bucket: it spreads the values over the shards as evenly as a bucket
/// hash would, and keyed state follows key groups on a rescale.
pub fn q15(events: &Stream<Event>) -> Stream<Change<Q15Row>> {
    events
        .process(ColumnCombiner::default())
        .name("q15-columns")
        .key_by(|e: &DistinctEntry| (e.day, e.column, e.value))
        .process(SplitDistinct::default())
        .name("q15-distinct")
        .key_by(|d: &DayDelta| d.day)
        .process(DaySum::default())
        .name("q15-per-day")
}

/// A stage-1 key of q15: (day, distinct column as `Distinct as u8`, value).
type ColumnKey = (i64, u8, i64);

/// A stage-1 record of q15: one batch's bids seen from one of their distinct columns, for one
/// value.
#[derive(Clone, Copy, Debug)]
struct DistinctEntry {
    day: i64,
    value: i64,
    column: u8,
    /// The price bands (bits 0–2) the value's bids fell in.
    bands: u8,
    /// Bidder entries: the bids per band (auction entries: zeros, the bids count once).
    bids: [i64; 3],
}

/// The pre-exchange stage of q15 (see [`q15`]): folds a batch's bids into one entry per
/// (day, column, value), emitted at the batch's end. Empty between batches, so it has nothing
/// to checkpoint.
#[derive(Clone, Default)]
struct ColumnCombiner {
    /// Where each group of the current batch is in `entries`.
    slots: KeyMap<ColumnKey, usize>,
    entries: Vec<DistinctEntry>,
}

impl ColumnCombiner {
    #[inline]
    fn add(&mut self, day: i64, column: Distinct, value: i64, band: usize) {
        let column = column as u8;
        let at = *self.slots.entry((day, column, value)).or_insert_with(|| {
            self.entries.push(DistinctEntry {
                day,
                value,
                column,
                bands: 0,
                bids: [0; 3],
            });
            self.entries.len() - 1
        });
        if let Some(e) = self.entries.get_mut(at) {
            e.bands |= 1 << band;
            if column == Distinct::Bidder as u8
                && let Some(n) = e.bids.get_mut(band)
            {
                *n += 1;
            }
        }
    }
}

impl ProcessFunction<Event, DistinctEntry> for ColumnCombiner {
    #[inline]
    fn process(&mut self, e: Event, _ctx: &mut ProcessContext<'_, DistinctEntry>) {
        if let Event::Bid(b) = e {
            let (day, band) = (day_of(b.date_time), band(b.price));
            self.add(day, Distinct::Bidder, b.bidder, band);
            self.add(day, Distinct::Auction, b.auction, band);
        }
    }

    fn on_batch_end(&mut self, ctx: &mut ProcessContext<'_, DistinctEntry>) {
        self.slots.clear();
        for e in self.entries.drain(..) {
            ctx.emit(e);
        }
    }
}

/// Stage 1 → stage 2 of q15: what one stage-1 batch added to a day's counts.
#[derive(Clone, Copy, Debug)]
struct DayDelta {
    day: i64,
    stats: BidStats,
}

/// Stage 1 of q15: per (day, column, value) the price bands the value was seen in, and the
/// counts the current batch adds per day (bids from bidder entries; distinct values, overall
/// and per band, when an entry's value or band is new), emitted at the batch's end.
#[derive(Clone, Default)]
struct SplitDistinct {
    /// Heap backend: the bands (bits) of every key of this shard.
    seen: SegmentedMap<ColumnKey, u8>,
    /// LSM backend: the same bits, as the key's `ValueState`.
    managed: Option<ValueState<u8>>,
    /// The current batch's partial counts, per day (a batch spans one day, at midnight two):
    /// empty between batches, so no barrier or watermark ever finds it holding anything.
    pending: Vec<DayDelta>,
}

impl SplitDistinct {
    /// Records that `key`'s value was seen in the price bands `bands` (bits); returns whether
    /// the value is new overall, and the bands it is new in.
    #[inline]
    fn see(
        &mut self,
        key: &ColumnKey,
        bands: u8,
        ctx: &mut ProcessContext<'_, DayDelta>,
    ) -> Result<(bool, u8), StateError> {
        let Some(state) = self.managed else {
            let (seen, new) = self.seen.find_or_insert_with(key, || 0);
            let fresh = bands & !*seen;
            *seen |= bands;
            return Ok((new, fresh));
        };
        let store = ctx.state()?;
        let stored = state.get(store)?;
        let seen = stored.unwrap_or(0);
        let fresh = bands & !seen;
        if fresh != 0 {
            state.set(store, &(seen | bands))?;
        }
        Ok((stored.is_none(), fresh))
    }
}

impl KeyedProcessFunction<ColumnKey, DistinctEntry, DayDelta> for SplitDistinct {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("q15-bands"))?);
        }
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        // On the LSM backend the bands are in the keyed state, snapshotted with it.
        out.key_map(&self.seen);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let seen: SegmentedMap<ColumnKey, u8> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !seen.is_empty(), "q15 bands")?;
        self.seen = seen;
        Ok(())
    }

    #[inline]
    fn process(
        &mut self,
        key: &ColumnKey,
        e: DistinctEntry,
        ctx: &mut ProcessContext<'_, DayDelta>,
    ) {
        let (new, fresh) = match self.see(key, e.bands, ctx) {
            Ok(seen) => seen,
            Err(err) => return ctx.fail(err),
        };
        let at = match self.pending.iter().position(|d| d.day == e.day) {
            Some(at) => at,
            None => {
                self.pending.push(DayDelta {
                    day: e.day,
                    stats: BidStats::default(),
                });
                self.pending.len() - 1
            }
        };
        let Some(d) = self.pending.get_mut(at) else {
            return;
        };
        let s = &mut d.stats;
        let new = i64::from(new);
        let bidder = e.column == Distinct::Bidder as u8;
        if bidder {
            s.total_bids += e.bids.iter().sum::<i64>();
            s.total_bidders += new;
        } else {
            s.total_auctions += new;
        }
        for (band, bids) in e.bids.iter().enumerate() {
            let new_in_band = i64::from((fresh >> band) & 1);
            let (band_bids, bidders, auctions) = s.band_counts(band);
            if bidder {
                *band_bids += bids;
                *bidders += new_in_band;
            } else {
                *auctions += new_in_band;
            }
        }
    }

    fn on_batch_end(&mut self, ctx: &mut ProcessContext<'_, DayDelta>) {
        for d in self.pending.drain(..) {
            // Auction entries of values already seen change nothing.
            if d.stats != BidStats::default() {
                ctx.emit(d);
            }
        }
    }
}

/// Stage 2 of q15: per day the sum of the partials, and one change per day and batch.
#[derive(Clone, Default)]
struct DaySum {
    /// Per day (a handful): kept in the function on both backends, checkpointed per key.
    days: SegmentedMap<i64, BidStats>,
    /// The days the current batch changed, with their counts before it (`None`: a new day).
    changed: Vec<(i64, Option<BidStats>)>,
}

impl KeyedProcessFunction<i64, DayDelta, Change<Q15Row>> for DaySum {
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.days);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        self.days = state.key_map()?;
        Ok(())
    }

    #[inline]
    fn process(&mut self, day: &i64, d: DayDelta, _ctx: &mut ProcessContext<'_, Change<Q15Row>>) {
        let (stats, new) = self.days.find_or_insert_with(day, BidStats::default);
        if !self.changed.iter().any(|(c, _)| c == day) {
            self.changed.push((*day, (!new).then_some(*stats)));
        }
        stats.add_counts(&d.stats);
    }

    fn on_batch_end(&mut self, ctx: &mut ProcessContext<'_, Change<Q15Row>>) {
        for (day, before) in self.changed.drain(..) {
            let Some(&after) = self.days.get(&day) else {
                continue;
            };
            let row = |stats| Q15Row {
                day: Day(day.saturating_mul(MS_PER_DAY)),
                stats,
            };
            match before {
                None => ctx.emit(Change::Insert(row(after))),
                Some(before) if before != after => {
                    ctx.emit(Change::UpdateBefore(row(before)));
                    ctx.emit(Change::UpdateAfter(row(after)));
                }
                Some(_) => {}
            }
        }
    }
}

/// A channel name as a group key: hashed and compared by its text, never copied (events hold
/// it as a `&'static str` already).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ChannelKey(Str);

/// Encoded as a string; decoding interns it (see `weir::state::intern`).
impl StateCodec for ChannelKey {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(ChannelKey(<Str>::decode_from(input)?))
    }
}

/// q16 row: the statistics of one channel on one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q16Row {
    pub channel: Str,
    pub day: Day,
    /// The group's latest `HH:mm`.
    pub minute: HourMinute,
    pub stats: BidStats,
}

impl CsvRecord for Q16Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.channel, self.day, self.minute, self.stats).write_csv(out)
    }
}

/// Running state of one q16 group: q15's, plus the latest bid time.
#[derive(Clone, Default)]
struct ChannelState {
    stats: StatsState,
    /// Within one day, the largest `HH:mm` is that of the latest bid.
    latest: i64,
}

impl ChannelState {
    /// Before the bid is counted: a new group starts at its first bid's time (the default 0
    /// is not a bid's time), later ones keep the latest.
    #[inline]
    fn see_time(&mut self, b: &Bid) {
        self.latest = if self.stats.stats.total_bids == 0 {
            b.date_time
        } else {
            self.latest.max(b.date_time)
        };
    }
}

impl GroupState<(ChannelKey, i64)> for ChannelState {
    type Row = Q16Row;
    const FIXED_SIZE: bool = false;

    #[inline]
    fn add(&mut self, b: &Bid) {
        self.see_time(b);
        self.stats.add(b);
    }

    fn add_split(
        &mut self,
        b: &Bid,
        seen: impl FnMut(Distinct, i64, usize) -> Result<(bool, bool), StateError>,
    ) -> Result<(), StateError> {
        self.see_time(b);
        self.stats.stats.fold(b, seen)
    }

    fn row(&self, &(ChannelKey(channel), day): &(ChannelKey, i64)) -> Q16Row {
        Q16Row {
            channel,
            day: Day(day.saturating_mul(MS_PER_DAY)),
            minute: HourMinute(self.latest),
            stats: self.stats.stats,
        }
    }
}

/// q16: bidding statistics per channel and day → channel, day, minute, the twelve counts.
pub fn q16(events: &Stream<Event>) -> Stream<Change<Q16Row>> {
    bids(events)
        .key_by(|b: &Bid| (ChannelKey(b.channel), day_of(b.date_time)))
        .process(GroupBy::<(ChannelKey, i64), ChannelState>::default())
        .name("q16-per-channel-day")
}

/// q17 row: the price statistics of one auction on one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q17Row {
    pub auction: i64,
    pub day: Day,
    pub total_bids: i64,
    pub rank1_bids: i64,
    pub rank2_bids: i64,
    pub rank3_bids: i64,
    pub min_price: i64,
    pub max_price: i64,
    /// Truncated, as Flink's `AVG` of BIGINT.
    pub avg_price: i64,
    pub sum_price: i64,
}

impl CsvRecord for Q17Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_i64(out, self.auction);
        out.push(b',');
        self.day.write_csv(out);
        out.push(b',');
        write_ints(
            out,
            &[
                self.total_bids,
                self.rank1_bids,
                self.rank2_bids,
                self.rank3_bids,
                self.min_price,
                self.max_price,
                self.avg_price,
                self.sum_price,
            ],
        );
    }
}

/// Running state of one q17 group.
#[derive(Clone, Copy, Default)]
struct AuctionDayState {
    bids: [i64; 3],
    min: i64,
    max: i64,
    sum: i64,
}

impl GroupState<(i64, i64)> for AuctionDayState {
    type Row = Q17Row;
    const FIXED_SIZE: bool = true;

    #[inline]
    fn add(&mut self, b: &Bid) {
        let first = self.bids == [0; 3];
        if let Some(n) = self.bids.get_mut(band(b.price)) {
            *n += 1;
        }
        (self.min, self.max) = if first {
            (b.price, b.price)
        } else {
            (self.min.min(b.price), self.max.max(b.price))
        };
        self.sum = self.sum.saturating_add(b.price);
    }

    fn row(&self, &(auction, day): &(i64, i64)) -> Q17Row {
        let [rank1_bids, rank2_bids, rank3_bids] = self.bids;
        let total_bids = rank1_bids + rank2_bids + rank3_bids;
        Q17Row {
            auction,
            day: Day(day.saturating_mul(MS_PER_DAY)),
            total_bids,
            rank1_bids,
            rank2_bids,
            rank3_bids,
            min_price: self.min,
            max_price: self.max,
            // A group has at least one bid; Rust's division truncates as Java's does.
            avg_price: self.sum.checked_div(total_bids).unwrap_or(0),
            sum_price: self.sum,
        }
    }
}

/// q17: price statistics per auction and day.
pub fn q17(events: &Stream<Event>) -> Stream<Change<Q17Row>> {
    bids(events)
        .key_by(|b: &Bid| (b.auction, day_of(b.date_time)))
        .process(GroupBy::<(i64, i64), AuctionDayState>::default())
        .name("q17-per-auction-day")
}

/// q18 row: all the columns of a bid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q18Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub channel: Str,
    pub url: Str,
    pub date_time: Ts,
    pub extra: Str,
}

impl From<Bid> for Q18Row {
    fn from(b: Bid) -> Self {
        Q18Row {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            channel: b.channel,
            url: b.url,
            date_time: Ts(b.date_time),
            extra: b.extra,
        }
    }
}

impl CsvRecord for Q18Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.channel,
            self.url,
            self.date_time,
            self.extra,
        )
            .write_csv(out)
    }
}

/// q18: the latest bid of every (bidder, auction); among bids at the same time, the last to
/// arrive.
pub fn q18(events: &Stream<Event>) -> Stream<Change<Q18Row>> {
    bids(events)
        .key_by(|b: &Bid| (b.bidder, b.auction))
        .process(Deduplicate::new(Keep::Last, |b: &Bid| b.date_time))
        .map(|c| map_change(c, Q18Row::from))
        .name("q18-last-bid")
}

/// q19 row: a bid and its rank among its auction's bids by price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q19Row {
    pub bid: Q18Row,
    /// 1 for the highest price.
    pub rank_number: i64,
}

impl CsvRecord for Q19Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.bid, self.rank_number).write_csv(out)
    }
}

/// q19: the ten highest bids of every auction, ranked 1–10 (ROW_NUMBER: equal prices get
/// distinct ranks, the earlier bid first).
pub fn q19(events: &Stream<Event>) -> Stream<Change<Q19Row>> {
    bids(events)
        .key_by(|b: &Bid| b.auction)
        .process(TopN::new(TOP_BIDS, |a: &Bid, b: &Bid| {
            b.price.cmp(&a.price)
        }))
        .map(|c| {
            map_change(c, |(b, rank)| Q19Row {
                bid: Q18Row::from(b),
                rank_number: i64::try_from(rank).unwrap_or(i64::MAX),
            })
        })
        .name("q19-top-bids")
}

/// The same change of another form of the row.
#[inline]
fn map_change<A, B>(c: Change<A>, f: impl FnOnce(A) -> B) -> Change<B> {
    match c {
        Change::Insert(r) => Change::Insert(f(r)),
        Change::UpdateBefore(r) => Change::UpdateBefore(f(r)),
        Change::UpdateAfter(r) => Change::UpdateAfter(f(r)),
        Change::Delete(r) => Change::Delete(f(r)),
    }
}

// Checkpoint encodings of the group states (all plain counters and distinct-value sets).

impl StateCodec for BidStats {
    fn encode(&self, out: &mut Vec<u8>) {
        for v in self.counts() {
            v.encode(out);
        }
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let mut v = [0i64; 12];
        for x in &mut v {
            *x = i64::decode_from(input)?;
        }
        Ok(BidStats::from_counts(v))
    }
}

impl BidStats {
    /// The inverse of `counts`.
    fn from_counts(v: [i64; 12]) -> BidStats {
        let [
            total_bids,
            rank1_bids,
            rank2_bids,
            rank3_bids,
            total_bidders,
            rank1_bidders,
            rank2_bidders,
            rank3_bidders,
            total_auctions,
            rank1_auctions,
            rank2_auctions,
            rank3_auctions,
        ] = v;
        BidStats {
            total_bids,
            rank1_bids,
            rank2_bids,
            rank3_bids,
            total_bidders,
            rank1_bidders,
            rank2_bidders,
            rank3_bidders,
            total_auctions,
            rank1_auctions,
            rank2_auctions,
            rank3_auctions,
        }
    }
}

impl StateCodec for DistinctByBand {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.seen.len() as u32).encode(out);
        for (value, bands) in self.seen.iter() {
            (value, *bands).encode(out);
        }
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let seen: Vec<(i64, u8)> = Vec::decode_from(input)?;
        Ok(DistinctByBand {
            seen: seen.into_iter().collect(),
        })
    }
}

impl StateCodec for StatsState {
    fn encode(&self, out: &mut Vec<u8>) {
        self.stats.encode(out);
        self.bidders.encode(out);
        self.auctions.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(StatsState {
            stats: BidStats::decode_from(input)?,
            bidders: DistinctByBand::decode_from(input)?,
            auctions: DistinctByBand::decode_from(input)?,
        })
    }
}

impl StateCodec for ChannelState {
    fn encode(&self, out: &mut Vec<u8>) {
        self.stats.encode(out);
        self.latest.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(ChannelState {
            stats: StatsState::decode_from(input)?,
            latest: i64::decode_from(input)?,
        })
    }
}

impl StateCodec for AuctionDayState {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.bids[0], self.bids[1], self.bids[2]).encode(out);
        (self.min, self.max, self.sum).encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (a, b, c) = <(i64, i64, i64)>::decode_from(input)?;
        let (min, max, sum) = <(i64, i64, i64)>::decode_from(input)?;
        Ok(AuctionDayState {
            bids: [a, b, c],
            min,
            max,
            sum,
        })
    }
}

#[cfg(test)]
mod tests {
    use weir::id_map::FLAT_LIMIT;

    use super::*;

    /// The members of a distinct set, sorted.
    fn members(set: &DistinctByBand) -> Vec<(i64, u8)> {
        let mut m: Vec<(i64, u8)> = set.seen.iter().map(|(k, v)| (k, *v)).collect();
        m.sort_unstable();
        m
    }

    /// A q16 group's checkpointed state reads back whole: counts, latest time and both sets,
    /// a small (flat) one and one past the flat limit (segmented), extreme ids included.
    #[test]
    fn channel_state_round_trips_through_its_codec() -> Result<(), StateError> {
        let mut state = ChannelState::default();
        let bid = |bidder: i64, auction: i64, price: i64, date_time: i64| Bid {
            bidder,
            auction,
            price,
            channel: "c",
            url: "u",
            date_time,
            extra: "",
        };
        for (i, id) in (0..FLAT_LIMIT as i64 + 100).enumerate() {
            // Bidders: many (spills); auctions: a few, strided, in several bands.
            state.add(&bid(
                id,
                (id % 7) << 20,
                (i as i64 % 3) * 600_000,
                1_000 + id,
            ));
        }
        state.add(&bid(i64::MIN, i64::MAX, 5, 10));
        assert!(state.stats.bidders.seen.is_segmented());
        assert!(!state.stats.auctions.seen.is_segmented());

        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        let back = ChannelState::decode(&bytes)?;
        assert_eq!(back.latest, state.latest);
        assert_eq!(back.stats.stats, state.stats.stats);
        assert_eq!(members(&back.stats.bidders), members(&state.stats.bidders));
        assert_eq!(
            members(&back.stats.auctions),
            members(&state.stats.auctions)
        );
        assert_eq!(members(&back.stats.auctions).len(), 8);
        assert_eq!(state.stats.stats.total_bidders, FLAT_LIMIT as i64 + 101);
        Ok(())
    }
}
