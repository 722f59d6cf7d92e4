//! `Store::checkpoint_sync`: a checkpoint taken between synchronous writes, while memtables
//! are full, frozen or being flushed, restores exactly the state at that moment — whatever
//! was written afterwards, and with linked or copied files.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{collect, run};
use proptest::prelude::*;
use weir_storage::{ConcatMerge, FileTransfer, Store, StoreOptions};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Merge(u8, u8),
    DeleteRange(u8, u8),
    /// Let background flushes and compactions run.
    Yield,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => any::<u8>().prop_map(Op::Delete),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Merge(k, v)),
        1 => (any::<u8>(), 0u8..16).prop_map(|(k, n)| Op::DeleteRange(k, n)),
        1 => Just(Op::Yield),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

/// A 200-byte value, so a few dozen writes fill the tiny memtable.
fn value(v: u8) -> Vec<u8> {
    vec![v; 200]
}

fn options(bg: glommio::TaskQueueHandle) -> StoreOptions {
    StoreOptions {
        memtable_bytes: 4 << 10,
        max_immutable_memtables: 4,
        block_cache_bytes: 64 << 10,
        l0_compaction_trigger: 2,
        level1_bytes: 32 << 10,
        target_file_bytes: 16 << 10,
        merge_operator: Some(std::rc::Rc::new(ConcatMerge)),
        background_queue: Some(bg),
        ..StoreOptions::default()
    }
}

/// Applies `op` to the store (synchronous path) and to the model.
async fn apply(store: &Store, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &Op) {
    match *op {
        Op::Put(k, v) => {
            store.put_sync(key(k), value(v)).unwrap();
            model.insert(key(k), value(v));
        }
        Op::Delete(k) => {
            store.delete_sync(key(k)).unwrap();
            model.remove(&key(k));
        }
        Op::Merge(k, v) => {
            store.merge_sync(key(k), [v]).unwrap();
            model.entry(key(k)).or_default().push(v);
        }
        Op::DeleteRange(k, n) => {
            let (start, end) = (key(k), key(k.saturating_add(n)));
            store.delete_range_sync(start.clone()..end.clone()).unwrap();
            model.retain(|key, _| *key < start || *key >= end);
        }
        Op::Yield => glommio::timer::sleep(Duration::from_millis(1)).await,
    }
}

fn check(before: Vec<Op>, after: Vec<Op>, copy: bool) {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let snap = root.path().join("checkpoint");
    run(move || async move {
        let bg = glommio::executor().create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "bg",
        );
        let store = Store::open(&live, options(bg)).await.unwrap();
        let mut model = BTreeMap::new();
        for op in &before {
            apply(&store, &mut model, op).await;
        }
        let transfer = if copy {
            FileTransfer::Copy
        } else {
            FileTransfer::HardLink
        };
        let info = store.checkpoint_sync(&snap, transfer).unwrap();
        assert_eq!(info.dir, snap);
        let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        // Writes after the checkpoint, flushes and compactions included, must not leak in.
        for op in &after {
            apply(&store, &mut model, op).await;
        }
        store.flush().await.unwrap();
        store.compact().await.unwrap();
        store.close().await.unwrap();
        let restored = Store::open(&snap, options(glommio::executor().current_task_queue()))
            .await
            .unwrap();
        let got = collect(restored.scan::<&[u8], _>(..).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, expected);
        restored.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn checkpoint_sync_restores_the_state_at_that_moment(
        before in prop::collection::vec(op(), 0..300),
        after in prop::collection::vec(op(), 0..200),
        copy in any::<bool>(),
    ) {
        check(before, after, copy);
    }
}

/// Frozen memtables that no flush has taken yet (the writer never yielded) are part of the
/// checkpoint, in order.
#[test]
fn unflushed_frozen_memtables_are_included() {
    let mut before = Vec::new();
    for round in 0..6u8 {
        for k in 0..40u8 {
            before.push(Op::Put(k, round));
            before.push(Op::Merge(k, round));
        }
        before.push(Op::DeleteRange(round * 5, 3));
    }
    check(before, vec![Op::Put(1, 99), Op::Delete(2)], false);
}

/// A checkpoint directory on another filesystem than the store (here tmpfs vs the temp dir's
/// disk) cannot take hard links: the SSTables are copied instead, and the checkpoint restores.
/// Skipped (with a message) where `/dev/shm` is missing or on the same filesystem.
#[test]
fn checkpoint_across_filesystems_copies_instead_of_linking() {
    use std::os::unix::fs::MetadataExt;
    let shm = std::path::Path::new("/dev/shm");
    let root = tempfile::tempdir().unwrap();
    let same_fs = match (std::fs::metadata(shm), std::fs::metadata(root.path())) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => true,
    };
    if same_fs {
        eprintln!("skipped: no second filesystem at /dev/shm");
        return;
    }
    let live = tempfile::tempdir_in(shm).unwrap();
    let live_dir = live.path().join("store");
    let snap = root.path().join("checkpoint");
    run(move || async move {
        let bg = glommio::executor().create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "bg",
        );
        let store = Store::open(&live_dir, options(bg)).await.unwrap();
        let mut model = BTreeMap::new();
        for i in 0..200u8 {
            apply(&store, &mut model, &Op::Put(i, i)).await;
        }
        store.flush().await.unwrap();
        apply(&store, &mut model, &Op::Merge(3, 9)).await;
        let info = store
            .checkpoint_sync(&snap, FileTransfer::HardLink)
            .unwrap();
        assert!(!info.files.is_empty(), "the checkpoint has SSTables");
        store.close().await.unwrap();
        let restored = Store::open(&snap, options(glommio::executor().current_task_queue()))
            .await
            .unwrap();
        let got = collect(restored.scan::<&[u8], _>(..).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, model.into_iter().collect::<Vec<_>>());
        restored.close().await.unwrap();
    });
}
