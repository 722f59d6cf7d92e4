//! Running jobs one after another in one process (an embedding service, `weir-bench suite
//! --same-process`) must not leak file descriptors. Alone in its own binary, so no other
//! test's jobs open descriptors meanwhile.
//!
//! glommio 0.9 itself leaks one eventfd per executor (its tasks hold the executor's sleep
//! notifier and can outlive it: upstream issue DataDog/glommio#448, unfixed in the latest
//! release). The test measures that leak on bare executors first and allows the jobs exactly
//! as much per executor: anything of Weir's own (files, rings, sockets) fails it, and a fixed
//! glommio tightens it to zero by itself.

use weir::Env;
use weir::nexmark::NexmarkConfig;
use weir::source::nexmark::NexmarkSource;

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Descriptors left open by `runs` calls of `f`, after one call to warm up (the first job
/// starts process-wide threads, such as the store keepalive).
fn leaked_by(runs: usize, mut f: impl FnMut(usize)) -> usize {
    f(0);
    let before = open_fds();
    for i in 0..runs {
        f(i);
    }
    open_fds().saturating_sub(before)
}

fn bare_executor() {
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(2 << 20)
        .spawn(|| async move { 1 })
        .expect("an executor starts");
    assert_eq!(handle.join().expect("the executor ends"), 1);
}

fn one_job(cores: usize) {
    let env = Env::builder()
        .cores(cores)
        .build()
        .expect("valid configuration");
    let source = NexmarkSource::new(NexmarkConfig::default(), 20_000).expect("valid source");
    let count = env
        .from_source(source)
        .key_by(|e| e.date_time() % 7)
        .partitioned()
        .count();
    env.execute().expect("job runs");
    assert_eq!(count.count(), 20_000);
}

#[test]
fn jobs_in_a_row_leave_no_descriptors_of_their_own() {
    const RUNS: usize = 10;
    let per_executor = leaked_by(RUNS, |_| bare_executor()) / RUNS;
    // 1 and 2 shards in turn: 15 executors.
    let executors: usize = (0..RUNS).map(|i| 1 + i % 2).sum();
    let leaked = leaked_by(RUNS, |i| one_job(1 + i % 2));
    assert!(
        leaked <= per_executor * executors,
        "{RUNS} jobs on {executors} executors left {leaked} file descriptors open; glommio \
         alone leaks {per_executor} per executor"
    );
}
