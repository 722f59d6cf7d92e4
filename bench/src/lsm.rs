//! `lsm` benchmark: db_bench-style workloads against weir-storage and fjall
//! in the same process, with latency percentiles (hdrhistogram) and write /
//! space amplification after fillrandom + overwrite.
//!
//! Dropped into the bench binary as `bench/src/lsm.rs`; needs the crates
//! `weir-storage`, `glommio`, `fjall`, `hdrhistogram`, `clap`, `anyhow`.
//!
//! Workloads (all single-threaded, one op at a time, as a shard would):
//! fillseq, fillrandom, readrandom, readmissing, seekrandom (seek + 10
//! nexts), overwrite. Keys are 16 bytes, values `value_size` bytes of
//! incompressible data.
//!
//! Fairness: a write workload's time covers its puts only (as db_bench); then
//! each engine *settles* untimed — weir flushes and compacts until its levels
//! are within their targets, fjall flushes its memtable and waits until no
//! compaction has run for half a second — and the settle time is printed. So
//! reads never share the machine with the writer's leftover compaction
//! backlog (fjall compacts on background threads, which before this kept
//! running through fjall's reads, and weir's fill time used to include its own
//! backlog while fjall's did not). Both engines write through the page cache
//! and their data fits in RAM, so reads start from a warm page cache for both;
//! caches are not dropped (that would need root and disturb a shared machine).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Command-line arguments of the `lsm` benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct LsmArgs {
    /// Number of distinct keys loaded by fillseq / fillrandom.
    #[arg(long, default_value_t = 10_000_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Scratch directory (wiped per engine and workload).
    #[arg(long, default_value = "/tmp/weir-lsm-bench")]
    pub dir: PathBuf,
    /// Block cache size in MiB for both engines.
    #[arg(long, default_value_t = 64)]
    pub cache_mb: u64,
    /// Memtable size in MiB for both engines.
    #[arg(long, default_value_t = 64)]
    pub memtable_mb: u64,
    /// Operations for the read / seek workloads (default: min(keys, 1M)).
    #[arg(long)]
    pub reads: Option<u64>,
    /// Force `IoMode::Buffered` for the `weir` engine (page-cache writes
    /// and reads, whatever the store's default is).
    #[arg(long)]
    pub weir_buffered: bool,
    /// glommio preemption period of weir's executor in ms (how long one
    /// task queue, e.g. the background compactions, may run before the
    /// writer's queue gets the core back; glommio's default is 100).
    #[arg(long, default_value_t = 100)]
    pub preempt_ms: u64,
    /// Engines to run, comma separated: weir (the store's default I/O
    /// options), weir-odw (O_DIRECT writes, page-cache reads), weir-odirect
    /// (O_DIRECT writes and reads), fjall.
    #[arg(long, default_value = "weir,fjall")]
    pub engines: String,
    /// Workloads to run, comma separated (default: all). fillrandom always
    /// runs when any later workload is selected (it loads their data), but
    /// is only reported when listed.
    #[arg(
        long,
        default_value = "fillseq,fillrandom,readrandom,readmissing,seekrandom,overwrite"
    )]
    pub workloads: String,
}

impl LsmArgs {
    /// Is `w` among the selected workloads?
    fn wants(&self, w: &str) -> bool {
        self.workloads.split(',').any(|x| x.trim() == w)
    }
}

/// Runs all workloads for each selected engine and prints a table.
pub fn run(args: &LsmArgs) -> anyhow::Result<()> {
    println!(
        "lsm bench: keys={} value_size={} cache={}MiB memtable={}MiB weir_buffered={} dir={}",
        args.keys,
        args.value_size,
        args.cache_mb,
        args.memtable_mb,
        args.weir_buffered,
        args.dir.display()
    );
    println!(
        "{:<8} {:<12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "engine", "workload", "ops/s", "p50 us", "p99 us", "p99.9 us", "max us", "secs"
    );
    for engine in args
        .engines
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match engine {
            "weir" | "weir-odw" | "weir-odirect" => {
                let a = args.clone();
                let defaults = weir_storage::StoreOptions::default();
                let flavor = match engine {
                    "weir" if args.weir_buffered => Flavor {
                        label: "weir",
                        io_mode: weir_storage::IoMode::Buffered,
                        read_io: defaults.read_io,
                    },
                    "weir" => Flavor {
                        label: "weir",
                        io_mode: defaults.io_mode,
                        read_io: defaults.read_io,
                    },
                    "weir-odw" => Flavor {
                        label: "weir-odw",
                        io_mode: weir_storage::IoMode::Auto,
                        read_io: weir_storage::ReadIo::PageCache,
                    },
                    _ => Flavor {
                        label: "weir-od",
                        io_mode: weir_storage::IoMode::Auto,
                        read_io: weir_storage::ReadIo::Direct,
                    },
                };
                std::thread::spawn(move || -> anyhow::Result<()> {
                    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                        .io_memory(2 << 20)
                        .preempt_timer(Duration::from_millis(a.preempt_ms))
                        .make()
                        .map_err(|e| anyhow::anyhow!("glommio executor: {e}"))?;
                    // The foreground runs in the default queue. (A
                    // `Latency::Matters(1ms)` queue used to hang: glommio 0.9
                    // can park with runnable tasks, far more often with a 1 ms
                    // preemption period; the store's keepalive timer now bounds
                    // that, see storage/src/keepalive.rs.)
                    ex.run(weir_store::run(&a, flavor))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("weir bench thread panicked"))??;
            }
            "fjall" => fjall_bench::run(args)?,
            other => anyhow::bail!("unknown engine {other}"),
        }
    }
    Ok(())
}

