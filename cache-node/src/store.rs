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

mod breaker;

pub use breaker::{BreakerPolicy, DiskBreaker, Strike};

use std::{
    collections::VecDeque,
    future::Future,
    io::Read,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_proto::{
    key::{ObjectKey, Volume},
    wire::Tier,
};
use foyer::{
    BlockEngineConfig, Code, DefaultHasher, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCacheEntry, HybridCachePolicy, HybridCacheProperties, Load, Location, PsyncIoEngineConfig, RecoverMode,
    Source, Store,
};
use futures::FutureExt;
use mixtrics::registry::prometheus_client_0_24::PrometheusClientMetricsRegistry;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

use crate::{config::NodeConfig, metrics::NodeMetrics};

/// Cache key of one page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub volume: Volume,
    pub key: ObjectKey,
    pub page: u64,
}

/// One cached page: the bytes and what the origin said about the object.
#[derive(Debug, Clone)]
pub struct Page {
    pub object_size: u64,
    pub etag: Option<String>,
    /// `page_digest(volume, key, page, 0, bytes)`, computed from the origin's bytes at fill time
    /// and checked again whenever the page comes back from disk.
    pub digest: u64,
    pub bytes: Bytes,
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

pub type PageEntry = HybridCacheEntry<PageKey, Page>;

/// Largest page the disk decoder will allocate for (the config allows at most 16 MiB).
const MAX_STORED_PAGE: usize = 16 << 20;
const PAGE_FORMAT: u8 = 1;

fn coding_error(what: &str) -> foyer::Error {
    foyer::Error::new(foyer::ErrorKind::Parse, format!("stored page: {what}"))
}

fn read_u64(r: &mut impl Read) -> foyer::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b).map_err(foyer::Error::io_error)?;
    Ok(u64::from_be_bytes(b))
}

fn read_str(r: &mut impl Read, max: usize) -> foyer::Result<String> {
    let mut len = [0; 2];
    r.read_exact(&mut len).map_err(foyer::Error::io_error)?;
    let len = u16::from_be_bytes(len) as usize;
    if len > max {
        return Err(coding_error("name too long"));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).map_err(foyer::Error::io_error)?;
    String::from_utf8(buf).map_err(|_| coding_error("name not UTF-8"))
}

fn write_str(w: &mut impl std::io::Write, s: &str) -> foyer::Result<()> {
    w.write_all(&(s.len() as u16).to_be_bytes()).map_err(foyer::Error::io_error)?;
    w.write_all(s.as_bytes()).map_err(foyer::Error::io_error)
}

impl Code for PageKey {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        write_str(w, self.volume.as_str())?;
        write_str(w, self.key.as_str())?;
        w.write_all(&self.page.to_be_bytes()).map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let volume =
            Volume::new(&read_str(r, cache_proto::key::MAX_VOLUME_LEN)?).map_err(|_| coding_error("volume"))?;
        let key = ObjectKey::new(&read_str(r, cache_proto::key::MAX_KEY_LEN)?).map_err(|_| coding_error("key"))?;
        Ok(Self { volume, key, page: read_u64(r)? })
    }

    fn estimated_size(&self) -> usize {
        4 + self.volume.as_str().len() + self.key.as_str().len() + 8
    }
}

