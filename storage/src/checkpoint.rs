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
        self.flush().await?;
        // Holding both locks: no flush adds and no compaction deletes files
        // while they are linked.
        let _f = crate::store::lock(&self.inner.flush_lock).await?;
        let _c = crate::store::lock(&self.inner.compact_lock).await?;
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
