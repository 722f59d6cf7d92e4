//! Flip a byte in each SSTable block type and in the manifest: the store
//! must return a corruption error naming the file and the block offset,
//! never panic and never return wrong data.

mod common;

use std::path::{Path, PathBuf};

use common::{collect, run};
use weir_storage::{Error, IoMode, ReadIo, Store, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions {
        memtable_bytes: 1 << 20,
        ..StoreOptions::default()
    }
}

/// Builds a store with one SSTable holding points and a range tombstone.
fn pristine(root: &Path) -> PathBuf {
    let dir = root.join("pristine");
    let d = dir.clone();
    run(move || async move {
        let s = Store::open(&d, opts()).await.unwrap();
        for i in 0..2000u32 {
            s.put(format!("key{i:06}"), format!("value-{i}"))
                .await
                .unwrap();
        }
        s.delete_range("key000100".."key000200").await.unwrap();
        s.close().await.unwrap();
    });
    dir
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn sst_file(dir: &Path) -> PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.pop().unwrap()
}

fn flip(path: &Path, off: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[off as usize] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// (index, bloom, range_dels) offsets from the footer (see FORMAT.md).
fn meta_offsets(sst: &Path) -> [u64; 3] {
    let b = std::fs::read(sst).unwrap();
    let f = &b[b.len() - 64..];
    let rd = |i: usize| u64::from_le_bytes(f[i * 16..i * 16 + 8].try_into().unwrap());
    [rd(0), rd(1), rd(2)]
}

/// Opens the store and reads everything; returns the first error.
fn open_and_read(dir: PathBuf) -> Result<usize, Error> {
    let d = StoreOptions::default();
    open_and_read_with(dir, d.io_mode, d.read_io)
}

fn open_and_read_with(dir: PathBuf, io_mode: IoMode, read_io: ReadIo) -> Result<usize, Error> {
    run(move || async move {
        let o = StoreOptions {
            io_mode,
            read_io,
            ..opts()
        };
        let s = Store::open(&dir, o).await?;
        for i in (0..2000u32).step_by(97) {
            s.get(format!("key{i:06}")).await?;
        }
        Ok(collect(s.scan::<&[u8], _>(..).await?).await?.len())
    })
}

fn expect_corruption(res: Result<usize, Error>, file: &Path, offset: u64) {
    match res {
        Err(Error::Corruption {
            path,
            offset: o,
            reason,
        }) => {
            assert_eq!(path.file_name(), file.file_name(), "{reason}");
            assert_eq!(o, offset, "{reason}");
        }
        other => panic!(
            "expected corruption in {} at {offset}, got {other:?}",
            file.display()
        ),
    }
}

#[test]
fn every_block_type_and_manifest() {
    let root = tempfile::tempdir().unwrap();
    let src = pristine(root.path());
    assert_eq!(open_and_read(src.clone()).unwrap(), 1900);
    let sst = sst_file(&src);
    let size = std::fs::metadata(&sst).unwrap().len();
    let [index, bloom, rd] = meta_offsets(&sst);
    // (name, byte to flip, offset the error must name)
    let cases = [
        ("data block 0", 10, 0),
        ("data block 1", 4096 + 5, 4096),
        ("index", index + 3, index),
        ("bloom", bloom + 3, bloom),
        ("range tombstones", rd + 1, rd),
        ("footer", size - 10, size - 64),
    ];
    for (i, (name, at, want)) in cases.into_iter().enumerate() {
        let dir = root.path().join(format!("case{i}"));
        copy_dir(&src, &dir);
        let f = sst_file(&dir);
        flip(&f, at);
        eprintln!("case {name}");
        expect_corruption(open_and_read(dir), &f, want);
    }
    // Manifest: a flipped byte inside its (single, complete) record.
    let dir = root.path().join("manifest");
    copy_dir(&src, &dir);
    let m = dir.join("MANIFEST");
    flip(&m, 12);
    expect_corruption(open_and_read(dir), &m, 0);
    // Truncated SSTable.
    let dir = root.path().join("trunc");
    copy_dir(&src, &dir);
    let f = sst_file(&dir);
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() - 100]).unwrap();
    assert!(matches!(open_and_read(dir), Err(Error::Corruption { .. })));
}

/// A flipped data block is reported with its file and offset whichever way
/// blocks are read (page cache or O_DIRECT, on a store that writes with
/// O_DIRECT), by `get` and by `get_sync`.
#[test]
fn data_block_corruption_in_both_read_modes() {
    let root = tempfile::tempdir().unwrap();
    let src = pristine(root.path());
    for (i, read_io) in [ReadIo::PageCache, ReadIo::Direct].into_iter().enumerate() {
        let dir = root.path().join(format!("mode{i}"));
        copy_dir(&src, &dir);
        let f = sst_file(&dir);
        flip(&f, 4096 + 7);
        expect_corruption(
            open_and_read_with(dir.clone(), IoMode::Auto, read_io),
            &f,
            4096,
        );
        let res = run(move || async move {
            let o = StoreOptions {
                io_mode: IoMode::Auto,
                read_io,
                ..opts()
            };
            let s = Store::open(&dir, o).await?;
            for i in 0..2000u32 {
                s.get_sync(format!("key{i:06}"))?;
            }
            Ok(0)
        });
        expect_corruption(res, &f, 4096);
    }
}

/// Every 11th byte of a real SSTable flipped in turn through the fuzz entry
/// point: never a panic, and a flip in a data block is always rejected.
#[test]
fn sampled_byte_flips_never_panic() {
    let root = tempfile::tempdir().unwrap();
    let src = pristine(root.path());
    let bytes = std::fs::read(sst_file(&src)).unwrap();
    let [index, ..] = meta_offsets(&sst_file(&src));
    assert!(weir_storage::fuzzing::read_sstable(&bytes));
    for at in (0..bytes.len()).step_by(11) {
        let mut b = bytes.clone();
        b[at] ^= 0x21;
        let accepted = weir_storage::fuzzing::read_sstable(&b);
        let in_data = (at as u64) + 8192 < index && (at % 4096) < 3000; // inside a full block
        if in_data {
            assert!(!accepted, "flip at {at} in a data block was accepted");
        }
    }
}
