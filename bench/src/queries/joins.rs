//! The joins: q3 (local item suggestion), q8 (new users, a window join), q20 (bids with their
//! auctions), and the auction-lifetime joins q4 (average winning price per category) and q9
//! (winning bids). All are keyed co-process functions over two keyed streams.

use std::collections::BTreeMap;

use weir::checkpoint::{StateRestore, StateSnapshot};
use weir::dense::DenseMap;
use weir::key::KeyMap;
use weir::nexmark::{Auction, Bid, Event, Person, Str};
use weir::segmented::SegmentedMap;
use weir::state::{
    KeyedStateStore, ListState, ListStateDescriptor, MapState, MapStateDescriptor, StateCodec,
    StateError, ValueState, ValueStateDescriptor,
};
use weir::vec_pool::VecPool;
use weir::{
    Change, CsvRecord, KeyedCoProcessFunction, KeyedProcessFunction, ProcessContext, Stream,
    Timestamp,
};

use super::rows::Timestamp as Ts;
use super::{bids, bids_as};

/// The persons of the event stream.
pub fn persons(events: &Stream<Event>) -> Stream<Person> {
    events
        .flat_map(|e| match e {
            Event::Person(p) => Some(p),
            _ => None,
        })
        .name("persons")
}

/// The auctions of the event stream.
pub fn auctions(events: &Stream<Event>) -> Stream<Auction> {
    auctions_as(events, |a| *a)
}

/// The auctions of the event stream cut to what `project` keeps (see `bids_as`).
fn auctions_as<T: weir::Data>(
    events: &Stream<Event>,
    project: impl Fn(&Auction) -> T + Clone + Send + 'static,
) -> Stream<T> {
    events
        .flat_map(move |e| match e {
            Event::Auction(a) => Some(project(&a)),
            _ => None,
        })
        .name("auctions")
}

/// q3 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q3Row {
    pub name: Str,
    pub city: Str,
    pub state: Str,
    pub id: i64,
}

impl CsvRecord for Q3Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.name, self.city, self.state, self.id).write_csv(out)
    }
}

#[derive(Clone, Default)]
struct Q3Slot {
    person: Option<Person>,
    auctions: Vec<i64>,
}

/// Person ids are unique, so each key holds at most one person; auctions wait for theirs.
/// On the heap backend the slots are objects in a map; on the LSM backend, keyed state.
#[derive(Clone, Default)]
struct Q3Join {
    slots: SegmentedMap<i64, Q3Slot>,
    managed: Option<(ValueState<Person>, ListState<i64>)>,
}

impl KeyedCoProcessFunction<i64, Auction, Person, Q3Row> for Q3Join {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some((
                store.value_state(&ValueStateDescriptor::new("q3-person"))?,
                store.list_state(&ListStateDescriptor::new("q3-auctions"))?,
            ));
        }
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.slots);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let slots: SegmentedMap<i64, Q3Slot> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !slots.is_empty(), "q3 join rows")?;
        self.slots = slots;
        Ok(())
    }

    fn process_left(&mut self, key: &i64, a: Auction, ctx: &mut ProcessContext<'_, Q3Row>) {
        if let Some((person, waiting)) = self.managed {
            let found = ctx.state().and_then(|store| {
                let p = person.get(store)?;
                if p.is_none() {
                    waiting.add(store, &a.id)?;
                }
                Ok(p)
            });
            match found {
                Ok(Some(p)) => ctx.emit(q3_row(&p, a.id)),
                Ok(None) => {}
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let slot = self.slots.get_or_insert_with(key, Q3Slot::default);
        match &slot.person {
            Some(p) => ctx.emit(q3_row(p, a.id)),
            None => slot.auctions.push(a.id),
        }
    }

    fn process_right(&mut self, key: &i64, p: Person, ctx: &mut ProcessContext<'_, Q3Row>) {
        if let Some((person, waiting)) = self.managed {
            let found = ctx.state().and_then(|store| {
                let ids = waiting.get(store)?;
                waiting.clear(store)?;
                person.set(store, &p)?;
                Ok(ids)
            });
            match found {
                Ok(ids) => ids.into_iter().for_each(|id| ctx.emit(q3_row(&p, id))),
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let slot = self.slots.get_or_insert_with(key, Q3Slot::default);
        for id in slot.auctions.drain(..) {
            ctx.emit(q3_row(&p, id));
        }
        slot.person = Some(p);
    }
}

fn q3_row(p: &Person, auction: i64) -> Q3Row {
    Q3Row {
        name: p.name,
        city: p.city,
        state: p.state,
        id: auction,
    }
}

/// q3: category-10 auctions of sellers in Oregon, Idaho or California.
pub fn q3(events: &Stream<Event>) -> Stream<Q3Row> {
    let auctions = auctions(events)
        .filter(|a| a.category == 10)
        .key_by(|a: &Auction| a.seller);
    let persons = persons(events)
        .filter(|p| matches!(p.state, "OR" | "ID" | "CA"))
        .key_by(|p: &Person| p.id);
    auctions
        .connect(&persons)
        .process(Q3Join::default())
        .name("q3-join")
}

/// q8 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q8Row {
    pub id: i64,
    pub name: Str,
    pub starttime: Ts,
}

impl CsvRecord for Q8Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.id, self.name, self.starttime).write_csv(out)
    }
}

const TEN_SECONDS: i64 = 10_000;

/// Room a new waiting list starts with: most auctions collect a few bids before they come.
const WAITING: usize = 4;

fn window_start(t: Timestamp) -> Timestamp {
    t - t.rem_euclid(TEN_SECONDS)
}

/// Per (window start, person id): the person's name if they joined in that window, and
/// whether they opened an auction in it. Ordered by window so closed ones pop first.
/// On the LSM backend: per person a map from window start to that pair, fired by a timer at
/// the window's end.
#[derive(Clone, Default)]
struct Q8Join {
    windows: BTreeMap<(Timestamp, i64), (Option<Str>, bool)>,
    managed: Option<MapState<Timestamp, (Option<Str>, bool)>>,
}

