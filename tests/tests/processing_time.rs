//! Processing-time timers fire on the wall clock, also while the input has no data and no
//! watermarks: sources send ticks (`Progress::Tick`) while they wait for a read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir::source::{Source, SourceReader, SourceStatus};
use weir::{Env, KeyedProcessFunction, ProcessContext, ShardInfo, Timestamp};

/// Emits keys 0, 1 and 2 at once, then has nothing to read until `fired` is set (or 5 s
/// passed, recorded in `gave_up`), then ends.
#[derive(Clone)]
struct PausingSource {
    fired: Arc<AtomicBool>,
    gave_up: Arc<AtomicBool>,
}

struct PausingReader {
    source: PausingSource,
    sent: bool,
    since: Instant,
}

impl Source<u8> for PausingSource {
    type Reader = PausingReader;

    fn create_reader(&self, _shard: &ShardInfo) -> weir::Result<PausingReader> {
        Ok(PausingReader {
            source: self.clone(),
            sent: false,
            since: Instant::now(),
        })
    }
}

impl SourceReader<u8> for PausingReader {
    async fn next_batch(&mut self, out: &mut Vec<u8>, _max: usize) -> weir::Result<SourceStatus> {
        if !self.sent {
            self.sent = true;
            out.extend([0, 1, 2]);
            return Ok(SourceStatus::More);
        }
        // One pending read that lasts until the timers fired: no record, no watermark.
        while !self.source.fired.load(Ordering::SeqCst) {
            if self.since.elapsed() > Duration::from_secs(5) {
                self.source.gave_up.store(true, Ordering::SeqCst);
                break;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        Ok(SourceStatus::Finished)
    }
}

/// A processing-time timer 20 ms after each key's record; firing emits (key, fired before the
/// end of input) and, once all three fired, lets the source end.
#[derive(Clone)]
struct Remind {
    fired: Arc<AtomicBool>,
    count: usize,
}

impl KeyedProcessFunction<u8, u8, (u8, bool)> for Remind {
    fn process(&mut self, _key: &u8, _r: u8, ctx: &mut ProcessContext<'_, (u8, bool)>) {
        ctx.register_processing_time_timer(weir::time::wall_clock_ms() + 20);
    }

    fn on_timer(&mut self, key: &u8, _t: Timestamp, ctx: &mut ProcessContext<'_, (u8, bool)>) {
        let before_end = ctx.current_watermark().is_none_or(|w| w < Timestamp::MAX);
        ctx.emit((*key, before_end));
        self.count += 1;
        if self.count == 3 {
            self.fired.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn processing_time_timers_fire_while_the_input_is_idle() {
    let fired = Arc::new(AtomicBool::new(false));
    let gave_up = Arc::new(AtomicBool::new(false));
    let env = Env::builder().cores(1).build().expect("env");
    let out = env
        .from_source(PausingSource {
            fired: fired.clone(),
            gave_up: gave_up.clone(),
        })
        .key_by(|k: &u8| *k)
        .process(Remind { fired, count: 0 })
        .collect();
    env.execute().expect("job runs");
    assert!(
        !gave_up.load(Ordering::SeqCst),
        "the timers did not fire while the source waited"
    );
    let mut got = out.take();
    got.sort();
    assert_eq!(got, vec![(0, true), (1, true), (2, true)]);
}
