//! Keyed state, organised by key group.
//!
//! A shard owns a contiguous range of key groups; everything it stores is
//! addressed by `(key group, state, key[, map key])` through the byte-level
//! [`StateBackend`] trait, whose composite-key layout ([`key`]) keeps each key
//! group contiguous so rescaling is snapshot a range / restore / delete a
//! range. Typed handles ([`ValueState`], [`ListState`], [`MapState`],
//! [`ReducingState`], [`AggregatingState`]) sit on top via
//! [`KeyedStateStore`], with optional TTL. [`suite`] holds the behavioural
//! tests every backend must pass. Backends: [`HeapStateBackend`] (in memory)
//! and [`LsmStateBackend`] (on a `weir-storage` LSM store, larger than memory).
//!
//! Usage: `let c = store.value_state(&ValueStateDescriptor::<u64>::new("count"))?;
//! store.set_current_key(kg, key_bytes); c.set(&mut store, &1)?;` (see [`suite`]).

mod aggregating;
mod backend;
mod codec;
mod crc32;
mod error;
mod heap;
mod job_backend;
pub mod key;
mod list;
mod lsm;
mod lsm_cache;
mod map;
mod reducing;
mod registry;
mod snapshot;
mod store;
pub mod suite;
mod ttl;
mod value;

#[cfg(test)]
mod cow_tests;
#[cfg(test)]
mod lsm_tests;
#[cfg(test)]
mod proptests;

pub use aggregating::{AggregateFunction, AggregatingState, AggregatingStateDescriptor};
pub use backend::{MapEntries, StateBackend};
pub use codec::{ByteString, StateCodec};
pub use crc32::crc32;
pub use error::StateError;
pub use heap::{CowStats, DEFAULT_CHUNK_ENTRIES, FrozenKeyGroups, HeapStateBackend};
#[cfg(test)]
pub(crate) use job_backend::tiny_lsm;
pub use job_backend::{JobStateBackend, LsmStateConfig, StateBackendConfig};
pub(crate) use job_backend::{new_run_dir, open_lsm};
pub use key::{KeyGroup, StateId};
pub use list::{ListState, ListStateDescriptor};
pub use lsm::LsmStateBackend;
pub use lsm_cache::{CacheLimits, CacheStats};
pub use map::{MapState, MapStateDescriptor};
pub use reducing::{ReducingState, ReducingStateDescriptor};
pub use registry::{StateKind, StateRegistry};
pub use snapshot::{KeyGroupSnapshot, SnapshotEntry, SnapshotValue, SnapshotWriter};
pub use store::KeyedStateStore;
pub use ttl::{TtlConfig, TtlUpdate, TtlVisibility};
pub use value::{ValueState, ValueStateDescriptor};
