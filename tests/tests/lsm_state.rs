//! Keyed state on the LSM backend through checkpoints: a failure restores the stores from
//! their linked files, a savepoint (copied files) resumes at other shard counts by moving key
//! groups between stores, and the committed output equals an uninterrupted run's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::checkpoint::{CheckpointConfig, RestartStrategy};
use weir::state::{
    KeyedStateStore, ListState, ListStateDescriptor, LsmStateConfig, MapState, MapStateDescriptor,
    StateBackendConfig, StateError, ValueState, ValueStateDescriptor,
};
use weir::{Csv, Env, FileSink, KeyedProcessFunction, ProcessContext, VecSource};

const KEYS: u32 = 500;
const RECORDS: u32 = 40_000;

/// Per key: a running sum (value state), counts per residue (map state) and every value
/// (list state); emits `key, sum, residues seen, values seen` per record.
#[derive(Clone, Default)]
struct Running {
    sum: Option<ValueState<i64>>,
    residues: Option<MapState<u32, u32>>,
    values: Option<ListState<u32>>,
    /// Panic once at this record (to test recovery), if set.
    fail_at: Option<u32>,
}

static FAILED: AtomicBool = AtomicBool::new(false);

impl KeyedProcessFunction<u32, (u32, u32), (u32, i64, u64, u64)> for Running {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.sum = Some(store.value_state(&ValueStateDescriptor::new("sum"))?);
        self.residues = Some(store.map_state(&MapStateDescriptor::new("residues"))?);
        self.values = Some(store.list_state(&ListStateDescriptor::new("values"))?);
        Ok(())
    }

    fn process(
        &mut self,
        key: &u32,
        (_, v): (u32, u32),
        ctx: &mut ProcessContext<'_, (u32, i64, u64, u64)>,
    ) {
        if v % 100 == 0 {
            // Stretch the job so checkpoints happen while it runs.
            std::thread::sleep(Duration::from_micros(300));
        }
        if self.fail_at == Some(v) && !FAILED.swap(true, Ordering::SeqCst) {
            panic!("injected failure at record {v}");
        }
        let (Some(sum), Some(residues), Some(values)) = (self.sum, self.residues, self.values)
        else {
            return;
        };
        let Ok(store) = ctx.state() else { return };
        let total = sum.get(store).ok().flatten().unwrap_or(0) + i64::from(v);
        let r = v % 7;
        let count = residues.get(store, &r).ok().flatten().unwrap_or(0) + 1;
        let ok = sum.set(store, &total).is_ok()
            && residues.put(store, &r, &count).is_ok()
            && values.add(store, &v).is_ok();
        if !ok {
            return;
        }
        let distinct = residues.keys(store).map(|k| k.len() as u64).unwrap_or(0);
        let seen = values.get(store).map(|v| v.len() as u64).unwrap_or(0);
        ctx.emit((*key, total, distinct, seen));
    }
}

fn input() -> Vec<(u32, u32)> {
    (0..RECORDS)
        .map(|i| (i.wrapping_mul(2_654_435_761) % KEYS, i))
        .collect()
}

fn lsm(dir: &Path) -> StateBackendConfig {
    let mut config = LsmStateConfig::new(dir);
    // Small memtables: the stores flush and compact while the job runs, so checkpoints hold
    // SSTables as well as memtable logs.
    config.memtable_bytes = 512 << 10;
    StateBackendConfig::Lsm(config)
}

/// Runs the job, writing its rows to `output`.
fn run(
    cores: usize,
    backend: StateBackendConfig,
    checkpoints: Option<CheckpointConfig>,
    f: Running,
    output: &Path,
    savepoint_after: Option<Duration>,
) -> weir::JobResult {
    let mut builder = Env::builder()
        .cores(cores)
        .batch_size(64)
        .state_backend(backend);
    if let Some(c) = checkpoints {
        builder = builder.checkpointing(c);
    }
    weir_tests::stop_with_savepoint_after(&builder, savepoint_after);
    let env = builder.build().expect("env");
    env.from_source(VecSource::new(input()))
        .key_by(|r: &(u32, u32)| r.0)
        .process(f)
        .sink(FileSink::new(output, Csv::without_header()));
    env.execute().expect("job runs")
}

/// What the output says per key: every `values seen` count it emitted (sorted: shards
/// interleave a key's records in different orders per run and shard count, so only the
/// count sequence and the final state are order-independent), its final sum and its number
/// of distinct residues.
type Summary = BTreeMap<u32, (Vec<u64>, i64, u64)>;

fn summary(path: &Path) -> Summary {
    let text = std::fs::read_to_string(path).expect("output");
    let mut out = Summary::new();
    for line in text.lines() {
        let f: Vec<i64> = line
            .split(',')
            .map(|x| x.parse().expect("number"))
            .collect();
        let e = out.entry(f[0] as u32).or_default();
        e.0.push(f[3] as u64);
        if f[3] as u64 >= e.0.iter().copied().max().unwrap_or(0) {
            e.1 = f[1];
            e.2 = f[2] as u64;
        }
    }
    for e in out.values_mut() {
        e.0.sort_unstable();
    }
    out
}

