//! Every metric the node exports, in one place. Names follow Prometheus conventions
//! (`mirrorcache_node_hits_total{tier="memory"}`); foyer registers its own `foyer_*` metrics into
//! the same registry, so one `/metrics` scrape shows both.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub registry: Arc<Mutex<Registry>>,
    /// Pages answered from the cache, by tier (memory, disk).
    pub hits: Family<TierLabel, Counter>,
    /// Pages that had to be read from the origin (counted once per request that waited on it).
    pub misses: Counter,
    pub bytes_served: Counter,
    /// GET requests this node sent to origins, and the bytes they returned.
    pub origin_requests: Counter,
    pub origin_bytes: Counter,
    /// Requests refused or failed, by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Time from request decoded to last byte queued, by tier.
    pub request_seconds: Family<TierLabel, Histogram>,
    pub cache_used_bytes: Family<TierLabel, Gauge>,
    pub cache_capacity_bytes: Family<TierLabel, Gauge>,
    pub inflight: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 18))
}

impl NodeMetrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            registry: Arc::new(Mutex::new(Registry::default())),
            hits: Family::default(),
            misses: Counter::default(),
            bytes_served: Counter::default(),
            origin_requests: Counter::default(),
            origin_bytes: Counter::default(),
            errors: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            cache_used_bytes: Family::default(),
            cache_capacity_bytes: Family::default(),
            inflight: Gauge::default(),
        };
        r.register("mirrorcache_node_hits", "Pages served from the cache, by tier", m.hits.clone());
        r.register("mirrorcache_node_misses", "Pages read from the origin to answer a request", m.misses.clone());
        r.register("mirrorcache_node_served_bytes", "Page bytes sent to clients", m.bytes_served.clone());
        r.register("mirrorcache_node_origin_requests", "GET requests sent to origins", m.origin_requests.clone());
        r.register("mirrorcache_node_origin_bytes", "Bytes read from origins", m.origin_bytes.clone());
        r.register("mirrorcache_node_errors", "Requests refused or failed, by kind", m.errors.clone());
        r.register("mirrorcache_node_request_duration_seconds", "Request latency by tier", m.request_seconds.clone());
        r.register("mirrorcache_node_cache_used_bytes", "Cache bytes in use by tier", m.cache_used_bytes.clone());
        r.register("mirrorcache_node_cache_capacity_bytes", "Cache capacity by tier", m.cache_capacity_bytes.clone());
        r.register("mirrorcache_node_inflight_requests", "Requests being served", m.inflight.clone());
        *m.registry.lock() = r;
        m
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn hit_count(&self, tier: &'static str) -> u64 {
        self.hits.get_or_create(&TierLabel { tier }).get()
    }

    pub fn errors_total(&self) -> u64 {
        [
            "unauthorized",
            "unknown_volume",
            "bad_request",
            "not_found",
            "origin",
            "busy",
            "internal",
            "corrupt",
            "protocol",
        ]
        .iter()
        .map(|&kind| self.errors.get_or_create(&KindLabel { kind }).get())
        .sum()
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}
