//! LSM keyed state in checkpoints: the store's own files, not a copy of its entries.
//!
//! At a barrier an operator whose keyed state is in an LSM store takes the store's
//! synchronous file snapshot ([`weir_storage::Store::checkpoint_sync`]) into
//! `<checkpoint>/lsm/node-<n>-shard-<s>/`: its immutable SSTables hard-linked (a savepoint
//! copies them, to be self-contained) plus its memtables written as a log. The pause is the
//! memtables' size, whatever the state's size, and consecutive checkpoints share every
//! SSTable that did not change (incremental). Retention deletes a checkpoint directory with
//! its links; an SSTable's data goes once no checkpoint and no live store links it.
//!
//! The operator's snapshot records where the files are, once per key group the shard owns,
//! so that on restore each new shard learns which old stores hold its key groups:
//! - same key groups as the writer (same shard count): the files are linked into the new
//!   store's directory and opened as they are — restoring costs a directory of links;
//! - otherwise (rescaling): each old store is opened on links of its files and the key-group
//!   ranges the new shard owns are copied over (key groups are contiguous key ranges).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use weir_storage::FileTransfer;

use super::barrier::Barrier;
use super::snapshot::{StateRestore, StateSnapshot};
use crate::state::{LsmStateBackend, LsmStateConfig, StateCodec, StateError, open_lsm};

/// Part tag of the file references in a keyed process operator's snapshot.
pub(crate) const PART_LSM: u8 = 3;

/// Writes entries between yields when copying key groups out of an old store, so the new
/// store's background flushes keep up.
const COPY_BATCH: usize = 4096;

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StateError {
    StateError::Storage {
        path: Some(path.to_path_buf()),
        offset: None,
        message: format!("{what}: {e}"),
    }
}

/// Snapshots `lsm` for `barrier` into `checkpoint_dir` and records, for every key group of
/// `key_groups`, where the files went.
pub(crate) fn snapshot(
    lsm: &LsmStateBackend,
    checkpoint_dir: &Path,
    barrier: Barrier,
    node: usize,
    shard: usize,
    key_groups: Range<u32>,
    out: &mut StateSnapshot<'_>,
) -> Result<(), StateError> {
    let relative = format!("lsm/node-{node}-shard-{shard}");
    let transfer = if barrier.savepoint {
        FileTransfer::Copy
    } else {
        FileTransfer::HardLink
    };
    lsm.store()
        .checkpoint_sync(checkpoint_dir.join(&relative), transfer)?;
    let mut reference = Vec::new();
    (key_groups.start, key_groups.end, relative).encode(&mut reference);
    out.set_part(PART_LSM);
    for kg in key_groups {
        out.key_group_bytes(kg, &reference);
    }
    Ok(())
}

/// True if the restore holds LSM file references (so it needs the LSM backend).
pub(crate) fn has_references(restore: &StateRestore) -> bool {
    !restore.part(PART_LSM).is_empty()
}

/// The old stores holding this shard's key groups: relative directory → (the writer's key
/// groups, the key groups this shard takes from it).
type References = BTreeMap<String, (Range<u32>, Vec<u32>)>;

fn references(restore: &StateRestore) -> Result<References, StateError> {
    let mut refs = References::new();
    for (kg, bytes) in restore.part(PART_LSM).key_group_bytes() {
        let (start, end, relative) = <(u32, u32, String)>::decode(bytes)?;
        if relative.contains("..") || Path::new(&relative).is_absolute() {
            return Err(StateError::Storage {
                path: None,
                offset: None,
                message: format!("LSM snapshot reference `{relative}` leaves the checkpoint"),
            });
        }
        refs.entry(relative)
            .or_insert_with(|| (start..end, Vec::new()))
            .1
            .push(kg);
    }
    Ok(refs)
}