/// I/O configuration of one weir run.
#[derive(Debug, Clone, Copy)]
struct Flavor {
    label: &'static str,
    io_mode: weir_storage::IoMode,
    read_io: weir_storage::ReadIo,
}

/// Latency recorder + printer shared by both engines.
struct Recorder {
    hist: Histogram<u64>,
    start: Instant,
    /// Set by [`Recorder::stop`]: the timed part ended (an untimed settle may follow).
    elapsed: Option<Duration>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds"),
            start: Instant::now(),
            elapsed: None,
        }
    }

    fn stop(&mut self) {
        self.elapsed = Some(self.start.elapsed());
    }

    fn record(&mut self, d: Duration) {
        let _ = self.hist.record((d.as_nanos() as u64).max(1));
    }

    fn print(&self, engine: &str, workload: &str) {
        let secs = self
            .elapsed
            .unwrap_or_else(|| self.start.elapsed())
            .as_secs_f64();
        let n = self.hist.len();
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<6} {:<12} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.0} {:>8.2}",
            engine,
            workload,
            n as f64 / secs,
            us(0.5),
            us(0.99),
            us(0.999),
            self.hist.max() as f64 / 1000.0,
            secs
        );
    }
}

/// Deterministic xorshift64* generator (no external RNG needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.to_be_bytes());
    k[..8].copy_from_slice(b"user0000");
    k
}

/// A key that sorts among the real keys but never exists.
fn missing_key(i: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..16].copy_from_slice(&key(i));
    k[16] = b'x';
    k
}

/// `i`-th key of a fixed pseudo-random permutation of `0..n`.
fn permuted(i: u64, n: u64) -> u64 {
    const P: u64 = 2_654_435_761; // prime, coprime with any n < P
    ((i as u128 * P as u128) % n as u128) as u64
}

/// Incompressible value source.
fn value_pool(size: usize) -> Vec<u8> {
    let mut r = Rng(0x1234_5678_9abc_def1);
    (0..(1 << 20) + size).map(|_| r.next() as u8).collect()
}

fn value(pool: &[u8], i: u64, size: usize) -> &[u8] {
    let off = (i.wrapping_mul(7919) % (1 << 20)) as usize;
    &pool[off..off + size]
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes this process caused to be written to storage (`/proc/self/io`).
fn proc_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("write_bytes: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn fresh_dir(p: &Path) -> anyhow::Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p)?;
    }
    std::fs::create_dir_all(p)?;
    Ok(())
}

fn print_amp(
    engine: &str,
    user_bytes: u64,
    disk_written: u64,
    internal: Option<u64>,
    live: u64,
    logical: u64,
) {
    let internal = internal.map_or(String::new(), |b| {
        format!(" (engine-counted {:.2})", b as f64 / user_bytes as f64)
    });
    println!(
        "{engine:<8} write-amp {:.2}{internal} [{} MiB written for {} MiB user data]; space-amp {:.2} [{} MiB on disk for {} MiB live]",
        disk_written as f64 / user_bytes as f64,
        disk_written >> 20,
        user_bytes >> 20,
        live as f64 / logical as f64,
        live >> 20,
        logical >> 20
    );
}

mod weir_store {
    use std::path::Path;
    use std::time::Instant;

    use weir_storage::{Stats, Store, StoreOptions};

    use super::*;

    fn opts(args: &LsmArgs, flavor: Flavor) -> StoreOptions {
        // Flush/compaction in their own queue whose shares (100..1000 vs
        // the foreground's 1000) follow the compaction debt.
        let shares = weir_storage::BackgroundShares::new(100, 1000);
        let background = glommio::executor().create_task_queue(
            shares.shares(),
            glommio::Latency::NotImportant,
            "lsm-background",
        );
        StoreOptions {
            background_queue: Some(background),
            background_shares: Some(shares),
            memtable_bytes: (args.memtable_mb << 20) as usize,
            block_cache_bytes: (args.cache_mb << 20) as usize,
            io_mode: flavor.io_mode,
            read_io: flavor.read_io,
            ..StoreOptions::default()
        }
    }

