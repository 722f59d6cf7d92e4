//! The event generator: every event is a pure function of (seed, n), drawn
//! from its own splitmix64 stream, so any shard can produce any event without
//! coordination and without allocating.

use crate::nexmark::arith::{FastDiv, price_from_unit};
use crate::nexmark::config::NexmarkConfig;
use crate::nexmark::error::NexmarkError;
use crate::nexmark::inline_str::InlineStr;
use crate::nexmark::model::{
    AUCTION_AVG_BYTES, AUCTION_FIXED_BYTES, Auction, BID_AVG_BYTES, BID_FIXED_BYTES, Bid, Event,
    EventKind, PERSON_AVG_BYTES, PERSON_FIXED_BYTES, Person,
};
use crate::nexmark::rng::{SplitMix64, seed_key};
use crate::nexmark::tables::{
    BUFFER_LEN, CITIES, HOT_CHANNELS, NUM_CHANNELS, STATES, Tables, tables_for_seed,
};

/// Ids in the stream start here.
pub const FIRST_ID: u64 = 1000;
/// Persons that stay "active" (eligible as random bidders and sellers).
const ACTIVE_PEOPLE: u64 = 1000;
/// In-flight auctions look back this far from the last auction.
const IN_FLIGHT_BACK: u64 = 100;
/// Random persons and auctions may lie this far past the last one created.
const LOOK_AHEAD: u64 = 10;
/// Hot auctions, bidders and sellers are bucketed by this ratio.
const HOT_RATIO: u64 = 100;
/// Events whose event-time span sets an auction's expected lifetime (H).
const AUCTION_LIFETIME_EVENTS: u64 = 1666;
/// Multiplier of the out-of-order permutation inside a group.
const OUT_OF_ORDER_STRIDE: u128 = 953;

/// Generates Nexmark events; cheap to clone (config plus a `&'static` table).
#[derive(Clone, Debug)]
pub struct Generator {
    config: NexmarkConfig,
    tables: &'static Tables,
    seed_key: u64,
    /// Divides by person + auction + bid proportions (the cycle length).
    cycle: FastDiv,
    /// Divides by `first_event_rate`.
    rate: FastDiv,
}

/// Where an event number falls: its cycle (epoch) and offset within it.
#[derive(Clone, Copy)]
struct Position {
    epoch: u64,
    offset: u64,
}

impl Generator {
    /// Validates `config` and fetches (or builds once) the seed's tables.
    pub fn new(config: NexmarkConfig) -> Result<Generator, NexmarkError> {
        config.validate()?;
        let cycle = config.cycle_len()?;
        Ok(Generator {
            config,
            tables: tables_for_seed(config.seed),
            seed_key: seed_key(config.seed),
            cycle: FastDiv::new(cycle),
            rate: FastDiv::new(config.first_event_rate),
        })
    }

    /// The configuration this generator was built from.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    #[inline]
    fn position(&self, n: u64) -> Position {
        let (epoch, offset) = self.cycle.div_rem(n);
        Position { epoch, offset }
    }

