//! The page store: a foyer hybrid cache (memory, then a block engine on local disk) of pages
//! keyed by (volume, object key, page index).
//!
//! Sizing follows foyer 0.22's sharp edges: memory is weighed in bytes and split into few enough
//! shards that each holds at least 32 pages (foyer splits capacity evenly; its default of 8
//! shards would leave a 64 MiB cache two pages a shard), the disk engine's block
//! holds 16 pages, the flush buffers and submit queue are large enough that an insert is never
//! dropped silently under a burst of fills, I/O is psync (io_uring busy-spins a core when idle),
//! pages are written to disk when admitted (so a crash keeps them), and `close()` runs on shutdown.
//!
//! [`PageStore::get_or_fill`] is the single-flight read-through, one flight per page for the disk
//! read and the fill together:
//! ```text
//! memory ─hit─► page
//!   │ miss: join the page's flight, or lead one (foyer runs it as its own task, so a cancelled
//!   ▼ caller never fails the others)
//! disk read (unless the read breaker skips the disk) ─page─► memory ─► every caller (tier: disk)
//!   │ miss, read error (a strike; the entry is dropped), or bypassed
//!   ▼
//! fill (origin) ─page─► memory ─► every caller (tier: origin); the caller whose fill ran
//!                       queues it for disk once (unless the write breaker skips the disk),
//!                       and a later miss checks that it became readable
//! ```
//! The flight is built from foyer's memory-cache `get_or_fetch_inner`, the building block of
//! `HybridCache::get` and `get_or_fetch`, rather than from those two, which (a) read the disk
//! whether or not it is failing; (b) hand a page filled for another request to `get`'s callers as
//! if read from disk (each then checked its digest again: a thousand readers of a cold page kept
//! a debug-built node busy ten seconds, past its clients' deadline); (c) queue a filled page for
//! disk once per `get_or_fetch` caller that waited on it; and (d) rewrote pages on every disk hit
//! (foyer-rs/foyer#1351). The API is doc-hidden: the version is pinned exactly. Mixing it with
//! `HybridCache::get` would be unsound (foyer downcasts a waiter's fetch context to the leader's
//! type and panics on a mismatch), so nothing here calls the hybrid lookups.
//! A disk that fails or is slow is skipped for a while, for reads and for writes separately, by
//! the [`DiskBreaker`]s: one failed write leaves foyer 0.22's block engine unable to write (it
//! reuses a block it already finished, then panics on a poisoned lock in its flush tasks), while
//! what it wrote before still reads back, checked.
//!
//! Files: `codec.rs` (a page and its key on disk), `flight.rs` (one flight per page),
//! `health.rs` (disk breakers and write confirmation), `breaker.rs` (one breaker).

mod breaker;
mod codec;
mod flight;
mod health;

pub use breaker::{BreakerPolicy, DiskBreaker, Strike};
pub use codec::{Page, PageEntry, PageKey};

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use cache_proto::wire::Tier;
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder, HybridCachePolicy,
    PsyncIoEngineConfig, RecoverMode,
};
use mixtrics::registry::prometheus_client_0_24::PrometheusClientMetricsRegistry;

use self::{
    flight::{flight, tier_of},
    health::DiskHealth,
};
use crate::{config::NodeConfig, metrics::NodeMetrics};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("disk cache at {dir}: {source}")]
    Open { dir: String, source: foyer::Error },
}

/// Why [`PageStore::get_or_fill`] has no page: the fill failed (its own error, as every caller
/// that waited on it sees it), or the cache itself did.
#[derive(Debug, thiserror::Error)]
pub enum FlightError<E> {
    #[error(transparent)]
    Fill(E),
    #[error("cache: {0}")]
    Cache(foyer::Error),
}

/// A [`PageKey`] made of borrowed names, to look a page up in memory without allocating. Its
/// `Hash` must equal `PageKey`'s: both hash the volume's string, the key's string, then the page.
#[derive(Debug, Hash)]
struct PageKeyRef<'a> {
    volume: &'a str,
    key: &'a str,
    page: u64,
}

