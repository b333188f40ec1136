//! [`Client::warm`]: ask a page's owner to fill, check or evict it, for `cachectl warmup`.
//! Unlike reads there is no fallback: the point is the owner's cache, so a failure is reported.
//! An `impl Client` block (with [`Client::list_objects`], the listing `cachectl warmup` walks):
//! warming uses the client's ring, pool and volumes, and nothing else does.

use crate::Client;
use cache_proto::{
    key::{ObjectKey, Volume},
    ring::page_point,
    wire::{Request, ResponseHead, Status, Warm, WarmMode, WarmOutcome},
};

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("volume {0} is not in this client's config")]
    UnknownVolume(String),
    #[error("no member of the ring has weight: nothing owns {0}")]
    NoOwner(String),
    /// The owner could not be asked (set aside, unreachable, connection lost, no answer in
    /// time): worth asking again once the pool has probed it back ([`WarmError::is_transient`]).
    #[error("{key} page {page}: {source}")]
    Unreachable { key: String, page: u64, source: crate::pool::ExchangeError },
    /// The owner is at its limit (requests in flight, or its fill budget): ask again later.
    #[error("{key} page {page} at node {node}: busy: {message}")]
    Busy { key: String, page: u64, node: String, message: String },
    /// The owner answered, and the answer was an error (unauthorised, origin failed, ...).
    #[error("{key} page {page} at node {node}: {message}")]
    Node { key: String, page: u64, node: String, message: String },
    #[error("listing: {0}")]
    List(#[from] crate::origin::OriginError),
    #[error("listing returned a key that is not a valid object key: {0}")]
    BadKey(#[from] cache_proto::key::NameError),
}

impl WarmError {
    /// Whether asking again later may succeed: the node was not reached or did not answer.
    pub fn is_transient(&self) -> bool {
        use crate::pool::ExchangeError;
        match self {
            Self::Unreachable { source, .. } => !matches!(source, ExchangeError::Wire { .. }),
            Self::Busy { .. } => true,
            _ => false,
        }
    }
}

/// What the owner said about one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmed {
    pub outcome: WarmOutcome,
    /// The object's size, when the node knows it (after `Filled` or `Present`).
    pub object_size: Option<u64>,
}

impl Client {
    /// Every object under `prefix` with its size, listed at the volume's origin chain (in pages
    /// of 1000, as S3 lists).
    pub async fn list_objects(&self, volume: &Volume, prefix: &str) -> Result<Vec<(ObjectKey, u64)>, WarmError> {
        let cv = self.volumes.get(volume).ok_or_else(|| WarmError::UnknownVolume(volume.to_string()))?;
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = cv.origin.list(Some(prefix), false, after.as_deref(), 1000).await?;
            for o in page.objects {
                out.push((ObjectKey::new(&o.key)?, o.size));
            }
            match page.next_start_after {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Sends a `Warm` of page `page` of `key` to the page's owner.
    pub async fn warm(&self, volume: &Volume, key: &ObjectKey, page: u64, mode: WarmMode) -> Result<Warmed, WarmError> {
        let cv = self.volumes.get(volume).ok_or_else(|| WarmError::UnknownVolume(volume.to_string()))?;
        self.ensure_ring().await;
        let view = self.ring();
        let owner =
            view.ring.owner(page_point(volume, key, page)).ok_or_else(|| WarmError::NoOwner(key.to_string()))?;
        let owner = view.ring.member(owner);
        let request = Request::Warm(Warm {
            volume: volume.clone(),
            token: cv.token.clone(),
            key: key.clone(),
            page_size: self.page_size,
            page,
            mode,
        });
        let node = owner.id.to_string();
        let fail = |message: String| WarmError::Node { key: key.to_string(), page, node: node.clone(), message };
        // A fill may wait for the origin: allow the origin's deadline on top of the node's.
        let deadline = self.timeouts.page_timeout.0 + self.timeouts.origin_timeout.0;
        let (head, _) = self
            .pool
            .exchange(owner, &request, deadline, |_| Ok(()))
            .await
            .map_err(|source| WarmError::Unreachable { key: key.to_string(), page, source })?;
        match head {
            ResponseHead::Warm { outcome, object_size } => Ok(Warmed { outcome, object_size }),
            ResponseHead::Error(e) if e.status == Status::Busy => {
                Err(WarmError::Busy { key: key.to_string(), page, node, message: e.message })
            }
            ResponseHead::Error(e) => Err(fail(format!("{}: {}", e.status.as_str(), e.message))),
            other => Err(fail(format!("unexpected answer {other:?}"))),
        }
    }
}
