//! Throughput micro benchmark: one producer thread, one consumer thread.
//!
//! Run: `cargo run --release --example spsc_throughput [u64_items] [batches]`
//!
//! Compares `weir::channel::spsc` with `crossbeam_channel::bounded` and
//! `rtrb` 0.3, all busy-polling (`try_*` + `spin_loop`), capacity 1024. The
//! batch case moves `Vec<u64>` batches of 64 items and recycles the vectors
//! through a return channel of the same kind (no allocation in steady state).

use std::hint::spin_loop;
use std::thread;
use std::time::{Duration, Instant};

use weir::channel::spsc;

const CAP: usize = 1024;
const BATCH: usize = 64;

/// Minimal common interface over the three channels.
trait Tx<T>: Send + 'static {
    /// `Err(Some(v))` full, `Err(None)` receiver gone.
    fn try_send(&mut self, v: T) -> Result<(), Option<T>>;
}
trait Rx<T>: Send + 'static {
    /// `Ok(Some)` item, `Ok(None)` empty, `Err` closed and drained.
    fn try_recv(&mut self) -> Result<Option<T>, ()>;
}

impl<T: Send + 'static> Tx<T> for spsc::Producer<T> {
    #[inline]
    fn try_send(&mut self, v: T) -> Result<(), Option<T>> {
        self.try_push(v).map_err(|e| match e {
            spsc::PushError::Full(v) => Some(v),
            spsc::PushError::Closed(_) => None,
        })
    }
}
impl<T: Send + 'static> Rx<T> for spsc::Consumer<T> {
    #[inline]
    fn try_recv(&mut self) -> Result<Option<T>, ()> {
        match self.try_pop() {
            Ok(v) => Ok(Some(v)),
            Err(spsc::PopError::Empty) => Ok(None),
            Err(spsc::PopError::Closed) => Err(()),
        }
    }
}

impl<T: Send + 'static> Tx<T> for crossbeam_channel::Sender<T> {
    #[inline]
    fn try_send(&mut self, v: T) -> Result<(), Option<T>> {
        crossbeam_channel::Sender::try_send(self, v).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(v) => Some(v),
            crossbeam_channel::TrySendError::Disconnected(_) => None,
        })
    }
}
impl<T: Send + 'static> Rx<T> for crossbeam_channel::Receiver<T> {
    #[inline]
    fn try_recv(&mut self) -> Result<Option<T>, ()> {
        match crossbeam_channel::Receiver::try_recv(self) {
            Ok(v) => Ok(Some(v)),
            Err(crossbeam_channel::TryRecvError::Empty) => Ok(None),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err(()),
        }
    }
}

impl<T: Send + 'static> Tx<T> for rtrb::Producer<T> {
    #[inline]
    fn try_send(&mut self, v: T) -> Result<(), Option<T>> {
        match self.push(v) {
            Ok(()) => Ok(()),
            Err(_) if self.is_abandoned() => Err(None),
            Err(rtrb::PushError::Full(v)) => Err(Some(v)),
        }
    }
}
impl<T: Send + 'static> Rx<T> for rtrb::Consumer<T> {
    #[inline]
    fn try_recv(&mut self) -> Result<Option<T>, ()> {
        match self.pop() {
            Ok(v) => Ok(Some(v)),
            Err(rtrb::PopError::Empty) if self.is_abandoned() => {
                // Re-check after observing abandonment (items pushed before
                // the producer was dropped).
                self.pop().map(Some).map_err(|_| ())
            }
            Err(rtrb::PopError::Empty) => Ok(None),
        }
    }
}

/// Sends `v`, spinning while full. Returns `false` if the receiver is gone.
#[inline]
fn send_spin<T>(tx: &mut impl Tx<T>, mut v: T) -> bool {
    loop {
        match tx.try_send(v) {
            Ok(()) => return true,
            Err(Some(back)) => {
                v = back;
                spin_loop();
            }
            Err(None) => return false,
        }
    }
}

