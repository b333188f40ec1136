//! What a node's answers usually take, learned from the answers themselves, for hedging
//! (`read_piece.rs`):
//!
//! - **head time** (request sent to answer's head in): a node's hedge comes after
//!   [`HEAD_FACTOR`] x the 95th percentile of its recent head times, at least [`HEDGE_FLOOR`] and
//!   at most the configured `hedge_after`. A node that usually answers in 5 ms and is silent for
//!   50 ms is hedged then, not after the fixed 500 ms;
//! - **payload rate** of cached pages (bytes / time from head to last byte): an answer that has
//!   begun is *crawling* when it has not finished [`SLOW_FACTOR`] x later than the cluster's
//!   usual rate says it should (and not before `hedge_after`). The usual rate is the median of
//!   the nodes' median rates, so one slow node (a saturated link, a gray failure) does not pull
//!   the yardstick down to its own pace.
//!
//! Pure: durations and byte counts in, durations out; the pool keeps one [`Samples`] per node.

use std::time::Duration;

/// Recent answers remembered per node.
pub const WINDOW: usize = 64;
/// Answers needed before a node's (or the cluster's) figures are used.
pub const MIN_SAMPLES: usize = 8;
/// Payloads shorter than this say more about the head than the rate: not sampled or judged.
pub const MIN_RATE_BYTES: u64 = 256 << 10;
/// A node's hedge comes after this many times its p95 head time...
pub const HEAD_FACTOR: u32 = 2;
/// ...but never sooner than this (a hedge is a request too).
pub const HEDGE_FLOOR: Duration = Duration::from_millis(50);
/// A begun answer is crawling at under 1/SLOW_FACTOR of the cluster's usual rate.
pub const SLOW_FACTOR: f64 = 4.0;

/// The last [`WINDOW`] values, oldest overwritten first.
#[derive(Debug, Clone, Default)]
struct Ring<T> {
    values: Vec<T>,
    next: usize,
}

impl<T: Copy + PartialOrd> Ring<T> {
    fn push(&mut self, v: T) {
        if self.values.len() < WINDOW {
            self.values.push(v);
        } else {
            self.values[self.next] = v;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    /// The `q` quantile (0..=1, nearest rank) of the values, once there are [`MIN_SAMPLES`].
    fn quantile(&self, q: f64) -> Option<T> {
        if self.values.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

/// One node's recent head times and payload rates.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    heads: Ring<Duration>,
    /// Bytes per second.
    rates: Ring<f64>,
}

impl Samples {
    /// An answer's head came `took` after its request was sent.
    pub fn head(&mut self, took: Duration) {
        self.heads.push(took);
    }

    /// A cached page's `bytes` came `took` after its head (short payloads are not sampled).
    pub fn payload(&mut self, bytes: u64, took: Duration) {
        if bytes >= MIN_RATE_BYTES && !took.is_zero() {
            self.rates.push(bytes as f64 / took.as_secs_f64());
        }
    }

    /// When to hedge a request to this node that has no head yet: [`HEAD_FACTOR`] x its p95
    /// head time, within [`HEDGE_FLOOR`]..=`ceiling` (`ceiling` until it has enough samples).
    pub fn hedge_after(&self, ceiling: Duration) -> Duration {
        match self.heads.quantile(0.95) {
            Some(p95) => (p95 * HEAD_FACTOR).clamp(HEDGE_FLOOR.min(ceiling), ceiling),
            None => ceiling,
        }
    }

    /// This node's median payload rate, bytes per second.
    pub fn median_rate(&self) -> Option<f64> {
        self.rates.quantile(0.5)
    }
}

/// The cluster's usual payload rate: the median of the nodes' median rates.
pub fn usual_rate(node_medians: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut m: Vec<f64> = node_medians.into_iter().filter(|r| r.is_finite() && *r > 0.0).collect();
    if m.is_empty() {
        return None;
    }
    m.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Some(m[(m.len() - 1) / 2])
}

/// How long a begun answer of `bytes` may take before it is crawling: [`SLOW_FACTOR`] x what
/// `rate` (bytes per second) says, at least `floor`. None (never judged) for short payloads or
/// without a usual rate yet.
pub fn crawling_after(bytes: u64, rate: Option<f64>, floor: Duration) -> Option<Duration> {
    let rate = rate?;
    if bytes < MIN_RATE_BYTES {
        return None;
    }
    let expected = Duration::try_from_secs_f64(SLOW_FACTOR * bytes as f64 / rate).ok()?;
    Some(expected.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_node_is_hedged_after_twice_its_p95_head_time_within_the_floor_and_ceiling() {
        let ceiling = 500 * MS;
        let mut s = Samples::default();
        assert_eq!(s.hedge_after(ceiling), ceiling, "no samples: the configured deadline");
        for i in 0..100 {
            s.head(if i % 10 == 0 { 40 * MS } else { 5 * MS });
        }
        // The window holds the last 64, 6 of them at 40 ms: p95 (rank 61) is 40 ms -> 80 ms.
        assert_eq!(s.hedge_after(ceiling), 80 * MS);
        let mut fast = Samples::default();
        (0..20).for_each(|_| fast.head(MS));
        assert_eq!(fast.hedge_after(ceiling), HEDGE_FLOOR);
        let mut slow = Samples::default();
        (0..20).for_each(|_| slow.head(2000 * MS));
        assert_eq!(slow.hedge_after(ceiling), ceiling);
        assert_eq!(slow.hedge_after(10 * MS), 10 * MS, "a ceiling under the floor wins");
    }

    #[test]
    fn only_long_payloads_are_rates() {
        let mut s = Samples::default();
        for _ in 0..20 {
            s.payload(128 << 10, MS);
        }
        assert_eq!(s.median_rate(), None);
        for _ in 0..20 {
            s.payload(4 << 20, 40 * MS);
        }
        let rate = s.median_rate().expect("rate");
        assert!((rate - (4 << 20) as f64 / 0.040).abs() < 1.0, "{rate}");
    }

    #[test]
    fn the_usual_rate_ignores_one_slow_node_of_three() {
        assert_eq!(usual_rate([]), None);
        assert_eq!(usual_rate([2.5e6, 100e6, 120e6]), Some(100e6));
        assert_eq!(usual_rate([2.5e6, 100e6]), Some(2.5e6), "of two, the slower: never too eager");
    }

    #[test]
    fn a_begun_page_is_crawling_at_a_quarter_of_the_usual_rate_never_before_the_floor() {
        let floor = 500 * MS;
        let page = 4u64 << 20;
        // 100 MB/s: a page in ~42 ms, x4 = 168 ms: the floor.
        assert_eq!(crawling_after(page, Some(100e6), floor), Some(floor));
        // 4 MB/s: ~1.05 s, x4 = 4.2 s.
        let after = crawling_after(page, Some(4e6), floor).expect("judged");
        assert!((4.1..4.3).contains(&after.as_secs_f64()), "{after:?}");
        assert_eq!(crawling_after(128 << 10, Some(100e6), floor), None, "a range is not judged");
        assert_eq!(crawling_after(page, None, floor), None, "no yardstick yet");
    }
}
