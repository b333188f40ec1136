//! Who is on the ring, as this node sees it, and who owned a page before the last changes.
//!
//! ```text
//!  static:  [cluster] members ─────────────┐
//!  gossip:  gossip.rs (foca, sans-I/O) ◄─► driver.rs (QUIC datagrams, timers)
//!                                          ▼ install(members)
//!                          Membership: current RingView + epoch, previous rings (handoff window)
//!                                          ▲
//!            service/ops.rs: Members answers; answer.rs: epoch in page heads;
//!            lookup.rs: previous owners for a miss (warm handoff)
//! ```
//!
//! The ring a node keeps is the one clients route by (same members, same code), so "the owner
//! before the change" is computable here: for a page this node now owns, the owner on a ring
//! replaced less than `handoff` ago, if that node is still a member, may have it cached.

pub mod driver;
pub mod gossip;
pub mod peer;

use std::{
    collections::VecDeque,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_proto::{
    key::NodeId,
    members::RingView,
    ring::Member,
    wire::{MemberInfo, MemberState},
};

/// Most previous rings kept for handoff (older ones are dropped even inside the window).
const MAX_HISTORY: usize = 8;

/// Most previous owners a miss asks for a page before it reads the origin.
pub const MAX_HANDOFF_ASKS: usize = 3;

#[derive(Debug)]
struct Rings {
    current: Arc<RingView>,
    /// Replaced rings, newest first, with the time each was replaced.
    previous: VecDeque<(Instant, Arc<RingView>)>,
    /// When this node found the cluster (it started, or came back), and the ring of that
    /// cluster without it as this node knows it now: until it arrived, those members owned the
    /// pages it owns. Refreshed at each change inside the handoff window, since a node learns
    /// the cluster a few members at a time.
    arrived: Option<(Instant, Arc<RingView>)>,
}

impl Rings {
    fn without(&self, me: &NodeId) -> Arc<RingView> {
        RingView::new(self.current.members.iter().filter(|m| &m.id != me).cloned().collect())
    }
}

#[derive(Debug)]
pub struct Membership {
    me: NodeId,
    handoff: Duration,
    rings: RwLock<Rings>,
    epoch: AtomicU64,
    /// When this node started draining, if it did.
    drain_started: RwLock<Option<Instant>>,
}

impl Membership {
    /// Starts with `members` (this node included).
    pub fn new(me: NodeId, members: Vec<MemberInfo>, handoff: Duration) -> Self {
        let current = RingView::new(members);
        Self {
            me,
            handoff,
            epoch: AtomicU64::new(current.epoch),
            rings: RwLock::new(Rings { current, previous: VecDeque::new(), arrived: None }),
            drain_started: RwLock::new(None),
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn handoff(&self) -> Duration {
        self.handoff
    }

    /// The current ring's epoch (read on every answer: one atomic load).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> Arc<RingView> {
        self.rings.read().unwrap_or_else(|e| e.into_inner()).current.clone()
    }

    /// This node as the ring lists it.
    pub fn me_info(&self) -> Option<MemberInfo> {
        self.view().get(self.me.as_str()).cloned()
    }

    /// Makes `members` the ring, if it differs from the current one; the current one becomes the
    /// newest previous ring. Returns whether the ring changed.
    pub fn install(&self, members: Vec<MemberInfo>, now: Instant) -> bool {
        let next = RingView::new(members);
        let mut rings = self.rings.write().unwrap_or_else(|e| e.into_inner());
        if next.epoch == rings.current.epoch {
            return false;
        }
        let old = std::mem::replace(&mut rings.current, next);
        let arrived = match rings.arrived {
            // This node just found the cluster (it started, or came back).
            _ if old.members.iter().all(|m| m.id == self.me) => Some(now),
            Some((at, _)) if now.saturating_duration_since(at) < self.handoff => Some(at),
            _ => None,
        };
        rings.arrived = arrived.map(|at| (at, rings.without(&self.me)));
        rings.previous.push_front((now, old));
        let handoff = self.handoff;
        rings.previous.retain(|(at, _)| now.saturating_duration_since(*at) < handoff);
        rings.previous.truncate(MAX_HISTORY);
        self.epoch.store(rings.current.epoch, Ordering::Relaxed);
        if rings.current.get(self.me.as_str()).is_some_and(|m| m.state == MemberState::Draining) {
            let mut started = self.drain_started.write().unwrap_or_else(|e| e.into_inner());
            started.get_or_insert(now);
        }
        true
    }

    /// The members that may have the page at ring point `point` cached because they owned it
    /// within the handoff window, most likely first, each once, at most [`MAX_HANDOFF_ASKS`],
    /// never this node, only current members: if this node arrived in the window, the owner on
    /// the ring of the cluster without it; then the owners on the replaced rings, newest first.
    /// More than one, because a node that joins learns the cluster a few members at a time: on
    /// the rings it had before it heard of `c`, `c`'s pages belonged to others.
    pub fn previous_owners(&self, point: u64, now: Instant) -> Vec<Member> {
        let rings = self.rings.read().unwrap_or_else(|e| e.into_inner());
        let arrived = rings.arrived.iter().map(|(at, ring)| (*at, ring));
        let previous = rings.previous.iter().map(|(at, ring)| (*at, ring));
        let mut owners: Vec<Member> = Vec::new();
        for (at, ring) in arrived.chain(previous) {
            if owners.len() == MAX_HANDOFF_ASKS {
                break;
            }
            if now.saturating_duration_since(at) >= self.handoff {
                continue;
            }
            let Some(idx) = ring.ring.owner(point) else { continue };
            let owner = ring.ring.member(idx);
            if owner.id == self.me || owners.iter().any(|o| o.id == owner.id) {
                continue;
            }
            // Ask it at the address it has now (it may have restarted elsewhere).
            if let Some(now_info) = rings.current.get(owner.id.as_str()) {
                owners.push(Member { id: now_info.id.clone(), addr: now_info.addr, weight: now_info.weight });
            }
        }
        owners
    }

    /// While draining: how long until the pages this node held have had the whole handoff
    /// window to move (`Some(0)`: it can be stopped). `None` when not draining.
    pub fn drain_left(&self, now: Instant) -> Option<Duration> {
        let started = (*self.drain_started.read().unwrap_or_else(|e| e.into_inner()))?;
        Some(self.handoff.saturating_sub(now.saturating_duration_since(started)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, state: MemberState) -> MemberInfo {
        let port = 7000 + id.as_bytes()[0] as u16;
        MemberInfo { id: NodeId::new(id).expect("id"), addr: ([127, 0, 0, 1], port).into(), weight: 1, state }
    }

    fn serving(ids: &[&str]) -> Vec<MemberInfo> {
        ids.iter().map(|id| m(id, MemberState::Serving)).collect()
    }

    #[test]
    fn a_new_owner_finds_the_previous_one_inside_the_window_only() {
        let t0 = Instant::now();
        let d = Membership::new(NodeId::new("d").expect("id"), serving(&["a", "b", "c"]), Duration::from_secs(60));
        let before = d.view();
        assert!(d.install(serving(&["a", "b", "c", "d"]), t0));
        assert!(!d.install(serving(&["d", "c", "b", "a"]), t0), "same members, same ring");
        let after = d.view();
        let mut moved = 0;
        for point in (0..2000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            let owner_now = &after.ring.member(after.ring.owner(point).expect("owner")).id;
            let owner_before = &before.ring.member(before.ring.owner(point).expect("owner")).id;
            let prev = d.previous_owners(point, t0 + Duration::from_secs(1));
            if owner_now.as_str() == "d" {
                moved += 1;
                assert_eq!(prev.first().map(|p| p.id.clone()), Some(owner_before.clone()));
            }
            assert!(d.previous_owners(point, t0 + Duration::from_secs(61)).is_empty());
        }
        // About a quarter of the pages moved to the new node.
        assert!((350..650).contains(&moved), "{moved}");
    }

    #[test]
    fn a_node_that_finds_the_cluster_asks_the_owners_before_it() {
        let t0 = Instant::now();
        let d = Membership::new(NodeId::new("d").expect("id"), serving(&["d"]), Duration::from_secs(60));
        d.install(serving(&["a", "b", "c", "d"]), t0);
        let view = d.view();
        let mine: Vec<u64> = (0..400u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .filter(|&p| view.ring.member(view.ring.owner(p).expect("owner")).id.as_str() == "d")
            .collect();
        assert!(!mine.is_empty());
        for p in mine {
            let prev = d.previous_owners(p, t0);
            let prev = prev.first().expect("a previous owner");
            assert!(["a", "b", "c"].contains(&prev.id.as_str()), "{prev:?}");
        }
    }

    #[test]
    fn a_previous_owner_that_left_is_not_asked() {
        let t0 = Instant::now();
        let a = Membership::new(NodeId::new("a").expect("id"), serving(&["a", "b"]), Duration::from_secs(60));
        a.install(serving(&["a"]), t0);
        assert!((0..100u64).all(|p| a.previous_owners(p << 50, t0).is_empty()));
    }

    #[test]
    fn a_node_that_learns_the_cluster_bit_by_bit_still_asks_the_real_previous_owner() {
        // d hears of a and b (its seeds) first, is acknowledged, and only then hears of c: in
        // the rings it had before c, c's pages belonged to a or b.
        let t0 = Instant::now();
        let joining = |ids: &[&str]| {
            let mut members = serving(ids);
            members.push(m("d", MemberState::Joining));
            members
        };
        let d =
            Membership::new(NodeId::new("d").expect("id"), vec![m("d", MemberState::Joining)], Duration::from_secs(60));
        d.install(joining(&["a", "b"]), t0);
        d.install(serving(&["a", "b", "d"]), t0);
        d.install(serving(&["a", "b", "c", "d"]), t0);
        let full = RingView::new(serving(&["a", "b", "c"]));
        let now = d.view();
        let mut from_c = 0;
        for p in (0..2000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            let owner_now = &now.ring.member(now.ring.owner(p).expect("owner")).id;
            let owner_before = &full.ring.member(full.ring.owner(p).expect("owner")).id;
            if owner_now.as_str() == "d" && owner_before.as_str() == "c" {
                from_c += 1;
                let asked: Vec<_> = d.previous_owners(p, t0).into_iter().map(|o| o.id).collect();
                assert!(asked.contains(owner_before), "page {p}: asks {asked:?}, c had it");
                assert!(asked.len() <= MAX_HANDOFF_ASKS);
            }
        }
        assert!(from_c > 50, "{from_c}");
    }

    #[test]
    fn draining_counts_down_the_handoff_window() {
        let t0 = Instant::now();
        let b = Membership::new(NodeId::new("b").expect("id"), serving(&["a", "b"]), Duration::from_secs(30));
        assert_eq!(b.drain_left(t0), None);
        b.install(vec![m("a", MemberState::Serving), m("b", MemberState::Draining)], t0);
        assert_eq!(b.drain_left(t0 + Duration::from_secs(10)), Some(Duration::from_secs(20)));
        assert_eq!(b.drain_left(t0 + Duration::from_secs(31)), Some(Duration::ZERO));
        // The draining node owns nothing on the new ring.
        assert_eq!(b.view().ring.shares()[1], 0.0);
    }
}
