//! Work-around for a lost wake-up in glommio 0.9's executor loop.
//!
//! `LocalExecutor::run` calls `run_task_queues` after polling I/O; that returns `false`
//! ("nothing ran") when `need_preempt()` is already true before the first queue ran — the
//! preemption timer (100 ms, or a `Latency::Matters` queue's period) or any other latency-ring
//! completion (the eventfd written by glommio's blocking thread, its throughput timer, a
//! latency-sensitive I/O) landed in the few microseconds since the poll, e.g. because the
//! thread was descheduled there on a busy machine. The loop then parks, although task queues
//! hold runnable tasks. `park` consumes that completion, counts nothing woken and sleeps in
//! `io_uring_enter` until some *other* completion arrives: a timer, an I/O, a foreign wake.
//! If the only work left is runnable tasks woken in-process — a writer woken by the flush that
//! released `flush_lock`, a freshly spawned flush task, a yielded task — nothing ever arrives
//! and the shard hangs (observed: a 10 M-key fillrandom parked for 5 minutes until a debugger's
//! signal interrupted the syscall; upstream fixed the same bug after 0.9.0, which is still the
//! latest release).
//!
//! The store cannot change the executor loop, so it keeps a timer armed while its work can be
//! waiting on such a wake-up: a "keepalive" task sleeps in `period` steps while the store has a
//! background task queued or running, or a task waiting on one of its locks, and for two more
//! ticks after the last of them. A park that should not have happened then ends at the next
//! tick: a wrong park costs at most `period` instead of forever, and an idle store arms no
//! timer (an idle shard still sleeps).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Idle ticks the keepalive task waits after its last holder left before it exits: the
/// holder that left may just have woken another task, which the next tick protects.
const LINGER_TICKS: u32 = 2;

/// Counts who may be waiting for an in-process wake-up; runs the ticking task while any do.
#[derive(Debug)]
pub(crate) struct Keepalive {
    period: Option<Duration>,
    holders: Cell<usize>,
    running: Cell<bool>,
    /// Ticks since the task started (for tests).
    ticks: Cell<u64>,
}

/// While alive, the keepalive task keeps a timer armed.
#[derive(Debug)]
pub(crate) struct Hold(Rc<Keepalive>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.holders.set(self.0.holders.get() - 1);
    }
}

impl Keepalive {
    /// `None` disables the work-around.
    pub(crate) fn new(period: Option<Duration>) -> Rc<Self> {
        Rc::new(Self {
            period,
            holders: Cell::new(0),
            running: Cell::new(false),
            ticks: Cell::new(0),
        })
    }

    /// Registers a holder and starts the ticking task if it is not running. Must be called
    /// on the store's executor.
    pub(crate) fn hold(self: &Rc<Self>) -> Hold {
        self.holders.set(self.holders.get() + 1);
        if let Some(period) = self.period
            && !self.running.replace(true)
        {
            let me = self.clone();
            glommio::spawn_local(async move {
                let mut idle = 0;
                while idle < LINGER_TICKS {
                    glommio::timer::sleep(period).await;
                    me.ticks.set(me.ticks.get() + 1);
                    idle = if me.holders.get() == 0 { idle + 1 } else { 0 };
                }
                me.running.set(false);
            })
            .detach();
        }
        Hold(self.clone())
    }

    /// Is the ticking task running?
    #[cfg(test)]
    pub(crate) fn running(&self) -> bool {
        self.running.get()
    }

    /// Ticks so far.
    #[cfg(test)]
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        std::thread::spawn(move || {
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(2 << 20)
                .make()
                .expect("executor")
                .run(f())
        })
        .join()
        .expect("executor thread");
    }

    #[test]
    fn ticks_while_held_and_stops_after_lingering() {
        run(|| async {
            // Waits for a condition (bounded generously: a loaded machine may deschedule the
            // executor for a while, so the test asserts what happens, not how fast).
            async fn eventually(what: impl Fn() -> bool) -> bool {
                for _ in 0..5000 {
                    if what() {
                        return true;
                    }
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                what()
            }
            let k = Keepalive::new(Some(Duration::from_millis(1)));
            let h = k.hold();
            assert!(k.running());
            assert!(eventually(|| k.ticks() >= 3).await, "ticks {}", k.ticks());
            assert!(k.running(), "held: must keep ticking");
            drop(h);
            assert!(eventually(|| !k.running()).await, "no holder: must stop");
            let t = k.ticks();
            glommio::timer::sleep(Duration::from_millis(10)).await;
            assert_eq!(k.ticks(), t);
            // A new holder restarts it.
            let _h = k.hold();
            assert!(k.running());
        });
    }

    #[test]
    fn disabled_never_runs() {
        run(|| async {
            let k = Keepalive::new(None);
            let _h = k.hold();
            assert!(!k.running());
        });
    }
}
