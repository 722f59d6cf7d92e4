//! The windowed queries q7 (highest bid) and q11 (user sessions); q5 is in `hot_items`.

use std::collections::BTreeMap;
use std::time::Duration;

use weir::checkpoint::{StateRestore, StateSnapshot};
use weir::nexmark::{Bid, Event, Str};
use weir::operator::{AggregateFunction, WindowResult};
use weir::state::{StateCodec, StateError};
use weir::window::WindowAssigner;
use weir::{CsvRecord, ProcessContext, ProcessFunction, Stream, Timestamp};

use super::bids;
use super::rows::Timestamp as Ts;

/// Window sizes of the queries, in ms.
const TEN_SECONDS: i64 = 10_000;

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
