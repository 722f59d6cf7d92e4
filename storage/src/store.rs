//! The per-shard store: write path, read path and background scheduling.
//! Everything runs on the shard's own glommio executor; flushes and
//! compactions are two tasks in a (lower-share) task queue, each kind
//! serialized by its own one-permit semaphore, so a flush never waits for a
//! compaction. No threads beyond the process-wide keepalive waker
//! (`keepalive.rs`), no locks beyond the semaphores.

/// How long a write pauses while L0 is past its slowdown threshold.
const WRITE_SLOWDOWN: std::time::Duration = std::time::Duration::from_micros(100);
/// Memtable entries copied into the SSTable builder between two yields.
const FLUSH_CHUNK: usize = 4096;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ops::{Bound, Range, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::sync::Semaphore;

use crate::cache::BlockCache;
use crate::entry::{Entry, resolve};
use crate::error::{Error, Result};
use crate::file::{Io, ReadIo, probe_direct_io, read_all, sync_dir};
use crate::iter::{MergeIter, Source};
use crate::keepalive::Keepalive;
use crate::manifest::{MANIFEST, Manifest, ManifestState, VersionEdit, replay, write_snapshot};
use crate::memtable::{MemKey, Memtable};
use crate::options::StoreOptions;
use crate::sst::meta::sst_name;
use crate::sst::table::Table;
use crate::version::{LevelConfig, Version};
use crate::wal::{Wal, WalOp, wal_name};

/// The two background tasks.
#[derive(Debug, Clone, Copy)]
enum BgJob {
    Flush,
    Compact,
}

/// Write/compaction counters, for write- and space-amplification numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Key + value bytes accepted by put/merge/delete.
    pub user_bytes: u64,
    /// SSTable bytes written by memtable flushes.
    pub flush_bytes: u64,
    /// SSTable bytes written by compactions.
    pub compaction_bytes: u64,
    /// WAL bytes appended (approximate: key + value + record header).
    pub wal_bytes: u64,
    /// Number of compactions run (trivial moves included).
    pub compactions: u64,
    /// Number of memtable flushes.
    pub flushes: u64,
    /// Writes paused by the slowdown because L0 was at twice its trigger.
    pub slowdowns_l0: u64,
    /// Writes paused by the slowdown because the active memtable was
    /// nearly full with frozen ones still unflushed.
    pub slowdowns_memtable: u64,
    /// Write stalls (inline flush, maybe inline compaction).
    pub stalls: u64,
}

/// Current memory held, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Active plus frozen memtables.
    pub memtables: usize,
    /// Blocks in the block cache (encoded or decoded).
    pub block_cache: usize,
    /// Bloom filters, indexes and range tombstones of open tables.
    pub table_meta: usize,
}

pub(crate) struct State {
    pub(crate) mem: Rc<RefCell<Memtable>>,
    /// Frozen memtables waiting for flush, newest first.
    pub(crate) imms: Vec<Rc<RefCell<Memtable>>>,
    pub(crate) version: Rc<Version>,
    /// Mirror of the manifest contents (for snapshots and checkpoints).
    pub(crate) manifest_state: ManifestState,
    pub(crate) next_file_id: u64,
    pointers: Vec<Option<Bytes>>,
    /// A compaction task is queued or running.
    bg_scheduled: bool,
    /// A flush task is queued or running.
    flush_scheduled: bool,
    bg_error: Option<String>,
    /// Set by close/abandon: queued background tasks exit without work.
    closed: bool,
    pub(crate) prev_checkpoint: HashSet<u64>,
    pub(crate) stats: Stats,
    /// A synchronous write found too many frozen memtables and went on
    /// anyway (warned once per episode; reset when the backlog clears).
    sync_backlog_warned: bool,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) opts: StoreOptions,
    /// SSTables are written with O_DIRECT.
    pub(crate) direct: bool,
    /// SSTables are read with O_DIRECT (`direct` and [`ReadIo::Direct`]);
    /// otherwise through the page cache.
    pub(crate) read_direct: bool,
    pub(crate) cache: Rc<BlockCache>,
    pub(crate) level_cfg: LevelConfig,
    pub(crate) state: RefCell<State>,
    /// Serializes memtable flushes. Separate from compactions so a stalled
    /// writer waits for a flush, not for a long compaction.
    pub(crate) flush_lock: Semaphore,
    /// Serializes compactions (and keeps files alive during checkpoints).
    pub(crate) compact_lock: Semaphore,
    /// Serializes manifest appends / rewrites.
    manifest_lock: Semaphore,
    /// Serializes WAL appends with memtable inserts (keeps them in order).
    wal_lock: Semaphore,
    /// Taken out while in use (under `wal_lock`) so no borrow spans an await.
    wal: RefCell<Option<Wal>>,
    /// Taken out while in use (under `manifest_lock`).
    manifest: RefCell<Option<Manifest>>,
    /// Has the executor woken periodically while background work or lock
    /// waiters exist (glommio 0.9 lost wake-up; see `keepalive.rs`).
    pub(crate) keepalive: Rc<Keepalive>,
}

/// One shard's LSM store. Cheap to clone (shared handle); `!Send`.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Rc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Forward iterator returned by [`Store::scan`] and [`Store::prefix_scan`].
pub struct Scan {
    iter: MergeIter,
}

impl Scan {
    /// Next live `(key, value)` in key order, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        live(self.iter.next().await?)
    }
}

fn live(e: Option<(Bytes, Entry)>) -> Result<Option<(Bytes, Bytes)>> {
    match e {
        Some((k, Entry::Put(v))) => Ok(Some((k, v))),
        Some(_) => Err(Error::InvalidArgument(
            "scan resolved to a non-value".into(),
        )),
        None => Ok(None),
    }
}

