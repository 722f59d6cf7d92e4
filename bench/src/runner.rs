//! Runs one Nexmark query and measures it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::nexmark::{Event, NexmarkConfig};
use weir::source::nexmark::NexmarkSource;
use weir::state::StateBackendConfig;
use weir::{
    Change, Csv, CsvRecord, Data, Env, FileSink, PartitionedFileSink, RollingFileSink,
    RollingPolicy, Stream, TableSink,
};

use crate::queries::{Query, QueryOptions, RowSink, SideInputError, build_with};

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub query: Query,
    pub events: u64,
    pub cores: usize,
    pub rate: Option<u64>,
    /// One CSV file (q10: a directory of partitions).
    pub output: Option<PathBuf>,
    /// A directory of rolling CSV part files (q10: partitioned below it); instead of `output`.
    pub output_dir: Option<PathBuf>,
    /// When directory output closes a part (besides every checkpoint).
    pub roll: RollingPolicy,
    pub generator: NexmarkConfig,
    pub batch_size: usize,
    /// q13's side table file.
    pub side_input: Option<PathBuf>,
    /// Checkpointing, if any.
    pub checkpoint: Option<CheckpointSpec>,
    /// Test hook: the first operator panics once (per process) after this many events.
    pub fail_after_events: Option<u64>,
    /// Where keyed process functions keep their state.
    pub state: StateBackendConfig,
    /// Idle shards poll this long before sleeping (`EnvBuilder::spin_before_park`).
    pub spin_before_park: Option<Duration>,
}

/// Checkpoint settings of a harness run.
#[derive(Clone, Debug)]
pub struct CheckpointSpec {
    pub dir: PathBuf,
    pub interval: Duration,
    pub restore_from: Option<PathBuf>,
    pub stop_with_savepoint_after: Option<Duration>,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub query: Query,
    pub cores: usize,
    pub pinned: bool,
    /// Events the generator emitted in this run.
    pub events: u64,
    pub seconds: f64,
    pub output_rows: u64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_p999: Duration,
    pub latency_max: Duration,
    /// p50, p99, p99.9 and max of the records that reached the sink before any source
    /// finished: the steady state, without the end-of-input flush.
    pub steady: [Duration; 4],
    /// What checkpointing did, with `--checkpoint-dir`.
    pub checkpoints: Option<weir::checkpoint::CheckpointStats>,
}

impl Report {
    /// Input events per second of wall time.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    /// The one-line JSON other tools rely on (key names and meanings are stable).
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"query\":\"{}\",\"cores\":{},\"events\":{},\"seconds\":{:.6},",
                "\"events_per_sec\":{:.1},\"events_per_sec_per_core\":{:.1},\"output_rows\":{},",
                "\"pinned\":{},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},",
                "\"steady_latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}}}"
            ),
            self.query.name(),
            self.cores,
            self.events,
            self.seconds,
            self.events_per_sec(),
            self.events_per_sec() / self.cores as f64,
            self.output_rows,
            self.pinned,
            self.latency_p50.as_micros(),
            self.latency_p99.as_micros(),
            self.latency_p999.as_micros(),
            self.latency_max.as_micros(),
            self.steady[0].as_micros(),
            self.steady[1].as_micros(),
            self.steady[2].as_micros(),
            self.steady[3].as_micros(),
        )
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        if let Some(c) = &self.checkpoints
            && c.already_complete
        {
            return format!(
                "query {}: the job already completed in an earlier run (its checkpoint \
                 directory says so); nothing to do",
                self.query.name()
            );
        }
        let mut text = self.measures_text();
        if let Some(c) = &self.checkpoints {
            let mut d = c.durations_us.clone();
            d.sort_unstable();
            let median = d.get(d.len() / 2).copied().unwrap_or(0);
            text.push_str(&format!(
                "\n  checkpoints: {} completed, {} aborted, attempts {}, resumed from {}, \
                 median duration {} us, max alignment {} us, max snapshot copy {} us",
                c.completed,
                c.aborted,
                c.attempts,
                c.restored_from
                    .map_or("nothing".to_string(), |id| format!("checkpoint {id}")),
                median,
                c.max_align_us,
                c.max_snapshot_us
            ));
            for p in &c.savepoints {
                text.push_str(&format!("\n  savepoint: {}", p.display()));
            }
        }
        text
    }

    fn measures_text(&self) -> String {
        format!(
            "query {}: {} events on {} core(s){} in {:.3} s\n  throughput: {:.0} events/s ({:.0} per core)\n  output rows: {}\n  latency (ingest to sink): p50 {} us, p99 {} us, p99.9 {} us, max {} us\n  before end of input: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            self.query.name(),
            self.events,
            self.cores,
            if self.pinned {
                ", pinned"
            } else {
                ", unpinned"
            },
            self.seconds,
            self.events_per_sec(),
            self.events_per_sec() / self.cores as f64,
            self.output_rows,
            self.latency_p50.as_micros(),
            self.latency_p99.as_micros(),
            self.latency_p999.as_micros(),
            self.latency_max.as_micros(),
            self.steady[0].as_micros(),
            self.steady[1].as_micros(),
            self.steady[2].as_micros(),
            self.steady[3].as_micros(),
        )
    }
}

