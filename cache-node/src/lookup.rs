//! Finding a page for a request: memory (by borrowed key, without allocating), then disk
//! (checked against its digest), then a single-flight fill: from the page's previous owner if
//! the ring changed within the handoff window (warm handoff), else from the volume's origin
//! chain; and, if the cache itself fails, the origin directly. [`Found`] keeps a cache hit as
//! foyer's entry, so answering it copies nothing.
//!
//! ```text
//! Lookup::find ─► store.memory_get ─hit─► Found::Cached (Tier::Memory)
//!      │ miss
//!      ▼
//! store.get_or_fill(key, fill) ─► disk ─► Fill::run: peek the previous owners ─miss─► origin,
//!      │                                     its head and bytes told to the page's FillTap
//!      │                                     (every request for the page streams from it)
//!      │ disk page fails its digest: dropped, looked up once more
//!      │ a fill this request waited on failed with an origin error: filled once more
//!      └ the cache fails: fill_page without the cache (Found::Uncached)
//! ```
//!
//! [`Lookup`] holds what finding a page needs (the store, the ring for handoff, the peers, the
//! fill budget), and nothing of how a request is answered.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use cache_client::{
    origin::{OriginChain, OriginError, Passed},
    pool::{ExchangeError, Pool},
};
use cache_proto::{
    digest::page_digest,
    key::{NodeId, ObjectKey, Volume},
    ring::{Member, page_point},
    wire::{Get, GetView, Request, ResponseHead, Status, Tier, WireError},
};
use tokio::sync::Semaphore;

use crate::{
    copy::Copier,
    cost::OriginPrice,
    fill_tap::FillTaps,
    membership::Membership,
    metrics::{ErrorKind, KindLabel, NodeMetrics, OriginOp, VolumeLabel, VolumeName},
    store::{FlightError, Page, PageEntry, PageKey, PageStore},
};

/// A volume as a node serves it.
#[derive(Debug)]
pub struct VolumeState {
    pub token: String,
    pub origin: Arc<OriginChain>,
    /// The origins' prices and roles, for the cost estimate.
    pub prices: Vec<OriginPrice>,
}

/// Why a lookup found no page: what the client is told. Cloned to every request that waited on
/// the same fill.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The page starts past the object's end.
    #[error("the page starts past the object's end ({size} bytes)")]
    OutOfRange { size: u64 },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Origin(String),
    /// The node's fill budget stayed taken for [`FILL_QUEUE_WAIT`]: told as `Busy`, so the
    /// reader goes elsewhere instead of queueing here.
    #[error("{0}")]
    Busy(String),
}

/// How long a fill waits for room in the fill budget (`node.max_fill_bytes`) before the node
/// answers Busy. Room that has not come in this long is held by fills that each take at least
/// that long, so the queue behind them is seconds; the reader does better at the next node or
/// at the origin (FAULTS.md "memory": reads queued here for 6-9 s).
pub const FILL_QUEUE_WAIT: Duration = Duration::from_millis(500);

impl From<OriginError> for Failure {
    fn from(e: OriginError) -> Self {
        match e {
            OriginError::OutOfRange { size, .. } => Self::OutOfRange { size },
            e @ OriginError::NotFound { .. } => Self::NotFound(e.to_string()),
            e => Self::Origin(e.to_string()),
        }
    }
}

/// A page found for a request: a cache entry (shared, no copy), or one read past the cache.
#[derive(Debug)]
pub enum Found {
    Cached(PageEntry),
    Uncached(Page),
}

impl Found {
    pub fn page(&self) -> &Page {
        match self {
            Self::Cached(entry) => entry.value(),
            Self::Uncached(page) => page,
        }
    }
}

/// Finds pages: the node's store, and what a fill reads from and is bounded by.
#[derive(Debug)]
pub struct Lookup {
    /// This node, for logs.
    pub id: NodeId,
    pub store: PageStore,
    pub metrics: NodeMetrics,
    /// The ring as this node sees it, and the rings before it (for handoff).
    pub membership: Arc<Membership>,
    /// Connections to the other nodes, for warm handoff.
    pub peers: Arc<Pool>,
    /// One permit per page being filled from the origin at once (`node.max_fill_bytes`).
    pub fills: Arc<Semaphore>,
    /// The fills in progress, told to every request for their page.
    pub taps: Arc<FillTaps>,
    pub page_size: u32,
    pub origin_timeout: Duration,
    /// Copies objects filled from a source into the volume's regional copy (`None`: no volume
    /// has one).
    pub copier: Option<Copier>,
}

