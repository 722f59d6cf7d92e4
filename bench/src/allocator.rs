//! The harness allocates through jemalloc, not glibc's malloc.
//!
//! Why: batches cross shards. A batch's vector (and whatever its records own) is allocated on
//! the shard that fills it and freed on the shard that drains it, unless the exchange's
//! `VecPool` takes it back. glibc gives every thread an arena guarded by a mutex and returns a
//! freed chunk to the arena that allocated it, so a shard freeing the other's batch takes the
//! other's arena lock while that shard allocates: a lock on the hot path, between the shards.
//! glibc also grows a thread's arena one page at a time, with one `mprotect` call per page.
//!
//! Measured (2 cores, `nexmark --query q20 --events 10000000 --cores 2 --rate 12460000
//! --event-rate 10000`, half of q20's maximum): 37 700–50 400 `futex` calls per run with glibc,
//! from `realloc`, `malloc` and the inbox's frees, against about 100 with jemalloc; q16 made
//! 41 900 `mprotect` calls against 24. Over four interleaved rounds the median p99 fell from
//! 514 to 127 µs (q20), 694 to 277 (q15), 390 to 162 (q19), 358 to 160 (q6) and 286 to 129
//! (q9); q16 and q18 were alike; throughput was within noise (BENCHMARKS.md, "jemalloc").
//!
//! mimalloc was tried too: its p99 for q6, q16, q18 and q19 was 5–9 ms here.
//!
//! The engine is a library and leaves the choice of allocator to the program that embeds
//! it; README.md recommends this one.

/// The global allocator of `weir-bench`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(test)]
mod tests {
    use tikv_jemalloc_ctl::{epoch, stats};

    /// The allocator in use really is jemalloc: memory the program allocates shows in
    /// jemalloc's own count (under glibc, that count would not move). Other tests run
    /// alongside and free memory too, hence the margin.
    #[test]
    fn allocations_go_through_jemalloc() {
        const SIZE: usize = 64 << 20;
        let allocated = || {
            epoch::advance().map_err(|e| e.to_string())?;
            stats::allocated::read().map_err(|e| e.to_string())
        };
        let before = allocated().expect("reading jemalloc's statistics");
        let block = std::hint::black_box(vec![1u8; SIZE]);
        let during = allocated().expect("reading jemalloc's statistics");
        assert!(
            during >= before + SIZE / 2,
            "jemalloc counted {before} bytes before and {during} with a {SIZE}-byte block live"
        );
        drop(block);
    }
}
