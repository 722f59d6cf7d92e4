//! A bounded write-back cache in front of the LSM store, for the entries a keyed function
//! touches per record: value and list entries (the empty user key).
//!
//! Why: the auction-lifetime joins read their auction's `ValueState` on every bid and write it
//! back on every better bid, and a Nexmark bid goes to one of ~100 recent auctions. Through
//! the store each access searched the memtables, copied the `Bytes` into a fresh `Vec`, and
//! each write inserted a fresh copy into the memtable (filling it, so it flushed and
//! compacted hundreds of times). Here the entry stays in one slot: a read is one hash probe
//! and decodes from the slot's bytes; a write overwrites the slot; the store sees one write
//! per entry when it is evicted or when the cache is flushed (before a checkpoint's store
//! snapshot, and before any operation that reads the store in ranges).
//!
//! A slot holds exactly what the store would hold after the writes it absorbed (the store's
//! tagged value bytes), or knows the entry is absent (a read that found nothing is cached
//! too, so an auction's empty waiting list is looked up in the store once), or holds list
//! elements appended over a base not read yet (flushed as one merge operand, so appending
//! stays read-free). Eviction is CLOCK over a slot vector indexed by a `hashbrown` table.

use hashbrown::HashTable;

use super::error::StateError;
use crate::key::KeyHasher;

/// What the cache writes into the store (and reads from it). [`super::lsm`] implements it on
/// the `weir-storage` store; the tests on a `BTreeMap`.
pub(super) trait Backing {
    /// The entry's stored bytes, handed to `f` (`None` if absent).
    fn read<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, StateError>;
    /// Stores `value`, replacing the entry.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Removes the entry.
    fn delete(&self, key: &[u8]) -> Result<(), StateError>;
    /// Appends `operand` to the entry's bytes (the store's concatenating merge).
    fn merge(&self, key: &[u8], operand: &[u8]) -> Result<(), StateError>;
}

/// Limits of a [`WriteCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries held; 0 disables the cache (every call goes to the store).
    pub entries: usize,
    /// Most key and value bytes held (one slot may grow past it until the next insert).
    pub bytes: usize,
}

impl Default for CacheLimits {
    /// 4096 entries, 4 MiB: a join's working set (recent auctions) many times over, small
    /// beside the store's 16 MiB memtable and 32 MiB block cache.
    fn default() -> Self {
        CacheLimits {
            entries: 4096,
            bytes: 4 << 20,
        }
    }
}

/// Counters of a [`WriteCache`], for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from a slot.
    pub hits: u64,
    /// Reads that went to the store.
    pub misses: u64,
    /// Slots evicted.
    pub evictions: u64,
    /// Writes into the store (eviction and flushes).
    pub writes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `bytes` is the entry's stored value.
    Present,
    /// No entry (`bytes` empty).
    Absent,
    /// `bytes` are list elements appended over a base not read yet; always dirty.
    Appended,
}

#[derive(Debug)]
struct Slot {
    key: Vec<u8>,
    hash: u64,
    kind: Kind,
    bytes: Vec<u8>,
    /// Differs from the store: must be written before it is dropped.
    dirty: bool,
    /// The store may hold an entry for the key (false once a read found none or a delete
    /// was written): deleting then needs no tombstone. True when unknown.
    stored: bool,
    /// CLOCK's second-chance bit, set by every access.
    referenced: bool,
}

impl Slot {
    fn size(&self) -> usize {
        self.key.len() + self.bytes.len()
    }
}

/// The cache. Not thread-safe (one per store, on the store's shard).
#[derive(Debug)]
pub struct WriteCache {
    limits: CacheLimits,
    slots: Vec<Slot>,
    /// Indices into `slots`, hashed by the slot's key.
    table: HashTable<usize>,
    hand: usize,
    bytes: usize,
    stats: CacheStats,
}

fn hash(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = KeyHasher::default();
    h.write(key);
    h.finish()
}

impl WriteCache {
    pub fn new(limits: CacheLimits) -> Self {
        WriteCache {
            limits,
            slots: Vec::new(),
            table: HashTable::new(),
            hand: 0,
            bytes: 0,
            stats: CacheStats::default(),
        }
    }

