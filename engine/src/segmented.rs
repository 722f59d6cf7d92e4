//! A hash map that grows without stopping the world: extendible hashing over small segments.
//!
//! A `HashMap` doubles its table when full and moves every entry at once: for an operator
//! holding millions of keys (deduplication, top-N, unbounded group-by, join rows) one insert
//! then stalls the shard for tens to hundreds of milliseconds, which is the p99.9 of every
//! record queued behind it. Here the map is a directory of segments, each a small hash table of
//! at most [`SEGMENT_ENTRIES`] entries (fewer if they are large, [`segment_entries`]). A full
//! segment splits in two by one more hash bit (the directory doubles when a segment is as deep
//! as it), so the most any insert moves is one segment: a bounded pause, whatever the map's
//! size. Lookups cost one directory index more than a `HashMap`'s.
//!
//! The segment is chosen by hash bits `SELECT_SHIFT..`, clear of the bits the segment's table
//! uses itself (the low bits pick a bucket, the top seven tag it), so entries of one segment
//! still spread over all its buckets and tags.
//!
//! How keys hash is a type parameter ([`MapHash`]): by default the engine's stable scattering
//! hash; [`IdHash`] keeps runs of consecutive integer ids on neighbouring buckets, for sets of
//! ids whose lookups cluster on recent ids (see its docs).

use std::hash::Hash;
use std::marker::PhantomData;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::key::hash_key;

/// The most entries a segment holds before it splits (each splits at its own size between
/// half of this and this, see [`split_limit`]). A segment's table has 4096 buckets (7/8 load at
/// the cap), so a split moves at most this many entries and allocates at most one fresh table
/// (the other half reuses the previous split's emptied table).
///
/// Why this size: a split stops the shard while it moves a segment and faults in a fresh
/// table, and q18's map splits every few ms while it grows. At 7168, q18's p99 stayed near
/// 1 ms at 2 cores whether the input came at 3.5 or 4.35 M events/s (stalls, not queueing);
/// at 3584 each stall is half as long (p99 median of 6 runs 1232 → 920 µs at 4 M/s), and
/// throughput was no worse (q18 and q9 +6% at 2 cores).
///
/// That is the cap for entries of up to 64 bytes; larger ones get fewer, see
/// [`segment_entries`].
pub const SEGMENT_ENTRIES: usize = 3584;

/// The most bytes of entries a segment's table holds (its buckets times the entry size).
///
/// Why: what a split costs is mostly faulting in the fresh table, and every bucket's page gets
/// touched (entries land all over it), so the pause grows with the table's bytes, not its
/// entries. q18 keeps a whole bid per (bidder, auction), 104-byte entries: at 4096 buckets a
/// fresh table was 426 KB. Halving its segments (2048 buckets, 213 KB) took q18's p99 at half
/// its maximum from 592 to 380 µs (4 of 4 interleaved rounds lower) at 0.98 of its
/// throughput; maps of small entries (q16's id sets, 16 bytes) keep 4096 buckets, where
/// halving cost q16 4%.
pub const SEGMENT_BYTES: usize = 256 << 10;

/// Bucket counts a segment's table may have: a power of two in this range.
const MIN_BUCKETS: usize = 256;
const MAX_BUCKETS: usize = 4096;

/// The most entries a segment of `entry_bytes`-byte entries holds: 7/8 of the most buckets
/// (a power of two, [`MIN_BUCKETS`]..=[`MAX_BUCKETS`]) whose bytes fit [`SEGMENT_BYTES`], the
/// load at which hashbrown's table is full at that many buckets (so a segment never grows
/// its table before it splits). [`SEGMENT_ENTRIES`] for entries of up to 64 bytes, 1792 for
/// up to 128.
pub const fn segment_entries(entry_bytes: usize) -> usize {
    let fit = SEGMENT_BYTES / if entry_bytes == 0 { 1 } else { entry_bytes };
    let mut buckets = MAX_BUCKETS;
    while buckets > MIN_BUCKETS && buckets > fit {
        buckets /= 2;
    }
    buckets / 8 * 7
}

/// Where the segment-selecting bits of a key's hash start.
const SELECT_SHIFT: u32 = 20;
/// The deepest the directory goes: 2^24 segments (above that, segments just grow).
const MAX_DEPTH: u32 = 24;

