//! `maps` benchmark: the operators' growing per-key maps, `SegmentedMap` against the standard
//! `HashMap` with the same hasher, on q18's key shape ((bidder, auction) → a 64-byte row).
//!
//! What matters for latency is the slowest single insert: a `HashMap` doubles its table at
//! once (every entry moved), a `SegmentedMap` splits one segment. The report gives, per map,
//! inserts/s, the slowest insert and the p99.9 insert, then lookups/s over the filled map.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use weir::key::KeyMap;
use weir::segmented::SegmentedMap;

/// Command-line arguments of the `maps` benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct MapArgs {
    /// Distinct keys to insert.
    #[arg(long, default_value_t = 10_000_000)]
    pub keys: u64,
    /// Runs of each map (alternating); every run is reported.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
}

/// The value of one key: the size of a projected bid row.
type Row = [u64; 8];

/// The two maps behind one interface, so the measuring loop is the same code for both.
trait Map: Default {
    const NAME: &'static str;
    fn put(&mut self, key: (i64, i64), row: Row);
    fn find(&self, key: &(i64, i64)) -> Option<&Row>;
}

impl Map for KeyMap<(i64, i64), Row> {
    const NAME: &'static str = "HashMap";
    #[inline]
    fn put(&mut self, key: (i64, i64), row: Row) {
        self.insert(key, row);
    }
    #[inline]
    fn find(&self, key: &(i64, i64)) -> Option<&Row> {
        self.get(key)
    }
}

impl Map for SegmentedMap<(i64, i64), Row> {
    const NAME: &'static str = "SegmentedMap";
    #[inline]
    fn put(&mut self, key: (i64, i64), row: Row) {
        self.insert(key, row);
    }
    #[inline]
    fn find(&self, key: &(i64, i64)) -> Option<&Row> {
        self.get(key)
    }
}

/// A (bidder, auction) pair spread like distinct Nexmark keys.
#[inline]
fn key(i: u64) -> (i64, i64) {
    let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 40) as i64, (i ^ (mixed & 0xffff)) as i64)
}

fn measure<M: Map>(keys: u64) -> anyhow::Result<()> {
    let mut map = M::default();
    let mut inserts = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    for i in 0..keys {
        let t = Instant::now();
        map.put(key(i), [i; 8]);
        inserts.record(t.elapsed().as_nanos() as u64)?;
    }
    let fill = start.elapsed();
    let start = Instant::now();
    let mut found = 0u64;
    for i in 0..keys {
        // Every key, in a different order than inserted.
        let k = key(i.wrapping_mul(0x2545_f491_4f6c_dd1d) % keys);
        found += u64::from(black_box(map.find(&k)).is_some());
    }
    let lookups = start.elapsed();
    anyhow::ensure!(found == keys, "{}: {found} of {keys} keys found", M::NAME);
    let per_s = |d: Duration| keys as f64 / d.as_secs_f64();
    println!(
        "{:<13} inserts {:>6.2} M/s (p99.9 {} ns, slowest {:.2} ms)   lookups {:>6.2} M/s",
        M::NAME,
        per_s(fill) / 1e6,
        inserts.value_at_quantile(0.999),
        inserts.max() as f64 / 1e6,
        per_s(lookups) / 1e6,
    );
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: &MapArgs) -> anyhow::Result<()> {
    println!("{} distinct (i64, i64) keys, 64-byte values", args.keys);
    for _ in 0..args.runs {
        measure::<KeyMap<(i64, i64), Row>>(args.keys)?;
        measure::<SegmentedMap<(i64, i64), Row>>(args.keys)?;
    }
    Ok(())
}
