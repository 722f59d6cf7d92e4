//! CSV (RFC 4180) and value formatting straight into a byte buffer, with no
//! intermediate allocation, for the event dumps and query outputs.
//!
//! Records end with `\n`; a field is quoted only if it holds a comma, a quote,
//! CR or LF. Timestamps are `yyyy-MM-dd HH:mm:ss.SSS` in UTC.

use crate::nexmark::model::{Auction, Bid, Event, Person};

/// Header of `bid.csv`.
pub const BID_HEADER: &str = "auction,bidder,price,channel,url,date_time,extra";
/// Header of `auction.csv`.
pub const AUCTION_HEADER: &str =
    "id,item_name,description,initial_bid,reserve,date_time,expires,seller,category,extra";
/// Header of `person.csv`.
pub const PERSON_HEADER: &str = "id,name,email_address,credit_card,city,state,date_time,extra";

const MS_PER_DAY: i64 = 86_400_000;

/// Civil date (year, month 1–12, day 1–31) of a day count since 1970-01-01,
/// proleptic Gregorian (H. Hinnant's days_from_civil inverse); exact for every
/// day an `i64` of milliseconds can reach.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `v` in plain decimal digits.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Appends `v` in decimal.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `v` zero-padded to at least `width` digits.
#[inline]
fn write_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

/// Year with at least four digits, `-` before years ≤ 0 (proleptic, astronomical).
fn write_year(out: &mut Vec<u8>, year: i64) {
    if year < 0 {
        out.push(b'-');
    }
    write_padded(out, year.unsigned_abs(), 4);
}

/// `yyyy-MM-dd` of the UTC day holding `ms`.
#[inline]
pub fn write_date(out: &mut Vec<u8>, ms: i64) {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    write_year(out, y);
    out.push(b'-');
    write_padded(out, u64::from(m), 2);
    out.push(b'-');
    write_padded(out, u64::from(d), 2);
}

/// `HH:mm` (UTC) of `ms`.
#[inline]
pub fn write_hour_minute(out: &mut Vec<u8>, ms: i64) {
    let in_day = ms.rem_euclid(MS_PER_DAY) as u64;
    write_padded(out, in_day / 3_600_000, 2);
    out.push(b':');
    write_padded(out, in_day / 60_000 % 60, 2);
}

/// `yyyy-MM-dd HH:mm:ss.SSS` (UTC) of `ms` since the Unix epoch.
#[inline]
pub fn write_timestamp(out: &mut Vec<u8>, ms: i64) {
    write_date(out, ms);
    out.push(b' ');
    write_hour_minute(out, ms);
    let in_day = ms.rem_euclid(MS_PER_DAY) as u64;
    out.push(b':');
    write_padded(out, in_day / 1_000 % 60, 2);
    out.push(b'.');
    write_padded(out, in_day % 1_000, 3);
}

/// An exact decimal with 3 places from a count of thousandths (`90800` → `90.800`).
#[inline]
pub fn write_decimal3(out: &mut Vec<u8>, thousandths: i64) {
    if thousandths < 0 {
        out.push(b'-');
    }
    let abs = thousandths.unsigned_abs();
    write_u64(out, abs / 1_000);
    out.push(b'.');
    write_padded(out, abs % 1_000, 3);
}

/// Appends a CSV field, quoted (quotes doubled) only if it holds `,` `"` CR or LF.
#[inline]
pub fn write_field(out: &mut Vec<u8>, field: &str) {
    crate::sink::write_csv_field(out, field)
}

/// Appends a header line.
pub fn write_header(out: &mut Vec<u8>, header: &str) {
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
}

/// One `bid.csv` record.
pub fn write_bid_row(out: &mut Vec<u8>, b: &Bid) {
    write_i64(out, b.auction);
    out.push(b',');
    write_i64(out, b.bidder);
    out.push(b',');
    write_i64(out, b.price);
    out.push(b',');
    write_field(out, b.channel);
    out.push(b',');
    write_field(out, b.url);
    out.push(b',');
    write_timestamp(out, b.date_time);
    out.push(b',');
    write_field(out, b.extra);
    out.push(b'\n');
}