impl equivalent::Equivalent<PageKey> for PageKeyRef<'_> {
    fn equivalent(&self, key: &PageKey) -> bool {
        self.page == key.page && self.volume == key.volume.as_str() && self.key == key.key.as_str()
    }
}

/// The node's hybrid page cache.
#[derive(Debug, Clone)]
pub struct PageStore {
    cache: HybridCache<PageKey, Page>,
    disk: Arc<DiskHealth>,
    memory_capacity: u64,
    disk_capacity: u64,
    block_size: u64,
}

/// How long `close` waits for the disk writes in flight (a failing disk may never finish them).
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

impl PageStore {
    /// Opens (and recovers) the cache described by `[cache]`, registering foyer's metrics into
    /// `metrics`' registry and counting the disk breakers' into `metrics`.
    pub async fn open(config: &NodeConfig, metrics: &NodeMetrics) -> Result<Self, StoreError> {
        Self::open_with(config, metrics, BreakerPolicy::default()).await
    }

    /// [`Self::open`] with the disk breaker's thresholds given (tests use short ones).
    pub async fn open_with(
        config: &NodeConfig,
        metrics: &NodeMetrics,
        policy: BreakerPolicy,
    ) -> Result<Self, StoreError> {
        let registry = metrics.registry.clone();
        let dir = config.disk_dir();
        let open_err = |source| StoreError::Open { dir: dir.display().to_string(), source };
        let c = &config.cache;
        let block_size = c.block_size();
        let device = FsDeviceBuilder::new(&dir)
            .with_capacity(c.disk_capacity.0 as usize)
            .with_direct(c.direct_io)
            .build()
            .map_err(|e| {
                let hint = if c.direct_io {
                    " (if this file system has no O_DIRECT, set [cache] direct_io = false)"
                } else {
                    ""
                };
                StoreError::Open { dir: format!("{}{hint}", dir.display()), source: e }
            })?;
        let engine = BlockEngineConfig::new(device)
            .with_block_size(block_size as usize)
            .with_buffer_pool_size(2 * block_size as usize)
            .with_submit_queue_size_threshold(4 * block_size as usize)
            .with_flushers(2)
            .with_reclaimers(2)
            .with_clean_block_threshold(2);
        let cache = HybridCacheBuilder::new()
            .with_name("mirrorcache")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            .with_metrics_registry(Box::new(PrometheusClientMetricsRegistry::new(registry.clone())))
            .memory(c.memory_capacity.0 as usize)
            .with_shards(c.memory_shards())
            .with_weighter(|k: &PageKey, v: &Page| k.estimated_size() + v.estimated_size() + 64)
            .storage()
            .with_io_engine_config(PsyncIoEngineConfig::new())
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .build()
            .await
            .map_err(open_err)?;
        let disk = Arc::new(DiskHealth::new(policy, metrics));
        Ok(Self { cache, disk, memory_capacity: c.memory_capacity.0, disk_capacity: c.disk_capacity.0, block_size })
    }

