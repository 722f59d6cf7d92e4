//! Random puts and gets on the heap backend, optionally with a chunk size limit:
//! `cargo run --release -p weir --example put_speed -- [keys] [chunk limit]`.

use std::time::Instant;
use weir::state::{HeapStateBackend, StateBackend, StateId};
fn main() {
    let keys: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let key = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
    let limit: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(weir::state::DEFAULT_CHUNK_ENTRIES);
    let mut b = HeapStateBackend::with_chunk_entries(limit);
    for round in 0..3u8 {
        let started = Instant::now();
        for i in 0..keys {
            let _ = b.put(StateId(0), (i % 64) as u32, &key(i), b"", &[round; 16]);
        }
        let put = started.elapsed();
        let started = Instant::now();
        let mut n = 0;
        for i in 0..keys {
            n += b
                .get(StateId(0), (i % 64) as u32, &key(i), b"")
                .map(|v| v.map_or(0, |v| v.len()))
                .unwrap_or(0);
        }
        println!(
            "round {round}: put {:.0} ns/op, get {:.0} ns/op ({n})",
            put.as_secs_f64() * 1e9 / keys as f64,
            started.elapsed().as_secs_f64() * 1e9 / keys as f64
        );
    }
}
