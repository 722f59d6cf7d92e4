//! The synchronous access path (`*_sync`, `scan_sync`): same answers as the
//! async path, SSTable reads through `pread`, background flushes without
//! blocking the caller, corruption reported as errors.

mod common;

use std::path::{Path, PathBuf};

use common::{collect, run};
use weir_storage::{ConcatMerge, Error, Store, StoreOptions, WalSync};

fn small() -> StoreOptions {
    StoreOptions {
        memtable_bytes: 64 << 10,
        block_cache_bytes: 1 << 20,
        l0_compaction_trigger: 2,
        level1_bytes: 256 << 10,
        target_file_bytes: 128 << 10,
        merge_operator: Some(std::rc::Rc::new(ConcatMerge)),
        ..StoreOptions::default()
    }
}

fn key(i: u32) -> String {
    format!("key{i:06}")
}

fn sync_collect(s: weir_storage::SyncScan) -> weir_storage::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    s.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

#[test]
fn sync_and_async_paths_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let s = Store::open(&d, small()).await.unwrap();
        s.put("a", "1").await.unwrap();
        assert_eq!(s.get_sync("a").unwrap().as_deref(), Some(&b"1"[..]));
        s.put_sync("b", "2").unwrap();
        assert_eq!(s.get("b").await.unwrap().as_deref(), Some(&b"2"[..]));
        s.merge_sync("b", "x").unwrap();
        s.merge("b", "y").await.unwrap();
        assert_eq!(s.get_sync("b").unwrap().as_deref(), Some(&b"2xy"[..]));
        s.delete_sync("a").unwrap();
        assert_eq!(s.get("a").await.unwrap(), None);
        s.put_sync("c1", "x").unwrap();
        s.put_sync("c2", "y").unwrap();
        s.put_sync("d", "z").unwrap();
        s.delete_range_sync("c".."c3").unwrap();
        let want = vec![
            (b"b".to_vec(), b"2xy".to_vec()),
            (b"d".to_vec(), b"z".to_vec()),
        ];
        assert_eq!(
            sync_collect(s.scan_sync::<&str, _>(..).unwrap()).unwrap(),
            want
        );
        assert_eq!(
            collect(s.scan::<&str, _>(..).await.unwrap()).await.unwrap(),
            want
        );
        assert_eq!(
            sync_collect(s.prefix_scan_sync("d").unwrap()).unwrap(),
            vec![(b"d".to_vec(), b"z".to_vec())]
        );
        s.close().await.unwrap();
    });
}

#[test]
fn sync_reads_after_flush_come_from_sstables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let s = Store::open(&d, small()).await.unwrap();
        for i in 0..3000 {
            s.put_sync(key(i), format!("v{i}")).unwrap();
        }
        s.delete_range_sync(key(100)..key(200)).unwrap();
        s.close().await.unwrap();

        // Reopen: empty memtable, cold cache, so every read is an SSTable read.
        let s = Store::open(&d, small()).await.unwrap();
        assert!(s.level_file_counts().iter().sum::<usize>() > 0);
        for i in (0..3000).step_by(7) {
            let want = (!(100..200).contains(&i)).then(|| format!("v{i}"));
            let got = s.get_sync(key(i)).unwrap();
            assert_eq!(
                got.as_deref(),
                want.as_deref().map(str::as_bytes),
                "key {i}"
            );
        }
        let (_, misses) = s.cache_hits_misses();
        assert!(misses > 0, "cold reads must miss the cache and pread");
        assert_eq!(s.get_sync("nope").unwrap(), None);
        let all = sync_collect(s.scan_sync::<&str, _>(..).unwrap()).unwrap();
        assert_eq!(all.len(), 2900);
        assert_eq!(
            all,
            collect(s.scan::<&str, _>(..).await.unwrap()).await.unwrap()
        );
        s.close().await.unwrap();
    });
}

#[test]
fn sync_writes_flush_in_background_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let s = Store::open(&d, small()).await.unwrap();
        // No await at all between these writes: memtables pile up past the
        // limit (warned), nothing blocks, nothing deadlocks.
        for i in 0..20_000 {
            s.put_sync(key(i), [b'x'; 40]).unwrap();
        }
        assert!(s.memory_usage().memtables > 2 * (64 << 10));
        assert_eq!(
            s.stats().flushes,
            0,
            "flushes only run when the caller yields"
        );
        // Give the background queue the core.
        s.relieve_pressure().await.unwrap();
        for _ in 0..200 {
            if s.memory_usage().memtables < 2 * (64 << 10) {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(s.stats().flushes > 0);
        assert!(s.memory_usage().memtables <= 2 * (64 << 10) + 4096);
        for i in (0..20_000).step_by(97) {
            assert_eq!(
                s.get_sync(key(i)).unwrap().as_deref(),
                Some(&[b'x'; 40][..])
            );
        }
        s.close().await.unwrap();
    });
}

#[test]
fn sync_writes_refuse_a_wal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let opts = StoreOptions {
            wal: Some(WalSync::Manual),
            ..small()
        };
        let s = Store::open(&d, opts).await.unwrap();
        assert!(matches!(
            s.put_sync("a", "b"),
            Err(Error::InvalidArgument(_))
        ));
        s.put("a", "b").await.unwrap();
        assert_eq!(s.get_sync("a").unwrap().as_deref(), Some(&b"b"[..]));
        s.close().await.unwrap();
    });
}

fn sst_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    v.sort();
    v
}

#[test]
fn sync_read_of_corrupt_block_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let opts = StoreOptions {
            memtable_bytes: 1 << 20,
            ..StoreOptions::default()
        };
        let s = Store::open(&d, opts.clone()).await.unwrap();
        for i in 0..500 {
            s.put_sync(key(i), format!("value-{i}")).unwrap();
        }
        s.close().await.unwrap();
        let files = sst_files(&d);
        assert_eq!(files.len(), 1);
        // The first data block starts at offset 0; flip a byte inside it.
        let mut b = std::fs::read(&files[0]).unwrap();
        b[20] ^= 0x5a;
        std::fs::write(&files[0], b).unwrap();

        let s = Store::open(&d, opts).await.unwrap();
        match s.get_sync(key(0)) {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, files[0]);
                assert_eq!(offset, 0);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // A scan over the corrupt block errs (while seeking, or once while
        // iterating, then ends).
        match s.scan_sync::<&str, _>(..) {
            Err(e) => assert!(e.is_corruption(), "{e}"),
            Ok(mut scan) => {
                let first = scan.next();
                assert!(
                    matches!(first, Some(Err(ref e)) if e.is_corruption()),
                    "{first:?}"
                );
                assert!(scan.next().is_none());
            }
        }
        // Keys in other blocks still read fine.
        assert_eq!(
            s.get_sync(key(499)).unwrap().as_deref(),
            Some(&b"value-499"[..])
        );
    });
}