impl Q8Join {
    /// LSM layout: updates the pair of `key`'s window at `start` (timer at its end).
    fn update_managed(
        windows: MapState<Timestamp, (Option<Str>, bool)>,
        start: Timestamp,
        ctx: &mut ProcessContext<'_, Q8Row>,
        update: impl FnOnce(&mut (Option<Str>, bool)),
    ) {
        ctx.register_event_time_timer(start.saturating_add(TEN_SECONDS - 1));
        let stored = ctx.state().and_then(|store| {
            let mut slot = windows.get(store, &start)?.unwrap_or_default();
            update(&mut slot);
            windows.put(store, &start, &slot)
        });
        if let Err(e) = stored {
            ctx.fail(e);
        }
    }
}

impl KeyedCoProcessFunction<i64, Person, Auction, Q8Row> for Q8Join {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.map_state(&MapStateDescriptor::new("q8-windows"))?);
        }
        Ok(())
    }

    /// LSM layout: `key`'s window ending at `end` closed.
    fn on_timer(&mut self, key: &i64, end: Timestamp, ctx: &mut ProcessContext<'_, Q8Row>) {
        let Some(windows) = self.managed else { return };
        let start = end.saturating_sub(TEN_SECONDS - 1);
        let slot = ctx.state().and_then(|store| {
            let slot = windows.get(store, &start)?;
            windows.remove(store, &start)?;
            Ok(slot)
        });
        match slot {
            Ok(Some((Some(name), true))) => ctx.emit(Q8Row {
                id: *key,
                name,
                starttime: Ts(start),
            }),
            Ok(_) => {}
            Err(e) => ctx.fail(e),
        }
    }

    /// Keyed by person id (the join key), so windows follow their key group on a rescale.
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for ((start, id), slot) in &self.windows {
            out.keyed(id, &(*start, *slot));
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        for entry in state.keyed::<i64, (Timestamp, (Option<Str>, bool))>() {
            let (id, (start, slot)) = entry?;
            StateError::refuse_heap_rows(self.managed.is_some(), true, "q8 windows")?;
            self.windows.insert((start, id), slot);
        }
        Ok(())
    }

    fn process_left(&mut self, key: &i64, p: Person, ctx: &mut ProcessContext<'_, Q8Row>) {
        if let Some(windows) = self.managed {
            Self::update_managed(windows, window_start(p.date_time), ctx, |s| {
                s.0 = Some(p.name)
            });
            return;
        }
        let slot = self
            .windows
            .entry((window_start(p.date_time), *key))
            .or_default();
        slot.0 = Some(p.name);
    }

    fn process_right(&mut self, key: &i64, a: Auction, ctx: &mut ProcessContext<'_, Q8Row>) {
        if let Some(windows) = self.managed {
            Self::update_managed(windows, window_start(a.date_time), ctx, |s| s.1 = true);
            return;
        }
        self.windows
            .entry((window_start(a.date_time), *key))
            .or_default()
            .1 = true;
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, Q8Row>) {
        while let Some(entry) = self.windows.first_entry() {
            let (start, id) = *entry.key();
            if start.saturating_add(TEN_SECONDS - 1) > watermark {
                break;
            }
            if let (Some(name), true) = entry.remove() {
                ctx.emit(Q8Row {
                    id,
                    name,
                    starttime: Ts(start),
                });
            }
        }
    }
}

/// q8: people who opened an auction in the same 10-second window they joined in.
pub fn q8(events: &Stream<Event>) -> Stream<Q8Row> {
    let persons = persons(events).key_by(|p: &Person| p.id);
    let auctions = auctions(events).key_by(|a: &Auction| a.seller);
    persons
        .connect(&auctions)
        .process(Q8Join::default())
        .name("q8-join")
}

/// q20 row: the bid's columns, then its auction's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q20Row {
    pub bid: Bid,
    pub auction: Auction,
}

impl CsvRecord for Q20Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        let (b, a) = (&self.bid, &self.auction);
        (
            b.auction,
            b.bidder,
            b.price,
            b.channel,
            b.url,
            Ts(b.date_time),
            b.extra,
        )
            .write_csv(out);
        out.push(b',');
        (
            a.item_name,
            a.description,
            a.initial_bid,
            a.reserve,
            Ts(a.date_time),
            Ts(a.expires),
            a.seller,
            a.category,
        )
            .write_csv(out);
        out.push(b',');
        a.extra.write_csv(out);
    }
}

/// What one auction id has: bids waiting for the auction, the auction, or the knowledge that
/// it is not in category 10 (its bids can never match and are dropped).
#[derive(Clone)]
enum Q20Slot {
    Waiting(Vec<Bid>),
    Matched(Auction),
    Rejected,
}

/// On the heap backend a slot per auction id in a map of the function; on the LSM backend the
/// auction's outcome (`Matched` or `Rejected`, never `Waiting`) in a `ValueState` and the bids
/// waiting for it in a `ListState` (appended without a read). Like the heap map (and Flink's
/// regular join) nothing expires: a bid may come any time after its auction.
#[derive(Clone, Default)]
struct Q20Join {
    slots: DenseMap<Q20Slot>,
    /// Drained waiting lists, as in `WinningBid`.
    spare: VecPool<Bid>,
    managed: Option<(ValueState<Q20Slot>, ListState<Bid>)>,
}

