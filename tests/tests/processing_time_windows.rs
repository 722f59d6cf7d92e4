//! Processing-time tumbling and sliding windows (`ProcessingTimeTrigger`) run on the aligned
//! window operator; `PurgingTrigger(ProcessingTimeTrigger)` fires the same windows at the same
//! time but keeps them on the general operator, so the two can be compared. Results depend on
//! the wall clock, so each test is deterministic by design: windows far larger than the run
//! (end of input closes them), or assertions that hold wherever the boundaries fall.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use weir::api::WindowedStream;
use weir::checkpoint::CheckpointConfig;
use weir::operator::WindowResult;
use weir::sink::{Sink, SinkWriter};
use weir::time::wall_clock_ms;
use weir::window::{ProcessingTimeTrigger, PurgingTrigger, Trigger, WindowAssigner};
use weir::{Env, ShardInfo, Stream, VecSource, WatermarkStrategy};
use weir_bench::queries::Count;
use weir_tests::{GeneralPath, committed_window_counts};

/// (key, sequence number).
type Rec = (u32, i64);
/// (key, window start) -> count.
type Counts = BTreeMap<(u32, i64), i64>;

fn input(records: i64, keys: u32) -> Vec<Rec> {
    (0..records)
        .map(|i| ((i * 7 % keys as i64) as u32, i))
        .collect()
}

fn per_key(input: &[Rec]) -> BTreeMap<u32, i64> {
    let mut out = BTreeMap::new();
    for (k, _) in input {
        *out.entry(*k).or_insert(0) += 1;
    }
    out
}

/// Window size and slide (equal: tumbling).
#[derive(Clone, Copy, Debug)]
struct Shape {
    size: i64,
    slide: i64,
}

impl Shape {
    fn assigner(self) -> WindowAssigner {
        let assigner = if self.size == self.slide {
            WindowAssigner::tumbling(self.size, 0)
        } else {
            WindowAssigner::sliding(self.size, self.slide, 0)
        };
        assigner.expect("valid window").with_processing_time()
    }
}

/// Counts per key and window on the aligned operator (`ProcessingTimeTrigger`) or, with
/// `general`, on the general one (`PurgingTrigger` fires the same windows at the same times but
/// is not aligned).
fn count_windows<KF, TF, Tr>(
    windowed: WindowedStream<Rec, u32, KF, TF, Tr>,
    general: bool,
) -> Stream<WindowResult<u32, i64>>
where
    KF: FnMut(&Rec) -> u32 + Clone + Send + 'static,
    TF: Fn(&Rec) -> i64 + Clone + Send + 'static,
    Tr: Trigger<Rec> + Clone + Send + 'static,
{
    if general {
        windowed
            .trigger(PurgingTrigger(ProcessingTimeTrigger))
            .aggregate(Count)
    } else {
        windowed.trigger(ProcessingTimeTrigger).aggregate(Count)
    }
}

/// Counts per (key, window) of `input` in processing-time windows of `shape`, on the aligned
/// operator or (`general`) the general one; `pace` sleeps that long every 10 records.
fn run(
    input: Vec<Rec>,
    shape: Shape,
    general: bool,
    cores: usize,
    pace: Option<Duration>,
) -> Vec<WindowResult<u32, i64>> {
    let env = Env::builder()
        .cores(cores)
        .batch_size(16)
        .build()
        .expect("env");
    let windowed = env
        .from_source(VecSource::new(input))
        .map(move |r: Rec| {
            if let Some(pause) = pace
                && r.1 % 10 == 0
            {
                std::thread::sleep(pause);
            }
            r
        })
        .key_by(|r: &Rec| r.0)
        .window(shape.assigner(), |r: &Rec| r.1);
    let out = count_windows(windowed, general).collect();
    env.execute().expect("job runs");
    out.take()
}

fn table(results: &[WindowResult<u32, i64>], shape: Shape) -> Counts {
    let mut out = Counts::new();
    for r in results {
        let (start, end) = (r.start(), r.max_timestamp() + 1);
        assert_eq!(start.rem_euclid(shape.slide), 0, "aligned start: {r:?}");
        assert_eq!(end - start, shape.size, "window of the shape's size: {r:?}");
        let prev = out.insert((r.key, start), r.value);
        assert!(prev.is_none(), "{:?} fired twice", (r.key, start));
    }
    out
}

