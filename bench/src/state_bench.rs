//! `state` benchmark: one keyed process function with large managed state on the heap or the
//! LSM backend, with checkpoints, to measure what the backend costs per record and how long a
//! checkpoint stops record processing.
//!
//! The job keeps, per (bidder, auction) of the Nexmark bids (q18's key: millions of keys), the
//! latest bid price and time in a `ValueState`, and emits nothing: the state is the whole
//! point. The report gives events/s, the checkpoints' trigger-to-complete times, the
//! synchronous snapshot of one shard at a barrier (median and longest: the pause), on the heap
//! backend what copy-on-write cost afterwards (chunk copies and splits, each a short pause).

use std::path::PathBuf;
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::nexmark::{Event, NexmarkConfig};
use weir::source::nexmark::NexmarkSource;
use weir::state::{
    KeyedStateStore, LsmStateConfig, StateBackendConfig, StateError, ValueState,
    ValueStateDescriptor,
};
use weir::{Env, KeyedProcessFunction, ProcessContext};

/// Command-line arguments of the `state` benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// heap or lsm.
    #[arg(long, default_value = "heap")]
    pub backend: String,
    /// Events to generate (about 92% are bids).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Shards.
    #[arg(long, default_value_t = 2)]
    pub cores: usize,
    /// Milliseconds between checkpoints (0: no checkpoints).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
    /// Scratch directory for checkpoints and LSM state (wiped first).
    #[arg(long, default_value = "/tmp/weir-state-bench")]
    pub dir: PathBuf,
    /// LSM memtable size per store, MiB.
    #[arg(long, default_value_t = 16)]
    pub memtable_mb: usize,
}

/// Latest (price, time) per (bidder, auction).
#[derive(Clone, Default)]
struct LatestBid {
    latest: Option<ValueState<(i64, i64)>>,
}

impl KeyedProcessFunction<(i64, i64), Event, ()> for LatestBid {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.latest = Some(store.value_state(&ValueStateDescriptor::new("latest"))?);
        Ok(())
    }

    fn process(&mut self, _key: &(i64, i64), event: Event, ctx: &mut ProcessContext<'_, ()>) {
        let (Event::Bid(b), Some(latest)) = (event, self.latest) else {
            return;
        };
        let result = ctx.state().and_then(|store| {
            let newer = latest
                .get(store)?
                .is_none_or(|(_, time)| b.date_time >= time);
            if newer {
                latest.set(store, &(b.price, b.date_time))?;
            }
            Ok(())
        });
        if let Err(e) = result {
            // A state backend error (an LSM store's I/O) fails the job, not the record.
            ctx.fail(e);
        }
    }
}

/// Runs the benchmark and prints one report line.
pub fn run(args: &StateArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    let backend = match args.backend.as_str() {
        "heap" => StateBackendConfig::Heap,
        "lsm" => {
            let mut config = LsmStateConfig::new(args.dir.join("state"));
            config.memtable_bytes = args.memtable_mb << 20;
            StateBackendConfig::Lsm(config)
        }
        other => anyhow::bail!("unknown --backend `{other}` (heap or lsm)"),
    };
    let mut builder = Env::builder().cores(args.cores).state_backend(backend);
    if args.checkpoint_interval_ms > 0 {
        builder = builder.checkpointing(CheckpointConfig::new(
            args.dir.join("checkpoints"),
            Duration::from_millis(args.checkpoint_interval_ms),
        ));
    }
    let env = builder.build()?;
    env.from_source(NexmarkSource::new(NexmarkConfig::default(), args.events)?)
        .filter(|e: &Event| matches!(e, Event::Bid(_)))
        .key_by(|e: &Event| match e {
            Event::Bid(b) => (b.bidder, b.auction),
            _ => (0, 0),
        })
        .process(LatestBid::default())
        .count();
    let result = env.execute()?;
    let secs = result.duration.as_secs_f64();
    let mut line = format!(
        "state bench: backend {} cores {} events {} in {:.2} s = {:.2} M events/s",
        args.backend,
        args.cores,
        args.events,
        secs,
        args.events as f64 / secs / 1e6
    );
    if let Some(c) = &result.checkpoints {
        let mut d = c.durations_us.clone();
        d.sort_unstable();
        let median = d.get(d.len() / 2).copied().unwrap_or(0);
        let max = d.last().copied().unwrap_or(0);
        let mut pauses = c.snapshot_us.clone();
        pauses.sort_unstable();
        let median_pause = pauses.get(pauses.len() / 2).copied().unwrap_or(0);
        line.push_str(&format!(
            "; checkpoints {} (median {:.1} ms, max {:.1} ms), shard snapshot pause median {:.2} \
             ms, longest {:.2} ms",
            c.completed,
            median as f64 / 1e3,
            max as f64 / 1e3,
            median_pause as f64 / 1e3,
            c.max_snapshot_us as f64 / 1e3
        ));
        if c.cow.copies + c.cow.splits > 0 {
            let copies = c.cow.copies + c.cow.splits;
            line.push_str(&format!(
                "; copy-on-write: {} chunk copies ({} entries) + {} splits, median {}-{} µs, \
                 p99 {}-{} µs, mean {:.1} µs, longest {:.2} ms, total {:.0} ms; longest \
                 encode (coordinator) {:.0} ms",
                c.cow.copies,
                c.cow.copied_entries,
                c.cow.splits,
                c.cow.pause_quantile_us(0.5),
                c.cow.pause_quantile_us(0.5) * 2,
                c.cow.pause_quantile_us(0.99),
                c.cow.pause_quantile_us(0.99) * 2,
                c.cow.pause_ns as f64 / copies as f64 / 1e3,
                c.cow.max_pause_ns as f64 / 1e6,
                c.cow.pause_ns as f64 / 1e6,
                c.max_encode_us as f64 / 1e3
            ));
        }
    }
    println!("{line}");
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}
