//! The reusable joins against nested-loop references, for random inputs, shard counts and
//! both state backends (on the LSM one the joins keep their rows in keyed state and fire on
//! timers).

use proptest::prelude::*;
use weir::operator::{IntervalJoin, RegularJoin, WindowJoin};
use weir::window::WindowAssigner;
use weir::{Env, Timestamp, VecSource, WatermarkStrategy};
use weir_tests::multiset;

type L = (u8, Timestamp, u32); // key, time, id
type R = (u8, Timestamp, u32);

fn run<F>(left: Vec<L>, right: Vec<R>, shards: usize, lsm: bool, f: F) -> Vec<(u32, u32)>
where
    F: weir::KeyedCoProcessFunction<u8, L, R, (L, R)>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    // 4 KiB memtables: the stores flush and compact while the job runs.
    let backend = weir_tests::test_backend(lsm, dir.path(), 4096);
    let env = Env::builder()
        .cores(shards)
        .batch_size(8)
        .state_backend(backend)
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
    fn regular_join_pairs_every_match((left, right) in inputs(), shards in 1usize..3, lsm in any::<bool>()) {
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0).map(move |b| (a.2, b.2))).collect();
        let got = run(left, right, shards, lsm, RegularJoin::default());
        prop_assert_eq!(multiset(got), multiset(expected));
    }

    #[test]
    fn window_join_pairs_records_of_the_same_window((left, right) in inputs(), shards in 1usize..3, lsm in any::<bool>()) {
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0 && a.1 / 10 == b.1 / 10).map(move |b| (a.2, b.2))).collect();
        let assigner = WindowAssigner::tumbling(10, 0).expect("valid");
        let got = run(left, right, shards, lsm, WindowJoin::new(assigner, |a: &L| a.1, |b: &R| b.1));
        prop_assert_eq!(multiset(got), multiset(expected));
    }

    /// Sliding windows (size 10, slide 5): a pair meets once per window both records are in.
    #[test]
    fn sliding_window_join_pairs_once_per_shared_window((left, right) in inputs(), shards in 1usize..3, lsm in any::<bool>()) {
        let windows = |t: i64| { let s = t - t.rem_euclid(5); [s - 5, s] };
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0).flat_map(move |b| {
            let shared = windows(a.1).iter().filter(|w| windows(b.1).contains(w)).count();
            std::iter::repeat_n((a.2, b.2), shared)
        })).collect();
        let assigner = WindowAssigner::sliding(10, 5, 0).expect("valid");
        let got = run(left, right, shards, lsm, WindowJoin::new(assigner, |a: &L| a.1, |b: &R| b.1));
        prop_assert_eq!(multiset(got), multiset(expected));
    }

    #[test]
    fn interval_join_pairs_records_within_the_bounds((left, right) in inputs(), shards in 1usize..3, lsm in any::<bool>()) {
        let expected: Vec<(u32, u32)> = left.iter().flat_map(|a| right.iter().filter(move |b| b.0 == a.0 && b.1 >= a.1 - 3 && b.1 <= a.1 + 5).map(move |b| (a.2, b.2))).collect();
        let join = IntervalJoin::new(-3, 5, |a: &L| a.1, |b: &R| b.1).expect("valid bounds");
        let got = run(left, right, shards, lsm, join);
        prop_assert_eq!(multiset(got), multiset(expected));
    }
}

#[test]
fn inverted_interval_bounds_are_refused() {
    let err = IntervalJoin::<u8, L, R, _, _>::new(5, -3, |a: &L| a.1, |b: &R| b.1).err();
    assert!(err.is_some_and(|e| e.to_string().contains("lower bound 5")));
}

/// Registers an event-time timer per record (left: time + 10, right: time + 3) and emits
/// each firing as (key, timestamp).
#[derive(Clone)]
struct TimerEcho;

impl weir::KeyedCoProcessFunction<u8, L, R, (u8, Timestamp)> for TimerEcho {
    fn process_left(&mut self, _: &u8, a: L, ctx: &mut weir::ProcessContext<'_, (u8, Timestamp)>) {
        ctx.register_event_time_timer(a.1 + 10);
    }
    fn process_right(&mut self, _: &u8, b: R, ctx: &mut weir::ProcessContext<'_, (u8, Timestamp)>) {
        ctx.register_event_time_timer(b.1 + 3);
    }
    fn on_timer(
        &mut self,
        key: &u8,
        t: Timestamp,
        ctx: &mut weir::ProcessContext<'_, (u8, Timestamp)>,
    ) {
        assert_eq!(
            ctx.timer_domain(),
            Some(weir::window::TimeDomain::EventTime)
        );
        ctx.emit((*key, t));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Co-process timers fire once per (key, time) however often registered, every one by
    /// the end of input, and in time order per key.
    #[test]
    fn co_process_timers_fire_once_each_in_order((left, right) in inputs(), shards in 1usize..3) {
        let mut expected: Vec<(u8, Timestamp)> = left.iter().map(|a| (a.0, a.1 + 10))
            .chain(right.iter().map(|b| (b.0, b.1 + 3))).collect();
        expected.sort_unstable();
        expected.dedup();
        let env = Env::builder().cores(shards).batch_size(8).build().expect("env");
        let mut left = left;
        let mut right = right;
        left.sort_by_key(|r| r.1);
        right.sort_by_key(|r| r.1);
        let l = env
            .from_source_with_watermarks(VecSource::new(left), WatermarkStrategy::monotonous(|r: &L| r.1))
            .key_by(|r: &L| r.0);
        let r = env
            .from_source_with_watermarks(VecSource::new(right), WatermarkStrategy::monotonous(|r: &R| r.1))
            .key_by(|r: &R| r.0);
        let fired = l.connect(&r).process(TimerEcho).collect();
        env.execute().expect("job runs");
        let fired = fired.take();
        for key in 0u8..4 {
            let times: Vec<Timestamp> = fired.iter().filter(|f| f.0 == key).map(|f| f.1).collect();
            prop_assert!(times.is_sorted(), "key {}: {:?}", key, times);
        }
        let mut got = fired;
        got.sort_unstable();
        prop_assert_eq!(got, expected);
    }
}
