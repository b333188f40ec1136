//! When to stop reading from, or writing to, the disk tier for a while: a circuit breaker per
//! direction. foyer 0.22 has no such thing (a read error is returned to the caller every time, a
//! write error only logged), and its I/O engine cannot be wrapped from outside the crate (the
//! engine trait's buffer and partition types are private), so the store feeds the breakers with
//! what it sees: each disk read it makes, its outcome and its time; and each page it queued for
//! disk, whether it became readable (a write that failed, or was dropped, never does).
//!
//! ```text
//!          strikes ≥ K within W                     T has passed
//! Closed ─────────────────────────► Open (skip disk) ───────────► Probing (disk in use)
//!   ▲                                   ▲                             │  │
//!   │                                   └──── a strike: T doubled ────┘  │
//!   └──────────── P clean reads, or W without a strike ──────────────────┘
//! ```
//! A strike is a read error or a read slower than `slow` (reads), or a page queued for disk that
//! never became readable (writes). While the read breaker is open pages come from memory or the
//! origin; while the write breaker is open new pages stay in memory. Then the disk is tried
//! again, so a disk that was slow or failing for a while is never given up for good. Every
//! transition takes the time from its caller: the logic is tested without sleeping.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

use crate::metrics::{BreakerMetrics, DiskLabel, OpLabel};

/// Thresholds of the [`DiskBreaker`]; the defaults suit a local NVMe or SSD.
#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    /// Strikes within `window` that make the node skip its disk. Default 5.
    pub strikes: u32,
    /// Default 10s.
    pub window: Duration,
    /// A disk read of a page slower than this is a strike. Default 2s (a 4 MiB page takes a few
    /// milliseconds on an SSD; the origin answers in tens to hundreds).
    pub slow: Duration,
    /// How long the disk is skipped after the first trip; each trip straight after a probe
    /// doubles it, up to `max_open_for`. Default 10s, at most 5 minutes.
    pub open_for: Duration,
    pub max_open_for: Duration,
    /// Clean disk reads after a bypass that make the breaker forget it. Default 4.
    pub probe_reads: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            strikes: 5,
            window: Duration::from_secs(10),
            slow: Duration::from_secs(2),
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(300),
            probe_reads: 4,
        }
    }
}

/// Why a disk read counted against the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// A read that failed.
    Error,
    /// A read slower than the policy's `slow`.
    Slow,
    /// A page queued for disk that never became readable.
    Lost,
}

impl Strike {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Slow => "slow",
            Self::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Closed { strikes: u32, since: Instant },
    Open { until: Instant },
    Probing { clean: u32, since: Instant },
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// How long the next trip skips the disk.
    open_for: Duration,
}

/// One direction's circuit breaker (reads or writes), shared by every request of a node.
#[derive(Debug)]
pub struct DiskBreaker {
    op: &'static str,
    policy: BreakerPolicy,
    /// `Mode::Open`, readable without the lock (checked on every miss).
    open: AtomicBool,
    state: Mutex<State>,
    metrics: BreakerMetrics,
    trips: Counter,
    bypassed: Gauge,
}

impl DiskBreaker {
    /// The breaker of `op` (`read` or `write`), counting into `metrics`.
    pub fn new(op: &'static str, policy: BreakerPolicy, metrics: &BreakerMetrics, now: Instant) -> Self {
        let open_for = policy.open_for;
        let kinds: &[Strike] = if op == "write" { &[Strike::Lost] } else { &[Strike::Error, Strike::Slow] };
        for kind in kinds {
            let _ = metrics.strikes.get_or_create(&DiskLabel { op, kind: kind.as_str() });
        }
        Self {
            op,
            policy,
            open: AtomicBool::new(false),
            state: Mutex::new(State { mode: Mode::Closed { strikes: 0, since: now }, open_for }),
            trips: metrics.bypasses.get_or_create(&OpLabel { op }).clone(),
            bypassed: metrics.bypassed.get_or_create(&OpLabel { op }).clone(),
            metrics: metrics.clone(),
        }
    }

    /// Whether the disk may be used now. The first call after the bypass time moves the breaker
    /// to probing: the disk is used again and the next reads tell whether it recovered.
    pub fn allows(&self, now: Instant) -> bool {
        if !self.open.load(Ordering::Relaxed) {
            return true;
        }
        let mut state = self.state.lock();
        match state.mode {
            Mode::Open { until } if now >= until => {
                state.mode = Mode::Probing { clean: 0, since: now };
                self.open.store(false, Ordering::Relaxed);
                self.bypassed.set(0);
                tracing::info!(op = self.op, "disk cache: trying the disk again");
                true
            }
            Mode::Open { .. } => false,
            Mode::Closed { .. } | Mode::Probing { .. } => true,
        }
    }