    async fn fill(
        args: &LsmArgs,
        dir: &Path,
        flavor: Flavor,
        name: &str,
        random: bool,
        pool: &[u8],
    ) -> anyhow::Result<Store> {
        fresh_dir(dir)?;
        let s = Store::open(dir, opts(args, flavor)).await?;
        let mut rec = Recorder::new();
        for i in 0..args.keys {
            let k = if random { permuted(i, args.keys) } else { i };
            let t = Instant::now();
            s.put(key(k), value(pool, i, args.value_size)).await?;
            rec.record(t.elapsed());
        }
        rec.stop();
        let paused = s.stats();
        settle(&s, flavor.label, name, args.wants(name)).await?;
        if args.wants(name) {
            rec.print(flavor.label, name);
            print_pauses(flavor.label, name, Stats::default(), paused);
        }
        Ok(s)
    }

    /// Writes the workload paused (slowdown, by cause) or stalled.
    fn print_pauses(label: &str, name: &str, before: Stats, after: Stats) {
        println!(
            "{label:<8} {name} paused writes: l0 {} memtable {} stalls {}",
            after.slowdowns_l0 - before.slowdowns_l0,
            after.slowdowns_memtable - before.slowdowns_memtable,
            after.stalls - before.stalls
        );
    }

    /// Untimed: flush the memtable and compact until the levels are within
    /// their targets (`Store::flush` does both).
    async fn settle(s: &Store, label: &str, after: &str, print: bool) -> anyhow::Result<()> {
        let t = Instant::now();
        s.flush().await?;
        if print {
            println!(
                "{label:<8} settle after {after}: {:.2} s, levels(files)={:?}",
                t.elapsed().as_secs_f64(),
                s.level_file_counts()
            );
        }
        Ok(())
    }

    pub(super) async fn run(args: &LsmArgs, flavor: Flavor) -> anyhow::Result<()> {
        let label = flavor.label;
        let pool = value_pool(args.value_size);
        let reads = args.reads.unwrap_or(args.keys.min(1_000_000));
        let dir = args.dir.join("weir");
        if args.wants("fillseq") {
            let s = fill(args, &dir, flavor, "fillseq", false, &pool).await?;
            s.close().await?;
        }

        let io0 = proc_write_bytes();
        let s = fill(args, &dir, flavor, "fillrandom", true, &pool).await?;
        let mut r = Rng(42);

        if args.wants("readrandom") {
            let mut rec = Recorder::new();
            let mut found = 0u64;
            for _ in 0..reads {
                let k = key(r.next() % args.keys);
                let t = Instant::now();
                found += u64::from(s.get(k).await?.is_some());
                rec.record(t.elapsed());
            }
            rec.print(label, "readrandom");
            anyhow::ensure!(found == reads, "weir readrandom found {found}/{reads}");
        }

        if args.wants("readmissing") {
            let mut rec = Recorder::new();
            for _ in 0..reads {
                let k = missing_key(r.next() % args.keys);
                let t = Instant::now();
                anyhow::ensure!(s.get(k).await?.is_none(), "missing key found");
                rec.record(t.elapsed());
            }
            rec.print(label, "readmissing");
        }

        if args.wants("seekrandom") {
            let mut rec = Recorder::new();
            for _ in 0..reads / 10 {
                let k = key(r.next() % args.keys);
                let t = Instant::now();
                let mut it = s.scan(k.as_slice()..).await?;
                for _ in 0..10 {
                    if it.next().await?.is_none() {
                        break;
                    }
                }
                rec.record(t.elapsed());
            }
            rec.print(label, "seekrandom");
        }

        if args.wants("overwrite") {
            let before = s.stats();
            let mut rec = Recorder::new();
            for i in 0..args.keys {
                let k = key(r.next() % args.keys);
                let t = Instant::now();
                s.put(k, value(&pool, i + 1, args.value_size)).await?;
                rec.record(t.elapsed());
            }
            rec.stop();
            let paused = s.stats();
            settle(&s, label, "overwrite", true).await?;
            rec.print(label, "overwrite");
            print_pauses(label, "overwrite", before, paused);
        }

        let st = s.stats();
        let live = dir_bytes(&dir);
        let disk = proc_write_bytes().saturating_sub(io0);
        let logical = args.keys * (16 + args.value_size as u64);
        print_amp(
            label,
            st.user_bytes,
            disk,
            Some(st.flush_bytes + st.compaction_bytes),
            live,
            logical,
        );
        println!(
            "{label:<8} levels(files)={:?} cache(hits,misses)={:?} mem={:?} direct_io={} direct_reads={}",
            s.level_file_counts(),
            s.cache_hits_misses(),
            s.memory_usage(),
            s.direct_io(),
            s.direct_reads()
        );
        s.close().await?;
        Ok(())
    }
}

