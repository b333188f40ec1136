//! Which object a request reads: uniform, or Zipf(s) over the object ranks.
//!
//! Zipf(s) over `n` objects gives rank `k` (0-based: object `k`) the weight `1 / (k + 1)^s`, so
//! object 0 is the hottest. Sampling precomputes the normalised CDF once (`8 n` bytes) and draws
//! with one uniform number and a binary search: O(log n) per request, exact for any `s ≥ 0`
//! (`s = 0` is uniform; `s` near 1 is the classic skew of file-system block reads).

use rand::Rng;

/// How requests choose an object among `0..n`.
#[derive(Debug, Clone)]
pub enum KeyDist {
    Uniform { n: u64 },
    Zipf(Zipf),
}

impl KeyDist {
    /// `None`: uniform; `Some(s)`: Zipf with exponent `s`.
    pub fn new(n: u64, zipf: Option<f64>) -> Result<Self, String> {
        if n == 0 {
            return Err("need at least one object".into());
        }
        match zipf {
            None => Ok(Self::Uniform { n }),
            Some(s) => Zipf::new(n, s).map(Self::Zipf),
        }
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match self {
            Self::Uniform { n } => rng.random_range(0..*n),
            Self::Zipf(z) => z.sample(rng),
        }
    }

    /// `uniform` or `zipf(1.1)`, for reports.
    pub fn label(&self) -> String {
        match self {
            Self::Uniform { .. } => "uniform".into(),
            Self::Zipf(z) => format!("zipf({})", z.s),
        }
    }
}

/// Zipf(s) over `0..n` by inverse CDF.
#[derive(Debug, Clone)]
pub struct Zipf {
    s: f64,
    /// `cdf[k]` = P(rank ≤ k); the last entry is 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// Largest `n` accepted (the CDF takes 8 bytes per object).
    pub const MAX_N: u64 = 100_000_000;

    pub fn new(n: u64, s: f64) -> Result<Self, String> {
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!("zipf exponent {s} must be a finite number ≥ 0"));
        }
        if n == 0 || n > Self::MAX_N {
            return Err(format!("zipf needs 1 to {} objects, not {n}", Self::MAX_N));
        }
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 0..n {
            total += ((k + 1) as f64).powf(-s);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Ok(Self { s, cdf })
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        // The first rank whose cumulative weight exceeds u; clamped against rounding at the top.
        (self.cdf.partition_point(|&c| c <= u) as u64).min(self.cdf.len() as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn histogram(dist: &KeyDist, n: usize, draws: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u64; n];
        for _ in 0..draws {
            counts[dist.sample(&mut rng) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn zipf_frequencies_follow_the_weights() {
        let (n, s) = (50, 1.1);
        let dist = KeyDist::new(n, Some(s)).expect("valid");
        let freq = histogram(&dist, n as usize, 400_000);
        let total: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for (k, f) in freq.iter().enumerate() {
            let want = ((k + 1) as f64).powf(-s) / total;
            assert!((f - want).abs() < 0.004 + want * 0.03, "rank {k}: {f} vs {want}");
        }
    }

    #[test]
    fn zero_exponent_and_uniform_are_flat() {
        for dist in [KeyDist::new(10, Some(0.0)).expect("valid"), KeyDist::new(10, None).expect("valid")] {
            for f in histogram(&dist, 10, 200_000) {
                assert!((f - 0.1).abs() < 0.005, "{f}");
            }
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(KeyDist::new(0, None).is_err());
        assert!(KeyDist::new(10, Some(-1.0)).is_err());
        assert!(KeyDist::new(10, Some(f64::NAN)).is_err());
        let one = KeyDist::new(1, Some(2.0)).expect("valid");
        assert_eq!(histogram(&one, 1, 100), vec![1.0]);
    }
}
