//! LSM state backend: keyed state on a `weir-storage` [`Store`], so it can
//! outgrow memory.
//!
//! Like Flink's RocksDB backend, every [`StateBackend`] call is synchronous
//! on the task thread: it uses the store's synchronous path
//! ([`Store::put_sync`], [`Store::get_sync`], [`Store::scan_sync`], ...),
//! which writes into the memtable without suspending and reads memtables,
//! then SSTables through the block cache (a miss is one blocking `pread`).
//! Full memtables are flushed by glommio tasks in the store's background
//! queue, which run whenever the operator's task awaits; call
//! [`LsmStateBackend::relieve_pressure`] at such points to also get the
//! store's write stall/slowdown when flushes fall behind.
//!
//! # Mapping
//!
//! * Store key = the full composite key of [`crate::state::key`]
//!   (`[kg][state][key_len][key][user_key]`), so a key group, a state within
//!   it and one key's map are each one contiguous key range.
//! * Store value = a tag byte and a payload. Values: `0x00 value`. Lists: a
//!   sequence of self-delimiting elements `0x01 len:u32 BE bytes`; the store
//!   uses [`ConcatMerge`], so `append` is one merge operand (one element
//!   encoding, no read) and the concatenation of operands is again a list.
//! * `delete_prefix` / `delete_key_groups` are one range tombstone each.
//! * `snapshot_key_groups` scans the key-group range; `restore` writes the
//!   entries; `retain`, `key_groups` and `len` scan (see their costs below).
//!
//! `append` does not read, so appending at an address that holds a value is
//! not detected when appending (the heap backend errs there); the typed
//! layer never does it (a state id has one kind), and a later `get` or
//! `get_list` of such an entry reports it as malformed.

use std::cell::{RefCell, RefMut};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use weir_storage::{ConcatMerge, Store, StoreOptions};

use super::backend::{MapEntries, StateBackend};
use super::error::StateError;
use super::key::{KeyGroup, StateId, encode_key, prefix_successor};
use super::lsm_cache::{Backing, CacheLimits, CacheStats, WriteCache};
use super::snapshot::{KeyGroupSnapshot, SnapshotValue, SnapshotWriter};

const TAG_VALUE: u8 = 0;
const TAG_ELEMENT: u8 = 1;

impl From<weir_storage::Error> for StateError {
    fn from(e: weir_storage::Error) -> Self {
        let message = e.to_string();
        match e {
            weir_storage::Error::Corruption { path, offset, .. } => StateError::Storage {
                path: Some(path),
                offset: Some(offset),
                message,
            },
            weir_storage::Error::Io { path, .. } => StateError::Storage {
                path: Some(path),
                offset: None,
                message,
            },
            _ => StateError::Storage {
                path: None,
                offset: None,
                message,
            },
        }
    }
}

fn malformed(key: &[u8], why: &str) -> StateError {
    StateError::Storage {
        path: None,
        offset: None,
        message: format!("malformed state entry under store key {key:02x?}: {why}"),
    }
}

/// Appends one list element's encoding.
fn encode_element(out: &mut Vec<u8>, element: &[u8]) {
    out.push(TAG_ELEMENT);
    let len = u32::try_from(element.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(element);
}

/// What a stored value decodes to.
enum Stored<'a> {
    Value(&'a [u8]),
    List(Vec<&'a [u8]>),
}

fn decode<'a>(key: &[u8], v: &'a [u8]) -> Result<Stored<'a>, StateError> {
    match v.first() {
        Some(&TAG_VALUE) => Ok(Stored::Value(&v[1..])),
        Some(&TAG_ELEMENT) => {
            let mut out = Vec::new();
            let mut rest = v;
            while !rest.is_empty() {
                let (Some(&TAG_ELEMENT), Some(len)) = (rest.first(), rest.get(1..5)) else {
                    return Err(malformed(key, "bad list element header"));
                };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let Some(el) = rest.get(5..5 + len) else {
                    return Err(malformed(key, "list element past the end"));
                };
                out.push(el);
                rest = &rest[5 + len..];
            }
            Ok(Stored::List(out))
        }
        _ => Err(malformed(key, "unknown tag")),
    }
}

