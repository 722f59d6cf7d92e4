//! Watermarks end to end: generation at the sources, the minimum across shards, idle shards,
//! and end of input as the final watermark.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::source::SourceReader;
use weir::{
    Env, ProcessContext, ProcessFunction, Result, ShardInfo, Source, SourceStatus, Timestamp,
    WatermarkStrategy,
};

/// Buffers records and releases those at or below the watermark, in timestamp order: correct
/// only if watermarks are never ahead of the data.
#[derive(Clone, Default)]
struct SortByEventTime {
    buffer: Vec<(Timestamp, u64)>,
}

impl ProcessFunction<(Timestamp, u64), (Timestamp, u64, Option<Timestamp>)> for SortByEventTime {
    fn process(
        &mut self,
        record: (Timestamp, u64),
        ctx: &mut ProcessContext<'_, (Timestamp, u64, Option<Timestamp>)>,
    ) {
        if ctx.current_watermark().is_some_and(|w| record.0 <= w) {
            // Late: the watermark promised this would not come. Mark it so the test sees it.
            ctx.emit((record.0, record.1, Some(i64::MIN)));
            return;
        }
        self.buffer.push(record);
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        ctx: &mut ProcessContext<'_, (Timestamp, u64, Option<Timestamp>)>,
    ) {
        self.buffer.sort_unstable();
        let ready = self.buffer.partition_point(|r| r.0 <= watermark);
        for (ts, v) in self.buffer.drain(..ready) {
            ctx.emit((ts, v, Some(watermark)));
        }
    }
}

#[test]
fn bounded_out_of_orderness_watermarks_never_overtake_the_data() {
    // Timestamps out of order by at most 5 ms, spread over 2 source shards.
    let input: Vec<(Timestamp, u64)> = (0..2000u64)
        .map(|i| (i as i64 - (i as i64 * 7919 % 6), i))
        .collect();
    for shards in [1, 2] {
        let env = Env::builder()
            .cores(shards)
            .batch_size(16)
            .build()
            .expect("env");
        let strategy = WatermarkStrategy::bounded_out_of_orderness(
            Duration::from_millis(5),
            |r: &(Timestamp, u64)| r.0,
        );
        let out = env
            .from_source_with_watermarks(weir::VecSource::new(input.clone()), strategy)
            .global()
            .process(SortByEventTime::default())
            .collect();
        env.execute().expect("job runs");
        let got = out.take();
        assert_eq!(got.len(), input.len(), "nothing lost at {shards} shards");
        assert!(
            got.iter().all(|r| r.2 != Some(i64::MIN)),
            "a record arrived behind the watermark at {shards} shards"
        );
        // Released in timestamp order, each at a watermark at or above its timestamp.
        assert!(
            got.windows(2).all(|w| w[0].0 <= w[1].0),
            "not sorted at {shards} shards"
        );
        assert!(got.iter().all(|r| r.2.is_some_and(|w| r.0 <= w)));
        // Watermarks arrived before the end: not everything waited for the final one.
        assert!(
            got.iter().any(|r| r.2 != Some(i64::MAX)),
            "only the final watermark fired"
        );
    }
}

/// A source whose shard 0 stays silent (no data, not finished) for `quiet_for`, while the
/// other shards emit their records at once and finish.
#[derive(Clone)]
struct QuietShardSource {
    quiet_for: Duration,
    quiet_done: Arc<AtomicBool>,
}

struct QuietReader {
    records: Vec<(Timestamp, u64)>,
    quiet: Option<(Duration, Arc<AtomicBool>)>,
}

impl Source<(Timestamp, u64)> for QuietShardSource {
    type Reader = QuietReader;

    fn create_reader(&self, shard: &ShardInfo) -> Result<QuietReader> {
        Ok(if shard.index == 0 {
            QuietReader {
                records: Vec::new(),
                quiet: Some((self.quiet_for, self.quiet_done.clone())),
            }
        } else {
            QuietReader {
                records: (0..100).map(|i| (1000 + i, i as u64)).collect(),
                quiet: None,
            }
        })
    }
}

impl SourceReader<(Timestamp, u64)> for QuietReader {
    async fn next_batch(
        &mut self,
        out: &mut Vec<(Timestamp, u64)>,
        _max: usize,
    ) -> Result<SourceStatus> {
        if let Some((quiet_for, done)) = self.quiet.take() {
            // Like a socket with nothing to read: the read itself waits.
            glommio::timer::sleep(quiet_for).await;
            done.store(true, Ordering::SeqCst);
            return Ok(SourceStatus::Finished);
        }
        out.append(&mut self.records);
        Ok(SourceStatus::Finished)
    }
}

/// Records every watermark it sees and whether the quiet shard had finished by then.
#[derive(Clone)]
struct WatermarkProbe {
    quiet_done: Arc<AtomicBool>,
}

impl ProcessFunction<(Timestamp, u64), (Timestamp, bool)> for WatermarkProbe {
    fn process(&mut self, _r: (Timestamp, u64), _ctx: &mut ProcessContext<'_, (Timestamp, bool)>) {}

    fn on_watermark(&mut self, w: Timestamp, ctx: &mut ProcessContext<'_, (Timestamp, bool)>) {
        ctx.emit((w, self.quiet_done.load(Ordering::SeqCst)));
    }
}

fn watermarks_with(idleness: Option<Duration>) -> Vec<(Timestamp, bool)> {
    let quiet_done = Arc::new(AtomicBool::new(false));
    let source = QuietShardSource {
        quiet_for: Duration::from_millis(600),
        quiet_done: quiet_done.clone(),
    };
    let mut strategy = WatermarkStrategy::monotonous(|r: &(Timestamp, u64)| r.0);
    if let Some(t) = idleness {
        strategy = strategy.with_idleness(t);
    }
    let env = Env::builder().cores(2).build().expect("env");
    let out = env
        .from_source_with_watermarks(source, strategy)
        .global()
        .process(WatermarkProbe { quiet_done })
        .collect();
    env.execute().expect("job runs");
    out.take()
}

#[test]
fn an_idle_shard_does_not_stall_the_watermark() {
    // Without idleness the silent shard holds every watermark back until it finishes.
    let stalled = watermarks_with(None);
    assert!(!stalled.is_empty());
    assert!(
        stalled.iter().all(|(_, quiet_done)| *quiet_done),
        "{stalled:?}"
    );

    // With idleness the busy shard's watermarks pass while the silent shard is still silent.
    let flowing = watermarks_with(Some(Duration::from_millis(50)));
    assert!(
        flowing
            .iter()
            .any(|(w, quiet_done)| !quiet_done && *w >= 1099),
        "{flowing:?}"
    );
    // End of input is the final watermark.
    assert_eq!(flowing.last().map(|w| w.0), Some(i64::MAX));
}
