//! Copy on fill ("setup 2"): a volume whose first origin is its regional copy (`replica = true`)
//! is kept filled by the nodes that read it. When a node fills page 0 of an object from a source
//! because the regional copy lacks it, it queues one copy of the whole object into the regional
//! copy; the copy runs later, in the background, off every read's path.
//!
//! ```text
//! lookup.rs Fill::run (page 0 from origin i > 0) ─► Copier::offer ─try_send─► intake task
//!     (never waits: a full channel is counted as not_queued)              │ dedupe by key
//!                                                                         ▼
//!                     <data_dir>/copies/pending/<md5(volume,key)>.json (queue.rs, durable)
//!                                                                         │ one task per copy
//!                                                                         ▼
//!     permit (copy.concurrency) ─► transfer.rs: HEAD, bytes, pace (copy.bandwidth), PUT, verify
//!        ok: entry removed (done / already_there)   error: jittered backoff (pace.rs), again
//!        out of copy.attempts: entry moved to copies/failed (queued again at the next start)
//! ```
//!
//! Who copies: the node that fills page 0, which on a settled ring is page 0's owner, so readers
//! of an object on every node and client share one fill (single flight) and one copy. A page
//! other than 0 filled from a source queues nothing: whole-object reads (JuiceFS blocks are one
//! page) always read page 0, and objects read only in parts are left to the resync. A fill
//! elsewhere (a failover, a ring change) may queue a second copy of the same object on another
//! node; that copy finds the object already in the regional copy (HEAD: same size and MD5) and
//! writes nothing.
//!
//! Done means verified: the regional copy's answer to the PUT and a HEAD after it state the size
//! and MD5 of the bytes sent, which match the source's ETag when it is a plain MD5. A copy that
//! fails its check is written again (`redone`). The bytes come from the node's memory cache
//! when every page of the object is still there (no second source GET), else from the source.

mod asked;
mod pace;
pub mod queue;
mod transfer;

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cache_client::config::VolumeConfig;
use cache_client::origin::{OriginChain, open_store};
use cache_proto::key::{NodeId, ObjectKey, Volume};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use self::{
    asked::AskedError,
    queue::{CopyQueue, Pending, QueueError},
    transfer::{CopyError, Outcome, Target},
};
use self::{pace::Pace, transfer::Attempt};
use crate::{
    config::CopySection,
    metrics::{CopyOutcome, NodeMetrics, OriginOp},
    store::PageStore,
};

/// Offers waiting for the intake task; beyond this an offer is counted as not queued.
const OFFERS: usize = 4096;

/// Copies waiting on one volume: how many, their bytes, the oldest one's age.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub objects: u64,
    pub bytes: u64,
    pub oldest: Duration,
}