/// The payload of a stored value; the same errors as [`decode`] otherwise.
fn value_of<'a>(state: StateId, key: &[u8], v: &'a [u8]) -> Result<&'a [u8], StateError> {
    match v.split_first() {
        Some((&TAG_VALUE, x)) => Ok(x),
        _ => match decode(key, v)? {
            Stored::Value(x) => Ok(x),
            Stored::List(_) => Err(StateError::WrongEntryKind {
                state: state.0,
                expected: "value",
                found: "list",
            }),
        },
    }
}

/// Hands each element of a stored list to `f`, in order, without collecting them.
fn for_each_element(
    state: StateId,
    key: &[u8],
    v: &[u8],
    f: &mut impl FnMut(&[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    if v.first() == Some(&TAG_VALUE) {
        return Err(StateError::WrongEntryKind {
            state: state.0,
            expected: "list",
            found: "value",
        });
    }
    let mut rest = v;
    while !rest.is_empty() {
        let (Some(&TAG_ELEMENT), Some(len)) = (rest.first(), rest.get(1..5)) else {
            return Err(match rest.first() {
                Some(&TAG_ELEMENT) => malformed(key, "bad list element header"),
                _ if rest.len() == v.len() => malformed(key, "unknown tag"),
                _ => malformed(key, "bad list element header"),
            });
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(el) = rest.get(5..5 + len) else {
            return Err(malformed(key, "list element past the end"));
        };
        f(el)?;
        rest = &rest[5 + len..];
    }
    Ok(())
}

fn encode_list<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        encode_element(&mut out, e);
    }
    out
}

fn prefix(state: StateId, kg: KeyGroup, key: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    encode_key(&mut p, kg, state, key, b"");
    p
}

/// `[kg][state]`: start of one state's entries within one key group.
fn group_state(kg: KeyGroup, state: StateId) -> Vec<u8> {
    let mut p = kg.to_be_bytes().to_vec();
    p.extend_from_slice(&state.0.to_be_bytes());
    p
}

fn be_u32(key: &[u8], at: usize) -> Option<u32> {
    let b = key.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// [`StateBackend`] on a `weir-storage` LSM [`Store`]. `!Send`: one per
/// shard, used on the shard's glommio executor.
///
/// Value and list entries (the empty user key) go through a bounded write-back cache
/// ([`super::lsm_cache`]); map entries go to the store directly. Everything that reads or
/// writes the store by range first writes the cache's dirty entries into it, and so must
/// a checkpoint: [`LsmStateBackend::flush_cache`] before the store's file snapshot.
pub struct LsmStateBackend {
    store: Store,
    local: RefCell<Local>,
}

/// The cache and reused buffers (behind one `RefCell`: reads take `&self`).
struct Local {
    cache: WriteCache,
    /// Composite key of the current call, encoded in place.
    key: Vec<u8>,
    /// Stored value of a map entry being written.
    value: Vec<u8>,
}

impl std::fmt::Debug for LsmStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsmStateBackend")
            .field("store", &self.store)
            .finish()
    }
}

impl Backing for Store {
    fn read<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, StateError> {
        Ok(f(self.get_sync(key)?.as_deref()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        Ok(self.put_sync(key, value)?)
    }

    fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        Ok(self.delete_sync(key)?)
    }

    fn merge(&self, key: &[u8], operand: &[u8]) -> Result<(), StateError> {
        Ok(self.merge_sync(key, operand)?)
    }
}

impl LsmStateBackend {
    /// Opens (or creates) the backend's store in `dir`. Async because the
    /// store opens its files with glommio; call it from the shard's
    /// executor. `options.merge_operator` is replaced by [`ConcatMerge`]
    /// (the list encoding relies on it); `options.wal` must be `None`
    /// (the synchronous write path has no WAL; durability comes from
    /// flushes and checkpoints, i.e. [`LsmStateBackend::store`]`.checkpoint`).
    pub async fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StateError> {
        if options.wal.is_some() {
            return Err(StateError::Storage {
                path: Some(dir.as_ref().to_path_buf()),
                offset: None,
                message: "LsmStateBackend needs StoreOptions::wal = None".into(),
            });
        }
        let options = StoreOptions {
            merge_operator: Some(Rc::new(ConcatMerge)),
            ..options
        };
        Ok(Self {
            store: Store::open(dir, options).await?,
            local: RefCell::new(Local {
                cache: WriteCache::new(CacheLimits::default()),
                key: Vec::new(),
                value: Vec::new(),
            }),
        })
    }