    #[inline]
    fn kind_at(&self, p: Position) -> EventKind {
        if p.offset < self.config.person_proportion {
            EventKind::Person
        } else if p.offset < self.config.person_proportion + self.config.auction_proportion {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// Type of event `n` without generating it.
    #[inline]
    pub fn kind(&self, n: u64) -> EventKind {
        self.kind_at(self.position(n))
    }

    #[inline]
    fn last_person_at(&self, p: Position) -> u64 {
        let persons = self.config.person_proportion;
        let base = p.epoch.wrapping_mul(persons);
        if p.offset < persons {
            base.wrapping_add(p.offset)
        } else {
            base.wrapping_add(persons - 1)
        }
    }

    #[inline]
    fn last_auction_at(&self, p: Position) -> u64 {
        let persons = self.config.person_proportion;
        let auctions = self.config.auction_proportion;
        let base = p.epoch.wrapping_mul(auctions);
        match self.kind_at(p) {
            // The last auction of the previous epoch (none yet in epoch 0).
            EventKind::Person => base.saturating_sub(1),
            EventKind::Auction => base.wrapping_add(p.offset - persons),
            EventKind::Bid => base.wrapping_add(auctions - 1),
        }
    }

    /// Newest person id (base 0, without the +1000) as of event `n`; a
    /// person event's own.
    pub fn last_person(&self, n: u64) -> u64 {
        self.last_person_at(self.position(n))
    }

    /// Newest auction id (base 0) as of event `n`; an auction event's own.
    pub fn last_auction(&self, n: u64) -> u64 {
        self.last_auction_at(self.position(n))
    }

    /// In-order event time of event `n`:
    /// `base_time + floor(n · 10^6 / rate / 1000)` ms (saturating).
    #[inline]
    pub fn base_timestamp(&self, n: u64) -> i64 {
        let rate = self.config.first_event_rate;
        let offset = match n.checked_mul(1000) {
            Some(us) => self.rate.div(us),
            None => u64::try_from(u128::from(n) * 1000 / u128::from(rate)).unwrap_or(u64::MAX),
        };
        self.config
            .base_time_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// Event time (`date_time`) of event `n` in ms. With out-of-order group
    /// g > 1, event n takes the in-order time of `(n / g)·g + (n·953 mod g)`.
    #[inline]
    pub fn timestamp(&self, n: u64) -> i64 {
        let g = self.config.out_of_order_group;
        if g <= 1 {
            return self.base_timestamp(n);
        }
        let within = (u128::from(n % g) * OUT_OF_ORDER_STRIDE % u128::from(g)) as u64;
        self.base_timestamp((n - n % g).saturating_add(within))
    }

    /// Event `n`. Pure in (seed, n); performs no heap allocation.
    #[inline]
    pub fn event(&self, n: u64) -> Event {
        let p = self.position(n);
        let mut rng = SplitMix64::for_event(self.seed_key, n);
        match self.kind_at(p) {
            EventKind::Person => Event::Person(self.person(n, p, &mut rng)),
            EventKind::Auction => Event::Auction(self.auction(n, p, &mut rng)),
            EventKind::Bid => Event::Bid(self.bid(n, p, &mut rng)),
        }
    }

    fn person(&self, n: u64, p: Position, rng: &mut SplitMix64) -> Person {
        let t = self.tables;
        let id = self.last_person_at(p);
        let name = pick(&t.names, rng);
        let user = self.string(rng, 7);
        let domain = self.string(rng, 5);
        let email_address = InlineStr::from_parts(&[user, "@", domain, ".com"]).unwrap_or_default();
        let credit_card = credit_card(rng);
        let city = pick(&CITIES, rng);
        let state = pick(&STATES, rng);
        let used = PERSON_FIXED_BYTES
            + name.len()
            + email_address.len()
            + credit_card.len()
            + city.len()
            + state.len();
        let extra = self.padding(rng, PERSON_AVG_BYTES.saturating_sub(used));
        Person {
            id: to_id(id),
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: self.timestamp(n),
            extra,
        }
    }

    fn auction(&self, n: u64, p: Position, rng: &mut SplitMix64) -> Auction {
        let id = self.last_auction_at(p);
        let item_name = self.string(rng, 20);
        let description = self.string(rng, 100);
        let initial_bid = price(rng);
        let reserve = initial_bid + price(rng);
        let last_person = self.last_person_at(p);
        let seller = if rng.below(4) != 0 {
            hot(last_person)
        } else {
            active_person(rng, last_person)
        };
        let category = 10 + rng.below(5) as i64;
        let date_time = self.timestamp(n);
        // H = ts(n + 1666) − ts(n) with the spec's ts, the in-order time: in
        // out-of-order mode the permuted times would make H jitter or go negative.
        let lifetime = self
            .base_timestamp(n.saturating_add(AUCTION_LIFETIME_EVENTS))
            .saturating_sub(self.base_timestamp(n));
        let span = lifetime.saturating_mul(2).max(1) as u64;
        let expires = date_time
            .saturating_add(1)
            .saturating_add(rng.below(span) as i64);
        let used = AUCTION_FIXED_BYTES + item_name.len() + description.len();
        let extra = self.padding(rng, AUCTION_AVG_BYTES.saturating_sub(used));
        Auction {
            id: to_id(id),
            item_name,
            description,
            initial_bid,
            reserve,
            date_time,
            expires,
            seller: to_id(seller),
            category,
            extra,
        }
    }

    #[inline]
    fn bid(&self, n: u64, p: Position, rng: &mut SplitMix64) -> Bid {
        let t = self.tables;
        let last_auction = self.last_auction_at(p);
        // One draw supplies the bid's small choices as independent bit fields:
        // bit 0 hot auction (1/2), bits 1–2 hot bidder (3/4), bit 3 hot
        // channel (1/2), bits 4–5 which hot channel. Saves three draws per bid.
        let coins = rng.next_u64();
        let auction = if coins & 1 == 0 {
            hot(last_auction)
        } else {
            let lo = last_auction.saturating_sub(IN_FLIGHT_BACK);
            let hi = last_auction.saturating_add(LOOK_AHEAD);
            lo + rng.below(hi - lo + 1)
        };
        let last_person = self.last_person_at(p);
        let bidder = if (coins >> 1) & 3 != 0 {
            hot(last_person).wrapping_add(1)
        } else {
            active_person(rng, last_person)
        };
        let price = price(rng);
        let (channel, url) = if (coins >> 3) & 1 == 0 {
            let h = ((coins >> 4) & 3) as usize;
            (HOT_CHANNELS[h], t.hot_urls[h])
        } else {
            let i = rng.below(NUM_CHANNELS as u64) as usize;
            t.channels[i]
        };
        let extra = self.padding(rng, BID_AVG_BYTES - BID_FIXED_BYTES);
        Bid {
            auction: to_id(auction),
            bidder: to_id(bidder),
            price,
            channel,
            url,
            date_time: self.timestamp(n),
            extra,
        }
    }

    /// `string(max)`: a random slice of the letter buffer of length
    /// 3 + uniform[0, max − 3), then trimmed.
    #[inline]
    fn string(&self, rng: &mut SplitMix64, max: usize) -> &'static str {
        let len = 3 + rng.below(max.saturating_sub(3) as u64) as usize;
        self.slice(rng, len).trim_matches(' ')
    }

    /// Padding for target T: length uniform in [T − δ, T + δ), δ = round(0.2·T).
    #[inline]
    fn padding(&self, rng: &mut SplitMix64, target: usize) -> &'static str {
        let delta = (2 * target + 5) / 10;
        let len = target - delta + rng.below(2 * delta as u64) as usize;
        self.slice(rng, len)
    }

    /// `len` bytes of the letter buffer at a random offset.
    #[inline]
    fn slice(&self, rng: &mut SplitMix64, len: usize) -> &'static str {
        let len = len.min(BUFFER_LEN);
        let start = rng.below((BUFFER_LEN - len + 1) as u64) as usize;
        // The buffer is ASCII, so any range inside it is valid.
        self.tables.buffer.get(start..start + len).unwrap_or("")
    }
}

