//! End-to-end behaviour of the public API.

mod common;

use std::rc::Rc;

use common::{collect, run};
use weir_storage::{ConcatMerge, IoMode, ReadIo, Store, StoreOptions, WalSync};

fn small_opts() -> StoreOptions {
    StoreOptions {
        memtable_bytes: 16 << 10,
        block_cache_bytes: 256 << 10,
        l0_compaction_trigger: 2,
        level1_bytes: 64 << 10,
        target_file_bytes: 32 << 10,
        merge_operator: Some(Rc::new(ConcatMerge)),
        ..StoreOptions::default()
    }
}

#[test]
fn put_get_delete_scan_across_flushes_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let s = Store::open(&path, small_opts()).await.unwrap();
        for i in 0..3000u32 {
            s.put(format!("key{i:06}"), format!("value{i}"))
                .await
                .unwrap();
        }
        for i in (0..3000u32).step_by(3) {
            s.delete(format!("key{i:06}")).await.unwrap();
        }
        s.delete_range("key001000".."key002000").await.unwrap();
        s.merge("m", "a").await.unwrap();
        s.flush().await.unwrap();
        s.merge("m", "b").await.unwrap();
        s.compact().await.unwrap();
        let check = |s: Store| async move {
            assert_eq!(
                s.get("key000001").await.unwrap().as_deref(),
                Some(&b"value1"[..])
            );
            assert_eq!(s.get("key000003").await.unwrap(), None);
            assert_eq!(s.get("key001500").await.unwrap(), None);
            assert_eq!(
                s.get("key002002").await.unwrap().as_deref(),
                Some(&b"value2002"[..])
            );
            assert_eq!(s.get("m").await.unwrap().as_deref(), Some(&b"ab"[..]));
            let all = collect(s.prefix_scan("key").await.unwrap()).await.unwrap();
            let want = (0..3000u32)
                .filter(|i| i % 3 != 0 && !(1000..2000).contains(i))
                .count();
            assert_eq!(all.len(), want);
            assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
            let some = collect(s.scan("key000990".."key002003").await.unwrap())
                .await
                .unwrap();
            let keys: Vec<_> = some
                .iter()
                .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
                .collect();
            assert_eq!(
                keys,
                vec![
                    "key000991",
                    "key000992",
                    "key000994",
                    "key000995",
                    "key000997",
                    "key000998",
                    "key002000",
                    "key002002"
                ]
            );
            s
        };
        let s = check(s).await;
        assert!(s.stats().compactions > 0, "{:?}", s.stats());
        assert!(
            s.level_file_counts()[1..].iter().sum::<usize>() > 0,
            "{:?}",
            s.level_file_counts()
        );
        s.close().await.unwrap();
        let s = Store::open(&path, small_opts()).await.unwrap();
        let s = check(s).await;
        s.close().await.unwrap();
    });
}

#[test]
fn wal_recovers_unflushed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = StoreOptions {
            wal: Some(WalSync::EveryBytes(4096)),
            ..small_opts()
        };
        let s = Store::open(&path, opts.clone()).await.unwrap();
        s.put("a", "1").await.unwrap();
        s.merge("l", "x").await.unwrap();
        s.delete_range("b".."c").await.unwrap();
        s.sync().await.unwrap();
        drop(s); // no close: memtable only in the WAL
        let s = Store::open(&path, opts).await.unwrap();
        assert_eq!(s.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get("l").await.unwrap().as_deref(), Some(&b"x"[..]));
    });
}

#[test]
fn checkpoint_is_incremental_and_restorable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let s = Store::open(path.join("db"), small_opts()).await.unwrap();
        for i in 0..500u32 {
            s.put(format!("k{i:05}"), [7u8; 50]).await.unwrap();
        }
        let c1 = s.checkpoint(path.join("cp1")).await.unwrap();
        assert!(!c1.files.is_empty() && c1.files.iter().all(|f| !f.in_previous));
        s.put("zz", "late").await.unwrap();
        let c2 = s.checkpoint(path.join("cp2")).await.unwrap();
        assert!(c2.files.iter().any(|f| f.in_previous), "{c2:?}");
        assert!(c2.new_files().count() >= 1);
        s.put("after", "x").await.unwrap();
        let r = Store::open(path.join("cp2"), small_opts()).await.unwrap();
        assert_eq!(r.get("zz").await.unwrap().as_deref(), Some(&b"late"[..]));
        assert_eq!(
            r.get("k00042").await.unwrap().as_deref(),
            Some(&[7u8; 50][..])
        );
        assert_eq!(r.get("after").await.unwrap(), None);
        let r1 = Store::open(path.join("cp1"), small_opts()).await.unwrap();
        assert_eq!(r1.get("zz").await.unwrap(), None);
    });
}