/// Opens this shard's LSM store in `work_dir` holding the state `restore` refers to (an
/// empty store if it refers to none). `checkpoint_dir` is the restored checkpoint's
/// directory; `key_groups` the ones this shard owns now.
pub(crate) async fn restore(
    work_dir: &Path,
    config: &LsmStateConfig,
    restore: &StateRestore,
    checkpoint_dir: Option<&Path>,
    key_groups: Range<u32>,
) -> Result<LsmStateBackend, StateError> {
    let refs = references(restore)?;
    let Some(checkpoint_dir) = checkpoint_dir.filter(|_| !refs.is_empty()) else {
        return open_lsm(work_dir, config).await;
    };
    if let Some((relative, (writer, taken))) = refs.iter().next() {
        let whole = refs.len() == 1 && *writer == key_groups && taken.len() == writer.len();
        if whole {
            link_store(&checkpoint_dir.join(relative), work_dir)?;
            return open_lsm(work_dir, config).await;
        }
    }
    let target = open_lsm(work_dir, config).await?;
    for (i, (relative, (_, taken))) in refs.iter().enumerate() {
        let scratch = scratch_dir(work_dir, i);
        link_store(&checkpoint_dir.join(relative), &scratch)?;
        let old = open_lsm(&scratch, config).await?;
        let mut copied = 0usize;
        for range in contiguous(taken) {
            // Store keys start with the key group (big-endian), so a key-group range is a
            // key range.
            let (from, to) = (range.start.to_be_bytes(), range.end.to_be_bytes());
            let scan = old.store().scan_sync(from.as_slice()..to.as_slice())?;
            for entry in scan {
                let (k, v) = entry?;
                target.store().put_sync(&k, &v)?;
                copied += 1;
                if copied.is_multiple_of(COPY_BATCH) {
                    target.relieve_pressure().await?;
                }
            }
        }
        old.close().await?;
        std::fs::remove_dir_all(&scratch)
            .map_err(|e| io_error(&scratch, "removing a restore scratch store", e))?;
        tracing::debug!(from = %relative, entries = copied, "LSM key groups copied on rescale");
    }
    Ok(target)
}

/// Where old store `i` is opened while its key groups are copied out.
fn scratch_dir(work_dir: &Path, i: usize) -> PathBuf {
    let name = work_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    work_dir.with_file_name(format!("{name}-restore-{i}"))
}

/// Ascending key groups as half-open contiguous ranges.
fn contiguous(key_groups: &[u32]) -> Vec<Range<u32>> {
    let mut sorted = key_groups.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<Range<u32>> = Vec::new();
    for kg in sorted {
        match out.last_mut() {
            Some(r) if r.end == kg => r.end = kg.saturating_add(1),
            _ => out.push(kg..kg.saturating_add(1)),
        }
    }
    out
}

/// Fills `to` (created) with the store files of `from`: SSTables as hard links (immutable,
/// and the store only ever unlinks them; copies across filesystems), the small mutable files
/// (manifest, memtable log) as copies, so the live store never writes into a checkpoint's
/// files.
fn link_store(from: &Path, to: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(to).map_err(|e| io_error(to, "creating a state store directory", e))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| io_error(from, "reading an LSM snapshot", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(from, "reading an LSM snapshot", e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let is_sst = src.extension().is_some_and(|e| e == "sst");
        if is_sst {
            weir_storage::link_or_copy(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .map_err(|e| io_error(&dst, "restoring an LSM snapshot file", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ranges() {
        assert_eq!(contiguous(&[]), Vec::<Range<u32>>::new());
        assert_eq!(contiguous(&[3, 1, 2, 7, 8, 10]), vec![1..4, 7..9, 10..11]);
        assert_eq!(contiguous(&[5, 5]), vec![5..6]);
    }

    #[test]
    fn references_outside_the_checkpoint_are_refused() {
        let mut bad = vec![PART_LSM];
        (0u32, 4u32, "../elsewhere".to_string()).encode(&mut bad);
        let restore = StateRestore::from_entries(vec![(0, bad)], Vec::new());
        assert!(references(&restore).is_err());
        let mut good = vec![PART_LSM];
        (0u32, 4u32, "lsm/node-1-shard-0".to_string()).encode(&mut good);
        let restore = StateRestore::from_entries(vec![(0, good.clone()), (1, good)], Vec::new());
        let refs = references(&restore).expect("valid");
        assert_eq!(refs["lsm/node-1-shard-0"], (0..4, vec![0, 1]));
    }
}