/// One `auction.csv` record.
pub fn write_auction_row(out: &mut Vec<u8>, a: &Auction) {
    write_i64(out, a.id);
    out.push(b',');
    write_field(out, a.item_name);
    out.push(b',');
    write_field(out, a.description);
    out.push(b',');
    write_i64(out, a.initial_bid);
    out.push(b',');
    write_i64(out, a.reserve);
    out.push(b',');
    write_timestamp(out, a.date_time);
    out.push(b',');
    write_timestamp(out, a.expires);
    out.push(b',');
    write_i64(out, a.seller);
    out.push(b',');
    write_i64(out, a.category);
    out.push(b',');
    write_field(out, a.extra);
    out.push(b'\n');
}

/// One `person.csv` record.
pub fn write_person_row(out: &mut Vec<u8>, p: &Person) {
    write_i64(out, p.id);
    out.push(b',');
    write_field(out, p.name);
    out.push(b',');
    write_field(out, p.email_address.as_str());
    out.push(b',');
    write_field(out, p.credit_card.as_str());
    out.push(b',');
    write_field(out, p.city);
    out.push(b',');
    write_field(out, p.state);
    out.push(b',');
    write_timestamp(out, p.date_time);
    out.push(b',');
    write_field(out, p.extra);
    out.push(b'\n');
}