/// Forward iterator returned by [`Store::scan_sync`] and
/// [`Store::prefix_scan_sync`]: the same merging iterator as [`Scan`], with
/// block-cache misses served by blocking `pread`s. Yields `Err` at most
/// once, then ends.
pub struct SyncScan {
    iter: MergeIter,
    failed: bool,
}

impl Iterator for SyncScan {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match ready(self.iter.next()).and_then(|r| r).and_then(live) {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Drives a read-path future built with [`Io::Sync`] to completion with a
/// single poll. Such a future never suspends: its only would-be suspension
/// points are block reads, which `Io::Sync` serves with a blocking `pread`.
/// `Pending` would be a bug in the read path, reported as an error rather
/// than a hang or a panic.
fn ready<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => Err(Error::InvalidArgument(
            "internal: synchronous read path suspended".into(),
        )),
    }
}

fn to_bytes_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<Bytes> {
    match b {
        Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn as_slice_bound(b: &Bound<Bytes>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Bound<Bytes> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Bound::Excluded(Bytes::from(p));
        }
    }
    Bound::Unbounded
}

/// Acquires a one-permit semaphore used as an async mutex. A waiter holds
/// the keepalive while it waits: the wake-up it waits for comes from another
/// task of this executor, the kind glommio 0.9 can leave unrun.
pub(crate) async fn lock<'a>(
    keepalive: &Rc<Keepalive>,
    sem: &'a Semaphore,
) -> Result<glommio::sync::Permit<'a>> {
    if let Ok(p) = sem.try_acquire_permit(1) {
        return Ok(p);
    }
    let _hold = keepalive.hold();
    sem.acquire_permit(1)
        .await
        .map_err(|e| Error::InvalidArgument(format!("store lock closed: {e}")))
}

/// Key + value bytes of a write, for the stats.
fn op_bytes(op: &WalOp) -> u64 {
    (match op {
        WalOp::Put(k, v) | WalOp::Merge(k, v) | WalOp::DeleteRange(k, v) => k.len() + v.len(),
        WalOp::Delete(k) => k.len(),
    }) as u64
}

fn parse_id(name: &str, ext: &str) -> Option<u64> {
    name.strip_suffix(ext)?.parse().ok()
}

impl Store {
    /// Opens (or creates) the store in `dir`: replays the manifest, opens
    /// every live table, replays and flushes leftover WAL files, removes
    /// orphans. A checkpoint directory opens the same way.
    pub async fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // First, so that opening's own I/O waits are covered (see `keepalive.rs`).
        let keepalive = Keepalive::new(opts.keepalive_period)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        let _hold = keepalive.hold();
        let direct = probe_direct_io(&dir, opts.io_mode).await;
        let read_direct = direct && opts.read_io == ReadIo::Direct;
        let cache = Rc::new(BlockCache::new(opts.block_cache_bytes));
        let level_cfg = LevelConfig {
            num_levels: opts.num_levels,
            l0_trigger: opts.l0_compaction_trigger,
            level1_bytes: opts.level1_bytes,
            ratio: opts.level_size_ratio,
        };

        let manifest_path = dir.join(MANIFEST);
        let mut mstate = if manifest_path.exists() {
            replay(&read_all(&manifest_path).await?, &manifest_path)?.0
        } else {
            ManifestState {
                next_file_id: 1,
                ..Default::default()
            }
        };
        for (_, (level, _)) in mstate.files.iter() {
            if *level as usize >= opts.num_levels {
                return Err(Error::InvalidArgument(format!(
                    "manifest has level {level} but num_levels is {}",
                    opts.num_levels
                )));
            }
        }

        // Scan the directory: orphans and WAL files.
        let mut wal_ids = Vec::new();
        let mut max_id = 0;
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for ent in entries {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(id) = parse_id(&name, ".sst") {
                max_id = max_id.max(id);
                if !mstate.files.contains_key(&id) {
                    tracing::info!(file = %name, "removing orphan SSTable");
                    std::fs::remove_file(ent.path()).map_err(|e| Error::io(ent.path(), e))?;
                }
            } else if let Some(id) = parse_id(&name, ".wal") {
                max_id = max_id.max(id);
                if id >= mstate.log_number {
                    wal_ids.push(id);
                } else {
                    std::fs::remove_file(ent.path()).map_err(|e| Error::io(ent.path(), e))?;
                }
            }
        }
        wal_ids.sort_unstable();
        mstate.next_file_id = mstate.next_file_id.max(max_id + 1);

        let mut opened = HashMap::new();
        for (id, (_, meta)) in &mstate.files {
            let t = Table::open(
                &dir.join(sst_name(*id)),
                meta.clone(),
                read_direct,
                cache.clone(),
            )
            .await?;
            opened.insert(*id, Rc::new(t));
        }
        let version = Version::new(opts.num_levels).apply(&mstate.snapshot_edit(), &opened);

        // Start from a compact manifest (also drops any torn tail).
        let len = write_snapshot(&dir, &mstate).await?;
        let manifest = Manifest::open(&dir, len).await?;

        let next_file_id = mstate.next_file_id;
        let inner = Rc::new(Inner {
            dir: dir.clone(),
            level_cfg,
            direct,
            read_direct,
            cache,
            state: RefCell::new(State {
                mem: Rc::new(RefCell::new(Memtable::new(None))),
                imms: Vec::new(),
                version: Rc::new(version),
                manifest_state: mstate,
                next_file_id,
                pointers: vec![None; opts.num_levels],
                bg_scheduled: false,
                flush_scheduled: false,
                bg_error: None,
                closed: false,
                prev_checkpoint: crate::checkpoint::checkpointed(&dir),
                stats: Stats::default(),
                sync_backlog_warned: false,
            }),
            opts,
            flush_lock: Semaphore::new(1),
            compact_lock: Semaphore::new(1),
            manifest_lock: Semaphore::new(1),
            wal_lock: Semaphore::new(1),
            wal: RefCell::new(None),
            manifest: RefCell::new(Some(manifest)),
            keepalive,
        });
        let store = Store { inner };

