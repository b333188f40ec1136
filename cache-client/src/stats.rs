//! Client-side counters: which source served each page, and why the cache was passed over.
//! Cheap atomics, read with [`ClientStats::snapshot`] (and shown by `cachectl get -v`).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use cache_proto::wire::Tier;

/// Where a page came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A node answered, from its memory, its disk, or its own origin read (a miss).
    Node { id: String, tier: Tier },
    /// The client read the origin itself after the cache could not answer.
    Origin,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node { id, tier: Tier::Origin } => write!(f, "node {id} (miss, filled from origin)"),
            Self::Node { id, tier } => write!(f, "node {id} ({} hit)", tier.as_str()),
            Self::Origin => f.write_str("origin (fallback)"),
        }
    }
}

#[derive(Debug, Default)]
pub struct ClientStats {
    pub node_memory: AtomicU64,
    pub node_disk: AtomicU64,
    pub node_miss: AtomicU64,
    pub origin_fallback: AtomicU64,
    /// Times a node was passed over, by reason (`connect`, `timeout`, `refused_unauthorized`, ...).
    fallbacks: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl ClientStats {
    pub fn record_source(&self, source: &Source) {
        let counter = match source {
            Source::Node { tier: Tier::Memory, .. } => &self.node_memory,
            Source::Node { tier: Tier::Disk, .. } => &self.node_disk,
            Source::Node { tier: Tier::Origin, .. } => &self.node_miss,
            Source::Origin => &self.origin_fallback,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_fallback(&self, reason: &str) {
        if let Ok(mut m) = self.fallbacks.lock() {
            *m.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// All counters by name: `pages_node_memory`, ..., `fallback_<reason>`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (name, c) in [
            ("pages_node_memory", &self.node_memory),
            ("pages_node_disk", &self.node_disk),
            ("pages_node_miss", &self.node_miss),
            ("pages_origin_fallback", &self.origin_fallback),
        ] {
            out.insert(name.to_owned(), c.load(Ordering::Relaxed));
        }
        if let Ok(m) = self.fallbacks.lock() {
            out.extend(m.iter().map(|(k, v)| (format!("fallback_{k}"), *v)));
        }
        out
    }
}
