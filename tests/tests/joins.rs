//! The reusable joins against nested-loop references, for random inputs and shard counts.

use proptest::prelude::*;
use weir::operator::{IntervalJoin, RegularJoin, WindowJoin};
use weir::window::WindowAssigner;
use weir::{Env, Timestamp, VecSource, WatermarkStrategy};
use weir_tests::multiset;

type L = (u8, Timestamp, u32); // key, time, id
type R = (u8, Timestamp, u32);

fn run<F>(left: Vec<L>, right: Vec<R>, shards: usize, f: F) -> Vec<(u32, u32)>
where
    F: weir::KeyedCoProcessFunction<u8, L, R, (L, R)>,
{
    let env = Env::builder()
        .cores(shards)
        .batch_size(8)
        .build()
        .expect("env");
    // Input times are in order per source slice, so a monotonous watermark is exact.
    let mut left = left;
    let mut right = right;
    left.sort_by_key(|r| r.1);
    right.sort_by_key(|r| r.1);
    let l = env
        .from_source_with_watermarks(
            VecSource::new(left),
            WatermarkStrategy::monotonous(|r: &L| r.1),
        )
        .key_by(|r: &L| r.0);
    let r = env
        .from_source_with_watermarks(
            VecSource::new(right),
            WatermarkStrategy::monotonous(|r: &R| r.1),
        )
        .key_by(|r: &R| r.0);
    let out = l
        .connect(&r)
        .process(f)
        .map(|(a, b): (L, R)| (a.2, b.2))
        .collect();
    env.execute().expect("job runs");
    out.take()
}

fn inputs() -> impl Strategy<Value = (Vec<L>, Vec<R>)> {
    let side = || prop::collection::vec((0u8..4, 0i64..100), 0..40);
    (side(), side()).prop_map(|(l, r)| {
        (
            l.into_iter()
                .enumerate()
                .map(|(i, (k, t))| (k, t, i as u32))
                .collect(),
            r.into_iter()
                .enumerate()
                .map(|(i, (k, t))| (k, t, 1000 + i as u32))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn regular_join_pairs_every_match((left, right) in inputs(), shards in 1usize..3) {
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0).map(move |b| (a.2, b.2))).collect();
        let got = run(left, right, shards, RegularJoin::default());
        prop_assert_eq!(multiset(got), multiset(expected));
    }

    #[test]
    fn window_join_pairs_records_of_the_same_window((left, right) in inputs(), shards in 1usize..3) {
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0 && a.1 / 10 == b.1 / 10).map(move |b| (a.2, b.2))).collect();
        let assigner = WindowAssigner::tumbling(10, 0).expect("valid");
        let got = run(left, right, shards, WindowJoin::new(assigner, |a: &L| a.1, |b: &R| b.1));
        prop_assert_eq!(multiset(got), multiset(expected));
    }

    #[test]
    fn interval_join_pairs_records_within_the_bounds((left, right) in inputs(), shards in 1usize..3) {
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0 && b.1 >= a.1 - 3 && b.1 <= a.1 + 5).map(move |b| (a.2, b.2))).collect();
        let join = IntervalJoin::new(-3, 5, |a: &L| a.1, |b: &R| b.1).expect("valid bounds");
        let got = run(left, right, shards, join);
        prop_assert_eq!(multiset(got), multiset(expected));
    }
}

#[test]
fn inverted_interval_bounds_are_refused() {
    let err = IntervalJoin::<u8, L, R, _, _>::new(5, -3, |a: &L| a.1, |b: &R| b.1).err();
    assert!(err.is_some_and(|e| e.to_string().contains("lower bound 5")));
}