impl KeyedCoProcessFunction<i64, Bid, Auction, Q20Row> for Q20Join {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some((
                store.value_state(&ValueStateDescriptor::new("q20-auction"))?,
                store.list_state(&ListStateDescriptor::new("q20-waiting"))?,
            ));
        }
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.dense_map(&self.slots);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let slots: DenseMap<Q20Slot> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !slots.is_empty(), "q20 join rows")?;
        self.slots = slots;
        Ok(())
    }

    fn process_left(&mut self, key: &i64, b: Bid, ctx: &mut ProcessContext<'_, Q20Row>) {
        if let Some((auction, waiting)) = self.managed {
            let found = ctx.state().and_then(|store| {
                let a = auction.get(store)?;
                if a.is_none() {
                    waiting.add(store, &b)?;
                }
                Ok(a)
            });
            match found {
                Ok(Some(Q20Slot::Matched(a))) => ctx.emit(Q20Row { bid: b, auction: a }),
                Ok(_) => {}
                Err(e) => ctx.fail(e),
            }
            return;
        }
        let spare = &self.spare;
        match self
            .slots
            .get_or_insert_with(*key, || Q20Slot::Waiting(spare.take(WAITING)))
        {
            Q20Slot::Waiting(bids) => bids.push(b),
            Q20Slot::Matched(a) => ctx.emit(Q20Row {
                bid: b,
                auction: *a,
            }),
            Q20Slot::Rejected => {}
        }
    }

    fn process_right(&mut self, key: &i64, a: Auction, ctx: &mut ProcessContext<'_, Q20Row>) {
        let next = if a.category == 10 {
            Q20Slot::Matched(a)
        } else {
            Q20Slot::Rejected
        };
        if let Some((auction, waiting)) = self.managed {
            let found = ctx.state().and_then(|store| {
                let bids = waiting.get(store)?;
                if !bids.is_empty() {
                    waiting.clear(store)?;
                }
                auction.set(store, &next)?;
                Ok(bids)
            });
            match found {
                Ok(bids) if a.category == 10 => {
                    for b in bids {
                        ctx.emit(Q20Row { bid: b, auction: a });
                    }
                }
                Ok(_) => {}
                Err(e) => ctx.fail(e),
            }
            return;
        }
        if let Some(Q20Slot::Waiting(mut bids)) = self.slots.insert(*key, next) {
            if a.category == 10 {
                for b in bids.drain(..) {
                    ctx.emit(Q20Row { bid: b, auction: a });
                }
            }
            self.spare.give(bids);
        }
    }
}

/// q20: bids joined with their auction, for auctions of category 10.
pub fn q20(events: &Stream<Event>) -> Stream<Q20Row> {
    let bids = bids(events).key_by(|b: &Bid| b.auction);
    let auctions = auctions(events).key_by(|a: &Auction| a.id);
    bids.connect(&auctions)
        .process(Q20Join::default())
        .name("q20-join")
}

/// What the winning-bid stage keeps of auctions and bids and its changelog rows (q9: whole
/// rows; q4: only what its averages need).
trait WinnerView: Clone + Default + Send + 'static {
    /// The part of an auction kept.
    type A: Copy + StateCodec + Send + 'static;
    /// The part of a bid kept.
    type B: Copy + StateCodec + Send + 'static;
    /// A changelog row.
    type Row: Clone + Send + 'static;
    fn auction(a: &Auction) -> Self::A;
    fn bid(b: &Bid) -> Self::B;
    /// The auction's lifetime: (start, expires).
    fn lifetime(a: &Self::A) -> (Timestamp, Timestamp);
    /// The bid's (price, time).
    fn offer(b: &Self::B) -> (i64, Timestamp);
    fn row(a: &Self::A, b: &Self::B) -> Self::Row;
}

/// Whole rows (q9).
#[derive(Clone, Copy, Default)]
struct WholeRows;

impl WinnerView for WholeRows {
    type A = Auction;
    type B = Bid;
    type Row = (Auction, Bid);
    fn auction(a: &Auction) -> Auction {
        *a
    }
    fn bid(b: &Bid) -> Bid {
        *b
    }
    fn lifetime(a: &Auction) -> (Timestamp, Timestamp) {
        (a.date_time, a.expires)
    }
    fn offer(b: &Bid) -> (i64, Timestamp) {
        (b.price, b.date_time)
    }
    fn row(a: &Auction, b: &Bid) -> (Auction, Bid) {
        (*a, *b)
    }
}

/// The winning bid of an auction so far: the highest price among bids inside its lifetime,
/// ties broken by the earliest time.
#[derive(Clone)]
enum Lifetime<A, B> {
    /// Bids that came before their auction.
    Waiting(Vec<B>),
    /// The auction and its best bid so far.
    Open(A, Option<B>),
}

/// The LSM layout of an auction-lifetime slot: the open auction with its best bid so far in a
/// `ValueState`, bids that came before it in a `ListState` (appended without a read).
type LifetimeStates<A, B> = (ValueState<(A, Option<B>)>, ListState<B>);

