//! q0–q2: the stateless queries.

use weir::Stream;
use weir::nexmark::{Event, Str};

use super::bids;
use super::rows::{Decimal3, Timestamp};
use weir::CsvRecord;

/// q0 pass-through: every bid → auction, bidder, price, date_time, extra.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q0Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub date_time: Timestamp,
    pub extra: Str,
}

impl CsvRecord for Q0Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.date_time,
            self.extra,
        )
            .write_csv(out)
    }
}

/// q1 currency conversion: the price × 0.908 as an exact decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q1Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: Decimal3,
    pub date_time: Timestamp,
    pub extra: Str,
}

impl CsvRecord for Q1Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.date_time,
            self.extra,
        )
            .write_csv(out)
    }
}

/// q0: pass every bid through.
pub fn q0(events: &Stream<Event>) -> Stream<Q0Row> {
    bids(events)
        .map(|b| Q0Row {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: Timestamp(b.date_time),
            extra: b.extra,
        })
        .name("q0-project")
}

/// q1: convert every bid's price (dollars to euros at 0.908), exactly.
pub fn q1(events: &Stream<Event>) -> Stream<Q1Row> {
    bids(events)
        .map(|b| Q1Row {
            auction: b.auction,
            bidder: b.bidder,
            // price × 0.908 = price × 908 thousandths: exact in integers.
            price: Decimal3(b.price.saturating_mul(908)),
            date_time: Timestamp(b.date_time),
            extra: b.extra,
        })
        .name("q1-convert")
}

/// q2: the bids on every 123rd auction → auction, price.
pub fn q2(events: &Stream<Event>) -> Stream<(i64, i64)> {
    bids(events)
        .filter(|b| b.auction % 123 == 0)
        .map(|b| (b.auction, b.price))
        .name("q2-select")
}
