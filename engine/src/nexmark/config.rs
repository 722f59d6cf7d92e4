//! Generator configuration: everything that, together with the event number,
//! determines an event.

use crate::nexmark::error::NexmarkError;

/// 2026-01-01T00:00:00Z in ms: a multiple of every window size, so windows of
/// the default stream start exactly at the base time.
pub const DEFAULT_BASE_TIME_MS: i64 = 1_767_225_600_000;

/// Flink's 100M-event suite rate: events per second of event time.
pub const DEFAULT_FIRST_EVENT_RATE: u64 = 10_000_000;

/// Parameters of the Nexmark event stream (see the spec's Generator section).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NexmarkConfig {
    /// Seed mixed with the event number to draw each event's values.
    pub seed: u64,
    /// Events per second of event time (drives `date_time`).
    pub first_event_rate: u64,
    /// Event time of event 0, in ms since the Unix epoch.
    pub base_time_ms: i64,
    /// Persons per cycle of `person + auction + bid` events.
    pub person_proportion: u64,
    /// Auctions per cycle.
    pub auction_proportion: u64,
    /// Bids per cycle.
    pub bid_proportion: u64,
    /// Out-of-order group size; 1 means timestamps follow the event order.
    pub out_of_order_group: u64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            seed: 0,
            first_event_rate: DEFAULT_FIRST_EVENT_RATE,
            base_time_ms: DEFAULT_BASE_TIME_MS,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            out_of_order_group: 1,
        }
    }
}

impl NexmarkConfig {
    /// Rejects configurations the generator cannot serve (division by zero,
    /// empty cycles); the error names the field.
    pub fn validate(&self) -> Result<(), NexmarkError> {
        let positive = [
            ("first_event_rate", self.first_event_rate),
            ("person_proportion", self.person_proportion),
            ("auction_proportion", self.auction_proportion),
            ("bid_proportion", self.bid_proportion),
            ("out_of_order_group", self.out_of_order_group),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(NexmarkError::ZeroField { field });
            }
        }
        self.cycle_len().map(|_| ())
    }

    /// Events per cycle (`person + auction + bid`), 50 by default.
    pub fn cycle_len(&self) -> Result<u64, NexmarkError> {
        self.person_proportion
            .checked_add(self.auction_proportion)
            .and_then(|s| s.checked_add(self.bid_proportion))
            .ok_or(NexmarkError::ProportionOverflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_spec() {
        let c = NexmarkConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.cycle_len().ok(), Some(50));
        assert_eq!(c.first_event_rate, 10_000_000);
        assert_eq!(c.base_time_ms, 1_767_225_600_000);
    }

    #[test]
    fn zero_fields_are_rejected_by_name() {
        type Case = (&'static str, fn(&mut NexmarkConfig));
        let cases: [Case; 5] = [
            ("first_event_rate", |c| c.first_event_rate = 0),
            ("person_proportion", |c| c.person_proportion = 0),
            ("auction_proportion", |c| c.auction_proportion = 0),
            ("bid_proportion", |c| c.bid_proportion = 0),
            ("out_of_order_group", |c| c.out_of_order_group = 0),
        ];
        for (name, f) in cases {
            let mut c = NexmarkConfig::default();
            f(&mut c);
            match c.validate() {
                Err(e @ NexmarkError::ZeroField { field }) => {
                    assert_eq!(field, name);
                    assert!(e.to_string().contains(name), "{e}");
                }
                other => panic!("{name}: expected ZeroField, got {other:?}"),
            }
        }
    }

    #[test]
    fn proportion_overflow_is_rejected() {
        let c = NexmarkConfig {
            bid_proportion: u64::MAX,
            ..NexmarkConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(NexmarkError::ProportionOverflow)
        ));
    }
}