/// The sequential reference: each key emits counts 1..=n once, ends with the sum of its
/// values and the residues it saw.
fn expected() -> Summary {
    let mut per_key: BTreeMap<u32, (u64, i64, BTreeSet<u32>)> = BTreeMap::new();
    for (k, v) in input() {
        let e = per_key.entry(k).or_default();
        e.0 += 1;
        e.1 += i64::from(v);
        e.2.insert(v % 7);
    }
    per_key
        .into_iter()
        .map(|(k, (n, sum, residues))| (k, ((1..=n).collect(), sum, residues.len() as u64)))
        .collect()
}

/// Asserts equal summaries, naming the first differing key instead of printing them all.
fn assert_same(got: &Summary, want: &Summary, what: &str) {
    if got == want {
        return;
    }
    let rows = |s: &Summary| s.values().map(|e| e.0.len()).sum::<usize>();
    let first = want.iter().find(|(k, e)| got.get(k) != Some(e));
    panic!(
        "{what}: {} rows, expected {}; first differing key: {first:?} vs {:?}",
        rows(got),
        rows(want),
        first.and_then(|(k, _)| got.get(k))
    );
}

#[test]
fn lsm_state_recovers_from_a_failure_and_rescales_from_a_savepoint() {
    let root = tempfile::tempdir().expect("tempdir");
    let expected = expected();
    let state_dir = root.path().join("state");

    // 1. A failure mid-run: the job restarts in-process from its latest checkpoint, whose
    //    LSM state is the stores' linked files plus memtable logs.
    let chk = root.path().join("chk-fail");
    let out = root.path().join("fail.csv");
    let mut config = CheckpointConfig::new(&chk, Duration::from_millis(10));
    config.restart = RestartStrategy::FixedDelay {
        max_attempts: 3,
        delay: Duration::from_millis(1),
    };
    let f = Running {
        fail_at: Some(RECORDS * 3 / 4),
        ..Running::default()
    };
    let result = run(2, lsm(&state_dir), Some(config), f, &out, None);
    let stats = result.checkpoints.expect("checkpoint stats");
    assert_eq!(stats.attempts, 2, "one restart");
    assert!(FAILED.load(Ordering::SeqCst));
    assert_same(&summary(&out), &expected, "output after recovery");
    assert!(
        stats.restored_from.is_some(),
        "the restart resumed from a checkpoint, not from scratch: {stats:?}"
    );

    // 2. Stop with a savepoint at 2 shards, resume at 1 and at 3 shards.
    let chk = root.path().join("chk-savepoint");
    let first = root.path().join("first.csv");
    let config = CheckpointConfig::new(&chk, Duration::from_secs(3600));
    let stopped = run(
        2,
        lsm(&state_dir),
        Some(config),
        Running::default(),
        &first,
        Some(Duration::from_millis(40)),
    );
    let savepoint = stopped
        .checkpoints
        .and_then(|s| s.savepoints.first().cloned())
        .expect("a savepoint was taken");
    let before = std::fs::read_to_string(&first)
        .expect("output")
        .lines()
        .count();
    assert!(
        before > 0 && before < RECORDS as usize,
        "stopped mid-run ({before} rows)"
    );
    for cores in [1, 3] {
        let resumed = root.path().join(format!("resumed-{cores}"));
        let out = root.path().join(format!("resumed-{cores}.csv"));
        std::fs::copy(&first, &out).expect("copy first part");
        let mut config = CheckpointConfig::new(&resumed, Duration::from_secs(3600));
        config.restore_from = Some(savepoint.clone());
        run(
            cores,
            lsm(&state_dir),
            Some(config),
            Running::default(),
            &out,
            None,
        );
        assert_same(
            &summary(&out),
            &expected,
            &format!("resumed at {cores} shard(s)"),
        );
    }

    // Each run removed its working stores.
    let left: Vec<_> = std::fs::read_dir(&state_dir)
        .expect("state dir")
        .flatten()
        .collect();
    assert!(left.is_empty(), "working stores removed: {left:?}");
}

/// A symmetric hash join on keyed state: each side's records in a list per key, each record
/// joined with what the other side stored so far. Every matching pair is emitted exactly
/// once whatever the interleaving, so the output multiset is deterministic.
#[derive(Clone, Default)]
struct SymmetricJoin {
    left: Option<ListState<u32>>,
    right: Option<ListState<u32>>,
    /// Panic once at this left record (to test recovery), if set.
    fail_at: Option<u32>,
}

static JOIN_FAILED: AtomicBool = AtomicBool::new(false);

