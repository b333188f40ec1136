//! Client-side counters: which source served each page, and why the cache was passed over.
//! Cheap atomics, read with [`ClientStats::snapshot`] (and shown by `cachectl get -v`).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use cache_proto::wire::{Status, Tier};

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

/// Why a node's answer was not used, or a hedge went out: the `fallback_<label>` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// The owner was slower than `hedge_after`: the next node was peeked.
    Hedged,
    /// The peek missed: the next node was asked for the page itself.
    HedgeEscalated,
    /// The hedge answered before the owner.
    HedgeWon,
    /// The node's bytes failed their digest.
    Corrupt,
    /// A cached page came far slower than the cluster's usual rate: dropped for the next node.
    Crawling,
    /// The node answered with an error status.
    Refused(Status),
    /// The node answered a get with something that is not a page.
    NotAPage,
    /// The node was set aside after a recent failure (`ExchangeError::SetAside`).
    SetAside,
    /// No connection to the node.
    Connect,
    /// The node did not answer within the deadline.
    Timeout,
    /// The connection was lost.
    Connection,
    /// The stream failed.
    Stream,
    /// The node sent a bad frame.
    Protocol,
}

impl Fallback {
    /// The counter label: `hedged`, `corrupt`, `refused_<status>`, `timeout`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hedged => "hedged",
            Self::HedgeEscalated => "hedge_escalated",
            Self::HedgeWon => "hedge_won",
            Self::Corrupt => "corrupt",
            Self::Crawling => "crawling",
            Self::Refused(status) => match status {
                Status::Ok => "refused_ok",
                Status::NotFound => "refused_not_found",
                Status::Unauthorized => "refused_unauthorized",
                Status::UnknownVolume => "refused_unknown_volume",
                Status::BadRequest => "refused_bad_request",
                Status::OriginFailed => "refused_origin_failed",
                Status::Busy => "refused_busy",
                Status::Internal => "refused_internal",
                Status::NotCached => "refused_not_cached",
                Status::Forbidden => "refused_forbidden",
                Status::Streamed => "refused_streamed",
            },
            Self::NotAPage => "refused_protocol",
            Self::SetAside => "set_aside",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Stream => "stream",
            Self::Protocol => "protocol",
        }
    }
}

#[derive(Debug, Default)]
pub struct ClientStats {
    pub node_memory: AtomicU64,
    pub node_disk: AtomicU64,
    pub node_miss: AtomicU64,
    pub origin_fallback: AtomicU64,
    /// Times a node was passed over (or hedged), by [`Fallback`] label.
    fallbacks: std::sync::Mutex<BTreeMap<&'static str, u64>>,
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

    pub fn record_fallback(&self, reason: Fallback) {
        if let Ok(mut m) = self.fallbacks.lock() {
            *m.entry(reason.as_str()).or_default() += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_labels_are_the_status_names() {
        for status in (0..=u8::MAX).filter_map(|v| Status::try_from(v).ok()) {
            assert_eq!(Fallback::Refused(status).as_str(), format!("refused_{}", status.as_str()));
        }
    }

    #[test]
    fn snapshot_keys_are_fallback_labels() {
        let stats = ClientStats::default();
        stats.record_fallback(Fallback::HedgeWon);
        stats.record_fallback(Fallback::Refused(Status::Unauthorized));
        stats.record_fallback(Fallback::Refused(Status::Unauthorized));
        let snap = stats.snapshot();
        assert_eq!(snap.get("fallback_hedge_won"), Some(&1));
        assert_eq!(snap.get("fallback_refused_unauthorized"), Some(&2));
    }
}