/// What stage 1 of q4 and q9 does with a change of an auction's winning bid: q9 emits the
/// changelog of winners ([`Changelog`]), q4 folds it into per-category sums
/// ([`CategoryDeltas`]).
trait Winners<V: WinnerView>: Clone + Default + Send + 'static {
    type Out: weir::Data;
    /// Names of the LSM layout's states (open auctions, bids waiting for their auction).
    const STATES: (&'static str, &'static str);
    /// `auction`'s winning bid changed from `old` (none yet) to `new`.
    fn changed(
        &mut self,
        auction: &V::A,
        old: Option<&V::B>,
        new: &V::B,
        ctx: &mut ProcessContext<'_, Self::Out>,
    );
    /// Sends on what `changed` held back (at every watermark and at end of input).
    fn flush(&mut self, _ctx: &mut ProcessContext<'_, Self::Out>) {}
    /// Writes what is held back into a checkpoint.
    fn snapshot(&self, _out: &mut StateSnapshot<'_>) {}
    fn restore(&mut self, _state: &StateRestore) -> Result<(), StateError> {
        Ok(())
    }
}

/// q9's winners: the changelog of each auction's winning bid, row by row.
#[derive(Clone, Copy, Default)]
struct Changelog;

impl<V: WinnerView> Winners<V> for Changelog
where
    V::Row: weir::Data,
{
    type Out = Change<V::Row>;
    const STATES: (&'static str, &'static str) = ("winning-bid-auction", "winning-bid-waiting");

    fn changed(
        &mut self,
        auction: &V::A,
        old: Option<&V::B>,
        new: &V::B,
        ctx: &mut ProcessContext<'_, Change<V::Row>>,
    ) {
        match old {
            Some(old) => {
                ctx.emit(Change::UpdateBefore(V::row(auction, old)));
                ctx.emit(Change::UpdateAfter(V::row(auction, new)));
            }
            None => ctx.emit(Change::Insert(V::row(auction, new))),
        }
    }
}

/// Stage 1 of q4 and q9: per auction its winning bid, each change handed to `W`. On the heap
/// backend the slots are objects in a map of the function; on the LSM backend, keyed state
/// (`LifetimeStates`). Nothing expires, as in the heap map: a bid after the auction's end is
/// dropped by the lifetime check only if the auction is still known.
struct WinningBid<V: WinnerView, W> {
    /// A `DenseMap`, not a `HashMap`: a doubling of a table of hundreds of thousands of open
    /// auctions stopped the shard for tens of ms (q9's p99.9), and auction ids are handed out
    /// in sequence and bid on while new, so the live ones share a few cache lines instead of a
    /// cold miss per bid.
    slots: DenseMap<Lifetime<V::A, V::B>>,
    /// Drained waiting lists: nearly every auction has bids before it (ids are bid on up to
    /// ten ahead of the newest auction), so a list per auction would be a malloc and a free.
    spare: VecPool<V::B>,
    managed: Option<LifetimeStates<V::A, V::B>>,
    winners: W,
}

impl<V: WinnerView, W: Default> Default for WinningBid<V, W> {
    fn default() -> Self {
        WinningBid {
            slots: DenseMap::default(),
            spare: VecPool::default(),
            managed: None,
            winners: W::default(),
        }
    }
}

impl<V: WinnerView, W: Clone> Clone for WinningBid<V, W> {
    fn clone(&self) -> Self {
        WinningBid {
            slots: self.slots.clone(),
            spare: self.spare.clone(),
            managed: self.managed,
            winners: self.winners.clone(),
        }
    }
}

fn beats(new: &Bid, old: &Bid) -> bool {
    new.price > old.price || (new.price == old.price && new.date_time < old.date_time)
}

/// `beats` on the (price, time) of a view.
fn view_beats((price, time): (i64, Timestamp), (old_price, old_time): (i64, Timestamp)) -> bool {
    price > old_price || (price == old_price && time < old_time)
}

/// Offers bid `b` to `auction` whose best bid is `best`; true if `b` became the best (and
/// `winners` was told).
fn offer<V: WinnerView, W: Winners<V>>(
    auction: &V::A,
    best: &mut Option<V::B>,
    b: V::B,
    winners: &mut W,
    ctx: &mut ProcessContext<'_, W::Out>,
) -> bool {
    let (start, expires) = V::lifetime(auction);
    let (_, time) = V::offer(&b);
    if time < start || time > expires {
        return false;
    }
    if best.is_some_and(|old| !view_beats(V::offer(&b), V::offer(&old))) {
        return false;
    }
    winners.changed(auction, best.as_ref(), &b, ctx);
    *best = Some(b);
    true
}

/// The LSM layout's paths, out of line: inlined into the heap path's functions they made q9
/// (whole rows) measurably slower on the heap backend.
impl<V: WinnerView, W: Winners<V>> WinningBid<V, W> {
    #[inline(never)]
    fn auction_managed(
        &mut self,
        (open, waiting): LifetimeStates<V::A, V::B>,
        a: V::A,
        ctx: &mut ProcessContext<'_, W::Out>,
    ) {
        let bids = ctx.state().and_then(|store| {
            let bids = waiting.get(store)?;
            if !bids.is_empty() {
                waiting.clear(store)?;
            }
            Ok(bids)
        });
        let mut best = None;
        match bids {
            Ok(bids) => {
                for b in bids {
                    offer::<V, W>(&a, &mut best, b, &mut self.winners, ctx);
                }
            }
            Err(e) => return ctx.fail(e),
        }
        if let Err(e) = ctx.state().and_then(|store| open.set(store, &(a, best))) {
            ctx.fail(e);
        }
    }

    #[inline(never)]
    fn bid_managed(
        &mut self,
        (open, waiting): LifetimeStates<V::A, V::B>,
        b: V::B,
        ctx: &mut ProcessContext<'_, W::Out>,
    ) {
        let found = ctx.state().and_then(|store| {
            let found = open.get(store)?;
            if found.is_none() {
                waiting.add(store, &b)?;
            }
            Ok(found)
        });
        match found {
            Ok(Some((a, mut best))) => {
                if offer::<V, W>(&a, &mut best, b, &mut self.winners, ctx)
                    && let Err(e) = ctx.state().and_then(|store| open.set(store, &(a, best)))
                {
                    ctx.fail(e);
                }
            }
            Ok(None) => {}
            Err(e) => ctx.fail(e),
        }
    }
}

impl<V: WinnerView, W: Winners<V>> KeyedCoProcessFunction<i64, (i64, V::A), (i64, V::B), W::Out>
    for WinningBid<V, W>
{
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            let (auction, waiting) = W::STATES;
            self.managed = Some((
                store.value_state(&ValueStateDescriptor::new(auction))?,
                store.list_state(&ListStateDescriptor::new(waiting))?,
            ));
        }
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.dense_map(&self.slots);
        self.winners.snapshot(out);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let slots: DenseMap<Lifetime<V::A, V::B>> = state.key_map()?;
        StateError::refuse_heap_rows(
            self.managed.is_some(),
            !slots.is_empty(),
            "winning-bid rows",
        )?;
        self.slots = slots;
        self.winners.restore(state)
    }

    fn process_left(
        &mut self,
        key: &i64,
        (_, a): (i64, V::A),
        ctx: &mut ProcessContext<'_, W::Out>,
    ) {
        if let Some(states) = self.managed {
            return self.auction_managed(states, a, ctx);
        }
        let mut waiting = match self.slots.insert(*key, Lifetime::Open(a, None)) {
            Some(Lifetime::Waiting(bids)) => bids,
            _ => return,
        };
        if let Some(Lifetime::Open(a, best)) = self.slots.get_mut(*key) {
            for b in waiting.drain(..) {
                offer::<V, W>(a, best, b, &mut self.winners, ctx);
            }
        }
        self.spare.give(waiting);
    }

    fn process_right(
        &mut self,
        key: &i64,
        (_, b): (i64, V::B),
        ctx: &mut ProcessContext<'_, W::Out>,
    ) {
        if let Some(states) = self.managed {
            return self.bid_managed(states, b, ctx);
        }
        let spare = &self.spare;
        match self
            .slots
            .get_or_insert_with(*key, || Lifetime::Waiting(spare.take(WAITING)))
        {
            Lifetime::Waiting(bids) => bids.push(b),
            Lifetime::Open(a, best) => {
                offer::<V, W>(a, best, b, &mut self.winners, ctx);
            }
        }
    }

    fn on_watermark(&mut self, _watermark: Timestamp, ctx: &mut ProcessContext<'_, W::Out>) {
        self.winners.flush(ctx);
    }

    fn on_end(&mut self, ctx: &mut ProcessContext<'_, W::Out>) {
        self.winners.flush(ctx);
    }
}

