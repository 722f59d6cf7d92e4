//! A map for integer keys handed out in sequence (auction ids, order numbers, sequence
//! numbers): values of nearby keys sit next to each other in memory.
//!
//! A hash map scatters keys on purpose, so each new key is a write to a cold cache line and
//! each lookup of a live one is two (control bytes, then the bucket). When the keys are
//! allocated in increasing order and used mostly while young — the bids of an auction arrive
//! while the auction is new — the live keys form a sliding range, and a range indexed by
//! `key - first` keeps that working set in a few cache lines and adds new keys at the end.
//! Here the range is a deque of fixed-size chunks (growing moves chunk pointers, never
//! values, so no insert stalls on a copy of the whole map), trimmed at both ends as keys are
//! removed. Keys far outside the range go to an ordinary hash map, so any key pattern is
//! correct; only dense ones are fast.

use std::collections::VecDeque;

use crate::key::KeyMap;

/// Keys per chunk: a chunk of small values spans a few KiB.
const CHUNK: i64 = 512;

/// One chunk: slot `i` holds key `chunk_start + i`.
#[derive(Clone)]
struct Chunk<V> {
    /// Occupied slots, so an emptied chunk is found without a scan.
    live: usize,
    slots: Box<[Option<V>]>,
}

impl<V> Chunk<V> {
    fn new() -> Self {
        Chunk {
            live: 0,
            slots: (0..CHUNK).map(|_| None).collect(),
        }
    }
}

/// A map from `i64` keys to `V`, fast when the live keys are mostly a contiguous range (see
/// the module docs). Iteration order is unspecified.
#[derive(Clone)]
pub struct DenseMap<V> {
    /// Chunk index (key `div_euclid` [`CHUNK`]) of `chunks[0]`.
    first_chunk: i64,
    chunks: VecDeque<Chunk<V>>,
    /// Keys outside the chunks' range when they arrived (a key stays where it was put).
    sparse: KeyMap<i64, V>,
    len: usize,
}

impl<V> Default for DenseMap<V> {
    fn default() -> Self {
        DenseMap {
            first_chunk: 0,
            chunks: VecDeque::new(),
            sparse: KeyMap::default(),
            len: 0,
        }
    }
}

/// The chunk of `key` and its slot in it.
#[inline]
fn split(key: i64) -> (i64, usize) {
    // rem_euclid of a positive divisor is in 0..CHUNK.
    (key.div_euclid(CHUNK), key.rem_euclid(CHUNK) as usize)
}