/// Windows of 2^40 ms (about 35 years): the input is read within one (tumbling) or two
/// (sliding by half) windows whatever the clock says, and end of input fires them all.
#[test]
fn bounded_input_in_one_window_matches_the_general_operator_and_the_reference() {
    const HUGE: i64 = 1 << 40;
    let records = input(5_000, 97);
    let want_per_key = per_key(&records);
    for shape in [
        Shape {
            size: HUGE,
            slide: HUGE,
        },
        Shape {
            size: 2 * HUGE,
            slide: HUGE,
        },
    ] {
        for cores in [1, 2] {
            let aligned = table(&run(records.clone(), shape, false, cores, None), shape);
            let general = table(&run(records.clone(), shape, true, cores, None), shape);
            // The windows holding "now", derived from the observed starts.
            let starts: Vec<i64> = {
                let mut s: Vec<i64> = aligned.keys().map(|(_, s)| *s).collect();
                s.sort_unstable();
                s.dedup();
                s
            };
            let windows_per_record = (shape.size / shape.slide) as usize;
            assert_eq!(starts.len(), windows_per_record, "{shape:?}: {starts:?}");
            assert!(starts.windows(2).all(|w| w[1] - w[0] == shape.slide));
            let mut want = Counts::new();
            for (k, n) in &want_per_key {
                for s in &starts {
                    want.insert((*k, *s), *n);
                }
            }
            assert_eq!(aligned, want, "{shape:?} at {cores} core(s): aligned");
            assert_eq!(general, want, "{shape:?} at {cores} core(s): general");
        }
    }
}

/// A paced input (at least 400 ms) crosses several 100 ms windows: every record is counted in
/// size / slide windows, each window fires once, aligned, and windows fire while the input is
/// still read (not only at its end).
#[test]
fn paced_input_crosses_window_boundaries() {
    let records = input(800, 5);
    let want_per_key = per_key(&records);
    for shape in [
        Shape {
            size: 100,
            slide: 100,
        },
        Shape {
            size: 100,
            slide: 50,
        },
    ] {
        for general in [false, true] {
            let last_read = Arc::new(AtomicI64::new(i64::MAX));
            let first_result = Arc::new(AtomicI64::new(i64::MAX));
            let env = Env::builder().cores(1).batch_size(16).build().expect("env");
            let (read, fired) = (last_read.clone(), first_result.clone());
            let windowed = env
                .from_source(VecSource::new(records.clone()))
                .map(move |r: Rec| {
                    if r.1 % 10 == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    read.store(wall_clock_ms(), Ordering::SeqCst);
                    r
                })
                .key_by(|r: &Rec| r.0)
                .window(shape.assigner(), |r: &Rec| r.1);
            let out = count_windows(windowed, general)
                .map(move |r: WindowResult<u32, i64>| {
                    fired.fetch_min(wall_clock_ms(), Ordering::SeqCst);
                    r
                })
                .collect();
            env.execute().expect("job runs");
            let got = table(&out.take(), shape);
            let label = format!("{shape:?}, general: {general}");
            let mut totals: BTreeMap<u32, i64> = BTreeMap::new();
            for ((k, _), n) in &got {
                *totals.entry(*k).or_insert(0) += n;
            }
            let copies = shape.size / shape.slide;
            let want: BTreeMap<u32, i64> =
                want_per_key.iter().map(|(k, n)| (*k, n * copies)).collect();
            assert_eq!(
                totals, want,
                "{label}: every record in size / slide windows"
            );
            let starts: std::collections::BTreeSet<i64> = got.keys().map(|(_, s)| *s).collect();
            assert!(starts.len() >= 4, "{label}: windows crossed: {starts:?}");
            assert!(
                first_result.load(Ordering::SeqCst) < last_read.load(Ordering::SeqCst),
                "{label}: a window fired before the input ended"
            );
        }
    }
}

/// Records the size of every batch the sink receives.
#[derive(Clone, Default)]
struct BatchSizes(Arc<Mutex<Vec<usize>>>);

struct BatchSizesWriter(Arc<Mutex<Vec<usize>>>);

impl<T: Send + 'static> Sink<T> for BatchSizes {
    type Writer = BatchSizesWriter;
    fn create_writer(&self, _shard: &ShardInfo) -> weir::Result<BatchSizesWriter> {
        Ok(BatchSizesWriter(self.0.clone()))
    }
}

impl<T> SinkWriter<T> for BatchSizesWriter {
    fn write(&mut self, records: &mut Vec<T>) -> weir::Result<()> {
        if !records.is_empty() {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(records.len());
        }
        records.clear();
        Ok(())
    }
    fn finish(&mut self) -> weir::Result<()> {
        Ok(())
    }
}