/// The record of `e` in its type's dump file.
pub fn write_event_row(out: &mut Vec<u8>, e: &Event) {
    match e {
        Event::Person(p) => write_person_row(out, p),
        Event::Auction(a) => write_auction_row(out, a),
        Event::Bid(b) => write_bid_row(out, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }

    #[test]
    fn timestamps_of_known_dates() {
        assert_eq!(s(|o| write_timestamp(o, 0)), "1970-01-01 00:00:00.000");
        assert_eq!(
            s(|o| write_timestamp(o, 1_767_225_600_000)),
            "2026-01-01 00:00:00.000"
        );
        assert_eq!(
            s(|o| write_timestamp(o, 1_709_251_199_999)),
            "2024-02-29 23:59:59.999"
        );
        assert_eq!(s(|o| write_timestamp(o, -1)), "1969-12-31 23:59:59.999");
        assert_eq!(
            s(|o| write_timestamp(o, -86_400_001)),
            "1969-12-30 23:59:59.999"
        );
        assert_eq!(
            s(|o| write_timestamp(o, 253_402_300_799_999)),
            "9999-12-31 23:59:59.999"
        );
        assert_eq!(
            s(|o| write_timestamp(o, -62_135_596_800_000)),
            "0001-01-01 00:00:00.000"
        );
        // Year 0 and before: astronomical numbering.
        assert_eq!(
            s(|o| write_timestamp(o, -62_135_596_800_001)),
            "0000-12-31 23:59:59.999"
        );
        assert_eq!(
            s(|o| write_timestamp(o, 253_402_300_800_000)),
            "10000-01-01 00:00:00.000"
        );
        // Extremes do not panic and stay well-formed.
        for ms in [i64::MIN, i64::MAX] {
            let t = s(|o| write_timestamp(o, ms));
            assert!(t.len() > 20, "{t}");
        }
        assert_eq!(s(|o| write_date(o, 1_709_251_199_999)), "2024-02-29");
        assert_eq!(s(|o| write_hour_minute(o, 1_709_251_199_999)), "23:59");
        assert_eq!(s(|o| write_hour_minute(o, -1)), "23:59");
        assert_eq!(s(|o| write_hour_minute(o, 3_660_000)), "01:01");
    }

    #[test]
    fn decimals_and_integers() {
        assert_eq!(s(|o| write_decimal3(o, 90_800)), "90.800");
        assert_eq!(s(|o| write_decimal3(o, 0)), "0.000");
        assert_eq!(s(|o| write_decimal3(o, 7)), "0.007");
        assert_eq!(s(|o| write_decimal3(o, -500)), "-0.500");
        assert_eq!(s(|o| write_decimal3(o, -1_234_567)), "-1234.567");
        assert_eq!(s(|o| write_decimal3(o, i64::MIN)), "-9223372036854775.808");
        assert_eq!(s(|o| write_i64(o, 0)), "0");
        assert_eq!(s(|o| write_i64(o, -42)), "-42");
        assert_eq!(s(|o| write_i64(o, i64::MIN)), i64::MIN.to_string());
        assert_eq!(s(|o| write_i64(o, i64::MAX)), i64::MAX.to_string());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(s(|o| write_field(o, "plain text")), "plain text");
        assert_eq!(s(|o| write_field(o, "")), "");
        assert_eq!(s(|o| write_field(o, "a,b")), "\"a,b\"");
        assert_eq!(s(|o| write_field(o, "say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(s(|o| write_field(o, "\"")), "\"\"\"\"");
        assert_eq!(s(|o| write_field(o, "line\nbreak")), "\"line\nbreak\"");
        assert_eq!(s(|o| write_field(o, "cr\r")), "\"cr\r\"");
        assert_eq!(
            s(|o| write_field(o, "https://x/a_b/item.htm?query=1&channel_id=5")),
            "https://x/a_b/item.htm?query=1&channel_id=5"
        );
    }

    #[test]
    fn bid_row_layout() {
        let b = Bid {
            auction: 1000,
            bidder: 1001,
            price: 90_800,
            channel: "Google",
            url: "https://www.nexmark.com/a/b/c/item.htm?query=1",
            date_time: 1_767_225_600_123,
            extra: "x,y",
        };
        assert_eq!(
            s(|o| write_bid_row(o, &b)),
            "1000,1001,90800,Google,https://www.nexmark.com/a/b/c/item.htm?query=1,\
             2026-01-01 00:00:00.123,\"x,y\"\n"
        );
        assert_eq!(BID_HEADER.split(',').count(), 7);
        assert_eq!(AUCTION_HEADER.split(',').count(), 10);
        assert_eq!(PERSON_HEADER.split(',').count(), 8);
    }

    /// Reference: walk whole years, then months, from 1970.
    fn reference_civil(mut days: i64) -> (i64, u32, u32) {
        fn leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }
        let year_len = |y: i64| if leap(y) { 366 } else { 365 };
        let mut y = 1970;
        while days < 0 {
            y -= 1;
            days += year_len(y);
        }
        while days >= year_len(y) {
            days -= year_len(y);
            y += 1;
        }
        let months = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut m = 0;
        while days >= months[m] {
            days -= months[m];
            m += 1;
        }
        (y, m as u32 + 1, days as u32 + 1)
    }

    proptest! {
        #[test]
        fn civil_matches_reference(days in -1_000_000i64..1_000_000) {
            prop_assert_eq!(civil_from_days(days), reference_civil(days));
        }

        #[test]
        fn timestamp_matches_reference(ms in -200_000_000_000_000i64..200_000_000_000_000) {
            let (y, m, d) = reference_civil(ms.div_euclid(86_400_000));
            let t = ms.rem_euclid(86_400_000);
            let year = if y < 0 { format!("-{:04}", -y) } else { format!("{y:04}") };
            let want = format!(
                "{year}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
                t / 3_600_000, t / 60_000 % 60, t / 1000 % 60, t % 1000
            );
            prop_assert_eq!(s(|o| write_timestamp(o, ms)), want);
        }

        #[test]
        fn quoted_fields_round_trip(field in "[a-c,\"\r\n ]{0,12}") {
            let out = s(|o| write_field(o, &field));
            let needs = field.contains([',', '"', '\r', '\n']);
            if needs {
                prop_assert!(out.starts_with('"') && out.ends_with('"'));
                let inner = &out[1..out.len() - 1];
                prop_assert_eq!(inner.replace("\"\"", "\""), field);
            } else {
                prop_assert_eq!(out, field);
            }
        }
    }
}