impl Code for Page {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        w.write_all(&[PAGE_FORMAT]).map_err(foyer::Error::io_error)?;
        w.write_all(&self.object_size.to_be_bytes()).map_err(foyer::Error::io_error)?;
        w.write_all(&self.digest.to_be_bytes()).map_err(foyer::Error::io_error)?;
        write_str(w, self.etag.as_deref().unwrap_or(""))?;
        w.write_all(&(self.bytes.len() as u64).to_be_bytes()).map_err(foyer::Error::io_error)?;
        w.write_all(&self.bytes).map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let mut format = [0];
        r.read_exact(&mut format).map_err(foyer::Error::io_error)?;
        if format[0] != PAGE_FORMAT {
            return Err(coding_error("unknown format"));
        }
        let object_size = read_u64(r)?;
        let digest = read_u64(r)?;
        let etag = read_str(r, cache_proto::wire::MAX_ETAG_LEN)?;
        let len = read_u64(r)?;
        if len > MAX_STORED_PAGE as u64 || len > object_size {
            return Err(coding_error("length out of range"));
        }
        // One copy out of foyer's read buffer, into memory that is not zeroed first.
        let mut bytes = Vec::with_capacity(len as usize);
        r.take(len).read_to_end(&mut bytes).map_err(foyer::Error::io_error)?;
        if bytes.len() as u64 != len {
            return Err(coding_error("page cut short"));
        }
        Ok(Self { object_size, etag: (!etag.is_empty()).then_some(etag), digest, bytes: Bytes::from(bytes) })
    }

    fn estimated_size(&self) -> usize {
        1 + 8 + 8 + 2 + self.etag.as_ref().map_or(0, String::len) + 8 + self.bytes.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("disk cache at {dir}: {source}")]
    Open { dir: String, source: foyer::Error },
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
/// A page queued for disk this long ago is readable from it, or its write was lost.
const WRITE_CONFIRM_AFTER: Duration = Duration::from_secs(5);
/// Queued pages awaiting that check, at most (beyond, pages are not checked).
const WRITES_TO_CONFIRM: usize = 1024;

/// The disk tier's health: a breaker for reads and one for writes, and the pages queued for disk
/// whose writes are still to be confirmed.
#[derive(Debug)]
struct DiskHealth {
    reads: DiskBreaker,
    writes: DiskBreaker,
    /// Pages the disk index had that did not read back intact.
    dropped: Counter,
    queued: Mutex<VecDeque<(PageKey, Instant)>>,
}