/// Why the copier could not start.
#[derive(Debug, thiserror::Error)]
pub enum CopierError {
    #[error("volume {volume}: its regional copy cannot be opened for writes: {message}")]
    Replica { volume: String, message: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The node's copier: the targets (volumes with a regional copy), the durable queue, and the
/// copies waiting. Cloned handles share one.
#[derive(Debug, Clone)]
pub struct Copier {
    inner: Arc<Inner>,
    offers: mpsc::Sender<Pending>,
}

#[derive(Debug)]
struct Inner {
    node: NodeId,
    targets: HashMap<Volume, Target>,
    queue: CopyQueue,
    config: CopySection,
    store: PageStore,
    page_size: u64,
    metrics: NodeMetrics,
    /// Copies queued and not yet done or failed, by entry id.
    pending: Mutex<HashMap<String, Pending>>,
    permits: Semaphore,
    pace: Mutex<Pace>,
    stop: CancellationToken,
}

/// What the copier needs from the node that starts it.
#[derive(Debug)]
pub struct CopierParts<'a> {
    pub node: NodeId,
    pub data_dir: &'a Path,
    pub config: CopySection,
    pub store: PageStore,
    pub page_size: u64,
    pub metrics: NodeMetrics,
    pub stop: CancellationToken,
}

impl Copier {
    /// Opens the queue in `<data_dir>/copies`, starts the intake task and one task per copy
    /// found there (a restart finishes what the last run left). `None` when no volume has a
    /// regional copy. `chains` are the volumes' origin chains, as the node reads them.
    pub fn start(
        parts: CopierParts<'_>,
        volumes: &[VolumeConfig],
        chains: &HashMap<Volume, Arc<OriginChain>>,
    ) -> Result<Option<Copier>, CopierError> {
        let mut targets = HashMap::new();
        for v in volumes.iter().filter(|v| v.origin.first().is_some_and(|o| o.replica)) {
            let Some(chain) = chains.get(&v.name) else { continue };
            let (replica, prefix) = open_store(&v.origin[0].for_writes())
                .map_err(|e| CopierError::Replica { volume: v.name.to_string(), message: e.to_string() })?;
            targets.insert(v.name.clone(), Target { volume: v.name.clone(), chain: chain.clone(), replica, prefix });
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let (queue, recovered) = CopyQueue::open(&parts.data_dir.join("copies"))?;
        for e in &recovered.unreadable {
            tracing::warn!(node = %parts.node, error = %e, "copy queue entry set aside");
        }
        let rate = parts.config.bandwidth.0;
        let inner = Arc::new(Inner {
            node: parts.node,
            targets,
            queue,
            permits: Semaphore::new(parts.config.concurrency),
            config: parts.config,
            store: parts.store,
            page_size: parts.page_size,
            metrics: parts.metrics,
            pending: Mutex::default(),
            pace: Mutex::new(Pace::new(rate)),
            stop: parts.stop,
        });
        if !recovered.pending.is_empty() {
            tracing::info!(node = %inner.node, pending = recovered.pending.len(), requeued_failed = recovered.requeued, "copies resumed");
        }
        for p in recovered.pending {
            if inner.targets.contains_key(p.volume.as_str()) {
                inner.pending.lock().insert(p.id(), p.clone());
                tokio::spawn(inner.clone().run(p));
            } else {
                tracing::warn!(node = %inner.node, volume = %p.volume, key = %p.key, "queued copy for a volume without a regional copy now; left in the queue");
            }
        }
        let (offers, intake) = mpsc::channel(OFFERS);
        tokio::spawn(inner.clone().intake(intake));
        Ok(Some(Copier { inner, offers }))
    }

    /// Queues a copy of `key` (its size and ETag as `source` reported them) into `volume`'s
    /// regional copy. Never waits: an offer that cannot be taken now is counted as not queued.
    pub fn offer(&self, volume: &Volume, key: &ObjectKey, size: u64, etag: Option<String>, source: usize) {
        if source == 0 || !self.inner.targets.contains_key(volume) {
            return;
        }
        if size > self.inner.config.max_object.0 {
            self.inner.metrics.copy(volume, CopyOutcome::NotQueued);
            return;
        }
        let queued_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let p = Pending { volume: volume.to_string(), key: key.to_string(), size, etag, source, queued_ms };
        if self.inner.pending.lock().contains_key(&p.id()) {
            return;
        }
        if self.offers.try_send(p).is_err() {
            self.inner.metrics.copy(volume, CopyOutcome::NotQueued);
        }
    }

    /// The copies waiting for `volume` on this node.
    pub fn backlog(&self, volume: &Volume) -> Backlog {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let pending = self.inner.pending.lock();
        let mut backlog = Backlog::default();
        let mut oldest = u64::MAX;
        for p in pending.values().filter(|p| p.volume == volume.as_str()) {
            backlog.objects += 1;
            backlog.bytes += p.size;
            oldest = oldest.min(p.queued_ms);
        }
        if backlog.objects > 0 {
            backlog.oldest = Duration::from_millis(now.saturating_sub(oldest));
        }
        backlog
    }
}

impl Inner {
    /// Takes offers one at a time: drops one already pending, refuses one beyond
    /// `max_pending`, writes the entry durably, then starts its copy.
    async fn intake(self: Arc<Self>, mut offers: mpsc::Receiver<Pending>) {
        loop {
            let p = tokio::select! {
                _ = self.stop.cancelled() => return,
                p = offers.recv() => match p { Some(p) => p, None => return },
            };
            let volume = self.targets.get(p.volume.as_str()).map(|t| t.volume.clone());
            let Some(volume) = volume else { continue };
            let id = p.id();
            {
                let mut pending = self.pending.lock();
                if pending.contains_key(&id) {
                    continue;
                }
                if pending.len() >= self.config.max_pending {
                    drop(pending);
                    tracing::warn!(node = %self.node, volume = %p.volume, key = %p.key, max = self.config.max_pending, "copy queue full; not queued");
                    self.metrics.copy(&volume, CopyOutcome::NotQueued);
                    continue;
                }
                pending.insert(id.clone(), p.clone());
            }
            let queue = self.queue.clone();
            let entry = p.clone();
            let pushed = tokio::task::spawn_blocking(move || queue.push(&entry)).await;
            match pushed {
                Ok(Ok(())) => {
                    tokio::spawn(self.clone().run(p));
                }
                Ok(Err(e)) => {
                    self.pending.lock().remove(&id);
                    tracing::warn!(node = %self.node, error = %e, "copy not queued");
                    self.metrics.copy(&volume, CopyOutcome::NotQueued);
                }
                Err(e) => {
                    self.pending.lock().remove(&id);
                    tracing::warn!(node = %self.node, error = %e, "copy queue write did not finish");
                    self.metrics.copy(&volume, CopyOutcome::NotQueued);
                }
            }
        }
    }

