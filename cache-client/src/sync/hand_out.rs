//! Handing out a sync's copies and deletes as tasks, taking them back ([`retire`]: counts and
//! the watermark), and the sync-wide bandwidth cap ([`Pace`]).

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use cache_proto::{
    key::ObjectKey,
    wire::{CopyDone, CopyMode},
};
use tokio::task::JoinSet;

use super::{CopyAskError, CopyOrder, Dispatch, Finding, SyncPlan, SyncTally, watermark::Watermark};
use crate::origin::ListedObject;

/// The result of one copy task: its watermark ticket, key, size and answer.
pub(super) type Ended = (u64, String, u64, Result<CopyDone, CopyAskError>);

pub(super) fn spawn_copy(
    dispatch: &Arc<dyn Dispatch>,
    plan: &SyncPlan,
    running: &mut JoinSet<Ended>,
    mark: &mut Watermark,
    source: usize,
    object: ListedObject,
) {
    let seq = mark.started(&object.key);
    let order = ObjectKey::new(&object.key).map(|key| CopyOrder {
        key,
        mode: CopyMode::Copy,
        source,
        size: object.size,
        etag: object.etag.clone(),
    });
    spawn_order(dispatch, plan, running, seq, object, order);
}

pub(super) fn spawn_delete(
    dispatch: &Arc<dyn Dispatch>,
    plan: &SyncPlan,
    running: &mut JoinSet<Ended>,
    mark: &mut Watermark,
    object: ListedObject,
) {
    let seq = mark.started(&object.key);
    let order = ObjectKey::new(&object.key).map(|key| CopyOrder {
        key,
        mode: CopyMode::DeleteExtra,
        source: 0,
        size: object.size,
        etag: None,
    });
    spawn_order(dispatch, plan, running, seq, ListedObject { size: 0, ..object }, order);
}

fn spawn_order(
    dispatch: &Arc<dyn Dispatch>,
    plan: &SyncPlan,
    running: &mut JoinSet<Ended>,
    seq: u64,
    object: ListedObject,
    order: Result<CopyOrder, cache_proto::key::NameError>,
) {
    let (dispatch, volume) = (dispatch.clone(), plan.volume.clone());
    running.spawn(async move {
        let result = match order {
            Ok(order) => dispatch.copy(volume, order).await,
            Err(e) => Err(CopyAskError::Answer {
                key: object.key.clone(),
                node: "-".into(),
                message: format!("not a valid object key: {e}"),
            }),
        };
        (seq, object.key, object.size, result)
    });
}

/// Counts one finished copy or delete and moves the watermark.
pub(super) fn retire(
    done: Result<Ended, tokio::task::JoinError>,
    mark: &mut Watermark,
    tally: &SyncTally,
    found: &mut impl FnMut(Finding),
) {
    let (seq, key, size, result) = match done {
        Ok(ended) => ended,
        Err(e) => {
            // A copy task that panicked or was cancelled: nothing to retire it by, so the
            // watermark stays before it (the next sync does it again).
            tally.failed.fetch_add(1, Relaxed);
            found(Finding::Failed { key: "?".into(), error: format!("copy task ended: {e}") });
            return;
        }
    };
    match result {
        Ok(CopyDone::Copied) => {
            tally.copied.fetch_add(1, Relaxed);
            tally.copied_bytes.fetch_add(size, Relaxed);
        }
        Ok(CopyDone::AlreadyThere) => {
            tally.already_there.fetch_add(1, Relaxed);
        }
        Ok(CopyDone::Deleted) => {
            tally.deleted.fetch_add(1, Relaxed);
        }
        Ok(CopyDone::NotThere) => {}
        Err(e) => {
            tally.failed.fetch_add(1, Relaxed);
            found(Finding::Failed { key: key.clone(), error: e.to_string() });
            mark.finished(seq, false);
            return;
        }
    }
    mark.finished(seq, true);
}

/// The sync-wide bandwidth cap: each copy's bytes are handed out at most `rate` per second.
pub(super) struct Pace {
    rate: Option<u64>,
    next: Instant,
}

impl Pace {
    pub(super) fn new(rate: Option<u64>) -> Self {
        Self { rate: rate.filter(|r| *r > 0), next: Instant::now() }
    }

    pub(super) async fn wait(&mut self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep(self.next - now).await;
        }
        self.next = self.next.max(now) + Duration::from_secs_f64(bytes as f64 / rate as f64);
    }
}
