//! What a node does with one decoded request: authorise it, find the page ([`crate::lookup`]),
//! and build the [`Answer`]. No sockets here: the server hands in a [`RequestView`] borrowed
//! from the frame and writes out the answer's head and payload, or, for a miss this request
//! fills from the origin, the page's bytes as they arrive ([`crate::streamed`]).
//!
//! A memory hit allocates nothing: names stay borrowed from the frame, maps and the cache are
//! searched by `&str`, metric labels clone an `Arc`, the head is encoded into a stack buffer and
//! the payload is a `Bytes` slice of the cached page.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_client::{node_cert::NodeCerts, origin::OriginChain, pool::Pool};
use cache_proto::{
    digest::page_digest,
    key::{NodeId, ObjectKey, Volume},
    wire::{
        GetView, MemberState, MembersAnswer, NodeStatus, RequestView, ResponseHead, Status, Tier, WarmMode, WarmOutcome,
    },
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    answer::{Answer, json_answer, page_answer},
    lookup::{Failure, Found},
    membership::{
        Membership,
        driver::{Control, GossipHandle},
    },
    metrics::{ErrorKind, KindLabel, NodeMetrics, TierLabel, VolumeLabel, VolumeName, VolumeTier, latency_quantile},
    store::{Page, PageKey, PageStore},
};

/// A volume as a node serves it.
#[derive(Debug)]
pub struct VolumeState {
    pub token: String,
    pub origin: Arc<OriginChain>,
}

#[derive(Debug)]
pub struct Service {
    pub id: NodeId,
    pub volumes: HashMap<Volume, VolumeState>,
    pub store: PageStore,
    pub metrics: NodeMetrics,
    pub page_size: u32,
    pub origin_timeout: Duration,
    pub inflight: Semaphore,
    /// One permit per page being filled from the origin at once (`node.max_fill_bytes`).
    pub fills: Arc<Semaphore>,
    pub started: Instant,
    /// The ring as this node sees it, and the rings before it (for handoff).
    pub membership: Arc<Membership>,
    /// Gossip membership: the task that keeps `membership` current. `None`: static.
    pub gossip: Option<GossipHandle>,
    /// Connections to the other nodes, for warm handoff.
    pub peers: Arc<Pool>,
    /// Client certificate names that may drain this node.
    pub operators: Vec<String>,
    /// Tells node certificates from client certificates (gossip is heard from nodes only).
    pub node_certs: NodeCerts,
    /// Sees every answer before it is written (tests inject faults here; `None` in a product).
    pub hooks: crate::Hooks,
}

/// A request's place in the node's in-flight limit and gauge, given back when dropped (also when
/// a streamed answer is cut short by the response deadline).
pub(crate) struct InFlight<'a> {
    gauge: &'a Gauge,
    _permit: SemaphorePermit<'a>,
}