impl Lookup {
    /// Finds page `get.page` of `get.key`. A page from disk is checked against its digest; a bad
    /// one is dropped and filled again. A request that waited on another request's fill, and saw
    /// that fill fail with an error that may pass (a timeout, an origin error: not a missing
    /// object), tries once more under a new single flight, so the waiters of a failed leader
    /// share one new origin GET instead of failing with it. If the cache itself fails, the page
    /// is read from the origin without caching, so the client still gets its bytes.
    pub async fn find(
        &self,
        volume: &Volume,
        state: &VolumeState,
        get: &GetView<'_>,
    ) -> Result<(Found, Tier), Failure> {
        if let Some(entry) = self.store.memory_get(volume.as_str(), get.key, get.page) {
            return Ok((Found::Cached(entry), Tier::Memory));
        }
        // A page past the object's end costs the origin a GET and a HEAD to learn so; when the
        // first page is cached, its object size already says it.
        if get.page > 0
            && let Some(first) = self.store.memory_get(volume.as_str(), get.key, 0)
        {
            let size = first.value().object_size;
            if get.page * u64::from(self.page_size) >= size {
                return Err(Failure::OutOfRange { size });
            }
        }
        let object = ObjectKey::new(get.key).map_err(|e| Failure::Origin(e.to_string()))?;
        let key = PageKey { volume: volume.clone(), key: object, page: get.page };
        let previous = self.membership.previous_owners(page_point(volume, &key.key, key.page), Instant::now());
        let fill = || {
            let handoff = (!previous.is_empty()).then(|| Handoff {
                owners: previous.clone(),
                peers: self.peers.clone(),
                token: state.token.clone(),
            });
            let fill = Fill {
                origin: state.origin.clone(),
                handoff,
                taps: self.taps.clone(),
                key: key.clone(),
                page_size: self.page_size,
                timeout: self.origin_timeout,
                metrics: self.metrics.clone(),
                fills: self.fills.clone(),
                copier: self.copier.clone(),
            };
            fill.run()
        };
        let (mut corrupt_retries, mut takeovers) = (1, 1);
        loop {
            // Set when this request's own fill runs (it leads the flight).
            let led = Arc::new(AtomicBool::new(false));
            let own_fill = {
                let (led, fill) = (led.clone(), fill());
                async move {
                    led.store(true, Ordering::Relaxed);
                    fill.await
                }
            };
            match self.store.get_or_fill(&key, own_fill).await {
                Ok((entry, tier)) => {
                    let page = entry.value();
                    if tier == Tier::Disk && page_digest(&key.volume, &key.key, key.page, 0, &page.bytes) != page.digest
                    {
                        tracing::warn!(node = %self.id, volume = %key.volume, key = %key.key, page = key.page, "page failed its digest on disk; refetching");
                        self.metrics.error(ErrorKind::Corrupt);
                        // Every request that waited on this disk read got the same bad page;
                        // the first drops it, and leaves the page filled again meanwhile alone.
                        self.store.remove_entry(&key, &entry);
                        if corrupt_retries > 0 {
                            corrupt_retries -= 1;
                            continue;
                        }
                        break;
                    }
                    return Ok((Found::Cached(entry), tier));
                }
                Err(FlightError::Fill(failure)) => {
                    if takeovers > 0 && !led.load(Ordering::Relaxed) && matches!(failure, Failure::Origin(_)) {
                        takeovers -= 1;
                        tracing::debug!(node = %self.id, volume = %key.volume, key = %key.key, page = key.page, error = %failure, "the fill this request waited on failed; filling again");
                        continue;
                    }
                    return Err(failure);
                }
                Err(FlightError::Cache(e)) => {
                    tracing::warn!(node = %self.id, error = %e, "cache failed; reading the origin directly");
                    self.metrics.error(ErrorKind::Internal);
                    break;
                }
            }
        }
        fill().await.map(|page| (Found::Uncached(page), Tier::Origin))
    }
}

/// Deadline for a page from its previous owner (node to node, on the same network, where a
/// 4 MiB page takes tens of milliseconds). Past it the origin is likely the faster source: a
/// previous owner behind a saturated link (FAULTS.md "slow") held fills, and the reads waiting
/// on them, for up to 5 s when this was 5 s.
const HANDOFF_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where to ask for a page before the origin: its owners before the last ring changes, most
/// likely first (`Membership::previous_owners`).
struct Handoff {
    owners: Vec<Member>,
    peers: Arc<Pool>,
    token: String,
}

/// Why the previous owner did not hand a page over (the fill then reads the origin).
#[derive(Debug, thiserror::Error)]
enum HandoffMiss {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("node {0} sent a page that fails its digest")]
    BadDigest(NodeId),
    #[error("{}: {}", .0.as_str(), .1)]
    Refused(Status, String),
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

impl Handoff {
    /// The whole page from the first previous owner that has it cached, its bytes checked.
    async fn page(&self, key: &PageKey, page_size: u32) -> Option<Page> {
        for owner in &self.owners {
            match self.peek(owner, key, page_size).await {
                Ok(page) => return Some(page),
                Err(why) => {
                    tracing::debug!(volume = %key.volume, key = %key.key, page = key.page, owner = %owner.id, %why, "handoff miss");
                }
            }
        }
        None
    }

