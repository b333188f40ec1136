//! [`Client::copy_object`]: ask the owner of an object's page 0 to copy it into the volume's
//! regional copy (or to delete it there, if no source has it), and wait for its answer. The
//! owner of page 0 is the node that fills and copies the object on reads too, so a sync and
//! the copy on fill meet at one node; more nodes in the ring, more copies at once.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};

use cache_proto::{
    key::{ObjectKey, Volume},
    ring::page_point,
    wire::{Copy, CopyAnswer, CopyDone, CopyMode, Request, ResponseHead},
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
    Unreachable { key: String, node: String, source: Box<ExchangeError> },
    /// The owner answered with an error (origin failed, no regional copy, unauthorised, ...).
    #[error("{key}: node {node}: {status}: {message}")]
    Node { key: String, node: String, status: &'static str, message: String },
    #[error("{key}: node {node} answered {message}")]
    Answer { key: String, node: String, message: String },
}

/// What a sync knows of the object it asks a node to copy.
#[derive(Debug, Clone)]
pub struct CopyOrder {
    pub key: ObjectKey,
    pub mode: CopyMode,
    /// Index in the volume's origin chain of the source to read (1 or more).
    pub source: usize,
    pub size: u64,
    pub etag: Option<String>,
}

/// The `Copy` request for `order`.
pub fn copy_request(volume: &Volume, token: &str, order: &CopyOrder) -> Result<Request, CopyAskError> {
    let source = u8::try_from(order.source)
        .map_err(|_| CopyAskError::SourceIndex { key: order.key.to_string(), index: order.source })?;
    Ok(Request::Copy(Copy {
        volume: volume.clone(),
        token: token.to_owned(),
        key: order.key.clone(),
        mode: order.mode,
        source,
        size: order.size,
        etag: order.etag.clone(),
    }))
}

/// What node `node`'s answer to a `Copy` of `key` says.
pub fn copy_answer(
    key: &ObjectKey,
    node: String,
    (head, payload): (ResponseHead, bytes::Bytes),
) -> Result<CopyAnswer, CopyAskError> {
    match head {
        ResponseHead::Status { .. } => serde_json::from_slice(&payload).map_err(|e| CopyAskError::Answer {
            key: key.to_string(),
            node,
            message: format!("a copy answer that does not parse: {e}"),
        }),
        ResponseHead::Error(e) => {
            Err(CopyAskError::Node { key: key.to_string(), node, status: e.status.as_str(), message: e.message })
        }
        other => Err(CopyAskError::Answer { key: key.to_string(), node, message: format!("{other:?}") }),
    }
}

/// Who carries out a sync's copies: the client asks each object's owner over the ring
/// ([`ClientDispatch`]); a node leading a scheduled resync copies what it owns itself and asks
/// its peers for the rest.
pub trait Dispatch: Send + Sync + 'static {
    fn copy(&self, volume: Volume, order: CopyOrder) -> BoxFuture<'static, Result<CopyDone, CopyAskError>>;
}

/// [`Dispatch`] by a client: [`Client::copy_object`], with a deadline per copy.
#[derive(Debug, Clone)]
pub struct ClientDispatch {
    pub client: Arc<Client>,
    pub timeout: Duration,
}

impl Dispatch for ClientDispatch {
    fn copy(&self, volume: Volume, order: CopyOrder) -> BoxFuture<'static, Result<CopyDone, CopyAskError>> {
        let (client, timeout) = (self.client.clone(), self.timeout);
        async move { client.copy_object(&volume, order, timeout).await.map(|a| a.done) }.boxed()
    }
}

impl Client {
    /// Sends `order` to the owner of the object's page 0 and waits at most `timeout` for the
    /// copy (the node waits for its copy permits and bandwidth cap, then reads, writes and
    /// verifies). An owner that cannot be reached is asked again after the pool's set-aside.
    pub async fn copy_object(
        &self,
        volume: &Volume,
        order: CopyOrder,
        timeout: Duration,
    ) -> Result<CopyAnswer, CopyAskError> {
        let key = &order.key;
        let cv = self.volumes.get(volume).ok_or_else(|| CopyAskError::UnknownVolume(volume.to_string()))?;
        let request = copy_request(volume, &cv.token, &order)?;
        let mut tries = 1;
        loop {
            self.ensure_ring().await;
            let view = self.ring();
            let owner =
                view.ring.owner(page_point(volume, key, 0)).ok_or_else(|| CopyAskError::NoOwner(key.to_string()))?;
            let owner = view.ring.member(owner);
            let node = owner.id.to_string();
            match self.pool.exchange(owner, &request, timeout, |_| Ok(())).await {
                Ok(answer) => return copy_answer(key, node, answer),
                Err(e) if tries < TRIES && !matches!(e, ExchangeError::Wire { .. } | ExchangeError::Timeout { .. }) => {
                    tries += 1;
                    tokio::time::sleep(SET_ASIDE).await;
                }
                Err(source) => {
                    return Err(CopyAskError::Unreachable { key: key.to_string(), node, source: Box::new(source) });
                }
            }
        }
    }
}
