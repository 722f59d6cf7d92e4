//! Work-around for a lost wake-up in glommio 0.9's executor loop.
//!
//! `LocalExecutor::run` calls `run_task_queues` after polling I/O; that returns `false`
//! ("nothing ran") when `need_preempt()` is already true before the first queue ran — the
//! preemption timer (100 ms, or a `Latency::Matters` queue's period) or any other latency-ring
//! completion landed in the few microseconds since the poll, e.g. because the thread was
//! descheduled there on a busy machine. The loop then parks although task queues hold
//! runnable tasks: `park` consumes that completion, counts nothing woken and sleeps in
//! `io_uring_enter` until some *other* completion arrives — a user timer's deadline, an I/O,
//! a foreign wake. If the only work left is tasks woken in-process (a writer woken by the flush
//! that released `flush_lock`, a freshly spawned flush task, a yielded task) and no timer is
//! armed, nothing ever arrives and the shard hangs (upstream fixed the loop after 0.9.0, which
//! is still the latest release).
//!
//! **Why a timer is not enough.** The first version of this guard kept a glommio timer armed
//! (a task sleeping in `period` steps). A timer, however, is disarmed by its own firing: the
//! reactor fires due timers at the start of an iteration (`poll_io` → `process_timers`), which
//! wakes the ticking task, and only that task, once it runs, arms the next one. If the same
//! iteration parks wrongly and no other timer is pending (a writer sleeping out a slowdown has
//! one; a writer that is not paused, a compaction doing I/O-free work, or a task waiting on a
//! lock have none), the park sleeps with no deadline — forever. Observed with debug counters in
//! glommio: the hung executor sat in `io_uring_enter` with the writer and background queues
//! both active and the park armed with no user timer, after a *single* wrong park; the ticking
//! task had been woken by its last tick and never ran. Splitting flush and compaction into two
//! tasks made this common (the writer paused less, so the keepalive tick was more often the
//! only timer), but the hole is the same on the single-task code and explains its rare hangs.
//!
//! **The guard now.** One process-wide thread ("weir-keepalive") wakes, every `period`, a task
//! waker of each store that has work in flight. A waker woken from another thread goes through
//! glommio's foreign-wake path: it is queued for the executor and, if the executor sleeps,
//! its eventfd is written, which ends any park. Nothing on the executor has to run to keep this
//! armed, so a wrong park costs at most `period` however often it happens. The store holds the
//! guard while it has a background task queued or running or a task waiting on one of its locks,
//! and for [`LINGER_TICKS`] more ticks after the last of them (the holder that left may just
//! have woken another task); an idle store is never woken, and with no store busy the thread
//! sleeps on a condition variable. The woken waker belongs to a small "anchor" task that does
//! nothing when polled (until it first runs, the waker of the task that opened the store).

use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Idle ticks the thread keeps waking a store after its last holder left.
const LINGER_TICKS: u32 = 2;

/// What the keepalive thread and one store share.
#[derive(Debug)]
struct Slot {
    period: Duration,
    /// Tasks that may wait for an in-process wake-up (see the module doc).
    holders: AtomicUsize,
    /// The thread is waking this slot (set by a holder, cleared by the thread after lingering).
    active: AtomicBool,
    /// Wakes the store's executor; taken out (on the executor) when the store is dropped.
    waker: Mutex<Option<Waker>>,
    /// Wakes sent (for tests).
    ticks: AtomicU64,
}

/// The thread's list of slots.
#[derive(Debug, Default)]
struct Registry {
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Signalled when a slot becomes active.
    kick: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can leave the data inconsistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry, starting its thread on first use; `None` if the thread could not start.
fn registry() -> Option<&'static Arc<Registry>> {
    static REGISTRY: OnceLock<Option<Arc<Registry>>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            let r = Arc::new(Registry::default());
            let thread_r = r.clone();
            match std::thread::Builder::new()
                .name("weir-keepalive".into())
                .spawn(move || run_thread(&thread_r))
            {
                Ok(_) => Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the store keepalive thread");
                    None
                }
            }
        })
        .as_ref()
}