/// Stage 1 of q4 and q9, named "winning-bid". Events are cut down to the view's columns
/// (with the auction id to key by) before the exchange, as a planner pushes a projection below
/// a shuffle: q4's bids cross shards as 24 bytes instead of a whole 80-byte `Bid`.
fn winning_bids<V: WinnerView, W: Winners<V>>(events: &Stream<Event>) -> Stream<W::Out> {
    let auctions = auctions_as(events, |a| (a.id, V::auction(a))).key_by(|&(id, _)| id);
    let bids = bids_as(events, |b| (b.auction, V::bid(b))).key_by(|&(auction, _)| auction);
    auctions
        .connect(&bids)
        .process(WinningBid::<V, W>::default())
        .name("winning-bid")
}

/// q9 row: the auction's columns, then its winning bid's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q9Row {
    pub auction: Auction,
    pub bid: Bid,
}

impl CsvRecord for Q9Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        let (a, b) = (&self.auction, &self.bid);
        (
            a.id,
            a.item_name,
            a.description,
            a.initial_bid,
            a.reserve,
            Ts(a.date_time),
            Ts(a.expires),
            a.seller,
        )
            .write_csv(out);
        out.push(b',');
        (
            a.category,
            a.extra,
            b.auction,
            b.bidder,
            b.price,
            Ts(b.date_time),
            b.extra,
        )
            .write_csv(out);
    }
}

/// q9: every auction with its winning bid (a changelog: the winner changes as bids arrive).
pub fn q9(events: &Stream<Event>) -> Stream<Change<Q9Row>> {
    winning_bids::<WholeRows, Changelog>(events)
        .map(|c| c.map(|(auction, bid)| Q9Row { auction, bid }))
}

/// q4's view of an auction: (start, expires, category); of a bid: (price, time). 24- and
/// 16-byte state per auction instead of whole rows (projection pushdown).
type Q4Auction = (Timestamp, Timestamp, i64);
type Q4Bid = (i64, Timestamp);

/// What stage 1 of q4 forwards: (category, change of the sum of its winning prices, change of
/// the number of auctions with a winner).
type CategoryDelta = (i64, i64, i64);

/// Winner changes folded per category between flushes. q4's second stage is keyed by a handful
/// of categories: one changelog row per winner change made it the job's busiest stage, and at
/// 2 shards every row crossed the exchange to the one or two shards owning the categories.
/// Forwarding the net (sum, count) change per category once per watermark (or every
/// `FLUSH_EVERY` winner changes) sends a few rows per batch instead. The final averages are the
/// same: they depend only on the final sums and counts.
#[derive(Clone, Default)]
struct CategoryDeltas {
    by_category: KeyMap<i64, (i64, i64)>,
    /// Winner changes folded since the last flush.
    folded: u32,
}

/// Flush at least this often, so output does not wait for a watermark that is slow to come.
const FLUSH_EVERY: u32 = 1024;

impl CategoryDeltas {
    /// The winner of an auction of `category` changed from `old` (a price, or none yet) to
    /// `new`; true when a flush is due.
    fn winner_changed(&mut self, category: i64, old: Option<i64>, new: i64) -> bool {
        let (sum, count) = self.by_category.entry(category).or_insert((0, 0));
        match old {
            Some(old) => *sum += new - old,
            None => {
                *sum += new;
                *count += 1;
            }
        }
        self.folded += 1;
        self.folded >= FLUSH_EVERY
    }

    /// Hands out every non-zero change and starts over (keeping the map's capacity).
    fn drain(&mut self, mut emit: impl FnMut(CategoryDelta)) {
        self.folded = 0;
        for (category, (sum, count)) in self.by_category.drain() {
            if sum != 0 || count != 0 {
                emit((category, sum, count));
            }
        }
    }

    /// Checkpoint form: the pending changes as a list (shard-scoped state).
    fn pending(&self) -> Vec<CategoryDelta> {
        self.by_category
            .iter()
            .map(|(c, (s, n))| (*c, *s, *n))
            .collect()
    }

    fn add_pending(&mut self, pending: Vec<CategoryDelta>) {
        for (category, sum, count) in pending {
            let e = self.by_category.entry(category).or_insert((0, 0));
            e.0 += sum;
            e.1 += count;
        }
    }
}

/// q4's view of auctions and bids (see [`Q4Auction`], [`Q4Bid`]); a "row" is (category,
/// price), though q4's [`CategoryDeltas`] never builds one.
#[derive(Clone, Copy, Default)]
struct CategoryView;

impl WinnerView for CategoryView {
    type A = Q4Auction;
    type B = Q4Bid;
    type Row = (i64, i64);
    fn auction(a: &Auction) -> Q4Auction {
        (a.date_time, a.expires, a.category)
    }
    fn bid(b: &Bid) -> Q4Bid {
        (b.price, b.date_time)
    }
    fn lifetime(a: &Q4Auction) -> (Timestamp, Timestamp) {
        (a.0, a.1)
    }
    fn offer(b: &Q4Bid) -> (i64, Timestamp) {
        *b
    }
    fn row(a: &Q4Auction, b: &Q4Bid) -> (i64, i64) {
        (a.2, b.0)
    }
}

/// Stage 1 of q4: the winning bids pre-aggregated per category before the exchange. The
/// pending deltas (a few per shard) stay in the function on both backends and are
/// checkpointed shard-scoped (after a rescale each old shard's go to exactly one new shard).
impl Winners<CategoryView> for CategoryDeltas {
    type Out = CategoryDelta;
    const STATES: (&'static str, &'static str) = ("q4-auction", "q4-waiting");

