//! Every metric the node exports, in one place. Names follow Prometheus conventions
//! (`mirrorcache_node_hits_total{volume="vol1",tier="memory"}`); foyer registers its own
//! `foyer_*` metrics into the same registry, so one `/metrics` scrape shows both.
//!
//! The questions they answer: hit ratio per volume (`hits` over `hits + misses`); bytes and
//! requests the cache saved the origin (`served_bytes{tier="memory"|"disk"}`, `hits`); load on
//! the origin (`origin_requests`, `origin_bytes`); which node is slow
//! (`request_duration_seconds`); why requests were refused (`errors{kind}`).

use std::{fmt::Write as _, sync::Arc};

use cache_proto::key::Volume;
use parking_lot::Mutex;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A volume name as a label value (an `Arc` clone: no allocation per request).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct VolumeName(pub Volume);

impl EncodeLabelValue for VolumeName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeTier {
    pub volume: VolumeName,
    pub tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeLabel {
    pub volume: VolumeName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Error kinds counted in `errors{kind}`.
pub const ERROR_KINDS: [&str; 10] = [
    "unauthorized",
    "unknown_volume",
    "bad_request",
    "not_found",
    "origin",
    "busy",
    "internal",
    "corrupt",
    "protocol",
    "forbidden",
];

#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub registry: Arc<Mutex<Registry>>,
    volumes: Vec<Volume>,
    /// Pages answered from the cache, by volume and tier (memory, disk).
    pub hits: Family<VolumeTier, Counter>,
    /// Pages that had to be read from the origin to answer (once per request that waited).
    pub misses: Family<VolumeLabel, Counter>,
    /// Page bytes sent to clients, by volume and tier (origin = a miss).
    pub bytes_served: Family<VolumeTier, Counter>,
    /// GET requests this node sent to origins, and the bytes they returned.
    pub origin_requests: Family<VolumeLabel, Counter>,
    pub origin_bytes: Family<VolumeLabel, Counter>,
    /// Requests refused or failed, by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Time from request decoded to answer ready, by tier.
    pub request_seconds: Family<TierLabel, Histogram>,
    pub cache_used_bytes: Family<TierLabel, Gauge>,
    pub cache_capacity_bytes: Family<TierLabel, Gauge>,
    pub inflight: Gauge,
    /// Warm requests by outcome (filled, present, absent, evicted).
    pub warms: Family<KindLabel, Counter>,
    /// Misses this node filled from the page's previous owner (`hit`) or, after asking it,
    /// from the origin (`miss`): warm handoff after a ring change.
    pub handoff: Family<KindLabel, Counter>,
    /// Peeks other nodes sent here, by whether the page was cached (`hit`, `miss`).
    pub peeks: Family<KindLabel, Counter>,
}

/// Latency buckets: 100 µs .. ~13 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 18))
}

const TIERS: [&str; 3] = ["memory", "disk", "origin"];