/// How a [`SegmentedMap`] hashes its keys. The hash picks the segment (bits `SELECT_SHIFT..`),
/// the bucket (low bits) and the tag (top seven bits), so all three ranges must be well mixed.
pub trait MapHash<K: ?Sized> {
    /// The hash of `key`.
    fn hash(key: &K) -> u64;
}

/// The default: the engine's stable hash ([`hash_key`]), which scatters neighbouring keys
/// over the whole table.
#[derive(Clone, Copy, Debug, Default)]
pub struct StableHash;

impl<K: Hash + ?Sized> MapHash<K> for StableHash {
    #[inline]
    fn hash(key: &K) -> u64 {
        hash_key(key)
    }
}

pub use crate::key::ID_RUN_BITS;

/// A locality-preserving hash for `i64` ids: the ids of one aligned run of
/// `2^ID_RUN_BITS` (8) consecutive values land on 8 neighbouring buckets (two cache lines of
/// 16-byte entries, 8 control bytes), while the runs themselves scatter as with a mixing hash.
///
/// Why: q16's distinct sets are probed with recent ids (bidders among the newest ~1000
/// persons, auctions among the newest ~100), which a scattering hash puts on as many random
/// cache lines as there are ids — every probe of a large set missed the cache. Kept in runs,
/// the recent ids of a set occupy an eighth of the lines and stay cached.
///
/// Safe against strided ids: the run number is mixed (murmur3's finaliser) into every bit, and
/// the low bits are the id's position in its run XOR the mixed run's low bits — a permutation
/// inside the run (locality kept) that differs from run to run, so ids with any stride
/// (multiples of 8, say, all at position 0) still spread over all buckets. The top bits
/// (the bucket's tag) also take the position, so the ids of one run have different tags.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHash;

impl MapHash<i64> for IdHash {
    #[inline]
    fn hash(key: &i64) -> u64 {
        crate::key::id_hash(*key as u64)
    }
}

/// One segment: the keys whose hash ends (above `SELECT_SHIFT`) in the segment's `depth` bits.
#[derive(Clone)]
struct Segment<K, V> {
    depth: u32,
    /// The segment's `depth` selecting bits (the hash bits above `SELECT_SHIFT` its keys share).
    prefix: u64,
    /// Entries at which this segment splits: between half and all of the map's cap
    /// ([`segment_entries`]), spread by [`split_limit`] so that segments do not all fill up
    /// at once.
    limit: usize,
    table: HashTable<(K, V)>,
}

/// The size at which the segment of hash bits `prefix` (its `depth` selecting bits) splits:
/// spread evenly over `cap / 2 ..= cap` (`cap` from [`segment_entries`]) by a hash of the
/// segment's place.
///
/// Why: keys hash uniformly, so segments of one depth hold about the same number of entries.
/// With one fixed limit they all reach it within a few per cent of each other's inserts — a
/// wave in which every segment of the map splits, i.e. the whole table moved in a burst just
/// like a `HashMap` doubling, only cut into pieces (q18's p99 of several ms). With limits
/// spread uniformly over [C/2, C], the depth-d segments split while the map grows from
/// 2^d·C/2 to 2^d·C entries, evenly over that range, and their halves (limit ≥ C/2, holding
/// ≤ C/2) only from 2^d·C on: about one split per C/2 inserts at every size.
///
/// The map's `seed` takes part too: maps that grow side by side (q16 keeps a set per channel,
/// thousands of them fed at the same rate) would otherwise split their segments in the same
/// waves, each map's segments at the same sizes as every other's.
#[inline]
fn split_limit(cap: usize, seed: u64, prefix: u64, depth: u32) -> usize {
    // A murmur3 finaliser over the segment's place: neighbouring prefixes get unrelated limits.
    let mut h = prefix ^ (u64::from(depth) << 32) ^ seed;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let half = cap / 2;
    half + (h % (half as u64 + 1)) as usize
}

/// A seed for a new growing table, different for each table a thread makes: a Weyl sequence
/// (the golden ratio's steps around `u64`), whose top bits spread evenly over their range
/// for any number of consecutive draws.
///
/// Why: tables that grow at the same rate must not all resize at the same moment. Their
/// sizes at the time differ only by the noise in their inputs, so one fixed resize point
/// makes every table resize within a few per cent of each other: thousands of fresh tables
/// allocated and faulted in at once. Seeded resize points spread the resizes over the
/// growth (`SegmentedMap` splits, `IdMap` doublings and spills). Per thread, so a shard's
/// sequence depends only on what that shard did, and no atomic is touched.
pub(crate) fn table_seed() -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0x243f_6a88_85a3_08d3) };
    }
    NEXT.with(|next| {
        let seed = next.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        next.set(seed);
        seed
    })
}

