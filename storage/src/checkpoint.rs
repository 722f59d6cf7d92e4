//! Checkpoints: flush, hard-link the live SSTables and write a manifest
//! into a directory that `Store::open` can restore from. SSTables are
//! immutable, so a file already in the previous checkpoint need not be
//! uploaded again (incremental checkpoints).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file::sync_dir;
use crate::manifest::write_snapshot;
use crate::sst::meta::sst_name;
use crate::store::Store;

/// One SSTable in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// File name inside the checkpoint directory.
    pub name: String,
    /// Level it lives at.
    pub level: u32,
    /// Size in bytes.
    pub size: u64,
    /// Already part of the previous checkpoint of this store (remembered across reopen).
    pub in_previous: bool,
}

/// What [`Store::checkpoint`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Checkpoint directory.
    pub dir: PathBuf,
    /// Live SSTables (all hard-linked into `dir`).
    pub files: Vec<CheckpointFile>,
    /// The manifest file name in `dir`.
    pub manifest: String,
}

impl CheckpointInfo {
    /// Files not in the previous checkpoint (what an incremental upload sends).
    pub fn new_files(&self) -> impl Iterator<Item = &CheckpointFile> {
        self.files.iter().filter(|f| !f.in_previous)
    }
}

impl Store {
    /// Flushes the memtable and materializes a restorable snapshot in `dir`
    /// (created if missing; must be on the same filesystem for hard links).
    pub async fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let dir = dir.as_ref().to_path_buf();
        // Its I/O waits can be lost to glommio 0.9 too (see `keepalive.rs`).
        let _hold = self.inner.keepalive.hold_ref();
        self.flush().await?;
        // Holding both locks: no flush adds and no compaction deletes files
        // while they are linked.
        let _f = crate::store::lock(&self.inner.keepalive, &self.inner.flush_lock).await?;
        let _c = crate::store::lock(&self.inner.keepalive, &self.inner.compact_lock).await?;
        // Anything frozen by writers since the flush above.
        self.flush_imms_locked().await?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let (mstate, prev) = {
            let st = self.inner.state.borrow();
            (st.manifest_state.clone(), st.prev_checkpoint.clone())
        };
        let mut files = Vec::new();
        for (id, (level, meta)) in &mstate.files {
            let name = sst_name(*id);
            let src = self.inner.dir.join(&name);
            let dst = dir.join(&name);
            if dst.exists() {
                std::fs::remove_file(&dst).map_err(|e| Error::io(&dst, e))?;
            }
            std::fs::hard_link(&src, &dst).map_err(|e| Error::io(&dst, e))?;
            files.push(CheckpointFile {
                name,
                level: *level,
                size: meta.size,
                in_previous: prev.contains(id),
            });
        }
        write_snapshot(&dir, &mstate).await?;
        sync_dir(&dir).await?;
        let ids = mstate.files.keys().copied().collect::<HashSet<_>>();
        remember_checkpointed(&self.inner.dir, &ids).await?;
        self.inner.state.borrow_mut().prev_checkpoint = ids;
        tracing::info!(dir = %dir.display(), files = files.len(), "checkpoint written");
        Ok(CheckpointInfo {
            dir,
            files,
            manifest: crate::manifest::MANIFEST.to_string(),
        })
    }
}

/// The file in a store's directory listing the SSTables of its last checkpoint, so that the
/// next checkpoint after a reopen still knows what it shares with the previous one.
pub(crate) const CHECKPOINTED: &str = "CHECKPOINTED";

/// Records `ids` as the last checkpoint's files (written to a temporary file, then renamed).
async fn remember_checkpointed(store_dir: &Path, ids: &HashSet<u64>) -> Result<()> {
    let mut sorted: Vec<u64> = ids.iter().copied().collect();
    sorted.sort_unstable();
    let text: String = sorted.iter().map(|id| format!("{id}\n")).collect();
    let tmp = store_dir.join(format!("{CHECKPOINTED}.tmp"));
    let path = store_dir.join(CHECKPOINTED);
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(store_dir).await
}

/// The SSTables of the last checkpoint taken from `store_dir`; empty if none was recorded or
/// the record is unreadable (then the next checkpoint just counts every file as new).
pub(crate) fn checkpointed(store_dir: &Path) -> HashSet<u64> {
    let path = store_dir.join(CHECKPOINTED);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashSet::new();
    };
    let parsed: std::result::Result<HashSet<u64>, _> =
        text.lines().map(|l| l.trim().parse::<u64>()).collect();
    match parsed {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable checkpoint record");
            HashSet::new()
        }
    }
}

/// How [`Store::checkpoint_sync`] puts the SSTables into the checkpoint directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTransfer {
    /// Hard links: instant, and the files stay shared with the live store and other
    /// checkpoints (immutable, so sharing is safe); the directory must be on the same
    /// filesystem.
    HardLink,
    /// Full copies: a self-contained directory (a savepoint), at the cost of copying.
    Copy,
}

