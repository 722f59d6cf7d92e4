//! Entry points for the cargo-fuzz targets (not a stable API): feed
//! untrusted bytes to the real readers. They must return errors, never
//! panic.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

use crate::cache::BlockCache;
use crate::sst::iter::TableIter;
use crate::sst::meta::FileMeta;
use crate::sst::table::Table;

/// Decodes one data block. The input gets a valid crc appended so the
/// fuzzer reaches the structural checks behind the checksum.
pub fn decode_block(data: &[u8]) -> bool {
    let mut b = data.to_vec();
    crate::codec::seal(&mut b, 0);
    crate::block::Block::decode(Bytes::from(b)).is_ok()
}

/// Replays manifest bytes as they are, then framed as one record with a
/// valid crc (to exercise the edit decoder and replay rules).
pub fn replay_manifest(data: &[u8]) -> bool {
    let raw = crate::manifest::replay(data, Path::new("fuzz")).is_ok();
    let mut framed = (data.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    framed.extend_from_slice(data);
    let framed = crate::manifest::replay(&framed, Path::new("fuzz")).is_ok();
    raw || framed
}

thread_local! {
    static EXECUTOR: Option<LocalExecutor> =
        LocalExecutorBuilder::new(Placement::Unbound).io_memory(2 << 20).make().ok();
}

/// Writes `data` to a scratch file, opens it as an SSTable and reads every
/// entry plus a few point lookups. Returns whether it was accepted.
pub fn read_sstable(data: &[u8]) -> bool {
    let path = std::env::temp_dir().join(format!("weir-fuzz-{}.sst", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return false;
    }
    EXECUTOR.with(|ex| {
        let Some(ex) = ex else { return false };
        ex.run(async {
            let meta = FileMeta {
                id: 1,
                size: data.len() as u64,
                smallest: Bytes::new(),
                largest: Bytes::new(),
                needs_cleanup: false,
            };
            let cache = Rc::new(BlockCache::new(1 << 20));
            let Ok(t) = Table::open(&path, meta, false, cache).await else {
                return false;
            };
            let t = Rc::new(t);
            let Ok(mut it) = TableIter::seek(
                t.clone(),
                std::ops::Bound::Unbounded,
                false,
                crate::file::Io::Async,
            )
            .await
            else {
                return false;
            };
            let mut keys = Vec::new();
            while let Some((k, _)) = it.current() {
                keys.push(k.clone());
                if it.advance().await.is_err() {
                    return false;
                }
            }
            for k in keys.iter().take(16) {
                if t.get(k, crate::bloom::hash64(k), crate::file::Io::Async)
                    .await
                    .is_err()
                {
                    return false;
                }
                let _ = t.covers(k);
            }
            true
        })
    })
}
