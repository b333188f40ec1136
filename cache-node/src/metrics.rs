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

/// Why a request was refused or failed: the `kind` label of `errors`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    Unauthorized,
    UnknownVolume,
    BadRequest,
    NotFound,
    Origin,
    Busy,
    Internal,
    Corrupt,
    Protocol,
    Forbidden,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        Self::Unauthorized,
        Self::UnknownVolume,
        Self::BadRequest,
        Self::NotFound,
        Self::Origin,
        Self::Busy,
        Self::Internal,
        Self::Corrupt,
        Self::Protocol,
        Self::Forbidden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::UnknownVolume => "unknown_volume",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Origin => "origin",
            Self::Busy => "busy",
            Self::Internal => "internal",
            Self::Corrupt => "corrupt",
            Self::Protocol => "protocol",
            Self::Forbidden => "forbidden",
        }
    }
}

/// Every metric family the node registers (prometheus-client adds `_total` to counters' series).
/// The registrations below use these names and no others; tests check that none is listed twice,
/// that each is registered, and that ARCHITECTURE.md names each.
pub mod names {
    pub const HITS: &str = "mirrorcache_node_hits";
    pub const MISSES: &str = "mirrorcache_node_misses";
    pub const SERVED_BYTES: &str = "mirrorcache_node_served_bytes";
    pub const ORIGIN_REQUESTS: &str = "mirrorcache_node_origin_requests";
    pub const ORIGIN_BYTES: &str = "mirrorcache_node_origin_bytes";
    pub const ERRORS: &str = "mirrorcache_node_errors";
    pub const REQUEST_DURATION: &str = "mirrorcache_node_request_duration_seconds";
    pub const CACHE_USED: &str = "mirrorcache_node_cache_used_bytes";
    pub const CACHE_CAPACITY: &str = "mirrorcache_node_cache_capacity_bytes";
    pub const INFLIGHT: &str = "mirrorcache_node_inflight_requests";
    pub const WARMS: &str = "mirrorcache_node_warm_requests";
    pub const HANDOFF: &str = "mirrorcache_node_handoff_pages";
    pub const PEEKS: &str = "mirrorcache_node_peeks";
    pub const DISK_DROPPED: &str = "mirrorcache_node_disk_dropped_pages";
    pub const DISK_STRIKES: &str = "mirrorcache_node_disk_strikes";
    pub const DISK_BYPASSES: &str = "mirrorcache_node_disk_bypasses";
    pub const DISK_BYPASSED: &str = "mirrorcache_node_disk_bypassed";
    pub const ORIGIN_OPS: &str = "mirrorcache_node_origin_ops";
    pub const ORIGIN_OP_BYTES: &str = "mirrorcache_node_origin_op_bytes";
    pub const COPIES: &str = "mirrorcache_node_copies";
    pub const COPY_BACKLOG: &str = "mirrorcache_node_copy_backlog_objects";
    pub const COPY_BACKLOG_BYTES: &str = "mirrorcache_node_copy_backlog_bytes";
    pub const COPY_OLDEST: &str = "mirrorcache_node_copy_oldest_pending_seconds";
    pub const COST: &str = "mirrorcache_node_cost_estimate";
    pub const RESYNC_OBJECTS: &str = "mirrorcache_node_resync_last_objects";
    pub const RESYNC_FINISHED: &str = "mirrorcache_node_resync_last_finished_timestamp_seconds";

    pub const ALL: [&str; 26] = [
        RESYNC_OBJECTS,
        RESYNC_FINISHED,
        HITS,
        MISSES,
        SERVED_BYTES,
        ORIGIN_REQUESTS,
        ORIGIN_BYTES,
        ERRORS,
        REQUEST_DURATION,
        CACHE_USED,
        CACHE_CAPACITY,
        INFLIGHT,
        WARMS,
        HANDOFF,
        PEEKS,
        DISK_DROPPED,
        DISK_STRIKES,
        DISK_BYPASSES,
        DISK_BYPASSED,
        ORIGIN_OPS,
        ORIGIN_OP_BYTES,
        COPIES,
        COPY_BACKLOG,
        COPY_BACKLOG_BYTES,
        COPY_OLDEST,
        COST,
    ];
}

