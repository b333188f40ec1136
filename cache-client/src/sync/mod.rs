//! A full sync of a volume from its sources into its regional copy (`cachectl sync`), its
//! difference check (`--check`) and the removal of extra objects (`--delete-extra`).
//!
//! ```text
//! sources (origins 1..): one sorted stream each ─► sources.rs: k-way merge ─┐
//!                                                                           ├─► diff.rs: step (merge-join)
//! regional copy (origin 0): one sorted stream ──────────────────────────────┘        │
//!     missing / differing ─► ask.rs: Copy to the owner of page 0 (concurrency, bwlimit)
//!     extra               ─► reported; with --delete-extra, DeleteExtra to its owner
//!     same                ─► already there
//!  finished copies ─► watermark.rs (the key through which all is done) ─► checkpoint.rs, every second
//! ```
//!
//! Memory is bounded whatever the number of keys: each listing holds one LIST page, the merge
//! one entry per origin, and the copies in flight at most `concurrency` (the watermark at most
//! [`WINDOW_PER_COPY`] times that).

pub mod ask;
pub mod checkpoint;
pub mod diff;
mod hand_out;
mod sources;
pub mod watermark;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use cache_proto::key::{ObjectKey, Volume};
use futures::StreamExt;
use tokio::task::JoinSet;

pub use self::ask::{ClientDispatch, CopyAskError, CopyOrder, Dispatch};
use self::{
    checkpoint::Checkpoint,
    diff::{Difference, Step, compare, step},
    hand_out::{Ended, Pace, retire, spawn_copy, spawn_delete},
    sources::Sources,
    watermark::Watermark,
};
use crate::{
    Client,
    origin::{ListedObject, OriginChain, OriginError},
};

/// Copies handed out but held back by an older running one, per copy slot, before the sync
/// waits (bounds the watermark's memory when one copy is slow).
pub const WINDOW_PER_COPY: usize = 64;
/// How often the checkpoint is written while copies finish.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What a sync does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Copy what is missing or differs.
    Copy,
    /// Only report missing, extra and differing objects.
    Check,
    /// Only delete the extra objects (in the regional copy, in no source).
    DeleteExtra,
}

/// One sync to run.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    pub volume: Volume,
    pub prefix: String,
    pub mode: SyncMode,
    /// Copies (or deletes) at once, over the whole ring.
    pub concurrency: usize,
    /// Bytes per second handed out to copies over the whole sync (`None`: no cap here; each
    /// node still keeps its own `[copy] bandwidth`).
    pub bwlimit: Option<u64>,
    /// Stop handing out copies after this many (then finish those running and checkpoint).
    pub max_copies: Option<u64>,
    /// (Copy) where to keep the checkpoint; `None`: none.
    pub checkpoint: Option<PathBuf>,
    /// Where a listing gives no MD5 ETag on one side for an object of the same size on both,
    /// HEAD both sides to compare checksums (two requests per such object). S3 listings carry
    /// ETags, so this costs nothing there; some S3-compatible servers' listings do not.
    pub head_for_checksum: bool,
}

/// Counters a progress display reads while the sync runs.
#[derive(Debug, Default)]
pub struct SyncTally {
    /// Objects in the sources (under the prefix, after the checkpoint).
    pub found: AtomicU64,
    pub found_bytes: AtomicU64,
    /// Missing or differing objects found so far (to copy).
    pub to_copy: AtomicU64,
    pub to_copy_bytes: AtomicU64,
    pub copied: AtomicU64,
    pub copied_bytes: AtomicU64,
    /// Same size and checksum in the regional copy (or found there by the node).
    pub already_there: AtomicU64,
    pub failed: AtomicU64,
    /// In the regional copy, in no source.
    pub extra: AtomicU64,
    pub missing: AtomicU64,
    pub differing: AtomicU64,
    pub deleted: AtomicU64,
}

