//! What paces copies, as plain functions of the time and a random draw (no clock, no sleep):
//! the node's bandwidth cap ([`Pace`]) and the jittered backoff between attempts ([`backoff`]).

use std::time::{Duration, Instant};

/// A bandwidth cap shared by the node's copies: each copy reserves its bytes' time on one line,
/// so the copies together write at most `rate` bytes per second on average.
#[derive(Debug)]
pub struct Pace {
    /// Bytes per second; 0: no cap.
    rate: u64,
    /// When the line is free again.
    free_at: Option<Instant>,
}

impl Pace {
    pub fn new(rate: u64) -> Self {
        Self { rate, free_at: None }
    }

    /// Reserves the time `bytes` take at the cap; returns how long to wait before sending them.
    pub fn reserve(&mut self, now: Instant, bytes: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let start = self.free_at.map_or(now, |free| free.max(now));
        self.free_at = Some(start + Duration::from_secs_f64(bytes as f64 / self.rate as f64));
        start - now
    }
}

/// The wait after failed attempt `attempt` (1 for the first): a random time (`draw` in [0, 1))
/// between `base` and twice the previous cap, the cap doubling per attempt up to `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration, draw: f64) -> Duration {
    let cap = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    base + (cap.saturating_sub(base)).mul_f64(draw.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_together_keep_under_the_cap() {
        let now = Instant::now();
        let mut pace = Pace::new(1000);
        assert_eq!(pace.reserve(now, 500), Duration::ZERO);
        assert_eq!(pace.reserve(now, 1000), Duration::from_millis(500));
        assert_eq!(pace.reserve(now + Duration::from_secs(10), 1000), Duration::ZERO, "an idle line is free");
        let mut free = Pace::new(0);
        assert_eq!(free.reserve(now, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops_at_max() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff(1, base, max, 0.99), base);
        assert_eq!(backoff(3, base, max, 0.0), base);
        assert_eq!(backoff(3, base, max, 1.0), Duration::from_secs(4));
        assert!(backoff(30, base, max, 1.0) <= max);
        assert_eq!(backoff(u32::MAX, base, max, 1.0), max);
    }
}
