//! What a node does with one decoded request: one match dispatches it to its file (`get.rs`,
//! `peek.rs`, `warm.rs`, `copy.rs`, `ops.rs` for status, members and drain), which authorises it, finds the
//! page through the [`Lookup`] and builds the [`Answer`]. No sockets here: the server hands in a
//! [`RequestView`] borrowed from the frame and writes out the answer's head and payload, or, for
//! a miss this request fills from the origin, the page's bytes as they arrive.
//!
//! A memory hit allocates nothing: names stay borrowed from the frame, maps and the cache are
//! searched by `&str`, metric labels clone an `Arc`, the head is encoded into a stack buffer and
//! the payload is a `Bytes` slice of the cached page.

mod copy;
mod get;
mod ops;
mod peek;
mod warm;

use std::{collections::HashMap, time::Instant};

use bytes::Bytes;
use cache_client::node_cert::NodeCerts;
use cache_proto::{
    key::{NodeId, ObjectKey, Volume},
    wire::{GetView, RequestView, ResponseHead, Status, Tier},
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    answer::{Answer, Hooks, page_answer},
    lookup::{Failure, Lookup, VolumeState},
    membership::driver::GossipHandle,
    metrics::{ErrorKind, NodeMetrics},
    store::{Page, PageKey},
};

/// A node's request handling: the volumes it serves, how it finds pages, and who may do what.
#[derive(Debug)]
pub struct Service {
    pub(crate) id: NodeId,
    pub(crate) volumes: HashMap<Volume, VolumeState>,
    pub(crate) lookup: Lookup,
    pub(crate) inflight: Semaphore,
    pub(crate) started: Instant,
    /// Gossip membership: the task that keeps the ring current. `None`: static.
    pub(crate) gossip: Option<GossipHandle>,
    /// Client certificate names that may drain this node.
    pub(crate) operators: Vec<String>,
    /// Tells node certificates from client certificates (gossip is heard from nodes only).
    pub(crate) node_certs: NodeCerts,
    /// Sees every answer before it is written (tests inject faults here; none in a product).
    pub(crate) hooks: Hooks,
    /// The scheduled resyncs this node led.
    pub(crate) resyncs: crate::resync::Resyncs,
}

impl Service {
    /// The answer to one request from `peer` (the name in the caller's certificate).
    pub async fn answer<'a>(&'a self, request: RequestView<'a>, peer: Option<&str>) -> Answer<'a> {
        match request {
            RequestView::Get(get) => self.get(get).await,
            RequestView::Warm(get, mode) => self.warm(&get, mode).await,
            RequestView::Peek(get) => self.peek(&get).await,
            RequestView::Status => self.status_answer(),
            RequestView::Members => self.members(),
            RequestView::Drain => self.drain(peer).await,
            RequestView::Copy(copy) => self.copy(&copy).await,
        }
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.lookup.metrics
    }

    pub(crate) fn refuse(&self, kind: ErrorKind, status: Status, message: String) -> Answer<'static> {
        self.metrics().error(kind);
        tracing::debug!(node = %self.id, kind = kind.as_str(), %message, "refused");
        Answer::other(ResponseHead::error(status, message), Bytes::new())
    }

    /// The volume a request may read, or the refusal to send: unknown volume, wrong token, or
    /// another page size.
    fn authorise(&self, get: &GetView<'_>) -> Result<(&Volume, &VolumeState), Box<Answer<'static>>> {
        let Some((volume, state)) = self.volumes.get_key_value(get.volume) else {
            let msg = format!("node {} serves no volume {}", self.id, get.volume);
            return Err(Box::new(self.refuse(ErrorKind::UnknownVolume, Status::UnknownVolume, msg)));
        };
        if !same_secret(get.token, &state.token) {
            let msg = format!("wrong token for volume {}", get.volume);
            return Err(Box::new(self.refuse(ErrorKind::Unauthorized, Status::Unauthorized, msg)));
        }
        if get.page_size != self.lookup.page_size {
            let msg = format!("page size {} asked, node {} uses {}", get.page_size, self.id, self.lookup.page_size);
            return Err(Box::new(self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg)));
        }
        Ok((volume, state))
    }

    /// The page a `Peek` or `Warm` names (a whole page, by owned key), once the request may read
    /// its volume.
    fn page_key(&self, get: &GetView<'_>) -> Result<(PageKey, &VolumeState), Box<Answer<'static>>> {
        let (volume, state) = self.authorise(get)?;
        let Ok(key) = ObjectKey::new(get.key) else {
            let msg = format!("bad key {:?}", get.key);
            return Err(Box::new(self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg)));
        };
        Ok((PageKey { volume: volume.clone(), key, page: get.page }, state))
    }

    fn busy(&self) -> Answer<'static> {
        let msg = format!("node {} is at its limit of requests in flight", self.id);
        self.refuse(ErrorKind::Busy, Status::Busy, msg)
    }

    /// A failed lookup for `get` as the refusal the client is told.
    fn refuse_failure(&self, get: &GetView<'_>, failure: Failure) -> Answer<'static> {
        match failure {
            Failure::OutOfRange { size } => {
                let msg = format!("page {} of {} starts past its end ({size} bytes)", get.page, get.key);
                self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg)
            }
            Failure::NotFound(msg) => self.refuse(ErrorKind::NotFound, Status::NotFound, msg),
            Failure::Origin(msg) => self.refuse(ErrorKind::Origin, Status::OriginFailed, msg),
            Failure::Busy(msg) => self.refuse(ErrorKind::Busy, Status::Busy, msg),
        }
    }

    /// The asked-for part of a page, with its head encoded on the stack. The digest of a whole
    /// page is the one computed at fill time; a part's is computed over the bytes sent.
    fn slice(&self, get: &GetView<'_>, page: &Page, tier: Tier) -> Answer<'static> {
        page_answer(get, page, tier, self.lookup.membership.epoch())
    }
}

/// A request's place in the node's in-flight limit and gauge, given back when dropped (also when
/// a streamed answer is cut short by the response deadline).
struct InFlight<'a> {
    gauge: &'a Gauge,
    _permit: SemaphorePermit<'a>,
}

impl<'a> InFlight<'a> {
    fn new(gauge: &'a Gauge, permit: SemaphorePermit<'a>) -> Self {
        gauge.inc();
        Self { gauge, _permit: permit }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Compares secrets in time that depends only on their lengths.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