    /// False if the limits disable it.
    pub fn enabled(&self) -> bool {
        self.limits.entries > 0
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Entries not yet written to the store.
    #[cfg(test)]
    pub fn dirty(&self) -> usize {
        self.slots.iter().filter(|s| s.dirty).count()
    }

    fn find(&self, key: &[u8], h: u64) -> Option<usize> {
        let slots = &self.slots;
        self.table
            .find(h, |&i| slots[i].hash == h && slots[i].key == key)
            .copied()
    }

    /// Writes slot `i` into the store if it is dirty; an appended slot then is dropped (the
    /// caller knows: it returns true), every other one becomes clean.
    fn write_back<S: Backing>(&mut self, store: &S, i: usize) -> Result<bool, StateError> {
        let slot = &mut self.slots[i];
        if !slot.dirty {
            return Ok(false);
        }
        match slot.kind {
            Kind::Present => store.put(&slot.key, &slot.bytes)?,
            Kind::Absent => store.delete(&slot.key)?,
            Kind::Appended => store.merge(&slot.key, &slot.bytes)?,
        }
        self.stats.writes += 1;
        slot.dirty = false;
        slot.stored = slot.kind != Kind::Absent;
        Ok(slot.kind == Kind::Appended)
    }

    /// Removes slot `i` (already written back), returning it so its buffers can be reused.
    fn remove(&mut self, i: usize) -> Slot {
        let h = self.slots[i].hash;
        if let Ok(e) = self.table.find_entry(h, |&j| j == i) {
            e.remove();
        }
        let last = self.slots.len() - 1;
        if i != last {
            let moved = self.slots[last].hash;
            if let Some(j) = self.table.find_mut(moved, |&j| j == last) {
                *j = i;
            }
        }
        let slot = self.slots.swap_remove(i);
        self.bytes -= slot.size();
        slot
    }

    /// Evicts one slot by CLOCK (writing it back if dirty) and returns it.
    fn evict_one<S: Backing>(&mut self, store: &S) -> Result<Slot, StateError> {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let i = self.hand;
            if std::mem::take(&mut self.slots[i].referenced) {
                self.hand += 1;
                continue;
            }
            self.write_back(store, i)?;
            self.stats.evictions += 1;
            return Ok(self.remove(i));
        }
    }

    /// A new slot for `key` (not present), evicting to stay within the limits; reuses an
    /// evicted slot's buffers.
    fn insert<S: Backing>(
        &mut self,
        store: &S,
        key: &[u8],
        h: u64,
        kind: Kind,
        fill: impl FnOnce(&mut Vec<u8>),
        dirty: bool,
    ) -> Result<usize, StateError> {
        let mut spare = None;
        while !self.slots.is_empty()
            && (self.slots.len() >= self.limits.entries || self.bytes > self.limits.bytes)
        {
            spare = Some(self.evict_one(store)?);
        }
        let (mut k, mut bytes) = match spare {
            Some(s) => (s.key, s.bytes),
            None => (Vec::new(), Vec::new()),
        };
        k.clear();
        k.extend_from_slice(key);
        bytes.clear();
        fill(&mut bytes);
        let slot = Slot {
            key: k,
            hash: h,
            kind,
            bytes,
            dirty,
            stored: true,
            referenced: true,
        };
        self.bytes += slot.size();
        let i = self.slots.len();
        self.slots.push(slot);
        let slots = &self.slots;
        self.table.insert_unique(h, i, |&j| slots[j].hash);
        Ok(i)
    }

