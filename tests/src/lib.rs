//! Shared helpers of the integration tests in `tests/`.

use std::collections::BTreeMap;

use weir::nexmark::NexmarkConfig;
use weir::source::nexmark::NexmarkSource;
use weir::state::{LsmStateConfig, StateBackendConfig};
use weir::window::{
    EventTimeTrigger, OnMergeContext, Trigger, TriggerContext, TriggerResult, Window,
};
use weir::{Change, CsvRecord, Data, Env, EnvBuilder, Stream};
use weir_bench::queries::{Query, RowSink, build};

/// Asks for a stopping savepoint of the job `builder` will build, `after` from now (if any),
/// from a thread of its own: how the savepoint tests stop a job mid-run.
pub fn stop_with_savepoint_after(builder: &EnvBuilder, after: Option<std::time::Duration>) {
    if let Some(after) = after {
        let handle = builder.savepoint_handle();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            handle.request(true);
        });
    }
}

/// Writes `counts` to the CSV file `output` (`key,window start,count`, the lines
/// [`committed_window_counts`] reads back) through the two-phase file sink, and runs the job.
pub fn execute_writing_window_counts(
    env: &Env,
    counts: Stream<weir::operator::WindowResult<u32, i64>>,
    output: &std::path::Path,
) -> weir::JobResult {
    counts
        .map(|r: weir::operator::WindowResult<u32, i64>| (r.key, r.start(), r.value))
        .sink(weir::sink::FileSink::new(
            output,
            weir::sink::Csv::without_header(),
        ));
    env.execute().expect("job runs")
}

/// The window counts a job committed to the CSV file `path`, one `key,window start,count` line
/// per (key, window): panics if a window was committed twice (exactly-once output).
pub fn committed_window_counts(path: &std::path::Path) -> BTreeMap<(u32, i64), i64> {
    let text = std::fs::read_to_string(path).expect("output");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<i64> = line
            .split(',')
            .map(|x| x.parse().expect("number"))
            .collect();
        let prev = out.insert((f[0] as u32, f[1]), f[2]);
        assert!(prev.is_none(), "window {:?} committed twice", (f[0], f[1]));
    }
    out
}

/// Counts of each distinct value: compares outputs whose order is not defined.
pub fn multiset<T: Ord + Clone, I: IntoIterator<Item = T>>(items: I) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// The CPU time (user + system) this process has used so far, from /proc/self/stat.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")".
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// What a [`trickle_job`] cost: CPU seconds of this process, wall seconds, and whether the
/// shards were pinned.
pub struct Trickle {
    pub cpu: f64,
    pub wall: f64,
    pub pinned: bool,
}

/// Runs `events` Nexmark events at `rate` events/s across an exchange on `env` (mostly
/// waiting), checks that every event arrived, and measures the process's CPU time: for tests
/// of what idle shards cost, each alone in its own test binary.
pub fn trickle_job(env: &Env, events: u64, rate: u64) -> Trickle {
    let source = NexmarkSource::new(NexmarkConfig::default(), events)
        .and_then(|s| s.with_rate(rate))
        .expect("valid source");
    let count = env
        .from_source(source)
        .key_by(|e| e.date_time() % 7)
        .partitioned()
        .count();
    let cpu_before = process_cpu_seconds().expect("/proc/self/stat is readable");
    let start = std::time::Instant::now();
    let result = env.execute().expect("job runs");
    let wall = start.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds().expect("/proc/self/stat is readable") - cpu_before;
    assert_eq!(count.count(), events, "every event arrives");
    Trickle {
        cpu,
        wall,
        pinned: result.pinned,
    }
}

/// Collects a query's rows as CSV lines.
#[derive(Default)]
pub struct CsvCollector {
    lines: Option<weir::CollectSink<String>>,
    changes: Option<weir::CollectSink<Change<String>>>,
}

