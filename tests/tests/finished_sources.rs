//! Checkpoints go on after some sources finished (Flink's FLIP-147): a finished source's final
//! position stands for it in later checkpoints, a shard whose outputs all ended is
//! acknowledged for, and the last part of a sink whose input ended is committed with the
//! first checkpoint that sink never reached. A job that fails after a source finished resumes
//! from such a checkpoint, and every record comes out exactly once.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::checkpoint::{CheckpointConfig, SourceRestore};
use weir::sink::{Csv, FileSink, RollingFileSink};
use weir::source::{Source, SourceReader, SourceStatus, VecSource};
use weir::state::StateCodec;
use weir::{Env, ShardInfo, WeirError};

/// Shard `i` emits `ranges[i]` (nothing if absent), in batches of at most 10 with a pause
/// before each batch. Positions are the next number to emit; a restore needs the position of
/// every old shard (the same shard count only).
#[derive(Clone)]
struct PacedSource {
    ranges: Vec<Range<u64>>,
    pause: Duration,
}

struct PacedReader {
    next: u64,
    end: u64,
    pause: Duration,
}

impl PacedSource {
    fn range(&self, shard: &ShardInfo) -> Range<u64> {
        self.ranges.get(shard.index).cloned().unwrap_or(0..0)
    }
}

impl Source<u64> for PacedSource {
    type Reader = PacedReader;

    fn create_reader(&self, shard: &ShardInfo) -> weir::Result<PacedReader> {
        let range = self.range(shard);
        Ok(PacedReader {
            next: range.start,
            end: range.end,
            pause: self.pause,
        })
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        shard: &ShardInfo,
        restore: &SourceRestore,
    ) -> weir::Result<PacedReader> {
        let bad = |message: String| WeirError::Source {
            source_name: "paced".into(),
            message,
        };
        // Every old shard must have left a position, finished or not.
        if restore.positions.len() != self.ranges.len() {
            return Err(bad(format!(
                "{} positions for {} shards",
                restore.positions.len(),
                self.ranges.len()
            )));
        }
        let (_, bytes) = restore
            .positions
            .iter()
            .find(|(s, _)| *s as usize == shard.index)
            .ok_or_else(|| bad(format!("no position for shard {}", shard.index)))?;
        let next = u64::decode(bytes).map_err(|e| bad(e.to_string()))?;
        let mut reader = self.create_reader(shard)?;
        reader.next = next;
        Ok(reader)
    }
}

impl SourceReader<u64> for PacedReader {
    async fn next_batch(&mut self, out: &mut Vec<u64>, max: usize) -> weir::Result<SourceStatus> {
        if self.next < self.end {
            glommio::timer::sleep(self.pause).await;
            let n = (self.end - self.next).min(max.min(10) as u64);
            out.extend(self.next..self.next + n);
            self.next += n;
        }
        Ok(if self.next >= self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self, out: &mut Vec<u8>) {
        self.next.encode(out);
    }
}

fn env(dir: &Path) -> Env {
    let mut config = CheckpointConfig::new(dir, Duration::from_millis(20));
    config.retain = 1000;
    Env::builder()
        .cores(2)
        .batch_size(10)
        .checkpointing(config)
        .build()
        .expect("env")
}

/// Fails the job once, at record `at`.
fn fail_once_at(at: u64, failed: &'static AtomicBool) -> impl Fn(u64) -> u64 + Clone + 'static {
    move |n: u64| {
        if n == at && !failed.swap(true, Ordering::SeqCst) {
            panic!("failing once on purpose");
        }
        n
    }
}

/// Runs the job built on `env`, which must fail once (`failed`), and checks that it resumed
/// from a checkpoint numbered at least 3 (taken after the early end, at a 20 ms interval).
fn run_and_check_resumed(env: Env, failed: &AtomicBool, what: &str) {
    let result = env.execute().expect("job runs");
    assert!(failed.load(Ordering::SeqCst), "failed once");
    let stats = result.checkpoints.expect("checkpointing on");
    let restored = stats.restored_from.expect("restarted from a checkpoint");
    assert!(restored >= 3, "from a checkpoint after {what}: {stats:?}");
}

fn numbers(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).expect("output");
    let mut got: Vec<u64> = text.lines().map(|l| l.parse().expect("number")).collect();
    got.sort_unstable();
    got
}

/// A short source with its own sink finishes at once; a long one goes on for about 250 ms and
/// fails once in the middle. The job must resume from a checkpoint taken after the short
/// source (and its sink) finished: the short source must not read again (its final position
/// is in the checkpoint) and its sink's last part must be committed (it ended before that
/// checkpoint's barrier, so the restored job will not write it again).
#[test]
fn checkpoints_go_on_after_a_source_finished_and_restore_exactly() {
    static FAILED: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let (short_out, long_out) = (dir.path().join("short.csv"), dir.path().join("long.csv"));
    let env = env(&dir.path().join("chk"));
    env.from_source(VecSource::new((0..100u64).collect()))
        .map(|n: u64| n)
        .sink(FileSink::new(&short_out, Csv::without_header()));
    env.from_source(PacedSource {
        ranges: vec![1000..1500, 1500..2000],
        pause: Duration::from_millis(5),
    })
    .map(fail_once_at(1300, &FAILED))
    .sink(FileSink::new(&long_out, Csv::without_header()));
    // The failure comes ~150 ms after the short source finished.
    run_and_check_resumed(env, &FAILED, "the short source ended");
    assert_eq!(
        numbers(&short_out),
        (0..100).collect::<Vec<_>>(),
        "short: exactly once"
    );
    assert_eq!(
        numbers(&long_out),
        (1000..2000).collect::<Vec<_>>(),
        "long: exactly once"
    );
}

/// The numbers in every committed part file under `dir`.
fn part_numbers(dir: &Path) -> Vec<u64> {
    let mut got = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("part-") {
            got.extend(numbers(&path));
        }
    }
    got.sort_unstable();
    got
}

/// Shard 1 has nothing to read: its source, operators and sink (one per shard, no exchange)
/// end at once. Its shard must not hold back the checkpoints shard 0 takes while it reads for
/// about 250 ms.
#[test]
fn a_shard_whose_outputs_all_ended_does_not_hold_checkpoints_back() {
    static FAILED: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let env = env(&dir.path().join("chk"));
    env.from_source(PacedSource {
        ranges: vec![0..500, 0..0],
        pause: Duration::from_millis(5),
    })
    .map(fail_once_at(300, &FAILED))
    .sink(RollingFileSink::new(&out, Csv::without_header()));
    run_and_check_resumed(env, &FAILED, "shard 1 ended");
    assert_eq!(
        part_numbers(&out),
        (0..500).collect::<Vec<_>>(),
        "exactly once"
    );
}
