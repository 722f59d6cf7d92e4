//! Checkpoint encoding of the Nexmark events (`StateCodec`), so operators can keep events in
//! checkpointed state.
//!
//! A string the generator produced is a slice of its seed's arena (`tables`), and is written
//! as that reference — seed, offset, length — and decoded as the same slice of the (rebuilt)
//! arena: no copy, no allocation, no interning. Restoring a large state of events was
//! dominated by interning those strings (hashing them into a per-thread set, and leaking one
//! copy per distinct `extra` padding, which is nearly one per event). Any other string is
//! written in full and decoded as an interned `&'static str` (see `state::codec::intern`).

use super::tables::{arena_slice, locate};
use super::{Auction, Bid, InlineStr, Person};
use crate::state::{StateCodec, StateError};

/// Tag of a string written in full.
const STR_BYTES: u8 = 0;
/// Tag of a string written as a slice of a seed's arena.
const STR_ARENA: u8 = 1;

fn encode_str(s: &'static str, out: &mut Vec<u8>) {
    match locate(s) {
        Some((seed, offset)) => {
            out.push(STR_ARENA);
            (seed, offset as u64, s.len() as u64).encode(out);
        }
        None => {
            out.push(STR_BYTES);
            s.encode(out);
        }
    }
}

fn decode_str(input: &mut &[u8]) -> Result<&'static str, StateError> {
    match u8::decode_from(input)? {
        STR_BYTES => <&'static str>::decode_from(input),
        STR_ARENA => {
            let (seed, offset, len) = <(u64, u64, u64)>::decode_from(input)?;
            let slice = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(offset, len)| arena_slice(seed, offset, len));
            slice.ok_or(StateError::Decode {
                reason: "string slice outside the generator's arena",
            })
        }
        _ => Err(StateError::Decode {
            reason: "unknown string tag",
        }),
    }
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

    /// Generated strings travel as references into the arena and come back as the very same
    /// slices; strings from elsewhere are written in full.
    #[test]
    fn generated_strings_are_arena_references() {
        let g = Generator::new(NexmarkConfig::default()).expect("default config");
        let bid = (0..100)
            .find_map(|n| match g.event(n) {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .expect("a bid");
        let decoded = Bid::decode(&bid.to_bytes()).expect("bid");
        assert!(std::ptr::eq(decoded.extra, bid.extra), "the same slice");
        assert!(std::ptr::eq(decoded.url, bid.url));
        // 4 numbers + 3 × (tag + seed, offset, length): far below the strings' own length.
        assert!(
            bid.to_bytes().len() < 4 * 9 + 3 * 28,
            "{}",
            bid.to_bytes().len()
        );
        let own = String::from("not from the generator");
        let custom = Bid {
            channel: Box::leak(own.into_boxed_str()),
            ..bid
        };
        let decoded = Bid::decode(&custom.to_bytes()).expect("custom bid");
        assert_eq!(decoded, custom);
        assert!(
            !std::ptr::eq(decoded.channel, custom.channel),
            "interned copy"
        );
    }

    /// A reference outside the arena or an unknown tag is a decode error, not a panic.
    #[test]
    fn bad_string_references_are_errors() {
        let mut bad = Vec::new();
        bad.push(STR_ARENA);
        (NexmarkConfig::default().seed, u64::MAX - 3, 10u64).encode(&mut bad);
        assert!(decode_str(&mut bad.as_slice()).is_err());
        let mut bad = Vec::new();
        bad.push(STR_ARENA);
        (NexmarkConfig::default().seed, 0u64, u64::MAX).encode(&mut bad);
        assert!(decode_str(&mut bad.as_slice()).is_err());
        assert!(decode_str(&mut [7u8, 0].as_slice()).is_err());
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
