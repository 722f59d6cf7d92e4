//! `weir-bench suite`: every query at several core counts, throughput and latency, as a
//! markdown table of medians.
//!
//! Each run is a fresh child process (`weir-bench nexmark --json`) unless `--same-process`:
//! a deployed job has its process to itself, and runs sharing one process measured the jobs
//! before them too. Measured on 2026-11-25: q18's p99 at half its maximum rate was 0.5–0.7 ms
//! in a fresh process and 3.5–6 ms in most runs that followed other queries' runs in the same
//! process (BENCHMARKS.md, "Each run in its own process"). JMH forks a JVM per benchmark for
//! the same reason.

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;
use weir::RollingPolicy;
use weir::state::StateBackendConfig;
use weir_bench::queries::Query;
use weir_bench::runner::{RunSpec, run as run_in_process};

use crate::GeneratorArgs;
use crate::hiccups;

/// What the suite keeps of one run.
struct Measured {
    events_per_sec: f64,
    /// p50, p99, p99.9 of all records, then of the steady state (µs).
    latency_us: [f64; 6],
}

/// Runs `spec` here or in a child process.
fn measure(spec: &RunSpec, same_process: bool) -> Result<Measured> {
    if same_process {
        let r = run_in_process(spec)?;
        let [s50, s99, s999, _] = r.steady;
        let us = |d: std::time::Duration| d.as_micros() as f64;
        return Ok(Measured {
            events_per_sec: r.events_per_sec(),
            latency_us: [
                us(r.latency_p50),
                us(r.latency_p99),
                us(r.latency_p999),
                us(s50),
                us(s99),
                us(s999),
            ],
        });
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("nexmark")
        .args(["--query", spec.query.name()])
        .args(["--events", &spec.events.to_string()])
        .args(["--cores", &spec.cores.to_string()])
        .args(["--batch-size", &spec.batch_size.to_string()])
        .args(["--event-rate", &spec.generator.first_event_rate.to_string()])
        .args(["--seed", &spec.generator.seed.to_string()])
        .args(["--base-time", &spec.generator.base_time_ms.to_string()])
        .arg("--json");
    if let Some(rate) = spec.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    if let Some(spin) = spec.spin_before_park {
        cmd.args(["--spin-us", &spin.as_micros().to_string()]);
    }
    let out = cmd.output().context("starting a child run")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "child run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_report(&stdout).with_context(|| format!("reading the child's report: {stdout}"))
}

/// The fields the suite needs from `Report::to_json`'s line.
fn parse_report(line: &str) -> Result<Measured> {
    let events_per_sec = json_number(line, &["\"events_per_sec\""])?;
    let mut latency_us = [0.0; 6];
    for (i, object) in ["\"latency_us\"", "\"steady_latency_us\""]
        .iter()
        .enumerate()
    {
        for (j, key) in ["\"p50\"", "\"p99\"", "\"p999\""].iter().enumerate() {
            latency_us[i * 3 + j] = json_number(line, &[object, key])?;
        }
    }
    Ok(Measured {
        events_per_sec,
        latency_us,
    })
}

/// The number after the last of `path`'s keys, each key searched after the one before (enough
/// for the flat, fixed-order objects `Report::to_json` writes; `"latency_us"` with its quote
/// does not match inside `"steady_latency_us"`).
fn json_number(line: &str, path: &[&str]) -> Result<f64> {
    let mut at = 0;
    for key in path {
        let found = line
            .get(at..)
            .and_then(|rest| rest.find(&format!("{key}:")))
            .with_context(|| format!("no {} in the report", path.join(".")))?;
        at += found + key.len() + 1;
    }
    let rest = line.get(at..).unwrap_or("");
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .with_context(|| format!("{} is not a number", path.join(".")))
}

#[derive(Args)]
pub(crate) struct SuiteArgs {
    /// Queries to run (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Events per run.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Core counts to run at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    cores: Vec<usize>,
    /// Runs per (query, cores); the table shows the median. Runs go in rounds over all the
    /// queries (not all of one query's runs in a row), so a slow spell of the machine costs
    /// each query at most one run and the median drops it.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also measure latency at this fixed input rate (events/s), at the largest core count.
    /// Latency is measured `--runs` times too, and each percentile is the median over the
    /// runs: one descheduling of a vCPU can set a single run's p99.
    #[arg(long)]
    latency_rate: Option<u64>,
    /// Events of each latency run.
    #[arg(long, default_value_t = 5_000_000)]
    latency_events: u64,
    /// Measure latency at half of each query's median throughput at the largest core count
    /// (the targets' "half the maximum rate"). Each run reads the same `--events` as the
    /// throughput runs, so the rate is half the maximum measured on that very input: queries
    /// whose state grows with the input (q18 keeps every (bidder, auction)) get slower as a run
    /// gets longer, and a longer latency run would end above half of its own maximum.
    #[arg(long, conflicts_with = "latency_rate")]
    latency_at_half: bool,
    /// Make each `--latency-at-half` run last this many seconds instead (rate × seconds
    /// events).
    #[arg(long, requires = "latency_at_half")]
    latency_seconds: Option<f64>,
    /// Generator event rate (events per second of event time) of the latency runs: near the
    /// input rate, windows close during the run, so the steady-state column (rows that reached
    /// the sink before the input ended) is the window-close latency, not the end-of-input flush.
    #[arg(long)]
    latency_event_rate: Option<u64>,
    /// Let idle shards poll this many microseconds before sleeping (`nexmark --spin-us`).
    #[arg(long)]
    spin_us: Option<u64>,
    /// Run every measurement inside this process, one job after another, instead of each in
    /// a fresh child process (see the module docs).
    #[arg(long)]
    same_process: bool,
    /// Measure the machine's hiccups (`weir-bench hiccups`) this long before the runs and
    /// after them, and print both under the table; 0 to skip.
    #[arg(long, default_value_t = 2.0)]
    hiccup_seconds: f64,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// The machine's hiccups on every core over `seconds` (none if 0), as summary lines.
fn hiccup_lines(seconds: f64) -> Result<Vec<String>> {
    if seconds == 0.0 {
        return Ok(Vec::new());
    }
    if !(seconds > 0.0 && seconds.is_finite()) {
        bail!("--hiccup-seconds must be 0 or a positive number, not {seconds}");
    }
    let cores = hiccups::measure(std::time::Duration::from_secs_f64(seconds), &[])?;
    Ok(cores.iter().map(|c| c.summary()).collect())
}

pub(crate) fn run(args: SuiteArgs) -> Result<()> {
    let queries: Vec<Query> = if args.queries.is_empty() {
        Query::ALL.to_vec()
    } else {
        args.queries
            .iter()
            .map(|q| q.parse().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    };
    if args.runs == 0 || args.cores.is_empty() {
        bail!("--runs and --cores must not be empty");
    }
    let hiccups_before = hiccup_lines(args.hiccup_seconds)?;
    let spec = |query, cores, events, rate| RunSpec {
        query,
        events,
        cores,
        rate,
        output: None,
        output_dir: None,
        roll: RollingPolicy::default(),
        generator: args.generator.config(),
        batch_size: 1024,
        side_input: None,
        checkpoint: None,
        fail_after_events: None,
        state: StateBackendConfig::Heap,
        spin_before_park: args.spin_us.map(std::time::Duration::from_micros),
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut header = String::from("| query |");
    let mut rule = String::from("|---|");
    for c in &args.cores {
        header.push_str(&format!(" {c} core(s): M events/s |"));
        rule.push_str("---:|");
    }
    if args.cores.len() >= 2 {
        header.push_str(" speed-up |");
        rule.push_str("---:|");
    }
    if args.latency_rate.is_some() || args.latency_at_half {
        header.push_str(" latency rate (M/s) | latency p50 / p99 / p99.9 (us) | steady p50 / p99 / p99.9 (us) |");
        rule.push_str("---:|---:|---:|");
    }
    // Rounds go over every query before the next one starts: a slow spell of the VM (they last
    // seconds to minutes here) then costs each query at most one run, which the median drops,
    // instead of all the runs of the queries it happened to fall on.
    let mut throughput = vec![vec![Vec::with_capacity(args.runs); args.cores.len()]; queries.len()];
    for round in 1..=args.runs {
        for (per_cores, &query) in throughput.iter_mut().zip(&queries) {
            for (samples, &cores) in per_cores.iter_mut().zip(&args.cores) {
                let s = spec(query, cores, args.events, None);
                let m = measure(&s, args.same_process)
                    .with_context(|| format!("running {} at {cores} cores", query.name()))?;
                samples.push(m.events_per_sec);
            }
        }
        eprintln!("suite: throughput round {round}/{} done", args.runs);
    }
    let rates: Vec<Vec<f64>> = throughput
        .into_iter()
        .map(|per_cores| per_cores.into_iter().map(median).collect())
        .collect();
    let cores = args.cores.iter().copied().max().unwrap_or(1);
    let max_cores_at = args.cores.iter().position(|&c| c == cores);
    // Each query's latency run (rate, events), if one is asked for.
    let latency_runs: Vec<Option<(u64, u64)>> = rates
        .iter()
        .map(
            |r| match (args.latency_rate, max_cores_at.and_then(|i| r.get(i))) {
                (Some(rate), _) => Some((rate, args.latency_events)),
                (None, Some(max)) if args.latency_at_half => {
                    let rate = (max / 2.0).max(1.0) as u64;
                    let events = args
                        .latency_seconds
                        .map_or(args.events, |s| (rate as f64 * s).max(1.0) as u64);
                    Some((rate, events))
                }
                _ => None,
            },
        )
        .collect();
    let mut percentiles: Vec<[Vec<f64>; 6]> = vec![Default::default(); queries.len()];
    for round in 1..=args.runs {
        for ((samples, &query), latency) in percentiles.iter_mut().zip(&queries).zip(&latency_runs)
        {
            let Some((rate, events)) = *latency else {
                continue;
            };
            let mut s = spec(query, cores, events, Some(rate));
            if let Some(event_rate) = args.latency_event_rate {
                s.generator.first_event_rate = event_rate;
            }
            let m = measure(&s, args.same_process)
                .with_context(|| format!("latency run of {}", query.name()))?;
            for (v, us) in samples.iter_mut().zip(m.latency_us) {
                v.push(us);
            }
        }
        if latency_runs.iter().any(Option::is_some) {
            eprintln!("suite: latency round {round}/{} done", args.runs);
        }
    }
    println!("{header}\n{rule}");
    for (((query, per_cores), latency), samples) in queries
        .iter()
        .zip(&rates)
        .zip(&latency_runs)
        .zip(percentiles)
    {
        let mut line = format!("| {} |", query.name());
        for m in per_cores {
            line.push_str(&format!(" {:.2} |", m / 1e6));
        }
        if let (Some(first), Some(last)) = (per_cores.first(), per_cores.last())
            && per_cores.len() >= 2
        {
            line.push_str(&format!(" {:.2}x |", last / first));
        }
        if let Some((rate, _)) = latency {
            let [p50, p99, p999, s50, s99, s999] = samples.map(median);
            line.push_str(&format!(
                " {:.2} | {p50} / {p99} / {p999} | {s50} / {s99} / {s999} |",
                *rate as f64 / 1e6
            ));
        }
        println!("{line}");
    }
    let hiccups_after = hiccup_lines(args.hiccup_seconds)?;
    if !hiccups_before.is_empty() {
        println!();
    }
    for (when, lines) in [("before", hiccups_before), ("after", hiccups_after)] {
        for line in lines {
            println!(
                "- machine hiccups {when} the runs ({} s), {line}",
                args.hiccup_seconds
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_a_report_line() {
        let line = concat!(
            "{\"query\":\"q1\",\"cores\":2,\"events\":100,\"seconds\":0.5,",
            "\"events_per_sec\":200.5,\"events_per_sec_per_core\":100.2,\"output_rows\":100,",
            "\"pinned\":true,\"latency_us\":{\"p50\":1,\"p99\":22,\"p999\":333,\"max\":4},",
            "\"steady_latency_us\":{\"p50\":5,\"p99\":66,\"p999\":777,\"max\":8}}"
        );
        let m = parse_report(line).expect("a valid line");
        assert_eq!(m.events_per_sec, 200.5);
        assert_eq!(m.latency_us, [1.0, 22.0, 333.0, 5.0, 66.0, 777.0]);
    }

    #[test]
    fn a_line_without_a_field_is_an_error() {
        let err = parse_report("{\"query\":\"q1\",\"events_per_sec\":3}")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("no \"latency_us\".\"p50\" in the report")
        );
    }
}