impl DiskHealth {
    fn new(policy: BreakerPolicy, metrics: &NodeMetrics) -> Self {
        let (dropped, metrics) = (metrics.disk_dropped.clone(), &metrics.breakers);
        let now = Instant::now();
        Self {
            reads: DiskBreaker::new("read", policy.clone(), metrics, now),
            writes: DiskBreaker::new("write", policy, metrics, now),
            dropped,
            queued: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues `entry` for disk, to be confirmed by [`Self::confirm_writes`].
    fn write(&self, storage: &Store<PageKey, Page, DefaultHasher, HybridCacheProperties>, entry: &PageEntry) {
        storage.enqueue(entry.piece(), false);
        let mut queued = self.queued.lock();
        if queued.len() < WRITES_TO_CONFIRM {
            queued.push_back((entry.key().clone(), Instant::now()));
        }
    }

    /// Checks the pages queued for disk long enough ago: each is readable (a clean write), still
    /// in the write queue (checked again later), or lost (a failed or dropped write: a strike).
    async fn confirm_writes(&self, storage: &Store<PageKey, Page, DefaultHasher, HybridCacheProperties>) {
        for _ in 0..16 {
            let now = Instant::now();
            let due = {
                let mut queued = self.queued.lock();
                match queued.front() {
                    Some((_, at)) if now.duration_since(*at) >= WRITE_CONFIRM_AFTER => queued.pop_front(),
                    _ => None,
                }
            };
            let Some((key, _)) = due else { return };
            if storage.may_contains(&key) {
                self.writes.record_ok(now);
                continue;
            }
            // Not indexed: no disk read is made here, only the write queue is looked at.
            match storage.load(&key).await {
                Ok(Load::Piece { .. }) => self.queued.lock().push_back((key, now)),
                _ => {
                    tracing::warn!(volume = %key.volume, key = %key.key, page = key.page, "page queued for disk never became readable");
                    self.writes.record_strike(Strike::Lost, now);
                }
            }
        }
    }

    /// Stops checking `key`'s write (the page was removed on purpose).
    fn forget(&self, key: &PageKey) {
        self.queued.lock().retain(|(k, _)| k != key);
    }
}

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
    /// callers). The error of a failed fill is `fill`'s own, reachable with `downcast_ref`; a
    /// disk that fails is a miss, never an error.
    pub async fn get_or_fill<F, E>(&self, key: &PageKey, fill: F) -> Result<(PageEntry, Tier), foyer::Error>
    where
        F: Future<Output = Result<Page, E>> + Send + 'static,
        E: Into<anyhow::Error>,
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
                fill.await.map_err(Into::into)
            }
        };
        let entry = self.flight(key, Some(fill)).await?;
        let entry = entry.ok_or_else(|| foyer::Error::new(foyer::ErrorKind::External, "fill returned nothing"))?;
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
        let entry = self.flight(key, None::<std::future::Ready<Result<Page, anyhow::Error>>>).await?;
        Ok(entry.map(|entry| {
            let tier = tier_of(&entry);
            (entry, tier)
        }))
    }

    /// Joins or leads the flight of `key`: a disk read (unless the read breaker skips the disk), then
    /// `fill` if there is one. Resolves to `None` when nothing was found and there was no fill.
    async fn flight<F>(&self, key: &PageKey, fill: Option<F>) -> Result<Option<PageEntry>, foyer::Error>
    where
        F: Future<Output = Result<Page, anyhow::Error>> + Send + 'static,
    {
        let memory = self.cache.memory();
        let disk_read = || {
            if !self.disk.reads.allows(Instant::now()) {
                return None;
            }
            let (storage, disk, key) = (self.cache.storage().clone(), self.disk.clone(), key.clone());
            Some(Box::new(move |_: &mut ()| {
                async move {
                    let started = Instant::now();
                    let indexed = storage.may_contains(&key);
                    match storage.load(&key).await {
                        Ok(Load::Entry { value, .. }) => {
                            disk.reads.record_read(started.elapsed(), Instant::now());
                            Ok(Some((value, HybridCacheProperties::default()).into()))
                        }
                        // Still in the write queue: no disk read.
                        Ok(Load::Piece { piece, .. }) => Ok(Some(piece.into())),
                        Ok(Load::Miss) => {
                            // Indexed but not read back: foyer's checksum, header or key check
                            // failed (bit rot, a torn write) and it dropped the entry; or the
                            // block was evicted meanwhile.
                            if indexed {
                                disk.dropped.inc();
                                tracing::warn!(volume = %key.volume, key = %key.key, page = key.page, "page on disk did not read back intact; refilling");
                            }
                            Ok(None)
                        }
                        Ok(Load::Throttled) => Ok(None),
                        Err(e) => {
                            tracing::warn!(volume = %key.volume, key = %key.key, page = key.page, error = %e, "disk cache read failed; dropping the entry");
                            disk.reads.record_strike(Strike::Error, Instant::now());
                            storage.delete(&key);
                            Ok(None)
                        }
                    }
                }
                .boxed()
            }) as _)
        };
        let origin_fill = || {
            fill.map(|fill| {
                Box::new(move |_: &mut ()| {
                    async move {
                        match fill.await {
                            // In memory only: `get_or_fill` queues it for disk, once.
                            Ok(page) => {
                                Ok((page, HybridCacheProperties::default().with_location(Location::InMem)).into())
                            }
                            Err(e) => Err(foyer::Error::new(foyer::ErrorKind::External, "fetch failed").with_source(e)),
                        }
                    }
                    .boxed()
                }) as _
            })
        };
        // `poll_inner`, not `.await`: the future's `Future` impl panics on a miss without a fill.
        let mut flight =
            std::pin::pin!(memory.get_or_fetch_inner(key, disk_read, origin_fill, (), self.cache.storage().spawner()));
        std::future::poll_fn(|cx| flight.as_mut().poll_inner(cx)).await
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

/// Where a flight's entry came from, as the client is told.
fn tier_of(entry: &PageEntry) -> Tier {
    match entry.source() {
        Source::Memory => Tier::Memory,
        Source::Disk => Tier::Disk,
        Source::Outer => Tier::Origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// foyer's count of pages queued for disk writes (prometheus-client adds a `_total` of its
    /// own to foyer's `foyer_storage_op_total`).
    fn disk_enqueues(metrics: &NodeMetrics) -> u64 {
        let text = metrics.encode();
        let line = text.lines().find(|l| l.starts_with("foyer_storage_op_total") && l.contains("op=\"enqueue\""));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    }

    #[tokio::test]
    async fn hits_do_not_queue_the_page_for_disk_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = format!(
            "[node]\nid = \"a\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             [cache]\nmemory_capacity = \"4MiB\"\ndisk_capacity = \"512MiB\"\npage_size = \"1MiB\"\n\
             [tls]\nca = \"x\"\ncert = \"x\"\nkey = \"x\"\n",
            dir.path().display()
        );
        let config: NodeConfig = cache_client::config::parse_toml(&toml).expect("config");
        config.validate().expect("valid");
        let metrics = NodeMetrics::new(Vec::new());
        let store = PageStore::open(&config, &metrics).await.expect("open");
        let key = |page| PageKey { volume: Volume::new("v").expect("v"), key: ObjectKey::new("k").expect("k"), page };
        let page = || Page { object_size: 8 << 20, etag: None, digest: 0, bytes: Bytes::from(vec![7u8; 1 << 20]) };

        let (_, tier) = store.get_or_fill(&key(0), async move { Ok::<_, std::io::Error>(page()) }).await.expect("fill");
        assert_eq!(tier, Tier::Origin);
        // Borrowed names find what owned keys stored (their hashes agree).
        assert!(store.memory_get("v", "k", 0).is_some());
        assert!(store.memory_get("v", "k", 1).is_none() && store.memory_get("w", "k", 0).is_none());
        assert_eq!(disk_enqueues(&metrics), 1, "a fill is written to disk once");
        for _ in 0..10 {
            let (_, tier) = store
                .get_or_fill(&key(0), async { Err::<Page, _>(std::io::Error::other("no fill")) })
                .await
                .expect("hit");
            assert_eq!(tier, Tier::Memory);
        }
        assert_eq!(disk_enqueues(&metrics), 1, "memory hits queue nothing for disk");

        // Push page 0 out of the 4 MiB memory tier, then read it back from disk.
        for p in 1..=8 {
            store.get_or_fill(&key(p), async move { Ok::<_, std::io::Error>(page()) }).await.expect("fill");
        }
        let queued = disk_enqueues(&metrics);
        assert!(!store.cache.memory().contains(&key(0)), "page 0 still in memory");
        let mut tier = Tier::Memory;
        for _ in 0..200 {
            // The flusher writes asynchronously: until page 0 is on disk, `get` may miss it.
            if let Ok((_, t)) =
                store.get_or_fill(&key(0), async { Err::<Page, _>(std::io::Error::other("miss")) }).await
            {
                tier = t;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(tier, Tier::Disk);
        assert_eq!(disk_enqueues(&metrics), queued, "a disk hit is not written back");
        store.close().await.expect("close");
    }

    #[test]
    fn stored_pages_round_trip_and_reject_garbage() {
        let page =
            Page { object_size: 10, etag: Some("\"e\"".into()), digest: 7, bytes: Bytes::from_static(b"0123456789") };
        let mut buf = Vec::new();
        page.encode(&mut buf).expect("encodes");
        let back = Page::decode(&mut &buf[..]).expect("decodes");
        assert_eq!((back.object_size, back.etag, back.digest, back.bytes), (10, page.etag, 7, page.bytes));
        for cut in 0..buf.len() {
            assert!(Page::decode(&mut &buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[0] = 99;
        assert!(Page::decode(&mut &bad[..]).is_err());
        // A length larger than the object it belongs to.
        let mut lying = buf.clone();
        let len_at = 1 + 8 + 8 + 2 + 3;
        lying[len_at..len_at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(Page::decode(&mut &lying[..]).is_err());

        let key =
            PageKey { volume: Volume::new("v").expect("valid"), key: ObjectKey::new("a/b").expect("valid"), page: 3 };
        let mut kbuf = Vec::new();
        key.encode(&mut kbuf).expect("encodes");
        assert_eq!(PageKey::decode(&mut &kbuf[..]).expect("decodes"), key);
    }
}
