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

use crate::segmented::{IdHash, MapHash, SEGMENT_ENTRIES, SegmentedMap, table_seed};

/// The most entries a map holds flat: a full segment, so that spilling into a `SegmentedMap`
/// moves no more entries than one of its splits does, and the flat table (8192 slots at most)
/// grows by doublings of at most 1792 entries. (Measured for q16 at 3584: half of that made
/// q16 4% slower.) A map whose seeded fill limit is low spills earlier, when it would need
/// more than [`MAX_FLAT_SLOTS`] (at [`MIN_SPILL`] entries at the least).
pub const FLAT_LIMIT: usize = SEGMENT_ENTRIES;

/// The most slots a flat table has.
pub const MAX_FLAT_SLOTS: usize = 8192;

/// The lowest load limit of a flat table, `MIN_LOAD.0 / MIN_LOAD.1` (0.35); the highest is
/// twice that (see [`Flat::fill`]).
const MIN_LOAD: (usize, usize) = (7, 20);

/// The fewest entries at which a flat table spills: [`MAX_FLAT_SLOTS`] at the lowest load
/// limit.
pub const MIN_SPILL: usize = MAX_FLAT_SLOTS * MIN_LOAD.0 / MIN_LOAD.1;

/// The key that marks a free slot of a flat table; its own value is kept beside the slots.
const FREE: i64 = i64::MIN;

/// The fewest slots of an allocated flat table.
const MIN_SLOTS: usize = 16;

/// A small map as one slot array: linear probing from the key's `IdHash`, at most 0.7 full
/// (at half full a miss probes about 2.5 slots, a hit 1.5: mostly one cache line of four
/// 16-byte slots).
///
/// How full a table gets before it doubles is seeded per map, between 0.35 and 0.7 of its
/// slots ([`Flat::fill`]; a miss then probes 1.8–6 slots). Why: q16 keeps two sets per
/// channel and day, ~20 000, and half the bids spread evenly over 10 000 channels, so those
/// sets grow at the same rate. With one load limit they all doubled within a few per cent of
/// each other's inserts: at 2.4 s of a q16 run at half its maximum rate, 20 000 tables of 512
/// slots doubled to 1024 (by count, about 320 MB faulted in), a burst that backed the shards
/// up by 70–110 ms. Limits spread over a factor of two spread the doublings evenly over the
/// growth.
#[derive(Clone)]
struct Flat<V> {
    /// A power of two many slots (or none); free ones hold the key `FREE`.
    slots: Vec<(i64, V)>,
    /// Entries, counting `free_key`'s.
    len: usize,
    /// The value of the key `FREE` itself, if it is in the map.
    free_key: Option<V>,
    /// The table doubles before it is more than `0.35 · (255 + fill) / 255` full: between
    /// 0.35 (`fill` 0) and 0.7 (255), one octave, so tables fed alike double anywhere in
    /// it, and on average about half full, as with one fixed limit of a half.
    fill: u8,
}

impl<V> Default for Flat<V> {
    fn default() -> Self {
        Flat {
            slots: Vec::new(),
            len: 0,
            free_key: None,
            fill: (table_seed() >> 56) as u8,
        }
    }
}

impl<V: Default> Flat<V> {
    /// Where `key` (not `FREE`) is: `Ok(slot)`, or `Err(free slot)` where it would go.
    /// Terminates: the table is at most 0.7 full, so a free slot follows every run.
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
        let i = match self.probe(key, hash) {
            Ok(i) => return (&mut self.slots[i].1, false),
            Err(_) if self.must_grow() => {
                self.grow();
                // Absent before, so absent now.
                self.probe(key, hash).unwrap_or_else(|free| free)
            }
            Err(free) => free,
        };
        self.len += 1;
        // In range: `probe` masks the index by the slot count, and there are slots now.
        let slot = &mut self.slots[i];
        *slot = (key, default());
        (&mut slot.1, true)
    }

    /// True if one more entry would fill the table past its load limit (or it has no slots).
    #[inline]
    fn must_grow(&self) -> bool {
        // len + 1 > slots · MIN_LOAD · (255 + fill) / 255, in integers.
        (self.len + 1) * MIN_LOAD.1 * 255
            > self.slots.len() * MIN_LOAD.0 * (255 + usize::from(self.fill))
    }

    /// True if one more entry would need more than [`MAX_FLAT_SLOTS`] slots.
    #[inline]
    fn at_capacity(&self) -> bool {
        self.len >= FLAT_LIMIT || (self.slots.len() >= MAX_FLAT_SLOTS && self.must_grow())
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
            && t.at_capacity()
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
            // Where it spills depends on the map's seeded fill limit.
            if model.len() > FLAT_LIMIT {
                prop_assert!(map.is_segmented());
            }
            if model.len() <= MIN_SPILL {
                prop_assert!(!map.is_segmented());
            }
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
    /// An empty map whose flat table doubles at `fill` (see [`Flat::fill`]).
    fn with_fill<V: Default>(fill: u8) -> IdMap<V> {
        let mut map = IdMap::new();
        if let Repr::Flat(t) = &mut map.repr {
            t.fill = fill;
        }
        map
    }

    fn slots<V>(map: &IdMap<V>) -> usize {
        match &map.repr {
            Repr::Flat(t) => t.slots.len(),
            Repr::Segmented(_) => usize::MAX,
        }
    }

    #[test]
    fn spills_past_the_flat_limit() {
        let mut map = with_fill(u8::MAX);
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

    /// A map that doubles at 0.35 full would need 16 384 slots past 2867 entries: it spills
    /// there instead.
    #[test]
    fn a_map_with_a_low_fill_limit_spills_at_the_slot_cap() {
        let mut map = with_fill(0);
        for k in 0..MIN_SPILL as i64 {
            map.insert(k, k);
        }
        assert!(!map.is_segmented());
        assert_eq!(slots(&map), MAX_FLAT_SLOTS);
        map.insert(-5, 0);
        assert!(map.is_segmented());
        assert!((0..MIN_SPILL as i64).all(|k| map.get(k) == Some(&k)));
    }

    /// Maps fed at the same rate double at different sizes, spread over the octave between
    /// 0.35 and 0.7 of their slots. With one load limit (half) all 512 maps here would double
    /// from 512 to 1024 slots at the same insert.
    #[test]
    fn maps_growing_side_by_side_double_at_spread_sizes() {
        let mut maps: Vec<IdMap<u8>> = (0..512).map(|_| IdMap::new()).collect();
        let mut doubled_at = vec![0usize; maps.len()];
        for n in 0..400i64 {
            for (map, at) in maps.iter_mut().zip(&mut doubled_at) {
                let before = slots(map);
                map.insert(n * 8 + 3, 1);
                if before == 512 && slots(map) == 1024 {
                    *at = map.len();
                }
            }
        }
        // 512 · 0.35 = 179.2 and 512 · 0.7 = 358.4.
        assert!(
            doubled_at.iter().all(|&at| (179..=359).contains(&at)),
            "{doubled_at:?}"
        );
        // Eight bins over 179..359: 64 maps each if uniform.
        let mut bins = [0usize; 8];
        for &at in &doubled_at {
            bins[((at - 179) * 8 / 181).min(7)] += 1;
        }
        assert!(bins.iter().all(|&b| (24..=110).contains(&b)), "{bins:?}");
    }
}
