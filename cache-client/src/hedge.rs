//! Hedged reads: when a page's owner has not answered within `[client] hedge_after`, the client
//! asks the next node too and takes whichever answers first (a stalled or slow owner, a gray
//! failure, costs one deadline instead of the connection's idle timeout). Hedges are paid from
//! a budget, [`HedgeBudget`]: each request earns a tenth of a hedge, so at most about 10 % extra
//! requests are sent however slow the cluster gets, plus a small burst. Pure: no clock, no I/O.

use std::sync::Mutex;

/// Hedges earned per request.
pub const HEDGE_RATIO: f64 = 0.1;
/// Hedges that can be saved up (a burst after a quiet spell).
pub const HEDGE_BURST: f64 = 10.0;

#[derive(Debug)]
pub struct HedgeBudget {
    tokens: Mutex<f64>,
}

impl Default for HedgeBudget {
    fn default() -> Self {
        Self { tokens: Mutex::new(HEDGE_BURST) }
    }
}

impl HedgeBudget {
    /// A request was sent: earn [`HEDGE_RATIO`] of a hedge.
    pub fn earn(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t + HEDGE_RATIO).min(HEDGE_BURST);
    }

    /// Takes one hedge if the budget has it.
    pub fn try_spend(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedges_stay_within_a_tenth_of_requests_plus_the_burst() {
        let budget = HedgeBudget::default();
        let mut hedges = 0;
        for _ in 0..10_000 {
            budget.earn();
            if budget.try_spend() {
                hedges += 1;
            }
        }
        assert!(hedges <= 1000 + HEDGE_BURST as usize, "{hedges}");
        assert!(hedges >= 990, "{hedges}");
    }

    #[test]
    fn an_empty_budget_refuses() {
        let budget = HedgeBudget::default();
        while budget.try_spend() {}
        assert!(!budget.try_spend());
        for _ in 0..9 {
            budget.earn();
        }
        assert!(!budget.try_spend());
        budget.earn();
        budget.earn();
        assert!(budget.try_spend());
    }
}
