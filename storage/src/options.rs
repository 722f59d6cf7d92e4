//! Store configuration. Memory is bounded by `memtable_bytes *
//! (1 + max_immutable_memtables) + block_cache_bytes` plus the per-table
//! bloom filters and indexes (about `bloom_bits_per_key / 8` bytes per key,
//! `bloom_bits_per_key_upper / 8` in L0 and L1, reported by
//! [`crate::Store::memory_usage`], not capped).

use std::rc::Rc;

use glommio::TaskQueueHandle;

use crate::file::{IoMode, ReadIo};
use crate::merge::MergeOperator;
use crate::pressure::BackgroundShares;
use crate::wal::WalSync;

/// Tunables for one shard's store.
#[derive(Clone)]
pub struct StoreOptions {
    /// Active memtable size that triggers a flush.
    pub memtable_bytes: usize,
    /// Frozen memtables allowed to wait for flush before writes stall.
    pub max_immutable_memtables: usize,
    /// Byte budget of the block cache (CLOCK; point reads cache blocks
    /// encoded, iterators decoded).
    pub block_cache_bytes: usize,
    /// Bloom filter bits per key of tables in L2 and deeper, where most
    /// keys live (blocked filter: 10 ≈ 0.9%, 12 ≈ 0.45% false positives).
    pub bloom_bits_per_key: usize,
    /// Bloom filter bits per key of L0 and L1 tables (16 ≈ 0.08%). A point
    /// read probes every level, so a missing key pays each level's false
    /// positives; the upper levels hold few keys, so a stronger filter
    /// there costs little memory (fjall/lsm-tree does the same: a 1e-5
    /// false-positive rate for L0, 5e-4 for L1).
    pub bloom_bits_per_key_upper: usize,
    /// Number of levels, L0 included.
    pub num_levels: usize,
    /// L0 file count that triggers an L0 → L1 compaction.
    pub l0_compaction_trigger: usize,
    /// Target size of L1; each deeper level is `level_size_ratio` times bigger.
    pub level1_bytes: u64,
    /// Size ratio between adjacent levels.
    pub level_size_ratio: u64,
    /// Compaction output files are cut near this size.
    pub target_file_bytes: u64,
    /// Rewrite the manifest as a snapshot past this size.
    pub manifest_rewrite_bytes: u64,
    /// Write-ahead log; `None` (default) means writes since the last flush
    /// or checkpoint are lost on crash.
    pub wal: Option<WalSync>,
    /// Direct I/O selection for writing SSTables (and for reading them
    /// with [`ReadIo::Direct`]). Default `Buffered`: flushes and
    /// compactions write through the page cache, so freshly written tables
    /// are read from memory (RocksDB's default too); `Auto`/`Direct` keep
    /// SSTable writes out of the page cache.
    pub io_mode: IoMode,
    /// Where block-cache misses are read from: the OS page cache (default)
    /// or O_DIRECT.
    pub read_io: ReadIo,
    /// Needed for [`crate::Store::merge`].
    pub merge_operator: Option<Rc<dyn MergeOperator>>,
    /// Queue for flush/compaction tasks (give it fewer shares than record
    /// processing); `None` uses the current task queue.
    pub background_queue: Option<TaskQueueHandle>,
    /// If the background queue was created with these dynamic shares, the
    /// store feeds them its compaction debt.
    pub background_shares: Option<BackgroundShares>,
    /// How often the keepalive thread wakes the store's executor while a
    /// background task is queued or running or a task waits on one of its
    /// locks: it bounds a lost wake-up in glommio 0.9's executor loop (it
    /// may park with runnable tasks; see `keepalive.rs`) to one period
    /// instead of a hang. `None` disables it. Default 10 ms; an idle store
    /// is never woken.
    pub keepalive_period: Option<std::time::Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 1,
            block_cache_bytes: 64 << 20,
            bloom_bits_per_key: 12,
            bloom_bits_per_key_upper: 16,
            num_levels: 7,
            l0_compaction_trigger: 4,
            level1_bytes: 256 << 20,
            level_size_ratio: 10,
            target_file_bytes: 64 << 20,
            manifest_rewrite_bytes: 4 << 20,
            wal: None,
            io_mode: IoMode::Buffered,
            read_io: ReadIo::PageCache,
            merge_operator: None,
            background_queue: None,
            background_shares: None,
            keepalive_period: Some(std::time::Duration::from_millis(10)),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("memtable_bytes", &self.memtable_bytes)
            .field("max_immutable_memtables", &self.max_immutable_memtables)
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("bloom_bits_per_key_upper", &self.bloom_bits_per_key_upper)
            .field("num_levels", &self.num_levels)
            .field("l0_compaction_trigger", &self.l0_compaction_trigger)
            .field("level1_bytes", &self.level1_bytes)
            .field("level_size_ratio", &self.level_size_ratio)
            .field("target_file_bytes", &self.target_file_bytes)
            .field("wal", &self.wal)
            .field("io_mode", &self.io_mode)
            .field("read_io", &self.read_io)
            .field("merge_operator", &self.merge_operator.is_some())
            .field("keepalive_period", &self.keepalive_period)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::InvalidArgument(m.to_string()));
        if self.num_levels < 2 {
            return bad("num_levels must be >= 2");
        }
        if self.l0_compaction_trigger < 1 || self.level_size_ratio < 2 {
            return bad("l0_compaction_trigger >= 1 and level_size_ratio >= 2 required");
        }
        if !(1..=64).contains(&self.bloom_bits_per_key)
            || !(1..=64).contains(&self.bloom_bits_per_key_upper)
        {
            return bad("bloom_bits_per_key and bloom_bits_per_key_upper must be in 1..=64");
        }
        Ok(())
    }

    /// Bloom bits per key for a table written to `level`.
    pub(crate) fn bloom_bits_for_level(&self, level: usize) -> usize {
        if level <= 1 {
            self.bloom_bits_per_key_upper
        } else {
            self.bloom_bits_per_key
        }
    }
}