    /// Makes one copy: attempts within the budget, each with a permit, backoff between them.
    async fn run(self: Arc<Self>, p: Pending) {
        let Some(target) = self.targets.get(p.volume.as_str()) else { return };
        let volume = target.volume.clone();
        let metrics = self.metrics.clone();
        let count = move |origin: usize, op: OriginOp, bytes: u64| metrics.origin_op(&volume, origin, op, bytes);
        let config = &self.config;
        let mut use_cache = true;
        for attempt in 1..=config.attempts {
            let at = Attempt { store: &self.store, page_size: self.page_size, count: &count, use_cache };
            let result = tokio::select! {
                _ = self.stop.cancelled() => return,
                result = async {
                    let Ok(_permit) = self.permits.acquire().await else { return None };
                    Some(target.copy_once(&p, &at, |bytes| self.pace(bytes)).await)
                } => result,
            };
            let Some(result) = result else { return };
            match result {
                Ok(outcome) => {
                    let id = p.id();
                    let queue = self.queue.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || queue.remove(&id)).await {
                        tracing::warn!(node = %self.node, error = %e, "copy done, its queue entry stays (it will find the copy there)");
                    }
                    self.pending.lock().remove(&p.id());
                    let outcome =
                        if outcome == Outcome::AlreadyThere { CopyOutcome::AlreadyThere } else { CopyOutcome::Done };
                    self.metrics.copy(&target.volume, outcome);
                    tracing::debug!(node = %self.node, volume = %p.volume, key = %p.key, attempt, outcome = outcome.as_str(), "copy");
                    return;
                }
                Err(e) => {
                    let outcome = if e.is_bad_copy() { CopyOutcome::Redone } else { CopyOutcome::Retried };
                    use_cache &= !e.is_bad_copy();
                    self.metrics.copy(&target.volume, outcome);
                    tracing::warn!(node = %self.node, attempt, of = config.attempts, error = %e, "copy attempt failed");
                    if attempt < config.attempts {
                        let wait = pace::backoff(attempt, config.backoff.0, config.backoff_max.0, rand::random());
                        tokio::select! {
                            _ = self.stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
        let (id, queue) = (p.id(), self.queue.clone());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || queue.fail(&id)).await {
            tracing::warn!(node = %self.node, error = %e, "failed copy stays pending on disk");
        }
        self.pending.lock().remove(&p.id());
        self.metrics.copy(&target.volume, CopyOutcome::Failed);
        tracing::warn!(node = %self.node, volume = %p.volume, key = %p.key, attempts = config.attempts, "copy failed; kept for a resync");
    }

    /// Waits for `bytes`' turn under the bandwidth cap.
    async fn pace(&self, bytes: u64) {
        let wait = self.pace.lock().reserve(Instant::now(), bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
