//! `weir-bench`: the benchmark harness.
//!
//! `weir-bench nexmark --query q1` runs a Nexmark query and prints throughput and latency;
//! `weir-bench nexmark-data` writes the generated events as CSV for other engines.

mod lsm;
mod map_bench;
mod state_bench;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use weir::RollingPolicy;
use weir::nexmark::{DEFAULT_BASE_TIME_MS, DEFAULT_FIRST_EVENT_RATE, Generator, NexmarkConfig};
use weir::state::{LsmStateConfig, StateBackendConfig};
use weir_bench::queries::Query;
use weir_bench::runner::{CheckpointSpec, RunSpec, run};

#[derive(Parser)]
#[command(
    name = "weir-bench",
    about = "Benchmarks for the Weir stream processor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Nexmark query and report throughput and latency.
    Nexmark(Box<NexmarkArgs>),
    /// Write the generated events as person.csv, auction.csv and bid.csv.
    NexmarkData(DataArgs),
    /// Run every query at several core counts and print a markdown table of medians.
    Suite(SuiteArgs),
    /// LSM store workloads (fillseq, fillrandom, readrandom, ...) against weir-storage and
    /// fjall in the same process.
    Lsm(lsm::LsmArgs),
    /// Large keyed state on the heap or the LSM backend, with checkpoints: throughput and the
    /// checkpoint pause.
    State(state_bench::StateArgs),
    /// The operators' growing maps: SegmentedMap against HashMap (insert pauses, lookups).
    Maps(map_bench::MapArgs),
}

#[derive(Args)]
struct SuiteArgs {
    /// Queries to run (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Events per run.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Core counts to run at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    cores: Vec<usize>,
    /// Runs per (query, cores); the table shows the median. Runs go in rounds over all the
    /// queries (not all of one query's runs in a row), so a slow spell of the machine costs
    /// each query at most one run and the median drops it.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also measure latency at this fixed input rate (events/s), at the largest core count.
    /// Latency is measured `--runs` times too, and each percentile is the median over the
    /// runs: one descheduling of a vCPU can set a single run's p99.
    #[arg(long)]
    latency_rate: Option<u64>,
    /// Events of each latency run.
    #[arg(long, default_value_t = 5_000_000)]
    latency_events: u64,
    /// Measure latency at half of each query's median throughput at the largest core count
    /// (the targets' "half the maximum rate"), each run lasting `--latency-seconds`.
    #[arg(long, conflicts_with = "latency_rate")]
    latency_at_half: bool,
    /// Wall-clock length of each `--latency-at-half` run.
    #[arg(long, default_value_t = 2.0)]
    latency_seconds: f64,
    /// Generator event rate (events per second of event time) of the latency runs: near the
    /// input rate, windows close during the run, so the steady-state column (rows that reached
    /// the sink before the input ended) is the window-close latency, not the end-of-input flush.
    #[arg(long)]
    latency_event_rate: Option<u64>,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// Generator options shared by `nexmark` and `nexmark-data`.
#[derive(Args, Clone, Copy)]
struct GeneratorArgs {
    /// Events per second of event time (the generator's first_event_rate).
    #[arg(long, default_value_t = DEFAULT_FIRST_EVENT_RATE)]
    event_rate: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Event time of the first event, ms since the Unix epoch (default 2026-01-01 00:00 UTC).
    #[arg(long, default_value_t = DEFAULT_BASE_TIME_MS)]
    base_time: i64,
}

impl GeneratorArgs {
    fn config(self) -> NexmarkConfig {
        NexmarkConfig {
            seed: self.seed,
            first_event_rate: self.event_rate,
            base_time_ms: self.base_time,
            ..NexmarkConfig::default()
        }
    }
}

#[derive(Args)]
struct NexmarkArgs {
    /// The query: gen (generator only) or q0–q22.
    #[arg(long, default_value = "q0")]
    query: String,
    /// Number of events to generate.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Shards (cores); default all available.
    #[arg(long)]
    cores: Option<usize>,
    /// Limit the input to this many events per second (for latency runs).
    #[arg(long)]
    rate: Option<u64>,
    /// Write the query's result rows to this CSV file (q10: a directory of partitions).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the result rows as rolling CSV part files into this directory, each shard its
    /// own parts (`part-<shard>-…csv`, each with the header); with `--checkpoint-dir` they are
    /// committed exactly once. Not for the updating queries (q4, q6, q9, q15–q19).
    #[arg(long, conflicts_with = "output")]
    output_dir: Option<PathBuf>,
    /// Close a part of directory output once it holds this many bytes (default 128 MiB).
    #[arg(long)]
    roll_bytes: Option<u64>,
    /// Close a part of directory output once it has been open this long (default 60 s).
    #[arg(long)]
    roll_interval_ms: Option<u64>,
    /// Print exactly one JSON line.
    #[arg(long)]
    json: bool,
    /// Most records per source batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// q13's side table: a `key,value` CSV file (default: a generated one in the temp dir).
    #[arg(long)]
    side_input: Option<PathBuf>,
    /// Take checkpoints into this directory; a run with the same arguments resumes from the
    /// latest one, and `--output` is written exactly once (two-phase commit).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Milliseconds between checkpoints (with `--checkpoint-dir`).
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// Restore from this checkpoint or savepoint directory when `--checkpoint-dir` holds none
    /// of its own (to resume a savepoint, possibly at another `--cores`).
    #[arg(long)]
    restore_from: Option<PathBuf>,
    /// Take a savepoint this many milliseconds after the start and stop the job there.
    #[arg(long)]
    stop_with_savepoint_after_ms: Option<u64>,
    /// Test hook: panic once in the query's first operator after this many events, to
    /// exercise recovery (with `--checkpoint-dir`).
    #[arg(long, hide = true)]
    fail_after_events: Option<u64>,
    /// Where keyed process functions keep their state: heap (in memory) or lsm (an LSM store
    /// per operator instance under --state-dir, for state larger than memory).
    #[arg(long, value_enum, default_value_t = StateKind::Heap)]
    state: StateKind,
    /// Base directory of the LSM state (with `--state lsm`); each run works in a
    /// subdirectory it removes at the end.
    #[arg(long, default_value = "/tmp/weir-state")]
    state_dir: PathBuf,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// The `--state` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StateKind {
    Heap,
    Lsm,
}

#[derive(Args)]
struct DataArgs {
    /// Number of events to generate.
    #[arg(long)]
    events: u64,
    /// Directory to write person.csv, auction.csv and bid.csv into.
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    generator: GeneratorArgs,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Nexmark(args) => nexmark(*args),
        Command::NexmarkData(args) => nexmark_data(args),
        Command::Suite(args) => suite(args),
        Command::Lsm(args) => lsm::run(&args),
        Command::State(args) => state_bench::run(&args),
        Command::Maps(args) => map_bench::run(&args),
    }
}