/// The thread: while any slot is active, wake each active slot every (shortest) period.
fn run_thread(r: &Registry) {
    let mut slots = lock(&r.slots);
    // Idle ticks per slot, parallel to `slots`.
    let mut idle: Vec<u32> = Vec::new();
    let mut next_tick: Option<Instant> = None;
    loop {
        // Drop slots whose store is gone (only the registry holds them).
        let mut i = 0;
        while i < slots.len() {
            if Arc::strong_count(&slots[i]) == 1 {
                slots.swap_remove(i);
                if i < idle.len() {
                    idle.swap_remove(i);
                }
            } else {
                i += 1;
            }
        }
        idle.resize(slots.len(), 0);
        let period = slots
            .iter()
            .filter(|s| s.active.load(Ordering::SeqCst))
            .map(|s| s.period)
            .min();
        let Some(period) = period else {
            next_tick = None;
            slots = r.kick.wait(slots).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        let due = *next_tick.get_or_insert(now + period);
        if now < due {
            slots = r
                .kick
                .wait_timeout(slots, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        next_tick = Some(now + period);
        for (s, idle) in slots.iter().zip(idle.iter_mut()) {
            if !s.active.load(Ordering::SeqCst) {
                continue;
            }
            *idle = if s.holders.load(Ordering::SeqCst) > 0 {
                0
            } else {
                *idle + 1
            };
            s.ticks.fetch_add(1, Ordering::Relaxed);
            if let Some(w) = lock(&s.waker).as_ref() {
                w.wake_by_ref();
            }
            if *idle >= LINGER_TICKS {
                // Deactivate unless a holder arrived meanwhile: it either sees `active`
                // false and kicks us, or we see its count here (both sides SeqCst).
                s.active.store(false, Ordering::SeqCst);
                if s.holders.load(Ordering::SeqCst) > 0 {
                    s.active.store(true, Ordering::SeqCst);
                    *idle = 0;
                }
            }
        }
    }
}

/// One store's guard (or one engine shard's: the runtime holds one for its executor's whole
/// life, as any task of a shard can be left unrun by a wrong park); `!Send` handle over the
/// shared slot.
#[derive(Debug)]
pub struct Keepalive {
    /// `None`: disabled.
    slot: Option<Arc<Slot>>,
}

/// While alive, the thread keeps waking the store's executor.
#[derive(Debug)]
pub struct Hold(Option<Arc<Slot>>);

/// Borrowed [`Hold`].
#[derive(Debug)]
pub(crate) struct HoldRef<'a>(Option<&'a Arc<Slot>>);

impl Drop for HoldRef<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.holders.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.holders.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Keepalive {
    /// `None` disables the work-around. Must run on the store's executor (it registers the
    /// calling task's waker, then an anchor task's). Fails if the thread cannot start.
    pub async fn new(period: Option<Duration>) -> std::io::Result<Rc<Self>> {
        let Some(period) = period else {
            return Ok(Rc::new(Self { slot: None }));
        };
        let registry = registry().ok_or_else(|| {
            std::io::Error::other("the store keepalive thread could not be started")
        })?;
        // Completes at once: no suspension, so no park before the waker is in place.
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let slot = Arc::new(Slot {
            period,
            holders: AtomicUsize::new(0),
            active: AtomicBool::new(false),
            waker: Mutex::new(Some(waker)),
            ticks: AtomicU64::new(0),
        });
        lock(&registry.slots).push(slot.clone());
        let me = Rc::new(Self {
            slot: Some(slot.clone()),
        });
        // The anchor: its waker replaces the opener's (so the opener is not woken spuriously
        // for the store's lifetime); it ends once the store is dropped.
        let alive: Weak<Self> = Rc::downgrade(&me);
        glommio::spawn_local(std::future::poll_fn(move |cx| {
            if alive.strong_count() == 0 {
                return Poll::Ready(());
            }
            let mut w = lock(&slot.waker);
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            Poll::Pending
        }))
        .detach();
        Ok(me)
    }

    /// Registers a holder; the thread starts waking the executor if it was not.
    pub fn hold(&self) -> Hold {
        Hold(self.activate().cloned())
    }

    /// [`Keepalive::hold`] for the span of one call (no reference count to bump): for the
    /// foreground's own suspensions — a write's yield or pause, an async read's I/O — which
    /// a wrong park can leave unrun as well when no background work holds the guard.
    pub(crate) fn hold_ref(&self) -> HoldRef<'_> {
        HoldRef(self.activate())
    }

    fn activate(&self) -> Option<&Arc<Slot>> {
        let s = self.slot.as_ref()?;
        s.holders.fetch_add(1, Ordering::SeqCst);
        // Load first: the common case (already active) then costs no second read-modify-write.
        if !s.active.load(Ordering::SeqCst)
            && !s.active.swap(true, Ordering::SeqCst)
            && let Some(r) = registry()
        {
            let _slots = lock(&r.slots);
            r.kick.notify_one();
        }
        Some(s)
    }

    /// Is the thread waking this store?
    #[cfg(test)]
    pub(crate) fn running(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|s| s.active.load(Ordering::SeqCst))
    }

    /// Wakes sent so far.
    #[cfg(test)]
    pub(crate) fn ticks(&self) -> u64 {
        self.slot
            .as_ref()
            .map_or(0, |s| s.ticks.load(Ordering::Relaxed))
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        if let Some(s) = &self.slot {
            s.active.store(false, Ordering::SeqCst);
            // Taken and woken here, on the executor: the anchor sees the store gone and ends,
            // and the thread never drops a task waker (glommio handles a foreign drop of the
            // last reference by queueing it to the executor, which may be gone).
            let w = lock(&s.waker).take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

/// Wakes itself and returns `Pending` once: an in-process wake-up, the kind a wrong park
/// leaves unrun.
#[cfg(test)]
struct YieldOnce(bool);

#[cfg(test)]
impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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

    // Waits for a condition (bounded generously: a loaded machine may deschedule the
    // executor for a while, so the tests assert what happens, not how fast).
    async fn eventually(what: impl Fn() -> bool) -> bool {
        for _ in 0..5000 {
            if what() {
                return true;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        what()
    }

    #[test]
    fn ticks_while_held_and_stops_after_lingering() {
        run(|| async {
            let k = Keepalive::new(Some(Duration::from_millis(1)))
                .await
                .expect("keepalive");
            assert!(!k.running(), "nothing held yet: must not wake anything");
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
            assert!(eventually(|| k.ticks() > t).await, "restarted: must tick");
        });
    }

    #[test]
    fn disabled_never_runs() {
        run(|| async {
            let k = Keepalive::new(None).await.expect("keepalive");
            let _h = k.hold();
            assert!(!k.running());
            assert_eq!(k.ticks(), 0);
        });
    }

    /// The mechanism behind the lost_wakeup hangs, without a store. A spinning thread shares
    /// the executor's CPU, so the executor is now and then descheduled between its I/O poll
    /// and its first `need_preempt()` check; with a 20 µs preemption period that makes glommio
    /// 0.9 park with runnable tasks. The only task yields in a loop (in-process wake-ups, no
    /// timer, no I/O), so every keepalive tick is the moment the old timer-based keepalive
    /// left nothing armed: a wrong park right then slept forever (see the module doc). The
    /// run lasts 3,000 ticks; a deadline turns a hang into a failure.
    #[test]
    fn yielding_task_survives_wrong_parks() {
        const TICKS: u64 = 3000;
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
                .io_memory(2 << 20)
                .make()
                .expect("executor")
                .run(async move {
                    let tq = glommio::executor().create_task_queue(
                        glommio::Shares::Static(1000),
                        glommio::Latency::Matters(Duration::from_micros(20)),
                        "short-preempt",
                    );
                    let k = Keepalive::new(Some(Duration::from_millis(1)))
                        .await
                        .expect("keepalive");
                    glommio::spawn_local_into(
                        async move {
                            let _h = k.hold();
                            let mut i = 0u64;
                            while k.ticks() < TICKS {
                                YieldOnce(false).await;
                                i += 1;
                                if i.is_multiple_of(1000) {
                                    let _ = tx.send(k.ticks());
                                }
                            }
                            let _ = tx.send(u64::MAX);
                        },
                        tq,
                    )
                    .expect("spawn")
                    .await;
                })
        });
        let mut ticks = 0;
        let r = loop {
            // Generous: a loaded machine can deschedule the executor for seconds.
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(u64::MAX) => break Ok(()),
                Ok(t) => ticks = t,
                Err(e) => break Err(e),
            }
        };
        stop.store(true, Ordering::Relaxed);
        spinner.join().expect("spinner");
        assert_eq!(
            r,
            Ok(()),
            "no progress for 30 s after {ticks} ticks: lost wake-up"
        );
    }

    fn pin_to(cpu: usize) {
        // SAFETY: `set` is a plain bit set on a zeroed `cpu_set_t` owned by this frame, and
        // `sched_setaffinity(0, ..)` only changes the calling thread's affinity.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}