    fn changed(
        &mut self,
        auction: &Q4Auction,
        old: Option<&Q4Bid>,
        new: &Q4Bid,
        ctx: &mut ProcessContext<'_, CategoryDelta>,
    ) {
        if self.winner_changed(auction.2, old.map(|o| o.0), new.0) {
            self.flush(ctx);
        }
    }

    fn flush(&mut self, ctx: &mut ProcessContext<'_, CategoryDelta>) {
        self.drain(|d| ctx.emit(d));
    }

    fn snapshot(&self, out: &mut StateSnapshot<'_>) {
        out.shard(&self.pending());
    }

    fn restore(&mut self, state: &StateRestore) -> Result<(), StateError> {
        for pending in state.shard::<Vec<CategoryDelta>>() {
            self.add_pending(pending?);
        }
        Ok(())
    }
}

/// Stage 2 of q4: per category, the average of its auctions' winning prices, from the
/// (sum, count) changes of stage 1. A (sum, count) per category in a map of the function on
/// both backends: the generator has a handful of categories, so this state does not grow with
/// the auctions (it is checkpointed through `snapshot_state`).
#[derive(Clone, Default)]
struct CategoryAverage {
    sums: KeyMap<i64, (i64, i64)>,
}

/// Applies `delta` to its category's (sum, count) and hands out the change of the average.
fn fold_category_delta(
    (sum, count): &mut (i64, i64),
    (category, d_sum, d_count): CategoryDelta,
    mut emit: impl FnMut(Change<(i64, i64)>),
) {
    let before = (*count > 0).then(|| *sum / *count);
    *sum += d_sum;
    *count += d_count;
    let after = (*count > 0).then(|| *sum / *count);
    match (before, after) {
        (None, Some(a)) => emit(Change::Insert((category, a))),
        (Some(b), Some(a)) if a != b => {
            emit(Change::UpdateBefore((category, b)));
            emit(Change::UpdateAfter((category, a)));
        }
        (Some(b), None) => emit(Change::Delete((category, b))),
        _ => {}
    }
}

impl KeyedProcessFunction<i64, CategoryDelta, Change<(i64, i64)>> for CategoryAverage {
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.sums);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        self.sums = state.key_map()?;
        Ok(())
    }

    fn process(
        &mut self,
        category: &i64,
        delta: CategoryDelta,
        ctx: &mut ProcessContext<'_, Change<(i64, i64)>>,
    ) {
        let slot = self.sums.entry(*category).or_insert((0, 0));
        fold_category_delta(slot, delta, |c| ctx.emit(c));
    }
}

/// q4: the average winning price per category (a changelog).
pub fn q4(events: &Stream<Event>) -> Stream<Change<(i64, i64)>> {
    winning_bids::<CategoryView, CategoryDeltas>(events)
        .key_by(|d: &CategoryDelta| d.0)
        .process(CategoryAverage::default())
        .name("q4-average")
}

/// An auction's state in q6: open (with its best bid so far), or closed.
#[derive(Clone)]
enum Closing {
    Waiting(Vec<Bid>),
    Open(Auction, Option<Bid>),
    Closed,
}

/// Stage 1 of q6: the winning bid of every auction, emitted once the watermark passes the
/// auction's end (it can no longer change), as (seller, expires, auction id, price).
///
/// Heap backend: slots in a map of the function and a close-time index walked per watermark.
/// LSM backend: the auction's state (`Open` or `Closed`, never `Waiting`) in a `ValueState`,
/// bids that came before it in a `ListState`, and a timer at the auction's end that emits the
/// winner and leaves `Closed` (so later bids of the auction are dropped, as on the heap).
#[derive(Clone, Default)]
struct ClosedAuctions {
    slots: DenseMap<Closing>,
    /// Drained waiting lists, as in `WinningBid`.
    spare: VecPool<Bid>,
    by_end: BTreeMap<(Timestamp, i64), ()>,
    managed: Option<(ValueState<Closing>, ListState<Bid>)>,
}

type Closed = (i64, Timestamp, i64, i64);

impl ClosedAuctions {
    /// Offers `b` to auction `a`; true if it became the best bid.
    fn offer(a: &Auction, best: &mut Option<Bid>, b: Bid) -> bool {
        if b.date_time < a.date_time || b.date_time > a.expires {
            return false;
        }
        if best.as_ref().is_none_or(|old| beats(&b, old)) {
            *best = Some(b);
            return true;
        }
        false
    }

    /// LSM layout, out of line (as `WinningBid`'s): auction `a` arrives.
    #[inline(never)]
    fn auction_managed(
        (auction, waiting): (ValueState<Closing>, ListState<Bid>),
        a: Auction,
        ctx: &mut ProcessContext<'_, Closed>,
    ) {
        ctx.register_event_time_timer(a.expires);
        let stored = ctx.state().and_then(|store| {
            let bids = waiting.get(store)?;
            if !bids.is_empty() {
                waiting.clear(store)?;
            }
            let mut best = None;
            for b in bids {
                Self::offer(&a, &mut best, b);
            }
            auction.set(store, &Closing::Open(a, best))
        });
        if let Err(e) = stored {
            ctx.fail(e);
        }
    }

    /// LSM layout: bid `b` of the current auction arrives.
    #[inline(never)]
    fn bid_managed(
        (auction, waiting): (ValueState<Closing>, ListState<Bid>),
        b: Bid,
        ctx: &mut ProcessContext<'_, Closed>,
    ) {
        let stored = ctx.state().and_then(|store| match auction.get(store)? {
            None => waiting.add(store, &b),
            Some(Closing::Open(a, mut best)) => {
                if Self::offer(&a, &mut best, b) {
                    auction.set(store, &Closing::Open(a, best))?;
                }
                Ok(())
            }
            Some(_) => Ok(()),
        });
        if let Err(e) = stored {
            ctx.fail(e);
        }
    }
}

