//! Bloom filter per SSTable: lets point reads and `readmissing` skip tables
//! without touching disk. Double hashing over one stable 64-bit hash (the
//! hash is part of the on-disk format, so it cannot be `std`'s hasher).

/// Stable 64-bit key hash (FNV-1a + splitmix64 finalizer).
pub(crate) fn hash64(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A built or decoded filter.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    bits: Vec<u8>,
    k: u8,
}

impl Bloom {
    /// Builds a filter over key hashes with `bits_per_key` bits each.
    pub(crate) fn build(hashes: &[u64], bits_per_key: usize) -> Bloom {
        let nbits = (hashes.len() * bits_per_key).max(64);
        let nbytes = nbits.div_ceil(8);
        let nbits = nbytes * 8;
        let k = ((bits_per_key as f64 * 0.69).round() as u8).clamp(1, 30);
        let mut bits = vec![0u8; nbytes];
        for &h in hashes {
            let (mut a, d) = (h as u32, ((h >> 32) as u32) | 1);
            for _ in 0..k {
                let bit = a as usize % nbits;
                bits[bit / 8] |= 1 << (bit % 8);
                a = a.wrapping_add(d);
            }
        }
        Bloom { bits, k }
    }

    /// False means the key is definitely absent.
    pub(crate) fn may_contain(&self, h: u64) -> bool {
        let nbits = self.bits.len() * 8;
        if nbits == 0 {
            return true;
        }
        let (mut a, d) = (h as u32, ((h >> 32) as u32) | 1);
        for _ in 0..self.k {
            let bit = a as usize % nbits;
            if self.bits[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            a = a.wrapping_add(d);
        }
        true
    }

    /// Layout: bit array, then one byte `k`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bits);
        out.push(self.k);
    }

    pub(crate) fn decode(buf: &[u8]) -> Option<Bloom> {
        let (&k, bits) = buf.split_last()?;
        (1..=30).contains(&k).then(|| Bloom {
            bits: bits.to_vec(),
            k,
        })
    }

    /// Heap bytes held, for memory accounting.
    pub(crate) fn size(&self) -> usize {
        self.bits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_positive_rate_near_target() {
        let keys: Vec<u64> = (0..10_000u32).map(|i| hash64(&i.to_be_bytes())).collect();
        let bloom = Bloom::build(&keys, 10);
        for &h in &keys {
            assert!(bloom.may_contain(h));
        }
        let fp = (10_000..110_000u32)
            .filter(|i| bloom.may_contain(hash64(&i.to_be_bytes())))
            .count();
        let rate = fp as f64 / 100_000.0;
        // Theory for 10 bits/key, k=7: ~0.82%.
        assert!(rate < 0.02, "fp rate {rate}");
        let mut enc = Vec::new();
        bloom.encode(&mut enc);
        let back = Bloom::decode(&enc).unwrap();
        assert!(keys.iter().all(|&h| back.may_contain(h)));
        assert!(Bloom::decode(&[]).is_none());
    }
}