fn bench_u64<P: Tx<u64>, C: Rx<u64>>(mut tx: P, mut rx: C, n: u64) -> Duration {
    let start = Instant::now();
    let producer = thread::spawn(move || {
        for i in 0..n {
            assert!(send_spin(&mut tx, i), "consumer gone");
        }
    });
    let mut sum = 0u64;
    let mut count = 0u64;
    loop {
        match rx.try_recv() {
            Ok(Some(v)) => {
                sum = sum.wrapping_add(v);
                count += 1;
            }
            Ok(None) => spin_loop(),
            Err(()) => break,
        }
    }
    let elapsed = start.elapsed();
    producer.join().unwrap();
    assert_eq!(count, n);
    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2);
    elapsed
}

fn bench_batches<P, C, RP, RC>(chan: (P, C), ret: (RP, RC), batches: u64) -> Duration
where
    P: Tx<Vec<u64>>,
    C: Rx<Vec<u64>>,
    RP: Tx<Vec<u64>>,
    RC: Rx<Vec<u64>>,
{
    let (mut tx, mut rx) = chan;
    let (mut ret_tx, mut ret_rx) = ret;
    // Pre-fill the pool of reusable buffers (fills the return ring).
    for _ in 0..CAP {
        assert!(send_spin(&mut ret_tx, Vec::with_capacity(BATCH)));
    }
    let start = Instant::now();
    let producer = thread::spawn(move || {
        let mut next = 0u64;
        for _ in 0..batches {
            let mut buf = loop {
                match ret_rx.try_recv() {
                    Ok(Some(b)) => break b,
                    Ok(None) => spin_loop(),
                    Err(()) => panic!("return channel closed"),
                }
            };
            buf.clear();
            buf.extend(next..next + BATCH as u64);
            next += BATCH as u64;
            assert!(send_spin(&mut tx, buf), "consumer gone");
        }
    });
    let mut sum = 0u64;
    let mut count = 0u64;
    loop {
        match rx.try_recv() {
            Ok(Some(buf)) => {
                count += buf.len() as u64;
                sum = sum.wrapping_add(buf.iter().copied().fold(0u64, u64::wrapping_add));
                // At most CAP buffers exist, so the return ring has room; it
                // is closed once the producer has finished (buffer dropped).
                send_spin(&mut ret_tx, buf);
            }
            Ok(None) => spin_loop(),
            Err(()) => break,
        }
    }
    let elapsed = start.elapsed();
    producer.join().unwrap();
    let n = batches * BATCH as u64;
    assert_eq!(count, n);
    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2);
    elapsed
}

fn report(name: &str, items: u64, d: Duration) {
    println!(
        "{name:<40} {items:>12} items in {:>8.3} s = {:>8.1} M items/s",
        d.as_secs_f64(),
        items as f64 / d.as_secs_f64() / 1e6
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map_or(100_000_000, |s| s.parse().expect("u64 items"));
    let batches: u64 = args
        .next()
        .map_or(10_000_000, |s| s.parse().expect("batches"));

    println!("capacity {CAP}, busy-polling producer/consumer threads");
    let (p, c) = spsc::channel::<u64>(CAP);
    report("u64: weir spsc", n, bench_u64(p, c, n));
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAP);
    report("u64: rtrb 0.3", n, bench_u64(p, c, n));
    let (p, c) = crossbeam_channel::bounded::<u64>(CAP);
    report("u64: crossbeam_channel::bounded", n, bench_u64(p, c, n));

    if batches > 0 {
        let items = batches * BATCH as u64;
        let name = format!("Vec<u64>x{BATCH}: weir spsc");
        report(
            &name,
            items,
            bench_batches(spsc::channel(CAP), spsc::channel(CAP), batches),
        );
        let name = format!("Vec<u64>x{BATCH}: rtrb 0.3");
        report(
            &name,
            items,
            bench_batches(
                rtrb::RingBuffer::new(CAP),
                rtrb::RingBuffer::new(CAP),
                batches,
            ),
        );
        let name = format!("Vec<u64>x{BATCH}: crossbeam_channel::bounded");
        report(
            &name,
            items,
            bench_batches(
                crossbeam_channel::bounded(CAP),
                crossbeam_channel::bounded(CAP),
                batches,
            ),
        );
    }
}
