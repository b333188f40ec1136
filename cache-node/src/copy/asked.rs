//! Copies a sync asks for (`cachectl sync`, the `Copy` request): the same attempt as a copy on
//! fill ([`Target::copy_once`]: HEAD, bytes, pace, PUT, verify), under the same copy permits
//! (`copy.concurrency`) and bandwidth cap (`copy.bandwidth`), but run while the request waits
//! and not written to the durable queue: the sync's own checkpoint and listings are what
//! survive a crash (a copy lost with its node is missing at the next sync or resync).
//! Deletes of extra objects go here too: the node holds the regional copy's write credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use cache_proto::{key::ObjectKey, wire::CopyDone};
use object_store::ObjectStoreExt;

use super::{Copier, CopyError, Outcome, Pending, pace, transfer::Attempt};
use crate::metrics::{CopyOutcome, OriginOp};

/// Attempts of one copy a sync asked for (the sync reports a failure; the next one retries).
const ATTEMPTS: u32 = 3;

/// Why a copy or a delete a sync asked for was not done.
#[derive(Debug, thiserror::Error)]
pub enum AskedError {
    #[error("volume {0} has no regional copy on this node (replica = true, with write credentials)")]
    NoTarget(String),
    #[error("volume {volume}: origin {index} is not a source of this volume ({origins} origins)")]
    NoSource { volume: String, index: usize, origins: usize },
    #[error("volume {volume}, object {key}: {size} bytes is more than copy.max_object ({max})")]
    TooLarge { volume: String, key: String, size: u64, max: u64 },
    #[error("{error} (after {attempts} attempts)")]
    Copy { error: CopyError, attempts: u32 },
    #[error("volume {volume}, object {key}: source {origin} still has it; not deleted")]
    InSource { volume: String, key: String, origin: String },
    #[error("volume {volume}, object {key}: {message}")]
    Delete { volume: String, key: String, message: String },
}

impl AskedError {
    /// Whether the request itself was wrong (not the stores).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::NoTarget(_) | Self::NoSource { .. } | Self::TooLarge { .. } | Self::InSource { .. })
    }
}

impl Copier {
    /// Copies `key` of `volume` from origin `source` (`size` and `etag` as the sync listed
    /// them) into the regional copy, and answers when it is verified there.
    pub async fn copy_asked(
        &self,
        volume: &str,
        key: &ObjectKey,
        source: usize,
        size: u64,
        etag: Option<String>,
    ) -> Result<(CopyDone, u64), AskedError> {
        let inner = &self.inner;
        let target = inner.targets.get(volume).ok_or_else(|| AskedError::NoTarget(volume.to_owned()))?;
        if source == 0 || source >= target.chain.len() {
            return Err(AskedError::NoSource { volume: volume.to_owned(), index: source, origins: target.chain.len() });
        }
        if size > inner.config.max_object.0 {
            let max = inner.config.max_object.0;
            return Err(AskedError::TooLarge { volume: volume.to_owned(), key: key.to_string(), size, max });
        }
        let queued_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let p = Pending { volume: volume.to_owned(), key: key.to_string(), size, etag, source, queued_ms };
        let metrics = inner.metrics.clone();
        let name = target.volume.clone();
        let count = move |origin: usize, op: OriginOp, bytes: u64| metrics.origin_op(&name, origin, op, bytes);
        let mut use_cache = true;
        let mut attempt = 1;
        loop {
            let at = Attempt { store: &inner.store, page_size: inner.page_size, count: &count, use_cache };
            let result = {
                let Ok(_permit) = inner.permits.acquire().await else {
                    return Err(AskedError::NoTarget(volume.to_owned()));
                };
                target.copy_once(&p, &at, |bytes| inner.pace(bytes)).await
            };
            match result {
                Ok(Outcome::AlreadyThere) => {
                    inner.metrics.copy(&target.volume, CopyOutcome::AlreadyThere);
                    return Ok((CopyDone::AlreadyThere, 0));
                }
                Ok(Outcome::Copied { bytes }) => {
                    inner.metrics.copy(&target.volume, CopyOutcome::Done);
                    return Ok((CopyDone::Copied, bytes));
                }
                Err(error) if attempt >= ATTEMPTS || matches!(error, CopyError::BadKey { .. }) => {
                    inner.metrics.copy(&target.volume, CopyOutcome::Failed);
                    return Err(AskedError::Copy { error, attempts: attempt });
                }
                Err(error) => {
                    let outcome = if error.is_bad_copy() { CopyOutcome::Redone } else { CopyOutcome::Retried };
                    use_cache &= !error.is_bad_copy();
                    inner.metrics.copy(&target.volume, outcome);
                    tracing::debug!(node = %inner.node, attempt, %error, "asked copy attempt failed");
                    let c = &inner.config;
                    tokio::time::sleep(pace::backoff(attempt, c.backoff.0, c.backoff_max.0, rand::random())).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Deletes `key` from `volume`'s regional copy, only if no source of the volume has it.
    pub async fn delete_extra(&self, volume: &str, key: &ObjectKey) -> Result<CopyDone, AskedError> {
        let inner = &self.inner;
        let target = inner.targets.get(volume).ok_or_else(|| AskedError::NoTarget(volume.to_owned()))?;
        let fail = |message: String| AskedError::Delete { volume: volume.to_owned(), key: key.to_string(), message };
        for index in 1..target.chain.len() {
            inner.metrics.origin_op(&target.volume, index, OriginOp::Head, 0);
            match target.chain.head_at(index, key).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(AskedError::InSource {
                        volume: volume.to_owned(),
                        key: key.to_string(),
                        origin: target.chain.label(index).to_owned(),
                    });
                }
                Err(e) => return Err(fail(format!("asking source {}: {e}", target.chain.label(index)))),
            }
        }
        let path = target.path(key).map_err(|e| fail(e.to_string()))?;
        inner.metrics.origin_op(&target.volume, 0, OriginOp::Head, 0);
        match target.replica.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(CopyDone::NotThere),
            Err(e) => return Err(fail(format!("the regional copy: {e}"))),
        }
        target.replica.delete(&path).await.map_err(|e| fail(format!("deleting from the regional copy: {e}")))?;
        tracing::info!(node = %inner.node, volume, %key, "extra object deleted from the regional copy");
        Ok(CopyDone::Deleted)
    }
}