mod fjall_bench {
    use std::path::Path;
    use std::time::Instant;

    use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

    use super::*;

    fn open(args: &LsmArgs, dir: &Path) -> anyhow::Result<(Keyspace, PartitionHandle)> {
        fresh_dir(dir)?;
        let ks = Config::new(dir).cache_size(args.cache_mb << 20).open()?;
        let p = ks.open_partition(
            "bench",
            PartitionCreateOptions::default().max_memtable_size((args.memtable_mb << 20) as u32),
        )?;
        Ok((ks, p))
    }

    fn fill(
        args: &LsmArgs,
        dir: &Path,
        name: &str,
        random: bool,
        pool: &[u8],
    ) -> anyhow::Result<(Keyspace, PartitionHandle)> {
        let (ks, p) = open(args, dir)?;
        let mut rec = Recorder::new();
        for i in 0..args.keys {
            let k = if random { permuted(i, args.keys) } else { i };
            let t = Instant::now();
            p.insert(key(k), value(pool, i, args.value_size))?;
            rec.record(t.elapsed());
        }
        rec.stop();
        settle(&ks, &p, name, args.wants(name))?;
        if args.wants(name) {
            rec.print("fjall", name);
        }
        Ok((ks, p))
    }

    /// Untimed: sync the journal, flush the memtable and wait until the
    /// background threads have run no compaction for half a second (fjall
    /// picks the next compaction after each one finishes).
    fn settle(ks: &Keyspace, p: &PartitionHandle, after: &str, print: bool) -> anyhow::Result<()> {
        let t = Instant::now();
        ks.persist(PersistMode::SyncAll)?;
        p.rotate_memtable_and_wait()?;
        let (mut quiet, mut done) = (0, ks.compactions_completed());
        while quiet < 5 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = ks.compactions_completed();
            if ks.active_compactions() == 0 && now == done {
                quiet += 1;
            } else {
                (quiet, done) = (0, now);
            }
        }
        if print {
            println!(
                "fjall    settle after {after}: {:.2} s, segments={}",
                t.elapsed().as_secs_f64() - 0.5,
                p.segment_count()
            );
        }
        Ok(())
    }

    pub(super) fn run(args: &LsmArgs) -> anyhow::Result<()> {
        let pool = value_pool(args.value_size);
        let reads = args.reads.unwrap_or(args.keys.min(1_000_000));
        let dir = args.dir.join("fjall");
        if args.wants("fillseq") {
            drop(fill(args, &dir, "fillseq", false, &pool)?);
        }

        let io0 = proc_write_bytes();
        let (ks, p) = fill(args, &dir, "fillrandom", true, &pool)?;
        let mut r = Rng(42);

        if args.wants("readrandom") {
            let mut rec = Recorder::new();
            let mut found = 0u64;
            for _ in 0..reads {
                let k = key(r.next() % args.keys);
                let t = Instant::now();
                found += u64::from(p.get(k)?.is_some());
                rec.record(t.elapsed());
            }
            rec.print("fjall", "readrandom");
            anyhow::ensure!(found == reads, "fjall readrandom found {found}/{reads}");
        }

        if args.wants("readmissing") {
            let mut rec = Recorder::new();
            for _ in 0..reads {
                let k = missing_key(r.next() % args.keys);
                let t = Instant::now();
                anyhow::ensure!(p.get(k)?.is_none(), "missing key found");
                rec.record(t.elapsed());
            }
            rec.print("fjall", "readmissing");
        }

        if args.wants("seekrandom") {
            let mut rec = Recorder::new();
            for _ in 0..reads / 10 {
                let k = key(r.next() % args.keys);
                let t = Instant::now();
                for kv in p.range(k..).take(10) {
                    kv?;
                }
                rec.record(t.elapsed());
            }
            rec.print("fjall", "seekrandom");
        }

        if args.wants("overwrite") {
            let mut rec = Recorder::new();
            for i in 0..args.keys {
                let k = key(r.next() % args.keys);
                let t = Instant::now();
                p.insert(k, value(&pool, i + 1, args.value_size))?;
                rec.record(t.elapsed());
            }
            rec.stop();
            settle(&ks, &p, "overwrite", true)?;
            rec.print("fjall", "overwrite");
        }

        // fillrandom, plus overwrite when it ran.
        let loads = if args.wants("overwrite") { 2 } else { 1 };
        let user = loads * args.keys * (16 + args.value_size as u64);
        let disk = proc_write_bytes().saturating_sub(io0);
        let logical = args.keys * (16 + args.value_size as u64);
        print_amp("fjall", user, disk, None, dir_bytes(&dir), logical);
        Ok(())
    }
}
