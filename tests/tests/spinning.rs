//! `EnvBuilder::spin_before_park` makes idle shards poll instead of sleeping: measured as this
//! process's CPU time against the same job with sleeping shards, so this test lives alone in
//! its own binary (other tests would add their CPU time).

use std::time::Duration;

use weir::Env;
use weir_tests::{Trickle, trickle_job};

/// 1200 events at 2000 events/s across an exchange (about 0.6 s, mostly waiting).
fn trickle(spin: Option<Duration>) -> Trickle {
    let mut builder = Env::builder().cores(2);
    if let Some(spin) = spin {
        builder = builder.spin_before_park(spin);
    }
    let env = builder.build().expect("valid configuration");
    trickle_job(&env, 1200, 2000)
}

#[test]
fn spinning_shards_poll_while_idle() {
    let sleeping = trickle(None).cpu;
    // Longer than the gaps between the source's batches (0.5–1 ms), so a shard never sleeps.
    let Trickle {
        cpu: spinning,
        wall,
        pinned,
    } = trickle(Some(Duration::from_millis(5)));
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
