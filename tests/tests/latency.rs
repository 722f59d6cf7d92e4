//! What the job's latency histograms count: every record that reached a sink, and separately
//! the steady state — records that reached it before any source finished — so the
//! end-of-input flush (the final watermark fires every open window at once) does not hide a
//! windowed query's window-close latency; and when one watermark closes several windows, each
//! window's results leave before the next one fires.

use std::time::Duration;

use weir::operator::WindowResult;
use weir::window::WindowAssigner;
use weir::{Env, ProcessContext, ProcessFunction, Timestamp, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;

#[test]
fn steady_latency_leaves_out_the_end_of_input_flush() {
    // One key, one record per ms over [0, 100), 10 ms tumbling windows, watermark = last
    // timestamp − 1: the watermarks of the input close [0, 10) … [80, 90) while the source
    // reads; [90, 100) closes only at end of input.
    let input: Vec<(i64, u8)> = (0..100).map(|t| (t, 0)).collect();
    let env = Env::builder().cores(1).batch_size(5).build().expect("env");
    let fired = env
        .from_source_with_watermarks(
            VecSource::new(input),
            WatermarkStrategy::monotonous(|r: &(i64, u8)| r.0),
        )
        .key_by(|r: &(i64, u8)| r.1)
        .window(
            WindowAssigner::tumbling(10, 0).expect("valid"),
            |r: &(i64, u8)| r.0,
        )
        .aggregate(Count)
        .map(|r: WindowResult<u8, i64>| (r.start(), r.value))
        .collect();
    let job = env.execute().expect("job runs");
    let mut fired = fired.take();
    fired.sort_unstable();
    let expected: Vec<(i64, i64)> = (0..10).map(|w| (w * 10, 10)).collect();
    assert_eq!(fired, expected);
    assert_eq!(job.latency.len(), 10, "every result is measured");
    assert_eq!(
        job.latency_steady.len(),
        9,
        "the window closed by end of input is not in the steady state"
    );
}

/// Sees a window operator's output: its results and the watermarks between them, in order.
#[derive(Clone)]
struct Trace;

impl ProcessFunction<WindowResult<u8, i64>, (char, i64)> for Trace {
    fn process(&mut self, r: WindowResult<u8, i64>, ctx: &mut ProcessContext<'_, (char, i64)>) {
        ctx.emit(('r', r.start()));
    }

    fn on_watermark(&mut self, w: Timestamp, ctx: &mut ProcessContext<'_, (char, i64)>) {
        if w < Timestamp::MAX {
            ctx.emit(('w', w));
        }
    }
}

#[test]
fn a_watermark_closing_several_windows_releases_each_before_the_next_fires() {
    // Watermarks trail by 20 ms: the first batch (times 1 and 12) closes nothing, the second
    // (time 100) moves the watermark to 79 and closes [0, 10) and [10, 20) at once.
    let input: Vec<(i64, u8)> = vec![(1, 0), (12, 0), (100, 0)];
    let env = Env::builder().cores(1).batch_size(2).build().expect("env");
    let trace = env
        .from_source_with_watermarks(
            VecSource::new(input),
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(20),
                |r: &(i64, u8)| r.0,
            ),
        )
        .key_by(|r: &(i64, u8)| r.1)
        .window(
            WindowAssigner::tumbling(10, 0).expect("valid"),
            |r: &(i64, u8)| r.0,
        )
        .aggregate(Count)
        .process(Trace)
        .collect();
    env.execute().expect("job runs");
    assert_eq!(
        trace.take(),
        vec![
            ('w', -9),
            // The first window's result and the watermark at its end go out before the
            // second window fires.
            ('r', 0),
            ('w', 9),
            ('r', 10),
            ('w', 79),
            ('r', 100),
        ]
    );
}
