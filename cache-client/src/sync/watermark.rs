//! The sync's checkpoint key as a plain value (no I/O): copies run concurrently and finish out
//! of order, but the listing hands them out in key order, so "every key up to K is done" holds
//! for K = the key listed just before the oldest copy still running (or the last key listed when
//! none runs). A copy that failed freezes the mark before it: a resumed sync does it again.

use std::collections::VecDeque;

/// One copy handed out and not yet retired from the front.
#[derive(Debug)]
struct Running {
    seq: u64,
    /// The key listed just before this one: everything up to it may be done.
    before: Option<String>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Done,
    Failed,
}

/// Tracks the key below which (inclusive) the sync has nothing left to do.
#[derive(Debug, Default)]
pub struct Watermark {
    running: VecDeque<Running>,
    last_listed: Option<String>,
    next_seq: u64,
    /// Set at the first failure that reaches the front: the mark stays there.
    frozen: Option<Option<String>>,
}

impl Watermark {
    /// Starts after `after` (a resumed sync's checkpoint).
    pub fn after(after: Option<String>) -> Self {
        Self { last_listed: after, ..Self::default() }
    }

    /// A key that needs nothing (already there, or only compared).
    pub fn passed(&mut self, key: &str) {
        self.last_listed = Some(key.to_owned());
    }

    /// A copy of `key` is handed out; returns its ticket for [`Self::finished`].
    pub fn started(&mut self, key: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let before = self.last_listed.replace(key.to_owned());
        self.running.push_back(Running { seq, before, state: State::Running });
        seq
    }

    /// The copy with ticket `seq` ended.
    pub fn finished(&mut self, seq: u64, ok: bool) {
        if let Some(r) = self.running.iter_mut().find(|r| r.seq == seq) {
            r.state = if ok { State::Done } else { State::Failed };
        }
        while let Some(front) = self.running.front() {
            match front.state {
                State::Running => break,
                State::Done => {
                    self.running.pop_front();
                }
                State::Failed => {
                    if self.frozen.is_none() {
                        self.frozen = Some(front.before.clone());
                    }
                    self.running.pop_front();
                }
            }
        }
    }

    /// Copies handed out and not yet retired (the oldest running one holds the rest back).
    pub fn outstanding(&self) -> usize {
        self.running.len()
    }

    /// Every key up to and including this one is done (`None`: nothing yet).
    pub fn done_through(&self) -> Option<&str> {
        if let Some(frozen) = &self.frozen {
            return frozen.as_deref();
        }
        match self.running.front() {
            Some(r) => r.before.as_deref(),
            None => self.last_listed.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_waits_for_the_oldest_running_copy() {
        let mut w = Watermark::after(Some("a".into()));
        assert_eq!(w.done_through(), Some("a"));
        w.passed("b");
        let c = w.started("c");
        let d = w.started("d");
        w.passed("e");
        assert_eq!(w.done_through(), Some("b"), "c still runs");
        w.finished(d, true);
        assert_eq!(w.done_through(), Some("b"), "d is done but c is not");
        assert_eq!(w.outstanding(), 2);
        w.finished(c, true);
        assert_eq!((w.done_through(), w.outstanding()), (Some("e"), 0));
    }

    #[test]
    fn a_failed_copy_freezes_the_mark_before_it() {
        let mut w = Watermark::default();
        let a = w.started("a");
        let b = w.started("b");
        let c = w.started("c");
        w.finished(b, false);
        assert_eq!(w.done_through(), None, "a still runs");
        w.finished(a, true);
        assert_eq!(w.done_through(), Some("a"), "stops before the failed b");
        w.finished(c, true);
        w.passed("d");
        assert_eq!(w.done_through(), Some("a"), "stays frozen");
    }
}