    /// Replaces the write-back cache's limits (its entries are written to the store first).
    /// `entries: 0` turns it off.
    pub fn set_cache_limits(&self, limits: CacheLimits) -> Result<(), StateError> {
        let mut local = self.local.borrow_mut();
        local.cache.flush(&self.store)?;
        local.cache = WriteCache::new(limits);
        Ok(())
    }

    /// Counters of the write-back cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.local.borrow().cache.stats()
    }

    /// The underlying store (stats, flush, checkpoint). It does not see the write-back
    /// cache's dirty entries until [`LsmStateBackend::flush_cache`], and writes made through
    /// it are not seen by the cache: write only into a backend not used yet.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes the write-back cache's dirty entries into the store (they stay cached, clean):
    /// before a snapshot of the store's files.
    pub fn flush_cache(&self) -> Result<(), StateError> {
        self.local.borrow_mut().cache.flush(&self.store)
    }

    /// Flushes the cache and drops it: before the store changes by range under it.
    fn flush_and_clear_cache(&self) -> Result<(), StateError> {
        let mut local = self.local.borrow_mut();
        local.cache.flush(&self.store)?;
        local.cache.clear();
        Ok(())
    }

    /// The local buffers with `key` set to the composite key of the address.
    fn keyed(
        &self,
        state: StateId,
        kg: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> RefMut<'_, Local> {
        let mut local = self.local.borrow_mut();
        local.key.clear();
        encode_key(&mut local.key, kg, state, key, user_key);
        local
    }

    /// Flushes the cache, then writes the memtable to an SSTable (and runs due compactions).
    pub async fn flush(&self) -> Result<(), StateError> {
        self.flush_cache()?;
        Ok(self.store.flush().await?)
    }

    /// Applies the store's write backpressure (see
    /// [`Store::relieve_pressure`]); call it where the operator can await.
    pub async fn relieve_pressure(&self) -> Result<(), StateError> {
        Ok(self.store.relieve_pressure().await?)
    }

    /// Writes the cache out, flushes and closes the store.
    pub async fn close(self) -> Result<(), StateError> {
        self.flush_cache()?;
        Ok(self.store.close().await?)
    }

    /// First store key at or after `from`, if any.
    fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.flush_cache()?;
        let mut scan = self.store.scan_sync(from..)?;
        match scan.next() {
            Some(r) => Ok(Some(r?.0.to_vec())),
            None => Ok(None),
        }
    }

    /// Key groups holding entries, by skipping from group to group (one
    /// seek per key group present); on error, those found before it.
    fn collect_key_groups(&self, out: &mut Vec<KeyGroup>) -> Result<(), StateError> {
        let mut from = 0u32.to_be_bytes().to_vec();
        while let Some(k) = self.first_key_from(&from)? {
            let kg = be_u32(&k, 0).ok_or_else(|| malformed(&k, "short key"))?;
            out.push(kg);
            match kg.checked_add(1) {
                Some(n) => from = n.to_be_bytes().to_vec(),
                None => break,
            }
        }
        Ok(())
    }

    fn count(&self) -> Result<usize, StateError> {
        self.flush_cache()?;
        let mut n = 0;
        for r in self.store.scan_sync::<&[u8], _>(..)? {
            r?;
            n += 1;
        }
        Ok(n)
    }

    /// `retain` over one `[kg][state]` range: decide first, then write.
    fn retain_range(
        &mut self,
        start: &[u8],
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        let mut dropped = 0;
        let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for r in self.store.prefix_scan_sync(start)? {
            let (k, v) = r?;
            match decode(&k, &v)? {
                Stored::Value(x) => {
                    if !keep(x) {
                        dropped += 1;
                        changes.push((k.to_vec(), None));
                    }
                }
                Stored::List(els) => {
                    let before = els.len();
                    let kept: Vec<&[u8]> = els.into_iter().filter(|e| keep(e)).collect();
                    if kept.len() != before {
                        dropped += before - kept.len();
                        let new = (!kept.is_empty()).then(|| encode_list(kept));
                        changes.push((k.to_vec(), new));
                    }
                }
            }
        }
        for (k, new) in changes {
            match new {
                Some(v) => self.store.put_sync(&k, &v)?,
                None => self.store.delete_sync(&k)?,
            }
        }
        Ok(dropped)
    }
}

