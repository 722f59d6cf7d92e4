//! A map keyed by `i64` ids for operators holding many small maps, a few of which grow large:
//! q16 keeps two distinct sets per (channel, day) group, ~20 000 of them a day, most with a
//! few dozen members and the hot channels' with tens of thousands.
//!
//! Two choices make its lookups cheap where a `SegmentedMap` per set was not:
//! - **Flat while small.** A small map is one array of `(key, value)` slots, open addressing
//!   with linear probing, a reserved key marking free slots: a probe of a cold set misses on
//!   the one cache line holding the key and its value. A `SegmentedMap` per set missed on its
//!   directory and segment vectors, then on a hashbrown table's control bytes, then on the
//!   entry; a hashbrown table alone still on two lines (control bytes apart from entries).
//!   An empty map allocates nothing. Once it holds [`FLAT_LIMIT`] entries it moves into a
//!   `SegmentedMap` (a one-off move of that many entries, the size of a segment split), so a
//!   large map still never stalls on a doubling.
//! - **Ids in runs.** Both forms hash with [`IdHash`]: consecutive ids share cache lines, so
//!   the recent ids a stream keeps probing stay cached (see its docs).

use crate::segmented::{IdHash, MapHash, SEGMENT_ENTRIES, SegmentedMap};

/// The most entries a map holds flat: a full segment, so that spilling into a `SegmentedMap`
/// moves no more entries than one of its splits does, and the flat table (8192 slots at most)
/// grows by doublings of at most 1792 entries. (Measured for q16 at 3584: half of that made
/// q16 4% slower.)
pub const FLAT_LIMIT: usize = SEGMENT_ENTRIES;

/// The key that marks a free slot of a flat table; its own value is kept beside the slots.
const FREE: i64 = i64::MIN;

/// The fewest slots of an allocated flat table.
const MIN_SLOTS: usize = 16;

/// A small map as one slot array: linear probing from the key's `IdHash`, at most half full
/// (a miss probes about 2.5 slots, a hit 1.5: mostly one cache line of four 16-byte slots).
#[derive(Clone)]
struct Flat<V> {
    /// A power of two many slots (or none); free ones hold the key `FREE`.
    slots: Vec<(i64, V)>,
    /// Entries, counting `free_key`'s.
    len: usize,
    /// The value of the key `FREE` itself, if it is in the map.
    free_key: Option<V>,
}

impl<V> Default for Flat<V> {
    fn default() -> Self {
        Flat {
            slots: Vec::new(),
            len: 0,
            free_key: None,
        }
    }
}

impl<V: Default> Flat<V> {
    /// Where `key` (not `FREE`) is: `Ok(slot)`, or `Err(free slot)` where it would go.
    /// Terminates: the table is at most half full, so a free slot follows every run.
    #[inline]
    fn probe(&self, key: i64, hash: u64) -> Result<usize, usize> {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = hash as usize & mask;
        loop {
            match self.slots.get(i) {
                Some((k, _)) if *k == key => return Ok(i),
                Some((k, _)) if *k == FREE => return Err(i),
                Some(_) => i = (i + 1) & mask,
                // Only with no slots at all.
                None => return Err(i),
            }
        }
    }

    #[inline]
    fn get(&self, key: i64, hash: u64) -> Option<&V> {
        if key == FREE {
            return self.free_key.as_ref();
        }
        let i = self.probe(key, hash).ok()?;
        self.slots.get(i).map(|(_, v)| v)
    }

    #[inline]
    fn contains(&self, key: i64, hash: u64) -> bool {
        self.get(key, hash).is_some()
    }

    /// The value of `key`, inserted as `default()` if absent, and whether it was inserted now.
    #[inline]
    fn find_or_insert_with(
        &mut self,
        key: i64,
        hash: u64,
        default: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        if key == FREE {
            let new = self.free_key.is_none();
            self.len += usize::from(new);
            return (self.free_key.get_or_insert_with(default), new);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let (i, new) = match self.probe(key, hash) {
            Ok(i) => (i, false),
            Err(i) => (i, true),
        };
        if new {
            self.len += 1;
        }
        // In range: `probe` masks the index by the slot count, and there are slots now.
        let slot = &mut self.slots[i];
        if new {
            *slot = (key, default());
        }
        (&mut slot.1, new)
    }

    /// Doubles the slots (or allocates the first ones) and reinserts every entry.
    #[cold]
    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(
            &mut self.slots,
            std::iter::repeat_with(|| (FREE, V::default()))
                .take(slots)
                .collect(),
        );
        for (k, v) in old {
            if k != FREE
                && let Err(i) = self.probe(k, IdHash::hash(&k))
                && let Some(slot) = self.slots.get_mut(i)
            {
                *slot = (k, v);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (i64, &V)> {
        self.slots
            .iter()
            .filter(|(k, _)| *k != FREE)
            .map(|(k, v)| (*k, v))
            .chain(self.free_key.iter().map(|v| (FREE, v)))
    }
}

#[derive(Clone)]
enum Repr<V> {
    Flat(Flat<V>),
    Segmented(Box<SegmentedMap<i64, V, IdHash>>),
}

/// A map from `i64` ids to values: flat while small, segmented when large (see the module
/// docs). Iteration order is unspecified.
#[derive(Clone)]
pub struct IdMap<V> {
    repr: Repr<V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap {
            repr: Repr::Flat(Flat::default()),
        }
    }
}

impl<V: Default> IdMap<V> {
    /// An empty map (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Flat(t) => t.len,
            Repr::Segmented(m) => m.len(),
        }
    }