#[test]
fn buffered_fallback_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = StoreOptions {
            io_mode: IoMode::Buffered,
            ..small_opts()
        };
        let s = Store::open(&path, opts).await.unwrap();
        assert!(!s.direct_io());
        for i in 0..1000u32 {
            s.put(i.to_be_bytes(), [1u8; 40]).await.unwrap();
        }
        s.flush().await.unwrap();
        assert_eq!(
            s.get(7u32.to_be_bytes()).await.unwrap().as_deref(),
            Some(&[1u8; 40][..])
        );
    });
}

/// With O_DIRECT writes (where the filesystem has it), page-cache reads
/// and O_DIRECT reads return the same data,
/// through the async and the sync API, before and after compaction.
#[test]
fn read_modes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let mut results = Vec::new();
        for (i, read_io) in [ReadIo::PageCache, ReadIo::Direct].into_iter().enumerate() {
            let opts = StoreOptions {
                io_mode: IoMode::Auto,
                read_io,
                block_cache_bytes: 16 << 10,
                ..small_opts()
            };
            let path = root.join(format!("s{i}"));
            let s = Store::open(&path, opts.clone()).await.unwrap();
            assert_eq!(s.direct_reads(), s.direct_io() && read_io == ReadIo::Direct);
            for i in 0..4000u32 {
                s.put(format!("key{:06}", i * 7 % 4000), format!("v{i}"))
                    .await
                    .unwrap();
            }
            s.flush().await.unwrap();
            let mut got = Vec::new();
            for i in (0..4100u32).step_by(13) {
                let k = format!("key{i:06}");
                let a = s.get(&k).await.unwrap();
                assert_eq!(a, s.get_sync(&k).unwrap());
                got.push(a);
            }
            let all = collect(s.scan("key000100".."key000300").await.unwrap())
                .await
                .unwrap();
            s.close().await.unwrap();
            // Reopened: every block is a cache miss again.
            let s = Store::open(&path, opts).await.unwrap();
            for (j, i) in (0..4100u32).step_by(13).enumerate() {
                assert_eq!(s.get(format!("key{i:06}")).await.unwrap(), got[j]);
            }
            s.close().await.unwrap();
            results.push((got, all));
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0].1.len(), 200);
    });
}

#[test]
fn background_flush_runs_in_given_task_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let tq = glommio::executor().create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "lsm-background",
        );
        let opts = StoreOptions {
            background_queue: Some(tq),
            max_immutable_memtables: 4,
            ..small_opts()
        };
        let s = Store::open(&path, opts).await.unwrap();
        for i in 0..2000u32 {
            s.put(i.to_be_bytes(), [3u8; 30]).await.unwrap();
        }
        // No explicit flush: the background task must get scheduled.
        for _ in 0..100 {
            if s.stats().flushes > 0 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(s.stats().flushes > 0, "{:?}", s.stats());
        assert_eq!(
            s.get(5u32.to_be_bytes()).await.unwrap().as_deref(),
            Some(&[3u8; 30][..])
        );
        let mem = s.memory_usage();
        assert!(mem.memtables < 5 * (16 << 10), "{mem:?}");
    });
}

#[test]
fn incremental_checkpoints_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let s = Store::open(path.join("db"), small_opts()).await.unwrap();
        for i in 0..500u32 {
            s.put(format!("k{i:05}"), [7u8; 50]).await.unwrap();
        }
        let c1 = s.checkpoint(path.join("cp1")).await.unwrap();
        assert!(!c1.files.is_empty());
        s.close().await.unwrap();
        // After a reopen, a checkpoint with nothing new shares every file with the last one.
        let s = Store::open(path.join("db"), small_opts()).await.unwrap();
        let c2 = s.checkpoint(path.join("cp2")).await.unwrap();
        assert!(c2.files.iter().all(|f| f.in_previous), "{c2:?}");
        assert_eq!(c2.new_files().count(), 0);
    });
}
