//! Property tests: assigners plus the merging set against brute-force references.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::assigner::WindowAssigner;
use super::error::WindowError;
use super::merging::{MergeResult, MergingWindowSet};
use super::types::{TimeWindow, Window};

type Counts = BTreeMap<(u8, TimeWindow), usize>;

/// Per-key per-window counts as a non-merging window operator computes them.
fn count_assigned(a: &WindowAssigner, input: &[(u8, i64)]) -> Counts {
    let mut out = Vec::new();
    let mut counts = Counts::new();
    for &(k, t) in input {
        a.assign(t, &mut out).unwrap();
        for w in &out {
            *counts.entry((k, *w.as_time().unwrap())).or_default() += 1;
        }
    }
    counts
}

/// Brute force: every aligned start in `(t - size, t]`.
fn reference_sliding(size: i64, slide: i64, offset: i64, input: &[(u8, i64)]) -> Counts {
    let mut counts = Counts::new();
    for &(k, t) in input {
        for s in (t - size + 1)..=t {
            if (s - offset).rem_euclid(slide) == 0 {
                *counts.entry((k, TimeWindow::new(s, s + size))).or_default() += 1;
            }
        }
    }
    counts
}

/// Sessions as the merging window operator computes them: contents live under
/// state windows and are folded together on every merge.
fn count_sessions(gap: i64, input: &[(u8, i64)]) -> Counts {
    let a = WindowAssigner::session(gap).unwrap();
    let mut sets: HashMap<u8, MergingWindowSet> = HashMap::new();
    let mut state: HashMap<(u8, TimeWindow), usize> = HashMap::new();
    let mut out = Vec::new();
    for &(k, t) in input {
        a.assign(t, &mut out).unwrap();
        let Window::Time(w) = out[0] else {
            panic!("session assigner gave a global window")
        };
        let set = sets.entry(k).or_default();
        let r = set.add_window(w);
        if let MergeResult::Merged {
            state_window,
            merged_state_windows,
            ..
        } = &r
        {
            for m in merged_state_windows {
                let moved = state.remove(&(k, *m)).expect("merged state exists");
                *state.entry((k, *state_window)).or_default() += moved;
            }
        }
        *state.entry((k, r.state_window())).or_default() += 1;
    }
    let mut counts = Counts::new();
    for (k, set) in &sets {
        for (w, s) in set.iter() {
            let n = state.remove(&(*k, s)).expect("every window has state");
            counts.insert((*k, w), n);
        }
    }
    assert!(state.is_empty(), "orphaned state windows: {state:?}");
    counts
}

/// Brute force sessions: sort per key, split where the gap exceeds `gap`.
fn reference_sessions(gap: i64, input: &[(u8, i64)]) -> Counts {
    let mut per_key: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
    for &(k, t) in input {
        per_key.entry(k).or_default().push(t);
    }
    let mut counts = Counts::new();
    for (k, mut ts) in per_key {
        ts.sort_unstable();
        let mut first = ts[0];
        let mut last = ts[0];
        let mut n = 0;
        for t in ts {
            if t - last > gap {
                counts.insert((k, TimeWindow::new(first, last + gap + 1)), n);
                first = t;
                n = 0;
            }
            last = t;
            n += 1;
        }
        counts.insert((k, TimeWindow::new(first, last + gap + 1)), n);
    }
    counts
}

fn keyed(ts: impl Strategy<Value = i64>) -> impl Strategy<Value = Vec<(u8, i64)>> {
    proptest::collection::vec((0u8..3, ts), 0..60)
}

proptest! {
    #[test]
    fn tumbling_matches_reference(
        (size, offset) in (1i64..40).prop_flat_map(|s| (Just(s), (1 - s)..s)),
        input in keyed(-200i64..200),
    ) {
        let a = WindowAssigner::tumbling(size, offset).unwrap();
        prop_assert_eq!(
            count_assigned(&a, &input),
            reference_sliding(size, size, offset, &input)
        );
    }

    #[test]
    fn sliding_matches_reference(
        (size, slide, offset) in (1i64..40)
            .prop_flat_map(|s| (Just(s), 1..=s))
            .prop_flat_map(|(s, sl)| (Just(s), Just(sl), (1 - sl)..sl)),
        input in keyed(-200i64..200),
    ) {
        let a = WindowAssigner::sliding(size, slide, offset).unwrap();
        prop_assert_eq!(
            count_assigned(&a, &input),
            reference_sliding(size, slide, offset, &input)
        );
    }

    /// Timestamps cluster on multiples of the gap (jitter mostly 0), so exact
    /// gaps, gap + 1 and gap - 1 all occur often; input order is random.
    #[test]
    fn sessions_match_reference(
        (gap, input) in (1i64..20).prop_flat_map(|gap| {
            let ts = (-15i64..15, prop_oneof![3 => Just(0i64), 1 => -2i64..3])
                .prop_map(move |(k, j)| k * gap + j);
            (Just(gap), keyed(ts))
        }),
    ) {
        prop_assert_eq!(count_sessions(gap, &input), reference_sessions(gap, &input));
    }

    /// Any i64 timestamp: windows containing it, or a range error; never a panic.
    #[test]
    fn any_timestamp_is_safe(
        t in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), (i64::MAX - 100)..=i64::MAX],
        size in prop_oneof![1i64..100, any::<i64>().prop_map(|v| v.saturating_abs().max(1))],
        slide_div in 1i64..5,
        gap in prop_oneof![1i64..100, Just(i64::MAX)],
    ) {
        let mut out = Vec::new();
        let slide = (size / slide_div).max(size / 1000 + 1).min(size);
        let assigners = [
            WindowAssigner::tumbling(size, 0).unwrap(),
            WindowAssigner::sliding(size, slide, 0).unwrap(),
            WindowAssigner::session(gap).unwrap(),
        ];
        for a in assigners {
            match a.assign(t, &mut out) {
                Ok(()) => {
                    prop_assert!(!out.is_empty());
                    prop_assert!(out.iter().all(|w| w.as_time().unwrap().contains(t)));
                }
                Err(e) => {
                    prop_assert_eq!(e, WindowError::TimestampOutOfRange { timestamp: t });
                    prop_assert!(out.is_empty());
                }
            }
        }
    }
}

#[test]
fn exact_gap_cases() {
    // The spec's example: a gap of exactly 10 s stays in the session, 10.001 s does not.
    let input = [(0, 0), (0, 10_000), (0, 20_001), (1, 5), (1, 5)];
    let expected: Counts = [
        ((0, TimeWindow::new(0, 20_001)), 2),
        ((0, TimeWindow::new(20_001, 30_002)), 1),
        ((1, TimeWindow::new(5, 10_006)), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(count_sessions(10_000, &input), expected);
    assert_eq!(reference_sessions(10_000, &input), expected);
    // Reported session end = last element + gap.
    assert_eq!(TimeWindow::new(0, 20_001).max_timestamp(), 10_000 + 10_000);
}
