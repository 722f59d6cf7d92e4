//! Fast, exactly specified arithmetic for the per-event hot path: division by
//! a run-time constant without `div`, and the log-uniform price without libm
//! (`exp` and `round` were a quarter of the bid cost on baseline x86-64).

/// Divides by a fixed `d ≥ 1` with one multiply-high and one correction step.
///
/// With `m = ⌊(2^64 − 1) / d⌋ ≥ 2^64/d − 1`, the estimate `⌊n·m / 2^64⌋`
/// is `⌊n/d⌋` or one less, so a single compare fixes it; results are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastDiv {
    d: u64,
    m: u64,
}

impl FastDiv {
    /// Divider for `d`; `d == 0` is treated as 1 (callers validate first).
    pub const fn new(d: u64) -> Self {
        let d = if d == 0 { 1 } else { d };
        FastDiv { d, m: u64::MAX / d }
    }

    /// The divisor.
    #[inline]
    pub const fn divisor(&self) -> u64 {
        self.d
    }

    /// `(n / d, n % d)`.
    #[inline]
    pub const fn div_rem(&self, n: u64) -> (u64, u64) {
        let q = ((n as u128 * self.m as u128) >> 64) as u64;
        let r = n - q * self.d;
        if r >= self.d {
            (q + 1, r - self.d)
        } else {
            (q, r)
        }
    }

    /// `n / d`.
    #[inline]
    pub const fn div(&self, n: u64) -> u64 {
        self.div_rem(n).0
    }
}

/// `2^(j/64)` for j in 0..64, correctly rounded.
const EXP2_64THS: [f64; 64] = [
    1.0,
    1.0108892860517005,
    1.0218971486541166,
    1.0330248790212284,
    1.0442737824274138,
    1.0556451783605572,
    1.0671404006768237,
    1.0787607977571199,
    1.0905077326652577,
    1.102382583307841,
    1.1143867425958924,
    1.1265216186082418,
    1.1387886347566916,
    1.1511892299529827,
    1.1637248587775775,
    1.1763969916502812,
    1.189207115002721,
    1.202156731452703,
    1.215247359980469,
    1.22848053610687,
    1.241857812073484,
    1.255380757024691,
    1.2690509571917332,
    1.2828700160787783,
    1.2968395546510096,
    1.3109612115247644,
    1.3252366431597413,
    1.339667524053303,
    1.3542555469368927,
    1.3690024229745905,
    1.383909881963832,
    1.3989796725383112,
    std::f64::consts::SQRT_2,
    1.42961333839197,
    1.4451808069770467,
    1.460917794180647,
    1.4768261459394993,
    1.4929077282912648,
    1.5091644275934228,
    1.5255981507445384,
    1.5422108254079407,
    1.559004400237837,
    1.5759808451078865,
    1.593142151342267,
    1.6104903319492543,
    1.6280274218573478,
    1.645755478153965,
    1.6636765803267364,
    1.681792830507429,
    1.7001063537185235,
    1.718619298122478,
    1.7373338352737062,
    1.7562521603732995,
    1.7753764925265212,
    1.7947090750031072,
    1.8142521755003989,
    1.8340080864093424,
    1.8539791250833855,
    1.8741676341103,
    1.8945759815869656,
    1.9152065613971474,
    1.9360617934922943,
    1.9571441241754002,
    1.978456026387951,
];

/// `6 · log2(10)`: 10^(6u) = 2^(6u·log2 10).
const SIX_LOG2_10: f64 = 19.931_568_569_324_174;

/// `10^(6u) · 100` for u in [0, 1): table of 2^(j/64) times a degree-5 Taylor
/// series of e^r for the remainder (r < ln2/64, truncation error < 3e-15
/// relative), times an exact power of two.
#[inline]
pub fn pow10_6u_times_100(u: f64) -> f64 {
    let scaled = u.clamp(0.0, 1.0) * (SIX_LOG2_10 * 64.0);
    let i = scaled as u32; // floor: scaled ≥ 0
    let r = (scaled - f64::from(i)) * (std::f64::consts::LN_2 / 64.0);
    let e_r = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0)))));
    let two_pow = (1u64 << (i >> 6)) as f64;
    100.0 * EXP2_64THS[(i & 63) as usize] * e_r * two_pow
}

/// `round(10^(6u) · 100)`, half away from zero: the spec's log-uniform price
/// in 100 … 10^8.
#[inline]
pub fn price_from_unit(u: f64) -> i64 {
    let v = pow10_6u_times_100(u);
    // v ≥ 100 > 0, so truncation is floor and v − t is exact.
    let t = v as i64;
    t + i64::from(v - t as f64 >= 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::rng::SplitMix64;
    use proptest::prelude::*;

    #[test]
    fn fast_div_edges() {
        for d in [
            1u64,
            2,
            3,
            7,
            50,
            1000,
            10_000_000,
            u64::MAX / 3,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let f = FastDiv::new(d);
            for n in [
                0,
                1,
                d - 1,
                d,
                d.wrapping_add(1),
                u64::MAX - 1,
                u64::MAX,
                u64::MAX / 2,
            ] {
                assert_eq!(f.div_rem(n), (n / d, n % d), "n={n} d={d}");
            }
        }
        assert_eq!(FastDiv::new(0).divisor(), 1);
    }

    proptest! {
        #[test]
        fn fast_div_is_exact(n in any::<u64>(), d in 1u64..) {
            prop_assert_eq!(FastDiv::new(d).div_rem(n), (n / d, n % d));
        }

        #[test]
        fn fast_div_small_divisors(n in any::<u64>(), d in 1u64..100_000) {
            prop_assert_eq!(FastDiv::new(d).div_rem(n), (n / d, n % d));
        }
    }

    #[test]
    fn exp2_table_is_accurate() {
        for (j, v) in EXP2_64THS.iter().enumerate() {
            let want = (j as f64 / 64.0).exp2();
            assert!((v / want - 1.0).abs() < 1e-15, "{j}");
        }
    }

    #[test]
    fn price_matches_libm_definition() {
        let mut rng = SplitMix64::new(3);
        let mut mismatches = 0;
        for _ in 0..1_000_000 {
            let u = rng.unit_f64();
            let want = 10f64.powf(6.0 * u) * 100.0;
            let got = pow10_6u_times_100(u);
            assert!((got / want - 1.0).abs() < 1e-13, "u={u}: {got} vs {want}");
            mismatches += i32::from(price_from_unit(u) != want.round() as i64);
        }
        assert!(mismatches <= 2, "{mismatches}");
        assert_eq!(price_from_unit(0.0), 100);
        assert_eq!(price_from_unit(0.5), 100_000);
        assert_eq!(price_from_unit(1.0 - f64::EPSILON / 2.0), 100_000_000);
        assert_eq!(price_from_unit(1.0 / 6.0), 1_000);
    }
}
