//! Two-phase (local-global) window aggregation, `WindowedStream::aggregate_two_phase`:
//! the same results as a sequential reference for skewed keys, out-of-order timestamps and
//! any shard count; the same firings, in the same order, as the one-phase operator when
//! records are late; and exact results when a savepoint taken at 2 shards resumes at 1 or 3.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use weir::checkpoint::CheckpointConfig;
use weir::operator::WindowResult;
use weir::window::WindowAssigner;
use weir::{Env, Timestamp, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;
use weir_tests::committed_window_counts;

type Rec = (u8, Timestamp);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
}

fn assigner(kind: Kind) -> WindowAssigner {
    match kind {
        Kind::Tumbling(size) => WindowAssigner::tumbling(size, 0),
        Kind::Sliding(size, slide) => WindowAssigner::sliding(size, slide, 0),
    }
    .expect("valid window")
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..20).prop_map(Kind::Tumbling),
        (1i64..20, 1i64..20).prop_filter_map("slide <= size", |(a, b)| (b <= a)
            .then_some(Kind::Sliding(a, b))),
    ]
}

/// (key, window start, window last ms) -> count, computed the plain way.
fn reference(kind: Kind, input: &[Rec]) -> BTreeMap<(u8, i64, i64), i64> {
    let (size, slide) = match kind {
        Kind::Tumbling(size) => (size, size),
        Kind::Sliding(size, slide) => (size, slide),
    };
    let mut out = BTreeMap::new();
    for &(k, t) in input {
        let mut start = t - t.rem_euclid(slide);
        while start > t - size {
            *out.entry((k, start, start + size - 1)).or_insert(0) += 1;
            start -= slide;
        }
    }
    out
}

/// Keys with skew: about half of all records carry key 0 (the hot key). Time rises by 1 ms
/// every two records, each timestamp jittered back by up to `DISORDER`: out of order, but
/// never behind a watermark that trails the maximum by `DISORDER`.
fn skewed_records() -> impl Strategy<Value = Vec<Rec>> {
    prop::collection::vec((prop_oneof![Just(0u8), 0u8..6], 0i64..=DISORDER), 1..200).prop_map(
        |raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (k, back))| (k, i as i64 / 2 - back))
                .collect()
        },
    )
}

const DISORDER: i64 = 19;

/// Runs a window count, one- or two-phase, and returns its firings in emission order.
fn run(
    kind: Kind,
    input: &[Rec],
    shards: usize,
    out_of_order: u64,
    lateness: u64,
    two_phase: bool,
) -> Vec<(u8, i64, i64, i64)> {
    let env = Env::builder()
        .cores(shards)
        .batch_size(3)
        .build()
        .expect("env");
    let windowed = env
        .from_source_with_watermarks(
            VecSource::new(input.to_vec()),
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(out_of_order),
                |r: &Rec| r.1,
            ),
        )
        .key_by(|r: &Rec| r.0)
        .window(assigner(kind), |r: &Rec| r.1)
        .allowed_lateness(Duration::from_millis(lateness));
    let results = if two_phase {
        windowed.aggregate_two_phase(Count)
    } else {
        windowed.aggregate(Count)
    };
    let fired = results
        .map(|r: WindowResult<u8, i64>| (r.key, r.start(), r.max_timestamp(), r.value))
        .collect();
    env.execute().expect("job runs");
    fired.take()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Skewed keys, timestamps out of order within the watermark's bound (nothing is late),
    /// 1–4 shards: every (key, window) fires once with the reference count.
    #[test]
    fn two_phase_matches_the_sequential_reference(
        kind in kinds(),
        input in skewed_records(),
        shards in 1usize..5,
    ) {
        let fired = run(kind, &input, shards, DISORDER as u64, 0, true);
        let got: BTreeMap<(u8, i64, i64), i64> =
            fired.iter().map(|&(k, s, e, n)| ((k, s, e), n)).collect();
        prop_assert_eq!(fired.len(), got.len(), "a window fired twice");
        prop_assert_eq!(got, reference(kind, &input));
    }

    /// With late records and allowed lateness (one shard, so lateness is deterministic):
    /// exactly the one-phase operator's firings and re-firings, in the same order.
    #[test]
    fn two_phase_equals_one_phase_with_late_records(
        kind in kinds(),
        input in prop::collection::vec((prop_oneof![Just(0u8), 0u8..4], -50i64..150), 1..150),
        out_of_order in 0u64..30,
        lateness in prop_oneof![Just(0u64), 0u64..40],
    ) {
        let one = run(kind, &input, 1, out_of_order, lateness, false);
        let two = run(kind, &input, 1, out_of_order, lateness, true);
        prop_assert_eq!(two, one);
    }
}