    /// Runs `f` on the entry's stored bytes (`None` if absent): from its slot, else read
    /// from the store into a new slot (absence too). Elements appended over an unread base
    /// are combined with it here (the store's merge, done once).
    pub fn read<S: Backing, R>(
        &mut self,
        store: &S,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StateError> {
        let h = hash(key);
        let i = match self.find(key, h) {
            Some(i) => {
                self.stats.hits += 1;
                let slot = &mut self.slots[i];
                slot.referenced = true;
                if slot.kind == Kind::Appended {
                    let before = slot.bytes.len();
                    let mut merged = Vec::new();
                    let mut stored = false;
                    store.read(&slot.key, |base| {
                        if let Some(b) = base {
                            merged.reserve(b.len() + slot.bytes.len());
                            merged.extend_from_slice(b);
                            stored = true;
                        }
                    })?;
                    slot.stored = stored;
                    merged.extend_from_slice(&slot.bytes);
                    slot.bytes = merged;
                    slot.kind = Kind::Present;
                    self.bytes = self.bytes - before + slot.bytes.len();
                }
                i
            }
            None => {
                self.stats.misses += 1;
                let i = self.insert(store, key, h, Kind::Absent, |_| {}, false)?;
                let slot = &mut self.slots[i];
                slot.stored = false;
                let read = store.read(key, |v| {
                    if let Some(v) = v {
                        slot.bytes.extend_from_slice(v);
                        slot.kind = Kind::Present;
                        slot.stored = true;
                    }
                });
                if let Err(e) = read {
                    self.slots[i].bytes.clear();
                    self.remove(i);
                    return Err(e);
                }
                self.bytes += self.slots[i].bytes.len();
                i
            }
        };
        let slot = &self.slots[i];
        Ok(f(
            (slot.kind == Kind::Present).then_some(slot.bytes.as_slice())
        ))
    }

    /// Sets the entry to the bytes `fill` writes.
    pub fn put<S: Backing>(
        &mut self,
        store: &S,
        key: &[u8],
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StateError> {
        let h = hash(key);
        match self.find(key, h) {
            Some(i) => {
                let slot = &mut self.slots[i];
                let before = slot.bytes.len();
                slot.bytes.clear();
                fill(&mut slot.bytes);
                slot.kind = Kind::Present;
                slot.dirty = true;
                slot.referenced = true;
                self.bytes = self.bytes - before + slot.bytes.len();
            }
            None => {
                self.insert(store, key, h, Kind::Present, fill, true)?;
            }
        }
        Ok(())
    }

    /// Removes the entry.
    pub fn delete<S: Backing>(&mut self, store: &S, key: &[u8]) -> Result<(), StateError> {
        let h = hash(key);
        match self.find(key, h) {
            Some(i) => {
                let slot = &mut self.slots[i];
                if slot.kind != Kind::Absent {
                    self.bytes -= slot.bytes.len();
                    slot.bytes.clear();
                    slot.kind = Kind::Absent;
                }
                // Nothing to delete in the store if it holds nothing (an auction's waiting
                // list that lived and died in the cache).
                slot.dirty = slot.stored;
                slot.referenced = true;
            }
            None => {
                self.insert(store, key, h, Kind::Absent, |_| {}, true)?;
            }
        }
        Ok(())
    }

    /// Appends the bytes `fill` writes to the entry (a list element), without reading the
    /// store.
    pub fn append<S: Backing>(
        &mut self,
        store: &S,
        key: &[u8],
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StateError> {
        let h = hash(key);
        match self.find(key, h) {
            Some(i) => {
                let slot = &mut self.slots[i];
                let before = slot.bytes.len();
                fill(&mut slot.bytes);
                if slot.kind == Kind::Absent {
                    slot.kind = Kind::Present;
                }
                slot.dirty = true;
                slot.referenced = true;
                self.bytes = self.bytes - before + slot.bytes.len();
            }
            None => {
                self.insert(store, key, h, Kind::Appended, fill, true)?;
            }
        }
        Ok(())
    }

    /// Writes the entry into the store if its slot is dirty (before the store is read in a
    /// range that includes it).
    pub fn flush_key<S: Backing>(&mut self, store: &S, key: &[u8]) -> Result<(), StateError> {
        if let Some(i) = self.find(key, hash(key))
            && self.write_back(store, i)?
        {
            self.remove(i);
        }
        Ok(())
    }

    /// Forgets the entry without writing it (the caller deleted it in the store by a range).
    pub fn forget(&mut self, key: &[u8]) {
        if let Some(i) = self.find(key, hash(key)) {
            self.remove(i);
        }
    }

    /// Writes every dirty slot into the store; slots stay, clean (appended ones go). On an
    /// error the slots not written yet stay dirty.
    pub fn flush<S: Backing>(&mut self, store: &S) -> Result<(), StateError> {
        let mut i = 0;
        while i < self.slots.len() {
            if self.write_back(store, i)? {
                // swap_remove moved the last slot to `i`: look at it next.
                self.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Drops every slot without writing (after [`WriteCache::flush`], before the store
    /// changes under the cache: a restore, a key-group delete, a TTL pass).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.table.clear();
        self.hand = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A store on a `BTreeMap` with the LSM's concatenating merge; counts its writes.
    #[derive(Default)]
    struct MapStore {
        map: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
        writes: RefCell<usize>,
    }

    impl Backing for MapStore {
        fn read<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, StateError> {
            Ok(f(self.map.borrow().get(key).map(Vec::as_slice)))
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
            *self.writes.borrow_mut() += 1;
            self.map.borrow_mut().insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn delete(&self, key: &[u8]) -> Result<(), StateError> {
            *self.writes.borrow_mut() += 1;
            self.map.borrow_mut().remove(key);
            Ok(())
        }
        fn merge(&self, key: &[u8], operand: &[u8]) -> Result<(), StateError> {
            *self.writes.borrow_mut() += 1;
            self.map
                .borrow_mut()
                .entry(key.to_vec())
                .or_default()
                .extend_from_slice(operand);
            Ok(())
        }
    }

    fn get(c: &mut WriteCache, s: &MapStore, key: &[u8]) -> Option<Vec<u8>> {
        c.read(s, key, |v| v.map(<[u8]>::to_vec))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn writes_stay_in_the_cache_until_flushed() {
        let store = MapStore::default();
        let mut c = WriteCache::new(CacheLimits::default());
        for v in 0..100u8 {
            c.put(&store, b"k", |b| b.push(v)).unwrap();
        }
        assert_eq!(get(&mut c, &store, b"k"), Some(vec![99]));
        assert_eq!(*store.writes.borrow(), 0, "no write reached the store");
        c.flush(&store).unwrap();
        assert_eq!(*store.writes.borrow(), 1, "one write for a hundred puts");
        assert_eq!(store.map.borrow().get(&b"k"[..]), Some(&vec![99]));
        assert_eq!(c.dirty(), 0);
    }

    #[test]
    fn absence_is_cached_and_appends_do_not_read() {
        struct Counting(MapStore, RefCell<usize>);
        impl Backing for Counting {
            fn read<R>(
                &self,
                key: &[u8],
                f: impl FnOnce(Option<&[u8]>) -> R,
            ) -> Result<R, StateError> {
                *self.1.borrow_mut() += 1;
                self.0.read(key, f)
            }
            fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
                self.0.put(key, value)
            }
            fn delete(&self, key: &[u8]) -> Result<(), StateError> {
                self.0.delete(key)
            }
            fn merge(&self, key: &[u8], operand: &[u8]) -> Result<(), StateError> {
                self.0.merge(key, operand)
            }
        }
        let store = Counting(MapStore::default(), RefCell::new(0));
        store
            .0
            .map
            .borrow_mut()
            .insert(b"l".to_vec(), b"ab".to_vec());
        let mut c = WriteCache::new(CacheLimits::default());
        assert!(c.read(&store, b"x", |v| v.is_none()).unwrap());
        assert!(c.read(&store, b"x", |v| v.is_none()).unwrap());
        assert_eq!(
            *store.1.borrow(),
            1,
            "the second read of an absent key is a hit"
        );
        c.append(&store, b"l", |b| b.push(b'c')).unwrap();
        assert_eq!(*store.1.borrow(), 1, "append does not read");
        c.flush(&store).unwrap();
        assert_eq!(store.0.map.borrow().get(&b"l"[..]), Some(&b"abc".to_vec()));
        assert_eq!(c.len(), 1, "the appended slot left the cache when flushed");
        // A list that lives and dies in the cache over a key the store never held (an
        // auction's waiting bids) costs the store nothing, not even a tombstone.
        let writes = *store.0.writes.borrow();
        c.append(&store, b"x", |b| b.push(b'w')).unwrap();
        let got = c.read(&store, b"x", |v| v.map(<[u8]>::to_vec)).unwrap();
        assert_eq!(got, Some(b"w".to_vec()));
        c.delete(&store, b"x").unwrap();
        c.flush(&store).unwrap();
        assert_eq!(
            *store.0.writes.borrow(),
            writes,
            "nothing written for a list born and deleted in the cache"
        );
        c.append(&store, b"l", |b| b.push(b'd')).unwrap();
        assert_eq!(
            c.read(&store, b"l", |v| v.map(<[u8]>::to_vec)).unwrap(),
            Some(b"abcd".to_vec())
        );
    }

    #[test]
    fn eviction_writes_back_and_respects_the_limits() {
        let store = MapStore::default();
        let limits = CacheLimits {
            entries: 8,
            bytes: 1 << 20,
        };
        let mut c = WriteCache::new(limits);
        for k in 0..100u8 {
            c.put(&store, &[k], |b| b.push(k)).unwrap();
            assert!(c.len() <= 8);
        }
        assert_eq!(c.stats().evictions, 92);
        assert_eq!(
            store.map.borrow().len(),
            92,
            "every evicted entry was written"
        );
        for k in 0..100u8 {
            assert_eq!(get(&mut c, &store, &[k]), Some(vec![k]));
        }
        let mut small = WriteCache::new(CacheLimits {
            entries: 100,
            bytes: 64,
        });
        for k in 0..50u8 {
            small
                .put(&store, &[k], |b| b.extend_from_slice(&[k; 15]))
                .unwrap();
            assert!(small.bytes <= 64 + 16, "bytes {}", small.bytes);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Get(u8),
        Put(u8, u8),
        Delete(u8),
        Append(u8, u8),
        FlushKey(u8),
        Flush,
        /// Flush, then restore: the cache is dropped, the store is what the flush left.
        Restore,
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..12;
        prop_oneof![
            4 => k.clone().prop_map(Op::Get),
            3 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            1 => k.clone().prop_map(Op::Delete),
            3 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Append(k, v)),
            1 => k.prop_map(Op::FlushKey),
            1 => Just(Op::Flush),
            1 => Just(Op::Restore),
        ]
    }

    proptest! {
        /// The cache over a store behaves like the store alone (a `BTreeMap`), whatever the
        /// limits; after a flush the store holds exactly the model.
        #[test]
        fn matches_a_map_model(
            ops in proptest::collection::vec(op(), 1..120),
            entries in 0usize..6,
            bytes in 1usize..40,
        ) {
            let store = MapStore::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut c = WriteCache::new(CacheLimits { entries, bytes });
            for op in &ops {
                match *op {
                    Op::Get(k) => {
                        let got = get(&mut c, &store, &[k]);
                        prop_assert_eq!(got.as_ref(), model.get(&vec![k]), "{:?}", op);
                    }
                    Op::Put(k, v) => {
                        c.put(&store, &[k], |b| b.extend_from_slice(&[v, v])).unwrap();
                        model.insert(vec![k], vec![v, v]);
                    }
                    Op::Delete(k) => {
                        c.delete(&store, &[k]).unwrap();
                        model.remove(&vec![k]);
                    }
                    Op::Append(k, v) => {
                        c.append(&store, &[k], |b| b.push(v)).unwrap();
                        model.entry(vec![k]).or_default().push(v);
                    }
                    Op::FlushKey(k) => {
                        c.flush_key(&store, &[k]).unwrap();
                        let stored = store.map.borrow().get(&vec![k]).cloned();
                        prop_assert_eq!(stored.as_ref(), model.get(&vec![k]));
                    }
                    Op::Flush => {
                        c.flush(&store).unwrap();
                        prop_assert_eq!(&*store.map.borrow(), &model);
                    }
                    Op::Restore => {
                        c.flush(&store).unwrap();
                        c.clear();
                        prop_assert_eq!(&*store.map.borrow(), &model);
                    }
                }
                prop_assert!(c.len() <= entries.max(1));
            }
            c.flush(&store).unwrap();
            prop_assert_eq!(&*store.map.borrow(), &model);
            prop_assert_eq!(c.dirty(), 0);
        }
    }
}
