//! `weir-bench hiccups`: how often the machine itself stops a running thread.
//!
//! One thread per core, pinned, reads the clock in a tight loop and records every gap between
//! two reads. Nothing in the loop waits, so a long gap is time the thread did not run: the
//! kernel took the core (an interrupt, a kernel thread) or, in a VM, the host did (the vCPU
//! was descheduled). On the development VM an idle core showed about two gaps a second over
//! 1 ms, up to 4 ms (BENCHMARKS.md, "Hiccups"). A shard stopped that long delays every record
//! behind it, so at half load a gap of H delays records for about 2H: that sets a floor under
//! the p99 that no code of Weir's can lower. The suite measures it before and after its runs,
//! so its latency table can be read against the machine's hour.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use hdrhistogram::Histogram;

#[derive(Args)]
pub(crate) struct HiccupArgs {
    /// How long to measure.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Cores to measure on (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
}

/// The gaps one core's thread saw.
#[derive(Debug)]
pub(crate) struct CoreHiccups {
    /// The core the thread was pinned to (`None` if pinning failed: measured unpinned).
    pub core: Option<usize>,
    /// Gaps over 100 µs, in ns (smaller gaps are the loop itself and are not recorded).
    pub gaps: Histogram<u64>,
    /// How long the thread measured.
    pub elapsed: Duration,
}

/// Gaps up to this long are the loop's own pace, not hiccups.
const RECORD_ABOVE_NS: u64 = 100_000;

impl CoreHiccups {
    /// Gaps longer than `ns`.
    pub fn count_over(&self, ns: u64) -> u64 {
        self.gaps
            .iter_recorded()
            .filter(|v| v.value_iterated_to() > ns)
            .map(|v| v.count_at_value())
            .sum()
    }

    /// One line: gaps over 100 µs, 500 µs and 1 ms per second, and the longest.
    pub fn summary(&self) -> String {
        let per_s = |n: u64| n as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let core = self
            .core
            .map_or("unpinned".to_string(), |c| format!("cpu {c}"));
        format!(
            "{core}: {:.1}/s over 100 us, {:.1}/s over 500 us, {:.1}/s over 1 ms, longest {:.2} ms",
            per_s(self.count_over(RECORD_ABOVE_NS)),
            per_s(self.count_over(500_000)),
            per_s(self.count_over(1_000_000)),
            self.gaps.max() as f64 / 1e6
        )
    }
}

/// Records every gap over [`RECORD_ABOVE_NS`] between consecutive readings of `clock` (ns)
/// until it reads `until` or later.
fn record_gaps(mut clock: impl FnMut() -> u64, until: u64) -> Result<Histogram<u64>> {
    let mut gaps = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut last = clock();
    while last < until {
        let now = clock();
        let gap = now.saturating_sub(last);
        if gap > RECORD_ABOVE_NS {
            gaps.record(gap.min(gaps.high()))?;
        }
        last = now;
    }
    Ok(gaps)
}

/// Measures every core in `cores` (all if empty) at once for `duration`.
pub(crate) fn measure(duration: Duration, cores: &[usize]) -> Result<Vec<CoreHiccups>> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let chosen: Vec<Option<core_affinity::CoreId>> = if cores.is_empty() {
        if ids.is_empty() {
            vec![None]
        } else {
            ids.into_iter().map(Some).collect()
        }
    } else {
        cores
            .iter()
            .map(|c| ids.iter().copied().find(|id| id.id == *c).map(Some))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow::anyhow!("--cores {cores:?}: not all of them exist here"))?
    };
    let threads: Vec<_> = chosen
        .into_iter()
        .map(|core| {
            std::thread::Builder::new()
                .name("weir-hiccups".into())
                .spawn(move || -> Result<CoreHiccups> {
                    let pinned = core.filter(|c| core_affinity::set_for_current(*c));
                    let start = Instant::now();
                    let until = duration.as_nanos() as u64;
                    let gaps = record_gaps(|| start.elapsed().as_nanos() as u64, until)?;
                    Ok(CoreHiccups {
                        core: pinned.map(|c| c.id),
                        gaps,
                        elapsed: start.elapsed(),
                    })
                })
        })
        .collect::<std::io::Result<_>>()?;
    threads
        .into_iter()
        .map(|t| {
            t.join()
                .map_err(|_| anyhow::anyhow!("a hiccup thread panicked"))?
        })
        .collect()
}

/// `weir-bench hiccups`.
pub(crate) fn run(args: HiccupArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    for core in measure(Duration::from_secs_f64(args.seconds), &args.cores)? {
        println!("{}", core.summary());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that advances 50 ns a reading, with the given extra gaps at given readings.
    fn fake_clock(gaps: &[(u64, u64)]) -> impl FnMut() -> u64 + '_ {
        let (mut reading, mut now) = (0u64, 0u64);
        move || {
            reading += 1;
            now += 50
                + gaps
                    .iter()
                    .find(|(at, _)| *at == reading)
                    .map_or(0, |g| g.1);
            now
        }
    }

    /// Only the gaps over 100 µs are recorded, each once, at their length.
    #[test]
    fn records_the_gaps_and_only_those() {
        let injected = [
            (10, 2_000_000),
            (500, 99_000),
            (1000, 600_000),
            (1500, 150_000),
        ];
        let gaps = record_gaps(fake_clock(&injected), 5_000_000).expect("histogram");
        let hiccups = CoreHiccups {
            core: Some(0),
            gaps,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(hiccups.count_over(RECORD_ABOVE_NS), 3);
        assert_eq!(hiccups.count_over(500_000), 2);
        assert_eq!(hiccups.count_over(1_000_000), 1);
        assert!(hiccups.gaps.max().abs_diff(2_000_050) < 2_000_050 / 500);
        assert!(
            hiccups.summary().contains("1.0/s over 1 ms"),
            "{}",
            hiccups.summary()
        );
    }

    /// The real loop runs for the duration asked and names the cores it pinned to.
    #[test]
    fn measures_each_core_for_the_duration() {
        let cores = measure(Duration::from_millis(30), &[]).expect("measuring");
        assert!(!cores.is_empty());
        for c in &cores {
            assert!(c.elapsed >= Duration::from_millis(30), "{c:?}");
        }
        assert!(measure(Duration::from_millis(1), &[usize::MAX]).is_err());
    }
}
