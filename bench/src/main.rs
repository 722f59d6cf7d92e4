//! `weir-bench`: the benchmark harness.
//!
//! `weir-bench nexmark --query q1` runs a Nexmark query and prints throughput and latency;
//! `weir-bench nexmark-data` writes the generated events as CSV for other engines.

mod allocator;
mod hiccups;
mod lsm;
mod map_bench;
mod state_bench;
mod suite;

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
    Suite(suite::SuiteArgs),
    /// LSM store workloads (fillseq, fillrandom, readrandom, ...) against weir-storage and
    /// fjall in the same process.
    Lsm(lsm::LsmArgs),
    /// Large keyed state on the heap or the LSM backend, with checkpoints: throughput and the
    /// checkpoint pause.
    State(state_bench::StateArgs),
    /// The operators' growing maps: SegmentedMap against HashMap (insert pauses, lookups).
    Maps(map_bench::MapArgs),
    /// How often the machine stops a running thread: a pinned thread per core reads the
    /// clock in a loop and reports the gaps (the floor under every latency percentile).
    Hiccups(hiccups::HiccupArgs),
}

/// Generator options shared by `nexmark` and `nexmark-data`.
#[derive(Args, Clone, Copy)]
pub(crate) struct GeneratorArgs {
    /// Events per second of event time (the generator's first_event_rate).
    #[arg(long, default_value_t = DEFAULT_FIRST_EVENT_RATE)]
    pub(crate) event_rate: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Event time of the first event, ms since the Unix epoch (default 2026-01-01 00:00 UTC).
    #[arg(long, default_value_t = DEFAULT_BASE_TIME_MS)]
    pub(crate) base_time: i64,
}

impl GeneratorArgs {
    pub(crate) fn config(self) -> NexmarkConfig {
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
    /// Let idle shards poll this many microseconds before sleeping (lower latency across
    /// shards, more CPU).
    #[arg(long)]
    spin_us: Option<u64>,
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
        Command::Suite(args) => suite::run(args),
        Command::Lsm(args) => lsm::run(&args),
        Command::State(args) => state_bench::run(&args),
        Command::Maps(args) => map_bench::run(&args),
        Command::Hiccups(args) => hiccups::run(args),
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
        spin_before_park: args.spin_us.map(std::time::Duration::from_micros),
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