impl<'a> InFlight<'a> {
    fn new(gauge: &'a Gauge, permit: SemaphorePermit<'a>) -> Self {
        gauge.inc();
        Self { gauge, _permit: permit }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Compares secrets in time that depends only on their lengths.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Service {
    /// The answer to one request from `peer` (the name in the caller's certificate).
    pub async fn answer<'a>(&'a self, request: RequestView<'a>, peer: Option<&str>) -> Answer<'a> {
        match request {
            RequestView::Get(get) => self.get(get).await,
            RequestView::Warm(get, mode) => self.warm(&get, mode).await,
            RequestView::Peek(get) => self.peek(&get).await,
            RequestView::Status => json_answer(&self.status()),
            RequestView::Members => {
                let view = self.membership.view();
                json_answer(&MembersAnswer { epoch: view.epoch, members: view.members.clone() })
            }
            RequestView::Drain => self.drain(peer).await,
        }
    }

    /// Takes this node off the ring (gossip membership only), for an operator.
    async fn drain(&self, peer: Option<&str>) -> Answer<'static> {
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
        json_answer(&self.status())
    }

    /// A whole page only if this node has it cached (a new owner asking after a ring change).
    async fn peek(&self, get: &GetView<'_>) -> Answer<'static> {
        let (volume, _) = match self.authorise(get) {
            Ok(v) => v,
            Err(refusal) => return *refusal,
        };
        let Ok(object) = ObjectKey::new(get.key) else {
            return self.refuse(ErrorKind::BadRequest, Status::BadRequest, format!("bad key {:?}", get.key));
        };
        let key = PageKey { volume: volume.clone(), key: object, page: get.page };
        match self.store.get_cached(&key).await {
            Ok(Some((entry, tier))) => {
                let page = entry.value();
                if tier == Tier::Disk && page_digest(volume, &key.key, key.page, 0, &page.bytes) != page.digest {
                    self.store.remove(&key);
                    self.metrics.error(ErrorKind::Corrupt);
                } else {
                    self.metrics.peeks.get_or_create(&KindLabel { kind: "hit" }).inc();
                    return self.slice(get, page, tier);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = %self.id, error = %e, "cache failed on a peek"),
        }
        self.metrics.peeks.get_or_create(&KindLabel { kind: "miss" }).inc();
        Answer::other(
            ResponseHead::error(Status::NotCached, format!("node {} has not cached it", self.id)),
            Bytes::new(),
        )
    }

    pub(crate) fn refuse(&self, kind: ErrorKind, status: Status, message: String) -> Answer<'static> {
        self.metrics.error(kind);
        tracing::debug!(node = %self.id, kind = kind.as_str(), %message, "refused");
        Answer::other(ResponseHead::error(status, message), Bytes::new())
    }

    /// The volume a request may read, or the refusal to send: unknown volume, wrong token, or
    /// another page size.
    fn authorise(&self, get: &GetView<'_>) -> Result<(&Volume, &VolumeState), Box<Answer<'static>>> {
        let Some((volume, state)) = self.volumes.get_key_value(get.volume) else {
            let msg = format!("node {} serves no volume {}", self.id, get.volume);
            return Err(Box::new(self.refuse(ErrorKind::UnknownVolume, Status::UnknownVolume, msg)));
        };
        if !same_secret(get.token, &state.token) {
            let msg = format!("wrong token for volume {}", get.volume);
            return Err(Box::new(self.refuse(ErrorKind::Unauthorized, Status::Unauthorized, msg)));
        }
        if get.page_size != self.page_size {
            let msg = format!("page size {} asked, node {} uses {}", get.page_size, self.id, self.page_size);
            return Err(Box::new(self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg)));
        }
        Ok((volume, state))
    }

    fn busy(&self) -> Answer<'static> {
        let msg = format!("node {} is at its limit of requests in flight", self.id);
        self.refuse(ErrorKind::Busy, Status::Busy, msg)
    }

    async fn get<'a>(&'a self, get: GetView<'a>) -> Answer<'a> {
        let (volume, state) = match self.authorise(&get) {
            Ok(v) => v,
            Err(refusal) => return *refusal,
        };
        let Ok(permit) = self.inflight.try_acquire() else { return self.busy() };
        let in_flight = InFlight::new(&self.metrics.inflight, permit);
        let began = Instant::now();
        // A memory hit is answered here, allocating nothing; anything else may stream a fill.
        let Some(entry) = self.store.memory_get(volume.as_str(), get.key, get.page) else {
            return self.get_streaming(get, volume, state, in_flight, began).await;
        };
        drop(in_flight);
        self.answer_found(&get, volume, Ok((Found::Cached(entry), Tier::Memory)), began)
    }

    /// Counts a page answer of `bytes` from `tier`: a hit or a miss, the bytes, the time taken.
    pub(crate) fn count_served(&self, volume: &Volume, tier: Tier, bytes: usize, began: Instant) {
        let name = VolumeName(volume.clone());
        if tier == Tier::Origin {
            self.metrics.misses.get_or_create(&VolumeLabel { volume: name.clone() }).inc();
        } else {
            self.metrics.hits.get_or_create(&VolumeTier { volume: name.clone(), tier: tier.as_str() }).inc();
        }
        let served = VolumeTier { volume: name, tier: tier.as_str() };
        self.metrics.bytes_served.get_or_create(&served).inc_by(bytes as u64);
        let label = TierLabel { tier: tier.as_str() };
        self.metrics.request_seconds.get_or_create(&label).observe(began.elapsed().as_secs_f64());
    }

    /// The answer for what a lookup found (or why it found nothing), with its metrics counted.
    pub(crate) fn answer_found(
        &self,
        get: &GetView<'_>,
        volume: &Volume,
        found: Result<(Found, Tier), Failure>,
        began: Instant,
    ) -> Answer<'static> {
        match found {
            Ok((found, tier)) => {
                let answer = self.slice(get, found.page(), tier);
                self.count_served(volume, tier, answer.payload.len(), began);
                answer
            }
            Err(Failure::OutOfRange { size }) => {
                // The page starts past the object's end: an empty answer that carries the size.
                let empty = Page { object_size: size, etag: None, digest: 0, bytes: Bytes::new() };
                self.slice(get, &empty, Tier::Origin)
            }
            Err(Failure::NotFound(msg)) => self.refuse(ErrorKind::NotFound, Status::NotFound, msg),
            Err(Failure::Origin(msg)) => self.refuse(ErrorKind::Origin, Status::OriginFailed, msg),
        }
    }

