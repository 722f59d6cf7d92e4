//! A source waiting for input does not hold checkpoints back: barriers due while its read is
//! pending go out with the position before that read, and a job restarted from such a
//! checkpoint reads the rest exactly once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::checkpoint::{CheckpointConfig, SourceRestore};
use weir::sink::{Csv, FileSink};
use weir::source::{Source, SourceReader, SourceStatus};
use weir::state::StateCodec;
use weir::{Env, ShardInfo, WeirError};

const FIRST: u64 = 100;
const TOTAL: u64 = 200;

/// Emits 0..100, then has nothing to read for 400 ms (one pending read), then 100..200.
/// One shard only. Positions are the next number to emit.
#[derive(Clone)]
struct PausingSource;

struct PausingReader {
    next: u64,
}

impl Source<u64> for PausingSource {
    type Reader = PausingReader;

    fn create_reader(&self, _shard: &ShardInfo) -> weir::Result<PausingReader> {
        Ok(PausingReader { next: 0 })
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        _shard: &ShardInfo,
        restore: &SourceRestore,
    ) -> weir::Result<PausingReader> {
        let next = match restore.positions.first() {
            Some((_, bytes)) => u64::decode(bytes).map_err(|e| WeirError::Source {
                source_name: "pausing".into(),
                message: e.to_string(),
            })?,
            None => 0,
        };
        Ok(PausingReader { next })
    }
}

impl SourceReader<u64> for PausingReader {
    async fn next_batch(&mut self, out: &mut Vec<u64>, max: usize) -> weir::Result<SourceStatus> {
        if self.next == FIRST {
            glommio::timer::sleep(Duration::from_millis(400)).await;
        }
        let end = if self.next < FIRST { FIRST } else { TOTAL };
        let n = (end - self.next).min(max as u64);
        out.extend(self.next..self.next + n);
        self.next += n;
        Ok(if self.next >= TOTAL {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self, out: &mut Vec<u8>) {
        self.next.encode(out);
    }
}

fn run(dir: &Path, output: &Path, failed: &'static AtomicBool) -> weir::JobResult {
    let mut config = CheckpointConfig::new(dir, Duration::from_millis(20));
    config.retain = 100;
    let env = Env::builder()
        .cores(1)
        .batch_size(10)
        .checkpointing(config)
        .build()
        .expect("env");
    env.from_source(PausingSource)
        .map(move |n: u64| {
            // Fail once, at the first record after the pause: the latest checkpoint then is one
            // taken during the pause (the records before it take a few milliseconds).
            if n == FIRST && !failed.swap(true, Ordering::SeqCst) {
                panic!("failing once on purpose");
            }
            n
        })
        .sink(FileSink::new(output, Csv::without_header()));
    env.execute().expect("job runs")
}

#[test]
fn checkpoints_complete_while_a_source_waits_and_restore_exactly() {
    static FAILED: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.csv");
    let result = run(&dir.path().join("chk"), &out, &FAILED);
    assert!(FAILED.load(Ordering::SeqCst), "failed once");
    let stats = result.checkpoints.expect("checkpointing on");
    // 400 ms of waiting at a 20 ms interval, in each attempt (the restarted one resumes at the
    // pause): many checkpoints, not just the final one.
    let restored = stats.restored_from.expect("restarted from a checkpoint");
    assert!(restored >= 5, "from one taken during the pause: {stats:?}");
    assert!(
        stats.completed >= 5,
        "checkpoints completed while the restarted source waited: {stats:?}"
    );
    let text = std::fs::read_to_string(&out).expect("output");
    let mut got: Vec<u64> = text.lines().map(|l| l.parse().expect("number")).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..TOTAL).collect::<Vec<_>>(),
        "every number exactly once"
    );
}
