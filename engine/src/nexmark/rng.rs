//! splitmix64: a tiny, fast generator whose whole state is one u64, so every
//! event can seed its own stream from (seed, n) and events do not depend on
//! which shard, or in which order, they are generated.

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output function (a bijection on u64), also used to mix
/// the seed with the event number.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64 generator (Steele, Lea, Flood 2014).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `state`.
    #[inline]
    pub fn new(state: u64) -> Self {
        SplitMix64 { state }
    }

    /// The stream of event `n` for a seed already passed through [`seed_key`].
    /// `n * GOLDEN_GAMMA` (odd multiplier) and `mix64` are bijections, so two
    /// event numbers never share a starting state.
    #[inline]
    pub fn for_event(seed_key: u64, n: u64) -> Self {
        SplitMix64::new(mix64(seed_key ^ n.wrapping_mul(GOLDEN_GAMMA)))
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, bound)` by multiply-high (Lemire) without rejection:
    /// one draw per value keeps the draw order fixed; the bias (< bound / 2^64)
    /// is far below anything measurable. Returns 0 for `bound == 0`.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Derives the per-seed key that [`SplitMix64::for_event`] mixes with `n`.
#[inline]
pub fn seed_key(seed: u64) -> u64 {
    mix64(seed ^ 0x6E65_786D_6172_6B21) // "nexmark!"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference output of splitmix64 seeded with 0 (from the original C code).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(42);
        let mut seen = [0u32; 13];
        for _ in 0..13_000 {
            let v = r.below(13) as usize;
            assert!(v < 13);
            seen[v] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn unit_is_in_unit_interval() {
        let mut r = SplitMix64::new(7);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let u = r.unit_f64();
            assert!((0.0..1.0).contains(&u));
            sum += u;
        }
        assert!((sum / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn event_streams_differ() {
        let k = seed_key(1);
        let a = SplitMix64::for_event(k, 0).next_u64();
        let b = SplitMix64::for_event(k, 1).next_u64();
        let c = SplitMix64::for_event(seed_key(2), 0).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, SplitMix64::for_event(k, 0).next_u64());
    }
}
