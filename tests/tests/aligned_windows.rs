//! Aligned windows (tumbling and sliding under the event-time trigger) and plain session
//! windows run on operators of their own; their checkpoints use the general window operator's
//! layout. A savepoint taken by either operator resumes on the other, at another shard count,
//! with every window's result committed exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::window::WindowAssigner;
use weir::{Env, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;
use weir_tests::{GeneralPath, committed_window_counts};

type Rec = (u32, i64); // (key, timestamp)

const RECORDS: i64 = 60_000;
const KEYS: u32 = 50;

/// Session gap of the session variant: the input pauses for 100 ms every 1000 records, so
/// every key's sessions end there.
const GAP: i64 = 30;

fn input() -> Vec<Rec> {
    (0..RECORDS)
        .map(|i| ((i * 7 % KEYS as i64) as u32, i / 20 + 100 * (i / 1000)))
        .collect()
}

/// (key, window start) -> count, computed the plain way: 100 ms windows sliding by 50, or
/// sessions with gap `GAP`.
fn expected(sessions: bool) -> BTreeMap<(u32, i64), i64> {
    let mut out = BTreeMap::new();
    if sessions {
        let mut by_key: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for (k, t) in input() {
            by_key.entry(k).or_default().push(t);
        }
        for (k, mut ts) in by_key {
            ts.sort_unstable();
            let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
            for t in ts {
                if t - last > GAP {
                    out.insert((k, start), n);
                    start = t;
                    n = 0;
                }
                last = t;
                n += 1;
            }
            out.insert((k, start), n);
        }
        return out;
    }
    for (k, t) in input() {
        let mut start = t - t.rem_euclid(50);
        while start > t - 100 {
            *out.entry((k, start)).or_insert(0) += 1;
            start -= 50;
        }
    }
    out
}

/// Runs the job (sessions or sliding windows; the general operator if `general`), taking a
/// savepoint and stopping after `stop_after` if given; rows go to `output` through the
/// two-phase-commit file sink.
fn run(
    cores: usize,
    sessions: bool,
    general: bool,
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
    let windowed = env
        .from_source_with_watermarks(
            VecSource::new(input()),
            WatermarkStrategy::monotonous(|r: &Rec| r.1),
        )
        // Slow the source down so the savepoint lands mid-run.
        .map(|r: Rec| {
            if r.0 == 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            r
        })
        .key_by(|r: &Rec| r.0)
        .window(
            if sessions {
                WindowAssigner::session(GAP).expect("valid")
            } else {
                WindowAssigner::sliding(100, 50, 0).expect("valid")
            },
            |r: &Rec| r.1,
        );
    let results = if general {
        windowed.trigger(GeneralPath).aggregate(Count)
    } else {
        windowed.aggregate(Count)
    };
    weir_tests::execute_writing_window_counts(&env, results, output)
}

#[test]
fn savepoints_move_between_the_aligned_and_the_general_window_operator() {
    savepoints_move_between_operators(false);
}

#[test]
fn savepoints_move_between_the_session_and_the_general_window_operator() {
    savepoints_move_between_operators(true);
}

fn savepoints_move_between_operators(sessions: bool) {
    let root = tempfile::tempdir().expect("tempdir");
    let want = expected(sessions);
    for (first_general, label) in [(true, "general-then-own"), (false, "own-then-general")] {
        let dir = root.path().join(label);
        let first = dir.join("first.csv");
        std::fs::create_dir_all(&dir).expect("dir");
        let stopped = run(
            2,
            sessions,
            first_general,
            CheckpointConfig::new(dir.join("chk"), Duration::from_secs(3600)),
            &first,
            Some(Duration::from_millis(if sessions { 450 } else { 250 })),
        );
        let savepoint = stopped
            .checkpoints
            .and_then(|s| s.savepoints.first().cloned())
            .expect("a savepoint was taken");
        let before = committed_window_counts(&first).len();
        assert!(
            before > 0 && before < want.len(),
            "{label}: stopped mid-run ({before} of {} windows)",
            want.len()
        );
        for cores in [1, 3] {
            let out = dir.join(format!("resumed-{cores}.csv"));
            std::fs::copy(&first, &out).expect("copy first part");
            let mut config = CheckpointConfig::new(
                dir.join(format!("resume-{cores}")),
                Duration::from_secs(3600),
            );
            config.restore_from = Some(savepoint.clone());
            run(cores, sessions, !first_general, config, &out, None);
            let got = committed_window_counts(&out);
            let wrong: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(k) != Some(v))
                .take(5)
                .collect();
            assert!(
                wrong.is_empty() && got.len() == want.len(),
                "{label}: resumed at {cores} shard(s): {} windows, want {}; first wrong: {wrong:?}",
                got.len(),
                want.len()
            );
        }
    }
}