/// Hot auction / seller bucket: (x / 100) · 100.
#[inline]
fn hot(last: u64) -> u64 {
    (last / HOT_RATIO) * HOT_RATIO
}

/// Random active person (base 0): of P = last + 1 people, the newest
/// A = min(P, 1000), plus 10 not created yet.
#[inline]
fn active_person(rng: &mut SplitMix64, last_person: u64) -> u64 {
    let people = last_person.saturating_add(1);
    let active = people.min(ACTIVE_PEOPLE);
    (people - active).wrapping_add(rng.below(active + LOOK_AHEAD))
}

/// Base-0 id to the stream's id (+1000 once).
#[inline]
fn to_id(base: u64) -> i64 {
    base.wrapping_add(FIRST_ID) as i64
}

/// `round(10^(6u) · 100)`: log-uniform in 100 … 10^8.
#[inline]
fn price(rng: &mut SplitMix64) -> i64 {
    price_from_unit(rng.unit_f64())
}

/// A uniformly chosen entry of a non-empty table.
#[inline]
fn pick(items: &[&'static str], rng: &mut SplitMix64) -> &'static str {
    items
        .get(rng.below(items.len() as u64) as usize)
        .copied()
        .unwrap_or("")
}

/// Four groups of four digits separated by spaces.
fn credit_card(rng: &mut SplitMix64) -> InlineStr<20> {
    let mut digits = [b' '; 19];
    for group in 0..4 {
        let mut v = rng.below(10_000);
        for k in (0..4).rev() {
            digits[group * 5 + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    InlineStr::from_bytes(&digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::tables::channel_id;

    fn generator(config: NexmarkConfig) -> Generator {
        match Generator::new(config) {
            Ok(g) => g,
            Err(e) => panic!("valid config rejected: {e}"),
        }
    }

    fn default_gen() -> Generator {
        generator(NexmarkConfig::default())
    }

    fn bid(g: &Generator, n: u64) -> Bid {
        match g.event(n) {
            Event::Bid(b) => b,
            other => panic!("event {n} is not a bid: {other:?}"),
        }
    }

    fn auction(g: &Generator, n: u64) -> Auction {
        match g.event(n) {
            Event::Auction(a) => a,
            other => panic!("event {n} is not an auction: {other:?}"),
        }
    }

    fn person(g: &Generator, n: u64) -> Person {
        match g.event(n) {
            Event::Person(p) => p,
            other => panic!("event {n} is not a person: {other:?}"),
        }
    }

    #[test]
    fn invalid_config_is_an_error() {
        let c = NexmarkConfig {
            first_event_rate: 0,
            ..NexmarkConfig::default()
        };
        match Generator::new(c) {
            Err(e) => assert!(e.to_string().contains("first_event_rate")),
            Ok(_) => panic!("zero rate accepted"),
        }
    }

    #[test]
    fn deterministic_across_instances_and_calls() {
        let a = default_gen();
        let b = default_gen();
        let other_seed = generator(NexmarkConfig {
            seed: 1,
            ..NexmarkConfig::default()
        });
        let mut differs = 0;
        for n in (0..2_000).chain([1 << 40, u64::MAX - 1]) {
            assert_eq!(a.event(n), a.event(n));
            assert_eq!(a.event(n), b.event(n));
            assert_eq!(a.event(n), a.clone().event(n));
            differs += usize::from(a.event(n) != other_seed.event(n));
        }
        assert!(differs > 1_900, "seed barely matters: {differs}");
    }

    #[test]
    fn proportions_are_exact_per_50() {
        let g = default_gen();
        for start in [0u64, 50, 5_000, 1 << 33] {
            let mut counts = [0; 3];
            for n in start..start + 50 {
                let k = g.kind(n);
                assert_eq!(k, g.event(n).kind());
                counts[k as usize] += 1;
            }
            assert_eq!(counts, [1, 3, 46]);
        }
        assert_eq!(g.kind(0), EventKind::Person);
        assert_eq!(g.kind(1), EventKind::Auction);
        assert_eq!(g.kind(3), EventKind::Auction);
        assert_eq!(g.kind(4), EventKind::Bid);
        assert_eq!(g.kind(49), EventKind::Bid);
        assert_eq!(g.kind(50), EventKind::Person);
    }

    #[test]
    fn custom_proportions() {
        let g = generator(NexmarkConfig {
            person_proportion: 2,
            auction_proportion: 1,
            bid_proportion: 1,
            ..NexmarkConfig::default()
        });
        let kinds: Vec<EventKind> = (0..8).map(|n| g.kind(n)).collect();
        use EventKind::*;
        assert_eq!(
            kinds,
            [Person, Person, Auction, Bid, Person, Person, Auction, Bid]
        );
        assert_eq!(person(&g, 5).id, 1003);
        assert_eq!(auction(&g, 6).id, 1001);
        assert_eq!(g.last_person(7), 3);
    }

    #[test]
    fn ids_at_hand_computed_positions() {
        for seed in 0..20 {
            let g = generator(NexmarkConfig {
                seed,
                ..NexmarkConfig::default()
            });
            // n = 0: first person, epoch 0.
            assert_eq!(person(&g, 0).id, 1000);
            // n = 1: first auction; seller hot 0 or active in [0, 0 + 11).
            let a1 = auction(&g, 1);
            assert_eq!(a1.id, 1000);
            assert!((1000..=1010).contains(&a1.seller), "{a1:?}");
            assert_eq!(auction(&g, 3).id, 1002);
            // n = 4: first bid; last_auction 2, hot auction 0, in-flight [0, 12];
            // bidder hot 0 + 1 or active [0, 11).
            let b4 = bid(&g, 4);
            assert!((1000..=1012).contains(&b4.auction), "{b4:?}");
            assert!((1000..=1010).contains(&b4.bidder), "{b4:?}");
            // n = 50: second person.
            assert_eq!(person(&g, 50).id, 1001);
            // n = 51: fourth auction (epoch 1, r = 1 → 3).
            assert_eq!(auction(&g, 51).id, 1003);
            assert_eq!(auction(&g, 53).id, 1005);
            // n = 99: last_auction 5, in-flight [0, 15]; last_person 1, P = 2,
            // active [0, 12), hot bidder 1.
            let b99 = bid(&g, 99);
            assert!((1000..=1015).contains(&b99.auction), "{b99:?}");
            assert!((1000..=1011).contains(&b99.bidder), "{b99:?}");
            // n = 12504: epoch 250, last_auction 752 → hot 700, in-flight
            // [652, 762]; last_person 250 → hot bidder 201, active [0, 261).
            let b = bid(&g, 12_504);
            assert!(
                b.auction == 1700 || (1652..=1762).contains(&b.auction),
                "{b:?}"
            );
            assert!(
                b.bidder == 1201 || (1000..1261).contains(&b.bidder),
                "{b:?}"
            );
        }
        let g = default_gen();
        assert_eq!((g.last_person(0), g.last_auction(0)), (0, 0));
        assert_eq!((g.last_person(1), g.last_auction(1)), (0, 0));
        assert_eq!((g.last_person(4), g.last_auction(4)), (0, 2));
        assert_eq!((g.last_person(50), g.last_auction(50)), (1, 2));
        assert_eq!((g.last_person(51), g.last_auction(51)), (1, 3));
        assert_eq!((g.last_person(99), g.last_auction(99)), (1, 5));
    }

    #[test]
    fn bid_fields_follow_the_rules() {
        let g = default_gen();
        let (mut hot_auctions, mut hot_bidders, mut hot_channels, mut bids) = (0, 0, 0, 0);
        let mut seen_low = false;
        let mut seen_high = false;
        for n in 0..200_000u64 {
            if g.kind(n) != EventKind::Bid {
                continue;
            }
            let b = bid(&g, n);
            bids += 1;
            let la = g.last_auction(n) as i64;
            let lp = g.last_person(n) as i64;
            let hot_auction = la / 100 * 100 + 1000;
            let in_flight = (la - 100).max(0) + 1000..=la + 10 + 1000;
            assert!(
                b.auction == hot_auction || in_flight.contains(&b.auction),
                "{n}: {b:?}"
            );
            hot_auctions += i32::from(b.auction == hot_auction);
            let hot_bidder = lp / 100 * 100 + 1 + 1000;
            let people = lp + 1;
            let active = people.min(1000);
            let range = people - active + 1000..people + 10 + 1000;
            assert!(
                b.bidder == hot_bidder || range.contains(&b.bidder),
                "{n}: {b:?}"
            );
            hot_bidders += i32::from(b.bidder == hot_bidder);
            assert!((100..=100_000_000).contains(&b.price), "{b:?}");
            seen_low |= b.price < 1_000;
            seen_high |= b.price > 10_000_000;
            if let Some(h) = HOT_CHANNELS.iter().position(|c| *c == b.channel) {
                hot_channels += 1;
                assert_eq!(b.url, g.tables.hot_urls[h]);
            } else {
                let i: usize = b.channel["channel-".len()..].parse().unwrap_or(usize::MAX);
                assert!(i < NUM_CHANNELS);
                assert_eq!(b.url, g.tables.channels[i].1);
            }
            assert_eq!(b.date_time, g.timestamp(n));
        }
        let frac = |x: i32| f64::from(x) / f64::from(bids);
        // Hot auction: 1/2 plus in-flight draws that hit it.
        assert!(
            (0.49..0.56).contains(&frac(hot_auctions)),
            "{}",
            frac(hot_auctions)
        );
        assert!(
            (0.74..0.77).contains(&frac(hot_bidders)),
            "{}",
            frac(hot_bidders)
        );
        assert!(
            (0.49..0.51).contains(&frac(hot_channels)),
            "{}",
            frac(hot_channels)
        );
        assert!(seen_low && seen_high);
    }

    #[test]
    fn price_is_log_uniform() {
        // P(price < 10^(2+k)) = k/6 for a log-uniform price in [100, 10^8].
        let g = default_gen();
        let mut below_10k = 0;
        let mut total = 0;
        for n in 0..100_000u64 {
            if let Event::Bid(b) = g.event(n) {
                total += 1;
                below_10k += i32::from(b.price < 10_000);
            }
        }
        let f = f64::from(below_10k) / f64::from(total);
        assert!((f - 2.0 / 6.0).abs() < 0.01, "{f}");
    }

    #[test]
    fn auction_fields_follow_the_rules() {
        let g = generator(NexmarkConfig {
            first_event_rate: 1_000,
            ..NexmarkConfig::default()
        });
        let mut categories = [0; 5];
        let mut max_life = 0;
        for n in 0..50_000u64 {
            if g.kind(n) != EventKind::Auction {
                continue;
            }
            let a = auction(&g, n);
            assert_eq!(a.id, g.last_auction(n) as i64 + 1000);
            categories[(a.category - 10) as usize] += 1;
            assert!(a.reserve > a.initial_bid && a.initial_bid >= 100);
            // Rate 1000/s: ts(n) = base + n, so H = 1666 and lifetime ∈ [1, 3332].
            let life = a.expires - a.date_time;
            assert!((1..=3332).contains(&life), "{a:?}");
            max_life = max_life.max(life);
            assert!(a.item_name.len() <= 19 && a.description.len() <= 99);
            assert_eq!(a.item_name, a.item_name.trim());
            assert!(
                a.item_name
                    .bytes()
                    .all(|c| c == b' ' || c.is_ascii_lowercase())
            );
            let lp = g.last_person(n) as i64;
            let people = lp + 1;
            let range = people - people.min(1000) + 1000..people + 1010;
            assert!(a.seller == lp / 100 * 100 + 1000 || range.contains(&a.seller));
        }
        assert!(categories.iter().all(|&c| c > 500), "{categories:?}");
        assert!(max_life > 3_000);

        // Default rate: H is 0 or 1 ms, so expires − date_time ∈ {1, 2}.
        let g = default_gen();
        for n in (1..30_000u64).filter(|n| g.kind(*n) == EventKind::Auction) {
            let a = auction(&g, n);
            assert!((1..=2).contains(&(a.expires - a.date_time)), "{a:?}");
        }
    }

    #[test]
    fn person_fields_follow_the_rules() {
        let g = default_gen();
        for n in (0..100_000u64).step_by(50) {
            let p = person(&g, n);
            assert_eq!(p.id, n as i64 / 50 + 1000);
            let (first, last) = p.name.split_once(' ').unwrap_or(("", ""));
            assert!(crate::nexmark::tables::FIRST_NAMES.contains(&first));
            assert!(crate::nexmark::tables::LAST_NAMES.contains(&last));
            let email = p.email_address.as_str();
            let (user, domain) = email.split_once('@').unwrap_or(("", ""));
            assert!(user.len() <= 6 && domain.ends_with(".com") && domain.len() <= 8);
            let cc = p.credit_card.as_str();
            assert_eq!(cc.len(), 19);
            assert!(
                cc.split(' ')
                    .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit()))
            );
            assert!(CITIES.contains(&p.city) && STATES.contains(&p.state));
        }
    }

    #[test]
    fn padding_averages_hit_targets() {
        let g = default_gen();
        let (mut sums, mut counts) = ([0usize; 3], [0usize; 3]);
        // 100k events of each kind (persons are 1 in 50, so walk further for them).
        for n in 0..5_000_000u64 {
            let k = g.kind(n) as usize;
            if counts[k] >= 100_000 {
                if counts.iter().all(|&c| c >= 100_000) {
                    break;
                }
                continue;
            }
            counts[k] += 1;
            sums[k] += match g.event(n) {
                Event::Person(p) => p.nominal_size(),
                Event::Auction(a) => a.nominal_size(),
                Event::Bid(b) => b.nominal_size(),
            };
        }
        for (k, target) in [(0, 200.0), (1, 500.0), (2, 100.0)] {
            let avg = sums[k] as f64 / counts[k] as f64;
            assert!((avg / target - 1.0).abs() < 0.05, "kind {k}: {avg}");
        }
        // Bid padding: T = 68, δ = 14, length in [54, 82).
        for n in 4..5_000u64 {
            if let Event::Bid(b) = g.event(n) {
                assert!((54..82).contains(&b.extra.len()), "{}", b.extra.len());
            }
        }
    }

    #[test]
    fn timestamps_in_order_mode() {
        let g = default_gen();
        let base = g.config().base_time_ms;
        assert_eq!(g.timestamp(0), base);
        assert_eq!(g.timestamp(9_999), base);
        assert_eq!(g.timestamp(10_000), base + 1);
        assert_eq!(g.timestamp(20_000_000), base + 2_000);
        let mut prev = i64::MIN;
        for n in (0..1_000_000u64).step_by(7) {
            let t = g.timestamp(n);
            assert!(t >= prev);
            prev = t;
        }
        let slow = generator(NexmarkConfig {
            first_event_rate: 3,
            ..NexmarkConfig::default()
        });
        // floor(n · 10^6 / 3 / 1000): n = 1 → 333, n = 2 → 666, n = 3 → 1000.
        assert_eq!(slow.timestamp(1) - base, 333);
        assert_eq!(slow.timestamp(2) - base, 666);
        assert_eq!(slow.timestamp(3) - base, 1000);
        // Huge n saturates instead of overflowing.
        assert_eq!(slow.timestamp(u64::MAX), i64::MAX);
    }

    #[test]
    fn timestamps_out_of_order_formula() {
        let g = generator(NexmarkConfig {
            first_event_rate: 1_000, // ts(n) = base + n
            out_of_order_group: 10,
            ..NexmarkConfig::default()
        });
        let base = g.config().base_time_ms;
        // (n / 10)·10 + (n·953 mod 10) = (n / 10)·10 + (3n mod 10).
        for (n, want) in [(0, 0), (1, 3), (2, 6), (5, 5), (9, 7), (13, 19), (10, 10)] {
            assert_eq!(g.timestamp(n) - base, want, "n = {n}");
        }
        let g7 = generator(NexmarkConfig {
            out_of_order_group: 7,
            first_event_rate: 1_000,
            ..NexmarkConfig::default()
        });
        for n in 0..10_000u64 {
            let m = (n / 7) * 7 + (n * 953) % 7;
            assert_eq!(g7.timestamp(n), g7.base_timestamp(m));
            assert_eq!(g7.event(n).date_time(), g7.timestamp(n));
        }
        // Within each group the timestamps are a permutation of the in-order ones.
        let mut group: Vec<i64> = (700..707).map(|n| g7.timestamp(n)).collect();
        group.sort_unstable();
        assert_eq!(group, (700..707).map(|n| base + n).collect::<Vec<_>>());
    }

    #[test]
    fn channel_urls_carry_bit_reversed_ids() {
        let g = default_gen();
        let mut checked = 0;
        for n in 4..20_000u64 {
            let Event::Bid(b) = g.event(n) else { continue };
            if let Some(i) = b.channel.strip_prefix("channel-") {
                let i: u32 = i.parse().unwrap_or(u32::MAX);
                if let Some((_, id)) = b.url.split_once("channel_id=") {
                    assert_eq!(id, channel_id(i).to_string());
                    checked += 1;
                }
            }
        }
        assert!(checked > 1_000);
        assert_eq!(channel_id(1), 2_147_483_648);
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let third = u64::MAX / 3;
        let configs = [
            NexmarkConfig {
                person_proportion: third,
                auction_proportion: third,
                bid_proportion: third,
                first_event_rate: 1,
                base_time_ms: i64::MAX - 5,
                out_of_order_group: u64::MAX,
                seed: u64::MAX,
            },
            NexmarkConfig {
                first_event_rate: u64::MAX,
                base_time_ms: i64::MIN,
                out_of_order_group: 3,
                ..NexmarkConfig::default()
            },
        ];
        for c in configs {
            let g = generator(c);
            for n in [0, 1, third - 1, third, 2 * third, u64::MAX - 1, u64::MAX] {
                let e = g.event(n);
                assert_eq!(e.kind(), g.kind(n));
                let _ = g.timestamp(n);
            }
        }
    }

    #[test]
    fn generator_is_send_sync_and_cheap() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Generator>();
        assert!(std::mem::size_of::<Generator>() <= 128);
        assert!(std::mem::size_of::<Event>() <= 160);
    }
}
