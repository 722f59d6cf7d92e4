//! The Nexmark event types. Strings are `&'static str` slices of the per-seed
//! tables or small inline strings, so events are `Copy` and never allocate.

use crate::nexmark::inline_str::InlineStr;

/// A string borrowed from the leaked per-seed tables.
pub type Str = &'static str;

/// Which of the three event types an event number produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A new user.
    Person,
    /// An item put up for sale.
    Auction,
    /// A bid on an auction.
    Bid,
}

/// A new user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Person {
    /// Person id (≥ 1000).
    pub id: i64,
    /// `First Last`.
    pub name: Str,
    /// `string(7)@string(5).com`.
    pub email_address: InlineStr<16>,
    /// `dddd dddd dddd dddd`.
    pub credit_card: InlineStr<20>,
    /// One of ten cities.
    pub city: Str,
    /// One of six US states.
    pub state: Str,
    /// Event time, ms since the Unix epoch.
    pub date_time: i64,
    /// Padding to about 200 bytes per person.
    pub extra: Str,
}

/// An item put up for sale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Auction {
    /// Auction id (≥ 1000).
    pub id: i64,
    /// `string(20)`.
    pub item_name: Str,
    /// `string(100)`.
    pub description: Str,
    /// Starting price.
    pub initial_bid: i64,
    /// Reserve price (> initial_bid).
    pub reserve: i64,
    /// Event time, ms since the Unix epoch.
    pub date_time: i64,
    /// End of the auction's lifetime, ms (> date_time).
    pub expires: i64,
    /// Person id of the seller.
    pub seller: i64,
    /// 10 … 14.
    pub category: i64,
    /// Padding to about 500 bytes per auction.
    pub extra: Str,
}

/// A bid on an auction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bid {
    /// Auction id.
    pub auction: i64,
    /// Person id of the bidder.
    pub bidder: i64,
    /// Price, 100 … 10^8.
    pub price: i64,
    /// Channel name (hot name or `channel-i`).
    pub channel: Str,
    /// The channel's URL.
    pub url: Str,
    /// Event time, ms since the Unix epoch.
    pub date_time: i64,
    /// Padding to about 100 bytes per bid.
    pub extra: Str,
}

/// One event of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A new user.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's type.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Person(_) => EventKind::Person,
            Event::Auction(_) => EventKind::Auction,
            Event::Bid(_) => EventKind::Bid,
        }
    }

    /// The event time in ms.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// Fixed byte count the padding rule assumes for a bid's non-string fields.
pub const BID_FIXED_BYTES: usize = 32;
/// Fixed byte counts of an auction besides its item name and description.
pub const AUCTION_FIXED_BYTES: usize = 8 + 40;
/// Fixed byte count of a person besides its strings.
pub const PERSON_FIXED_BYTES: usize = 8;

/// Average sizes the padding aims at.
pub const BID_AVG_BYTES: usize = 100;
/// Average auction size.
pub const AUCTION_AVG_BYTES: usize = 500;
/// Average person size.
pub const PERSON_AVG_BYTES: usize = 200;

impl Bid {
    /// Size as the padding rule counts it (fixed part + padding).
    pub fn nominal_size(&self) -> usize {
        BID_FIXED_BYTES + self.extra.len()
    }
}

impl Auction {
    /// Size as the padding rule counts it.
    pub fn nominal_size(&self) -> usize {
        AUCTION_FIXED_BYTES + self.item_name.len() + self.description.len() + self.extra.len()
    }
}

impl Person {
    /// Size as the padding rule counts it.
    pub fn nominal_size(&self) -> usize {
        PERSON_FIXED_BYTES
            + self.name.len()
            + self.email_address.len()
            + self.credit_card.len()
            + self.city.len()
            + self.state.len()
            + self.extra.len()
    }
}
