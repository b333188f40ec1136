//! The scheduled resync (`[copy] resync_every`, default weekly): a full sync of each volume
//! from its sources into its regional copy, run by the cluster itself. It is the same engine as
//! `cachectl sync` (`cache_client::sync`: two streamed listings, merge-joined), with copies
//! handed to each object's owner: this node copies what it owns and asks its peers (`Copy`)
//! for the rest.
//!
//! Who leads: for each volume, the owner of a fixed ring point (page 0 of the key
//! [`LEADER_KEY`] of the volume), as this node's ring sees it. Every node checks every tick
//! whether it is that owner and whether a resync is due. Why that is safe when the ring changes:
//! owners are live, weighted members (a draining or dead node owns nothing), so some node always
//! leads once the ring settles; while rings disagree, two nodes may both lead a run, which costs
//! a second listing and HEADs but writes nothing twice wrongly: every copy HEADs the regional
//! copy first and writes only what is missing, and a copy is verified bytes of the source.
//!
//! When: a run is due `resync_every` after the last run this node led started (kept in
//! `<data_dir>/copies/resync.json`, so restarts do not push it back), or after the node
//! started if it never led one. A node that becomes leader late may thus run one earlier than a
//! week after the last leader's run: harmless, as above.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cache_client::sync::{
    self, CopyAskError, CopyOrder, Dispatch, SyncMode, SyncPlan, SyncTally,
    ask::{copy_answer, copy_request},
};
use cache_proto::{
    key::{ObjectKey, Volume},
    ring::page_point,
    wire::{CopyDone, CopyMode, ResyncReport},
};
use futures::{FutureExt, future::BoxFuture};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{ResyncLabel, VolumeLabel, VolumeName},
    service::Service,
};

/// The key whose page 0's owner leads a volume's resync.
pub const LEADER_KEY: &str = "mirrorcache/resync-leader";
/// Copies a resync hands out at once over the ring (each node still keeps copy.concurrency).
const CONCURRENCY: usize = 8;
/// How long one copy may take at its owner.
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// The resyncs this node led: the last report per volume, kept on disk.
#[derive(Debug)]
pub struct Resyncs {
    every: Duration,
    path: PathBuf,
    started: Instant,
    last: Mutex<BTreeMap<String, ResyncReport>>,
}

impl Resyncs {
    /// Reads the reports kept in `<data_dir>/copies/resync.json` (none if it is missing or does
    /// not parse: the schedule then starts from now).
    pub fn open(data_dir: &Path, every: Duration) -> Self {
        let path = data_dir.join("copies").join("resync.json");
        let last = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { every, path, started: Instant::now(), last: Mutex::new(last) }
    }

    /// The last report of every volume, in name order.
    pub fn reports(&self) -> Vec<ResyncReport> {
        self.last.lock().values().cloned().collect()
    }

    fn due(&self, volume: &str, now_unix: u64) -> bool {
        match self.last.lock().get(volume) {
            Some(r) => now_unix.saturating_sub(r.started_unix) >= self.every.as_secs(),
            None => self.started.elapsed() >= self.every,
        }
    }