impl NodeMetrics {
    /// Metrics for a node serving `volumes` (their totals are summed over these).
    pub fn new(volumes: Vec<Volume>) -> Self {
        let mut r = Registry::default();
        let m = Self {
            registry: Arc::new(Mutex::new(Registry::default())),
            volumes,
            hits: Family::default(),
            misses: Family::default(),
            bytes_served: Family::default(),
            origin_requests: Family::default(),
            origin_bytes: Family::default(),
            errors: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            cache_used_bytes: Family::default(),
            cache_capacity_bytes: Family::default(),
            inflight: Gauge::default(),
            warms: Family::default(),
            handoff: Family::default(),
            peeks: Family::default(),
        };
        r.register("mirrorcache_node_hits", "Pages served from the cache, by volume and tier", m.hits.clone());
        r.register("mirrorcache_node_misses", "Pages read from the origin to answer a request", m.misses.clone());
        r.register(
            "mirrorcache_node_served_bytes",
            "Page bytes sent to clients, by volume and tier",
            m.bytes_served.clone(),
        );
        r.register("mirrorcache_node_origin_requests", "GET requests sent to origins", m.origin_requests.clone());
        r.register("mirrorcache_node_origin_bytes", "Bytes read from origins", m.origin_bytes.clone());
        r.register("mirrorcache_node_errors", "Requests refused or failed, by kind", m.errors.clone());
        r.register("mirrorcache_node_request_duration_seconds", "Request latency by tier", m.request_seconds.clone());
        r.register("mirrorcache_node_cache_used_bytes", "Cache bytes in use by tier", m.cache_used_bytes.clone());
        r.register("mirrorcache_node_cache_capacity_bytes", "Cache capacity by tier", m.cache_capacity_bytes.clone());
        r.register("mirrorcache_node_inflight_requests", "Requests being served", m.inflight.clone());
        r.register("mirrorcache_node_warm_requests", "Warm requests by outcome", m.warms.clone());
        r.register(
            "mirrorcache_node_handoff_pages",
            "Misses filled from the previous owner (hit) or the origin after asking it (miss)",
            m.handoff.clone(),
        );
        r.register("mirrorcache_node_peeks", "Peeks from other nodes, by whether the page was cached", m.peeks.clone());
        // Create every labelled series up front so scrapes show zeros rather than gaps.
        for v in &m.volumes {
            let volume = VolumeName(v.clone());
            for tier in TIERS {
                let _ = m.bytes_served.get_or_create(&VolumeTier { volume: volume.clone(), tier });
            }
            for tier in &TIERS[..2] {
                let _ = m.hits.get_or_create(&VolumeTier { volume: volume.clone(), tier });
            }
            let _ = m.misses.get_or_create(&VolumeLabel { volume: volume.clone() });
            let _ = m.origin_requests.get_or_create(&VolumeLabel { volume: volume.clone() });
            let _ = m.origin_bytes.get_or_create(&VolumeLabel { volume });
        }
        for tier in TIERS {
            let _ = m.request_seconds.get_or_create(&TierLabel { tier });
        }
        for kind in ["filled", "present", "absent", "evicted"] {
            let _ = m.warms.get_or_create(&KindLabel { kind });
        }
        for kind in ["hit", "miss"] {
            let _ = m.handoff.get_or_create(&KindLabel { kind });
            let _ = m.peeks.get_or_create(&KindLabel { kind });
        }
        for tier in &TIERS[..2] {
            let _ = m.cache_used_bytes.get_or_create(&TierLabel { tier });
            let _ = m.cache_capacity_bytes.get_or_create(&TierLabel { tier });
        }
        for kind in ERROR_KINDS {
            let _ = m.errors.get_or_create(&KindLabel { kind });
        }
        *m.registry.lock() = r;
        m
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    fn sum_tier(&self, family: &Family<VolumeTier, Counter>, tier: &'static str) -> u64 {
        self.volumes
            .iter()
            .map(|v| family.get_or_create(&VolumeTier { volume: VolumeName(v.clone()), tier }).get())
            .sum()
    }

    fn sum_volumes(&self, family: &Family<VolumeLabel, Counter>) -> u64 {
        self.volumes.iter().map(|v| family.get_or_create(&VolumeLabel { volume: VolumeName(v.clone()) }).get()).sum()
    }

    pub fn hits_total(&self, tier: &'static str) -> u64 {
        self.sum_tier(&self.hits, tier)
    }

    pub fn misses_total(&self) -> u64 {
        self.sum_volumes(&self.misses)
    }

    pub fn bytes_served_total(&self) -> u64 {
        TIERS.iter().map(|t| self.sum_tier(&self.bytes_served, t)).sum()
    }

    pub fn origin_requests_total(&self) -> u64 {
        self.sum_volumes(&self.origin_requests)
    }

    pub fn origin_bytes_total(&self) -> u64 {
        self.sum_volumes(&self.origin_bytes)
    }

    pub fn handoff_total(&self, kind: &'static str) -> u64 {
        self.handoff.get_or_create(&KindLabel { kind }).get()
    }

    pub fn errors_total(&self) -> u64 {
        ERROR_KINDS.iter().map(|&kind| self.errors.get_or_create(&KindLabel { kind }).get()).sum()
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}

/// Quantile `q` of request latency over all tiers, in seconds, read from the histogram's
/// buckets in `text` (the upper bound of the bucket that holds it; `None` with no requests).
pub fn latency_quantile(text: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("mirrorcache_node_request_duration_seconds_bucket{")) {
        let le = line.split("le=\"").nth(1).and_then(|r| r.split('"').next());
        let count = line.rsplit(' ').next().and_then(|c| c.parse::<u64>().ok());
        let (Some(le), Some(count)) = (le, count) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0) as u64;
    buckets.iter().find(|(_, c)| *c >= want).map(|(le, _)| *le)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_histogram_buckets() {
        let m = NodeMetrics::new(vec![Volume::new("v").expect("valid")]);
        assert_eq!(latency_quantile(&m.encode(), 0.5), None);
        for _ in 0..90 {
            m.request_seconds.get_or_create(&TierLabel { tier: "memory" }).observe(0.00015);
        }
        for _ in 0..10 {
            m.request_seconds.get_or_create(&TierLabel { tier: "origin" }).observe(0.05);
        }
        let text = m.encode();
        assert_eq!(latency_quantile(&text, 0.5), Some(0.0002));
        assert_eq!(latency_quantile(&text, 0.99), Some(0.0512));
        assert!(text.contains("mirrorcache_node_hits_total{volume=\"v\",tier=\"memory\"} 0"), "{text}");
    }
}
