//! Property test: random operation sequences against a `BTreeMap` model.
//! A tiny memtable and level targets make flushes, L0 and Ln compactions,
//! bottom-level tombstone cleanup and reopen all happen within a case.

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use common::{collect, run};
use proptest::prelude::*;
use weir_storage::{ConcatMerge, IoMode, ReadIo, Store, StoreOptions, WalSync};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    DeleteRange(u8, u8),
    Merge(u8, Vec<u8>),
    Get(u8),
    Scan(u8, u8),
    Flush,
    Compact,
    Reopen,
    /// Drop without close (memtable lost unless the WAL has it), reopen.
    DropReopen,
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k:03}").into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..80;
    let v = proptest::collection::vec(any::<u8>(), 0..60);
    prop_oneof![
        30 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        8 => k.clone().prop_map(Op::Delete),
        3 => (k.clone(), 0u8..20).prop_map(|(a, n)| Op::DeleteRange(a, a.saturating_add(n))),
        8 => (k.clone(), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(k, v)| Op::Merge(k, v)),
        10 => k.clone().prop_map(Op::Get),
        4 => (k.clone(), 0u8..30).prop_map(|(a, n)| Op::Scan(a, a.saturating_add(n))),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::DropReopen),
    ]
}

/// The three I/O configurations: page cache for writes and reads (the
/// default), O_DIRECT writes with page-cache reads, O_DIRECT for both.
const IO: [(IoMode, ReadIo); 3] = [
    (IoMode::Buffered, ReadIo::PageCache),
    (IoMode::Auto, ReadIo::PageCache),
    (IoMode::Auto, ReadIo::Direct),
];

fn opts(wal: bool, io: usize) -> StoreOptions {
    StoreOptions {
        io_mode: IO[io].0,
        read_io: IO[io].1,
        wal: wal.then_some(WalSync::Manual),
        memtable_bytes: 2 << 10,
        block_cache_bytes: 16 << 10,
        num_levels: 4,
        l0_compaction_trigger: 2,
        level1_bytes: 6 << 10,
        level_size_ratio: 2,
        target_file_bytes: 4 << 10,
        manifest_rewrite_bytes: 2 << 10,
        merge_operator: Some(Rc::new(ConcatMerge)),
        ..StoreOptions::default()
    }
}

fn check(ops: Vec<Op>, wal: bool, io: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut s = Store::open(&path, opts(wal, io))
            .await
            .map_err(|e| e.to_string())?;
        for (i, op) in ops.into_iter().enumerate() {
            let ctx = |e: weir_storage::Error| format!("op {i} {e}");
            match op {
                Op::Put(k, v) => {
                    s.put(key(k), &v).await.map_err(ctx)?;
                    model.insert(key(k), v);
                }
                Op::Delete(k) => {
                    s.delete(key(k)).await.map_err(ctx)?;
                    model.remove(&key(k));
                }
                Op::DeleteRange(a, b) => {
                    s.delete_range(key(a)..key(b)).await.map_err(ctx)?;
                    model.retain(|k, _| !(k >= &key(a) && k < &key(b)));
                }
                Op::Merge(k, v) => {
                    s.merge(key(k), &v).await.map_err(ctx)?;
                    model.entry(key(k)).or_default().extend_from_slice(&v);
                }
                Op::Get(k) => {
                    let got = s.get(key(k)).await.map_err(ctx)?.map(|b| b.to_vec());
                    if got.as_ref() != model.get(&key(k)) {
                        return Err(format!(
                            "op {i}: get {k}: store {got:?} model {:?}",
                            model.get(&key(k))
                        ));
                    }
                }
                Op::Scan(a, b) => {
                    let got = collect(s.scan(key(a)..key(b)).await.map_err(ctx)?)
                        .await
                        .map_err(ctx)?;
                    let want: Vec<_> = model
                        .range(key(a)..key(b))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if got != want {
                        return Err(format!(
                            "op {i}: scan {a}..{b}: store {got:?} model {want:?}"
                        ));
                    }
                }
                Op::Flush => s.flush().await.map_err(ctx)?,
                Op::Compact => s.compact().await.map_err(ctx)?,
                Op::Reopen => {
                    s.close().await.map_err(ctx)?;
                    s = Store::open(&path, opts(wal, io)).await.map_err(ctx)?;
                }
                Op::DropReopen => {
                    // Without a WAL only flushed data survives a drop.
                    if !wal {
                        s.flush().await.map_err(ctx)?;
                    }
                    // In-process we cannot kill a running background job the
                    // way a crash would; abandon waits for it, then stops.
                    s.abandon().await.map_err(ctx)?;
                    s = Store::open(&path, opts(wal, io)).await.map_err(ctx)?;
                }
            }
        }
        let got = collect(s.scan::<&[u8], _>(..).await.map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let want: Vec<_> = model.into_iter().collect();
        if got != want {
            return Err(format!(
                "final scan: store {} entries, model {}",
                got.len(),
                want.len()
            ));
        }
        s.close().await.map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn cases() -> u32 {
    std::env::var("WEIR_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn matches_btreemap_model(
        ops in proptest::collection::vec(op(), 1..400),
        wal in any::<bool>(),
        io in 0..IO.len(),
    ) {
        check(ops, wal, io).map_err(TestCaseError::fail)?;
    }
}