    fn record(&self, report: ResyncReport) {
        let mut last = self.last.lock();
        last.insert(report.volume.clone(), report);
        let text = serde_json::to_vec(&*last).unwrap_or_default();
        drop(last);
        let tmp = self.path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path)) {
            tracing::warn!(path = %self.path.display(), error = %e, "resync report not kept");
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs the schedule until `stop`: off when `resync_every` is 0 or no volume has a regional copy.
pub async fn run(service: Arc<Service>, stop: CancellationToken) {
    let every = service.resyncs.every;
    if every.is_zero() || service.lookup.copier.is_none() {
        return;
    }
    let tick = (every / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut volumes: Vec<Volume> = service.volumes.keys().cloned().collect();
    volumes.sort();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        for volume in &volumes {
            let Some(state) = service.volumes.get(volume) else { continue };
            if !state.origin.has_replica()
                || !leads(&service, volume)
                || !service.resyncs.due(volume.as_str(), now_unix())
            {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                () = resync(&service, volume) => {}
            }
        }
    }
}

/// Whether this node owns the volume's leader point on its ring.
fn leads(service: &Service, volume: &Volume) -> bool {
    let Ok(key) = ObjectKey::new(LEADER_KEY) else { return false };
    let view = service.lookup.membership.view();
    view.ring.owner(page_point(volume, &key, 0)).is_some_and(|i| view.ring.member(i).id == service.id)
}

/// One resync of `volume`, its report recorded and in the metrics.
async fn resync(service: &Arc<Service>, volume: &Volume) {
    let Some(state) = service.volumes.get(volume) else { return };
    let mut report = ResyncReport {
        volume: volume.to_string(),
        node: service.id.to_string(),
        started_unix: now_unix(),
        ..ResyncReport::default()
    };
    service.resyncs.record(report.clone());
    tracing::info!(node = %service.id, %volume, "scheduled resync starts");
    let plan = SyncPlan {
        volume: volume.clone(),
        prefix: String::new(),
        mode: SyncMode::Copy,
        concurrency: CONCURRENCY,
        bwlimit: None,
        max_copies: None,
        checkpoint: None,
        head_for_checksum: false,
    };
    let tally = SyncTally::default();
    let dispatch: Arc<dyn Dispatch> = Arc::new(NodeDispatch { service: service.clone() });
    let result = sync::run(dispatch, &state.origin, &plan, &tally, |finding| {
        if let sync::Finding::Failed { key, error } = finding {
            tracing::warn!(%key, %error, "resync copy failed");
        }
    })
    .await;
    let get = SyncTally::get;
    report.finished_unix = Some(now_unix());
    report.found = get(&tally.found);
    report.copied = get(&tally.copied);
    report.already_there = get(&tally.already_there);
    report.failed = get(&tally.failed);
    report.extra = get(&tally.extra);
    report.error = result.err().map(|e| e.to_string());
    tracing::info!(node = %service.id, %volume, ?report, "scheduled resync done");
    let m = service.metrics();
    let name = VolumeName(volume.clone());
    for (kind, n) in [
        ("found", report.found),
        ("copied", report.copied),
        ("already_there", report.already_there),
        ("failed", report.failed),
        ("extra", report.extra),
    ] {
        m.resync_objects.get_or_create(&ResyncLabel { volume: name.clone(), kind }).set(n as i64);
    }
    m.resync_finished.get_or_create(&VolumeLabel { volume: name }).set(now_unix() as i64);
    service.resyncs.record(report);
}

/// A resync's copies: this node's own with its copier, the others' by a `Copy` to their owner.
struct NodeDispatch {
    service: Arc<Service>,
}

impl Dispatch for NodeDispatch {
    fn copy(&self, volume: Volume, order: CopyOrder) -> BoxFuture<'static, Result<CopyDone, CopyAskError>> {
        let service = self.service.clone();
        async move {
            let key = order.key.clone();
            let view = service.lookup.membership.view();
            let owner =
                view.ring.owner(page_point(&volume, &key, 0)).ok_or_else(|| CopyAskError::NoOwner(key.to_string()))?;
            let owner = view.ring.member(owner);
            let node = owner.id.to_string();
            if owner.id == service.id {
                let Some(copier) = &service.lookup.copier else {
                    return Err(CopyAskError::NoOwner(key.to_string()));
                };
                let local = match order.mode {
                    CopyMode::Copy => copier
                        .copy_asked(volume.as_str(), &key, order.source, order.size, order.etag)
                        .await
                        .map(|d| d.0),
                    CopyMode::DeleteExtra => copier.delete_extra(volume.as_str(), &key).await,
                };
                return local.map_err(|e| CopyAskError::Node {
                    key: key.to_string(),
                    node,
                    status: "local",
                    message: e.to_string(),
                });
            }
            let token = service.volumes.get(&volume).map(|s| s.token.clone()).unwrap_or_default();
            let request = copy_request(&volume, &token, &order)?;
            match service.lookup.peers.exchange(owner, &request, COPY_TIMEOUT, |_| Ok(())).await {
                Ok(answer) => copy_answer(&key, node, answer).map(|a| a.done),
                Err(source) => Err(CopyAskError::Unreachable { key: key.to_string(), node, source: Box::new(source) }),
            }
        }
        .boxed()
    }
}
