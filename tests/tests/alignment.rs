//! Barrier alignment at union inputs fed by several tasks: a checkpoint taken while one input
//! of a nested union lags behind must hold exactly the records before the barrier, so a job
//! that fails and restarts from it counts every record once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::sink::{Csv, FileSink};
use weir::{Env, VecSource};

/// (source, sequence number) rows.
type Row = (u32, i64);
/// Rows of the fast sources `a` and `b`, and of the slow source `c`.
const FAST: i64 = 20_000;
const SLOW: i64 = 2_000;

fn rows(source: u32, n: i64) -> Vec<Row> {
    (0..n).map(|i| (source, i)).collect()
}

/// `(a ∪ b) ∪ c` on 2 shards, counted per source. On each shard the inner union's output is
/// fed by the tasks of both `a` and `b`. `c` reaches the outer union through an exchange from
/// both shards, and shard 1's half of `c` is slow: the outer union on shard 0 waits for that
/// barrier while `a` and `b` go on there.
fn run(config: CheckpointConfig, output: &Path, failed: &'static AtomicBool) -> weir::JobResult {
    let env = Env::builder()
        .cores(2)
        .batch_size(16)
        .checkpointing(config)
        .build()
        .expect("env");
    let pace = |every: i64, ms: u64| {
        move |r: Row| {
            if r.1 % every == 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
            r
        }
    };
    let a = env
        .from_source(VecSource::new(rows(0, FAST)))
        .map(pace(64, 1));
    let b = env
        .from_source(VecSource::new(rows(1, FAST)))
        .map(pace(64, 1));
    // Shard 1 reads the second half of `c` (contiguous slices per shard).
    let c = env
        .from_source(VecSource::new(rows(2, SLOW)))
        .map(|r: Row| {
            if r.1 >= SLOW / 2 && r.1 % 16 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            } else if r.1 % 4 == 0 {
                // Shard 0's half must not end early either: no checkpoint is taken once a
                // source finished.
                std::thread::sleep(Duration::from_millis(1));
            }
            r
        })
        .rebalance();
    a.union(&b)
        .union(&c)
        .map(|r: Row| (r.0, 1_i64))
        .key_by(|r: &(u32, i64)| r.0)
        .reduce(|acc: &mut (u32, i64), r: (u32, i64)| acc.1 += r.1)
        .map(move |r: (u32, i64)| {
            // Fail once, late enough that several checkpoints completed: the job restarts
            // from the latest one.
            if r.0 == 2 && r.1 == SLOW * 3 / 4 && !failed.swap(true, Ordering::SeqCst) {
                panic!("failing once on purpose");
            }
            r
        })
        .sink(FileSink::new(output, Csv::without_header()));
    env.execute().expect("job runs")
}

/// The last running count per source in `path`.
fn final_counts(path: &Path) -> BTreeMap<u32, i64> {
    let text = std::fs::read_to_string(path).expect("output");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split(',').map(|x| x.parse::<i64>().expect("number"));
        let (Some(source), Some(count)) = (f.next(), f.next()) else {
            panic!("bad line {line:?}");
        };
        let last = out.entry(source as u32).or_insert(0);
        *last = (*last).max(count);
    }
    out
}

#[test]
fn nested_union_checkpoints_restart_with_every_record_counted_once() {
    static FAILED: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.csv");
    let mut config = CheckpointConfig::new(dir.path().join("chk"), Duration::from_millis(20));
    config.retain = 100;
    let result = run(config, &out, &FAILED);
    assert!(FAILED.load(Ordering::SeqCst), "the job failed once");
    let stats = result.checkpoints.expect("checkpointing on");
    assert!(
        stats.restored_from.is_some(),
        "restarted from a checkpoint: {stats:?}"
    );
    let want = BTreeMap::from([(0, FAST), (1, FAST), (2, SLOW)]);
    assert_eq!(
        final_counts(&out),
        want,
        "every record counted exactly once"
    );
}
