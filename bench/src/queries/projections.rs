//! q14, q21, q22: per-bid calculations and string work, stateless.

use weir::nexmark::{Event, Str};
use weir::{CsvRecord, Stream};

use super::bids;
use super::rows::{Day, Decimal3, HourMinute, Timestamp};

/// q14 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q14Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: Decimal3,
    pub bid_time_type: &'static str,
    pub date_time: Timestamp,
    pub extra: Str,
    pub c_counts: i64,
}

impl CsvRecord for Q14Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.bid_time_type,
            self.date_time,
            self.extra,
            self.c_counts,
        )
            .write_csv(out)
    }
}

/// 'dayTime' for hours 8–18, 'nightTime' for hours ≤ 6 or ≥ 20, else 'otherTime' (UTC).
pub fn bid_time_type(date_time: i64) -> &'static str {
    let hour = date_time.div_euclid(3_600_000).rem_euclid(24);
    if (8..=18).contains(&hour) {
        "dayTime"
    } else if hour <= 6 || hour >= 20 {
        "nightTime"
    } else {
        "otherTime"
    }
}

/// q14: bids with 1,000,000 < price × 0.908 < 50,000,000, classified by time of day.
pub fn q14(events: &Stream<Event>) -> Stream<Q14Row> {
    bids(events)
        .flat_map(|b| {
            // Compared in thousandths, exactly.
            let converted = b.price.saturating_mul(908);
            (converted > 1_000_000_000 && converted < 50_000_000_000).then(|| Q14Row {
                auction: b.auction,
                bidder: b.bidder,
                price: Decimal3(converted),
                bid_time_type: bid_time_type(b.date_time),
                date_time: Timestamp(b.date_time),
                extra: b.extra,
                c_counts: b.extra.bytes().filter(|&c| c == b'c').count() as i64,
            })
        })
        .name("q14-calc")
}

/// q21 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q21Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub channel: Str,
    pub channel_id: Str,
}

impl CsvRecord for Q21Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.channel,
            self.channel_id,
        )
            .write_csv(out)
    }
}

/// The value of the `channel_id` URL parameter (`(&|^)channel_id=([^&]*)`), if present.
pub fn url_channel_id(url: &str) -> Option<&str> {
    let mut rest = url;
    while let Some(at) = rest.find("channel_id=") {
        let preceded_ok = at == 0 || rest[..at].ends_with('&');
        let value = &rest[at + "channel_id=".len()..];
        if preceded_ok {
            return Some(value.split('&').next().unwrap_or(value));
        }
        rest = value;
    }
    None
}

/// q21: bids from the four hot channels or with a channel id in the URL → the channel id.
pub fn q21(events: &Stream<Event>) -> Stream<Q21Row> {
    bids(events)
        .flat_map(|b| {
            // Case-insensitive without allocating a lower-cased copy.
            let code = [
                ("apple", "0"),
                ("google", "1"),
                ("facebook", "2"),
                ("baidu", "3"),
            ]
            .into_iter()
            .find(|(name, _)| b.channel.eq_ignore_ascii_case(name))
            .map(|(_, code)| code);
            let channel_id = match code {
                Some(c) => Some(c),
                None => url_channel_id(b.url),
            };
            channel_id.map(|channel_id| Q21Row {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
                channel_id,
            })
        })
        .name("q21-channel")
}

/// q22 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q22Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub channel: Str,
    pub dir1: Option<Str>,
    pub dir2: Option<Str>,
    pub dir3: Option<Str>,
}

impl CsvRecord for Q22Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.channel,
            self.dir1,
            self.dir2,
            self.dir3,
        )
            .write_csv(out)
    }
}

/// q22: every bid with the 4th, 5th and 6th parts of its URL split on '/' (NULL if absent).
pub fn q22(events: &Stream<Event>) -> Stream<Q22Row> {
    bids(events)
        .map(|b| {
            let mut parts = b.url.split('/').skip(3);
            Q22Row {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
                dir1: parts.next(),
                dir2: parts.next(),
                dir3: parts.next(),
            }
        })
        .name("q22-split")
}

/// q10 row: a bid with its day and minute, written to files partitioned by both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q10Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub date_time: Timestamp,
    pub extra: Str,
    pub dt: Day,
    pub hm: HourMinute,
}

impl CsvRecord for Q10Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.date_time,
            self.extra,
            self.dt,
            self.hm,
        )
            .write_csv(out)
    }
}

/// The partition directory of a q10 row: `dt=yyyy-MM-dd/hm=HH:mm`.
pub fn q10_partition(row: &Q10Row, path: &mut String) {
    use std::fmt::Write;
    const MS_PER_DAY: i64 = 86_400_000;
    let (y, m, d) = weir::nexmark::csv::civil_from_days(row.dt.0.div_euclid(MS_PER_DAY));
    let in_day = row.hm.0.rem_euclid(MS_PER_DAY);
    // Formatting into the reused String allocates nothing per record.
    let _ = write!(
        path,
        "dt={y:04}-{m:02}-{d:02}/hm={:02}:{:02}",
        in_day / 3_600_000,
        in_day / 60_000 % 60
    );
}

/// q10: every bid with its day and minute (the harness writes them partitioned by both).
pub fn q10(events: &Stream<Event>) -> Stream<Q10Row> {
    bids(events)
        .map(|b| Q10Row {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: Timestamp(b.date_time),
            extra: b.extra,
            dt: Day(b.date_time),
            hm: HourMinute(b.date_time),
        })
        .name("q10-log")
}
