//! Regression test for the fillrandom stall: glommio 0.9's executor loop can park with
//! runnable tasks when a latency-ring completion (here: the preemption timer) lands between
//! its I/O poll and its first `need_preempt()` check, and then sleeps until some unrelated
//! completion arrives (see `storage/src/keepalive.rs`). A spinning thread on the executor's
//! CPU makes the executor lose its CPU inside that window often; a short preemption period
//! (a `Latency::Matters` queue) makes every such loss trigger the wrong park. Writes that
//! stall on flushes then wait on wake-ups from the flush task: without the store's keepalive
//! the run hangs (seen within seconds). With the old timer-based keepalive and flush and
//! compaction as two tasks it hung in about one run in three (a wrong park in the iteration
//! where the keepalive's own timer fired, with no other timer armed); the deadline turns a
//! hang into a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use weir_storage::{BackgroundShares, Store, StoreOptions};

/// The run fails once no write has completed for this long (a healthy run completes
/// thousands per second, even in a debug build sharing its CPU with the spinner; generous,
/// because a loaded machine can starve the pinned executor for many seconds).
const NO_PROGRESS: Duration = Duration::from_secs(60);
/// Writes of 100-byte values into 64 KiB memtables: hundreds of flushes.
const WRITES: u64 = 50_000;

fn pin_to(cpu: usize) {
    // SAFETY: `set` is a plain bit set on a zeroed `cpu_set_t` owned by this frame, and
    // `sched_setaffinity(0, ..)` only changes the calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn stalled_writes_make_progress_when_the_executor_parks_with_runnable_tasks() {
    let cpu = 0;
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin_to(cpu);
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let (done_tx, done_rx) = mpsc::channel();
    let progress = Arc::new(AtomicU64::new(0));
    let progress_w = progress.clone();
    std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .io_memory(2 << 20)
            .make()
            .expect("executor");
        let written = ex.run(async move {
            let fg = glommio::executor().create_task_queue(
                Shares::Static(1000),
                Latency::Matters(Duration::from_micros(200)),
                "writer",
            );
            let shares = BackgroundShares::new(100, 1000);
            let bg = glommio::executor().create_task_queue(
                shares.shares(),
                Latency::NotImportant,
                "background",
            );
            let opts = StoreOptions {
                memtable_bytes: 64 << 10,
                max_immutable_memtables: 1,
                block_cache_bytes: 1 << 20,
                level1_bytes: 256 << 10,
                target_file_bytes: 64 << 10,
                background_queue: Some(bg),
                background_shares: Some(shares),
                ..StoreOptions::default()
            };
            glommio::spawn_local_into(
                async move {
                    let s = Store::open(&path, opts).await.expect("open");
                    let n = WRITES;
                    for i in 0..n {
                        let k = (i.wrapping_mul(2_654_435_761) % n).to_be_bytes();
                        s.put(k, [7u8; 100]).await.expect("put");
                        progress_w.store(i + 1, Ordering::Relaxed);
                    }
                    s.close().await.expect("close");
                    n
                },
                fg,
            )
            .expect("spawn writer")
            .await
        });
        let _ = done_tx.send(written);
    });
    let mut seen = 0;
    let r = loop {
        match done_rx.recv_timeout(NO_PROGRESS) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                if now == seen {
                    break Err(now);
                }
                seen = now;
            }
            Ok(n) => break Ok(n),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(u64::MAX),
        }
    };
    stop.store(true, Ordering::Relaxed);
    spinner.join().expect("spinner");
    assert_eq!(
        r,
        Ok(WRITES),
        "no write completed for {NO_PROGRESS:?} (writes done: Err(n)): lost wake-up"
    );
}
