//! Generator throughput: `cargo run --release --example gen_speed [events]`.
//! The generator bounds every benchmark's source rate, so track this number.
//! Prints events per wall second and per CPU second of this thread (Linux
//! schedstat), the latter being robust to other processes sharing the core.

use std::hint::black_box;
use std::time::Instant;

use weir::nexmark::{Event, EventKind, Generator, NexmarkConfig};

/// CPU time of this thread in ns, if the kernel exposes it.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn measure(label: &str, unit: &str, f: impl FnOnce() -> (u64, i64)) {
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let (count, checksum) = f();
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => format!(
            ", {:.1} M {unit}/s per CPU-second",
            count as f64 / ((b - a) as f64 / 1e9) / 1e6
        ),
        _ => String::new(),
    };
    println!(
        "{label}: {count} in {wall:.3} s = {:.1} M {unit}/s wall{cpu} (checksum {checksum})",
        count as f64 / wall / 1e6
    );
}

fn main() {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000_000);
    let generator = match Generator::new(NexmarkConfig::default()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gen_speed: {e}");
            std::process::exit(2);
        }
    };

    measure("all events", "events", || {
        let mut checksum = 0i64;
        for n in 0..events {
            let e = black_box(generator.event(n));
            checksum = checksum.wrapping_add(match e {
                Event::Person(p) => p.id ^ p.extra.len() as i64,
                Event::Auction(a) => a.reserve ^ a.extra.len() as i64,
                Event::Bid(b) => b.price ^ b.extra.len() as i64,
            });
        }
        (events, checksum)
    });

    // Bids only: the bulk of every query's input.
    measure("bids only", "bids", || {
        let mut bids = 0u64;
        let mut checksum = 0i64;
        for n in 0..events {
            if generator.kind(n) == EventKind::Bid
                && let Event::Bid(b) = black_box(generator.event(n))
            {
                checksum = checksum.wrapping_add(b.price ^ b.url.len() as i64);
                bids += 1;
            }
        }
        (bids, checksum)
    });
}
