//! A bounded quantile sketch of rates: a log-scale histogram of [`BUCKETS`] counters, each
//! bucket [`GROWTH`] times wider than the one before, from [`MIN_RATE`] up. Fixed memory
//! (512 bytes), O(1) insert, quantiles within one bucket (≤ 12.5 % relative error, read
//! as the bucket's upper bound: a threshold derived from it errs on the high side, the side
//! of legitimate clients).

/// Buckets.
pub(crate) const BUCKETS: usize = 128;
/// Lower bound of bucket 1; everything below falls into bucket 0.
const MIN_RATE: f64 = 0.05;
/// Ratio between neighbouring bucket bounds.
const GROWTH: f64 = 1.125;

/// Rates seen, by bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Histogram {
    counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
        }
    }
}

/// The bucket of `rate` (NaN and negatives: bucket 0; huge: the last one).
#[must_use]
pub(crate) fn bucket(rate: f64) -> usize {
    if rate.is_nan() || rate < MIN_RATE {
        return 0;
    }
    let i = ((rate / MIN_RATE).ln() / GROWTH.ln()).floor() + 1.0;
    (i.max(1.0) as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`.
#[must_use]
pub(crate) fn upper(i: usize) -> f64 {
    MIN_RATE * GROWTH.powi(i as i32)
}

impl Histogram {
    /// Counts one rate.
    pub(crate) fn add(&mut self, rate: f64) {
        let slot = &mut self.counts[bucket(rate)];
        *slot = slot.saturating_add(1);
    }

    /// Adds `other`'s counts.
    pub(crate) fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// Rates counted.
    #[must_use]
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.counts = [0; BUCKETS];
    }

    /// The `q` quantile (0..=1) of the counted rates, `None` when empty.
    #[must_use]
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(upper(i));
            }
        }
        Some(upper(BUCKETS - 1))
    }

    /// Non-empty buckets as (bucket, count), for the state file.
    #[must_use]
    pub(crate) fn sparse(&self) -> Vec<(u16, u32)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u16, *c))
            .collect()
    }

    /// Sets bucket `i` to `count`; `false` when `i` is out of range.
    pub(crate) fn set(&mut self, i: usize, count: u32) -> bool {
        match self.counts.get_mut(i) {
            Some(slot) => {
                *slot = count;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_bucket_and_on_the_high_side() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), None);
        // 990 clients at 1..3 requests/s, 10 at 20.
        for i in 0..990 {
            h.add(1.0 + f64::from(i % 3));
        }
        for _ in 0..10 {
            h.add(20.0);
        }
        assert_eq!(h.total(), 1000);
        let p99 = h.quantile(0.99).unwrap();
        assert!((3.0..=3.0 * GROWTH).contains(&p99), "{p99}");
        let p50 = h.quantile(0.5).unwrap();
        assert!((2.0..=2.0 * GROWTH).contains(&p50), "{p50}");
        let max = h.quantile(1.0).unwrap();
        assert!((20.0..=20.0 * GROWTH).contains(&max), "{max}");
    }

    #[test]
    fn odd_rates_stay_in_range() {
        for rate in [f64::NAN, -1.0, 0.0, f64::INFINITY, 1e300] {
            assert!(bucket(rate) < BUCKETS);
        }
        let mut h = Histogram::default();
        h.add(f64::INFINITY);
        assert!(h.quantile(0.5).unwrap().is_finite());
        let mut m = Histogram::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.sparse(), vec![(BUCKETS as u16 - 1, 2)]);
        assert!(!m.set(BUCKETS, 1));
    }
}
