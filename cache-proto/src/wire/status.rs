//! The payload of a `Status` answer: one node's counters, as JSON (small, rare, and readable by
//! scripts through `cachectl status --json`).

use serde::{Deserialize, Serialize};

use super::MemberState;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub version: String,
    pub uptime_secs: u64,
    pub hits_memory: u64,
    pub hits_disk: u64,
    pub misses: u64,
    pub bytes_served: u64,
    pub origin_requests: u64,
    pub origin_bytes: u64,
    pub errors: u64,
    /// Request latency quantiles over all tiers, in milliseconds (bucket upper bounds).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub memory_used: u64,
    pub memory_capacity: u64,
    pub disk_used: u64,
    pub disk_capacity: u64,
    pub page_size: u64,
    /// `static` or `gossip`.
    pub membership: String,
    pub state: MemberState,
    /// Advertised weight (0 once draining).
    pub weight: u32,
    /// Ring epoch as this node sees it.
    pub epoch: u64,
    /// Draining, and the handoff window has passed: the node can be stopped without misses.
    pub drained: bool,
    /// While draining: seconds until `drained`.
    pub drain_left_secs: Option<u64>,
    /// Pages this node got from their previous owner instead of the origin (warm handoff).
    pub handoff_pages: u64,
}