/// One window of 1000 keys, closed by end of input, on both operators in both time domains:
/// its results reach the sink in several batches of at most the batch size.
#[test]
fn a_window_of_many_keys_leaves_in_batch_size_pieces() {
    const BATCH: usize = 64;
    const KEYS: u32 = 1000;
    let records = input(3_000, KEYS);
    for processing_time in [false, true] {
        for general in [false, true] {
            let env = Env::builder()
                .cores(1)
                .batch_size(BATCH)
                .build()
                .expect("env");
            let sizes = BatchSizes::default();
            let keyed = env
                .from_source_with_watermarks(
                    VecSource::new(records.clone()),
                    WatermarkStrategy::monotonous(|_r: &Rec| 0),
                )
                .key_by(|r: &Rec| r.0);
            // Event time: every record at 0, one window [0, 2^40).
            let assigner = WindowAssigner::tumbling(1 << 40, 0).expect("valid");
            let results = match (processing_time, general) {
                (false, false) => keyed.window(assigner, |_r: &Rec| 0).aggregate(Count),
                (false, true) => keyed
                    .window(assigner, |_r: &Rec| 0)
                    .trigger(GeneralPath)
                    .aggregate(Count),
                (true, false) => keyed
                    .window(assigner.with_processing_time(), |_r: &Rec| 0)
                    .trigger(ProcessingTimeTrigger)
                    .aggregate(Count),
                (true, true) => keyed
                    .window(assigner.with_processing_time(), |_r: &Rec| 0)
                    .trigger(PurgingTrigger(ProcessingTimeTrigger))
                    .aggregate(Count),
            };
            results.sink(sizes.clone());
            env.execute().expect("job runs");
            let sizes = sizes
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let label = format!("processing time: {processing_time}, general: {general}");
            assert_eq!(
                sizes.iter().sum::<usize>(),
                KEYS as usize,
                "{label}: one result per key"
            );
            assert!(
                sizes.len() >= KEYS as usize / BATCH,
                "{label}: several pushes: {sizes:?}"
            );
            assert!(
                sizes.iter().all(|n| *n <= BATCH),
                "{label}: at most a batch each: {sizes:?}"
            );
        }
    }
}

/// Paced source for the savepoint tests: 6000 records over about 0.6 to 1.2 s in 100 ms tumbling
/// processing-time windows; rows (key, start, count) go through the two-phase file sink.
fn run_checkpointed(
    general: bool,
    config: CheckpointConfig,
    output: &Path,
    stop_after: Option<Duration>,
) -> weir::JobResult {
    let builder = Env::builder().cores(2).batch_size(64).checkpointing(config);
    weir_tests::stop_with_savepoint_after(&builder, stop_after);
    let env = builder.build().expect("env");
    let windowed = env
        .from_source(VecSource::new(input(6_000, 50)))
        .map(|r: Rec| {
            if r.1 % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            r
        })
        .key_by(|r: &Rec| r.0)
        .window(
            Shape {
                size: 100,
                slide: 100,
            }
            .assigner(),
            |r: &Rec| r.1,
        );
    weir_tests::execute_writing_window_counts(&env, count_windows(windowed, general), output)
}

/// A savepoint of processing-time windows taken by either operator resumes on the other (taken
/// after 400 ms of a run paced to last over 1.2 s, so some windows have fired and some not):
/// every record is counted exactly once, in aligned windows.
#[test]
fn processing_time_savepoints_move_between_the_aligned_and_the_general_operator() {
    let root = tempfile::tempdir().expect("tempdir");
    let want = per_key(&input(6_000, 50));
    for (first_general, label) in [
        (true, "general-then-aligned"),
        (false, "aligned-then-general"),
    ] {
        let dir = root.path().join(label);
        std::fs::create_dir_all(&dir).expect("dir");
        let output = dir.join("out.csv");
        let stopped = run_checkpointed(
            first_general,
            CheckpointConfig::new(dir.join("chk"), Duration::from_secs(3600)),
            &output,
            Some(Duration::from_millis(400)),
        );
        let savepoint = stopped
            .checkpoints
            .and_then(|s| s.savepoints.first().cloned())
            .expect("a savepoint was taken");
        let before: i64 = committed_window_counts(&output).values().sum();
        assert!(
            before > 0 && before < want.values().sum::<i64>(),
            "{label}: stopped mid-run ({before} records counted)"
        );
        let mut config = CheckpointConfig::new(dir.join("resume"), Duration::from_secs(3600));
        config.restore_from = Some(savepoint);
        run_checkpointed(!first_general, config, &output, None);
        let shape = Shape {
            size: 100,
            slide: 100,
        };
        let mut totals: BTreeMap<u32, i64> = BTreeMap::new();
        for ((k, start), n) in committed_window_counts(&output) {
            assert_eq!(start % shape.slide, 0, "{label}: aligned window");
            *totals.entry(k).or_insert(0) += n;
        }
        assert_eq!(totals, want, "{label}: every record counted once");
    }
}
