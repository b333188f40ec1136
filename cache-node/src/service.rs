//! What a node does with one decoded request: authorise, look the page up (memory, disk, or a
//! single-flight fill from the volume's origins), and build the answer. No sockets here: the
//! server hands in a [`Request`] and writes out the [`ResponseHead`] and payload it gets back.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_client::{
    digest::page_digest,
    key::{NodeId, Volume},
    origin::{OriginChain, OriginError},
    wire::{Get, NodeStatus, PageHead, Request, ResponseHead, Status, Tier, Warm, WarmMode, WarmOutcome},
};
use tokio::sync::Semaphore;

use crate::{
    metrics::{NodeMetrics, TierLabel, VolumeLabel, VolumeName, VolumeTier, latency_quantile},
    store::{Page, PageKey, PageStore},
};

/// Why a fill did not produce a page.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("origin did not answer {key} within {after:?}")]
    Timeout { key: String, after: Duration },
}

/// What a failed lookup tells the client (owned: foyer shares the fill's error by reference).
#[derive(Debug)]
enum Failure {
    /// The page starts past the object's end.
    OutOfRange {
        size: u64,
    },
    NotFound(String),
    Origin(String),
}

impl From<&FillError> for Failure {
    fn from(e: &FillError) -> Self {
        match e {
            FillError::Origin(OriginError::OutOfRange { size, .. }) => Self::OutOfRange { size: *size },
            FillError::Origin(e @ OriginError::NotFound { .. }) => Self::NotFound(e.to_string()),
            e => Self::Origin(e.to_string()),
        }
    }
}

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
    pub started: Instant,
}

