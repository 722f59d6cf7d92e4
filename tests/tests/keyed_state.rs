//! Keyed process functions with keyed state and event-time timers, end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::state::{
    KeyedStateStore, ListState, ListStateDescriptor, StateError, ValueState, ValueStateDescriptor,
};
use weir::{Env, KeyedProcessFunction, ProcessContext, Timestamp, VecSource, WatermarkStrategy};

/// Counts records per key in a `ValueState` and keeps the values in a `ListState`; emits
/// (key, count, sum of the list) after each record.
#[derive(Clone, Default)]
struct CountAndList {
    count: Option<ValueState<u64>>,
    seen: Option<ListState<i64>>,
}

impl KeyedProcessFunction<u8, (u8, i64), (u8, u64, i64)> for CountAndList {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.count = Some(store.value_state(&ValueStateDescriptor::new("count"))?);
        self.seen = Some(store.list_state(&ListStateDescriptor::new("seen"))?);
        Ok(())
    }

    fn process(&mut self, key: &u8, r: (u8, i64), ctx: &mut ProcessContext<'_, (u8, u64, i64)>) {
        let (Some(count), Some(seen)) = (self.count, self.seen) else {
            return;
        };
        let Ok(store) = ctx.state() else { return };
        let n = count.get(store).ok().flatten().unwrap_or(0) + 1;
        if count.set(store, &n).is_err() || seen.add(store, &r.1).is_err() {
            return;
        }
        let sum: i64 = seen.get(store).map(|v| v.iter().sum()).unwrap_or(i64::MIN);
        ctx.emit((*key, n, sum));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Keyed state is scoped per key and survives across batches and shards' interleaving:
    /// the final (count, sum) of each key equals a sequential fold, on either state backend
    /// (the LSM one with memtables small enough to flush during the job).
    #[test]
    fn keyed_state_matches_a_sequential_fold(
        input in prop::collection::vec((0u8..10, -100i64..100), 1..300),
        shards in prop::sample::select(vec![1usize, 2, 3]),
        lsm in any::<bool>(),
    ) {
        let state_dir = tempfile::tempdir().expect("tempdir");
        let backend = weir_tests::test_backend(lsm, state_dir.path(), 4096);
        let env = Env::builder().cores(shards).batch_size(5).state_backend(backend).build().expect("env");
        let out = env.from_iter(input.clone()).key_by(|r: &(u8, i64)| r.0).process(CountAndList::default()).collect();
        env.execute().expect("job runs");
        let mut last: BTreeMap<u8, (u64, i64)> = BTreeMap::new();
        for (k, n, sum) in out.take() {
            let e = last.entry(k).or_insert((0, 0));
            if n > e.0 { *e = (n, sum); }
        }
        let mut expected: BTreeMap<u8, (u64, i64)> = BTreeMap::new();
        for (k, v) in input {
            let e = expected.entry(k).or_insert((0, 0));
            e.0 += 1;
            e.1 += v;
        }
        prop_assert_eq!(last, expected);
        if lsm {
            let left: Vec<_> = std::fs::read_dir(state_dir.path()).expect("state dir").collect();
            prop_assert!(left.is_empty(), "the run removes its LSM working directory");
        }
    }
}

/// Registers a timer 10 ms after every record (twice for even values, to test dedup); the
/// timer emits (key, time).
#[derive(Clone, Default)]
struct Remind;

impl KeyedProcessFunction<u8, (u8, Timestamp), (u8, Timestamp)> for Remind {
    fn process(
        &mut self,
        _key: &u8,
        r: (u8, Timestamp),
        ctx: &mut ProcessContext<'_, (u8, Timestamp)>,
    ) {
        ctx.register_event_time_timer(r.1 + 10);
        if r.1 % 2 == 0 {
            ctx.register_event_time_timer(r.1 + 10);
        }
        if r.1 == 7 {
            // Registered and cancelled: must never fire.
            ctx.register_event_time_timer(1_000_000);
            ctx.delete_event_time_timer(1_000_000);
        }
    }

    fn on_timer(
        &mut self,
        key: &u8,
        timestamp: Timestamp,
        ctx: &mut ProcessContext<'_, (u8, Timestamp)>,
    ) {
        assert!(
            ctx.current_watermark().is_some_and(|w| w >= timestamp),
            "fired early"
        );
        ctx.emit((*key, timestamp));
    }
}