impl SyncTally {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Something a sync found, told to its caller as it goes (for `--check` reports and logs).
#[derive(Debug, Clone)]
pub enum Finding {
    Missing { key: String, size: u64 },
    Extra { key: String, size: u64 },
    Differs { key: String, difference: Difference },
    Failed { key: String, error: String },
}

/// How a sync ended (besides the tally).
#[derive(Debug, Clone, Default)]
pub struct SyncEnd {
    /// Stopped by `max_copies` before the listing's end: run again to resume.
    pub stopped_early: bool,
    /// Where the sync resumed from (its checkpoint), if it did.
    pub resumed_after: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("volume {0} is not in this client's config")]
    UnknownVolume(String),
    #[error("volume {0} has no regional copy (replica = true on its first origin) and a source after it")]
    NoRegionalCopy(String),
    #[error("listing volume {volume}: {source}")]
    List { volume: String, source: OriginError },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// [`run`] by a client: lists with the client's origin chain of the volume, copies through the
/// ring, each copy given `timeout` at its node.
pub async fn run_client(
    client: Arc<Client>,
    plan: &SyncPlan,
    timeout: Duration,
    tally: &SyncTally,
    found: impl FnMut(Finding),
) -> Result<SyncEnd, SyncError> {
    let cv = client.volumes.get(&plan.volume).ok_or_else(|| SyncError::UnknownVolume(plan.volume.to_string()))?;
    let dispatch: Arc<dyn Dispatch> = Arc::new(ClientDispatch { client: client.clone(), timeout });
    run(dispatch, &cv.origin, plan, tally, found).await
}

/// Runs `plan` over `chain` (the volume's origins, the regional copy first), handing copies
/// to `dispatch`, telling `found` what it finds and counting in `tally`.
pub async fn run(
    dispatch: Arc<dyn Dispatch>,
    chain: &OriginChain,
    plan: &SyncPlan,
    tally: &SyncTally,
    mut found: impl FnMut(Finding),
) -> Result<SyncEnd, SyncError> {
    let volume = plan.volume.to_string();
    if !chain.has_replica() {
        return Err(SyncError::NoRegionalCopy(volume));
    }
    let list_err = |source| SyncError::List { volume: volume.clone(), source };
    let resume = match (&plan.checkpoint, plan.mode) {
        (Some(path), SyncMode::Copy) => checkpoint::load(path, &volume, &plan.prefix)?.map(|c| c.done_through),
        _ => None,
    };
    let after = resume.as_deref();
    let mut sources = Sources::new(
        (1..chain.len())
            .map(|i| chain.objects(i, &plan.prefix, after).map(|s| (i, s)))
            .collect::<Result<_, _>>()
            .map_err(list_err)?,
    );
    let mut replica = chain.objects(0, &plan.prefix, after).map_err(list_err)?;
    let mut source_head = sources.next().await.map_err(list_err)?;
    let mut replica_head = replica.next().await.transpose().map_err(list_err)?;

    let mut mark = Watermark::after(resume.clone());
    let mut running: JoinSet<Ended> = JoinSet::new();
    let concurrency = plan.concurrency.max(1);
    let mut pace = Pace::new(plan.bwlimit);
    let mut handed_out = 0u64;
    let mut end = SyncEnd { resumed_after: resume, ..SyncEnd::default() };
    let mut saved_at = Instant::now();
    let mut saved: Option<String> = None;

    loop {
        while running.len() >= concurrency || mark.outstanding() >= concurrency * WINDOW_PER_COPY {
            let Some(done) = running.join_next().await else { break };
            retire(done, &mut mark, tally, &mut found);
        }
        while let Some(done) = running.try_join_next() {
            retire(done, &mut mark, tally, &mut found);
        }
        if plan.mode == SyncMode::Copy && saved_at.elapsed() >= CHECKPOINT_EVERY {
            save_checkpoint(plan, &volume, &mark, &mut saved)?;
            saved_at = Instant::now();
        }
        let s = source_head.as_ref().map(|(_, o)| o.key.as_str());
        let r = replica_head.as_ref().map(|o| o.key.as_str());
        let (copy, key_done) = match step(s, r) {
            Step::Done => break,
            Step::Missing => {
                let Some((index, object)) = source_head.take() else { break };
                count_found(tally, &object);
                tally.missing.fetch_add(1, Relaxed);
                found(Finding::Missing { key: object.key.clone(), size: object.size });
                source_head = sources.next().await.map_err(list_err)?;
                (Some((index, object)), None)
            }
            Step::Extra => {
                let Some(object) = replica_head.take() else { break };
                tally.extra.fetch_add(1, Relaxed);
                found(Finding::Extra { key: object.key.clone(), size: object.size });
                replica_head = replica.next().await.transpose().map_err(list_err)?;
                if plan.mode == SyncMode::DeleteExtra {
                    spawn_delete(&dispatch, plan, &mut running, &mut mark, object);
                    continue;
                }
                (None, None)
            }
            Step::Both => {
                let (Some((index, mut object)), Some(mut there)) = (source_head.take(), replica_head.take()) else {
                    break;
                };
                if plan.head_for_checksum && object.size == there.size {
                    fill_etags(chain, index, &mut object, &mut there).await.map_err(list_err)?;
                }
                count_found(tally, &object);
                source_head = sources.next().await.map_err(list_err)?;
                replica_head = replica.next().await.transpose().map_err(list_err)?;
                match compare(&object, &there) {
                    None => {
                        tally.already_there.fetch_add(1, Relaxed);
                        (None, Some(object.key))
                    }
                    Some(difference) => {
                        tally.differing.fetch_add(1, Relaxed);
                        found(Finding::Differs { key: object.key.clone(), difference });
                        (Some((index, object)), None)
                    }
                }
            }
        };
        if let Some(key) = key_done {
            mark.passed(&key);
        }
        let Some((index, object)) = copy else { continue };
        if plan.mode != SyncMode::Copy {
            mark.passed(&object.key);
            continue;
        }
        if plan.max_copies.is_some_and(|max| handed_out >= max) {
            end.stopped_early = true;
            break;
        }
        handed_out += 1;
        tally.to_copy.fetch_add(1, Relaxed);
        tally.to_copy_bytes.fetch_add(object.size, Relaxed);
        pace.wait(object.size).await;
        spawn_copy(&dispatch, plan, &mut running, &mut mark, index, object);
    }
    while let Some(done) = running.join_next().await {
        retire(done, &mut mark, tally, &mut found);
    }
    if plan.mode == SyncMode::Copy
        && let Some(path) = &plan.checkpoint
    {
        if end.stopped_early || SyncTally::get(&tally.failed) > 0 {
            save_checkpoint(plan, &volume, &mark, &mut saved)?;
        } else {
            checkpoint::remove(path)?;
        }
    }
    Ok(end)
}

/// Fills in the ETags a listing left out, by a HEAD of each side that lacks one.
async fn fill_etags(
    chain: &crate::origin::OriginChain,
    source: usize,
    object: &mut ListedObject,
    there: &mut ListedObject,
) -> Result<(), OriginError> {
    let Ok(key) = ObjectKey::new(&object.key) else { return Ok(()) };
    for (index, o) in [(source, object), (0, there)] {
        if o.etag.is_none()
            && let Some(head) = chain.head_at(index, &key).await?
        {
            o.etag = head.etag;
        }
    }
    Ok(())
}

fn count_found(tally: &SyncTally, object: &ListedObject) {
    tally.found.fetch_add(1, Relaxed);
    tally.found_bytes.fetch_add(object.size, Relaxed);
}

fn save_checkpoint(
    plan: &SyncPlan,
    volume: &str,
    mark: &Watermark,
    saved: &mut Option<String>,
) -> Result<(), SyncError> {
    let (Some(path), Some(through)) = (&plan.checkpoint, mark.done_through()) else { return Ok(()) };
    if saved.as_deref() == Some(through) {
        return Ok(());
    }
    let c = Checkpoint { volume: volume.to_owned(), prefix: plan.prefix.clone(), done_through: through.to_owned() };
    checkpoint::save(path, &c)?;
    *saved = Some(c.done_through);
    Ok(())
}