    /// Fills, checks or evicts one whole page for `cachectl warmup`.
    async fn warm(&self, get: &GetView<'_>, mode: WarmMode) -> Answer<'static> {
        let (volume, state) = match self.authorise(get) {
            Ok(v) => v,
            Err(refusal) => return *refusal,
        };
        let Ok(object) = ObjectKey::new(get.key) else {
            return self.refuse(ErrorKind::BadRequest, Status::BadRequest, format!("bad key {:?}", get.key));
        };
        let key = PageKey { volume: volume.clone(), key: object, page: get.page };
        let (outcome, object_size) = match mode {
            WarmMode::Check => {
                (if self.store.contains(&key) { WarmOutcome::Present } else { WarmOutcome::Absent }, None)
            }
            WarmMode::Evict => {
                self.store.remove(&key);
                (WarmOutcome::Evicted, None)
            }
            WarmMode::Fill => {
                let Ok(_permit) = self.inflight.try_acquire() else { return self.busy() };
                match self.lookup(volume, state, get, None).await {
                    Ok((found, Tier::Origin)) => (WarmOutcome::Filled, Some(found.page().object_size)),
                    Ok((found, _)) => (WarmOutcome::Present, Some(found.page().object_size)),
                    Err(Failure::OutOfRange { size }) => {
                        let msg = format!("page {} of {} starts past its end ({size} bytes)", get.page, get.key);
                        return self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg);
                    }
                    Err(Failure::NotFound(msg)) => return self.refuse(ErrorKind::NotFound, Status::NotFound, msg),
                    Err(Failure::Origin(msg)) => return self.refuse(ErrorKind::Origin, Status::OriginFailed, msg),
                }
            }
        };
        self.metrics.warms.get_or_create(&KindLabel { kind: outcome.as_str() }).inc();
        Answer::other(ResponseHead::Warm { outcome, object_size }, Bytes::new())
    }

    pub fn status(&self) -> NodeStatus {
        let m = &self.metrics;
        let text = m.encode();
        let me = self.membership.me_info();
        let drain_left = self.membership.drain_left(Instant::now());
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
            memory_used: self.store.memory_used(),
            memory_capacity: self.store.memory_capacity(),
            disk_used: self.store.disk_used(&text),
            disk_capacity: self.store.disk_capacity(),
            page_size: u64::from(self.page_size),
            membership: if self.gossip.is_some() { "gossip" } else { "static" }.to_owned(),
            state: me.as_ref().map_or(MemberState::Serving, |m| m.state),
            weight: me.as_ref().map_or(0, |m| m.state.ring_weight(m.weight)),
            epoch: self.membership.epoch(),
            drained: drain_left.is_some_and(|d| d.is_zero()),
            drain_left_secs: drain_left.map(|d| d.as_secs_f64().ceil() as u64),
            handoff_pages: m.handoff_total("hit"),
        }
    }

    /// Updates the cache-use gauges (called before each metrics scrape).
    pub fn refresh_gauges(&self) {
        let text = self.metrics.encode();
        let m = &self.metrics;
        for (tier, used, capacity) in [
            ("memory", self.store.memory_used(), self.store.memory_capacity()),
            ("disk", self.store.disk_used(&text), self.store.disk_capacity()),
        ] {
            m.cache_used_bytes.get_or_create(&TierLabel { tier }).set(used as i64);
            m.cache_capacity_bytes.get_or_create(&TierLabel { tier }).set(capacity as i64);
        }
    }
}

impl Service {
    /// The asked-for part of a page, with its head encoded on the stack. The digest of a whole
    /// page is the one computed at fill time; a part's is computed over the bytes sent.
    fn slice(&self, get: &GetView<'_>, page: &Page, tier: Tier) -> Answer<'static> {
        page_answer(get, page, tier, self.membership.epoch())
    }
}
