//! The ring a process routes by, built from a member list, and the epoch that names that list.
//! Pure: nodes build it from gossip or config, clients from a node's `Members` answer or config.
//!
//! The epoch is a digest of the members (id, address, weight, state) in id order, so two
//! processes that agree on the cluster have the same epoch without agreeing on a counter; a
//! client that sees another epoch in an answer knows its ring is out of date.

use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use crate::{
    config::ClusterConfig,
    ring::{Member, Ring},
    wire::{MemberInfo, MemberState},
};

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

    /// The static member list of a config.
    pub fn from_config(cluster: &ClusterConfig) -> Arc<Self> {
        Self::new(
            cluster
                .members
                .iter()
                .map(|m| MemberInfo { id: m.id.clone(), addr: m.addr, weight: m.weight, state: MemberState::Serving })
                .collect(),
        )
    }

    /// The member with this id.
    pub fn get(&self, id: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NodeId;

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
}
