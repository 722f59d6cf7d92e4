//! The windowed queries (q5, q7, q11) on the engine against plain sequential computations
//! over the same generated events, at 1 and 2 shards and at rates where windows matter.

use std::collections::BTreeMap;

use weir::nexmark::{Bid, Event, Generator, NexmarkConfig};
use weir_bench::queries::Query;
use weir_tests::{multiset, quoted, run_query, run_query_on, test_backend, timestamp};

fn bids(config: NexmarkConfig, events: u64) -> Vec<Bid> {
    let generator = Generator::new(config).expect("valid generator");
    (0..events)
        .filter_map(|n| match generator.event(n) {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn q5_reference(bids: &[Bid]) -> Vec<String> {
    // (window start, auction) -> count, over sliding windows of 10 s every 2 s.
    let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for b in bids {
        let last_start = b.date_time - b.date_time.rem_euclid(2000);
        let mut start = last_start;
        while start > b.date_time - 10_000 {
            *counts.entry((start, b.auction)).or_default() += 1;
            start -= 2000;
        }
    }
    let mut max: BTreeMap<i64, i64> = BTreeMap::new();
    for (&(w, _), &c) in &counts {
        let m = max.entry(w).or_default();
        *m = (*m).max(c);
    }
    counts
        .iter()
        .filter(|((w, _), c)| max.get(w) == Some(c))
        .map(|((_, a), c)| format!("{a},{c}"))
        .collect()
}

fn q7_reference(bids: &[Bid]) -> Vec<String> {
    let mut max: BTreeMap<i64, i64> = BTreeMap::new(); // window end -> max price
    for b in bids {
        let end = b.date_time - b.date_time.rem_euclid(10_000) + 10_000;
        let m = max.entry(end).or_insert(i64::MIN);
        *m = (*m).max(b.price);
    }
    let mut rows = Vec::new();
    for (&end, &m) in &max {
        for b in bids {
            if b.price == m && b.date_time >= end - 10_000 && b.date_time <= end {
                rows.push(format!(
                    "{},{},{},{},{}",
                    b.auction,
                    b.price,
                    b.bidder,
                    timestamp(b.date_time),
                    quoted(b.extra)
                ));
            }
        }
    }
    rows
}

fn q11_reference(bids: &[Bid]) -> Vec<String> {
    let mut by_bidder: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        by_bidder.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut rows = Vec::new();
    for (bidder, mut times) in by_bidder {
        times.sort_unstable();
        let mut start = times[0];
        let mut last = times[0];
        let mut count = 0;
        for t in times {
            if t - last > 10_000 {
                rows.push(format!(
                    "{bidder},{count},{},{}",
                    timestamp(start),
                    timestamp(last + 10_000)
                ));
                start = t;
                count = 0;
            }
            last = t;
            count += 1;
        }
        rows.push(format!(
            "{bidder},{count},{},{}",
            timestamp(start),
            timestamp(last + 10_000)
        ));
    }
    rows
}

#[test]
fn windowed_queries_match_the_sequential_reference() {
    for (event_rate, events) in [(10_000_000, 20_000), (1000, 40_000), (20, 4_000)] {
        let config = NexmarkConfig {
            first_event_rate: event_rate,
            ..NexmarkConfig::default()
        };
        let all_bids = bids(config, events);
        for (query, reference) in [
            (Query::Q5, q5_reference as fn(&[Bid]) -> Vec<String>),
            (Query::Q7, q7_reference),
            (Query::Q11, q11_reference),
        ] {
            let expected = reference(&all_bids);
            assert!(
                !expected.is_empty(),
                "{query:?} at rate {event_rate} selects something"
            );
            for shards in [1, 2] {
                let got = run_query(query, config, events, shards);
                assert_eq!(
                    multiset(got),
                    multiset(expected.iter().cloned()),
                    "{query:?} at {shards} shards, rate {event_rate}"
                );
            }
        }
    }
}

/// On the LSM backend q5's per-auction window counts are keyed state (dropped by timers) and
/// q11's sessions live in the store; q7's per-window partials stay in the functions. Small
/// memtables, so the stores flush to SSTables while the job runs. At 100 events/s hot auctions
/// bid in more panes than one window holds, so dropping counts of a still-open window shows.
#[test]
fn windowed_queries_on_the_lsm_backend_match_the_sequential_reference() {
    for (event_rate, events) in [(10_000_000, 20_000), (1000, 40_000), (100, 20_000)] {
        let config = NexmarkConfig {
            first_event_rate: event_rate,
            ..NexmarkConfig::default()
        };
        let all_bids = bids(config, events);
        for (query, reference) in [
            (Query::Q5, q5_reference as fn(&[Bid]) -> Vec<String>),
            (Query::Q7, q7_reference),
        ] {
            let expected = reference(&all_bids);
            for shards in [1, 2] {
                let dir = tempfile::tempdir().expect("tempdir");
                let backend = test_backend(true, dir.path(), 64 << 10);
                let got = run_query_on(query, config, events, shards, backend);
                assert_eq!(
                    multiset(got),
                    multiset(expected.iter().cloned()),
                    "{query:?} on LSM at {shards} shards, rate {event_rate}"
                );
            }
        }
    }
}
