//! Per-shard counters and the latency histogram, merged into a `JobResult` at the end.
//!
//! Counters are plain `Cell`s: a shard is one thread, so counting costs an add, not an atomic.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latency histograms record nanoseconds, up to one hour, with 3 significant digits.
pub(crate) fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// The counters of one shard.
pub(crate) struct ShardMetrics {
    pub records_in: Vec<Cell<u64>>,
    pub records_out: Vec<Cell<u64>>,
    pub records_late: Vec<Cell<u64>>,
    pub latency: RefCell<Histogram<u64>>,
    /// The same, only for batches that reached a sink before any source of the job finished:
    /// the steady state, without the end-of-input flush (where the final watermark fires every
    /// open window at once).
    pub latency_steady: RefCell<Histogram<u64>>,
    /// Set by the first source task of the job (any shard) that reads its last record.
    pub input_ended: Arc<AtomicBool>,
    /// The largest number of batches seen queued in any outgoing channel.
    pub max_queue_len: Cell<usize>,
    /// The most batches ever held back behind one full channel.
    pub max_held: Cell<usize>,
}

impl ShardMetrics {
    pub fn new(nodes: usize, input_ended: Arc<AtomicBool>) -> Self {
        ShardMetrics {
            records_in: (0..nodes).map(|_| Cell::new(0)).collect(),
            records_out: (0..nodes).map(|_| Cell::new(0)).collect(),
            records_late: (0..nodes).map(|_| Cell::new(0)).collect(),
            latency: RefCell::new(new_latency_histogram()),
            latency_steady: RefCell::new(new_latency_histogram()),
            input_ended,
            max_queue_len: Cell::new(0),
            max_held: Cell::new(0),
        }
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            records_in: self.records_in.iter().map(Cell::get).collect(),
            records_out: self.records_out.iter().map(Cell::get).collect(),
            records_late: self.records_late.iter().map(Cell::get).collect(),
            latency: self.latency.borrow().clone(),
            latency_steady: self.latency_steady.borrow().clone(),
            max_queue_len: self.max_queue_len.get(),
            max_held: self.max_held.get(),
        }
    }
}

/// What a shard hands back when it stops.
pub(crate) struct ShardSnapshot {
    pub records_in: Vec<u64>,
    pub records_out: Vec<u64>,
    pub records_late: Vec<u64>,
    pub latency: Histogram<u64>,
    pub latency_steady: Histogram<u64>,
    pub max_queue_len: usize,
    pub max_held: usize,
}

impl ShardMetrics {
    /// Records a sink batch of `n` records that took `nanos` from ingest (clamped to the
    /// histograms' bounds rather than lost).
    pub fn record_latency(&self, nanos: u64, n: u64) {
        let mut h = self.latency.borrow_mut();
        let v = nanos.clamp(1, h.high());
        let _ = h.record_n(v, n);
        if !self.input_ended.load(Ordering::Relaxed) {
            let _ = self.latency_steady.borrow_mut().record_n(v, n);
        }
    }
}

/// Record counts of one operator, summed over shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorStats {
    /// The operator's position in the job graph.
    pub id: usize,
    /// The operator's name (its kind, or the name the user gave).
    pub name: String,
    /// Records that entered the operator.
    pub records_in: u64,
    /// Records a source emitted (0 for other operators).
    pub records_out: u64,
    /// Records a window operator found too late for every window (sent to its `late` side
    /// output).
    pub records_late: u64,
}

/// What `Env::execute` returns for a job that ran to completion.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// Wall time from start of the shards to the end of the last one.
    pub duration: Duration,
    /// Number of shards the job ran on.
    pub shards: usize,
    /// Whether the shards were pinned to their own CPUs.
    pub pinned: bool,
    /// Per-operator record counts, in graph order.
    pub operators: Vec<OperatorStats>,
    /// End-to-end latency (source ingest to sink) in nanoseconds, one sample per record,
    /// stamped per batch.
    pub latency: Histogram<u64>,
    /// The same for the records that reached a sink before any source finished reading: the
    /// steady state, without the end-of-input flush (the final watermark fires every open
    /// window at once, so windowed queries' `latency` is mostly that flush).
    pub latency_steady: Histogram<u64>,
    /// The most batches ever queued in one cross-shard channel (never above its capacity).
    pub max_queue_len: usize,
    /// The most batches ever held back by a producer behind one full channel. The producer
    /// stops taking input as soon as anything is held, so this stays at a batch or two: it is
    /// what bounds memory under backpressure.
    pub max_held: usize,
    /// What checkpointing did (jobs with checkpoints only).
    pub checkpoints: Option<crate::checkpoint::CheckpointStats>,
}

impl JobResult {
    /// The result of a job that ran nothing (its checkpoint directory says it already
    /// completed).
    pub(crate) fn empty(shards: usize) -> Self {
        JobResult {
            duration: Duration::ZERO,
            shards,
            pinned: false,
            operators: Vec::new(),
            latency: super::metrics::new_latency_histogram(),
            latency_steady: super::metrics::new_latency_histogram(),
            max_queue_len: 0,
            max_held: 0,
            checkpoints: None,
        }
    }

    /// Records that entered the operator named `name` (summed if several share the name).
    pub fn records_in(&self, name: &str) -> u64 {
        self.operators
            .iter()
            .filter(|o| o.name == name)
            .map(|o| o.records_in)
            .sum()
    }

    /// Late records of the operator named `name` (summed if several share the name).
    pub fn records_late(&self, name: &str) -> u64 {
        self.operators
            .iter()
            .filter(|o| o.name == name)
            .map(|o| o.records_late)
            .sum()
    }

    /// Latency at `quantile` (0.0..=1.0), as a duration.
    pub fn latency_at(&self, quantile: f64) -> Duration {
        Duration::from_nanos(self.latency.value_at_quantile(quantile))
    }

    /// Steady-state latency at `quantile` (see [`JobResult::latency_steady`]).
    pub fn steady_latency_at(&self, quantile: f64) -> Duration {
        Duration::from_nanos(self.latency_steady.value_at_quantile(quantile))
    }
}
