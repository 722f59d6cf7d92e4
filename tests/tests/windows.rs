//! The window operator: firing on watermarks, late data to the side output, allowed lateness,
//! and bad window definitions.

use std::time::Duration;

use weir::operator::WindowResult;
use weir::window::{WindowAssigner, WindowError};
use weir::{Env, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;

type Rec = (i64, &'static str); // (timestamp, key)

fn run(input: Vec<Rec>, lateness: Duration) -> (Vec<(i64, i64)>, Vec<Rec>, u64) {
    // One shard and one record per batch: every record is followed by its watermark, so
    // lateness is deterministic.
    let env = Env::builder().cores(1).batch_size(1).build().expect("env");
    let strategy = WatermarkStrategy::monotonous(|r: &Rec| r.0);
    let windowed = env
        .from_source_with_watermarks(VecSource::new(input), strategy)
        .key_by(|r: &Rec| r.1)
        .window(
            WindowAssigner::tumbling(10, 0).expect("valid"),
            |r: &Rec| r.0,
        )
        .allowed_lateness(lateness);
    let results = windowed.aggregate(Count);
    let late = results.side_output(&windowed.late_data()).collect();
    let fired = results
        .map(|r: WindowResult<&'static str, i64>| (r.start(), r.value))
        .collect();
    let job = env.execute().expect("job runs");
    (
        fired.take(),
        late.take(),
        job.records_late("window-aggregate"),
    )
}

#[test]
fn late_records_go_to_the_side_output_and_are_counted() {
    // The watermark reaches 12 before the record at 3 arrives: window [0, 10) has fired.
    let input = vec![(1, "a"), (2, "a"), (12, "a"), (3, "a"), (25, "a")];
    let (fired, late, late_count) = run(input, Duration::ZERO);
    assert_eq!(fired, vec![(0, 2), (10, 1), (20, 1)]);
    assert_eq!(late, vec![(3, "a")]);
    assert_eq!(late_count, 1);
}

#[test]
fn allowed_lateness_refires_the_window_with_the_late_record() {
    let input = vec![(1, "a"), (2, "a"), (12, "a"), (3, "a"), (25, "a"), (4, "a")];
    // Window [0, 10) is kept until the watermark passes 9 + 5 = 14: the record at 3 updates
    // it (a second firing); the one at 4 comes after the watermark reached 25 and is late.
    let (fired, late, late_count) = run(input, Duration::from_millis(5));
    assert_eq!(fired, vec![(0, 2), (0, 3), (10, 1), (20, 1)]);
    assert_eq!(late, vec![(4, "a")]);
    assert_eq!(late_count, 1);
}

#[test]
fn unrepresentable_timestamps_are_late_data_not_a_crash() {
    let env = Env::builder().cores(1).build().expect("env");
    let windowed = env
        .from_iter(vec![(i64::MAX - 1, "a"), (5, "a")])
        .key_by(|r: &Rec| r.1)
        .window(
            WindowAssigner::sliding(10, 5, 0).expect("valid"),
            |r: &Rec| r.0,
        );
    let results = windowed.aggregate(Count);
    let late = results.side_output(&windowed.late_data()).collect();
    let fired = results.count();
    env.execute().expect("job runs");
    assert_eq!(late.take(), vec![(i64::MAX - 1, "a")]);
    assert_eq!(
        fired.count(),
        2,
        "the record at 5 is in two sliding windows"
    );
}

#[test]
fn bad_window_definitions_are_refused() {
    assert!(matches!(
        WindowAssigner::tumbling(0, 0),
        Err(WindowError::InvalidSize { .. })
    ));
    assert!(matches!(
        WindowAssigner::sliding(10, 20, 0),
        Err(WindowError::SlideLargerThanSize { .. })
    ));
    assert!(matches!(
        WindowAssigner::sliding(10, 0, 0),
        Err(WindowError::InvalidSlide { .. })
    ));
    assert!(matches!(
        WindowAssigner::session(0),
        Err(WindowError::InvalidGap { .. })
    ));
    let msg = WindowAssigner::tumbling(-5, 0)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("-5"), "the error names the size: {msg}");
}

#[test]
fn processing_time_windows_fire_as_the_clock_passes_them() {
    use weir::nexmark::{Event, NexmarkConfig};
    use weir::source::nexmark::NexmarkSource;
    use weir::window::ProcessingTimeTrigger;
    // 600 events over about 0.6 s of wall time, in 100 ms processing-time windows.
    let env = Env::builder().cores(1).build().expect("env");
    let source = NexmarkSource::new(NexmarkConfig::default(), 600)
        .and_then(|s| s.with_rate(1000))
        .expect("valid source");
    let out = env
        .from_source(source)
        .key_by(|_e: &Event| 0u8)
        .window(
            WindowAssigner::tumbling(100, 0)
                .expect("valid")
                .with_processing_time(),
            |e: &Event| e.date_time(),
        )
        .trigger(ProcessingTimeTrigger)
        .aggregate(Count)
        .collect();
    env.execute().expect("job runs");
    let windows = out.take();
    assert_eq!(
        windows.iter().map(|w| w.value).sum::<i64>(),
        600,
        "every event counted once"
    );
    assert!(
        windows.len() >= 4,
        "several windows closed: {}",
        windows.len()
    );
    let mut starts: Vec<i64> = windows.iter().map(|w| w.start()).collect();
    starts.dedup();
    assert_eq!(starts.len(), windows.len(), "each window fired once");
    assert!(starts.iter().all(|s| s % 100 == 0), "aligned to 100 ms");
}

#[test]
fn evictors_trim_what_the_window_function_sees() {
    use weir::window::{CountEvictor, TimeEvictor, TimestampedValue, Window};
    let input: Vec<Rec> = vec![(1, "a"), (2, "a"), (3, "a"), (4, "a"), (5, "a"), (12, "a")];
    let env = Env::builder().cores(1).build().expect("env");
    let keyed = env
        .from_source_with_watermarks(
            VecSource::new(input.clone()),
            WatermarkStrategy::monotonous(|r: &Rec| r.0),
        )
        .key_by(|r: &Rec| r.1);
    let windowed = keyed.window(
        WindowAssigner::tumbling(10, 0).expect("valid"),
        |r: &Rec| r.0,
    );
    let seen = |_k: &&'static str,
                _w: &Window,
                records: &[TimestampedValue<Rec>],
                out: &mut Vec<Vec<i64>>| {
        out.push(records.iter().map(|r| r.timestamp).collect())
    };
    // Keep the last two records of each window.
    let last_two = windowed
        .evict_and_process(CountEvictor::new(2).expect("valid"), seen)
        .collect();
    // Keep records within 2 ms of the newest one (Flink: drop ts <= newest - span).
    let recent = windowed
        .evict_and_process(TimeEvictor::new(2).expect("valid"), seen)
        .collect();
    env.execute().expect("job runs");
    assert_eq!(last_two.take(), vec![vec![4, 5], vec![12]]);
    assert_eq!(recent.take(), vec![vec![4, 5], vec![12]]);
}
