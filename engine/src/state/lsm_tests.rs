//! Tests of [`LsmStateBackend`]: the shared suite, durability through
//! flush/reopen, and a property test against the heap backend.
//!
//! The backend is synchronous, like an operator's record processing, and
//! the store's flushes/compactions are glommio tasks that only run when the
//! caller yields. [`Driven`] models an operator task: each backend call runs
//! inside the executor and then yields the task queue, so background
//! flushes and compactions interleave with the suite's operations.

use std::cell::RefCell;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use glommio::{Latency, LocalExecutor, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};
use proptest::prelude::*;
use weir_storage::{Store, StoreOptions};

use crate::state::{
    CacheLimits, HeapStateBackend, KeyGroup, KeyGroupSnapshot, LsmStateBackend, MapEntries,
    StateBackend, StateError, StateId,
};

fn executor() -> Rc<LocalExecutor> {
    match LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .make()
    {
        Ok(ex) => Rc::new(ex),
        Err(e) => panic!("cannot create executor: {e}"),
    }
}

fn background_queue(ex: &LocalExecutor) -> TaskQueueHandle {
    ex.run(async {
        glommio::executor().create_task_queue(
            Shares::Static(100),
            Latency::NotImportant,
            "lsm-background",
        )
    })
}

/// Tiny memtables, cache and levels so flushes and compactions happen
/// within a few hundred small writes.
fn tiny(bg: TaskQueueHandle) -> StoreOptions {
    StoreOptions {
        memtable_bytes: 2 << 10,
        max_immutable_memtables: 1,
        block_cache_bytes: 16 << 10,
        l0_compaction_trigger: 2,
        level1_bytes: 16 << 10,
        target_file_bytes: 8 << 10,
        background_queue: Some(bg),
        ..StoreOptions::default()
    }
}

fn open(ex: &LocalExecutor, dir: &Path, opts: StoreOptions) -> LsmStateBackend {
    match ex.run(LsmStateBackend::open(dir, opts)) {
        Ok(b) => b,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// A backend whose every call runs on the executor and then yields, like
/// an operator task between records.
struct Driven {
    ex: Rc<LocalExecutor>,
    inner: LsmStateBackend,
}

impl Driven {
    fn run<T>(ex: &LocalExecutor, f: impl FnOnce() -> T) -> T {
        ex.run(async {
            let r = f();
            glommio::executor().yield_task_queue_now().await;
            glommio::executor().yield_task_queue_now().await;
            r
        })
    }
}

impl StateBackend for Driven {
    fn get(
        &self,
        s: StateId,
        kg: KeyGroup,
        k: &[u8],
        uk: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        Self::run(&self.ex, || self.inner.get(s, kg, k, uk))
    }
    fn put(
        &mut self,
        s: StateId,
        kg: KeyGroup,
        k: &[u8],
        uk: &[u8],
        v: &[u8],
    ) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.put(s, kg, k, uk, v))
    }
    fn delete(&mut self, s: StateId, kg: KeyGroup, k: &[u8], uk: &[u8]) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.delete(s, kg, k, uk))
    }
    fn append(&mut self, s: StateId, kg: KeyGroup, k: &[u8], e: &[u8]) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.append(s, kg, k, e))
    }
    fn put_list(
        &mut self,
        s: StateId,
        kg: KeyGroup,
        k: &[u8],
        e: &[Vec<u8>],
    ) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.put_list(s, kg, k, e))
    }
    fn get_list(&self, s: StateId, kg: KeyGroup, k: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        Self::run(&self.ex, || self.inner.get_list(s, kg, k))
    }
    fn scan_prefix(&self, s: StateId, kg: KeyGroup, k: &[u8]) -> Result<MapEntries, StateError> {
        Self::run(&self.ex, || self.inner.scan_prefix(s, kg, k))
    }
    fn delete_prefix(&mut self, s: StateId, kg: KeyGroup, k: &[u8]) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.delete_prefix(s, kg, k))
    }
    fn retain(
        &mut self,
        s: StateId,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.retain(s, keep))
    }
    fn snapshot_key_groups(&self, r: Range<KeyGroup>) -> Result<KeyGroupSnapshot, StateError> {
        Self::run(&self.ex, || self.inner.snapshot_key_groups(r))
    }
    fn restore(&mut self, snap: &KeyGroupSnapshot) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.restore(snap))
    }
    fn delete_key_groups(&mut self, r: Range<KeyGroup>) -> Result<(), StateError> {
        let inner = &mut self.inner;
        Self::run(&self.ex, || inner.delete_key_groups(r))
    }
    fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_ {
        Self::run(&self.ex, || self.inner.key_groups().collect::<Vec<_>>()).into_iter()
    }
    fn len(&self) -> usize {
        Self::run(&self.ex, || self.inner.len())
    }
    fn is_empty(&self) -> bool {
        Self::run(&self.ex, || self.inner.is_empty())
    }
}

