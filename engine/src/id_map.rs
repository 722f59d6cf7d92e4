//! A map keyed by `i64` ids for operators holding many small maps, a few of which grow large:
//! q16 keeps two distinct sets per (channel, day) group, ~20 000 of them a day, most with a
//! few dozen members and the hot channels' with tens of thousands.
//!
//! Two choices make its lookups cheap where a `SegmentedMap` per set was not:
//! - **Flat while small.** A small map is one hashbrown table held inline (its header is in the
//!   owner's struct, the buckets behind one pointer), not a `SegmentedMap`'s directory and
//!   segment vectors in front of the table: a probe of a cold set misses on the table only,
//!   not on two more heap blocks first, and an empty map allocates nothing. Once it holds
//!   [`FLAT_LIMIT`] entries it moves into a `SegmentedMap` (a one-off move of that many
//!   entries, the size of a segment split), so a large map still never stalls on a doubling.
//! - **Ids in runs.** Both forms hash with [`IdHash`]: consecutive ids share cache lines, so
//!   the recent ids a stream keeps probing stay cached (see its docs).

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::segmented::{IdHash, MapHash, SEGMENT_ENTRIES, SegmentedMap};

/// The most entries a map holds flat: half a segment, so that spilling into a `SegmentedMap`
/// moves no more than one of its splits does, and the flat table (4096 buckets at most) grows
/// by doublings of at most 1792 entries.
pub const FLAT_LIMIT: usize = SEGMENT_ENTRIES / 2;

#[derive(Clone)]
enum Repr<V> {
    Flat(HashTable<(i64, V)>),
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
            repr: Repr::Flat(HashTable::new()),
        }
    }
}

#[inline]
fn hash_of<V>(entry: &(i64, V)) -> u64 {
    IdHash::hash(&entry.0)
}

impl<V> IdMap<V> {
    /// An empty map (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Flat(t) => t.len(),
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
            Repr::Flat(t) => t.find(IdHash::hash(&key), |e| e.0 == key).map(|e| &e.1),
            Repr::Segmented(m) => m.get(&key),
        }
    }

    /// The value of `key`, inserted as `default()` if absent, and whether it was inserted now.
    #[inline]
    pub fn find_or_insert_with(&mut self, key: i64, default: impl FnOnce() -> V) -> (&mut V, bool) {
        let hash = IdHash::hash(&key);
        self.make_room(hash, key);
        match &mut self.repr {
            Repr::Flat(t) => match t.entry(hash, |e| e.0 == key, hash_of) {
                Entry::Occupied(o) => (&mut o.into_mut().1, false),
                Entry::Vacant(v) => (&mut v.insert((key, default())).into_mut().1, true),
            },
            Repr::Segmented(m) => m.find_or_insert_with(&key, default),
        }
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: i64, value: V) -> Option<V> {
        let hash = IdHash::hash(&key);
        self.make_room(hash, key);
        match &mut self.repr {
            Repr::Flat(t) => match t.entry(hash, |e| e.0 == key, hash_of) {
                Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, value)),
                Entry::Vacant(v) => {
                    v.insert((key, value));
                    None
                }
            },
            Repr::Segmented(m) => m.insert(key, value),
        }
    }

    /// Spills a full flat table before `key` (of hash `hash`) would be added past the limit.
    #[inline]
    fn make_room(&mut self, hash: u64, key: i64) {
        if let Repr::Flat(t) = &self.repr
            && t.len() >= FLAT_LIMIT
            && t.find(hash, |e| e.0 == key).is_none()
        {
            self.spill();
        }
    }

    /// Moves a full flat table into a `SegmentedMap`.
    #[cold]
    fn spill(&mut self) {
        if let Repr::Flat(t) = &mut self.repr {
            let segmented: SegmentedMap<i64, V, IdHash> = std::mem::take(t).into_iter().collect();
            self.repr = Repr::Segmented(Box::new(segmented));
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (i64, &V)> + '_> {
        match &self.repr {
            Repr::Flat(t) => Box::new(t.iter().map(|(k, v)| (*k, v))),
            Repr::Segmented(m) => Box::new(m.iter().map(|(k, v)| (*k, v))),
        }
    }
}

impl<V> Extend<(i64, V)> for IdMap<V> {
    fn extend<I: IntoIterator<Item = (i64, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V> FromIterator<(i64, V)> for IdMap<V> {
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
