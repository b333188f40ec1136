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
    /// Per volume: what this node read from (and wrote to) each origin, its copies into the
    /// regional bucket, and what that is estimated to cost. Absent in answers of nodes from
    /// before it (decoded as empty), and left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeUse>,
    /// The scheduled resyncs this node led (the last one per volume).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resyncs: Vec<ResyncReport>,
}

/// One volume's origin use and copies on one node (`cachectl status` sums them over nodes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeUse {
    pub volume: String,
    /// The volume's origins in chain order.
    pub origins: Vec<OriginUse>,
    /// Copies waiting on this node (queued or being made), their bytes, and the age of the
    /// oldest in seconds.
    pub copy_pending: u64,
    pub copy_pending_bytes: u64,
    pub copy_oldest_secs: u64,
    /// Copies written and verified, found already there, written again after failing their
    /// check, out of attempts, and not queued (full queue, disk error, too large).
    pub copies_done: u64,
    pub copies_already_there: u64,
    pub copies_redone: u64,
    pub copies_failed: u64,
    pub copies_not_queued: u64,
    /// Estimated money spent on all origins, and saved by reads the regional copy served
    /// instead of the source (in the unit of the configured prices).
    pub spent: f64,
    pub saved: f64,
}

impl VolumeUse {
    /// Adds another node's use of the same volume (origins matched by position): counts and
    /// money add up, the oldest pending copy is the older of the two.
    pub fn add(&mut self, other: &VolumeUse) {
        if self.origins.is_empty() {
            self.volume.clone_from(&other.volume);
            self.origins = other
                .origins
                .iter()
                .map(|o| OriginUse { url: o.url.clone(), replica: o.replica, ..OriginUse::default() })
                .collect();
        }
        for (a, b) in self.origins.iter_mut().zip(&other.origins) {
            a.gets += b.gets;
            a.get_bytes += b.get_bytes;
            a.gets_missing += b.gets_missing;
            a.gets_failed += b.gets_failed;
            a.heads += b.heads;
            a.puts += b.puts;
            a.put_bytes += b.put_bytes;
            a.spent += b.spent;
        }
        self.copy_pending += other.copy_pending;
        self.copy_pending_bytes += other.copy_pending_bytes;
        self.copy_oldest_secs = self.copy_oldest_secs.max(other.copy_oldest_secs);
        self.copies_done += other.copies_done;
        self.copies_already_there += other.copies_already_there;
        self.copies_redone += other.copies_redone;
        self.copies_failed += other.copies_failed;
        self.copies_not_queued += other.copies_not_queued;
        self.spent += other.spent;
        self.saved += other.saved;
    }
}

/// What one node sent one origin of a volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginUse {
    /// The origin's URL (`s3://bucket/prefix`).
    pub url: String,
    /// The volume's regional copy (the first origin, `replica = true`).
    pub replica: bool,
    /// GETs that returned bytes, and those bytes.
    pub gets: u64,
    pub get_bytes: u64,
    /// GETs answered "no such object" (the chain went on to the next origin).
    pub gets_missing: u64,
    /// GETs of the regional copy that failed (the source was read instead).
    pub gets_failed: u64,
    pub heads: u64,
    /// PUTs (copies into the regional copy), and their bytes.
    pub puts: u64,
    pub put_bytes: u64,
    /// Estimated money spent on this origin.
    pub spent: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_without_volumes_decodes_and_volumes_round_trip() {
        // What a node from before per-volume use sent: no `volumes` key.
        let mut old = serde_json::to_value(NodeStatus { id: "a".into(), ..NodeStatus::default() }).expect("encodes");
        assert!(old.get("volumes").is_none(), "empty volumes are left out");
        old.as_object_mut().expect("object").remove("volumes");
        let decoded: NodeStatus = serde_json::from_value(old).expect("old answers decode");
        assert!(decoded.volumes.is_empty());

        let status = NodeStatus {
            id: "a".into(),
            volumes: vec![VolumeUse {
                volume: "vol1".into(),
                origins: vec![
                    OriginUse { url: "s3://regional".into(), replica: true, gets: 2, puts: 1, ..OriginUse::default() },
                    OriginUse { url: "s3://source".into(), gets: 1, get_bytes: 10, spent: 0.5, ..OriginUse::default() },
                ],
                copy_pending: 3,
                copies_done: 1,
                spent: 0.5,
                saved: 0.25,
                ..VolumeUse::default()
            }],
            ..NodeStatus::default()
        };
        let text = serde_json::to_string(&status).expect("encodes");
        assert_eq!(serde_json::from_str::<NodeStatus>(&text).expect("decodes"), status);
        let mut sum = VolumeUse::default();
        sum.add(&status.volumes[0]);
        sum.add(&status.volumes[0]);
        assert_eq!((sum.volume.as_str(), sum.origins[0].gets, sum.copy_pending, sum.saved), ("vol1", 4, 6, 0.5));
        // A newer node's extra keys are ignored, missing ones default.
        let partial: VolumeUse = serde_json::from_str(r#"{"volume":"v","later_key":1}"#).expect("decodes");
        assert_eq!(partial.volume, "v");
    }
}

/// The last scheduled resync of a volume that a node led (`[copy] resync_every`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResyncReport {
    pub volume: String,
    /// The node that led it.
    pub node: String,
    /// Unix seconds when it started and (once done) ended.
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    pub found: u64,
    pub copied: u64,
    pub already_there: u64,
    pub failed: u64,
    /// In the regional copy, in no source (reported, not deleted).
    pub extra: u64,
    /// Why it stopped, if it did not run to the end (a listing failed).
    pub error: Option<String>,
}
