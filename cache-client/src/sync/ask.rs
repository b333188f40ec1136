//! [`Client::copy_object`]: ask the owner of an object's page 0 to copy it into the volume's
//! regional copy (or to delete it there, if no source has it), and wait for its answer. The
//! owner of page 0 is the node that fills and copies the object on reads too, so a sync and
//! the copy on fill meet at one node; more nodes in the ring, more copies at once.

use std::time::Duration;

use cache_proto::{
    key::{ObjectKey, Volume},
    ring::page_point,
    wire::{Copy, CopyAnswer, CopyMode, Request, ResponseHead},
};

use crate::{
    Client,
    pool::{ExchangeError, SET_ASIDE},
};

/// Tries per object when its owner cannot be reached (set aside, restarting): like warmup.
const TRIES: u32 = 4;

/// Why one object was not copied (or deleted).
#[derive(Debug, thiserror::Error)]
pub enum CopyAskError {
    #[error("volume {0} is not in this client's config")]
    UnknownVolume(String),
    #[error("no member of the ring has weight: nothing owns {0}")]
    NoOwner(String),
    #[error("{key}: source index {index} does not fit the wire (at most 255 origins)")]
    SourceIndex { key: String, index: usize },
    #[error("{key}: node {node}: {source}")]
    Unreachable { key: String, node: String, source: ExchangeError },
    /// The owner answered with an error (origin failed, no regional copy, unauthorised, ...).
    #[error("{key}: node {node}: {status}: {message}")]
    Node { key: String, node: String, status: &'static str, message: String },
    #[error("{key}: node {node} answered {message}")]
    Answer { key: String, node: String, message: String },
}

/// What a sync knows of the object it asks a node to copy.
#[derive(Debug, Clone)]
pub struct CopyOrder<'a> {
    pub key: &'a ObjectKey,
    pub mode: CopyMode,
    /// Index in the volume's origin chain of the source to read (1 or more).
    pub source: usize,
    pub size: u64,
    pub etag: Option<String>,
}

impl Client {
    /// Sends `order` to the owner of the object's page 0 and waits at most `timeout` for the
    /// copy (the node waits for its copy permits and bandwidth cap, then reads, writes and
    /// verifies). An owner that cannot be reached is asked again after the pool's set-aside.
    pub async fn copy_object(
        &self,
        volume: &Volume,
        order: CopyOrder<'_>,
        timeout: Duration,
    ) -> Result<CopyAnswer, CopyAskError> {
        let key = order.key;
        let cv = self.volumes.get(volume).ok_or_else(|| CopyAskError::UnknownVolume(volume.to_string()))?;
        let source = u8::try_from(order.source)
            .map_err(|_| CopyAskError::SourceIndex { key: key.to_string(), index: order.source })?;
        let request = Request::Copy(Copy {
            volume: volume.clone(),
            token: cv.token.clone(),
            key: key.clone(),
            mode: order.mode,
            source,
            size: order.size,
            etag: order.etag,
        });
        let mut tries = 1;
        loop {
            self.ensure_ring().await;
            let view = self.ring();
            let owner =
                view.ring.owner(page_point(volume, key, 0)).ok_or_else(|| CopyAskError::NoOwner(key.to_string()))?;
            let owner = view.ring.member(owner);
            let node = owner.id.to_string();
            match self.pool.exchange(owner, &request, timeout, |_| Ok(())).await {
                Ok((ResponseHead::Status { .. }, payload)) => {
                    return serde_json::from_slice(&payload).map_err(|e| CopyAskError::Answer {
                        key: key.to_string(),
                        node,
                        message: format!("a copy answer that does not parse: {e}"),
                    });
                }
                Ok((ResponseHead::Error(e), _)) => {
                    return Err(CopyAskError::Node {
                        key: key.to_string(),
                        node,
                        status: e.status.as_str(),
                        message: e.message,
                    });
                }
                Ok((other, _)) => {
                    return Err(CopyAskError::Answer { key: key.to_string(), node, message: format!("{other:?}") });
                }
                Err(e) if tries < TRIES && !matches!(e, ExchangeError::Wire { .. } | ExchangeError::Timeout { .. }) => {
                    tries += 1;
                    tokio::time::sleep(SET_ASIDE).await;
                }
                Err(source) => return Err(CopyAskError::Unreachable { key: key.to_string(), node, source }),
            }
        }
    }
}
