//! Windows of every kind against a sequential reference, for random timestamped input,
//! random shard counts and both state backends: each (key, window) count must match exactly.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weir::operator::WindowResult;
use weir::state::{LsmStateConfig, StateBackendConfig};
use weir::window::WindowAssigner;
use weir::{Env, Timestamp, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;

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
        let backend = if lsm {
            // 4 KiB memtables: the window stores flush and compact while the job runs.
            let mut config = LsmStateConfig::new(dir.path());
            config.memtable_bytes = 4096;
            StateBackendConfig::Lsm(config)
        } else {
            StateBackendConfig::Heap
        };
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