impl<V> DenseMap<V> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Index into `chunks` of chunk `c`, if it is in the range.
    #[inline]
    fn chunk_index(&self, c: i64) -> Option<usize> {
        let i = c.checked_sub(self.first_chunk)?;
        usize::try_from(i).ok().filter(|&i| i < self.chunks.len())
    }

    pub fn get(&self, key: i64) -> Option<&V> {
        let (c, slot) = split(key);
        if let Some(i) = self.chunk_index(c)
            && let Some(v) = self.chunks[i].slots[slot].as_ref()
        {
            return Some(v);
        }
        self.sparse.get(&key)
    }

    pub fn get_mut(&mut self, key: i64) -> Option<&mut V> {
        let (c, slot) = split(key);
        if let Some(i) = self.chunk_index(c)
            && self.chunks[i].slots[slot].is_some()
        {
            return self.chunks[i].slots[slot].as_mut();
        }
        self.sparse.get_mut(&key)
    }

    /// The value of `key`, inserted by `make` if missing.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: i64, make: impl FnOnce() -> V) -> &mut V {
        let (c, slot) = split(key);
        let i = match self.chunk_index(c) {
            Some(i) => i,
            None => match self.grow_to(c) {
                Some(i) => i,
                None => {
                    let len = &mut self.len;
                    return self.sparse.entry(key).or_insert_with(|| {
                        *len += 1;
                        make()
                    });
                }
            },
        };
        let chunk = &mut self.chunks[i];
        // A key put in `sparse` before the range reached it stays there.
        if chunk.slots[slot].is_none() && !self.sparse.is_empty() && self.sparse.contains_key(&key)
        {
            return self.sparse.entry(key).or_insert_with(make);
        }
        let (len, live) = (&mut self.len, &mut chunk.live);
        chunk.slots[slot].get_or_insert_with(|| {
            *len += 1;
            *live += 1;
            make()
        })
    }

    /// The most chunks the range may span: twice what the keys would fill, plus a margin,
    /// so the map stays at least about half dense whatever order keys arrive in.
    fn chunk_budget(&self) -> i64 {
        let filled = i64::try_from(self.len / CHUNK as usize).unwrap_or(i64::MAX / 4);
        2 * (filled + 1) + 8
    }

    /// Extends the range to chunk `c` if the range then stays within [`Self::chunk_budget`]
    /// (a key far away goes to `sparse` instead of allocating the gap); the index of chunk
    /// `c` then.
    #[cold]
    fn grow_to(&mut self, c: i64) -> Option<usize> {
        if self.chunks.is_empty() {
            self.first_chunk = c;
            self.chunks.push_back(Chunk::new());
            return Some(0);
        }
        let last = self.first_chunk + i64::try_from(self.chunks.len()).ok()? - 1;
        let span = c
            .max(last)
            .checked_sub(c.min(self.first_chunk))?
            .checked_add(1)?;
        if span > self.chunk_budget() {
            return None;
        }
        if c > last {
            for _ in last..c {
                self.chunks.push_back(Chunk::new());
            }
            return Some(self.chunks.len() - 1);
        }
        for _ in c..self.first_chunk {
            self.chunks.push_front(Chunk::new());
        }
        self.first_chunk = c;
        Some(0)
    }

    /// Sets `key`'s value, returning the old one.
    pub fn insert(&mut self, key: i64, value: V) -> Option<V> {
        if let Some(old) = self.get_mut(key) {
            return Some(std::mem::replace(old, value));
        }
        self.get_or_insert_with(key, || value);
        None
    }

    /// Moves keys put aside into the range if all keys then fit [`Self::chunk_budget`]: after
    /// a restore, which inserts keys in no useful order.
    pub fn compact(&mut self) {
        if self.sparse.is_empty() {
            return;
        }
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for (k, _) in self.iter() {
            lo = lo.min(k);
            hi = hi.max(k);
        }
        let span = (hi.div_euclid(CHUNK) as i128) - (lo.div_euclid(CHUNK) as i128) + 1;
        if span > i128::from(self.chunk_budget()) {
            return;
        }
        let old = std::mem::take(&mut self.chunks);
        let old_first = std::mem::replace(&mut self.first_chunk, lo.div_euclid(CHUNK));
        let sparse = std::mem::take(&mut self.sparse);
        self.len = 0;
        // The whole span at once: growing key by key would check the budget against a
        // half-refilled map.
        for _ in 0..span {
            self.chunks.push_back(Chunk::new());
        }
        for (i, chunk) in old.into_iter().enumerate() {
            let start = (old_first + i as i64) * CHUNK;
            for (s, v) in chunk.slots.into_vec().into_iter().enumerate() {
                if let Some(v) = v {
                    self.insert(start + s as i64, v);
                }
            }
        }
        for (k, v) in sparse {
            self.insert(k, v);
        }
        self.trim();
    }

    pub fn remove(&mut self, key: i64) -> Option<V> {
        let (c, slot) = split(key);
        let removed = match self.chunk_index(c) {
            Some(i) if self.chunks[i].slots[slot].is_some() => {
                self.chunks[i].live -= 1;
                self.chunks[i].slots[slot].take()
            }
            _ => self.sparse.remove(&key),
        };
        if removed.is_some() {
            self.len -= 1;
            self.trim();
        }
        removed
    }

    /// Keeps the entries for which `keep` is true; frees chunks left empty at either end.
    pub fn retain(&mut self, mut keep: impl FnMut(i64, &mut V) -> bool) {
        let mut removed = 0;
        for (i, chunk) in self.chunks.iter_mut().enumerate() {
            let start = (self.first_chunk + i as i64) * CHUNK;
            for (s, slot) in chunk.slots.iter_mut().enumerate() {
                if let Some(v) = slot
                    && !keep(start + s as i64, v)
                {
                    *slot = None;
                    chunk.live -= 1;
                    removed += 1;
                }
            }
        }
        self.sparse.retain(|&k, v| {
            let kept = keep(k, v);
            removed += usize::from(!kept);
            kept
        });
        self.len -= removed;
        self.trim();
    }

    /// Drops empty chunks at both ends of the range.
    fn trim(&mut self) {
        while self.chunks.front().is_some_and(|c| c.live == 0) {
            self.chunks.pop_front();
            self.first_chunk += 1;
        }
        while self.chunks.back().is_some_and(|c| c.live == 0) {
            self.chunks.pop_back();
        }
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &V)> + '_ {
        let dense = self.chunks.iter().enumerate().flat_map(move |(i, chunk)| {
            let start = (self.first_chunk + i as i64) * CHUNK;
            chunk
                .slots
                .iter()
                .enumerate()
                .filter_map(move |(s, v)| v.as_ref().map(|v| (start + s as i64, v)))
        });
        dense.chain(self.sparse.iter().map(|(&k, v)| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Add(i64, u32),
        Remove(i64),
        /// Keeps keys at or above the bound (a sweep of old keys).
        KeepFrom(i64),
        /// Keeps even values only.
        KeepEven,
        Insert(i64, u32),
        Compact,
    }

    /// Keys in a sliding dense range, with some far away or negative ones mixed in.
    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec((0u8..20, -3_000i64..3_000, 0u32..100, any::<i64>()), 1..600)
            .prop_map(|steps| {
                let mut clock = 0i64;
                steps
                    .into_iter()
                    .map(|(kind, offset, v, far)| {
                        clock += 7;
                        match kind {
                            0 => Op::Add(far, v),
                            1 | 2 => Op::Remove(clock + offset / 10),
                            3 => Op::KeepFrom(clock - 1_500),
                            4 => Op::KeepEven,
                            5 => Op::Insert(clock - offset, v),
                            6 => Op::Compact,
                            _ => Op::Add(clock + offset / 5, v),
                        }
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn behaves_as_an_ordered_map(ops in ops()) {
            let mut map = DenseMap::default();
            let mut model: BTreeMap<i64, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Add(k, v) => {
                        *map.get_or_insert_with(k, || 0) += v;
                        *model.entry(k).or_insert(0) += v;
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(k), model.remove(&k)),
                    Op::KeepFrom(bound) => {
                        map.retain(|k, _| k >= bound);
                        model.retain(|&k, _| k >= bound);
                    }
                    Op::KeepEven => {
                        map.retain(|_, v| *v % 2 == 0);
                        model.retain(|_, v| *v % 2 == 0);
                    }
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Compact => map.compact(),
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let mut all: Vec<(i64, u32)> = map.iter().map(|(k, &v)| (k, v)).collect();
            all.sort_unstable();
            let expected: Vec<(i64, u32)> = model.iter().map(|(&k, &v)| (k, v)).collect();
            prop_assert_eq!(all, expected);
            for (k, v) in &model {
                prop_assert_eq!(map.get(*k), Some(v));
            }
        }
    }

    #[test]
    fn dense_keys_stay_in_chunks_and_far_keys_go_aside() {
        let mut map = DenseMap::default();
        for k in 1_000..3_000 {
            *map.get_or_insert_with(k, || 0) += 1;
        }
        assert!(map.sparse.is_empty());
        assert_eq!(map.chunks.len(), 5);
        *map.get_or_insert_with(i64::MAX, || 0) += 1;
        *map.get_or_insert_with(i64::MIN, || 0) += 1;
        assert_eq!(map.sparse.len(), 2);
        assert_eq!(map.len(), 2_002);
        // A sweep of the old keys frees their chunks.
        map.retain(|k, _| k >= 2_600);
        assert_eq!(map.chunks.len(), 1);
        // 2600..3000, and i64::MAX aside.
        assert_eq!(map.len(), 401);
        assert_eq!(map.get(i64::MAX), Some(&1));
        assert_eq!(map.get(2_999), Some(&1));
        assert_eq!(map.get(1_000), None);
    }

    #[test]
    fn keys_restored_in_any_order_end_up_in_the_range() {
        let mut keys: Vec<i64> = (50_000..150_000).collect();
        // A fixed shuffle (multiplying by a unit modulo the count).
        let n = keys.len();
        keys = (0..n).map(|i| 50_000 + ((i * 7_919) % n) as i64).collect();
        let mut map = DenseMap::default();
        for &k in &keys {
            assert_eq!(map.insert(k, k * 2), None);
        }
        assert!(
            !map.sparse.is_empty(),
            "the first keys anchor a small range"
        );
        map.compact();
        assert!(map.sparse.is_empty());
        assert_eq!(map.len(), n);
        assert_eq!(map.chunks.len(), 196);
        for k in (50_000..150_000).step_by(997) {
            assert_eq!(map.get(k), Some(&(k * 2)));
        }
        assert_eq!(map.insert(50_000, 1), Some(100_000));
        // Keys spread too thin stay aside.
        let mut thin = DenseMap::default();
        for k in [0, 1 << 40, -(1 << 40)] {
            thin.insert(k, ());
        }
        thin.compact();
        assert_eq!(thin.sparse.len(), 2);
    }

    #[test]
    fn a_key_put_aside_is_found_once_the_range_reaches_it() {
        let mut map = DenseMap::default();
        *map.get_or_insert_with(0, || 0) += 1;
        // Far above the range: aside.
        *map.get_or_insert_with(100_000, || 0) += 1;
        assert_eq!(map.sparse.len(), 1);
        // The range grows chunk by chunk up to it; the key must not appear twice.
        for k in (0..100_512).step_by(100) {
            map.get_or_insert_with(k, || 0);
        }
        *map.get_or_insert_with(100_000, || 0) += 1;
        assert_eq!(map.get(100_000), Some(&2));
        assert_eq!(map.iter().filter(|&(k, _)| k == 100_000).count(), 1);
        assert_eq!(map.remove(100_000), Some(2));
        assert_eq!(map.get(100_000), None);
    }
}
