//! `EnvBuilder::spin_before_park` makes idle shards poll instead of sleeping: measured as this
//! process's CPU time against the same job with sleeping shards, so this test lives alone in
//! its own binary (other tests would add their CPU time).

use std::time::{Duration, Instant};

use weir::Env;
use weir::nexmark::NexmarkConfig;
use weir::source::nexmark::NexmarkSource;
use weir_tests::process_cpu_seconds;

/// Runs 1200 events at 2000 events/s across an exchange (about 0.6 s, mostly waiting);
/// returns (CPU seconds, wall seconds, whether the shards were pinned).
fn trickle(spin: Option<Duration>) -> (f64, f64, bool) {
    let mut builder = Env::builder().cores(2);
    if let Some(spin) = spin {
        builder = builder.spin_before_park(spin);
    }
    let env = builder.build().expect("valid configuration");
    let source = NexmarkSource::new(NexmarkConfig::default(), 1200)
        .and_then(|s| s.with_rate(2000))
        .expect("valid source");
    let count = env
        .from_source(source)
        .key_by(|e| e.date_time() % 7)
        .partitioned()
        .count();
    let cpu_before = process_cpu_seconds().expect("/proc/self/stat is readable");
    let wall = Instant::now();
    let result = env.execute().expect("job runs");
    let wall = wall.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds().expect("/proc/self/stat is readable") - cpu_before;
    assert_eq!(count.count(), 1200, "every event arrives, spinning or not");
    (cpu, wall, result.pinned)
}

#[test]
fn spinning_shards_poll_while_idle() {
    let (sleeping, _, _) = trickle(None);
    // Longer than the gaps between the source's batches (0.5–1 ms), so a shard never sleeps.
    let (spinning, wall, pinned) = trickle(Some(Duration::from_millis(5)));
    eprintln!("sleeping shards: {sleeping:.2} CPU-s; spinning: {spinning:.2} CPU-s in {wall:.2} s");
    if !pinned {
        // glommio spins only on executors bound to a CPU (fewer CPUs than shards here).
        eprintln!("shards ran unpinned: nothing to compare");
        return;
    }
    // Two polling shards use close to 2 CPU-seconds per second; sleeping ones a fraction of
    // one (tests/tests/parking.rs). Half of polling still tells them apart on a loaded machine.
    assert!(
        spinning > 0.5 * 2.0 * wall && spinning > 2.0 * sleeping,
        "spinning shards used {spinning:.2} CPU-s in {wall:.2} s, sleeping ones {sleeping:.2}"
    );
}
