//! The harness's command line, as users and scripts call it.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir-bench"))
}

#[test]
fn json_line_and_csv_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("q2.csv");
    let output = bench()
        .args([
            "nexmark", "--query", "q2", "--events", "50000", "--cores", "2", "--json", "--output",
        ])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one JSON line: {stdout}");
    let line = lines[0];
    for key in [
        "\"query\":\"q2\"",
        "\"cores\":2",
        "\"events\":50000",
        "\"seconds\":",
        "\"events_per_sec\":",
        "\"output_rows\":",
        "\"latency_us\":{\"p50\":",
        "\"p99\":",
        "\"p999\":",
        "\"max\":",
    ] {
        assert!(line.contains(key), "{key} missing in {line}");
    }
    let rows: u64 = line
        .split("\"output_rows\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("output_rows is a number");
    let csv = std::fs::read_to_string(&out).expect("csv written");
    let mut csv_lines = csv.lines();
    assert_eq!(csv_lines.next(), Some("auction,price"));
    assert_eq!(csv_lines.count() as u64, rows);
    assert!(rows > 0);
}

#[test]
fn data_dump_writes_three_files_with_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = bench()
        .args([
            "nexmark-data",
            "--events",
            "1000",
            "--event-rate",
            "1000",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("file written");
    let bids = read("bid.csv");
    assert!(bids.starts_with("auction,bidder,price,channel,url,date_time,extra\n"));
    assert_eq!(bids.lines().count(), 1 + 920);
    assert_eq!(read("auction.csv").lines().count(), 1 + 60);
    assert_eq!(read("person.csv").lines().count(), 1 + 20);
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let output = bench()
        .args(["nexmark", "--query", "q99"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown query `q99`"), "stderr: {stderr}");

    let output = bench()
        .args(["nexmark", "--query", "q0", "--events", "10", "--cores", "0"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cores must be at least 1"));
}

#[test]
fn q10_writes_files_partitioned_by_day_and_minute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("q10");
    let output = bench()
        .args([
            "nexmark",
            "--query",
            "q10",
            "--events",
            "5000",
            "--event-rate",
            "20",
            "--cores",
            "2",
            "--json",
            "--output",
        ])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows = 0;
    let mut partitions = 0;
    for day in std::fs::read_dir(&out).expect("output dir") {
        let day = day.expect("entry").path();
        let dt = day
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        assert!(dt.starts_with("dt=2026-01-01"), "{dt}");
        for minute in std::fs::read_dir(&day).expect("day dir") {
            let minute = minute.expect("entry").path();
            let hm = minute
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            partitions += 1;
            for file in std::fs::read_dir(&minute).expect("minute dir") {
                let text = std::fs::read_to_string(file.expect("entry").path()).expect("file");
                let mut lines = text.lines();
                assert_eq!(
                    lines.next(),
                    Some("auction,bidder,price,date_time,extra,dt,hm")
                );
                for line in lines {
                    rows += 1;
                    assert!(
                        line.ends_with(&format!(",{},{}", &dt[3..], &hm[3..])),
                        "{line} in {dt}/{hm}"
                    );
                }
            }
        }
    }
    // 5000 events at 20 events/s span about four minutes.
    assert!(partitions >= 4, "{partitions} partitions");
    assert_eq!(rows, 4600, "every bid written once");
}

#[test]
fn output_dir_rolls_parts_by_size_and_refuses_updating_queries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("q0");
    let output = bench()
        .args([
            "nexmark",
            "--query",
            "q0",
            "--events",
            "2000",
            "--cores",
            "2",
            "--roll-bytes",
            "10000",
            "--output-dir",
        ])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("output dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    let mut rows = 0;
    for name in &names {
        // Visible parts only, each starting with the header, each at most one row over.
        assert!(
            name.starts_with("part-") && name.ends_with(".csv"),
            "{name}"
        );
        let text = std::fs::read_to_string(out.join(name)).expect("part");
        assert!(text.len() < 10_000 + 1_000, "{name} did not roll");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("auction,bidder,price,date_time,extra"));
        rows += lines.count();
    }
    assert_eq!(rows, 1840, "every bid once");
    for shard in 0..2 {
        let parts = names
            .iter()
            .filter(|n| n.starts_with(&format!("part-{shard}-")))
            .count();
        assert!(parts >= 2, "shard {shard} rolled no part: {names:?}");
    }

    let output = bench()
        .args([
            "nexmark",
            "--query",
            "q4",
            "--events",
            "100",
            "--output-dir",
        ])
        .arg(dir.path().join("q4"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("use --output FILE"), "stderr: {stderr}");
}