impl StateBackend for LsmStateBackend {
    fn get(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.get_with(state, key_group, key, user_key, |v| v.map(<[u8]>::to_vec))
    }

    fn get_with<R>(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StateError> {
        let mut local = self.keyed(state, key_group, key, user_key);
        let Local { cache, key, .. } = &mut *local;
        let decoded = |v: Option<&[u8]>| match v {
            None => Ok(f(None)),
            Some(v) => value_of(state, key, v).map(|x| f(Some(x))),
        };
        if user_key.is_empty() && cache.enabled() {
            cache.read(&self.store, key, decoded)?
        } else {
            decoded(self.store.get_sync(&*key)?.as_deref())
        }
    }

    fn put(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let mut local = self.keyed(state, key_group, key, user_key);
        let Local {
            cache,
            key,
            value: v,
        } = &mut *local;
        let fill = |out: &mut Vec<u8>| {
            out.reserve(1 + value.len());
            out.push(TAG_VALUE);
            out.extend_from_slice(value);
        };
        if user_key.is_empty() && cache.enabled() {
            return cache.put(&self.store, key, fill);
        }
        v.clear();
        fill(v);
        Ok(self.store.put_sync(&*key, &*v)?)
    }

    fn delete(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        let mut local = self.keyed(state, key_group, key, user_key);
        let Local { cache, key, .. } = &mut *local;
        if user_key.is_empty() && cache.enabled() {
            return cache.delete(&self.store, key);
        }
        Ok(self.store.delete_sync(&*key)?)
    }

    fn append(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        element: &[u8],
    ) -> Result<(), StateError> {
        let mut local = self.keyed(state, key_group, key, b"");
        let Local {
            cache,
            key,
            value: v,
        } = &mut *local;
        if cache.enabled() {
            return cache.append(&self.store, key, |out| encode_element(out, element));
        }
        v.clear();
        encode_element(v, element);
        Ok(self.store.merge_sync(&*key, &*v)?)
    }

    fn put_list(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        elements: &[Vec<u8>],
    ) -> Result<(), StateError> {
        if elements.is_empty() {
            return self.delete(state, key_group, key, b"");
        }
        let mut local = self.keyed(state, key_group, key, b"");
        let Local {
            cache,
            key,
            value: v,
        } = &mut *local;
        let fill = |out: &mut Vec<u8>| {
            for e in elements {
                encode_element(out, e);
            }
        };
        if cache.enabled() {
            return cache.put(&self.store, key, fill);
        }
        v.clear();
        fill(v);
        Ok(self.store.put_sync(&*key, &*v)?)
    }

    fn get_list(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<Vec<Vec<u8>>, StateError> {
        let mut out = Vec::new();
        self.get_list_with(state, key_group, key, &mut |e: &[u8]| {
            out.push(e.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    fn get_list_with(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        f: &mut impl FnMut(&[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut local = self.keyed(state, key_group, key, b"");
        let Local { cache, key, .. } = &mut *local;
        let mut walk = |v: Option<&[u8]>| match v {
            None => Ok(()),
            Some(v) => for_each_element(state, key, v, f),
        };
        if cache.enabled() {
            cache.read(&self.store, key, walk)?
        } else {
            walk(self.store.get_sync(&*key)?.as_deref())
        }
    }

    fn scan_prefix(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<MapEntries, StateError> {
        let p = prefix(state, key_group, key);
        // The value or list at the prefix itself may be cached (map entries never are).
        self.local.borrow_mut().cache.flush_key(&self.store, &p)?;
        let mut out = Vec::new();
        for r in self.store.prefix_scan_sync(&p)? {
            let (k, v) = r?;
            if let Stored::Value(x) = decode(&k, &v)? {
                out.push((k[p.len()..].to_vec(), x.to_vec()));
            }
        }
        Ok(out)
    }

    fn delete_prefix(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<(), StateError> {
        let p = prefix(state, key_group, key);
        // The only cached entry under the prefix is the one at it: it goes with the range.
        if let Some(end) = prefix_successor(&p) {
            self.store.delete_range_sync(p.as_slice()..end.as_slice())?;
            self.local.borrow_mut().cache.forget(&p);
            return Ok(());
        }
        // Only an all-0xFF prefix has no successor: delete point by point.
        let keys = self
            .store
            .prefix_scan_sync(&p)?
            .map(|r| r.map(|(k, _)| k))
            .collect::<Result<Vec<_>, _>>()?;
        for k in keys {
            self.store.delete_sync(&k)?;
        }
        self.local.borrow_mut().cache.forget(&p);
        Ok(())
    }

    /// Cost: one seek per key group holding anything, plus a scan of the
    /// state's entries; values and lists to change are collected per key
    /// group and written after that group's scan.
    fn retain(
        &mut self,
        state: StateId,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        self.flush_and_clear_cache()?;
        let mut dropped = 0;
        let mut from = group_state(0, state);
        while let Some(k) = self.first_key_from(&from)? {
            let (Some(kg), Some(st)) = (be_u32(&k, 0), be_u32(&k, 4)) else {
                return Err(malformed(&k, "short key"));
            };
            if st < state.0 {
                // Inside `kg`, before the state: seek to it.
                from = group_state(kg, state);
                continue;
            }
            if st == state.0 {
                dropped += self.retain_range(&group_state(kg, state), keep)?;
            }
            match kg.checked_add(1) {
                Some(n) => from = group_state(n, state),
                None => break,
            }
        }
        Ok(dropped)
    }

    fn snapshot_key_groups(&self, range: Range<KeyGroup>) -> Result<KeyGroupSnapshot, StateError> {
        self.flush_cache()?;
        let mut w = SnapshotWriter::new(range.clone());
        if range.start < range.end {
            let (lo, hi) = (range.start.to_be_bytes(), range.end.to_be_bytes());
            for r in self.store.scan_sync(lo.as_slice()..hi.as_slice())? {
                let (k, v) = r?;
                match decode(&k, &v)? {
                    Stored::Value(x) => w.push_value(&k, x),
                    Stored::List(els) => w.push_list(&k, els.into_iter()),
                }
            }
        }
        Ok(w.finish())
    }

    fn restore(&mut self, snapshot: &KeyGroupSnapshot) -> Result<(), StateError> {
        // Decode everything first so a bad snapshot leaves the backend untouched.
        let entries = snapshot.entries().collect::<Result<Vec<_>, _>>()?;
        self.flush_and_clear_cache()?;
        for e in entries {
            let v = match e.value {
                SnapshotValue::Value(x) => {
                    let mut v = Vec::with_capacity(1 + x.len());
                    v.push(TAG_VALUE);
                    v.extend_from_slice(x);
                    v
                }
                SnapshotValue::List(els) => encode_list(els),
            };
            if v.is_empty() {
                // An empty list is no entry.
                self.store.delete_sync(e.key)?;
            } else {
                self.store.put_sync(e.key, &v)?;
            }
        }
        Ok(())
    }

    fn delete_key_groups(&mut self, range: Range<KeyGroup>) -> Result<(), StateError> {
        if range.start >= range.end {
            return Ok(());
        }
        self.flush_and_clear_cache()?;
        let (lo, hi) = (range.start.to_be_bytes(), range.end.to_be_bytes());
        Ok(self.store.delete_range_sync(lo..hi)?)
    }

    /// One seek per key group present. The trait's iterator cannot carry an
    /// error: a storage error is logged and ends the iteration early.
    fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_ {
        let mut groups = Vec::new();
        if let Err(e) = self.collect_key_groups(&mut groups) {
            tracing::error!(error = %e, "LsmStateBackend::key_groups: storage error, list truncated");
        }
        groups.into_iter()
    }

    /// Cost: a full scan of the store (O(entries), reading SSTables). A
    /// storage error is logged and counts as 0 (the trait returns a plain
    /// number).
    fn len(&self) -> usize {
        self.count().unwrap_or_else(|e| {
            tracing::error!(error = %e, "LsmStateBackend::len: storage error");
            0
        })
    }

    /// Cost: one seek (stops at the first entry).
    fn is_empty(&self) -> bool {
        match self.first_key_from(&[]) {
            Ok(k) => k.is_none(),
            Err(e) => {
                tracing::error!(error = %e, "LsmStateBackend::is_empty: storage error");
                true
            }
        }
    }
}
