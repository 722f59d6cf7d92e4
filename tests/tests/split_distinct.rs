//! q15's split distinct aggregation (stage 1 keyed by day and distinct value, stage 2 keyed by
//! day summing per-batch partials): for random bids — few bidders and auctions, so values
//! repeat across days and price bands — any shard count and batch size, on either state
//! backend, its changelog describes exactly the table a sequential computation gives.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use weir::changelog::materialize;
use weir::nexmark::{Bid, Event};
use weir::{Change, Env};
use weir_bench::queries::{Q15Row, q15};
use weir_tests::test_backend;

const DAY_MS: i64 = 86_400_000;

/// A row as comparable values: day (ms), then the twelve counts in column order.
type Row = (i64, [i64; 12]);

fn row(r: &Q15Row) -> Row {
    let s = r.stats;
    (
        r.day.0,
        [
            s.total_bids,
            s.rank1_bids,
            s.rank2_bids,
            s.rank3_bids,
            s.total_bidders,
            s.rank1_bidders,
            s.rank2_bidders,
            s.rank3_bidders,
            s.total_auctions,
            s.rank1_auctions,
            s.rank2_auctions,
            s.rank3_auctions,
        ],
    )
}

/// The twelve counts per day, straight from the definition.
fn reference(bids: &[Bid]) -> Vec<Row> {
    #[derive(Default)]
    struct Day {
        bids: [i64; 4],
        bidders: [BTreeSet<i64>; 4],
        auctions: [BTreeSet<i64>; 4],
    }
    let mut days: BTreeMap<i64, Day> = BTreeMap::new();
    for b in bids {
        let band = if b.price < 10_000 {
            1
        } else if b.price < 1_000_000 {
            2
        } else {
            3
        };
        let d = days.entry(b.date_time.div_euclid(DAY_MS)).or_default();
        for i in [0, band] {
            d.bids[i] += 1;
            d.bidders[i].insert(b.bidder);
            d.auctions[i].insert(b.auction);
        }
    }
    days.into_iter()
        .map(|(day, d)| {
            let mut counts = [0i64; 12];
            for i in 0..4 {
                counts[i] = d.bids[i];
                counts[4 + i] = d.bidders[i].len() as i64;
                counts[8 + i] = d.auctions[i].len() as i64;
            }
            (day * DAY_MS, counts)
        })
        .collect()
}

fn run(bids: &[Bid], shards: usize, batch_size: usize, lsm: bool) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Env::builder()
        .cores(shards)
        .batch_size(batch_size)
        .state_backend(test_backend(lsm, dir.path(), 64 << 10))
        .build()
        .expect("valid env");
    let events: Vec<Event> = bids.iter().copied().map(Event::Bid).collect();
    let changes = q15(&env.from_iter(events))
        .map(|c| match c {
            Change::Insert(r) => Change::Insert(row(&r)),
            Change::UpdateBefore(r) => Change::UpdateBefore(row(&r)),
            Change::UpdateAfter(r) => Change::UpdateAfter(row(&r)),
            Change::Delete(r) => Change::Delete(row(&r)),
        })
        .collect();
    env.execute().expect("q15 runs");
    // Changes of a day come from its stage-2 shard in order; the collector keeps each
    // shard's order.
    let mut table = materialize(changes.take()).expect("a consistent changelog");
    table.sort();
    table
}

fn bid((day, bidder, auction, price): (i64, i64, i64, i64)) -> Bid {
    Bid {
        auction,
        bidder,
        price,
        channel: "channel",
        url: "url",
        date_time: 1_700_000_000_000 + day * DAY_MS,
        extra: "",
    }
}

fn bids() -> impl Strategy<Value = Vec<Bid>> {
    let price = prop_oneof![
        100i64..10_000,
        10_000i64..1_000_000,
        1_000_000i64..100_000_000
    ];
    prop::collection::vec((0i64..3, 0i64..40, 0i64..60, price).prop_map(bid), 0..400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn q15_split_matches_the_sequential_reference(
        bids in bids(),
        shards in 1usize..=4,
        batch_size in 1usize..64,
        lsm in prop::bool::weighted(0.25),
    ) {
        prop_assert_eq!(run(&bids, shards, batch_size, lsm), reference(&bids));
    }
}
