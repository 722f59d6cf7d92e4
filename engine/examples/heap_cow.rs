//! Copy-on-write cost of the heap state backend, without the engine around it: fills a
//! backend with `N` keys (16-byte values, like the `state` benchmark's), takes a snapshot, and
//! overwrites every key once while the snapshot is held, then once more with no snapshot.
//! Prints the snapshot (freeze) time, the chunk count and the copies' mean and longest time,
//! per chunk size limit.
//!
//! `cargo run --release -p weir --example heap_cow -- [keys] [chunk limits...]`

use std::time::Instant;

use weir::state::{HeapStateBackend, StateBackend, StateId};

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut limits: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if limits.is_empty() {
        limits = vec![256, 1024, 4096];
    }
    for limit in limits {
        let mut b = HeapStateBackend::with_chunk_entries(limit);
        let key = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
        let started = Instant::now();
        for i in 0..keys {
            let k = key(i);
            let kg = (i % 64) as u32;
            if b.put(StateId(0), kg, &k, b"", &[1u8; 16]).is_err() {
                eprintln!("put failed");
                return;
            }
        }
        let fill = started.elapsed();
        b.take_cow_stats();
        let started = Instant::now();
        let view = b.freeze(0..64);
        let freeze = started.elapsed();
        let started = Instant::now();
        for i in 0..keys {
            let _ = b.put(StateId(0), (i % 64) as u32, &key(i), b"", &[2u8; 16]);
        }
        let with_view = started.elapsed();
        let cow = b.take_cow_stats();
        let started = Instant::now();
        let encoded: usize = view.into_snapshots().map(|(_, s)| s.as_bytes().len()).sum();
        let encode = started.elapsed();
        let started = Instant::now();
        for i in 0..keys {
            let _ = b.put(StateId(0), (i % 64) as u32, &key(i), b"", &[3u8; 16]);
        }
        let without_view = started.elapsed();
        println!(
            "limit {limit}: {keys} keys in {} chunks (fill {:.0} ms); freeze {:.0} µs; \
             overwrite all with the view held {:.0} ms ({} copies, mean {:.1} µs, longest \
             {:.1} µs, {} splits), without {:.0} ms; encode {:.0} ms ({} MB)",
            b.chunks(),
            fill.as_secs_f64() * 1e3,
            freeze.as_secs_f64() * 1e6,
            with_view.as_secs_f64() * 1e3,
            cow.copies,
            cow.pause_ns as f64 / cow.copies.max(1) as f64 / 1e3,
            cow.max_pause_ns as f64 / 1e3,
            cow.splits,
            without_view.as_secs_f64() * 1e3,
            encode.as_secs_f64() * 1e3,
            encoded >> 20,
        );
    }
}