/// A hash map of keys to values whose inserts never move more than one segment's entries
/// (see the module docs). Iteration order is unspecified, as a `HashMap`'s.
pub struct SegmentedMap<K, V, H = StableHash> {
    /// Segment index for each value of the hash's `depth` selecting bits.
    directory: Vec<u32>,
    depth: u32,
    segments: Vec<Segment<K, V>>,
    len: usize,
    /// The emptied table of the last split, reused as a half of the next: its pages are
    /// already faulted in. Dropping it instead let the allocator give the pages back
    /// (`madvise`/`munmap`) and the next split fault them in again — page faults were most
    /// of a split's time.
    spare: Option<HashTable<(K, V)>>,
    /// Spreads this map's split sizes apart from other maps' ([`split_limit`]).
    seed: u64,
    hasher: PhantomData<H>,
}

impl<K: Clone, V: Clone, H> Clone for SegmentedMap<K, V, H> {
    fn clone(&self) -> Self {
        SegmentedMap {
            directory: self.directory.clone(),
            depth: self.depth,
            segments: self.segments.clone(),
            len: self.len,
            spare: self.spare.clone(),
            seed: self.seed,
            hasher: PhantomData,
        }
    }
}

impl<K, V, H> SegmentedMap<K, V, H> {
    /// The most entries one of this map's segments holds ([`segment_entries`] of its entry
    /// size).
    pub const CAP: usize = segment_entries(std::mem::size_of::<(K, V)>());
}

impl<K, V, H> Default for SegmentedMap<K, V, H> {
    fn default() -> Self {
        let seed = table_seed();
        SegmentedMap {
            directory: vec![0],
            depth: 0,
            segments: vec![Segment {
                depth: 0,
                prefix: 0,
                limit: split_limit(Self::CAP, seed, 0, 0),
                table: HashTable::new(),
            }],
            len: 0,
            spare: None,
            seed,
            hasher: PhantomData,
        }
    }
}

#[inline]
fn hash_of<K, V, H: MapHash<K>>(entry: &(K, V)) -> u64 {
    H::hash(&entry.0)
}

