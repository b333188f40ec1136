//! The disk tier's health: a [`DiskBreaker`] for reads and one for writes, and the pages queued
//! for disk whose writes are still to be confirmed. One failed write leaves foyer 0.22's block
//! engine unable to write again, while what it wrote before still reads back (checked), so the
//! two directions are judged apart.
//!
//! ```text
//! fill ─► write(entry): queued for disk, remembered with the time
//! later miss ─► confirm_writes: written long enough ago? readable ─► ok
//!                                                       still queued ─► look again later
//!                                                       gone ─► a strike (Lost) on writes
//! disk read of a page this process wrote, indexed but not intact ─► a strike (Lost) on writes
//! ```
//!
//! The last line is how a full disk shows: foyer indexes a page whose block write failed
//! (ENOSPC), so the write looks confirmed, and only reading it back finds it missing. A page
//! that does not read back but was written by an earlier process (bit rot at rest, a write torn
//! by a crash) says nothing about writes now, and is only counted as dropped.

use std::{
    collections::{HashSet, VecDeque},
    time::{Duration, Instant},
};

use foyer::{DefaultHasher, HybridCacheProperties, Load, Store};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

use super::{
    breaker::{BreakerPolicy, DiskBreaker, Strike},
    codec::{Page, PageEntry, PageKey},
};
use crate::metrics::NodeMetrics;

/// A page queued for disk this long ago is readable from it, or its write was lost.
const WRITE_CONFIRM_AFTER: Duration = Duration::from_secs(5);
/// Queued pages awaiting that check, at most (beyond, pages are not checked).
const WRITES_TO_CONFIRM: usize = 1024;
/// Pages this process wrote that are remembered as its own, at most (the oldest are forgotten).
const WRITES_REMEMBERED: usize = 4096;

pub(super) type Storage = Store<PageKey, Page, DefaultHasher, HybridCacheProperties>;

#[derive(Debug)]
pub(super) struct DiskHealth {
    pub(super) reads: DiskBreaker,
    pub(super) writes: DiskBreaker,
    /// Pages the disk index had that did not read back intact.
    dropped: Counter,
    queued: Mutex<VecDeque<(PageKey, Instant)>>,
    /// Pages this process queued for disk, newest last (a bounded window).
    written: Mutex<Written>,
}

#[derive(Debug, Default)]
struct Written {
    order: VecDeque<PageKey>,
    keys: HashSet<PageKey>,
}

impl DiskHealth {
    pub(super) fn new(policy: BreakerPolicy, metrics: &NodeMetrics) -> Self {
        let (dropped, metrics) = (metrics.disk_dropped.clone(), &metrics.breakers);
        let now = Instant::now();
        Self {
            reads: DiskBreaker::new("read", policy.clone(), metrics, now),
            writes: DiskBreaker::new("write", policy, metrics, now),
            dropped,
            queued: Mutex::new(VecDeque::new()),
            written: Mutex::new(Written::default()),
        }
    }

    /// Queues `entry` for disk, to be confirmed by [`Self::confirm_writes`].
    pub(super) fn write(&self, storage: &Storage, entry: &PageEntry) {
        storage.enqueue(entry.piece(), false);
        let key = entry.key();
        {
            let mut queued = self.queued.lock();
            if queued.len() < WRITES_TO_CONFIRM {
                queued.push_back((key.clone(), Instant::now()));
            }
        }
        let mut written = self.written.lock();
        if written.keys.insert(key.clone()) {
            written.order.push_back(key.clone());
            if written.order.len() > WRITES_REMEMBERED
                && let Some(oldest) = written.order.pop_front()
            {
                written.keys.remove(&oldest);
            }
        }
    }

    /// A page the disk index had did not read back intact: counted as dropped, and as a lost
    /// write if this process wrote it.
    pub(super) fn dropped(&self, key: &PageKey, now: Instant) {
        self.dropped.inc();
        if self.written.lock().keys.contains(key) {
            self.writes.record_strike(Strike::Lost, now);
        }
    }

    /// Checks the pages queued for disk long enough ago: each is readable (a clean write), still
    /// in the write queue (checked again later), or lost (a failed or dropped write: a strike).
    pub(super) async fn confirm_writes(&self, storage: &Storage) {
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
    pub(super) fn forget(&self, key: &PageKey) {
        self.queued.lock().retain(|(k, _)| k != key);
        let mut written = self.written.lock();
        if written.keys.remove(key) {
            written.order.retain(|k| k != key);
        }
    }
}