/// A request this node sent to one origin of a volume's chain: the `op` label of `origin_ops`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum OriginOp {
    /// A GET that returned bytes.
    Get,
    /// A GET answered 404 (the origin lacks the object; the chain asked the next one).
    GetMissing,
    /// A GET of the regional copy that failed (down, refusing, corrupt; the source was asked).
    GetFailed,
    Head,
    Put,
}

impl OriginOp {
    pub const ALL: [OriginOp; 5] = [Self::Get, Self::GetMissing, Self::GetFailed, Self::Head, Self::Put];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::GetMissing => "get_missing",
            Self::GetFailed => "get_failed",
            Self::Head => "head",
            Self::Put => "put",
        }
    }
}

/// What became of a copy into a regional bucket: the `outcome` label of `copies`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Written and verified.
    Done,
    /// The regional bucket already had it (same size and MD5): nothing written.
    AlreadyThere,
    /// A written copy failed its check (size or MD5) and is written again.
    Redone,
    /// An attempt failed (the copy waits and tries again within its budget).
    Retried,
    /// Out of attempts: kept in `copies/failed` for a resync.
    Failed,
    /// Not queued: the queue was full, its disk refused the entry, or the object is too large.
    NotQueued,
}

impl CopyOutcome {
    pub const ALL: [CopyOutcome; 6] =
        [Self::Done, Self::AlreadyThere, Self::Redone, Self::Retried, Self::Failed, Self::NotQueued];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::AlreadyThere => "already_there",
            Self::Redone => "redone",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::NotQueued => "not_queued",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginOpLabel {
    pub volume: VolumeName,
    /// Index in the volume's origin chain (0: the regional copy, if it has one).
    pub origin: u32,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub volume: VolumeName,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResyncLabel {
    pub volume: VolumeName,
    /// `found`, `copied`, `already_there`, `failed` or `extra`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabel {
    pub volume: VolumeName,
    /// `spent` (on every origin) or `saved` (by reads the regional copy served, against the
    /// source's prices).
    pub kind: &'static str,
}

/// A gauge of a float (the cost estimate).
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The disk breakers' series (`store/breaker.rs`), labelled by `op` (`read`, `write`).
#[derive(Debug, Clone, Default)]
pub struct BreakerMetrics {
    pub(crate) strikes: Family<DiskLabel, Counter>,
    pub(crate) bypasses: Family<OpLabel, Counter>,
    pub(crate) bypassed: Family<OpLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DiskLabel {
    pub(crate) op: &'static str,
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabel {
    pub(crate) op: &'static str,
}

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
    /// Pages on disk that did not read back intact (the store counts them).
    pub disk_dropped: Counter,
    /// The disk breakers' strikes and bypasses (the store's breakers count them).
    pub breakers: BreakerMetrics,
    /// Requests to each origin of each volume's chain, by op, and their bytes (read or written).
    pub origin_ops: Family<OriginOpLabel, Counter>,
    pub origin_op_bytes: Family<OriginOpLabel, Counter>,
    /// Copies into regional buckets by outcome.
    pub copies: Family<OutcomeLabel, Counter>,
    /// Copies waiting (queued or being made), their bytes, and the age of the oldest.
    pub copy_backlog: Family<VolumeLabel, Gauge>,
    pub copy_backlog_bytes: Family<VolumeLabel, Gauge>,
    pub copy_oldest_seconds: Family<VolumeLabel, Gauge>,
    /// Estimated money spent and saved, from the origins' prices (set before each scrape).
    pub cost: Family<CostLabel, FloatGauge>,
    /// The last scheduled resync this node led, per volume: objects by kind, and when it ended.
    pub resync_objects: Family<ResyncLabel, Gauge>,
    pub resync_finished: Family<VolumeLabel, Gauge>,
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
            disk_dropped: Counter::default(),
            breakers: BreakerMetrics::default(),
            origin_ops: Family::default(),
            origin_op_bytes: Family::default(),
            copies: Family::default(),
            copy_backlog: Family::default(),
            copy_backlog_bytes: Family::default(),
            copy_oldest_seconds: Family::default(),
            cost: Family::default(),
            resync_objects: Family::default(),
            resync_finished: Family::default(),
        };
        use names::*;
        r.register(HITS, "Pages served from the cache, by volume and tier", m.hits.clone());
        r.register(MISSES, "Pages read from the origin to answer a request", m.misses.clone());
        r.register(SERVED_BYTES, "Page bytes sent to clients, by volume and tier", m.bytes_served.clone());
        r.register(ORIGIN_REQUESTS, "GET requests sent to origins", m.origin_requests.clone());
        r.register(ORIGIN_BYTES, "Bytes read from origins", m.origin_bytes.clone());
        r.register(ERRORS, "Requests refused or failed, by kind", m.errors.clone());
        r.register(REQUEST_DURATION, "Request latency by tier", m.request_seconds.clone());
        r.register(CACHE_USED, "Cache bytes in use by tier", m.cache_used_bytes.clone());
        r.register(CACHE_CAPACITY, "Cache capacity by tier", m.cache_capacity_bytes.clone());
        r.register(INFLIGHT, "Requests being served", m.inflight.clone());
        r.register(WARMS, "Warm requests by outcome", m.warms.clone());
        r.register(
            HANDOFF,
            "Misses filled from the previous owner (hit) or the origin after asking it (miss)",
            m.handoff.clone(),
        );
        r.register(PEEKS, "Peeks from other nodes, by whether the page was cached", m.peeks.clone());
        r.register(
            DISK_DROPPED,
            "Pages on disk that did not read back intact (checksum, header or key) and were filled again",
            m.disk_dropped.clone(),
        );
        r.register(
            DISK_STRIKES,
            "Disk reads that failed (error) or took too long (slow), and pages queued for disk that never \
             became readable (lost)",
            m.breakers.strikes.clone(),
        );
        r.register(
            DISK_BYPASSES,
            "Times the node stopped reading or writing its disk for a while after repeated strikes",
            m.breakers.bypasses.clone(),
        );
        r.register(
            DISK_BYPASSED,
            "1 while the node skips its disk for reads (pages come from memory or the origin) or writes",
            m.breakers.bypassed.clone(),
        );
        r.register(
            ORIGIN_OPS,
            "Requests sent to each origin of a volume's chain (origin = its index), by op",
            m.origin_ops.clone(),
        );
        r.register(ORIGIN_OP_BYTES, "Bytes read from (get) or written to (put) each origin", m.origin_op_bytes.clone());
        r.register(COPIES, "Copies into the regional bucket, by outcome", m.copies.clone());
        r.register(COPY_BACKLOG, "Copies into the regional bucket waiting on this node", m.copy_backlog.clone());
        r.register(COPY_BACKLOG_BYTES, "Bytes of the copies waiting on this node", m.copy_backlog_bytes.clone());
        r.register(COPY_OLDEST, "Age of the oldest copy waiting on this node", m.copy_oldest_seconds.clone());
        r.register(
            RESYNC_OBJECTS,
            "Objects the last scheduled resync led by this node found, copied, already_there, failed, extra",
            m.resync_objects.clone(),
        );
        r.register(
            RESYNC_FINISHED,
            "When the last scheduled resync led by this node ended (Unix seconds)",
            m.resync_finished.clone(),
        );
        r.register(
            COST,
            "Estimated money spent on origins (spent) and saved by regional reads (saved), from configured prices",
            m.cost.clone(),
        );
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
        for kind in ErrorKind::ALL {
            let _ = m.errors.get_or_create(&KindLabel { kind: kind.as_str() });
        }
        // The series the store's two disk breakers count into (they would create them anyway).
        for (op, kind) in [("read", "error"), ("read", "slow"), ("write", "lost")] {
            let _ = m.breakers.strikes.get_or_create(&DiskLabel { op, kind });
        }
        for op in ["read", "write"] {
            let _ = m.breakers.bypasses.get_or_create(&OpLabel { op });
            let _ = m.breakers.bypassed.get_or_create(&OpLabel { op });
        }
        *m.registry.lock() = r;
        m
    }

    /// Creates the origin, copy and cost series of `volume` (with `origins` origins) up front.
    pub fn volume_origins(&self, volume: &Volume, origins: usize) {
        let name = VolumeName(volume.clone());
        for origin in 0..origins as u32 {
            for op in OriginOp::ALL {
                let label = OriginOpLabel { volume: name.clone(), origin, op: op.as_str() };
                let _ = self.origin_ops.get_or_create(&label);
                let _ = self.origin_op_bytes.get_or_create(&label);
            }
        }
        for outcome in CopyOutcome::ALL {
            let _ = self.copies.get_or_create(&OutcomeLabel { volume: name.clone(), outcome: outcome.as_str() });
        }
        let label = VolumeLabel { volume: name.clone() };
        let _ = self.copy_backlog.get_or_create(&label);
        let _ = self.copy_backlog_bytes.get_or_create(&label);
        let _ = self.copy_oldest_seconds.get_or_create(&label);
        // 0 until this node leads a resync of the volume.
        let _ = self.resync_finished.get_or_create(&label);
        for kind in ["found", "copied", "already_there", "failed", "extra"] {
            let _ = self.resync_objects.get_or_create(&ResyncLabel { volume: name.clone(), kind });
        }
        for kind in ["spent", "saved"] {
            let _ = self.cost.get_or_create(&CostLabel { volume: name.clone(), kind });
        }
    }

    /// Counts one request to origin `origin` of `volume`'s chain, and its bytes.
    pub fn origin_op(&self, volume: &Volume, origin: usize, op: OriginOp, bytes: u64) {
        let label = OriginOpLabel { volume: VolumeName(volume.clone()), origin: origin as u32, op: op.as_str() };
        self.origin_ops.get_or_create(&label).inc();
        if bytes > 0 {
            self.origin_op_bytes.get_or_create(&label).inc_by(bytes);
        }
    }

    /// Requests and bytes of `op` to origin `origin` of `volume` so far.
    pub fn origin_op_totals(&self, volume: &Volume, origin: usize, op: OriginOp) -> (u64, u64) {
        let label = OriginOpLabel { volume: VolumeName(volume.clone()), origin: origin as u32, op: op.as_str() };
        (self.origin_ops.get_or_create(&label).get(), self.origin_op_bytes.get_or_create(&label).get())
    }

    pub fn copy(&self, volume: &Volume, outcome: CopyOutcome) {
        self.copies
            .get_or_create(&OutcomeLabel { volume: VolumeName(volume.clone()), outcome: outcome.as_str() })
            .inc();
    }

    pub fn copies_total(&self, volume: &Volume, outcome: CopyOutcome) -> u64 {
        self.copies.get_or_create(&OutcomeLabel { volume: VolumeName(volume.clone()), outcome: outcome.as_str() }).get()
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&KindLabel { kind: kind.as_str() }).inc();
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
        ErrorKind::ALL.iter().map(|kind| self.errors.get_or_create(&KindLabel { kind: kind.as_str() }).get()).sum()
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

    #[test]
    fn every_metric_name_is_listed_once_registered_and_documented() {
        let mut sorted = names::ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names::ALL.len(), "a metric name is listed twice");
        let m = NodeMetrics::new(vec![Volume::new("v").expect("valid")]);
        m.volume_origins(&Volume::new("v").expect("valid"), 2);
        let text = m.encode();
        let registered: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .filter(|name| name.starts_with("mirrorcache_"))
            .collect();
        let mut want = names::ALL.to_vec();
        want.sort_unstable();
        let mut got = registered.clone();
        got.sort_unstable();
        assert_eq!(got, want, "registered families and names::ALL differ");
        let docs = include_str!("../../ARCHITECTURE.md");
        for name in names::ALL {
            assert!(docs.contains(name), "ARCHITECTURE.md does not name the metric {name}");
        }
        assert!(
            text.contains("mirrorcache_node_origin_ops_total{volume=\"v\",origin=\"1\",op=\"get_missing\"} 0"),
            "{text}"
        );
        assert!(text.contains("mirrorcache_node_cost_estimate{volume=\"v\",kind=\"saved\"} 0"), "{text}");
        let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut unique = kinds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len(), "an error kind is listed twice");
    }
}