#[test]
fn timers_fire_in_order_deduplicated_and_at_end_of_input() {
    let input: Vec<(u8, Timestamp)> = (0..200).map(|t| ((t % 3) as u8, t)).collect();
    let env = Env::builder().cores(1).batch_size(4).build().expect("env");
    let strategy =
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |r: &(u8, Timestamp)| r.1);
    let out = env
        .from_source_with_watermarks(VecSource::new(input.clone()), strategy)
        .key_by(|r: &(u8, Timestamp)| r.0)
        .process(Remind)
        .collect();
    env.execute().expect("job runs");
    let fired = out.take();
    // One firing per record (deduplicated), the last ones at end of input.
    let expected: Vec<(u8, Timestamp)> = input.iter().map(|(k, t)| (*k, t + 10)).collect();
    assert_eq!(fired.len(), expected.len());
    let mut sorted = expected.clone();
    sorted.sort_by_key(|(k, t)| (*t, *k));
    // In timestamp order on the one shard.
    assert_eq!(fired, sorted);
    assert!(!fired.iter().any(|(_, t)| *t == 1_000_000));
}

/// Registers a processing-time timer 30 ms after the first record of each key.
#[derive(Clone, Default)]
struct Later {
    seen: std::collections::BTreeSet<u8>,
}

impl KeyedProcessFunction<u8, weir::nexmark::Event, (u8, bool)> for Later {
    fn process(
        &mut self,
        key: &u8,
        _e: weir::nexmark::Event,
        ctx: &mut ProcessContext<'_, (u8, bool)>,
    ) {
        if self.seen.insert(*key) {
            ctx.register_processing_time_timer(weir::time::wall_clock_ms() + 30);
        }
    }

    fn on_timer(&mut self, key: &u8, _t: Timestamp, ctx: &mut ProcessContext<'_, (u8, bool)>) {
        let processing = ctx.timer_domain() == Some(weir::window::TimeDomain::ProcessingTime);
        // Fired before end of input: the watermark is not yet the final one.
        let before_end = ctx.current_watermark().is_some_and(|w| w < i64::MAX);
        ctx.emit((*key, processing && before_end));
    }
}

#[test]
fn processing_time_timers_fire_while_the_job_runs() {
    use weir::nexmark::{Event, NexmarkConfig};
    use weir::source::nexmark::NexmarkSource;
    let env = Env::builder().cores(1).build().expect("env");
    // 100 events/s of event time: the watermark moves with every batch.
    let config = NexmarkConfig {
        first_event_rate: 100,
        ..NexmarkConfig::default()
    };
    let source = NexmarkSource::new(config, 400)
        .and_then(|s| s.with_rate(1000))
        .expect("valid source");
    let strategy = WatermarkStrategy::monotonous(|e: &Event| e.date_time());
    let out = env
        .from_source_with_watermarks(source, strategy)
        .key_by(|e: &Event| (e.date_time() / 10 % 3) as u8)
        .process(Later::default())
        .collect();
    env.execute().expect("job runs");
    let fired = out.take();
    assert_eq!(fired.len(), 3, "one timer per key: {fired:?}");
    assert!(
        fired.iter().all(|(_, ok)| *ok),
        "fired on processing time before the end: {fired:?}"
    );
}

/// Fails on purpose at the record 13, through `ctx.fail`.
#[derive(Clone, Default)]
struct FailsAt13;

impl KeyedProcessFunction<u8, (u8, i64), i64> for FailsAt13 {
    fn process(&mut self, _key: &u8, r: (u8, i64), ctx: &mut ProcessContext<'_, i64>) {
        if r.1 == 13 {
            ctx.fail(format!("record {} is unlucky", r.1));
            return;
        }
        ctx.emit(r.1);
    }
}

#[test]
fn ctx_fail_stops_the_job_with_the_operators_error() {
    let env = Env::builder().cores(2).build().expect("env");
    let _ = env
        .from_iter((0..100i64).map(|i| ((i % 5) as u8, i)))
        .key_by(|r: &(u8, i64)| r.0)
        .process(FailsAt13)
        .collect();
    match env.execute() {
        Err(weir::WeirError::OperatorFailed {
            operator, message, ..
        }) => {
            assert_eq!(operator, "process");
            assert_eq!(message, "record 13 is unlucky");
        }
        other => panic!("expected the operator's failure, got {other:?}"),
    }
}