/// Encodes a row as its CSV line.
pub fn csv_line<R: CsvRecord>(r: &R) -> String {
    let mut out = Vec::new();
    r.write_csv(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl RowSink for CsvCollector {
    fn attach_changelog<R: Data + CsvRecord>(&mut self, _query: Query, changes: Stream<Change<R>>) {
        self.changes = Some(changes.map(|c| c.map(|r| csv_line(&r))).collect());
    }

    fn attach<R: Data + CsvRecord>(&mut self, _query: Query, rows: Stream<R>) {
        self.lines = Some(
            rows.map(|r| {
                let mut out = Vec::new();
                r.write_csv(&mut out);
                String::from_utf8_lossy(&out).into_owned()
            })
            .collect(),
        );
    }
}

/// Runs `query` over `events` generated events on `shards` shards; its rows as CSV lines.
pub fn run_query(query: Query, config: NexmarkConfig, events: u64, shards: usize) -> Vec<String> {
    run_query_on(
        query,
        config,
        events,
        shards,
        weir::state::StateBackendConfig::Heap,
    )
}

/// [`run_query`] with its keyed state on `backend`.
pub fn run_query_on(
    query: Query,
    config: NexmarkConfig,
    events: u64,
    shards: usize,
    backend: StateBackendConfig,
) -> Vec<String> {
    let env = Env::builder()
        .cores(shards)
        .batch_size(100)
        .state_backend(backend)
        .build()
        .expect("valid env");
    let source = NexmarkSource::new(config, events).expect("valid source");
    let stream = weir_bench::queries::events(&env, source);
    let mut sink = CsvCollector::default();
    build(query, &stream, &mut sink).expect("query builds");
    env.execute().expect("query runs");
    if let Some(changes) = sink.changes {
        // The final table of an updating query. Changes of one key come from one shard, in
        // order, and a collector keeps each shard's order.
        return weir::changelog::materialize(changes.take()).expect("a consistent changelog");
    }
    sink.lines.map(|l| l.take()).unwrap_or_default()
}

/// A timestamp as the specification prints it.
pub fn timestamp(ms: i64) -> String {
    let mut out = Vec::new();
    weir::nexmark::csv::write_timestamp(&mut out, ms);
    String::from_utf8_lossy(&out).into_owned()
}

/// A CSV field, quoted as RFC 4180 requires.
pub fn quoted(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `EventTimeTrigger` without its claim to fire only at a window's end, so a job runs the
/// general window operator (a timer per key and window) instead of the aligned one: tests
/// compare the two.
#[derive(Clone, Copy, Debug, Default)]
pub struct GeneralPath;

impl<T> Trigger<T> for GeneralPath {
    fn on_element(
        &self,
        element: &T,
        timestamp: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        <EventTimeTrigger as Trigger<T>>::on_element(
            &EventTimeTrigger,
            element,
            timestamp,
            window,
            ctx,
        )
    }
    fn on_event_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        <EventTimeTrigger as Trigger<T>>::on_event_time(&EventTimeTrigger, time, window, ctx)
    }
    fn on_processing_time(
        &self,
        time: i64,
        window: &Window,
        ctx: &mut dyn TriggerContext,
    ) -> TriggerResult {
        <EventTimeTrigger as Trigger<T>>::on_processing_time(&EventTimeTrigger, time, window, ctx)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, window: &Window, ctx: &mut dyn OnMergeContext) {
        <EventTimeTrigger as Trigger<T>>::on_merge(&EventTimeTrigger, window, ctx)
    }
    fn clear(&self, window: &Window, ctx: &mut dyn TriggerContext) {
        <EventTimeTrigger as Trigger<T>>::clear(&EventTimeTrigger, window, ctx)
    }
}

/// The state backend of a test: the heap, or the LSM store in `dir` with memtables of
/// `memtable_bytes` (small ones make the stores flush and compact while the job runs).
pub fn test_backend(lsm: bool, dir: &std::path::Path, memtable_bytes: usize) -> StateBackendConfig {
    if !lsm {
        return StateBackendConfig::Heap;
    }
    let mut config = LsmStateConfig::new(dir);
    config.memtable_bytes = memtable_bytes;
    StateBackendConfig::Lsm(config)
}
