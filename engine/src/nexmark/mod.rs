//! Nexmark: the online-auction benchmark's event generator, data model and
//! CSV formatting, as specified in `shared/reference/nexmark.md`.
//!
//! * Every event is a pure function of (seed, event number n): n seeds its own
//!   splitmix64 stream ([`rng`]), so shards need no coordination and the
//!   multiset of events does not depend on the shard count ([`shard`]).
//! * [`Generator::event`] never allocates: strings are `&'static str` slices of
//!   per-seed tables built once and leaked ([`tables`]), or [`InlineStr`]s.
//! * [`csv`] formats values and rows straight into a `Vec<u8>`; [`dump`] writes
//!   the `person.csv` / `auction.csv` / `bid.csv` event dumps.
//!
//! Readings of the spec where it leaves room (the "Exact rules" win over the
//! prose, and over Flink):
//! * `channel_id` is i's 32 bits reversed read as *unsigned* (1 → 2147483648).
//! * An auction's H = ts(n + 1666) − ts(n) uses the in-order ts even in
//!   out-of-order mode; `expires` is then based on the event's own date_time.
//! * The price is `round(10^(6u) · 100)` computed without libm ([`arith`]):
//!   within 1e-13 relative of `powf`, so the rounded value differs from a
//!   libm-based computation for about one u in a million.

pub mod arith;
mod codec;
pub mod config;
pub mod csv;
pub mod dump;
pub mod error;
pub mod generator;
pub mod inline_str;
pub mod model;
pub mod rng;
pub mod shard;
pub mod tables;

pub use config::{DEFAULT_BASE_TIME_MS, DEFAULT_FIRST_EVENT_RATE, NexmarkConfig};
pub use dump::{DumpCounts, write_event_dump};
pub use error::NexmarkError;
pub use generator::Generator;
pub use inline_str::{InlineStr, InlineStrError};
pub use model::{Auction, Bid, Event, EventKind, Person, Str};
pub use shard::{SHARD_BLOCK, ShardEvents, shard_events};

/// An event as a CSV row of its kind and time (`kind,date_time`): what the generator-only
/// benchmark writes when asked for output. Full rows per type are in [`csv`].
impl crate::sink::CsvRecord for Event {
    fn write_csv(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.kind() {
            EventKind::Person => b"person,",
            EventKind::Auction => b"auction,",
            EventKind::Bid => b"bid,",
        });
        csv::write_timestamp(out, self.date_time());
    }
}
