//! The backend a job's keyed operators keep their state in, chosen per job.
//!
//! Like Flink's `state.backend` setting, the choice is configuration, not code: a keyed
//! process function declares its states once and runs unchanged on either backend.
//! [`StateBackendConfig::Heap`] (default) keeps entries in memory; [`StateBackendConfig::Lsm`]
//! gives every keyed operator instance its own `weir-storage` LSM store (one per operator and
//! shard, as Flink keeps one RocksDB instance per operator subtask), so state can outgrow
//! memory.
//!
//! The stores live in a per-run working directory that the job deletes when it ends: they
//! are scratch space, durability comes from checkpoints. A working directory left behind by
//! a process that was killed is removed by the next job that starts in the same base
//! directory.
//!
//! [`JobStateBackend`] is an enum rather than a trait object so the per-call dispatch is one
//! predictable branch that inlines, not an indirect call per state access.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use weir_storage::{BackgroundShares, StoreOptions};

use super::backend::{MapEntries, StateBackend};
use super::error::StateError;
use super::heap::HeapStateBackend;
use super::key::{KeyGroup, StateId};
use super::lsm::LsmStateBackend;
use super::lsm_cache::CacheLimits;
use super::snapshot::KeyGroupSnapshot;

/// Where a job keeps its keyed state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateBackendConfig {
    /// In memory (fast; state must fit in RAM).
    #[default]
    Heap,
    /// In an LSM store per keyed operator instance, under a directory.
    Lsm(LsmStateConfig),
}

/// Settings of the LSM state backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsmStateConfig {
    /// Base directory; each run works in its own subdirectory and removes it at the end.
    pub dir: PathBuf,
    /// Memtable size per store before it is flushed to an SSTable.
    pub memtable_bytes: usize,
    /// Block cache per store.
    pub block_cache_bytes: usize,
    /// Write-back cache per store for value and list entries (`entries: 0` turns it off).
    pub write_cache: CacheLimits,
}

impl LsmStateConfig {
    /// Defaults sized for several stores per core: 16 MiB memtables, 32 MiB block cache,
    /// a write-back cache of 4096 entries / 4 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LsmStateConfig {
            dir: dir.into(),
            memtable_bytes: 16 << 20,
            block_cache_bytes: 32 << 20,
            write_cache: CacheLimits::default(),
        }
    }
}

/// An LSM backend under `dir` with 4 KiB memtables, so tests flush and compact while jobs run.
#[cfg(test)]
pub(crate) fn tiny_lsm(dir: &Path) -> StateBackendConfig {
    let mut config = LsmStateConfig::new(dir);
    config.memtable_bytes = 4096;
    StateBackendConfig::Lsm(config)
}

/// Prefix of the per-run working directories, followed by `<pid>-<run>`.
const RUN_DIR_PREFIX: &str = "weir-run-";

/// Numbers the runs of this process (restarts after a failure are new runs).
static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh working directory for one run of a job under `base`, after removing the
/// directories of runs whose process is gone (killed before it could clean up).
pub(crate) fn new_run_dir(base: &Path) -> Result<PathBuf, StateError> {
    let io_err = |path: &Path, e: std::io::Error| StateError::Storage {
        path: Some(path.to_path_buf()),
        offset: None,
        message: format!("LSM state directory: {e}"),
    };
    std::fs::create_dir_all(base).map_err(|e| io_err(base, e))?;
    remove_dead_runs(base);
    let run = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{RUN_DIR_PREFIX}{}-{run}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    Ok(dir)
}

/// Removes `weir-run-<pid>-*` directories whose process no longer exists. Best effort: a
/// directory that cannot be removed is logged and left.
fn remove_dead_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(RUN_DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(dir = %entry.path().display(), "removed the LSM state of a dead run")
            }
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove stale LSM state")
            }
        }
    }
}

/// Opens one operator instance's LSM store in `dir` (created empty). Runs on the shard's
/// executor: flushes and compactions go to a task queue of their own whose shares grow with
/// the store's compaction debt, so they yield to record processing until they fall behind.
pub(crate) async fn open_lsm(
    dir: &Path,
    config: &LsmStateConfig,
) -> Result<LsmStateBackend, StateError> {
    let shares = BackgroundShares::new(50, 1000);
    let queue = glommio::executor().create_task_queue(
        shares.shares(),
        glommio::Latency::NotImportant,
        "weir-lsm-background",
    );
    let options = StoreOptions {
        memtable_bytes: config.memtable_bytes,
        block_cache_bytes: config.block_cache_bytes,
        background_queue: Some(queue),
        background_shares: Some(shares),
        ..StoreOptions::default()
    };
    let backend = LsmStateBackend::open(dir, options).await?;
    backend.set_cache_limits(config.write_cache)?;
    Ok(backend)
}

/// The keyed-state backend of one operator instance: the job's choice.
#[derive(Debug)]
pub enum JobStateBackend {
    /// In memory.
    Heap(HeapStateBackend),
    /// On this instance's LSM store.
    Lsm(LsmStateBackend),
}