impl KeyedCoProcessFunction<i64, Auction, Bid, Closed> for ClosedAuctions {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some((
                store.value_state(&ValueStateDescriptor::new("q6-auction"))?,
                store.list_state(&ListStateDescriptor::new("q6-waiting"))?,
            ));
        }
        Ok(())
    }

    /// The slots, keyed by auction id; the close-time index is rebuilt from the open ones.
    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.dense_map(&self.slots);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let slots: DenseMap<Closing> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !slots.is_empty(), "q6 auctions")?;
        self.slots = slots;
        self.by_end = self
            .slots
            .values()
            .filter_map(|s| match s {
                Closing::Open(a, _) => Some(((a.expires, a.id), ())),
                _ => None,
            })
            .collect();
        Ok(())
    }

    fn process_left(&mut self, key: &i64, a: Auction, ctx: &mut ProcessContext<'_, Closed>) {
        if let Some(states) = self.managed {
            return Self::auction_managed(states, a, ctx);
        }
        let mut waiting = match self.slots.insert(*key, Closing::Open(a, None)) {
            Some(Closing::Waiting(bids)) => bids,
            _ => Vec::new(),
        };
        if let Some(Closing::Open(a, best)) = self.slots.get_mut(*key) {
            for b in waiting.drain(..) {
                Self::offer(a, best, b);
            }
            self.by_end.insert((a.expires, a.id), ());
        }
        self.spare.give(waiting);
    }

    fn process_right(&mut self, key: &i64, b: Bid, ctx: &mut ProcessContext<'_, Closed>) {
        if let Some(states) = self.managed {
            return Self::bid_managed(states, b, ctx);
        }
        let spare = &self.spare;
        match self
            .slots
            .get_or_insert_with(*key, || Closing::Waiting(spare.take(WAITING)))
        {
            Closing::Waiting(bids) => bids.push(b),
            Closing::Open(a, best) => {
                Self::offer(a, best, b);
            }
            Closing::Closed => {}
        }
    }

    /// LSM layout: the auction `key` ended at `expires`.
    fn on_timer(&mut self, key: &i64, expires: Timestamp, ctx: &mut ProcessContext<'_, Closed>) {
        let Some((auction, _)) = self.managed else {
            return;
        };
        let closed = ctx.state().and_then(|store| {
            let slot = auction.get(store)?;
            if matches!(slot, Some(Closing::Open(..))) {
                auction.set(store, &Closing::Closed)?;
            }
            Ok(slot)
        });
        match closed {
            Ok(Some(Closing::Open(a, Some(b)))) => ctx.emit((a.seller, expires, *key, b.price)),
            Ok(_) => {}
            Err(e) => ctx.fail(e),
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut ProcessContext<'_, Closed>) {
        while let Some(entry) = self.by_end.first_entry() {
            let (expires, id) = *entry.key();
            if expires > watermark {
                break;
            }
            entry.remove();
            if let Some(Closing::Open(a, Some(b))) = self.slots.insert(id, Closing::Closed) {
                ctx.emit((a.seller, expires, id, b.price));
            }
        }
    }
}

/// The ten latest closed auctions of a seller by (close time, auction id), as
/// (close time, auction id, price).
type LastTen = Vec<(Timestamp, i64, i64)>;

/// Folds closing `c` into a seller's `recent` ones and emits the change of their average.
fn fold_last_ten(
    seller: i64,
    recent: &mut LastTen,
    c: Closed,
    ctx: &mut ProcessContext<'_, Change<(i64, i64)>>,
) {
    let average =
        |r: &LastTen| (!r.is_empty()).then(|| r.iter().map(|x| x.2).sum::<i64>() / r.len() as i64);
    let before = average(recent);
    let (_, expires, id, price) = c;
    // Closings of one seller can come from both shards slightly out of order: keep the ten
    // latest by (close time, auction id).
    let at = recent.partition_point(|x| (x.0, x.1) < (expires, id));
    recent.insert(at, (expires, id, price));
    if recent.len() > 10 {
        recent.remove(0);
    }
    let after = average(recent);
    match (before, after) {
        (None, Some(a)) => ctx.emit(Change::Insert((seller, a))),
        (Some(b), Some(a)) if a != b => {
            ctx.emit(Change::UpdateBefore((seller, b)));
            ctx.emit(Change::UpdateAfter((seller, a)));
        }
        _ => {}
    }
}

/// Stage 2 of q6: per seller, the average winning price of its last 10 closed auctions. The
/// list per seller (it grows with the sellers) is in a map of the function on the heap
/// backend, in a `ValueState` on the LSM backend.
#[derive(Clone, Default)]
struct LastTenAverage {
    recent: KeyMap<i64, LastTen>,
    managed: Option<ValueState<LastTen>>,
}

impl KeyedProcessFunction<i64, Closed, Change<(i64, i64)>> for LastTenAverage {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("q6-last-ten"))?);
        }
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.recent);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let recent: KeyMap<i64, LastTen> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !recent.is_empty(), "q6 sellers")?;
        self.recent = recent;
        Ok(())
    }

    fn process(
        &mut self,
        seller: &i64,
        c: Closed,
        ctx: &mut ProcessContext<'_, Change<(i64, i64)>>,
    ) {
        if let Some(last_ten) = self.managed {
            let mut recent = match ctx.state().and_then(|store| last_ten.get(store)) {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => return ctx.fail(e),
            };
            fold_last_ten(*seller, &mut recent, c, ctx);
            if let Err(e) = ctx.state().and_then(|store| last_ten.set(store, &recent)) {
                ctx.fail(e);
            }
            return;
        }
        fold_last_ten(*seller, self.recent.entry(*seller).or_default(), c, ctx);
    }
}

/// q6: the average selling price of each seller's last 10 closed auctions (a changelog).
pub fn q6(events: &Stream<Event>) -> Stream<Change<(i64, i64)>> {
    let auctions = auctions(events).key_by(|a: &Auction| a.id);
    let bids = bids(events).key_by(|b: &Bid| b.auction);
    auctions
        .connect(&bids)
        .process(ClosedAuctions::default())
        .name("q6-closed")
        .key_by(|c: &Closed| c.0)
        .process(LastTenAverage::default())
        .name("q6-average")
}

// Checkpoint encodings of the join slots: a tag byte, then the variant's fields.

