//! `weir-storage`: a per-shard LSM key-value store on glommio / io_uring.
//!
//! One [`Store`] per shard, no locks, no background threads: flushes and
//! compactions are glommio tasks on the shard's own executor. SSTables are
//! written and read through the page cache by default (reads of resident
//! blocks never block: `preadv2(RWF_NOWAIT)`, else an io_uring read);
//! O_DIRECT DMA files are an option ([`IoMode`], [`ReadIo`]). See
//! `FORMAT.md` for the on-disk format.
//!
//! ```no_run
//! use glommio::{LocalExecutorBuilder, Placement};
//! use weir_storage::{Store, StoreOptions};
//!
//! LocalExecutorBuilder::new(Placement::Unbound)
//!     .io_memory(2 << 20)
//!     .make()
//!     .unwrap()
//!     .run(async {
//!         let store = Store::open("/tmp/shard0", StoreOptions::default()).await.unwrap();
//!         store.put("k", "v").await.unwrap();
//!         assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
//!         let mut it = store.prefix_scan("k").await.unwrap();
//!         while let Some((key, value)) = it.next().await.unwrap() {
//!             println!("{key:?} = {value:?}");
//!         }
//!         store.close().await.unwrap();
//!     });
//! ```
//!
//! Durability: without a WAL (the default) data is durable after
//! [`Store::flush`], [`Store::checkpoint`] or [`Store::close`]; with
//! [`StoreOptions::wal`] it follows the chosen [`WalSync`] policy.

mod block;
mod bloom;
mod cache;
mod checkpoint;
mod codec;
mod compaction;
mod entry;
mod error;
mod file;
mod iter;
mod keepalive;
mod manifest;
mod memtable;
mod merge;
mod options;
mod pressure;
mod sst;
mod store;
mod version;
mod wal;

#[doc(hidden)]
pub mod fuzzing;

pub use checkpoint::{CheckpointFile, CheckpointInfo, FileTransfer, link_or_copy};
pub use error::{Error, Result};
pub use file::{IoMode, ReadIo};
pub use keepalive::{Hold, Keepalive};
pub use merge::{ConcatMerge, MergeOperator};
pub use options::StoreOptions;
pub use pressure::BackgroundShares;
pub use store::{MemoryUsage, Scan, Stats, Store, SyncScan};
pub use wal::WalSync;