impl Store {
    /// A checkpoint taken without suspending, for callers that cannot await (an operator
    /// handling a checkpoint barrier): the live SSTables are linked (or copied) into `dir`,
    /// and what the memtables hold is written there as a write-ahead log, which
    /// [`Store::open`] replays. Nothing is flushed, so the pause is the memtables' size, not
    /// the store's.
    ///
    /// Consistent because it runs in one synchronous step on the store's thread: the file
    /// set, the frozen memtables and the active one are read together, and a flush installs
    /// its SSTable and drops its memtable in one step too, so no write is in both or in
    /// neither. The files are fsynced (SSTables already are), so `dir` is durable when this
    /// returns.
    pub fn checkpoint_sync(
        &self,
        dir: impl AsRef<Path>,
        transfer: FileTransfer,
    ) -> Result<CheckpointInfo> {
        let dir = dir.as_ref().to_path_buf();
        let (mstate, prev, mems, log_id) = {
            let st = self.inner.state.borrow();
            // Replay order: oldest frozen memtable first (`imms` is newest first), then the
            // active one.
            let mut mems: Vec<_> = st.imms.iter().rev().cloned().collect();
            mems.push(st.mem.clone());
            (
                st.manifest_state.clone(),
                st.prev_checkpoint.clone(),
                mems,
                st.next_file_id.max(st.manifest_state.log_number),
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut files = Vec::with_capacity(mstate.files.len());
        for (id, (level, meta)) in &mstate.files {
            let name = sst_name(*id);
            let src = self.inner.dir.join(&name);
            let dst = dir.join(&name);
            if dst.exists() {
                std::fs::remove_file(&dst).map_err(|e| Error::io(&dst, e))?;
            }
            match transfer {
                FileTransfer::HardLink => link_or_copy(&src, &dst)?,
                FileTransfer::Copy => {
                    std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
                    fsync_file(&dst)?;
                }
            }
            files.push(CheckpointFile {
                name,
                level: *level,
                size: meta.size,
                in_previous: prev.contains(id),
            });
        }
        let mut log = Vec::new();
        for mem in &mems {
            memtable_as_log(&mem.borrow(), &mut log);
        }
        if !log.is_empty() {
            let path = dir.join(crate::wal::wal_name(log_id));
            std::fs::write(&path, &log).map_err(|e| Error::io(&path, e))?;
            fsync_file(&path)?;
        }
        let tmp = dir.join(crate::manifest::MANIFEST_TMP);
        let manifest = dir.join(crate::manifest::MANIFEST);
        std::fs::write(&tmp, mstate.snapshot_edit().encode()).map_err(|e| Error::io(&tmp, e))?;
        fsync_file(&tmp)?;
        std::fs::rename(&tmp, &manifest).map_err(|e| Error::io(&manifest, e))?;
        fsync_file(&dir)?;
        if transfer == FileTransfer::HardLink {
            let ids = mstate.files.keys().copied().collect::<HashSet<_>>();
            self.inner.state.borrow_mut().prev_checkpoint = ids;
        }
        tracing::debug!(
            dir = %dir.display(),
            files = files.len(),
            log_bytes = log.len(),
            "synchronous checkpoint written"
        );
        Ok(CheckpointInfo {
            dir,
            files,
            manifest: crate::manifest::MANIFEST.to_string(),
        })
    }
}

/// Appends a memtable's contents as log records that rebuild it when replayed: its range
/// tombstones first (they only hide older sources: the memtable removed its own keys when
/// it took them), then every entry, merge operands one by one, oldest first.
fn memtable_as_log(mem: &crate::memtable::Memtable, out: &mut Vec<u8>) {
    use crate::entry::Entry;
    use crate::wal::{TAG_DELETE, TAG_DELETE_RANGE, TAG_MERGE, TAG_PUT, encode_record};
    for (start, end) in mem.range_dels() {
        encode_record(out, TAG_DELETE_RANGE, &start, &end);
    }
    for (key, entry) in mem.iter() {
        match entry {
            Entry::Put(v) => encode_record(out, TAG_PUT, key, v),
            Entry::Delete => encode_record(out, TAG_DELETE, key, &[]),
            Entry::Merge(operands) => {
                for op in operands {
                    encode_record(out, TAG_MERGE, key, op);
                }
            }
        }
    }
}

/// Hard-links `src` to `dst`, or copies it (durably) when they are on different filesystems
/// (say, state on a local disk and checkpoints on another mount), where links are impossible.
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(src, dst).map_err(|e| Error::io(dst, e))?;
            fsync_file(dst)
        }
        Err(e) => Err(Error::io(dst, e)),
    }
}

/// fsync of a file or directory through std (the caller cannot await glommio's).
fn fsync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
