//! The ring a process routes by, built from a member list, and the epoch that names that list.
//! Pure: nodes build it from gossip or config, clients from a node's `Members` answer or config.
//!
//! The epoch is a digest of the members (id, address, weight, state) in id order, so two
//! processes that agree on the cluster have the same epoch without agreeing on a counter; a
//! client that sees another epoch in an answer knows its ring is out of date.

use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use crate::{
    limits::{MAX_MEMBERS, MAX_TOTAL_WEIGHT, MAX_WEIGHT},
    ring::{Member, Ring},
    wire::{MemberInfo, MembersAnswer},
};

/// Why a `Members` answer was not turned into a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("{0} members, more than {MAX_MEMBERS}")]
    TooMany(usize),
    #[error("members weigh {0} in all, more than {MAX_TOTAL_WEIGHT}")]
    TooHeavy(u64),
    #[error("a members answer lists id {0} twice")]
    DuplicateId(String),
}

/// The epoch of a member list (any order).
pub fn epoch(members: &[MemberInfo]) -> u64 {
    let mut sorted: Vec<&MemberInfo> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut h = Xxh3::new();
    for m in sorted {
        h.update(m.id.as_str().as_bytes());
        h.update(&[0]);
        h.update(m.addr.to_string().as_bytes());
        h.update(&[0]);
        h.update(&m.weight.to_be_bytes());
        h.update(&[m.state as u8]);
    }
    h.digest()
}

/// A member list with its ring and epoch.
#[derive(Debug, Clone)]
pub struct RingView {
    pub epoch: u64,
    pub members: Vec<MemberInfo>,
    /// Ring members are indexed like `members`; a draining member has weight 0, so it owns
    /// nothing and [`Ring::walk`] never yields it.
    pub ring: Ring,
}

impl RingView {
    pub fn new(mut members: Vec<MemberInfo>) -> Arc<Self> {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let ring = Ring::new(
            members
                .iter()
                .map(|m| Member { id: m.id.clone(), addr: m.addr, weight: m.state.ring_weight(m.weight) })
                .collect(),
        );
        Arc::new(Self { epoch: epoch(&members), members, ring })
    }

    /// The ring of a peer's `Members` answer, checked first: at most [`MAX_MEMBERS`] members
    /// weighing at most [`MAX_TOTAL_WEIGHT`] in all (a weight above [`MAX_WEIGHT`] counts as
    /// that), each id once. A peer's answer never makes a ring larger than those limits allow.
    pub fn from_answer(answer: MembersAnswer) -> Result<Arc<Self>, MembersError> {
        if answer.members.len() > MAX_MEMBERS {
            return Err(MembersError::TooMany(answer.members.len()));
        }
        let total: u64 = answer.members.iter().map(|m| u64::from(m.weight.min(MAX_WEIGHT))).sum();
        if total > MAX_TOTAL_WEIGHT {
            return Err(MembersError::TooHeavy(total));
        }
        let mut ids: Vec<_> = answer.members.iter().map(|m| &m.id).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(MembersError::DuplicateId(w[0].to_string()));
        }
        Ok(Self::new(answer.members))
    }

    /// The member with this id.
    pub fn get(&self, id: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{key::NodeId, wire::MemberState};

    fn member(id: &str, port: u16, weight: u32, state: MemberState) -> MemberInfo {
        MemberInfo { id: NodeId::new(id).expect("id"), addr: ([127, 0, 0, 1], port).into(), weight, state }
    }

    #[test]
    fn epoch_ignores_order_and_sees_every_field() {
        let a = member("a", 1, 1, MemberState::Serving);
        let b = member("b", 2, 1, MemberState::Serving);
        let base = epoch(&[a.clone(), b.clone()]);
        assert_eq!(base, epoch(&[b.clone(), a.clone()]));
        for changed in [
            member("b", 3, 1, MemberState::Serving),
            member("b", 2, 2, MemberState::Serving),
            member("b", 2, 1, MemberState::Draining),
            member("c", 2, 1, MemberState::Serving),
        ] {
            assert_ne!(base, epoch(&[a.clone(), changed]));
        }
        assert_ne!(base, epoch(&[a]));
    }

    #[test]
    fn draining_members_own_nothing() {
        let view = RingView::new(vec![
            member("a", 1, 1, MemberState::Serving),
            member("b", 2, 5, MemberState::Draining),
            member("c", 3, 1, MemberState::Joining),
        ]);
        let shares = view.ring.shares();
        let b = view.members.iter().position(|m| m.id.as_str() == "b").expect("b");
        assert_eq!(shares[b], 0.0);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(view.ring.walk(42).all(|i| i != b));
    }

    #[test]
    fn members_answers_are_checked_before_a_ring_is_built() {
        let answer = |members: Vec<(&str, u32)>| MembersAnswer {
            epoch: 0,
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, (id, weight))| member(id, 7000 + i as u16, weight, MemberState::Serving))
                .collect(),
        };
        let view = RingView::from_answer(answer(vec![("a", 1), ("b", 2)])).expect("good answer");
        assert_eq!(view.members.len(), 2);
        assert_eq!(
            RingView::from_answer(answer(vec![("a", 1), ("a", 2)])).unwrap_err(),
            MembersError::DuplicateId("a".into())
        );
        let heavy: Vec<(String, u32)> = (0..50).map(|i| (format!("n{i}"), 100)).collect();
        let heavy = answer(heavy.iter().map(|(id, w)| (id.as_str(), *w)).collect());
        assert_eq!(RingView::from_answer(heavy).unwrap_err(), MembersError::TooHeavy(5000));
    }
}