impl weir::KeyedCoProcessFunction<u32, (u32, u32), (u32, u32), (u32, u32, u32)> for SymmetricJoin {
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        self.left = Some(store.list_state(&ListStateDescriptor::new("left"))?);
        self.right = Some(store.list_state(&ListStateDescriptor::new("right"))?);
        Ok(())
    }

    fn process_left(
        &mut self,
        key: &u32,
        (_, v): (u32, u32),
        ctx: &mut ProcessContext<'_, (u32, u32, u32)>,
    ) {
        if v % 50 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        if self.fail_at == Some(v) && !JOIN_FAILED.swap(true, Ordering::SeqCst) {
            panic!("injected failure at left record {v}");
        }
        let (Some(left), Some(right)) = (self.left, self.right) else {
            return;
        };
        let Ok(store) = ctx.state() else { return };
        let others = right.get(store).unwrap_or_default();
        if left.add(store, &v).is_err() {
            return;
        }
        for r in others {
            ctx.emit((*key, v, r));
        }
    }

    fn process_right(
        &mut self,
        key: &u32,
        (_, v): (u32, u32),
        ctx: &mut ProcessContext<'_, (u32, u32, u32)>,
    ) {
        let (Some(left), Some(right)) = (self.left, self.right) else {
            return;
        };
        let Ok(store) = ctx.state() else { return };
        let others = left.get(store).unwrap_or_default();
        if right.add(store, &v).is_err() {
            return;
        }
        for l in others {
            ctx.emit((*key, l, v));
        }
    }
}

const JOIN_KEYS: u32 = 50;
const JOIN_RECORDS: u32 = 2_000;

fn join_run(
    backend: StateBackendConfig,
    checkpoints: Option<CheckpointConfig>,
    f: SymmetricJoin,
    output: &Path,
) -> weir::JobResult {
    // Short queues: the sources stay alive (checkpoints are taken until a source ends).
    let mut builder = Env::builder()
        .cores(2)
        .batch_size(32)
        .queue_capacity(2)
        .state_backend(backend);
    if let Some(c) = checkpoints {
        builder = builder.checkpointing(c);
    }
    let env = builder.build().expect("env");
    let side = |salt: u32| -> Vec<(u32, u32)> {
        (0..JOIN_RECORDS)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ salt) % JOIN_KEYS, i))
            .collect()
    };
    let left = env
        .from_source(VecSource::new(side(0)))
        .key_by(|r: &(u32, u32)| r.0);
    let right = env
        .from_source(VecSource::new(side(7)))
        .key_by(|r: &(u32, u32)| r.0);
    left.connect(&right)
        .process(f)
        .sink(FileSink::new(output, Csv::without_header()));
    env.execute().expect("job runs")
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("output");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort_unstable();
    lines
}

#[test]
fn co_process_state_matches_a_nested_loop_and_recovers_on_both_backends() {
    let root = tempfile::tempdir().expect("tempdir");
    // The reference: every (key, left, right) pair with equal keys.
    let key = |i: u32, salt: u32| (i.wrapping_mul(2_654_435_761) ^ salt) % JOIN_KEYS;
    let mut expected = Vec::new();
    for l in 0..JOIN_RECORDS {
        for r in 0..JOIN_RECORDS {
            if key(l, 0) == key(r, 7) {
                expected.push(format!("{},{l},{r}", key(l, 0)));
            }
        }
    }
    expected.sort_unstable();

    let heap = root.path().join("heap.csv");
    join_run(
        StateBackendConfig::Heap,
        None,
        SymmetricJoin::default(),
        &heap,
    );
    assert_eq!(sorted_lines(&heap).len(), expected.len());
    assert!(
        sorted_lines(&heap) == expected,
        "heap join differs from the nested loop"
    );

    // A co-process failure mid-run, on either backend: the restart resumes from the latest
    // checkpoint and every pair comes out exactly once. (This caught a shard acknowledging
    // a checkpoint before its co-process had snapshotted: a terminal that reached the
    // barrier and then ended was counted twice.)
    for (name, backend) in [
        ("heap", StateBackendConfig::Heap),
        ("lsm", lsm(&root.path().join("state"))),
    ] {
        JOIN_FAILED.store(false, Ordering::SeqCst);
        let out = root.path().join(format!("{name}-recovered.csv"));
        let chk = root.path().join(format!("{name}-chk"));
        let mut config = CheckpointConfig::new(&chk, Duration::from_millis(10));
        config.restart = RestartStrategy::FixedDelay {
            max_attempts: 3,
            delay: Duration::from_millis(1),
        };
        let f = SymmetricJoin {
            fail_at: Some(JOIN_RECORDS * 3 / 4),
            ..SymmetricJoin::default()
        };
        let result = join_run(backend, Some(config), f, &out);
        let stats = result.checkpoints.expect("checkpoint stats");
        assert_eq!(stats.attempts, 2, "{name}: one restart");
        assert!(
            stats.restored_from.is_some(),
            "{name}: resumed from a checkpoint: {stats:?}"
        );
        let got = sorted_lines(&out);
        assert_eq!(got.len(), expected.len(), "{name}: pairs after recovery");
        assert!(
            got == expected,
            "{name}: join after recovery differs from the nested loop"
        );
    }
}