        // Replay WALs into a memtable and flush it, so old WALs can go.
        if !wal_ids.is_empty() {
            let mem = Rc::new(RefCell::new(Memtable::new(wal_ids.last().copied())));
            for id in &wal_ids {
                let ops = crate::wal::replay(&dir.join(wal_name(*id))).await?;
                tracing::info!(wal = id, records = ops.len(), "replaying WAL");
                for op in ops {
                    store.apply_to(&mem, op)?;
                }
            }
            store.inner.state.borrow_mut().imms.push(mem);
            let _permit = lock(&store.inner.keepalive, &store.inner.flush_lock).await?;
            store.flush_imms_locked().await?;
            for id in &wal_ids {
                let p = dir.join(wal_name(*id));
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
        if let Some(policy) = store.inner.opts.wal {
            let id = store.alloc_id();
            let wal = Wal::create(&dir, id, policy).await?;
            store.inner.state.borrow().mem.borrow_mut().wal_id = Some(id);
            *store.inner.wal.borrow_mut() = Some(wal);
        }
        tracing::debug!(dir = %dir.display(), direct, read_direct, "store opened");
        Ok(store)
    }

    pub(crate) fn alloc_id(&self) -> u64 {
        let mut s = self.inner.state.borrow_mut();
        let id = s.next_file_id;
        s.next_file_id += 1;
        id
    }

    /// Inserts or overwrites `key`.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        if self.inner.opts.wal.is_none() {
            self.put_mem(key.as_ref(), value.as_ref())?;
            return self.after_write().await;
        }
        let op = WalOp::Put(
            Bytes::copy_from_slice(key.as_ref()),
            Bytes::copy_from_slice(value.as_ref()),
        );
        self.write(op).await
    }

    /// A put without a WAL straight into the active memtable: the key is
    /// copied into the map (inline when short) without an intermediate
    /// `Bytes`, the value once.
    fn put_mem(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_background()?;
        let mut st = self.inner.state.borrow_mut();
        st.stats.user_bytes += (key.len() + value.len()) as u64;
        st.mem
            .borrow_mut()
            .insert(MemKey::new(key), Entry::Put(Bytes::copy_from_slice(value)));
        Ok(())
    }

    /// Deletes `key` (writes a tombstone).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.write(WalOp::Delete(Bytes::copy_from_slice(key.as_ref())))
            .await
    }

    /// Deletes every key in `start..end` with one range tombstone.
    pub async fn delete_range<K: AsRef<[u8]>>(&self, range: Range<K>) -> Result<()> {
        let (s, e) = (range.start.as_ref(), range.end.as_ref());
        if s >= e {
            return Ok(());
        }
        self.write(WalOp::DeleteRange(
            Bytes::copy_from_slice(s),
            Bytes::copy_from_slice(e),
        ))
        .await
    }

    /// Records a merge operand for `key`; combined by the configured
    /// [`crate::MergeOperator`] on read and during compaction.
    pub async fn merge(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        if self.inner.opts.merge_operator.is_none() {
            return Err(Error::NoMergeOperator);
        }
        let op = WalOp::Merge(
            Bytes::copy_from_slice(key.as_ref()),
            Bytes::copy_from_slice(operand.as_ref()),
        );
        self.write(op).await
    }

    /// Synchronous [`Store::put`]: inserts into the active memtable without
    /// suspending. See [`Store::write_sync`] for the rules of the sync path.
    pub fn put_sync(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        if self.inner.opts.wal.is_some() {
            return Err(Error::InvalidArgument(
                "synchronous writes need StoreOptions::wal = None".into(),
            ));
        }
        self.put_mem(key.as_ref(), value.as_ref())?;
        self.after_write_sync();
        Ok(())
    }

    /// Synchronous [`Store::delete`].
    pub fn delete_sync(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.write_sync(WalOp::Delete(Bytes::copy_from_slice(key.as_ref())))
    }

    /// Synchronous [`Store::delete_range`].
    pub fn delete_range_sync<K: AsRef<[u8]>>(&self, range: Range<K>) -> Result<()> {
        let (s, e) = (range.start.as_ref(), range.end.as_ref());
        if s >= e {
            return Ok(());
        }
        self.write_sync(WalOp::DeleteRange(
            Bytes::copy_from_slice(s),
            Bytes::copy_from_slice(e),
        ))
    }

    /// Synchronous [`Store::merge`].
    pub fn merge_sync(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        if self.inner.opts.merge_operator.is_none() {
            return Err(Error::NoMergeOperator);
        }
        self.write_sync(WalOp::Merge(
            Bytes::copy_from_slice(key.as_ref()),
            Bytes::copy_from_slice(operand.as_ref()),
        ))
    }

    /// The synchronous write path, for callers that cannot `.await` (a
    /// state backend called from record processing):
    ///
    /// * the write goes into the active memtable and returns; it never
    ///   suspends and never does I/O;
    /// * a full memtable is frozen and its flush is spawned as a task in
    ///   the background queue (so this must run inside the store's glommio
    ///   executor, as every store call does);
    /// * it never waits for a flush: with more than
    ///   `max_immutable_memtables` frozen memtables still unflushed, memory
    ///   goes past the soft limit (warned once per episode) instead of
    ///   stalling. Callers that can await now and then should call
    ///   [`Store::relieve_pressure`] at such points to get the async path's
    ///   stall and slowdown behaviour;
    /// * it needs `wal: None` (a WAL append is an async I/O); with a WAL it
    ///   returns [`Error::InvalidArgument`]. Durability then comes from
    ///   flushes and checkpoints, like Flink's RocksDB backend without WAL.
    fn write_sync(&self, op: WalOp) -> Result<()> {
        if self.inner.opts.wal.is_some() {
            return Err(Error::InvalidArgument(
                "synchronous writes need StoreOptions::wal = None".into(),
            ));
        }
        self.write_mem(op)?;
        self.after_write_sync();
        Ok(())
    }

    /// The sync path's freeze-and-schedule step after a memtable insert.
    fn after_write_sync(&self) {
        if self.memtable_full(false) {
            self.swap_memtable(None);
            let backlog = {
                let mut st = self.inner.state.borrow_mut();
                // One frozen memtable past the limit is normal between two points where the
                // writer relieves pressure (Weir's shards do so between batches); more means
                // it does not.
                let over = st.imms.len() > self.inner.opts.max_immutable_memtables + 1;
                let warn = over && !st.sync_backlog_warned;
                st.sync_backlog_warned = over;
                warn.then(|| st.imms.len())
            };
            if let Some(frozen) = backlog {
                tracing::warn!(
                    dir = %self.inner.dir.display(),
                    frozen,
                    limit = self.inner.opts.max_immutable_memtables,
                    "synchronous writes outpace flushes: frozen memtables exceed the limit \
                     (memory above the soft bound; not stalling a caller that cannot await)"
                );
            }
            self.schedule_background();
        }
    }

    /// Applies a write to the active memtable and counts it (no WAL).
    fn write_mem(&self, op: WalOp) -> Result<()> {
        self.check_background()?;
        let n = op_bytes(&op);
        let mem = self.inner.state.borrow().mem.clone();
        self.apply_to(&mem, op)?;
        self.inner.state.borrow_mut().stats.user_bytes += n;
        Ok(())
    }

    fn check_background(&self) -> Result<()> {
        if let Some(e) = &self.inner.state.borrow().bg_error {
            return Err(Error::InvalidArgument(format!(
                "store failed in background: {e}"
            )));
        }
        Ok(())
    }

    /// Applies the async write path's backpressure at a point where the
    /// caller can await: flushes inline while too many frozen memtables wait
    /// (and compacts inline while L0 is at its stop trigger), then pauses
    /// briefly if L0 or the memtables are in the slowdown zone. Cheap when
    /// there is no pressure. Meant for users of the synchronous write path.
    pub async fn relieve_pressure(&self) -> Result<()> {
        self.check_background()?;
        if self.inner.state.borrow().imms.len() > self.inner.opts.max_immutable_memtables {
            self.stall().await?;
        }
        self.slow_down().await;
        Ok(())
    }

    /// fdatasyncs the WAL (the `Manual` policy's durability point).
    pub async fn sync(&self) -> Result<()> {
        if self.inner.opts.wal.is_none() {
            return Ok(());
        }
        let _hold = self.inner.keepalive.hold_ref();
        let _p = lock(&self.inner.keepalive, &self.inner.wal_lock).await?;
        let wal = self.inner.wal.borrow_mut().take();
        if let Some(mut wal) = wal {
            let r = wal.sync().await;
            *self.inner.wal.borrow_mut() = Some(wal);
            r?;
        }
        Ok(())
    }

    fn apply_to(&self, mem: &Rc<RefCell<Memtable>>, op: WalOp) -> Result<()> {
        let mut m = mem.borrow_mut();
        match op {
            WalOp::Put(k, v) => m.insert(MemKey::from_bytes(k), Entry::Put(v)),
            WalOp::Delete(k) => m.insert(MemKey::from_bytes(k), Entry::Delete),
            WalOp::DeleteRange(s, e) => m.delete_range(s, e),
            WalOp::Merge(k, v) => {
                let op = self
                    .inner
                    .opts
                    .merge_operator
                    .as_deref()
                    .ok_or(Error::NoMergeOperator)?;
                m.merge(k, v, op)?;
            }
        }
        Ok(())
    }

    async fn write(&self, op: WalOp) -> Result<()> {
        if self.inner.opts.wal.is_some() {
            self.check_background()?;
            // The append may suspend on I/O (see `keepalive.rs`).
            let _hold = self.inner.keepalive.hold_ref();
            let n = op_bytes(&op);
            let _p = lock(&self.inner.keepalive, &self.inner.wal_lock).await?;
            let wal = self.inner.wal.borrow_mut().take();
            let Some(mut wal) = wal else {
                return Err(Error::InvalidArgument("WAL unavailable".into()));
            };
            let r = wal.append(&op).await;
            *self.inner.wal.borrow_mut() = Some(wal);
            r?;
            let mem = self.inner.state.borrow().mem.clone();
            self.apply_to(&mem, op)?;
            let mut st = self.inner.state.borrow_mut();
            st.stats.wal_bytes += n + 10;
            st.stats.user_bytes += n;
        } else {
            self.write_mem(op)?;
        }
        self.after_write().await
    }

    /// Every async write's tail: freeze a full memtable, give the
    /// background a chance, pace writes under compaction debt.
    async fn after_write(&self) -> Result<()> {
        self.maybe_freeze(false).await?;
        // Writes without a WAL never suspend: let the scheduler preempt us
        // (the foreground queue's latency setting decides how often) so
        // the background queue's flushes and compactions make progress.
        // A yield is an in-process wake-up, which glommio 0.9 can leave
        // unrun (see `keepalive.rs`): the guard is held across it. Checked
        // first so the common no-yield write does not touch the guard.
        if glommio::executor().need_preempt() {
            let _hold = self.inner.keepalive.hold_ref();
            glommio::yield_if_needed().await;
        }
        self.slow_down().await;
        Ok(())
    }

    /// Pauses briefly while L0 or the memtables are in the slowdown zone.
    async fn slow_down(&self) {
        // Slowdown before the hard stops: once L0 holds twice its compaction trigger, or the
        // active memtable is nearly full while frozen ones still wait for their flush, each
        // write pauses briefly so the background flush and
        // compaction get the core. Many short delays instead of one inline flush or compaction
        // of hundreds of milliseconds or more.
        let (l0, flush_due) = {
            let st = self.inner.state.borrow();
            // The next freeze would stall if the frozen memtables are still unflushed by then.
            let filling = st.mem.borrow().size() >= self.inner.opts.memtable_bytes / 4 * 3;
            let frozen = st.imms.len() >= self.inner.opts.max_immutable_memtables.max(1);
            (st.version.levels[0].len(), filling && frozen)
        };
        let l0_due = l0 >= 2 * self.inner.opts.l0_compaction_trigger;
        if l0_due || flush_due {
            {
                let mut st = self.inner.state.borrow_mut();
                if l0_due {
                    st.stats.slowdowns_l0 += 1;
                } else {
                    st.stats.slowdowns_memtable += 1;
                }
            }
            // The timer's firing leaves nothing armed until this task runs.
            let _hold = self.inner.keepalive.hold_ref();
            glommio::timer::sleep(WRITE_SLOWDOWN).await;
        }
    }

    /// Is the active memtable full (or, with `force`, non-empty)?
    fn memtable_full(&self, force: bool) -> bool {
        let st = self.inner.state.borrow();
        let m = st.mem.borrow();
        if force {
            !m.is_empty()
        } else {
            m.size() >= self.inner.opts.memtable_bytes
        }
    }

    /// Freezes the active memtable once it is full (or `force` and non-empty)
    /// and gets it flushed: in the background, or inline when too many
    /// frozen memtables are already waiting (write stall).
    async fn maybe_freeze(&self, force: bool) -> Result<()> {
        let full = |s: &Store| s.memtable_full(force);
        if !full(self) {
            return Ok(());
        }
        if let Some(policy) = self.inner.opts.wal {
            let _p = lock(&self.inner.keepalive, &self.inner.wal_lock).await?;
            if !full(self) {
                return Ok(());
            }
            let id = self.alloc_id();
            let new = Wal::create(&self.inner.dir, id, policy).await?;
            let old = self.inner.wal.borrow_mut().replace(new);
            if let Some(old) = old {
                old.close().await?;
            }
            self.swap_memtable(Some(id));
        } else {
            self.swap_memtable(None);
        }
        let stall = self.inner.state.borrow().imms.len() > self.inner.opts.max_immutable_memtables;
        if stall {
            self.stall().await?;
        }
        self.schedule_background();
        Ok(())
    }

    /// Write stall: flushes inline (a compaction may run meanwhile), then
    /// compacts inline while L0 is at its stop trigger.
    async fn stall(&self) -> Result<()> {
        let _hold = self.inner.keepalive.hold_ref();
        self.inner.state.borrow_mut().stats.stalls += 1;
        let t = std::time::Instant::now();
        self.flush_pending().await?;
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "write stall: inline flush"
        );
        // Hard stop on L0 growth: compact inline too.
        let l0_stop = self.inner.opts.l0_compaction_trigger * 3;
        while self.inner.state.borrow().version.levels[0].len() >= l0_stop {
            let t = std::time::Instant::now();
            let ran = self.compact_once().await?;
            tracing::debug!(
                ms = t.elapsed().as_millis() as u64,
                "write stall: L0 at stop trigger"
            );
            if !ran {
                break;
            }
        }
        Ok(())
    }

    fn swap_memtable(&self, wal_id: Option<u64>) {
        {
            let mut st = self.inner.state.borrow_mut();
            let old = std::mem::replace(&mut st.mem, Rc::new(RefCell::new(Memtable::new(wal_id))));
            st.imms.insert(0, old);
        }
        self.update_debt();
    }

    /// Publishes compaction debt (0..1) to the dynamic background shares:
    /// the worst of frozen-memtable backlog, L0 backlog towards the stop
    /// trigger, and the most oversized level.
    pub(crate) fn update_debt(&self) {
        let Some(shares) = &self.inner.opts.background_shares else {
            return;
        };
        let st = self.inner.state.borrow();
        let o = &self.inner.opts;
        let imm = st.imms.len() as f64 / (o.max_immutable_memtables + 1) as f64;
        let trigger = o.l0_compaction_trigger as f64;
        let l0 = (st.version.levels[0].len() as f64 - trigger + 1.0) / (2.0 * trigger);
        let cfg = &self.inner.level_cfg;
        let level = (1..cfg.num_levels - 1)
            .map(|l| st.version.level_bytes(l) as f64 / cfg.target_bytes(l) as f64 - 1.0)
            .fold(0.0, f64::max);
        shares.set_debt(imm.max(l0).max(level));
    }

    /// Makes sure frozen memtables get flushed and due compactions run.
    fn schedule_background(&self) {
        if !self.inner.state.borrow().imms.is_empty() {
            self.spawn_job(BgJob::Flush);
        }
        self.spawn_job(BgJob::Compact);
    }

    /// Spawns the flush or the compaction task unless it is already queued
    /// or running. Two tasks, not one loop doing both: a flush no longer
    /// waits for a whole compaction (seconds for an L0 → L1 merge at 10 M
    /// keys) to finish, which kept a full memtable frozen and slowed or
    /// stalled writers meanwhile. Both run in the background queue and
    /// interleave at their I/O awaits; flushes and compactions already use
    /// separate locks.
    fn spawn_job(&self, job: BgJob) {
        {
            let mut st = self.inner.state.borrow_mut();
            let flag = match job {
                BgJob::Flush => &mut st.flush_scheduled,
                BgJob::Compact => &mut st.bg_scheduled,
            };
            if *flag {
                return;
            }
            *flag = true;
        }
        let store = self.clone();
        // Held from the spawn (the task is runnable before it first runs) to its end.
        let hold = self.inner.keepalive.hold();
        let fut = async move {
            let _hold = hold;
            let r = match job {
                BgJob::Flush => store.run_flushes().await,
                BgJob::Compact => store.run_compactions().await,
            };
            let mut st = store.inner.state.borrow_mut();
            match job {
                BgJob::Flush => st.flush_scheduled = false,
                BgJob::Compact => st.bg_scheduled = false,
            }
            if let Err(e) = r {
                tracing::error!(error = %e, "background flush/compaction failed");
                st.bg_error = Some(e.to_string());
            }
        };
        match self.inner.opts.background_queue {
            Some(tq) => match glommio::spawn_local_into(fut, tq) {
                Ok(t) => {
                    t.detach();
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot spawn into background queue");
                    let mut st = self.inner.state.borrow_mut();
                    match job {
                        BgJob::Flush => st.flush_scheduled = false,
                        BgJob::Compact => st.bg_scheduled = false,
                    }
                }
            },
            None => {
                glommio::spawn_local(fut).detach();
            }
        }
    }

    /// Flush task: frozen memtables until none is left, then a compaction
    /// task (the new L0 files may make one due).
    async fn run_flushes(&self) -> Result<()> {
        loop {
            self.flush_pending().await?;
            let st = self.inner.state.borrow();
            if st.closed {
                return Ok(());
            }
            if st.imms.is_empty() {
                break;
            }
        }
        self.spawn_job(BgJob::Compact);
        Ok(())
    }

    /// Compaction task: one compaction at a time until none is due.
    async fn run_compactions(&self) -> Result<()> {
        loop {
            let compacted = self.compact_once().await?;
            if self.inner.state.borrow().closed || !compacted {
                return Ok(());
            }
        }
    }

    /// Flushes all frozen memtables (waits for a running flush).
    async fn flush_pending(&self) -> Result<()> {
        let _permit = lock(&self.inner.keepalive, &self.inner.flush_lock).await?;
        if self.inner.state.borrow().closed {
            return Ok(());
        }
        self.flush_imms_locked().await
    }

    /// Runs one picked compaction; false if nothing was due.
    async fn compact_once(&self) -> Result<bool> {
        let _permit = lock(&self.inner.keepalive, &self.inner.compact_lock).await?;
        if self.inner.state.borrow().closed {
            return Ok(false);
        }
        let pick = {
            let st = self.inner.state.borrow();
            st.version.pick(&self.inner.level_cfg, &st.pointers)
        };
        let Some(pick) = pick else { return Ok(false) };
        let level = pick.level;
        let last = pick.upper.last().map(|t| t.meta.largest.clone());
        self.run_compaction(pick).await?;
        self.inner.state.borrow_mut().pointers[level] = last;
        self.update_debt();
        Ok(true)
    }

    /// Flushes the memtable to an SSTable and runs any due compactions.
    pub async fn flush(&self) -> Result<()> {
        let _hold = self.inner.keepalive.hold_ref();
        self.maybe_freeze(true).await?;
        self.flush_pending().await?;
        self.compact().await
    }

    /// Runs compactions until the level shape is within its targets.
    pub async fn compact(&self) -> Result<()> {
        let _hold = self.inner.keepalive.hold_ref();
        while self.compact_once().await? {
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    /// Flushes frozen memtables oldest first; caller holds the flush lock.
    pub(crate) async fn flush_imms_locked(&self) -> Result<()> {
        loop {
            let imm = self.inner.state.borrow().imms.last().cloned();
            let Some(imm) = imm else { return Ok(()) };
            self.flush_one(&imm).await?;
            // Unless a reader still holds it, free it without hogging the core.
            if let Ok(m) = Rc::try_unwrap(imm) {
                m.into_inner().drop_yielding().await;
            }
        }
    }

    async fn flush_one(&self, imm: &Rc<RefCell<Memtable>>) -> Result<()> {
        let started = std::time::Instant::now();
        let (has_entries, rds, wal_id) = {
            let m = imm.borrow();
            (m.iter().next().is_some(), m.range_dels(), m.wal_id)
        };
        let mut edit = VersionEdit::default();
        let mut opened = HashMap::new();
        if has_entries || !rds.is_empty() {
            let id = self.alloc_id();
            let path = self.inner.dir.join(sst_name(id));
            let mut b = crate::sst::builder::TableBuilder::create(
                &path,
                id,
                self.inner.direct,
                self.inner.opts.bloom_bits_for_level(0),
            )
            .await?;
            // In chunks (a frozen memtable never changes), yielding between
            // them: copying a whole random-order memtable at once kept the
            // core for up to ~0.3 s.
            // Entries are encoded straight from the borrowed memtable (no
            // copy per entry); the writes happen between chunks.
            let mut last: Option<MemKey> = None;
            loop {
                last = imm
                    .borrow()
                    .for_each_after(last.as_ref(), FLUSH_CHUNK, |k, e| b.add_sync(k, e));
                if last.is_none() {
                    break;
                }
                b.write_if_due().await?;
                glommio::yield_if_needed().await;
            }
            let meta = b.finish(&rds).await?;
            sync_dir(&self.inner.dir).await?;
            let table = Table::open(
                &path,
                meta.clone(),
                self.inner.read_direct,
                self.inner.cache.clone(),
            )
            .await?;
            {
                let mut st = self.inner.state.borrow_mut();
                st.stats.flush_bytes += meta.size;
                st.stats.flushes += 1;
            }
            opened.insert(id, Rc::new(table));
            edit.added.push((0, meta));
        }
        {
            let st = self.inner.state.borrow();
            edit.next_file_id = Some(st.next_file_id);
            // Oldest memtable still unflushed after this one decides which WALs stay.
            let remaining = st
                .imms
                .iter()
                .rev()
                .filter(|m| !Rc::ptr_eq(m, imm))
                .chain(std::iter::once(&st.mem))
                .find_map(|m| m.borrow().wal_id);
            edit.log_number = remaining.or(wal_id.map(|w| w + 1));
        }
        self.log_and_install(&edit, &opened, |st| st.imms.retain(|m| !Rc::ptr_eq(m, imm)))
            .await?;
        self.update_debt();
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "memtable flushed"
        );
        if let Some(w) = wal_id {
            let p = self.inner.dir.join(wal_name(w));
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove flushed WAL");
            }
        }
        Ok(())
    }

    /// Appends `edit` to the manifest, then installs the new version (and
    /// runs `also` on the state) in one synchronous step.
    pub(crate) async fn log_and_install(
        &self,
        edit: &VersionEdit,
        opened: &HashMap<u64, Rc<Table>>,
        also: impl FnOnce(&mut State),
    ) -> Result<()> {
        let _permit = lock(&self.inner.keepalive, &self.inner.manifest_lock).await?;
        let manifest = self.inner.manifest.borrow_mut().take();
        let Some(mut manifest) = manifest else {
            return Err(Error::InvalidArgument("manifest unavailable".into()));
        };
        let r = manifest.append(edit).await;
        let too_big = manifest.len() > self.inner.opts.manifest_rewrite_bytes;
        *self.inner.manifest.borrow_mut() = Some(manifest);
        r?;
        {
            let mut st = self.inner.state.borrow_mut();
            st.manifest_state.apply(edit).map_err(|why| {
                Error::InvalidArgument(format!("internal: bad version edit: {why}"))
            })?;
            st.version = Rc::new(st.version.apply(edit, opened));
            also(&mut st);
        }
        if too_big {
            let snapshot = self.inner.state.borrow().manifest_state.clone();
            let old = self.inner.manifest.borrow_mut().take();
            if let Some(old) = old {
                old.close().await?;
            }
            let len = write_snapshot(&self.inner.dir, &snapshot).await?;
            *self.inner.manifest.borrow_mut() = Some(Manifest::open(&self.inner.dir, len).await?);
            tracing::debug!(bytes = len, "manifest rewritten");
        }
        Ok(())
    }

    /// Point lookup: memtables, then L0 newest first, then each level.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.get_io(key.as_ref(), Io::Async).await
    }

    /// Synchronous [`Store::get`]: the same lookup (memtables, then
    /// SSTables through the block cache); a cache miss reads the block with
    /// one blocking `pread` on the table's buffered descriptor (page cache
    /// hits are cheap) and verifies it exactly like the async path.
    pub fn get_sync(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        ready(self.get_io(key.as_ref(), Io::Sync))?
    }

    async fn get_io(&self, key: &[u8], io: Io) -> Result<Option<Bytes>> {
        // An async block read suspends on I/O (see `keepalive.rs`); the sync path never does.
        let _hold = matches!(io, Io::Async).then(|| self.inner.keepalive.hold_ref());
        let terminal =
            |e: &Option<Entry>, c: bool| c || matches!(e, Some(Entry::Put(_) | Entry::Delete));
        // Only sources that say something about the key are kept (`(None,
        // false)` changes nothing in `resolve`): a lookup that finds its key
        // in one place, or nowhere, allocates nothing here.
        let mut layers = Vec::new();
        let version = {
            let st = self.inner.state.borrow();
            let mut done = false;
            for m in std::iter::once(&st.mem).chain(&st.imms) {
                let m = m.borrow();
                let (e, c) = (m.get(key).cloned(), m.covers(key));
                done = terminal(&e, c);
                if e.is_some() || c {
                    layers.push((e, c));
                }
                if done {
                    break;
                }
            }
            (!done).then(|| st.version.clone())
        };
        if let Some(version) = version {
            let hash = crate::bloom::hash64(key);
            'outer: for (level, tables) in version.levels.iter().enumerate() {
                if level == 0 {
                    for t in tables {
                        let e = if t.meta.contains(key) {
                            t.get(key, hash, io).await?
                        } else {
                            None
                        };
                        let c = t.covers(key);
                        let stop = terminal(&e, c);
                        if e.is_some() || c {
                            layers.push((e, c));
                        }
                        if stop {
                            break 'outer;
                        }
                    }
                } else {
                    let first = tables.partition_point(|t| t.meta.largest.as_ref() < key);
                    let (mut e, mut c) = (None, false);
                    for t in tables[first..]
                        .iter()
                        .take_while(|t| t.meta.smallest.as_ref() <= key)
                    {
                        if e.is_none() {
                            e = t.get(key, hash, io).await?;
                        }
                        c |= t.covers(key);
                    }
                    let stop = terminal(&e, c);
                    if e.is_some() || c {
                        layers.push((e, c));
                    }
                    if stop {
                        break;
                    }
                }
            }
        }
        match resolve(key, layers, true, self.inner.opts.merge_operator.as_deref())? {
            Some(Entry::Put(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// Forward scan over `range`, merging all sources (newest wins,
    /// tombstones hidden). Sees a consistent set of tables; the active
    /// memtable is read live.
    pub async fn scan<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<Scan> {
        let start = to_bytes_bound(range.start_bound());
        let end = to_bytes_bound(range.end_bound());
        self.scan_bounds(start, end, Io::Async).await
    }

    /// Scan of every key starting with `prefix`.
    pub async fn prefix_scan(&self, prefix: impl AsRef<[u8]>) -> Result<Scan> {
        let p = Bytes::copy_from_slice(prefix.as_ref());
        let end = prefix_end(&p);
        self.scan_bounds(Bound::Included(p), end, Io::Async).await
    }

    /// Synchronous [`Store::scan`] (see [`Store::get_sync`] for how misses
    /// are read). Like [`Scan`], it sees the tables live when it was
    /// created and the active memtable live.
    pub fn scan_sync<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<SyncScan> {
        let start = to_bytes_bound(range.start_bound());
        let end = to_bytes_bound(range.end_bound());
        self.sync_scan(start, end)
    }

    /// Synchronous [`Store::prefix_scan`].
    pub fn prefix_scan_sync(&self, prefix: impl AsRef<[u8]>) -> Result<SyncScan> {
        let p = Bytes::copy_from_slice(prefix.as_ref());
        let end = prefix_end(&p);
        self.sync_scan(Bound::Included(p), end)
    }

    fn sync_scan(&self, start: Bound<Bytes>, end: Bound<Bytes>) -> Result<SyncScan> {
        let scan = ready(self.scan_bounds(start, end, Io::Sync))??;
        Ok(SyncScan {
            iter: scan.iter,
            failed: false,
        })
    }

    async fn scan_bounds(&self, start: Bound<Bytes>, end: Bound<Bytes>, io: Io) -> Result<Scan> {
        let _hold = matches!(io, Io::Async).then(|| self.inner.keepalive.hold_ref());
        let (mems, version) = {
            let st = self.inner.state.borrow();
            let mut mems = vec![st.mem.clone()];
            mems.extend(st.imms.iter().cloned());
            (mems, st.version.clone())
        };
        let s = as_slice_bound(&start);
        let mut sources = Vec::new();
        for m in mems {
            sources.push(Source::mem(m, s));
        }
        for t in &version.levels[0] {
            sources.push(Source::table(t.clone(), s, true, io).await?);
        }
        for tables in version.levels.iter().skip(1).filter(|l| !l.is_empty()) {
            sources.push(Source::level(tables.clone(), s, true, io).await?);
        }
        Ok(Scan {
            iter: MergeIter::new(sources, end, true, self.inner.opts.merge_operator.clone()),
        })
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        self.inner.state.borrow().stats
    }

    /// Bytes of live SSTables per level.
    pub fn level_sizes(&self) -> Vec<u64> {
        let st = self.inner.state.borrow();
        (0..st.version.levels.len())
            .map(|l| st.version.level_bytes(l))
            .collect()
    }

    /// Number of live SSTables per level.
    pub fn level_file_counts(&self) -> Vec<usize> {
        self.inner
            .state
            .borrow()
            .version
            .levels
            .iter()
            .map(Vec::len)
            .collect()
    }

    /// Memory currently held.
    pub fn memory_usage(&self) -> MemoryUsage {
        let st = self.inner.state.borrow();
        MemoryUsage {
            memtables: st.mem.borrow().size()
                + st.imms.iter().map(|m| m.borrow().size()).sum::<usize>(),
            block_cache: self.inner.cache.used(),
            table_meta: st.version.tables().map(|(_, t)| t.mem_size()).sum(),
        }
    }

    /// Block cache (hits, misses) since open.
    pub fn cache_hits_misses(&self) -> (u64, u64) {
        self.inner.cache.hits_misses()
    }

    /// Whether SSTables use O_DIRECT (false: buffered fallback).
    pub fn direct_io(&self) -> bool {
        self.inner.direct
    }

    /// Are SSTables read with O_DIRECT (rather than through the page cache)?
    pub fn direct_reads(&self) -> bool {
        self.inner.read_direct
    }

    /// Flushes the memtable, waits for background work and closes files.
    pub async fn close(self) -> Result<()> {
        let keepalive = self.inner.keepalive.clone();
        let _hold = keepalive.hold_ref();
        self.flush().await?;
        let _f = lock(&self.inner.keepalive, &self.inner.flush_lock).await?;
        let _c = lock(&self.inner.keepalive, &self.inner.compact_lock).await?;
        let _w = lock(&self.inner.keepalive, &self.inner.wal_lock).await?;
        let wal = self.inner.wal.borrow_mut().take();
        if let Some(w) = wal {
            w.close().await?;
        }
        let m = self.inner.manifest.borrow_mut().take();
        if let Some(m) = m {
            m.close().await?;
        }
        self.inner.state.borrow_mut().closed = true;
        Ok(())
    }

    /// Simulates a crash for tests: waits for a running flush/compaction,
    /// then drops queued background work; nothing more is written and
    /// unflushed, un-WAL'd writes are lost.
    #[doc(hidden)]
    pub async fn abandon(self) -> Result<()> {
        let _f = lock(&self.inner.keepalive, &self.inner.flush_lock).await?;
        let _c = lock(&self.inner.keepalive, &self.inner.compact_lock).await?;
        self.inner.state.borrow_mut().closed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_cases() {
        assert_eq!(
            prefix_end(b"ab"),
            Bound::Excluded(Bytes::from_static(b"ac"))
        );
        assert_eq!(
            prefix_end(b"a\xff"),
            Bound::Excluded(Bytes::from_static(b"b"))
        );
        assert_eq!(prefix_end(b"\xff\xff"), Bound::Unbounded);
        assert_eq!(prefix_end(b""), Bound::Unbounded);
    }
}