    /// A disk read that returned a page after `took`.
    pub fn record_read(&self, took: Duration, now: Instant) {
        if took > self.policy.slow {
            return self.record_strike(Strike::Slow, now);
        }
        self.record_ok(now);
    }

    /// A disk operation that went well (a read in time, a write that became readable).
    pub fn record_ok(&self, now: Instant) {
        let mut state = self.state.lock();
        if let Mode::Probing { clean, since } = state.mode {
            if clean + 1 >= self.policy.probe_reads || now.duration_since(since) >= self.policy.window {
                state.mode = Mode::Closed { strikes: 0, since: now };
                state.open_for = self.policy.open_for;
                tracing::info!(op = self.op, "disk cache: the disk is healthy again");
            } else {
                state.mode = Mode::Probing { clean: clean + 1, since };
            }
        }
    }

    /// A disk operation that failed, or was too slow.
    pub fn record_strike(&self, strike: Strike, now: Instant) {
        let kind = strike.as_str();
        self.metrics.strikes.get_or_create(&DiskLabel { op: self.op, kind }).inc();
        let mut state = self.state.lock();
        match state.mode {
            Mode::Closed { strikes, since } => {
                let (strikes, since) =
                    if now.duration_since(since) > self.policy.window { (1, now) } else { (strikes + 1, since) };
                if strikes >= self.policy.strikes {
                    self.trip(&mut state, now, kind);
                } else {
                    state.mode = Mode::Closed { strikes, since };
                }
            }
            // Straight after a bypass, one strike is enough: the disk has not recovered.
            Mode::Probing { since, .. } if now.duration_since(since) < self.policy.window => {
                self.trip(&mut state, now, kind)
            }
            Mode::Probing { .. } => state.mode = Mode::Closed { strikes: 1, since: now },
            // Reads that started before the trip.
            Mode::Open { .. } => {}
        }
    }

    fn trip(&self, state: &mut State, now: Instant, kind: &str) {
        let open_for = state.open_for;
        state.mode = Mode::Open { until: now + open_for };
        state.open_for = (open_for * 2).min(self.policy.max_open_for);
        self.open.store(true, Ordering::Relaxed);
        self.trips.inc();
        self.bypassed.set(1);
        tracing::warn!(
            op = self.op,
            last_strike = kind,
            ?open_for,
            "disk cache: skipping the disk after repeated failures"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn trips_after_k_strikes_in_a_window_and_probes_back_with_backoff() {
        let t0 = Instant::now();
        let policy = BreakerPolicy::default();
        let metrics = BreakerMetrics::default();
        let b = DiskBreaker::new("read", policy.clone(), &metrics, t0);
        // Strikes spread wider than the window never trip it.
        for i in 0..20 {
            b.record_strike(Strike::Error, t0 + policy.window * 2 * i);
            assert!(b.allows(t0 + policy.window * 2 * i));
        }
        let t1 = t0 + policy.window * 50;
        for i in 0..policy.strikes {
            assert!(b.allows(t1), "strike {i}");
            b.record_strike(Strike::Error, t1 + MS * i);
        }
        assert!(!b.allows(t1 + MS * 10));
        assert_eq!(b.trips.get(), 1);
        assert_eq!(b.bypassed.get(), 1);
        // After the bypass time the disk is tried again; a strike at once doubles the time.
        let t2 = t1 + policy.open_for + MS * 10;
        assert!(b.allows(t2));
        assert_eq!(b.bypassed.get(), 0);
        b.record_strike(Strike::Slow, t2);
        assert!(!b.allows(t2 + policy.open_for + MS * 10));
        let t3 = t2 + policy.open_for * 2;
        assert!(b.allows(t3));
        // Clean reads close it, and the bypass time is back to its first value.
        for i in 0..policy.probe_reads {
            b.record_read(MS, t3 + MS * i);
        }
        for i in 0..policy.strikes {
            b.record_strike(Strike::Error, t3 + MS * (10 + i));
        }
        assert!(!b.allows(t3 + MS * 20));
        assert!(b.allows(t3 + MS * 20 + policy.open_for));
        assert_eq!(b.trips.get(), 3);
        assert_eq!(metrics.strikes.get_or_create(&DiskLabel { op: "read", kind: "slow" }).get(), 1);
    }

    #[test]
    fn a_slow_read_is_a_strike_and_backoff_is_capped() {
        let t0 = Instant::now();
        let policy = BreakerPolicy { strikes: 1, ..BreakerPolicy::default() };
        let b = DiskBreaker::new("read", policy.clone(), &BreakerMetrics::default(), t0);
        b.record_read(policy.slow + MS, t0);
        assert!(!b.allows(t0));
        let mut now = t0;
        for _ in 0..20 {
            now += policy.max_open_for + MS;
            assert!(b.allows(now), "never skipped for longer than max_open_for");
            b.record_strike(Strike::Error, now);
            assert!(!b.allows(now));
        }
    }
}