impl Default for JobStateBackend {
    fn default() -> Self {
        JobStateBackend::Heap(HeapStateBackend::new())
    }
}

impl JobStateBackend {
    /// The LSM backend, if this is one.
    pub fn as_lsm(&self) -> Option<&LsmStateBackend> {
        match self {
            JobStateBackend::Lsm(l) => Some(l),
            JobStateBackend::Heap(_) => None,
        }
    }

    /// The heap backend, if this is one.
    pub fn as_heap(&self) -> Option<&HeapStateBackend> {
        match self {
            JobStateBackend::Heap(h) => Some(h),
            JobStateBackend::Lsm(_) => None,
        }
    }
}

/// Either backend's key-group iterator.
enum KeyGroupIter<A, B> {
    Heap(A),
    Lsm(B),
}

impl<A: Iterator<Item = KeyGroup>, B: Iterator<Item = KeyGroup>> Iterator for KeyGroupIter<A, B> {
    type Item = KeyGroup;

    fn next(&mut self) -> Option<KeyGroup> {
        match self {
            KeyGroupIter::Heap(a) => a.next(),
            KeyGroupIter::Lsm(b) => b.next(),
        }
    }
}

/// Forwards a call to whichever backend is selected.
macro_rules! dispatch {
    ($self:expr, $b:ident => $call:expr) => {
        match $self {
            JobStateBackend::Heap($b) => $call,
            JobStateBackend::Lsm($b) => $call,
        }
    };
}

impl StateBackend for JobStateBackend {
    #[inline]
    fn get(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        dispatch!(self, b => b.get(state, key_group, key, user_key))
    }

    #[inline]
    fn get_with<R>(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StateError> {
        dispatch!(self, b => b.get_with(state, key_group, key, user_key, f))
    }

    #[inline]
    fn put(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        dispatch!(self, b => b.put(state, key_group, key, user_key, value))
    }

    #[inline]
    fn delete(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        dispatch!(self, b => b.delete(state, key_group, key, user_key))
    }

    #[inline]
    fn append(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        element: &[u8],
    ) -> Result<(), StateError> {
        dispatch!(self, b => b.append(state, key_group, key, element))
    }

    fn put_list(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        elements: &[Vec<u8>],
    ) -> Result<(), StateError> {
        dispatch!(self, b => b.put_list(state, key_group, key, elements))
    }

    fn get_list(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<Vec<Vec<u8>>, StateError> {
        dispatch!(self, b => b.get_list(state, key_group, key))
    }

    #[inline]
    fn get_list_with(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        f: &mut impl FnMut(&[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        dispatch!(self, b => b.get_list_with(state, key_group, key, f))
    }

    fn scan_prefix(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<MapEntries, StateError> {
        dispatch!(self, b => b.scan_prefix(state, key_group, key))
    }

    fn delete_prefix(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<(), StateError> {
        dispatch!(self, b => b.delete_prefix(state, key_group, key))
    }

    fn retain(
        &mut self,
        state: StateId,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        dispatch!(self, b => b.retain(state, keep))
    }

    fn snapshot_key_groups(&self, range: Range<KeyGroup>) -> Result<KeyGroupSnapshot, StateError> {
        dispatch!(self, b => b.snapshot_key_groups(range))
    }

    fn restore(&mut self, snapshot: &KeyGroupSnapshot) -> Result<(), StateError> {
        dispatch!(self, b => b.restore(snapshot))
    }

    fn delete_key_groups(&mut self, range: Range<KeyGroup>) -> Result<(), StateError> {
        dispatch!(self, b => b.delete_key_groups(range))
    }

    fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_ {
        match self {
            JobStateBackend::Heap(b) => KeyGroupIter::Heap(b.key_groups()),
            JobStateBackend::Lsm(b) => KeyGroupIter::Lsm(b.key_groups()),
        }
    }

    fn len(&self) -> usize {
        dispatch!(self, b => b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_choice_passes_the_backend_suite() {
        crate::state::suite::run_all(&mut JobStateBackend::default);
    }

    #[test]
    fn dead_runs_are_removed_and_live_ones_kept() {
        let base = std::env::temp_dir().join(format!("weir-job-backend-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // pid 0 never names a live process's /proc entry we could clash with... use an
        // impossible pid instead: above the kernel's pid_max ceiling (4194304).
        let dead = base.join(format!("{RUN_DIR_PREFIX}4294967-0"));
        let unrelated = base.join("keep-me");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::create_dir_all(&unrelated).unwrap();
        let mine = new_run_dir(&base).unwrap();
        assert!(!dead.exists(), "dead run's directory removed");
        assert!(unrelated.exists(), "other directories untouched");
        assert!(mine.exists());
        let second = new_run_dir(&base).unwrap();
        assert_ne!(mine, second, "every run gets its own directory");
        assert!(mine.exists(), "a live run's directory is kept");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