    /// The whole page, if `owner` has it cached and its bytes pass their digest.
    async fn peek(&self, owner: &Member, key: &PageKey, page_size: u32) -> Result<Page, HandoffMiss> {
        let request = Request::Peek(Get {
            volume: key.volume.clone(),
            token: self.token.clone(),
            key: key.key.clone(),
            page_size,
            page: key.page,
            start: 0,
            len: page_size,
        });
        let offset = key.page * u64::from(page_size);
        let accept = |head: &ResponseHead| match head {
            ResponseHead::Page(p)
                if u64::from(p.len) != p.object_size.saturating_sub(offset).min(u64::from(page_size)) =>
            {
                Err(WireError::Range(format!("{} bytes for this page", p.len)))
            }
            _ => Ok(()),
        };
        let (head, bytes) = self.peers.exchange(owner, &request, HANDOFF_TIMEOUT, accept).await?;
        match head {
            ResponseHead::Page(p) => {
                let digest = page_digest(&key.volume, &key.key, key.page, 0, &bytes);
                if digest != p.digest || bytes.is_empty() {
                    return Err(HandoffMiss::BadDigest(owner.id.clone()));
                }
                Ok(Page { object_size: p.object_size, etag: p.etag, digest, bytes })
            }
            ResponseHead::Error(e) => Err(HandoffMiss::Refused(e.status, e.message)),
            other => Err(HandoffMiss::Unexpected(format!("{other:?}"))),
        }
    }
}

/// One page's fill: where it reads (the previous owner, else the origin chain, whose head and
/// bytes the page's tap is told as they arrive, for streamed answers) and what bounds it.
struct Fill {
    origin: Arc<OriginChain>,
    handoff: Option<Handoff>,
    taps: Arc<FillTaps>,
    key: PageKey,
    page_size: u32,
    timeout: Duration,
    metrics: NodeMetrics,
    fills: Arc<Semaphore>,
    copier: Option<Copier>,
}

impl Fill {
    /// A cacheable [`Page`] whose digest was computed or checked here.
    async fn run(self) -> Result<Page, Failure> {
        let Self { origin, handoff, taps, key, page_size, timeout, metrics, fills, copier } = self;
        let timed_out = || Failure::Origin(format!("origin did not answer {} within {timeout:?}", key.key));
        // One permit per page buffer being filled (`node.max_fill_bytes`): fills beyond it wait
        // here, before they allocate, so a burst of cold pages cannot grow the node past its
        // budget. Readers of the same page share one fill, and so one permit. The semaphore is
        // never closed; a fill that gets no room within FILL_QUEUE_WAIT is Busy.
        let wait = FILL_QUEUE_WAIT.min(timeout);
        let Ok(Ok(_permit)) = tokio::time::timeout(wait, fills.acquire_owned()).await else {
            return Err(Failure::Busy(format!("fill budget (node.max_fill_bytes) full for {wait:?}; read elsewhere")));
        };
        if let Some(handoff) = handoff {
            if let Some(page) = handoff.page(&key, page_size).await {
                metrics.handoff.get_or_create(&KindLabel { kind: "hit" }).inc();
                return Ok(page);
            }
            metrics.handoff.get_or_create(&KindLabel { kind: "miss" }).inc();
        }
        let start = key.page * u64::from(page_size);
        let volume = VolumeLabel { volume: VolumeName(key.volume.clone()) };
        metrics.origin_requests.get_or_create(&volume).inc();
        let range = start..start + u64::from(page_size);
        let tap = taps.tap(&key);
        tap.begin();
        let (events, mut told) = tokio::sync::mpsc::unbounded_channel();
        let read = async {
            let read = tokio::time::timeout(timeout, origin.get_range_tapped(&key.key, range, Some(&events))).await;
            drop(events);
            read
        };
        let tell = async {
            while let Some(event) = told.recv().await {
                tap.publish(event);
            }
        };
        let (read, ()) = tokio::join!(read, tell);
        tap.end();
        let read = match read.map_err(|_| timed_out())? {
            Ok(read) => read,
            Err(e) => {
                if matches!(e, OriginError::NotFound { .. }) {
                    for i in 0..origin.len() {
                        metrics.origin_op(&key.volume, i, OriginOp::GetMissing, 0);
                    }
                }
                return Err(e.into());
            }
        };
        metrics.origin_bytes.get_or_create(&volume).inc_by(read.bytes.len() as u64);
        // The origins before the one that answered each said "no such object"; a regional copy
        // may instead have failed, or been skipped after a failure (not asked).
        for i in 0..read.origin {
            match (i, read.first) {
                (0, Some(Passed::Failed)) => metrics.origin_op(&key.volume, 0, OriginOp::GetFailed, 0),
                (0, Some(Passed::Skipped)) => {}
                _ => metrics.origin_op(&key.volume, i, OriginOp::GetMissing, 0),
            }
        }
        metrics.origin_op(&key.volume, read.origin, OriginOp::Get, read.bytes.len() as u64);
        // Page 0 came from a source: the regional copy lacks the object (copy/mod.rs).
        if key.page == 0
            && read.origin > 0
            && let Some(copier) = &copier
        {
            copier.offer(&key.volume, &key.key, read.object_size, read.etag.clone(), read.origin);
        }
        let digest = page_digest(&key.volume, &key.key, key.page, 0, &read.bytes);
        Ok(Page { object_size: read.object_size, etag: read.etag, digest, bytes: read.bytes })
    }
}