    /// The page under `key`, from memory, disk, or `fill` (run at most once for concurrent
    /// callers: every waiter of a failed fill gets its error). A disk that fails is a miss,
    /// never an error.
    pub async fn get_or_fill<F, E>(&self, key: &PageKey, fill: F) -> Result<(PageEntry, Tier), FlightError<E>>
    where
        F: Future<Output = Result<Page, E>> + Send + 'static,
        E: std::error::Error + Clone + Send + Sync + 'static,
    {
        if let Some(entry) = self.cache.memory().get(key) {
            return Ok((entry, Tier::Memory));
        }
        self.disk.confirm_writes(self.cache.storage()).await;
        let ran = Arc::new(AtomicBool::new(false));
        let fill = {
            let ran = ran.clone();
            async move {
                ran.store(true, Ordering::Relaxed);
                fill.await.map_err(anyhow::Error::new)
            }
        };
        let entry = match flight(&self.cache, &self.disk, key, Some(fill)).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                return Err(FlightError::Cache(foyer::Error::new(foyer::ErrorKind::External, "fill returned nothing")));
            }
            // foyer keeps the fill's error as the source of its own, shared by every waiter.
            Err(e) => {
                return Err(match e.source().and_then(|s| s.downcast_ref::<E>()) {
                    Some(fill) => FlightError::Fill(fill.clone()),
                    None => FlightError::Cache(e),
                });
            }
        };
        let tier = tier_of(&entry);
        // The page goes to disk once, queued by the caller whose fill ran (the others got the
        // same entry). If that caller was dropped before the fill ended, the page stays in
        // memory only: a later miss fills it again.
        if tier == Tier::Origin && ran.load(Ordering::Relaxed) && self.disk.writes.allows(Instant::now()) {
            self.disk.write(self.cache.storage(), &entry);
        }
        Ok((entry, tier))
    }

    /// The page if it is cached (memory, then disk); fetches nothing. Only a fill it waited for
    /// can fail it.
    pub async fn get_cached(&self, key: &PageKey) -> Result<Option<(PageEntry, Tier)>, foyer::Error> {
        if let Some(entry) = self.cache.memory().get(key) {
            return Ok(Some((entry, Tier::Memory)));
        }
        let entry =
            flight(&self.cache, &self.disk, key, None::<std::future::Ready<Result<Page, anyhow::Error>>>).await?;
        Ok(entry.map(|entry| {
            let tier = tier_of(&entry);
            (entry, tier)
        }))
    }

    /// The page if it is in memory: a lookup by borrowed names that neither awaits nor allocates.
    pub fn memory_get(&self, volume: &str, key: &str, page: u64) -> Option<PageEntry> {
        self.cache.memory().get(&PageKeyRef { volume, key, page })
    }

    /// Whether the page is in memory or (probably: foyer's disk index) on disk; fetches nothing.
    pub fn contains(&self, key: &PageKey) -> bool {
        self.cache.contains(key)
    }

    /// Drops a page from both tiers.
    pub fn remove(&self, key: &PageKey) {
        self.disk.forget(key);
        self.cache.remove(key);
    }

    /// Drops `entry` (e.g. a page that failed its digest) unless the page was already replaced:
    /// of several requests that got the same bad page, only the first drops it, and the others
    /// leave the page filled again meanwhile alone.
    pub fn remove_entry(&self, key: &PageKey, entry: &PageEntry) {
        let replaced =
            self.cache.memory().get(key).is_some_and(|now| now.value().bytes.as_ptr() != entry.value().bytes.as_ptr());
        if !replaced {
            self.remove(key);
        }
    }

    /// Whether the disk tier is read, and written (false while a breaker skips a failing disk).
    pub fn disk_in_use(&self) -> (bool, bool) {
        let now = Instant::now();
        (self.disk.reads.allows(now), self.disk.writes.allows(now))
    }

    pub fn memory_used(&self) -> u64 {
        self.cache.memory().usage() as u64
    }

    pub fn memory_capacity(&self) -> u64 {
        self.memory_capacity
    }

    pub fn disk_capacity(&self) -> u64 {
        self.disk_capacity
    }

    /// Disk bytes holding pages: foyer's count of written and writing blocks, read back from its
    /// gauges in the metrics text, times the block size.
    pub fn disk_used(&self, metrics_text: &str) -> u64 {
        let blocks: f64 = metrics_text
            .lines()
            .filter(|l| {
                l.starts_with("foyer_storage_block_engine_block{")
                    && (l.contains("type=\"evictable\"") || l.contains("type=\"writing\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        ((blocks.max(0.0) as u64) * self.block_size).min(self.disk_capacity)
    }

    /// Flushes memory to disk and closes the engine, so the next start is warm. Gives up after
    /// [`CLOSE_DEADLINE`], and survives a panic of foyer's (after a failed write its engine panics
    /// on a poisoned lock, also when closing): a node must still stop, and cleanly.
    pub async fn close(&self) -> Result<(), foyer::Error> {
        let cache = self.cache.clone();
        match tokio::time::timeout(CLOSE_DEADLINE, tokio::spawn(async move { cache.close().await })).await {
            Ok(Ok(closed)) => closed,
            Ok(Err(panicked)) => {
                Err(foyer::Error::new(foyer::ErrorKind::Join, format!("closing the disk cache failed: {panicked}")))
            }
            Err(_) => Err(foyer::Error::new(
                foyer::ErrorKind::Io,
                format!("disk writes still in flight after {CLOSE_DEADLINE:?}; closed without them"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cache_proto::key::{ObjectKey, Volume};

    use super::*;
    use cache_proto::units::ByteSize;

    /// foyer's count of pages queued for disk writes (prometheus-client adds a `_total` of its
    /// own to foyer's `foyer_storage_op_total`).
    fn disk_enqueues(metrics: &NodeMetrics) -> u64 {
        let text = metrics.encode();
        let line = text.lines().find(|l| l.starts_with("foyer_storage_op_total") && l.contains("op=\"enqueue\""));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    }

    #[derive(Debug, Clone, thiserror::Error)]
    #[error("no fill")]
    struct NoFill;

    #[tokio::test]
    async fn hits_do_not_queue_the_page_for_disk_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = NodeConfig::local(
            cache_proto::key::NodeId::new("a").expect("id"),
            dir.path(),
            cache_client::config::TlsConfig::in_dir(dir.path(), "a"),
        );
        config.cache.memory_capacity = ByteSize::mib(4);
        config.cache.disk_capacity = ByteSize::mib(512);
        config.cache.page_size = ByteSize::mib(1);
        config.validate().expect("valid");
        let metrics = NodeMetrics::new(Vec::new());
        let store = PageStore::open(&config, &metrics).await.expect("open");
        let key = |page| PageKey { volume: Volume::new("v").expect("v"), key: ObjectKey::new("k").expect("k"), page };
        let page = || Page { object_size: 8 << 20, etag: None, digest: 0, bytes: Bytes::from(vec![7u8; 1 << 20]) };

        let (_, tier) = store.get_or_fill(&key(0), async move { Ok::<_, NoFill>(page()) }).await.expect("fill");
        assert_eq!(tier, Tier::Origin);
        // Borrowed names find what owned keys stored (their hashes agree).
        assert!(store.memory_get("v", "k", 0).is_some());
        assert!(store.memory_get("v", "k", 1).is_none() && store.memory_get("w", "k", 0).is_none());
        assert_eq!(disk_enqueues(&metrics), 1, "a fill is written to disk once");
        for _ in 0..10 {
            let (_, tier) = store.get_or_fill(&key(0), async { Err::<Page, _>(NoFill) }).await.expect("hit");
            assert_eq!(tier, Tier::Memory);
        }
        assert_eq!(disk_enqueues(&metrics), 1, "memory hits queue nothing for disk");

        // Push page 0 out of the 4 MiB memory tier, then read it back from disk.
        for p in 1..=8 {
            store.get_or_fill(&key(p), async move { Ok::<_, NoFill>(page()) }).await.expect("fill");
        }
        let queued = disk_enqueues(&metrics);
        assert!(!store.cache.memory().contains(&key(0)), "page 0 still in memory");
        let mut tier = Tier::Memory;
        for _ in 0..200 {
            // The flusher writes asynchronously: until page 0 is on disk, `get` may miss it.
            if let Ok((_, t)) = store.get_or_fill(&key(0), async { Err::<Page, _>(NoFill) }).await {
                tier = t;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(tier, Tier::Disk);
        assert_eq!(disk_enqueues(&metrics), queued, "a disk hit is not written back");
        store.close().await.expect("close");
    }
}
