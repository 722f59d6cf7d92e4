//! Crash test: a child process writes with the WAL in per-write sync mode
//! and prints every acknowledged key; the parent SIGKILLs it at random
//! points, reopens, and checks that every acknowledged key survived.
//! The child is this same test binary re-run with `WEIR_CRASH_CHILD` set.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::run;
use weir_storage::{Store, StoreOptions, WalSync};

fn opts() -> StoreOptions {
    StoreOptions {
        memtable_bytes: 8 << 10,
        l0_compaction_trigger: 2,
        level1_bytes: 32 << 10,
        target_file_bytes: 16 << 10,
        manifest_rewrite_bytes: 4 << 10,
        wal: Some(WalSync::PerWrite),
        ..StoreOptions::default()
    }
}

fn value(i: u64) -> String {
    format!("value-{i}-{}", "x".repeat((i % 50) as usize))
}

/// Writer half, run only as the child process of `sigkill_loses_no_acknowledged_write`
/// (ignored in normal runs; the parent runs it with `--ignored`).
#[test]
#[ignore = "child process of sigkill_loses_no_acknowledged_write"]
fn crash_writer_child() {
    let (Ok(dir), Ok(start)) = (
        std::env::var("WEIR_CRASH_CHILD"),
        std::env::var("WEIR_CRASH_START"),
    ) else {
        return;
    };
    let start: u64 = start.parse().unwrap();
    run(move || async move {
        let s = Store::open(&dir, opts()).await.unwrap();
        for i in start.. {
            s.put(format!("key{i:010}"), value(i)).await.unwrap();
            println!("ACK {i}");
        }
    });
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    if std::env::var("WEIR_CRASH_CHILD").is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..12u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(150 + rng % 400);
        let mut child = Command::new(&exe)
            .args([
                "crash_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WEIR_CRASH_CHILD", &dir)
            .env("WEIR_CRASH_START", (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").and_then(|n| n.parse::<u64>().ok()))
                .collect::<Vec<u64>>()
        });
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        acked.extend(&got);
        let check = acked.clone();
        let d = dir.clone();
        let missing = run(move || async move {
            let s = Store::open(
                &d,
                StoreOptions {
                    wal: None,
                    ..opts()
                },
            )
            .await
            .unwrap();
            let mut missing = Vec::new();
            for i in check {
                let v = s.get(format!("key{i:010}")).await.unwrap();
                if v.as_deref() != Some(value(i).as_bytes()) {
                    missing.push(i);
                }
            }
            s.close().await.unwrap();
            missing
        });
        assert!(
            missing.is_empty(),
            "round {round}: lost acknowledged keys {missing:?}"
        );
        eprintln!(
            "round {round}: killed after {delay:?}, {} acked this round, {} total",
            got.len(),
            acked.len()
        );
    }
    assert!(
        acked.len() > 100,
        "writer made too little progress: {}",
        acked.len()
    );
}