#[test]
fn lsm_backend_passes_suite_with_flushes_and_compactions() {
    let started = std::time::Instant::now();
    let ex = executor();
    let bg = background_queue(&ex);
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let stores: RefCell<Vec<Store>> = RefCell::new(Vec::new());
    let mut n = 0;
    crate::state::suite::run_all(&mut || {
        n += 1;
        let inner = open(&ex, &root.path().join(n.to_string()), tiny(bg));
        stores.borrow_mut().push(inner.store().clone());
        Driven {
            ex: ex.clone(),
            inner,
        }
    });
    let stores = stores.into_inner();
    let flushes: u64 = stores.iter().map(|s| s.stats().flushes).sum();
    let compactions: u64 = stores.iter().map(|s| s.stats().compactions).sum();
    let tables: usize = stores
        .iter()
        .map(|s| s.level_file_counts().iter().sum::<usize>())
        .sum();
    eprintln!(
        "suite: {} backends, {flushes} flushes, {compactions} compactions, {tables} live SSTables, {:?}",
        stores.len(),
        started.elapsed()
    );
    assert!(flushes > 0, "the suite must have written SSTables");
    assert!(compactions > 0, "the suite must have compacted");
}

/// The suite again with a write-back cache of four entries: every path that evicts, writes
/// back or flushes the cache before a range operation runs.
#[test]
fn lsm_backend_with_a_tiny_cache_passes_suite() {
    let ex = executor();
    let bg = background_queue(&ex);
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut n = 0;
    crate::state::suite::run_all(&mut || {
        n += 1;
        let inner = open(&ex, &root.path().join(n.to_string()), tiny(bg));
        let limits = CacheLimits {
            entries: 4,
            bytes: 256,
        };
        if let Err(e) = inner.set_cache_limits(limits) {
            panic!("{e}");
        }
        Driven {
            ex: ex.clone(),
            inner,
        }
    });
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

/// Writes values, maps and lists in 16 key groups.
fn fill(b: &mut LsmStateBackend) -> Result<(), StateError> {
    for kg in 0..16 {
        for i in 0..40 {
            b.put(StateId(1), kg, &key(i), b"", &(kg * 1000 + i).to_be_bytes())?;
            b.put(StateId(3), kg, &key(i), b"m1", b"map value")?;
            b.append(StateId(2), kg, &key(i), b"first")?;
            b.append(StateId(2), kg, &key(i), &i.to_be_bytes())?;
        }
    }
    b.delete_prefix(StateId(3), 5, &key(7))?;
    b.delete_key_groups(14..16)?;
    Ok(())
}

fn verify(b: &LsmStateBackend) -> Result<(), StateError> {
    for kg in 0..16 {
        for i in 0..40 {
            let live = kg < 14;
            let v = b.get(StateId(1), kg, &key(i), b"")?;
            assert_eq!(v, live.then(|| (kg * 1000 + i).to_be_bytes().to_vec()));
            let l = b.get_list(StateId(2), kg, &key(i))?;
            let want = if live {
                vec![b"first".to_vec(), i.to_be_bytes().to_vec()]
            } else {
                Vec::new()
            };
            assert_eq!(l, want, "list kg {kg} key {i}");
            let m = b.scan_prefix(StateId(3), kg, &key(i))?;
            let has = live && !(kg == 5 && i == 7);
            assert_eq!(m.len(), usize::from(has), "map kg {kg} key {i}");
        }
    }
    assert_eq!(
        b.key_groups().collect::<Vec<_>>(),
        (0..14).collect::<Vec<_>>()
    );
    assert_eq!(b.len(), 14 * 40 * 3 - 1);
    Ok(())
}

#[test]
fn state_survives_flush_and_reopen_reading_sstables() {
    let ex = executor();
    let bg = background_queue(&ex);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = StoreOptions {
        memtable_bytes: 16 << 10,
        ..tiny(bg)
    };
    let r: Result<(), StateError> = ex.run(async {
        let mut b = LsmStateBackend::open(dir.path(), opts.clone()).await?;
        fill(&mut b)?;
        let before = b.snapshot_key_groups(0..16)?;
        b.flush().await?;
        let s = b.store();
        assert_eq!(s.memory_usage().memtables, 0, "everything is in SSTables");
        assert!(s.stats().flushes > 0);
        assert!(s.level_file_counts().iter().sum::<usize>() > 0);
        let (_, misses) = s.cache_hits_misses();
        verify(&b)?;
        assert!(
            s.cache_hits_misses().1 > misses,
            "reads after the flush are served from SSTables"
        );
        assert_eq!(b.snapshot_key_groups(0..16)?, before);
        b.close().await?;

        let b = LsmStateBackend::open(dir.path(), opts).await?;
        assert!(b.store().memory_usage().memtables == 0);
        verify(&b)?;
        assert_eq!(b.snapshot_key_groups(0..16)?, before);
        // The snapshot restores into the heap backend identically.
        let mut heap = HeapStateBackend::new();
        heap.restore(&before)?;
        assert_eq!(heap.snapshot_key_groups(0..16)?, before);
        b.close().await
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn storage_errors_map_to_state_errors_naming_file_and_offset() {
    let ex = executor();
    let bg = background_queue(&ex);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = StoreOptions {
        memtable_bytes: 1 << 20,
        ..tiny(bg)
    };
    let r: Result<(), StateError> = ex.run(async {
        let mut b = LsmStateBackend::open(dir.path(), opts.clone()).await?;
        for i in 0..200 {
            b.put(StateId(1), 0, &key(i), b"", b"some value")?;
        }
        b.close().await?;
        let sst = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "sst"));
        let Some(sst) = sst else {
            panic!("no SSTable written")
        };
        let mut bytes = std::fs::read(&sst).unwrap_or_else(|e| panic!("{e}"));
        bytes[30] ^= 0x5a;
        std::fs::write(&sst, bytes).unwrap_or_else(|e| panic!("{e}"));
        let b = LsmStateBackend::open(dir.path(), opts).await?;
        match b.get(StateId(1), 0, &key(0), b"") {
            Err(StateError::Storage { path, offset, .. }) => {
                assert_eq!(path.as_deref(), Some(sst.as_path()));
                assert_eq!(offset, Some(0));
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Keys chosen so some are byte prefixes of others.
const KEYS: [&[u8]; 4] = [b"", b"a", b"ab", b"b"];
const USER_KEYS: [&[u8]; 3] = [b"", b"x", b"xy"];

#[derive(Debug, Clone)]
enum Op {
    Put(u32, KeyGroup, usize, usize, Vec<u8>),
    Delete(u32, KeyGroup, usize, usize),
    Append(KeyGroup, usize, Vec<u8>),
    PutList(KeyGroup, usize, Vec<Vec<u8>>),
    DeleteList(KeyGroup, usize),
    DeletePrefix(u32, KeyGroup, usize),
    DeleteGroups(KeyGroup, KeyGroup),
    Retain(u32, u8),
    SnapshotRestore(KeyGroup, KeyGroup),
    /// Snapshot a range, overwrite a value in it, restore the snapshot over it: the
    /// snapshot's entries replace the newer ones (a cached newer value must not survive).
    SnapshotPutRestore(KeyGroup, KeyGroup, usize, Vec<u8>),
    Flush,
    /// Take the store's file snapshot as a barrier does (cache flushed first) and continue
    /// on a backend opened from it, as a restore does: its cache starts empty.
    CheckpointRestore,
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..24)
}

fn op() -> impl Strategy<Value = Op> {
    let kg = 0u32..4;
    let k = 0usize..KEYS.len();
    let k2 = k.clone();
    let uk = 0usize..USER_KEYS.len();
    prop_oneof![
        4 => (0u32..2, kg.clone(), k.clone(), uk.clone(), bytes())
            .prop_map(|(s, g, k, u, v)| Op::Put(s, g, k, u, v)),
        2 => (0u32..2, kg.clone(), k.clone(), uk).prop_map(|(s, g, k, u)| Op::Delete(s, g, k, u)),
        4 => (kg.clone(), k.clone(), bytes()).prop_map(|(g, k, v)| Op::Append(g, k, v)),
        1 => (kg.clone(), k.clone(), proptest::collection::vec(bytes(), 0..3))
            .prop_map(|(g, k, v)| Op::PutList(g, k, v)),
        1 => (kg.clone(), k.clone()).prop_map(|(g, k)| Op::DeleteList(g, k)),
        1 => (0u32..2, kg.clone(), k).prop_map(|(s, g, k)| Op::DeletePrefix(s, g, k)),
        1 => (0u32..5, 0u32..5).prop_map(|(a, b)| Op::DeleteGroups(a, b)),
        1 => (0u32..3, 0u8..3).prop_map(|(s, t)| Op::Retain(s, t)),
        1 => (0u32..5, 0u32..5).prop_map(|(a, b)| Op::SnapshotRestore(a, b)),
        1 => (0u32..5, 0u32..5, k2, bytes()).prop_map(|(a, b, k, v)| Op::SnapshotPutRestore(a, b, k, v)),
        1 => Just(Op::Flush),
        1 => Just(Op::CheckpointRestore),
    ]
}

/// States 0 and 1 hold values and maps, state 2 lists.
const LIST: StateId = StateId(2);

fn apply<B: StateBackend>(b: &mut B, op: &Op) -> Result<usize, StateError> {
    match op {
        Op::Put(s, g, k, u, v) => b.put(StateId(*s), *g, KEYS[*k], USER_KEYS[*u], v)?,
        Op::Delete(s, g, k, u) => b.delete(StateId(*s), *g, KEYS[*k], USER_KEYS[*u])?,
        Op::Append(g, k, v) => b.append(LIST, *g, KEYS[*k], v)?,
        Op::PutList(g, k, v) => b.put_list(LIST, *g, KEYS[*k], v)?,
        Op::DeleteList(g, k) => b.delete(LIST, *g, KEYS[*k], b"")?,
        Op::DeletePrefix(s, g, k) => b.delete_prefix(StateId(*s), *g, KEYS[*k])?,
        Op::DeleteGroups(a, c) => b.delete_key_groups(*a..*c)?,
        Op::Retain(s, t) => {
            return b.retain(StateId(*s), &mut |v| v.first().is_none_or(|x| x % 3 != *t));
        }
        // Snapshot a range, drop it, restore it: the range must come back.
        Op::SnapshotRestore(a, c) => {
            let snap = b.snapshot_key_groups(*a..*c)?;
            b.delete_key_groups(*a..*c)?;
            b.restore(&snap)?;
            return Ok(snap.len() as usize);
        }
        Op::SnapshotPutRestore(a, c, k, v) => {
            let snap = b.snapshot_key_groups(*a..*c)?;
            b.put(StateId(0), *a, KEYS[*k], b"", v)?;
            b.restore(&snap)?;
            return Ok(snap.len() as usize);
        }
        Op::Flush | Op::CheckpointRestore => {}
    }
    Ok(0)
}

/// Everything observable, addressed exhaustively.
fn observe<B: StateBackend>(b: &B) -> Vec<String> {
    let mut out = Vec::new();
    for g in 0..4 {
        for k in KEYS {
            for s in 0..3 {
                for u in USER_KEYS {
                    out.push(format!("{:?}", b.get(StateId(s), g, k, u)));
                }
                out.push(format!("{:?}", b.get_list(StateId(s), g, k)));
                out.push(format!("{:?}", b.scan_prefix(StateId(s), g, k)));
            }
        }
    }
    out.push(format!("{:?}", b.key_groups().collect::<Vec<_>>()));
    out.push(format!("len {} empty {}", b.len(), b.is_empty()));
    out.push(format!(
        "{:?}",
        b.snapshot_key_groups(0..4)
            .map(KeyGroupSnapshot::into_bytes)
    ));
    out
}

/// The LSM backend, with its write-back cache at `limits`, against the heap backend.
fn matches_heap_on_random_operations(limits: CacheLimits, cases: u32) {
    let ex = executor();
    let bg = background_queue(&ex);
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let case = std::cell::Cell::new(0u32);
    let opts = StoreOptions {
        memtable_bytes: 1 << 10,
        ..tiny(bg)
    };
    let open_cached = |dir: &Path| {
        let b = open(&ex, dir, opts.clone());
        if let Err(e) = b.set_cache_limits(limits) {
            panic!("{e}");
        }
        b
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        case.set(case.get() + 1);
        let case_dir = root.path().join(case.get().to_string());
        let mut heap = HeapStateBackend::new();
        let mut lsm = open_cached(&case_dir.join("live"));
        for (i, op) in ops.iter().enumerate() {
            let want = apply(&mut heap, op);
            let got = Driven::run(&ex, || apply(&mut lsm, op));
            prop_assert_eq!(&got, &want, "op {} {:?}", i, op);
            if matches!(op, Op::Flush) {
                let r = ex.run(lsm.flush());
                prop_assert!(r.is_ok(), "flush: {:?}", r);
            }
            if matches!(op, Op::CheckpointRestore) {
                let dir = case_dir.join(format!("chk-{i}"));
                let taken = Driven::run(&ex, || {
                    lsm.flush_cache()?;
                    lsm.store()
                        .checkpoint_sync(&dir, weir_storage::FileTransfer::Copy)
                        .map_err(StateError::from)
                });
                prop_assert!(taken.is_ok(), "checkpoint: {:?}", taken);
                let old = std::mem::replace(&mut lsm, open_cached(&dir));
                let r = ex.run(old.close());
                prop_assert!(r.is_ok(), "close: {:?}", r);
            }
            if i % 8 == 7 || i + 1 == ops.len() {
                let got = Driven::run(&ex, || observe(&lsm));
                prop_assert_eq!(got, observe(&heap), "after op {} {:?}", i, op);
            }
        }
        let closed = ex.run(lsm.close());
        prop_assert!(closed.is_ok(), "close: {:?}", closed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn lsm_matches_heap_on_random_operations() {
    matches_heap_on_random_operations(CacheLimits::default(), 48);
}

/// A cache of three entries evicts (writing back) on almost every new key.
#[test]
fn lsm_with_a_tiny_cache_matches_heap_on_random_operations() {
    matches_heap_on_random_operations(
        CacheLimits {
            entries: 3,
            bytes: 64,
        },
        48,
    );
}

#[test]
fn lsm_without_cache_matches_heap_on_random_operations() {
    matches_heap_on_random_operations(
        CacheLimits {
            entries: 0,
            bytes: 0,
        },
        24,
    );
}