// Savepoint at 2 shards, resumed at 1 and 3.

type Row = (u32, i64); // (key, timestamp)

const RECORDS: i64 = 60_000;

/// Half the records on key 0 (hot), the rest over 49 keys; time rises by 1 ms every 20.
fn input() -> Vec<Row> {
    (0..RECORDS)
        .map(|i| {
            let key = if i % 2 == 0 {
                0
            } else {
                (i * 7 % 49 + 1) as u32
            };
            (key, i / 20)
        })
        .collect()
}

/// (key, window start) -> count for 100 ms windows sliding by 50.
fn expected() -> BTreeMap<(u32, i64), i64> {
    let mut out = BTreeMap::new();
    for (k, t) in input() {
        let mut start = t - t.rem_euclid(50);
        while start > t - 100 {
            *out.entry((k, start)).or_insert(0) += 1;
            start -= 50;
        }
    }
    out
}

fn run_checkpointed(
    cores: usize,
    config: CheckpointConfig,
    output: &Path,
    stop_after: Option<Duration>,
) -> weir::JobResult {
    let builder = Env::builder()
        .cores(cores)
        .batch_size(64)
        .checkpointing(config);
    weir_tests::stop_with_savepoint_after(&builder, stop_after);
    let env = builder.build().expect("env");
    let counts = env
        .from_source_with_watermarks(
            VecSource::new(input()),
            WatermarkStrategy::monotonous(|r: &Row| r.1),
        )
        // Slow the source down so the savepoint lands mid-run.
        .map(|r: Row| {
            if r.0 == 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            r
        })
        .key_by(|r: &Row| r.0)
        .window(
            WindowAssigner::sliding(100, 50, 0).expect("valid"),
            |r: &Row| r.1,
        )
        .aggregate_two_phase(Count);
    weir_tests::execute_writing_window_counts(&env, counts, output)
}

/// The combiner flushes its partials at the barrier, so the savepoint holds only the merging
/// stage's keyed state: resumed at 1 or 3 shards, every window is committed once, exactly.
#[test]
fn two_phase_savepoint_at_2_shards_resumes_at_1_and_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want = expected();
    let first = dir.path().join("first.csv");
    let stopped = run_checkpointed(
        2,
        CheckpointConfig::new(dir.path().join("chk"), Duration::from_secs(3600)),
        &first,
        Some(Duration::from_millis(250)),
    );
    let savepoint = stopped
        .checkpoints
        .and_then(|s| s.savepoints.first().cloned())
        .expect("a savepoint was taken");
    let before = committed_window_counts(&first).len();
    assert!(
        before > 0 && before < want.len(),
        "stopped mid-run ({before} of {} windows)",
        want.len()
    );
    for cores in [1, 3] {
        let out = dir.path().join(format!("resumed-{cores}.csv"));
        std::fs::copy(&first, &out).expect("copy first part");
        let mut config = CheckpointConfig::new(
            dir.path().join(format!("resume-{cores}")),
            Duration::from_secs(3600),
        );
        config.restore_from = Some(savepoint.clone());
        run_checkpointed(cores, config, &out, None);
        let got = committed_window_counts(&out);
        let wrong: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(k) != Some(v))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty() && got.len() == want.len(),
            "resumed at {cores} shard(s): {} windows, want {}; first wrong: {wrong:?}",
            got.len(),
            want.len()
        );
    }
}
