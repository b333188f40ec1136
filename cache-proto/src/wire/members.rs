//! The payload of a `Members` answer: the ring as one node sees it, as JSON (small, and sent
//! only when a client's ring is out of date).

use core::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::key::NodeId;

/// Where a member is in its life on the ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Started and announced, not yet confirmed by another member; owns pages already.
    Joining,
    /// On the ring with its weight.
    #[default]
    Serving,
    /// Weight 0: owns no pages, still answers for the pages it holds (warm handoff).
    Draining,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Serving => "serving",
            Self::Draining => "draining",
        }
    }

    /// The weight a member in this state has on the ring.
    pub fn ring_weight(self, weight: u32) -> u32 {
        if self == Self::Draining { 0 } else { weight }
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// Advertised weight (a draining member's share is 0 whatever this says).
    pub weight: u32,
    pub state: MemberState,
}

/// The answer to `Members`: every live member and the epoch of that list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersAnswer {
    /// [`crate::members::epoch`] of `members`: equal on nodes that agree on the ring.
    pub epoch: u64,
    pub members: Vec<MemberInfo>,
}
