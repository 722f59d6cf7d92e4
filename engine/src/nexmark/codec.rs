//! Checkpoint encoding of the Nexmark events (`StateCodec`), so operators can keep events in
//! checkpointed state.
//!
//! Strings are written out in full and decoded as interned `&'static str`s (see
//! `state::codec::intern`).

use super::{Auction, Bid, InlineStr, Person};
use crate::state::{StateCodec, StateError};

fn encode_str(s: &'static str, out: &mut Vec<u8>) {
    s.encode(out);
}

fn decode_str(input: &mut &[u8]) -> Result<&'static str, StateError> {
    <&'static str>::decode_from(input)
}

fn decode_inline<const N: usize>(input: &mut &[u8]) -> Result<InlineStr<N>, StateError> {
    let s = String::decode_from(input)?;
    InlineStr::new(&s).ok_or(StateError::Decode {
        reason: "inline string too long",
    })
}

impl StateCodec for Bid {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.auction, self.bidder, self.price, self.date_time).encode(out);
        encode_str(self.channel, out);
        encode_str(self.url, out);
        encode_str(self.extra, out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (auction, bidder, price, date_time) = <(i64, i64, i64, i64)>::decode_from(input)?;
        Ok(Bid {
            auction,
            bidder,
            price,
            date_time,
            channel: decode_str(input)?,
            url: decode_str(input)?,
            extra: decode_str(input)?,
        })
    }
}

impl StateCodec for Auction {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.id, self.initial_bid, self.reserve, self.date_time).encode(out);
        (self.expires, self.seller, self.category).encode(out);
        encode_str(self.item_name, out);
        encode_str(self.description, out);
        encode_str(self.extra, out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (id, initial_bid, reserve, date_time) = <(i64, i64, i64, i64)>::decode_from(input)?;
        let (expires, seller, category) = <(i64, i64, i64)>::decode_from(input)?;
        Ok(Auction {
            id,
            initial_bid,
            reserve,
            date_time,
            expires,
            seller,
            category,
            item_name: decode_str(input)?,
            description: decode_str(input)?,
            extra: decode_str(input)?,
        })
    }
}

impl StateCodec for Person {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.id, self.date_time).encode(out);
        encode_str(self.name, out);
        self.email_address.as_str().to_string().encode(out);
        self.credit_card.as_str().to_string().encode(out);
        encode_str(self.city, out);
        encode_str(self.state, out);
        encode_str(self.extra, out);
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (id, date_time) = <(i64, i64)>::decode_from(input)?;
        Ok(Person {
            id,
            date_time,
            name: decode_str(input)?,
            email_address: decode_inline(input)?,
            credit_card: decode_inline(input)?,
            city: decode_str(input)?,
            state: decode_str(input)?,
            extra: decode_str(input)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::{Event, Generator, NexmarkConfig};

    #[test]
    fn generated_events_round_trip() {
        let g = Generator::new(NexmarkConfig::default()).expect("default config");
        for n in 0..500 {
            match g.event(n) {
                Event::Bid(b) => assert_eq!(Bid::decode(&b.to_bytes()).expect("bid"), b),
                Event::Auction(a) => {
                    assert_eq!(Auction::decode(&a.to_bytes()).expect("auction"), a)
                }
                Event::Person(p) => assert_eq!(Person::decode(&p.to_bytes()).expect("person"), p),
            }
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let g = Generator::new(NexmarkConfig::default()).expect("default config");
        let Event::Person(p) = g.event(0) else {
            return;
        };
        let bytes = p.to_bytes();
        for cut in 0..bytes.len() {
            assert!(Person::decode(&bytes[..cut]).is_err());
        }
    }
}
