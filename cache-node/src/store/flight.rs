//! One flight per page: the disk read and the fill of a page, run once for every concurrent
//! caller. Built from foyer's memory-cache `get_or_fetch_inner` (the building block of
//! `HybridCache::get` and `get_or_fetch`) so that the disk read can be skipped while its breaker
//! is open, and a page filled for another request reaches its waiters as filled, not as if read
//! from disk (see `store/mod.rs` for why the hybrid lookups are not used).
//!
//! ```text
//! join or lead the flight of `key`
//!   ├─ disk read (unless the read breaker is open): a page, or a miss (a read error is a strike
//!   │   and drops the entry; an indexed page that does not read back is counted as dropped)
//!   └─ then `fill`, if there is one: the page, kept in memory only (the caller queues it for disk)
//! ```

use std::{future::Future, sync::Arc, time::Instant};

use foyer::{HybridCache, HybridCacheEntry, HybridCacheProperties, Load, Location, Source};
use futures::FutureExt;

use super::{
    codec::{Page, PageEntry, PageKey},
    health::DiskHealth,
};
use cache_proto::wire::Tier;

/// Joins or leads the flight of `key`: a disk read (unless the read breaker skips the disk), then
/// `fill` if there is one. Resolves to `None` when nothing was found and there was no fill.
pub(super) async fn flight<F>(
    cache: &HybridCache<PageKey, Page>,
    disk: &Arc<DiskHealth>,
    key: &PageKey,
    fill: Option<F>,
) -> Result<Option<PageEntry>, foyer::Error>
where
    F: Future<Output = Result<Page, anyhow::Error>> + Send + 'static,
{
    let memory = cache.memory();
    let disk_read = || {
        if !disk.reads.allows(Instant::now()) {
            return None;
        }
        let (storage, disk, key) = (cache.storage().clone(), disk.clone(), key.clone());
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
                            disk.dropped(&key, Instant::now());
                            tracing::warn!(volume = %key.volume, key = %key.key, page = key.page, "page on disk did not read back intact; refilling");
                        }
                        Ok(None)
                    }
                    Ok(Load::Throttled) => Ok(None),
                    Err(e) => {
                        tracing::warn!(volume = %key.volume, key = %key.key, page = key.page, error = %e, "disk cache read failed; dropping the entry");
                        disk.reads.record_strike(super::Strike::Error, Instant::now());
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
                        Ok(page) => Ok((page, HybridCacheProperties::default().with_location(Location::InMem)).into()),
                        Err(e) => Err(foyer::Error::new(foyer::ErrorKind::External, "fetch failed").with_source(e)),
                    }
                }
                .boxed()
            }) as _
        })
    };
    // `poll_inner`, not `.await`: the future's `Future` impl panics on a miss without a fill.
    let mut flight =
        std::pin::pin!(memory.get_or_fetch_inner(key, disk_read, origin_fill, (), cache.storage().spawner()));
    std::future::poll_fn(|cx| flight.as_mut().poll_inner(cx)).await
}

/// Where a flight's entry came from, as the client is told.
pub(super) fn tier_of(entry: &HybridCacheEntry<PageKey, Page>) -> Tier {
    match entry.source() {
        Source::Memory => Tier::Memory,
        Source::Disk => Tier::Disk,
        Source::Outer => Tier::Origin,
    }
}
