//! q12 (processing-time windows) and q13 (a join with a bounded side input from a file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir::nexmark::{Bid, Event, Str};
use weir::operator::WindowResult;
use weir::window::{ProcessingTimeTrigger, WindowAssigner};
use weir::{CsvRecord, Stream};

use super::Count;

use super::bids;
use super::rows::Timestamp as Ts;

/// Rows of the q13 side table.
pub const SIDE_INPUT_ROWS: usize = 10_000;

/// Why a side input could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SideInputError {
    #[error("side input {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("side input {path}, line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The q13 side table: `value` by `key` (0..10,000), loaded from a `key,value` CSV file.
#[derive(Clone, Debug)]
pub struct SideTable {
    values: Arc<Vec<Option<Str>>>,
}

impl SideTable {
    /// Writes the default side table (`key,value` with value `value-<key>`) to `path`.
    pub fn write_default(path: &Path) -> Result<(), SideInputError> {
        let mut text = String::from("key,value\n");
        for k in 0..SIDE_INPUT_ROWS {
            text.push_str(&format!("{k},value-{k}\n"));
        }
        std::fs::write(path, text).map_err(|source| SideInputError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads a side table from `path`: a header line, then `key,value` rows with keys in
    /// 0..10,000. Values live as long as the process (they are referenced by output rows).
    pub fn load(path: &Path) -> Result<SideTable, SideInputError> {
        let text = std::fs::read_to_string(path).map_err(|source| SideInputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |line: usize, reason: String| SideInputError::Parse {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut values: Vec<Option<Str>> = vec![None; SIDE_INPUT_ROWS];
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(',')
                .ok_or_else(|| parse(i + 1, "expected `key,value`".into()))?;
            let key: usize = key
                .trim()
                .parse()
                .map_err(|e| parse(i + 1, format!("key `{key}`: {e}")))?;
            let slot = values
                .get_mut(key)
                .ok_or_else(|| parse(i + 1, format!("key {key} is not below {SIDE_INPUT_ROWS}")))?;
            // Leaked once per load: rows borrow the values for the whole job.
            *slot = Some(Box::leak(value.to_string().into_boxed_str()));
        }
        Ok(SideTable {
            values: Arc::new(values),
        })
    }

    /// The default table, written to (or read from) `weir-nexmark-side-input.csv` in the
    /// system's temporary directory.
    pub fn default_file() -> Result<SideTable, SideInputError> {
        let path = std::env::temp_dir().join("weir-nexmark-side-input.csv");
        if !path.exists() {
            Self::write_default(&path)?;
        }
        Self::load(&path)
    }

    /// The value of `key`, if the table has one.
    pub fn get(&self, key: i64) -> Option<Str> {
        usize::try_from(key)
            .ok()
            .and_then(|k| self.values.get(k).copied().flatten())
    }
}

/// q13 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q13Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub date_time: Ts,
    pub value: Str,
}

impl CsvRecord for Q13Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (
            self.auction,
            self.bidder,
            self.price,
            self.date_time,
            self.value,
        )
            .write_csv(out)
    }
}

/// q13: every bid joined with the side table on `auction mod 10000 = key`.
pub fn q13(events: &Stream<Event>, table: SideTable) -> Stream<Q13Row> {
    bids(events)
        .flat_map(move |b: Bid| {
            table
                .get(b.auction.rem_euclid(SIDE_INPUT_ROWS as i64))
                .map(|value| Q13Row {
                    auction: b.auction,
                    bidder: b.bidder,
                    price: b.price,
                    date_time: Ts(b.date_time),
                    value,
                })
        })
        .name("q13-side-join")
}

/// q12 row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q12Row {
    pub bidder: i64,
    pub bid_count: i64,
    pub starttime: Ts,
    pub endtime: Ts,
}

impl CsvRecord for Q12Row {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (self.bidder, self.bid_count, self.starttime, self.endtime).write_csv(out)
    }
}

const TEN_SECONDS: i64 = 10_000;

/// q12: bids per bidder in processing-time tumbling windows of 10 s (not deterministic). The
/// windows close when the wall clock passes their end (checked as batches and watermarks
/// arrive) and all close at end of input.
pub fn q12(events: &Stream<Event>) -> Stream<Q12Row> {
    let Ok(tumbling) = WindowAssigner::tumbling(TEN_SECONDS, 0) else {
        super::windowed::unreachable_config()
    };
    bids(events)
        .key_by(|b: &Bid| b.bidder)
        .window(tumbling.with_processing_time(), |b: &Bid| b.date_time)
        .trigger(ProcessingTimeTrigger)
        .aggregate(Count)
        .map(|r: WindowResult<i64, i64>| Q12Row {
            bidder: r.key,
            bid_count: r.value,
            starttime: Ts(r.start()),
            endtime: Ts(r.start().saturating_add(TEN_SECONDS)),
        })
        .name("q12-proctime")
}
