//! Windows of every kind against a sequential reference, for random timestamped input,
//! random shard counts and both state backends: each (key, window) count must match exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::operator::WindowResult;
use weir::window::WindowAssigner;
use weir::{Env, Timestamp, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;
use weir_tests::GeneralPath;

type Rec = (u8, Timestamp);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
    Global,
}

fn assigner(kind: Kind) -> WindowAssigner {
    match kind {
        Kind::Tumbling(size) => WindowAssigner::tumbling(size, 0),
        Kind::Sliding(size, slide) => WindowAssigner::sliding(size, slide, 0),
        Kind::Session(gap) => WindowAssigner::session(gap),
        Kind::Global => Ok(WindowAssigner::global()),
    }
    .expect("valid window")
}

/// (key, window start, window last ms) -> count, computed the plain way.
fn reference(kind: Kind, input: &[Rec]) -> BTreeMap<(u8, i64, i64), i64> {
    let mut out = BTreeMap::new();
    match kind {
        Kind::Tumbling(size) | Kind::Sliding(size, _) => {
            let slide = match kind {
                Kind::Sliding(_, slide) => slide,
                _ => size,
            };
            for &(k, t) in input {
                let mut start = t - t.rem_euclid(slide);
                while start > t - size {
                    *out.entry((k, start, start + size - 1)).or_insert(0) += 1;
                    start -= slide;
                }
            }
        }
        Kind::Session(gap) => {
            let mut by_key: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
            for &(k, t) in input {
                by_key.entry(k).or_default().push(t);
            }
            for (k, mut ts) in by_key {
                ts.sort_unstable();
                let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
                for t in ts {
                    if t - last > gap {
                        out.insert((k, start, last + gap), n);
                        start = t;
                        n = 0;
                    }
                    last = t;
                    n += 1;
                }
                out.insert((k, start, last + gap), n);
            }
        }
        Kind::Global => {
            for &(k, _) in input {
                *out.entry((k, i64::MIN, i64::MAX)).or_insert(0) += 1;
            }
        }
    }
    out
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..20).prop_map(Kind::Tumbling),
        (1i64..20, 1i64..20).prop_filter_map("slide <= size", |(a, b)| (b <= a)
            .then_some(Kind::Sliding(a, b))),
        (1i64..15).prop_map(Kind::Session),
        Just(Kind::Global),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_the_sequential_reference(
        kind in kinds(),
        mut input in prop::collection::vec((0u8..4, -50i64..150), 1..150),
        shards in 1usize..4,
        lsm in any::<bool>(),
    ) {
        // Sorted input with a monotonous watermark: nothing is late, so every record counts.
        input.sort_by_key(|r| r.1);
        let dir = tempfile::tempdir().expect("tempdir");
        // 4 KiB memtables: the window stores flush and compact while the job runs.
        let backend = weir_tests::test_backend(lsm, dir.path(), 4096);
        let env = Env::builder()
            .cores(shards)
            .batch_size(4)
            .state_backend(backend)
            .build()
            .expect("env");
        let out = env
            .from_source_with_watermarks(VecSource::new(input.clone()), WatermarkStrategy::monotonous(|r: &Rec| r.1))
            .key_by(|r: &Rec| r.0)
            .window(assigner(kind), |r: &Rec| r.1)
            .aggregate(Count)
            .map(|r: WindowResult<u8, i64>| ((r.key, r.start(), r.max_timestamp()), r.value))
            .collect();
        env.execute().expect("job runs");
        let fired = out.take();
        let got: BTreeMap<(u8, i64, i64), i64> = fired.iter().copied().collect();
        prop_assert_eq!(fired.len(), got.len(), "a window fired twice");
        prop_assert_eq!(got, reference(kind, &input));
    }
}

type Fired = (u8, i64, i64, i64);

/// Runs tumbling or sliding windows over out-of-order input with allowed lateness; returns the
/// results in emission order and the late records.
fn run_aligned_or_general(
    kind: Kind,
    input: &[Rec],
    out_of_order: u64,
    lateness: u64,
    general: bool,
) -> (Vec<Fired>, Vec<Rec>) {
    let env = Env::builder().cores(1).batch_size(3).build().expect("env");
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
    let tag = windowed.late_data();
    let results = if general {
        windowed.trigger(GeneralPath).aggregate(Count)
    } else {
        windowed.aggregate(Count)
    };
    let late = results.side_output(&tag).collect();
    let fired = results
        .map(|r: WindowResult<u8, i64>| (r.key, r.start(), r.max_timestamp(), r.value))
        .collect();
    env.execute().expect("job runs");
    (fired.take(), late.take())
}

fn aligned_kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..20).prop_map(Kind::Tumbling),
        (1i64..20, 1i64..20).prop_filter_map("slide <= size", |(a, b)| (b <= a)
            .then_some(Kind::Sliding(a, b))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The aligned-window operator (state by window, no timers) emits exactly what the general
    /// operator emits, in the same order: on-time firings, re-firings for records within the
    /// allowed lateness, and the same late records.
    #[test]
    fn aligned_windows_equal_the_general_operator(
        kind in aligned_kinds(),
        input in prop::collection::vec((0u8..4, -50i64..150), 1..150),
        out_of_order in 0u64..30,
        lateness in prop_oneof![Just(0u64), 0u64..40],
    ) {
        let aligned = run_aligned_or_general(kind, &input, out_of_order, lateness, false);
        let general = run_aligned_or_general(kind, &input, out_of_order, lateness, true);
        prop_assert_eq!(aligned, general);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The session operator (sorted sessions per key, one lazy timer per key) emits exactly
    /// what the general operator emits, in the same order, for out-of-order input whose late
    /// records bridge, extend and start sessions, and sends the same records to the late side
    /// output.
    #[test]
    fn session_windows_equal_the_general_operator(
        gap in 1i64..15,
        input in prop::collection::vec((0u8..4, -50i64..150), 1..150),
        out_of_order in 0u64..30,
    ) {
        let kind = Kind::Session(gap);
        let fast = run_aligned_or_general(kind, &input, out_of_order, 0, false);
        let general = run_aligned_or_general(kind, &input, out_of_order, 0, true);
        prop_assert_eq!(fast, general);
    }
}