impl<K: Hash + Eq, V> SegmentedMap<K, V> {
    /// An empty map with the default hash (one empty segment, two tiny allocations).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K: Eq, V, H: MapHash<K>> SegmentedMap<K, V, H> {
    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn segment_of(&self, hash: u64) -> usize {
        let mask = (1u64 << self.depth) - 1;
        self.directory[((hash >> SELECT_SHIFT) & mask) as usize] as usize
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let hash = H::hash(key);
        self.segments[self.segment_of(hash)]
            .table
            .find(hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The value of `key`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let hash = H::hash(key);
        let s = self.segment_of(hash);
        self.segments[s]
            .table
            .find_mut(hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True if `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// The segment `hash` belongs to, split first if it is full (so an insert into it moves
    /// at most one segment's entries: the split, or the table's own growth below the cap).
    #[inline]
    fn segment_for_insert(&mut self, hash: u64) -> usize {
        let mut s = self.segment_of(hash);
        while self.segments[s].table.len() >= self.segments[s].limit
            && self.segments[s].depth < MAX_DEPTH
        {
            self.split(s);
            s = self.segment_of(hash);
        }
        s
    }

    /// Splits segment `s` by its next selecting bit: entries with the bit set move to a new
    /// segment, and the directory slots with the bit set point there.
    #[cold]
    fn split(&mut self, s: usize) {
        let depth = self.segments[s].depth;
        let prefix = self.segments[s].prefix;
        if depth == self.depth {
            // Double the directory: slot i and i + 2^depth share a segment until it splits.
            self.directory.extend_from_within(..);
            self.depth += 1;
        }
        let bit = 1u64 << depth;
        // Both halves into empty tables (removing in place would leave tombstones that make
        // the kept half's table grow past the cap), each with room for its own limit so it
        // never grows before it splits; the lower one is the last split's emptied table.
        let (lower_limit, upper_limit) = (
            split_limit(Self::CAP, self.seed, prefix, depth + 1),
            split_limit(Self::CAP, self.seed, prefix | bit, depth + 1),
        );
        let mut lower = match self.spare.take() {
            Some(mut spare) => {
                spare.reserve(lower_limit, hash_of::<K, V, H>);
                spare
            }
            None => HashTable::with_capacity(lower_limit),
        };
        let mut upper = HashTable::with_capacity(upper_limit);
        let mut old = std::mem::take(&mut self.segments[s].table);
        for (k, v) in old.drain() {
            let hash = H::hash(&k);
            let side = if (hash >> SELECT_SHIFT) & bit != 0 {
                &mut upper
            } else {
                &mut lower
            };
            side.insert_unique(hash, (k, v), hash_of::<K, V, H>);
        }
        self.spare = Some(old);
        self.segments[s] = Segment {
            depth: depth + 1,
            prefix,
            limit: lower_limit,
            table: lower,
        };
        let new = u32::try_from(self.segments.len()).unwrap_or(u32::MAX);
        self.segments.push(Segment {
            depth: depth + 1,
            prefix: prefix | bit,
            limit: upper_limit,
            table: upper,
        });
        for (slot, target) in self.directory.iter_mut().enumerate() {
            if *target as usize == s && (slot as u64) & bit != 0 {
                *target = new;
            }
        }
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = H::hash(&key);
        let s = self.segment_for_insert(hash);
        match self.segments[s]
            .table
            .entry(hash, |(k, _)| *k == key, hash_of::<K, V, H>)
        {
            Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, value)),
            Entry::Vacant(v) => {
                v.insert((key, value));
                self.len += 1;
                None
            }
        }
    }

    /// The value of `key`, inserted as `default()` (with a clone of the key) if absent: a
    /// `HashMap`'s `entry(key.clone()).or_insert_with(default)` without cloning the key of a
    /// present entry.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &K, default: impl FnOnce() -> V) -> &mut V
    where
        K: Clone,
    {
        self.find_or_insert_with(key, default).0
    }

    /// Like [`Self::get_or_insert_with`], also telling whether the value was inserted now.
    #[inline]
    pub fn find_or_insert_with(&mut self, key: &K, default: impl FnOnce() -> V) -> (&mut V, bool)
    where
        K: Clone,
    {
        let hash = H::hash(key);
        let s = self.segment_for_insert(hash);
        match self.segments[s]
            .table
            .entry(hash, |(k, _)| k == key, hash_of::<K, V, H>)
        {
            Entry::Occupied(o) => (&mut o.into_mut().1, false),
            Entry::Vacant(v) => {
                self.len += 1;
                (&mut v.insert((key.clone(), default())).into_mut().1, true)
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let hash = H::hash(key);
        let s = self.segment_of(hash);
        let (_, v) = self.segments[s]
            .table
            .find_entry(hash, |(k, _)| k == key)
            .ok()?
            .remove()
            .0;
        self.len -= 1;
        Some(v)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut len = 0;
        for segment in &mut self.segments {
            segment.table.retain(|(k, v)| keep(k, v));
            len += segment.table.len();
        }
        self.len = len;
    }

    /// Removes every entry (segments keep their tables' memory).
    pub fn clear(&mut self) {
        for segment in &mut self.segments {
            segment.table.clear();
        }
        self.len = 0;
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.segments
            .iter()
            .flat_map(|s| s.table.iter().map(|(k, v)| (k, v)))
    }

    /// Every entry with its value mutable, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.segments
            .iter_mut()
            .flat_map(|s| s.table.iter_mut().map(|(k, v)| (&*k, v)))
    }

    /// The number of segments (for tests and diagnostics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

impl<'m, K: Eq, V, H: MapHash<K>> IntoIterator for &'m SegmentedMap<K, V, H> {
    type Item = (&'m K, &'m V);
    type IntoIter = Box<dyn Iterator<Item = (&'m K, &'m V)> + 'm>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl<K: Eq, V, H: MapHash<K>> Extend<(K, V)> for SegmentedMap<K, V, H> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Eq, V, H: MapHash<K>> FromIterator<(K, V)> for SegmentedMap<K, V, H> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SegmentedMap::default();
        map.extend(iter);
        map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Upsert(u32, u32),
        Remove(u32),
        Retain(u32),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Keys from a range wide enough to split many segments, with repeats.
        let key = 0u32..40_000;
        prop::collection::vec(
            prop_oneof![
                6 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
                3 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Upsert(k, v)),
                2 => key.prop_map(Op::Remove),
                1 => (2u32..7).prop_map(Op::Retain),
            ],
            1..30_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Any sequence of inserts, upserts, removes and retains leaves the map equal to a
        /// `BTreeMap` model: same length, same entries, every key found or not as the model.
        #[test]
        fn behaves_like_a_btree_map(ops in ops()) {
            let mut map: SegmentedMap<u32, u32> = SegmentedMap::new();
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Upsert(k, v) => {
                        *map.get_or_insert_with(&k, || 0) += v % 1000;
                        *model.entry(k).or_insert(0) += v % 1000;
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::Retain(m) => {
                        map.retain(|k, _| k % m != 0);
                        model.retain(|k, _| k % m != 0);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let mut entries: Vec<(u32, u32)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            entries.sort_unstable();
            prop_assert_eq!(entries, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            for k in (0..40_000).step_by(7) {
                prop_assert_eq!(map.get(&k), model.get(&k));
            }
        }
    }

    /// Keys of the kinds an id map must handle: dense ids, power-of-two strides (every id at
    /// the same position of its run), negative and extreme values.
    fn id_key() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => 0i64..20_000,
            2 => (0i64..20_000).prop_map(|k| k * 8),
            1 => (0i64..20_000).prop_map(|k| k << 24),
            1 => (0i64..20_000).prop_map(|k| -k * 4096),
            1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1i64)],
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// With the locality-preserving `IdHash` the map still behaves like a `BTreeMap`,
        /// across splits, for dense and strided ids alike.
        #[test]
        fn with_id_hash_behaves_like_a_btree_map(
            ops in prop::collection::vec((id_key(), any::<u32>(), 0u8..8), 1..30_000)
        ) {
            let mut map: SegmentedMap<i64, u32, IdHash> = SegmentedMap::default();
            let mut model: BTreeMap<i64, u32> = BTreeMap::new();
            for (k, v, op) in ops {
                match op {
                    0..=4 => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    5 | 6 => {
                        let (slot, new) = map.find_or_insert_with(&k, || 0);
                        prop_assert_eq!(new, !model.contains_key(&k));
                        *slot = slot.wrapping_add(v);
                        let m = model.entry(k).or_insert(0);
                        *m = m.wrapping_add(v);
                    }
                    _ => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let mut entries: Vec<(i64, u32)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            entries.sort_unstable();
            prop_assert_eq!(entries, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            for k in (0..20_000).chain((0..20_000).map(|k| k * 8)) {
                prop_assert_eq!(map.get(&k), model.get(&k));
            }
        }
    }

    /// The ids of one aligned run land on the buckets of one aligned run, all different, in a
    /// table of any size: the locality `IdHash` exists for.
    #[test]
    fn id_hash_keeps_runs_on_neighbouring_buckets() {
        let run = 1i64 << ID_RUN_BITS;
        for mask in [(1u64 << 3) - 1, (1 << 7) - 1, (1 << 12) - 1] {
            for start in [0i64, 8, 4096, 1 << 40, -64] {
                let buckets: Vec<u64> = (start..start + run)
                    .map(|k| IdHash::hash(&k) & mask)
                    .collect();
                let block = buckets[0] >> ID_RUN_BITS;
                assert!(
                    buckets.iter().all(|b| b >> ID_RUN_BITS == block),
                    "{buckets:?}"
                );
                let mut distinct = buckets.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), buckets.len(), "{buckets:?}");
            }
        }
    }

    /// Strided ids still use every bucket, segment and tag about evenly: 4096 ids into 4096
    /// buckets fill about 1 - 1/e of them whatever the stride (a hash that kept the id's low
    /// bits would put stride-8 ids on an eighth of the buckets).
    #[test]
    fn id_hash_spreads_strided_ids() {
        for stride in [1i64, 3, 8, 64, 1 << 10, 1 << 20, 1 << 40, -8] {
            let hashes: Vec<u64> = (0..4096i64).map(|i| IdHash::hash(&(i * stride))).collect();
            let distinct = |f: &dyn Fn(u64) -> u64| {
                let mut seen: Vec<u64> = hashes.iter().map(|&h| f(h)).collect();
                seen.sort_unstable();
                seen.dedup();
                seen.len()
            };
            // About 2589 (1 - 1/e of 4096) for a uniform hash.
            let buckets = distinct(&|h| h & 4095);
            assert!(buckets > 2300, "stride {stride}: {buckets} buckets");
            // 256 for 4096 runs; for stride 1 (512 runs) about 221.
            let segments = distinct(&|h| (h >> SELECT_SHIFT) & 255);
            assert!(segments > 200, "stride {stride}: {segments} segments");
            let tags = distinct(&|h| h >> 57);
            assert_eq!(tags, 128, "stride {stride}");
        }
    }

    /// Splits come evenly as the map grows, not in waves: keys hash uniformly, so with one
    /// fixed limit all segments of a depth fill up within a few per cent of each other and
    /// split back to back (all 64 of depth 6 within 8 segments' worth of inserts), which
    /// queued every record behind them. With spread limits about one segment splits per
    /// `SEGMENT_ENTRIES / 2` inserts at every size.
    #[test]
    fn splits_are_spread_over_the_growth() {
        let window = 4 * SEGMENT_ENTRIES;
        let mut map = SegmentedMap::new();
        let mut counts = Vec::new();
        for k in 0..(96 * SEGMENT_ENTRIES) as u64 {
            if (k as usize).is_multiple_of(window) {
                counts.push(map.segment_count());
            }
            map.insert(k, ());
        }
        let most = counts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        // Eight expected per window; a fixed limit puts about 30 into one.
        assert!(most <= 20, "{most} splits in {window} inserts: {counts:?}");
    }

    /// Maps fed side by side split their first segment at different sizes: one split limit
    /// for all of them (the segment's place alone) would make them all split at one insert.
    #[test]
    fn maps_growing_side_by_side_split_at_spread_sizes() {
        let mut maps: Vec<SegmentedMap<u64, ()>> = (0..256).map(|_| SegmentedMap::new()).collect();
        let mut split_at = vec![0usize; maps.len()];
        for k in 0..SEGMENT_ENTRIES as u64 + 1 {
            for (map, at) in maps.iter_mut().zip(&mut split_at) {
                map.insert(k, ());
                if *at == 0 && map.segment_count() > 1 {
                    *at = map.len();
                }
            }
        }
        let half = SEGMENT_ENTRIES / 2;
        assert!(
            split_at
                .iter()
                .all(|&at| (half..=SEGMENT_ENTRIES + 1).contains(&at))
        );
        // Eight bins over [C/2, C]: 32 maps each if uniform.
        let mut bins = [0usize; 8];
        for &at in &split_at {
            bins[((at - half) * 8 / (half + 1)).min(7)] += 1;
        }
        assert!(bins.iter().all(|&b| (12..=60).contains(&b)), "{bins:?}");
    }

    /// Large entries get smaller segments: a table of at most `SEGMENT_BYTES`.
    #[test]
    fn segments_of_large_entries_stay_within_the_byte_budget() {
        assert_eq!(segment_entries(16), SEGMENT_ENTRIES);
        assert_eq!(segment_entries(64), SEGMENT_ENTRIES);
        assert_eq!(segment_entries(104), 1792);
        assert_eq!(segment_entries(1 << 20), MIN_BUCKETS / 8 * 7);
        assert_eq!(segment_entries(0), SEGMENT_ENTRIES);
        type Big = [u64; 13];
        let mut map: SegmentedMap<u64, Big> = SegmentedMap::new();
        assert_eq!(SegmentedMap::<u64, Big>::CAP, 1792);
        for k in 0..50_000u64 {
            map.insert(k, [k; 13]);
        }
        for segment in &map.segments {
            assert!(segment.table.len() <= 1792, "{}", segment.table.len());
            assert!(
                segment.table.num_buckets() * std::mem::size_of::<(u64, Big)>() <= SEGMENT_BYTES,
                "{} buckets",
                segment.table.num_buckets()
            );
        }
        assert!((0..50_000u64).all(|k| map.get(&k) == Some(&[k; 13])));
    }

    /// A large map is many segments, none above the cap: an insert never moves more.
    #[test]
    fn segments_stay_bounded_as_the_map_grows() {
        let mut map = SegmentedMap::new();
        for k in 0..300_000u64 {
            map.insert(k, k);
        }
        assert_eq!(map.len(), 300_000);
        assert!(map.segment_count() >= 300_000 / SEGMENT_ENTRIES);
        for segment in &map.segments {
            assert!(
                segment.table.len() <= SEGMENT_ENTRIES,
                "{}",
                segment.table.len()
            );
            assert!(segment.table.num_buckets() <= 4096);
        }
        assert!((0..300_000u64).all(|k| map.get(&k) == Some(&k)));
        assert_eq!(map.get(&300_000), None);
    }
}