/// Compares secrets in time that depends only on their lengths.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Service {
    /// The answer to one request: a head, and the payload bytes that follow it (maybe empty).
    pub async fn answer(&self, request: Request) -> (ResponseHead, Bytes) {
        match request {
            Request::Get(get) => self.get(get).await,
            Request::Warm(warm) => self.warm(warm).await,
            Request::Status => {
                let json = serde_json::to_vec(&self.status()).unwrap_or_default();
                (ResponseHead::Status { len: json.len() as u32 }, Bytes::from(json))
            }
        }
    }

    fn refuse(&self, kind: &'static str, status: Status, message: String) -> (ResponseHead, Bytes) {
        self.metrics.error(kind);
        tracing::debug!(node = %self.id, kind, %message, "refused");
        (ResponseHead::error(status, message), Bytes::new())
    }

    /// The volume a request may read, or the refusal to send: unknown volume, wrong token, or
    /// another page size.
    fn authorise(&self, get: &Get) -> Result<&VolumeState, (ResponseHead, Bytes)> {
        let Some(volume) = self.volumes.get(&get.volume) else {
            let msg = format!("node {} serves no volume {}", self.id, get.volume);
            return Err(self.refuse("unknown_volume", Status::UnknownVolume, msg));
        };
        if !same_secret(&get.token, &volume.token) {
            let msg = format!("wrong token for volume {}", get.volume);
            return Err(self.refuse("unauthorized", Status::Unauthorized, msg));
        }
        if get.page_size != self.page_size {
            let msg = format!("page size {} asked, node {} uses {}", get.page_size, self.id, self.page_size);
            return Err(self.refuse("bad_request", Status::BadRequest, msg));
        }
        Ok(volume)
    }

    fn busy(&self) -> (ResponseHead, Bytes) {
        let msg = format!("node {} is at its limit of requests in flight", self.id);
        self.refuse("busy", Status::Busy, msg)
    }

    async fn get(&self, get: Get) -> (ResponseHead, Bytes) {
        let volume = match self.authorise(&get) {
            Ok(v) => v,
            Err(refusal) => return refusal,
        };
        let Ok(_permit) = self.inflight.try_acquire() else { return self.busy() };
        self.metrics.inflight.inc();
        let began = Instant::now();
        let answer = self.lookup(&get, volume).await;
        self.metrics.inflight.dec();
        match answer {
            Ok((page, tier)) => {
                let volume = VolumeName(get.volume.clone());
                if tier == Tier::Origin {
                    self.metrics.misses.get_or_create(&VolumeLabel { volume: volume.clone() }).inc();
                } else {
                    self.metrics.hits.get_or_create(&VolumeTier { volume: volume.clone(), tier: tier.as_str() }).inc();
                }
                let (head, payload) = self.slice(&get, &page, tier);
                let served = VolumeTier { volume, tier: tier.as_str() };
                self.metrics.bytes_served.get_or_create(&served).inc_by(payload.len() as u64);
                let label = TierLabel { tier: tier.as_str() };
                self.metrics.request_seconds.get_or_create(&label).observe(began.elapsed().as_secs_f64());
                (head, payload)
            }
            Err(Failure::OutOfRange { size }) => {
                // The page starts past the object's end: an empty answer that carries the size.
                let digest = page_digest(&get.volume, &get.key, get.page, get.start, &[]);
                let head = PageHead { object_size: size, digest, len: 0, tier: Tier::Origin, etag: None };
                (ResponseHead::Page(head), Bytes::new())
            }
            Err(Failure::NotFound(msg)) => self.refuse("not_found", Status::NotFound, msg),
            Err(Failure::Origin(msg)) => self.refuse("origin", Status::OriginFailed, msg),
        }
    }

    /// Fills, checks or evicts one whole page for `cachectl warmup`.
    async fn warm(&self, warm: Warm) -> (ResponseHead, Bytes) {
        let get = warm.as_get();
        let volume = match self.authorise(&get) {
            Ok(v) => v,
            Err(refusal) => return refusal,
        };
        let key = PageKey { volume: get.volume.clone(), key: get.key.clone(), page: get.page };
        let (outcome, object_size) = match warm.mode {
            WarmMode::Check => {
                (if self.store.contains(&key) { WarmOutcome::Present } else { WarmOutcome::Absent }, None)
            }
            WarmMode::Evict => {
                self.store.remove(&key);
                (WarmOutcome::Evicted, None)
            }
            WarmMode::Fill => {
                let Ok(_permit) = self.inflight.try_acquire() else { return self.busy() };
                match self.lookup(&get, volume).await {
                    Ok((page, Tier::Origin)) => (WarmOutcome::Filled, Some(page.object_size)),
                    Ok((page, _)) => (WarmOutcome::Present, Some(page.object_size)),
                    Err(Failure::OutOfRange { size }) => {
                        let msg = format!("page {} of {} starts past its end ({size} bytes)", get.page, get.key);
                        return self.refuse("bad_request", Status::BadRequest, msg);
                    }
                    Err(Failure::NotFound(msg)) => return self.refuse("not_found", Status::NotFound, msg),
                    Err(Failure::Origin(msg)) => return self.refuse("origin", Status::OriginFailed, msg),
                }
            }
        };
        self.metrics.warms.get_or_create(&crate::metrics::KindLabel { kind: outcome.as_str() }).inc();
        (ResponseHead::Warm { outcome, object_size }, Bytes::new())
    }

    /// Finds the page in the cache or fills it. A page from disk is checked against its digest;
    /// a bad one is dropped and filled again. If the cache itself fails (a disk error), the page
    /// is read from the origin without caching, so the client still gets its bytes.
    async fn lookup(&self, get: &Get, volume: &VolumeState) -> Result<(Page, Tier), Failure> {
        let key = PageKey { volume: get.volume.clone(), key: get.key.clone(), page: get.page };
        for _ in 0..2 {
            let fill = fill_page(
                volume.origin.clone(),
                key.clone(),
                self.page_size,
                self.origin_timeout,
                self.metrics.clone(),
            );
            match self.store.get_or_fill(&key, fill).await {
                Ok((entry, tier)) => {
                    let page = entry.value();
                    if tier == Tier::Disk && page_digest(&key.volume, &key.key, key.page, 0, &page.bytes) != page.digest
                    {
                        tracing::warn!(node = %self.id, volume = %key.volume, key = %key.key, page = key.page, "page failed its digest on disk; refetching");
                        self.metrics.error("corrupt");
                        self.store.remove(&key);
                        continue;
                    }
                    return Ok((page.clone(), tier));
                }
                Err(e) => {
                    if let Some(fill) = e.downcast_ref::<FillError>() {
                        return Err(Failure::from(fill));
                    }
                    tracing::warn!(node = %self.id, error = %e, "cache failed; reading the origin directly");
                    self.metrics.error("internal");
                    break;
                }
            }
        }
        let fill = fill_page(volume.origin.clone(), key, self.page_size, self.origin_timeout, self.metrics.clone());
        fill.await.map(|page| (page, Tier::Origin)).map_err(|e| Failure::from(&e))
    }

    /// The asked-for part of a page, and its head.
    fn slice(&self, get: &Get, page: &Page, tier: Tier) -> (ResponseHead, Bytes) {
        let have = page.bytes.len();
        let start = (get.start as usize).min(have);
        let end = (start + get.len as usize).min(have);
        let bytes = page.bytes.slice(start..end);
        let digest = if start == 0 && end == have {
            page.digest
        } else {
            page_digest(&get.volume, &get.key, get.page, get.start, &bytes)
        };
        let head =
            PageHead { object_size: page.object_size, digest, len: bytes.len() as u32, tier, etag: page.etag.clone() };
        (ResponseHead::Page(head), bytes)
    }

    pub fn status(&self) -> NodeStatus {
        let m = &self.metrics;
        let text = m.encode();
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
        }
    }

    /// Updates the cache-use gauges (called before each metrics scrape).
    pub fn refresh_gauges(&self) {
        let text = self.metrics.encode();
        let m = &self.metrics;
        let set = |family: &prometheus_client::metrics::family::Family<
            TierLabel,
            prometheus_client::metrics::gauge::Gauge,
        >,
                   tier,
                   v: u64| {
            family.get_or_create(&TierLabel { tier }).set(v as i64);
        };
        set(&m.cache_used_bytes, "memory", self.store.memory_used());
        set(&m.cache_used_bytes, "disk", self.store.disk_used(&text));
        set(&m.cache_capacity_bytes, "memory", self.store.memory_capacity());
        set(&m.cache_capacity_bytes, "disk", self.store.disk_capacity());
    }
}

/// Reads one page from the origin chain and makes it a cacheable [`Page`].
async fn fill_page(
    origin: Arc<OriginChain>,
    key: PageKey,
    page_size: u32,
    timeout: Duration,
    metrics: NodeMetrics,
) -> Result<Page, FillError> {
    let start = key.page * u64::from(page_size);
    let volume = VolumeLabel { volume: VolumeName(key.volume.clone()) };
    metrics.origin_requests.get_or_create(&volume).inc();
    let read = tokio::time::timeout(timeout, origin.get_range(&key.key, start..start + u64::from(page_size)))
        .await
        .map_err(|_| FillError::Timeout { key: key.key.to_string(), after: timeout })??;
    metrics.origin_bytes.get_or_create(&volume).inc_by(read.bytes.len() as u64);
    let digest = page_digest(&key.volume, &key.key, key.page, 0, &read.bytes);
    Ok(Page { object_size: read.object_size, etag: read.etag, digest, bytes: read.bytes })
}