    /// True if there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the map has moved into its segmented form (for tests and diagnostics).
    pub fn is_segmented(&self) -> bool {
        matches!(self.repr, Repr::Segmented(_))
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: i64) -> Option<&V> {
        match &self.repr {
            Repr::Flat(t) => t.get(key, IdHash::hash(&key)),
            Repr::Segmented(m) => m.get(&key),
        }
    }

    /// The value of `key`, inserted as `default()` if absent, and whether it was inserted now.
    #[inline]
    pub fn find_or_insert_with(&mut self, key: i64, default: impl FnOnce() -> V) -> (&mut V, bool) {
        let hash = IdHash::hash(&key);
        self.make_room(hash, key);
        match &mut self.repr {
            Repr::Flat(t) => t.find_or_insert_with(key, hash, default),
            Repr::Segmented(m) => m.find_or_insert_with(&key, default),
        }
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: i64, value: V) -> Option<V> {
        let hash = IdHash::hash(&key);
        self.make_room(hash, key);
        match &mut self.repr {
            Repr::Flat(t) => {
                let mut value = Some(value);
                let (slot, new) =
                    t.find_or_insert_with(key, hash, || value.take().unwrap_or_default());
                // `value` is still there iff the key was present.
                value.map(|v| std::mem::replace(slot, v)).filter(|_| !new)
            }
            Repr::Segmented(m) => m.insert(key, value),
        }
    }

    /// Spills a full flat table before `key` (of hash `hash`) would be added past the limit.
    #[inline]
    fn make_room(&mut self, hash: u64, key: i64) {
        if let Repr::Flat(t) = &self.repr
            && t.len >= FLAT_LIMIT
            && !t.contains(key, hash)
        {
            self.spill();
        }
    }

    /// Moves a full flat table into a `SegmentedMap`.
    #[cold]
    fn spill(&mut self) {
        if let Repr::Flat(t) = &mut self.repr {
            let Flat {
                slots, free_key, ..
            } = std::mem::take(t);
            let segmented: SegmentedMap<i64, V, IdHash> = slots
                .into_iter()
                .filter(|(k, _)| *k != FREE)
                .chain(free_key.map(|v| (FREE, v)))
                .collect();
            self.repr = Repr::Segmented(Box::new(segmented));
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (i64, &V)> + '_> {
        match &self.repr {
            Repr::Flat(t) => Box::new(t.iter()),
            Repr::Segmented(m) => Box::new(m.iter().map(|(k, v)| (*k, v))),
        }
    }
}

impl<V: Default> Extend<(i64, V)> for IdMap<V> {
    fn extend<I: IntoIterator<Item = (i64, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V: Default> FromIterator<(i64, V)> for IdMap<V> {
    fn from_iter<I: IntoIterator<Item = (i64, V)>>(iter: I) -> Self {
        let mut map = IdMap::new();
        map.extend(iter);
        map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Keys of the kinds the map must handle: dense recent ids, ids with a power-of-two
    /// stride (all at one position of their run), negative and extreme values.
    fn key() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => 0i64..12_000,
            2 => (0i64..12_000).prop_map(|k| k * 8),
            1 => (0i64..12_000).prop_map(|k| k << 20),
            1 => (0i64..12_000).prop_map(|k| -k * 1024),
            1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1i64)],
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Any sequence of upserts and inserts leaves the map equal to a `BTreeMap` model,
        /// through the spill from flat to segmented.
        #[test]
        fn behaves_like_a_btree_map(
            ops in prop::collection::vec((key(), any::<u8>(), any::<bool>()), 1..20_000)
        ) {
            let mut map: IdMap<u8> = IdMap::new();
            let mut model: BTreeMap<i64, u8> = BTreeMap::new();
            for (k, v, upsert) in ops {
                if upsert {
                    let (slot, new) = map.find_or_insert_with(k, || 0);
                    prop_assert_eq!(new, !model.contains_key(&k));
                    *slot |= v;
                    *model.entry(k).or_insert(0) |= v;
                } else {
                    prop_assert_eq!(map.insert(k, v), model.insert(k, v));
                }
                prop_assert_eq!(map.len(), model.len());
            }
            prop_assert_eq!(map.is_segmented(), model.len() > FLAT_LIMIT);
            let mut entries: Vec<(i64, u8)> = map.iter().map(|(k, v)| (k, *v)).collect();
            entries.sort_unstable();
            prop_assert_eq!(entries, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            for k in (0..12_000).chain((0..12_000).map(|k| k * 8)) {
                prop_assert_eq!(map.get(k), model.get(&k));
            }
            let copy: IdMap<u8> = map.iter().map(|(k, v)| (k, *v)).collect();
            prop_assert_eq!(copy.len(), map.len());
        }
    }

    /// A map spills exactly when a new key would pass the limit, keeping every entry.
    #[test]
    fn spills_past_the_flat_limit() {
        let mut map = IdMap::new();
        for k in 0..FLAT_LIMIT as i64 {
            map.insert(k, k);
        }
        assert!(!map.is_segmented());
        // A present key does not spill.
        assert_eq!(map.find_or_insert_with(0, || -1), (&mut 0, false));
        assert!(!map.is_segmented());
        map.insert(FLAT_LIMIT as i64, 0);
        assert!(map.is_segmented());
        assert_eq!(map.len(), FLAT_LIMIT + 1);
        assert!((1..FLAT_LIMIT as i64).all(|k| map.get(k) == Some(&k)));
    }
}