/// Attaches the harness's sink: a CSV file or a directory of rolling CSV parts when an output
/// is given, a counter otherwise.
struct HarnessSink {
    output: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    roll: RollingPolicy,
    /// Why the requested output does not fit the query.
    refused: Option<String>,
}

impl RowSink for HarnessSink {
    fn attach<R: Data + CsvRecord>(&mut self, query: Query, rows: Stream<R>) {
        match (&self.output_dir, &self.output) {
            (Some(dir), _) => rows.sink(
                RollingFileSink::new(dir, Csv::with_header(query.header())).with_policy(self.roll),
            ),
            (None, Some(path)) => rows.sink(FileSink::new(path, Csv::with_header(query.header()))),
            (None, None) => {
                rows.count();
            }
        }
    }

    fn attach_partitioned<R: Data + CsvRecord>(
        &mut self,
        query: Query,
        rows: Stream<R>,
        partition: fn(&R, &mut String),
    ) {
        // Either output path is a directory of partitions.
        match self.output_dir.as_ref().or(self.output.as_ref()) {
            Some(dir) => rows.sink(
                PartitionedFileSink::new(dir, Csv::with_header(query.header()), partition)
                    .with_policy(self.roll),
            ),
            None => {
                rows.count();
            }
        }
    }

    fn attach_changelog<R: Data + CsvRecord>(&mut self, query: Query, changes: Stream<Change<R>>) {
        if self.output_dir.is_some() {
            self.refused = Some(format!(
                "{} produces an updating table, written once at the end: use --output FILE, \
                 not --output-dir",
                query.name()
            ));
        }
        match &self.output {
            Some(path) => changes.sink(TableSink::new(path, query.header())),
            None => {
                changes.count();
            }
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] weir::WeirError),
    #[error(transparent)]
    SideInput(#[from] SideInputError),
    /// The requested output does not fit the query.
    #[error("{0}")]
    Output(String),
}

/// Runs `spec` to completion.
pub fn run(spec: &RunSpec) -> std::result::Result<Report, RunError> {
    let mut builder = Env::builder()
        .cores(spec.cores)
        .batch_size(spec.batch_size)
        .state_backend(spec.state.clone());
    if let Some(spin) = spec.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    if let Some(c) = &spec.checkpoint {
        let mut config = CheckpointConfig::new(&c.dir, c.interval);
        config.restore_from = c.restore_from.clone();
        builder = builder.checkpointing(config);
        if let Some(after) = c.stop_with_savepoint_after {
            let handle = builder.savepoint_handle();
            std::thread::spawn(move || {
                std::thread::sleep(after);
                handle.request(true);
            });
        }
    }
    let env = builder.build()?;
    let mut source = NexmarkSource::new(spec.generator, spec.events)?;
    if let Some(rate) = spec.rate {
        source = source.with_rate(rate)?;
    }
    let mut events: Stream<Event> = crate::queries::events(&env, source);
    if let Some(n) = spec.fail_after_events {
        events = events.map(move |e| {
            static SEEN: AtomicU64 = AtomicU64::new(0);
            static FAILED: AtomicBool = AtomicBool::new(false);
            if SEEN.fetch_add(1, Ordering::Relaxed) == n && !FAILED.swap(true, Ordering::Relaxed) {
                panic!("injected failure after {n} events (--fail-after-events)");
            }
            e
        });
    }
    let mut sink = HarnessSink {
        output: spec.output.clone(),
        output_dir: spec.output_dir.clone(),
        roll: spec.roll,
        refused: None,
    };
    let options = QueryOptions {
        side_input: spec.side_input.clone(),
    };
    build_with(spec.query, &events, &mut sink, &options)?;
    if let Some(why) = sink.refused {
        return Err(RunError::Output(why));
    }
    let result = env.execute()?;
    for op in &result.operators {
        tracing::info!(
            operator = %op.name,
            records_in = op.records_in,
            records_out = op.records_out,
            records_late = op.records_late,
            "operator counts"
        );
    }
    Ok(Report {
        query: spec.query,
        cores: result.shards,
        pinned: result.pinned,
        // What the generator emitted in this run: less than `--events` when it resumed from a
        // checkpoint or stopped with a savepoint (the event stream is the first source).
        events: result
            .operators
            .iter()
            .find(|o| o.name == "source")
            .map_or(spec.events, |o| o.records_out),
        seconds: result.duration.as_secs_f64(),
        output_rows: result.records_in("sink"),
        latency_p50: result.latency_at(0.5),
        latency_p99: result.latency_at(0.99),
        latency_p999: result.latency_at(0.999),
        latency_max: Duration::from_nanos(result.latency.max()),
        steady: [
            result.steady_latency_at(0.5),
            result.steady_latency_at(0.99),
            result.steady_latency_at(0.999),
            Duration::from_nanos(result.latency_steady.max()),
        ],
        checkpoints: result.checkpoints,
    })
}