fn nexmark(args: NexmarkArgs) -> Result<()> {
    let query: Query = args.query.parse().map_err(anyhow::Error::msg)?;
    let cores = match args.cores {
        Some(c) => c,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    let mut roll = RollingPolicy::default();
    if let Some(bytes) = args.roll_bytes {
        roll = roll.max_part_bytes(bytes);
    }
    if let Some(ms) = args.roll_interval_ms {
        roll = roll.rollover_interval(std::time::Duration::from_millis(ms));
    }
    let spec = RunSpec {
        query,
        events: args.events,
        cores,
        rate: args.rate,
        output: args.output,
        output_dir: args.output_dir,
        roll,
        generator: args.generator.config(),
        batch_size: args.batch_size,
        side_input: args.side_input,
        checkpoint: args.checkpoint_dir.map(|dir| CheckpointSpec {
            dir,
            interval: std::time::Duration::from_millis(args.checkpoint_interval_ms.max(1)),
            restore_from: args.restore_from,
            stop_with_savepoint_after: args
                .stop_with_savepoint_after_ms
                .map(std::time::Duration::from_millis),
        }),
        fail_after_events: args.fail_after_events,
        state: match args.state {
            StateKind::Heap => StateBackendConfig::Heap,
            StateKind::Lsm => StateBackendConfig::Lsm(LsmStateConfig::new(args.state_dir)),
        },
    };
    let report = run(&spec).with_context(|| format!("running nexmark {}", query.name()))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(())
}

fn nexmark_data(args: DataArgs) -> Result<()> {
    let generator = Generator::new(args.generator.config()).context("generator configuration")?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let counts = weir::nexmark::write_event_dump(&generator, args.events, &args.dir)
        .with_context(|| format!("writing events to {}", args.dir.display()))?;
    println!(
        "wrote {} persons, {} auctions, {} bids to {}",
        counts.persons,
        counts.auctions,
        counts.bids,
        args.dir.display()
    );
    Ok(())
}

fn suite(args: SuiteArgs) -> Result<()> {
    let queries: Vec<Query> = if args.queries.is_empty() {
        Query::ALL.to_vec()
    } else {
        args.queries
            .iter()
            .map(|q| q.parse().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    };
    if args.runs == 0 || args.cores.is_empty() {
        bail!("--runs and --cores must not be empty");
    }
    let spec = |query, cores, events, rate| RunSpec {
        query,
        events,
        cores,
        rate,
        output: None,
        output_dir: None,
        roll: RollingPolicy::default(),
        generator: args.generator.config(),
        batch_size: 1024,
        side_input: None,
        checkpoint: None,
        fail_after_events: None,
        state: StateBackendConfig::Heap,
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut header = String::from("| query |");
    let mut rule = String::from("|---|");
    for c in &args.cores {
        header.push_str(&format!(" {c} core(s): M events/s |"));
        rule.push_str("---:|");
    }
    if args.cores.len() >= 2 {
        header.push_str(" speed-up |");
        rule.push_str("---:|");
    }
    if args.latency_rate.is_some() || args.latency_at_half {
        header.push_str(" latency rate (M/s) | latency p50 / p99 / p99.9 (us) | steady p50 / p99 / p99.9 (us) |");
        rule.push_str("---:|---:|---:|");
    }
    // Rounds go over every query before the next one starts: a slow spell of the VM (they last
    // seconds to minutes here) then costs each query at most one run, which the median drops,
    // instead of all the runs of the queries it happened to fall on.
    let mut throughput = vec![vec![Vec::with_capacity(args.runs); args.cores.len()]; queries.len()];
    for round in 1..=args.runs {
        for (per_cores, &query) in throughput.iter_mut().zip(&queries) {
            for (samples, &cores) in per_cores.iter_mut().zip(&args.cores) {
                let report = run(&spec(query, cores, args.events, None))
                    .with_context(|| format!("running {} at {cores} cores", query.name()))?;
                samples.push(report.events_per_sec());
            }
        }
        eprintln!("suite: throughput round {round}/{} done", args.runs);
    }
    let rates: Vec<Vec<f64>> = throughput
        .into_iter()
        .map(|per_cores| per_cores.into_iter().map(median).collect())
        .collect();
    let cores = args.cores.iter().copied().max().unwrap_or(1);
    let max_cores_at = args.cores.iter().position(|&c| c == cores);
    // Each query's latency run (rate, events), if one is asked for.
    let latency_runs: Vec<Option<(u64, u64)>> = rates
        .iter()
        .map(
            |r| match (args.latency_rate, max_cores_at.and_then(|i| r.get(i))) {
                (Some(rate), _) => Some((rate, args.latency_events)),
                (None, Some(max)) if args.latency_at_half => {
                    let rate = (max / 2.0).max(1.0) as u64;
                    let events = (rate as f64 * args.latency_seconds).max(1.0) as u64;
                    Some((rate, events))
                }
                _ => None,
            },
        )
        .collect();
    let mut percentiles: Vec<[Vec<f64>; 6]> = vec![Default::default(); queries.len()];
    for round in 1..=args.runs {
        for ((samples, &query), latency) in percentiles.iter_mut().zip(&queries).zip(&latency_runs)
        {
            let Some((rate, events)) = *latency else {
                continue;
            };
            let mut s = spec(query, cores, events, Some(rate));
            if let Some(event_rate) = args.latency_event_rate {
                s.generator.first_event_rate = event_rate;
            }
            let r = run(&s).with_context(|| format!("latency run of {}", query.name()))?;
            let [s50, s99, s999, _] = r.steady;
            let all = [r.latency_p50, r.latency_p99, r.latency_p999, s50, s99, s999];
            for (v, d) in samples.iter_mut().zip(all) {
                v.push(d.as_micros() as f64);
            }
        }
        if latency_runs.iter().any(Option::is_some) {
            eprintln!("suite: latency round {round}/{} done", args.runs);
        }
    }
    println!("{header}\n{rule}");
    for (((query, per_cores), latency), samples) in queries
        .iter()
        .zip(&rates)
        .zip(&latency_runs)
        .zip(percentiles)
    {
        let mut line = format!("| {} |", query.name());
        for m in per_cores {
            line.push_str(&format!(" {:.2} |", m / 1e6));
        }
        if let (Some(first), Some(last)) = (per_cores.first(), per_cores.last())
            && per_cores.len() >= 2
        {
            line.push_str(&format!(" {:.2}x |", last / first));
        }
        if let Some((rate, _)) = latency {
            let [p50, p99, p999, s50, s99, s999] = samples.map(median);
            line.push_str(&format!(
                " {:.2} | {p50} / {p99} / {p999} | {s50} / {s99} / {s999} |",
                *rate as f64 / 1e6
            ));
        }
        println!("{line}");
    }
    Ok(())
}
