//! Where a client's ring comes from. `static`: the config's member list, fixed. `gossip`: the
//! nodes themselves. The client asks a seed (or any member it knows) for `Members` before its
//! first read (reads that start meanwhile wait for that answer), and again when an answer
//! carries an epoch other than its ring's, so a ring change reaches a client with its next read
//! from any node. Refreshes are one at a time and at most one per [`MIN_REFRESH_INTERVAL`], so
//! nodes that briefly disagree cannot make a client spin.
//!
//! `RingSource` owns the refresh logic and is given the client's pool for each request; the
//! `impl Client` block at the end is the public face (`ring`, `refresh_members`) and the hooks
//! the read path calls (`ensure_ring`, `note_epoch`).
//!
//! A stale ring is safe: a wrong owner answers from its cache or reads the origin (a miss, not a
//! wrong byte), and a member that is gone fails over to the next one, then to the origin.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

use crate::{
    Client,
    config::{ClusterConfig, Membership},
    pool::{ExchangeError, Pool},
};
use cache_proto::{
    members::{MembersError, RingView},
    ring::Member,
    wire::{MembersAnswer, Request, ResponseHead, Status},
};

/// Least time between two refreshes of a client's ring.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct RingSource {
    membership: Membership,
    seeds: Vec<SocketAddr>,
    /// Connects to a seed whatever its node id (see `node_cert`).
    seed_config: quinn::ClientConfig,
    view: RwLock<Arc<RingView>>,
    /// Held while a refresh runs; the time of the last one.
    last_refresh: Mutex<Option<Instant>>,
}

impl RingSource {
    pub(crate) fn new(cluster: &ClusterConfig, seed_config: quinn::ClientConfig) -> Self {
        let view = match cluster.membership {
            Membership::Static => cluster.static_ring(),
            Membership::Gossip => RingView::new(Vec::new()),
        };
        Self {
            membership: cluster.membership,
            seeds: cluster.seeds.clone(),
            seed_config,
            view: RwLock::new(view),
            last_refresh: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<RingView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a ring could not be had from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("bad members JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Members(#[from] MembersError),
    #[error("refused ({}): {message}", status.as_str())]
    Refused { status: Status, message: String },
    #[error("not a members answer: {0:?}")]
    NotMembers(ResponseHead),
    /// A member (its id) or a seed (`seed <addr>`) answered with something unusable.
    #[error("{node}: {source}")]
    Node { node: String, source: Box<RefreshError> },
    #[error("no node told its members: {}", join(.tried))]
    NoneAnswered { tried: Vec<RefreshError> },
}

fn join(errors: &[RefreshError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Parses a `Members` answer into a ring.
fn parse_members(head: ResponseHead, payload: &[u8]) -> Result<Arc<RingView>, RefreshError> {
    match head {
        ResponseHead::Status { .. } => {
            let answer: MembersAnswer = serde_json::from_slice(payload).map_err(RefreshError::Json)?;
            Ok(RingView::from_answer(answer)?)
        }
        ResponseHead::Error(e) => Err(RefreshError::Refused { status: e.status, message: e.message }),
        other => Err(RefreshError::NotMembers(other)),
    }
}

impl RingSource {
    /// Asks the cluster for its members (gossip membership; static membership keeps its list):
    /// the members this client knows first, then the seeds. Returns the ring in use afterwards.
    async fn refresh(&self, pool: &Pool, timeout: Duration) -> Result<Arc<RingView>, RefreshError> {
        if self.membership == Membership::Static {
            return Ok(self.current());
        }
        let mut why = Vec::new();
        for m in &self.current().members {
            let member = Member { id: m.id.clone(), addr: m.addr, weight: m.weight };
            match pool.exchange(&member, &Request::Members, timeout, |_| Ok(())).await {
                Ok((head, payload)) => match parse_members(head, &payload) {
                    Ok(view) => return Ok(self.install(pool, view)),
                    Err(e) => why.push(RefreshError::Node { node: m.id.to_string(), source: Box::new(e) }),
                },
                Err(e) => why.push(e.into()),
            }
        }
        for &seed in &self.seeds {
            match pool.ask_addr(&self.seed_config, seed, &Request::Members, timeout).await {
                Ok((head, payload)) => match parse_members(head, &payload) {
                    Ok(view) => return Ok(self.install(pool, view)),
                    Err(e) => why.push(RefreshError::Node { node: format!("seed {seed}"), source: Box::new(e) }),
                },
                Err(e) => why.push(e.into()),
            }
        }
        Err(RefreshError::NoneAnswered { tried: why })
    }

    fn install(&self, pool: &Pool, view: Arc<RingView>) -> Arc<RingView> {
        let mut current = self.view.write().unwrap_or_else(|e| e.into_inner());
        if current.epoch != view.epoch {
            tracing::info!(epoch = format_args!("{:016x}", view.epoch), members = view.members.len(), "ring changed");
            pool.retain(|id| view.get(id.as_str()).is_some());
            *current = view;
        }
        current.clone()
    }

    /// Before a read: a gossip client that has no ring yet asks for one, and reads that start
    /// meanwhile wait for it (if no node answers, reads go to the origin, and a read after
    /// [`MIN_REFRESH_INTERVAL`] asks again).
    async fn ensure(&self, pool: &Pool, timeout: Duration) {
        if self.membership != Membership::Gossip || !self.current().members.is_empty() {
            return;
        }
        let mut last = self.last_refresh.lock().await;
        if self.current().members.is_empty() && !last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
            if let Err(e) = self.refresh(pool, timeout).await {
                tracing::warn!(error = %e, "no ring yet; reading the origin");
            }
            *last = Some(Instant::now());
        }
    }

    /// After an answer from `from` that carried `epoch`: refresh the ring from `from` (alive, and
    /// it knows the newer ring) if it has another epoch, unless a refresh is running or ran
    /// within [`MIN_REFRESH_INTERVAL`]; the read goes on either way.
    async fn note_epoch(&self, pool: &Pool, timeout: Duration, epoch: u64, from: &Member) {
        if self.membership != Membership::Gossip || epoch == self.current().epoch {
            return;
        }
        let Ok(mut last) = self.last_refresh.try_lock() else { return };
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
            return;
        }
        let result = match pool.exchange(from, &Request::Members, timeout, |_| Ok(())).await {
            Ok((head, payload)) => parse_members(head, &payload).map(|view| drop(self.install(pool, view))),
            Err(e) => Err(e.into()),
        };
        *last = Some(Instant::now());
        if let Err(e) = result {
            tracing::debug!(error = %e, "ring refresh failed");
        }
    }
}

/// The ring half of [`Client`]: each call hands `RingSource` the client's pool and its
/// `page_timeout` for the `Members` requests.
impl Client {
    /// The ring this client routes by, with its members and epoch.
    pub fn ring(&self) -> Arc<RingView> {
        self.ring_source.current()
    }

    /// Asks the cluster for its members (gossip membership; static membership keeps its list):
    /// the members this client knows first, then the seeds. Returns the ring in use afterwards.
    pub async fn refresh_members(&self) -> Result<Arc<RingView>, RefreshError> {
        self.ring_source.refresh(&self.pool, self.timeouts.page_timeout.0).await
    }

    /// See `RingSource::ensure`.
    pub(crate) async fn ensure_ring(&self) {
        self.ring_source.ensure(&self.pool, self.timeouts.page_timeout.0).await
    }

    /// See `RingSource::note_epoch`.
    pub(crate) async fn note_epoch(&self, epoch: u64, from: &Member) {
        self.ring_source.note_epoch(&self.pool, self.timeouts.page_timeout.0, epoch, from).await
    }
}
