//! An idle shard must not burn its core: measured as this process's CPU time, so this test
//! lives alone in its own binary (other tests would add their CPU time).

use weir::Env;
use weir_tests::{Trickle, trickle_job};

#[test]
fn idle_shards_park_instead_of_spinning() {
    // 1500 events at 1500 events/s: about a second of mostly waiting, across an exchange.
    let env = Env::builder()
        .cores(2)
        .build()
        .expect("valid configuration");
    let Trickle { cpu, wall, .. } = trickle_job(&env, 1500, 1500);
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
