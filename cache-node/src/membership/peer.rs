//! A node's identity in gossip: what it advertises (id, address, weight, state) and a generation
//! that orders its incarnations. Pure.
//!
//! foca keys members by [`Identity::addr`], here the QUIC address: of two identities with one
//! address, the higher generation wins, so a node that restarts (its generation is its start
//! time in milliseconds) or changes state (generation + 1) replaces its old self everywhere.
//! Seeds start as placeholders of generation 0 that any real identity at that address beats.

use std::net::SocketAddr;

use cache_proto::{
    key::NodeId,
    wire::{MemberInfo, MemberState},
};
use foca::Identity;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub weight: u32,
    pub state: MemberState,
    pub generation: u64,
}

/// The id of seed placeholders (never a member: they are only ever known as down).
const SEED_ID: &str = "seed";

impl Peer {
    /// A placeholder for the node at `addr` until it answers with its real identity.
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            id: NodeId::new(SEED_ID).expect("valid id"),
            addr,
            weight: 0,
            state: MemberState::Joining,
            generation: 0,
        }
    }

    pub fn is_seed_placeholder(&self) -> bool {
        self.generation == 0
    }

    /// The same node with another state and weight, advertised as a newer generation.
    pub fn with(&self, state: MemberState, weight: u32) -> Self {
        Self { state, weight, generation: self.generation.saturating_add(1), ..self.clone() }
    }

    pub fn info(&self) -> MemberInfo {
        MemberInfo { id: self.id.clone(), addr: self.addr, weight: self.weight, state: self.state }
    }
}

impl Identity for Peer {
    type Addr = SocketAddr;

    /// Declared down by the others while alive (a pause, a partition): come back as the next
    /// generation, same id, same place on the ring.
    fn renew(&self) -> Option<Self> {
        Some(Self { generation: self.generation.saturating_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
