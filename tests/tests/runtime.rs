//! The runtime end to end: keyed results against a sequential reference, per-key order,
//! backpressure, parking, failures and bad input.

use std::collections::BTreeMap;
use std::time::Instant;

use proptest::prelude::*;
use weir::{Env, WeirError};
use weir_tests::multiset;

/// (key, index in the input, value)
type Rec = (u8, u32, i64);

fn make_env(shards: usize) -> Env {
    Env::builder()
        .cores(shards)
        .batch_size(7)
        .queue_capacity(2)
        .build()
        .expect("valid test configuration")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// key_by + reduce gives each key's running sums exactly as a sequential fold, for 1, 2
    /// and 4 shards: nothing lost, nothing duplicated.
    #[test]
    fn keyed_reduce_matches_sequential(
        values in prop::collection::vec((0u8..12, -1000i64..1000), 0..400),
        shards in prop::sample::select(vec![1usize, 2, 4]),
    ) {
        let input: Vec<Rec> = values.iter().enumerate().map(|(i, &(k, v))| (k, i as u32, v)).collect();
        let env = make_env(shards);
        let out = env
            .from_iter(input.clone())
            .key_by(|r: &Rec| r.0)
            .reduce(|acc, r| acc.2 += r.2)
            .collect();
        let result = env.execute().expect("job runs");
        let got = out.take();

        // Every record produced exactly one update.
        prop_assert_eq!(got.len(), input.len());
        prop_assert_eq!(result.records_in("reduce"), input.len() as u64);
        // The last update of each key is the key's total; the multiset of all totals is the
        // multiset of prefix sums in arrival order, which for a sum does not depend on order.
        let mut expected_total: BTreeMap<u8, i64> = BTreeMap::new();
        for r in &input {
            *expected_total.entry(r.0).or_default() += r.2;
        }
        let mut last_per_key: BTreeMap<u8, i64> = BTreeMap::new();
        let mut count_per_key: BTreeMap<u8, usize> = BTreeMap::new();
        for r in &got {
            last_per_key.insert(r.0, r.2);
            *count_per_key.entry(r.0).or_default() += 1;
        }
        prop_assert_eq!(&last_per_key, &expected_total);
        let expected_counts = input.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.0).or_insert(0usize) += 1;
            m
        });
        prop_assert_eq!(count_per_key, expected_counts);
    }

    /// Records of one key that left the same source shard arrive in the order they were sent.
    #[test]
    fn per_key_order_is_kept_along_each_path(
        keys in prop::collection::vec(0u8..6, 1..500),
        shards in prop::sample::select(vec![1usize, 2, 4]),
    ) {
        let n = keys.len();
        let input: Vec<Rec> = keys.iter().enumerate().map(|(i, &k)| (k, i as u32, 0)).collect();
        let env = make_env(shards);
        let out = env
            .from_iter(input)
            .key_by(|r: &Rec| r.0)
            .process(|_key: &u8, r: Rec, ctx: &mut weir::ProcessContext<'_, (u8, u32)>| ctx.emit((r.0, r.1)))
            .collect();
        env.execute().expect("job runs");
        let got = out.take();
        prop_assert_eq!(got.len(), n);
        // The source slice a record came from: VecSource splits contiguously.
        let slice_of = |i: u32| (0..shards).find(|&s| (i as usize) < n * (s + 1) / shards).unwrap_or(0);
        let mut last: BTreeMap<(u8, usize), u32> = BTreeMap::new();
        for (k, i) in got {
            if let Some(prev) = last.insert((k, slice_of(i)), i) {
                prop_assert!(prev < i, "key {} from slice {}: {} after {}", k, slice_of(i), i, prev);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A stream read by several consumers (a fan-out: all but the last read the batch in place
    /// through `push_shared`) gives each consumer exactly what it would get alone: filter, map,
    /// flat_map, a key-by exchange and a collecting sink, in any order of attachment.
    #[test]
    fn every_consumer_of_a_fan_out_sees_every_record(
        values in prop::collection::vec(-50i64..50, 0..300),
        shards in prop::sample::select(vec![1usize, 2]),
        order in Just([0usize, 1, 2, 3, 4]).prop_shuffle(),
    ) {
        let env = make_env(shards);
        let source = env.from_iter(values.clone());
        let mut outs: Vec<Option<weir::sink::CollectSink<i64>>> = vec![None, None, None, None, None];
        for &consumer in &order {
            outs[consumer] = Some(match consumer {
                0 => source.filter(|v| v % 3 == 0).collect(),
                1 => source.map(|v| v * 2).collect(),
                2 => source.flat_map(|v| if v > 0 { vec![v, -v] } else { vec![] }).collect(),
                3 => source.key_by(|v| *v).process(
                    |_k: &i64, v: i64, ctx: &mut weir::ProcessContext<'_, i64>| ctx.emit(v + 1000),
                ).collect(),
                _ => source.collect(),
            });
        }
        env.execute().expect("job runs");
        let expected: [Vec<i64>; 5] = [
            values.iter().copied().filter(|v| v % 3 == 0).collect(),
            values.iter().map(|v| v * 2).collect(),
            values.iter().filter(|&&v| v > 0).flat_map(|&v| [v, -v]).collect(),
            values.iter().map(|v| v + 1000).collect(),
            values.clone(),
        ];
        for (i, (out, want)) in outs.into_iter().zip(expected).enumerate() {
            let got = out.map(|o| o.take()).unwrap_or_default();
            prop_assert_eq!(multiset(got), multiset(want), "consumer {}", i);
        }
    }
}

#[test]
fn union_rebalance_and_broadcast_deliver_every_record() {
    let env = make_env(2);
    let a = env.from_iter(0..1000u64);
    let b = env.from_iter(1000..1500u64);
    let unioned = a.union(&b).rebalance().collect();
    let broadcast = env.from_iter(0..10u64).broadcast().collect();
    env.execute().expect("job runs");
    assert_eq!(multiset(unioned.take()), multiset(0..1500u64));
    // Every shard gets every record.
    assert_eq!(
        multiset(broadcast.take()),
        multiset((0..10u64).chain(0..10))
    );
}

#[test]
fn flat_map_map_filter_aggregate_compose() {
    #[derive(Clone)]
    struct Avg;
    impl weir::AggregateFunction<i64> for Avg {
        type Acc = (i64, i64);
        type Out = i64;
        fn create_accumulator(&self) -> (i64, i64) {
            (0, 0)
        }
        fn add(&mut self, acc: &mut (i64, i64), v: i64) {
            acc.0 += v;
            acc.1 += 1;
        }
        fn get_result(&self, acc: &(i64, i64)) -> i64 {
            acc.0 / acc.1
        }
        fn merge(&self, acc: &mut (i64, i64), other: (i64, i64)) {
            acc.0 += other.0;
            acc.1 += other.1;
        }
    }
    let env = make_env(2);
    let out = env
        .from_iter(vec!["1 2 3", "4 5", "x 6"])
        .flat_map(|line: &str| line.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.parse::<i64>().is_ok())
        .map(|w| w.parse::<i64>().unwrap_or(0))
        .key_by(|v| v % 2)
        .aggregate(Avg)
        .collect();
    env.execute().expect("job runs");
    let mut last = BTreeMap::new();
    for (k, avg) in out.take() {
        last.insert(k, avg);
    }
    // Odd: 1, 3, 5 → 3; even: 2, 4, 6 → 4.
    assert_eq!(last, BTreeMap::from([(0, 4), (1, 3)]));
}

#[test]
fn slow_consumer_backpressures_with_bounded_memory() {
    let capacity = 2;
    let env = Env::builder()
        .cores(2)
        .batch_size(16)
        .queue_capacity(capacity)
        .build()
        .expect("valid configuration");
    let n = 20_000u64;
    let out = env
        .from_iter(0..n)
        .key_by(|v| *v % 64)
        .process(
            |_k: &u64, v: u64, ctx: &mut weir::ProcessContext<'_, u64>| {
                // A slow consumer: the fast source must wait for it, not buffer without bound.
                if v.is_multiple_of(16) {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                ctx.emit(v)
            },
        )
        .collect();
    let result = env.execute().expect("job runs");
    assert_eq!(multiset(out.take()), multiset(0..n));
    assert!(
        result.max_queue_len <= capacity,
        "queue held {} > {capacity}",
        result.max_queue_len
    );
    assert!(
        result.max_queue_len == capacity,
        "the queue never filled: no backpressure was exercised"
    );
    // The producer stops as soon as one batch per destination is held back (plus end-of-input).
    assert!(
        result.max_held <= 2,
        "producer held {} batches behind a full queue",
        result.max_held
    );
}

#[test]
fn operator_panic_fails_the_job_naming_operator_and_shard() {
    let env = make_env(2);
    env.from_iter(0..10_000u64)
        .key_by(|v| *v)
        .partitioned()
        .map(|v| {
            if v == 4242 {
                panic!("bad record {v}");
            }
            v
        })
        .name("fragile")
        .count();
    let started = Instant::now();
    let err = env.execute().expect_err("the job must fail");
    match &err {
        WeirError::OperatorPanicked {
            operator,
            shard,
            message,
        } => {
            assert_eq!(operator, "fragile");
            assert!(shard < &2);
            assert!(message.contains("bad record 4242"), "message: {message}");
        }
        other => panic!("expected OperatorPanicked, got {other}"),
    }
    assert!(
        started.elapsed().as_secs() < 30,
        "failure took too long to surface"
    );
}

#[test]
fn bad_configuration_and_graphs_are_refused_with_clear_errors() {
    let zero = Env::builder().cores(0).build().err().map(|e| e.to_string());
    assert_eq!(
        zero.as_deref(),
        Some("invalid configuration: cores must be at least 1")
    );

    let too_few_groups = Env::builder().cores(4).max_parallelism(2).build();
    assert!(matches!(too_few_groups, Err(WeirError::Config(m)) if m.contains("max_parallelism")));

    let no_batch = Env::builder().cores(1).batch_size(0).build();
    assert!(matches!(no_batch, Err(WeirError::Config(m)) if m.contains("batch_size")));

    let env = make_env(1);
    let _dangling = env.from_iter(0..10u64).map(|v| v + 1);
    let no_sink = env.execute();
    assert!(matches!(no_sink, Err(WeirError::Graph(m)) if m.contains("no sink")));

    let env_a = make_env(1);
    let env_b = make_env(1);
    env_a
        .from_iter(0..3u64)
        .union(&env_b.from_iter(0..3u64))
        .count();
    let mixed = env_a.execute();
    assert!(matches!(mixed, Err(WeirError::Graph(m)) if m.contains("different environments")));
}

#[test]
fn more_shards_than_cpus_still_runs_unpinned() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = make_env(cpus + 2);
    let out = env
        .from_iter(0..100u64)
        .key_by(|v| *v)
        .reduce(|a, b| *a += b)
        .count();
    let result = env.execute().expect("job runs");
    assert!(!result.pinned);
    assert_eq!(result.shards, cpus + 2);
    assert_eq!(out.count(), 100);
}

#[test]
fn file_sink_writes_one_csv_with_one_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.csv");
    let env = make_env(2);
    env.from_iter(0..100i64)
        .map(|v| (v, format!("v,{v}")))
        .sink(weir::FileSink::new(
            &path,
            weir::Csv::with_header("n,label"),
        ));
    env.execute().expect("job runs");
    let text = std::fs::read_to_string(&path).expect("output written");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("n,label"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 100);
    assert!(rows.contains(&"7,\"v,7\""));

    let missing_dir = dir.path().join("no/such/dir/out.csv");
    let env = make_env(1);
    env.from_iter(0..1i64).sink(weir::FileSink::new(
        &missing_dir,
        weir::Csv::<i64>::without_header(),
    ));
    let err = env.execute().expect_err("cannot create the file");
    assert!(
        err.to_string().contains("no/such/dir"),
        "error names the path: {err}"
    );
}

/// Sums per key within each input batch and emits the sums at the batch's end: a combiner
/// before an exchange, through the non-keyed `ProcessFunction::on_batch_end`.
#[derive(Clone, Default)]
struct BatchSums {
    sums: BTreeMap<u8, (i64, usize)>,
}

impl weir::ProcessFunction<Rec, (u8, i64, usize)> for BatchSums {
    fn process(&mut self, r: Rec, _ctx: &mut weir::ProcessContext<'_, (u8, i64, usize)>) {
        let e = self.sums.entry(r.0).or_default();
        e.0 += r.2;
        e.1 += 1;
    }

    fn on_batch_end(&mut self, ctx: &mut weir::ProcessContext<'_, (u8, i64, usize)>) {
        for (k, (sum, n)) in std::mem::take(&mut self.sums) {
            ctx.emit((k, sum, n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A non-keyed function combining per batch, then keyed totals: every key's total equals
    /// the sequential sum, and no combined record spans more records than one batch holds
    /// (nothing waits across batches).
    #[test]
    fn batch_end_combining_before_an_exchange_keeps_every_total(
        values in prop::collection::vec((0u8..6, -1000i64..1000), 0..300),
        shards in prop::sample::select(vec![1usize, 2]),
    ) {
        let input: Vec<Rec> = values.iter().enumerate().map(|(i, &(k, v))| (k, i as u32, v)).collect();
        let env = make_env(shards);
        let partial = env.from_iter(input.clone()).process(BatchSums::default());
        let widest = partial.map(|p: (u8, i64, usize)| p.2).collect();
        let totals = partial
            .key_by(|p: &(u8, i64, usize)| p.0)
            .reduce(|acc, p| {
                acc.1 += p.1;
                acc.2 += p.2;
            })
            .collect();
        env.execute().expect("job runs");
        let mut last: BTreeMap<u8, (i64, usize)> = BTreeMap::new();
        for (k, sum, n) in totals.take() {
            last.insert(k, (sum, n));
        }
        let mut expected: BTreeMap<u8, (i64, usize)> = BTreeMap::new();
        for r in &input {
            let e = expected.entry(r.0).or_default();
            e.0 += r.2;
            e.1 += 1;
        }
        prop_assert_eq!(last, expected);
        // make_env's batches hold 7 records.
        prop_assert!(widest.take().iter().all(|&n| n <= 7));
    }
}
