//! An idle shard must not burn its core: measured as this process's CPU time, so this test
//! lives alone in its own binary (other tests would add their CPU time).

use std::time::Instant;

use weir::Env;
use weir::nexmark::NexmarkConfig;
use weir::source::nexmark::NexmarkSource;
use weir_tests::process_cpu_seconds;

#[test]
fn idle_shards_park_instead_of_spinning() {
    // 1500 events at 1500 events/s: about a second of mostly waiting, across an exchange.
    let env = Env::builder()
        .cores(2)
        .build()
        .expect("valid configuration");
    let source = NexmarkSource::new(NexmarkConfig::default(), 1500)
        .and_then(|s| s.with_rate(1500))
        .expect("valid source");
    let count = env
        .from_source(source)
        .key_by(|e| e.date_time() % 7)
        .partitioned()
        .count();
    let cpu_before = process_cpu_seconds().expect("/proc/self/stat is readable");
    let wall = Instant::now();
    env.execute().expect("job runs");
    let wall = wall.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds().expect("/proc/self/stat is readable") - cpu_before;
    assert_eq!(count.count(), 1500);
    assert!(wall > 0.8, "the rate limit was not applied: {wall} s");
    eprintln!("idle shards used {cpu:.2} CPU-s in {wall:.2} s");
    // Two spinning shards would use 2 CPU-seconds per second. Parked ones use 0.3–0.5 here
    // (debug build: process start, executors, the rate limiter's wake-ups, the 10 ms
    // keepalive and processing-time ticks crossing the exchange); half of spinning still
    // tells the two apart with room for a loaded machine.
    assert!(
        cpu < 1.0 * wall,
        "idle shards used {cpu:.2} CPU-s in {wall:.2} s"
    );
}
