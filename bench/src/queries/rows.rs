//! Value types whose CSV form the specification fixes.

use weir::CsvRecord;
use weir::nexmark::csv::{write_date, write_decimal3, write_hour_minute, write_timestamp};

/// Milliseconds since the Unix epoch, written as `yyyy-MM-dd HH:mm:ss.SSS` UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl CsvRecord for Timestamp {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_timestamp(out, self.0);
    }
}

/// An exact decimal with three places, held in thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal3(pub i64);

impl CsvRecord for Decimal3 {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_decimal3(out, self.0);
    }
}

/// The day of a timestamp, written as `yyyy-MM-dd` (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl CsvRecord for Day {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_date(out, self.0);
    }
}

/// The hour and minute of a timestamp, written as `HH:mm` (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourMinute(pub i64);

impl CsvRecord for HourMinute {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_hour_minute(out, self.0);
    }
}
