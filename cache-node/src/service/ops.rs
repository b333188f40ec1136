//! The requests about the node rather than a page: `Status` (its counters, for `cachectl
//! status`), `Members` (the ring as it sees it, for clients), `Drain` (off the ring, for an
//! operator); and the cache-use gauges refreshed before each metrics scrape.

use std::time::Instant;

use cache_proto::{
    key::Volume,
    wire::{MemberState, MembersAnswer, NodeStatus, OriginUse, Status, VolumeUse},
};

use super::Service;
use crate::{
    answer::{Answer, json_answer},
    cost,
    membership::driver::Control,
    metrics::{CopyOutcome, CostLabel, ErrorKind, OriginOp, TierLabel, VolumeLabel, VolumeName, latency_quantile},
};

impl Service {
    pub(super) fn status_answer(&self) -> Answer<'static> {
        json_answer(&self.status())
    }

    pub(super) fn members(&self) -> Answer<'static> {
        let view = self.lookup.membership.view();
        json_answer(&MembersAnswer { epoch: view.epoch, members: view.members.clone() })
    }

    /// Takes this node off the ring (gossip membership only), for an operator.
    pub(super) async fn drain(&self, peer: Option<&str>) -> Answer<'static> {
        let Some(name) = peer.filter(|p| self.operators.iter().any(|o| o == p)) else {
            let msg = format!(
                "{} may not drain node {} (operators: [{}], node.operators)",
                peer.unwrap_or("a client without a name"),
                self.id,
                self.operators.join(", ")
            );
            return self.refuse(ErrorKind::Forbidden, Status::Forbidden, msg);
        };
        let Some(gossip) = &self.gossip else {
            let msg = format!("node {} has static membership: remove it from [cluster] members instead", self.id);
            return self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg);
        };
        let (done, applied) = tokio::sync::oneshot::channel();
        if gossip.control.send(Control::Drain(done)).await.is_err() || applied.await.is_err() {
            return self.refuse(ErrorKind::Internal, Status::Internal, "gossip is not running".into());
        }
        tracing::info!(node = %self.id, operator = name, "draining");
        self.status_answer()
    }

    pub fn status(&self) -> NodeStatus {
        let (m, store, membership) = (self.metrics(), &self.lookup.store, &self.lookup.membership);
        let text = m.encode();
        let me = membership.me_info();
        let drain_left = membership.drain_left(Instant::now());
        NodeStatus {
            id: self.id.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            hits_memory: m.hits_total("memory"),
            hits_disk: m.hits_total("disk"),
            misses: m.misses_total(),
            bytes_served: m.bytes_served_total(),
            origin_requests: m.origin_requests_total(),
            origin_bytes: m.origin_bytes_total(),
            p50_ms: latency_quantile(&text, 0.5).map(|s| s * 1000.0),
            p99_ms: latency_quantile(&text, 0.99).map(|s| s * 1000.0),
            errors: m.errors_total(),
            memory_used: store.memory_used(),
            memory_capacity: store.memory_capacity(),
            disk_used: store.disk_used(&text),
            disk_capacity: store.disk_capacity(),
            page_size: u64::from(self.lookup.page_size),
            membership: if self.gossip.is_some() { "gossip" } else { "static" }.to_owned(),
            state: me.as_ref().map_or(MemberState::Serving, |m| m.state),
            weight: me.as_ref().map_or(0, |m| m.state.ring_weight(m.weight)),
            epoch: membership.epoch(),
            drained: drain_left.is_some_and(|d| d.is_zero()),
            drain_left_secs: drain_left.map(|d| d.as_secs_f64().ceil() as u64),
            handoff_pages: m.handoff_total("hit"),
            volumes: self.volume_uses(),
            resyncs: self.resyncs.reports(),
        }
    }

    /// Per volume (in name order): each origin's requests and bytes and their estimated cost,
    /// the copy backlog and outcomes, and the money the regional copy saved.
    pub fn volume_uses(&self) -> Vec<VolumeUse> {
        let m = self.metrics();
        let mut names: Vec<&Volume> = self.volumes.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let state = &self.volumes[name];
                let origins: Vec<OriginUse> = state
                    .prices
                    .iter()
                    .enumerate()
                    .map(|(i, price)| {
                        let (gets, get_bytes) = m.origin_op_totals(name, i, OriginOp::Get);
                        let (puts, put_bytes) = m.origin_op_totals(name, i, OriginOp::Put);
                        let mut u = OriginUse {
                            url: price.url.clone(),
                            replica: price.replica,
                            gets,
                            get_bytes,
                            gets_missing: m.origin_op_totals(name, i, OriginOp::GetMissing).0,
                            gets_failed: m.origin_op_totals(name, i, OriginOp::GetFailed).0,
                            heads: m.origin_op_totals(name, i, OriginOp::Head).0,
                            puts,
                            put_bytes,
                            spent: 0.0,
                        };
                        u.spent = price.spent(&u);
                        u
                    })
                    .collect();
                let backlog = self.lookup.copier.as_ref().map(|c| c.backlog(name)).unwrap_or_default();
                let copies = |o| m.copies_total(name, o);
                VolumeUse {
                    volume: name.to_string(),
                    spent: origins.iter().map(|o| o.spent).sum(),
                    saved: cost::saved(&state.prices, &origins),
                    origins,
                    copy_pending: backlog.objects,
                    copy_pending_bytes: backlog.bytes,
                    copy_oldest_secs: backlog.oldest.as_secs(),
                    copies_done: copies(CopyOutcome::Done),
                    copies_already_there: copies(CopyOutcome::AlreadyThere),
                    copies_redone: copies(CopyOutcome::Redone),
                    copies_failed: copies(CopyOutcome::Failed),
                    copies_not_queued: copies(CopyOutcome::NotQueued),
                }
            })
            .collect()
    }

    /// Updates the cache-use gauges (called before each metrics scrape).
    pub fn refresh_gauges(&self) {
        let (m, store) = (self.metrics(), &self.lookup.store);
        let text = m.encode();
        for (tier, used, capacity) in [
            ("memory", store.memory_used(), store.memory_capacity()),
            ("disk", store.disk_used(&text), store.disk_capacity()),
        ] {
            m.cache_used_bytes.get_or_create(&TierLabel { tier }).set(used as i64);
            m.cache_capacity_bytes.get_or_create(&TierLabel { tier }).set(capacity as i64);
        }
        for u in self.volume_uses() {
            let Some((name, _)) = self.volumes.get_key_value(u.volume.as_str()) else { continue };
            let volume = VolumeName(name.clone());
            let label = VolumeLabel { volume: volume.clone() };
            m.copy_backlog.get_or_create(&label).set(u.copy_pending as i64);
            m.copy_backlog_bytes.get_or_create(&label).set(u.copy_pending_bytes as i64);
            m.copy_oldest_seconds.get_or_create(&label).set(u.copy_oldest_secs as i64);
            m.cost.get_or_create(&CostLabel { volume: volume.clone(), kind: "spent" }).set(u.spent);
            m.cost.get_or_create(&CostLabel { volume, kind: "saved" }).set(u.saved);
        }
    }
}