impl StateCodec for Q3Slot {
    fn encode(&self, out: &mut Vec<u8>) {
        self.person.encode(out);
        self.auctions.encode(out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(Q3Slot {
            person: Option::decode_from(input)?,
            auctions: Vec::decode_from(input)?,
        })
    }
}

fn bad_tag() -> StateError {
    StateError::Decode {
        reason: "unknown slot tag",
    }
}

impl StateCodec for Q20Slot {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Q20Slot::Waiting(bids) => {
                0u8.encode(out);
                bids.encode(out);
            }
            Q20Slot::Matched(a) => {
                1u8.encode(out);
                a.encode(out);
            }
            Q20Slot::Rejected => 2u8.encode(out),
        }
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        match u8::decode_from(input)? {
            0 => Ok(Q20Slot::Waiting(Vec::decode_from(input)?)),
            1 => Ok(Q20Slot::Matched(Auction::decode_from(input)?)),
            2 => Ok(Q20Slot::Rejected),
            _ => Err(bad_tag()),
        }
    }
}

impl<A: StateCodec, B: StateCodec> StateCodec for Lifetime<A, B> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Lifetime::Waiting(bids) => {
                0u8.encode(out);
                bids.encode(out);
            }
            Lifetime::Open(a, best) => {
                1u8.encode(out);
                a.encode(out);
                best.encode(out);
            }
        }
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        match u8::decode_from(input)? {
            0 => Ok(Lifetime::Waiting(Vec::decode_from(input)?)),
            1 => Ok(Lifetime::Open(
                A::decode_from(input)?,
                Option::decode_from(input)?,
            )),
            _ => Err(bad_tag()),
        }
    }
}

impl StateCodec for Closing {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Closing::Waiting(bids) => {
                0u8.encode(out);
                bids.encode(out);
            }
            Closing::Open(a, best) => {
                1u8.encode(out);
                a.encode(out);
                best.encode(out);
            }
            Closing::Closed => 2u8.encode(out),
        }
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        match u8::decode_from(input)? {
            0 => Ok(Closing::Waiting(Vec::decode_from(input)?)),
            1 => Ok(Closing::Open(
                Auction::decode_from(input)?,
                Option::decode_from(input)?,
            )),
            2 => Ok(Closing::Closed),
            _ => Err(bad_tag()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir::changelog::Materialized;

    /// A bid: (auction 0..8, price), or a flush of the pending deltas.
    #[derive(Clone, Debug)]
    enum Op {
        Bid(i64, i64),
        Flush,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                8 => (0..8i64, 1..1000i64).prop_map(|(a, p)| Op::Bid(a, p)),
                1 => Just(Op::Flush),
            ],
            0..200,
        )
    }

    /// The auction's category: several auctions per category.
    fn category(auction: i64) -> i64 {
        10 + auction % 3
    }

    proptest! {
        /// Winner changes folded per category, flushed at arbitrary points and averaged by
        /// stage 2, give the table of the per-category averages of the final winners (the
        /// simple reference: sum and count of each category's best prices).
        #[test]
        fn pre_aggregated_averages_match_the_winners(ops in ops()) {
            let mut winners: BTreeMap<i64, i64> = BTreeMap::new();
            let mut deltas = CategoryDeltas::default();
            let mut sums: KeyMap<i64, (i64, i64)> = KeyMap::default();
            let mut table = Materialized::new();
            let mut flush = |deltas: &mut CategoryDeltas, table: &mut Materialized<(i64, i64)>| {
                deltas.drain(|d| {
                    fold_category_delta(sums.entry(d.0).or_insert((0, 0)), d, |c| {
                        let adds = c.adds();
                        table.apply(adds, *c.row()).expect("retracts a row it emitted");
                    })
                });
            };
            for op in &ops {
                match *op {
                    Op::Bid(auction, price) => {
                        let old = winners.get(&auction).copied();
                        if old.is_none_or(|old| price > old) {
                            winners.insert(auction, price);
                            if deltas.winner_changed(category(auction), old, price) {
                                flush(&mut deltas, &mut table);
                            }
                        }
                    }
                    Op::Flush => flush(&mut deltas, &mut table),
                }
            }
            flush(&mut deltas, &mut table);
            let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for (auction, price) in &winners {
                let e = expected.entry(category(*auction)).or_default();
                e.0 += price;
                e.1 += 1;
            }
            let expected: Vec<(i64, i64)> =
                expected.iter().map(|(c, (s, n))| (*c, s / n)).collect();
            let got: Vec<(i64, i64)> = table.rows().copied().collect();
            prop_assert_eq!(got, expected);
        }

        /// The checkpoint form restores the same pending changes, added to what is there.
        #[test]
        fn pending_deltas_round_trip(ops in ops()) {
            let mut deltas = CategoryDeltas::default();
            let mut winners: BTreeMap<i64, i64> = BTreeMap::new();
            for op in &ops {
                if let Op::Bid(auction, price) = *op {
                    let old = winners.insert(auction, price);
                    deltas.winner_changed(category(auction), old, price);
                }
            }
            let mut restored = CategoryDeltas::default();
            restored.add_pending(deltas.pending());
            restored.add_pending(deltas.pending());
            let sorted = |d: &mut CategoryDeltas| {
                let mut v = Vec::new();
                d.drain(|x| v.push(x));
                v.sort_unstable();
                v
            };
            let twice: Vec<CategoryDelta> =
                sorted(&mut deltas).into_iter().map(|(c, s, n)| (c, 2 * s, 2 * n)).collect();
            prop_assert_eq!(sorted(&mut restored), twice);
        }
    }

    /// A flush is due after `FLUSH_EVERY` winner changes, and draining starts the count over.
    #[test]
    fn flush_is_due_every_so_many_changes() {
        let mut deltas = CategoryDeltas::default();
        for n in 1..FLUSH_EVERY {
            assert!(!deltas.winner_changed(10, None, i64::from(n)));
        }
        assert!(deltas.winner_changed(10, None, 1));
        let mut got = Vec::new();
        deltas.drain(|d| got.push(d));
        assert_eq!(got.len(), 1);
        assert!(!deltas.winner_changed(10, None, 1));
    }
}
