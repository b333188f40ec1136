//! mirrorcache cache node: a QUIC server over a foyer hybrid cache, reading through to the
//! volumes' object stores on a miss.
//!
//! ```text
//!             ┌──────────── RunningNode ─────────────────────────────────────────┐
//! client ─QUIC─► server.rs ─► service.rs ─► store.rs (foyer: memory ─► disk)      │
//!             │   (mTLS,       (auth, page    │ miss: single-flight fill          │
//!             │   1 stream     geometry,      ▼                                   │
//!             │   per page)    answers)     cache_client::origin (object_store) ─┼─► S3 / files
//!  scrape ───►│ admin.rs (/metrics, /healthz)      metrics.rs (one registry)      │
//!             └───────────────────────────────────────────────────────────────────┘
//! ```
//! `main.rs` parses flags, loads the config, calls [`RunningNode::start`] and waits for a signal.

pub mod admin;
pub mod answer;
pub mod config;
pub mod lookup;
pub mod membership;
pub mod metrics;
pub mod node_id;
pub mod server;
pub mod service;
pub mod store;
pub mod streamed;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use cache_client::{
    config::Membership as MembershipKind,
    node_cert::{NodeCerts, any_node_client_config},
    origin::{OriginChain, OriginError},
    pool::Pool,
    tls::{self, TlsError},
};
use cache_proto::{
    key::NodeId,
    wire::{MemberInfo, MemberState},
};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::NodeConfig,
    membership::{Membership, driver, gossip::Gossip, peer::Peer},
    metrics::NodeMetrics,
    service::{Service, VolumeState},
    store::{PageStore, StoreError},
};

/// Why a node could not start. Each names the part and the file, address or volume at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("node id: {0}")]
    NodeId(std::io::Error),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("volume {volume}: {source}")]
    Origin { volume: String, source: OriginError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// What a test may install in a node it builds: nothing a config file or the environment can
/// turn on, so a product binary cannot be made to misbehave.
#[derive(Default, Clone)]
pub struct Hooks {
    /// Sees every answer before it is written (e.g. the harness's corrupting node).
    pub answer: Option<answer::AnswerHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("answer", &self.answer.is_some()).finish()
    }
}

/// A started node. Dropping it does not stop it: call [`RunningNode::shutdown`].
#[derive(Debug)]
pub struct RunningNode {
    pub id: NodeId,
    quic_addr: SocketAddr,
    admin_addr: SocketAddr,
    service: Arc<Service>,
    endpoint: quinn::Endpoint,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Gossip membership: the task to wait for on shutdown (it says goodbye to the cluster).
    gossip_task: Option<tokio::task::JoinHandle<()>>,
}

/// How often a node looks for a renewed certificate.
const CERT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Deadline for opening a connection to another node (warm handoff).
const PEER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl RunningNode {
    /// Opens the cache (recovering what is on disk), binds QUIC and admin HTTP, and starts
    /// serving. Ports may be 0; the bound addresses are in [`Self::quic_addr`] and
    /// [`Self::admin_addr`].
    pub async fn start(config: NodeConfig) -> Result<Self, StartError> {
        Self::start_with(config, Hooks::default()).await
    }

    /// [`Self::start`] with `hooks` installed (tests inject faults through them).
    pub async fn start_with(config: NodeConfig, hooks: Hooks) -> Result<Self, StartError> {
        let id = node_id::resolve(config.node.id.as_ref(), &config.node.data_dir).map_err(StartError::NodeId)?;
        let files = tls::TlsFiles::load(&config.tls)?;
        let transport = Arc::new(tls::transport_config());
        let mut cert = cache_client::tls_reload::CertReloader::new(&files)?;
        let server_config = tls::quic_server_config(&files, cert.resolver(), transport.clone())?;

        let mut volumes = HashMap::new();
        for v in &config.volume {
            let origin = OriginChain::from_config(&v.origin)
                .map_err(|source| StartError::Origin { volume: v.name.to_string(), source })?;
            volumes.insert(v.name.clone(), VolumeState { token: v.token.clone(), origin: Arc::new(origin) });
        }

        let bind = |what, addr, source| StartError::Bind { what, addr, source };
        let endpoint =
            tls::endpoint(config.node.listen, Some(server_config)).map_err(|e| bind("QUIC", config.node.listen, e))?;
        let quic_addr = endpoint.local_addr().map_err(|e| bind("QUIC", config.node.listen, e))?;

        // This node as it advertises itself; a port of 0 in the config is the bound one.
        let mut advertise = config.advertise();
        if advertise.port() == 0 {
            advertise.set_port(quic_addr.port());
        }
        let me = MemberInfo { id: id.clone(), addr: advertise, weight: config.weight(), state: MemberState::Serving };
        let gossip_seeds = match &config.cluster {
            Some(c) if c.membership == MembershipKind::Gossip => Some(c.seeds.clone()),
            _ => None,
        };
        let members = match &config.cluster {
            Some(c) if c.membership == MembershipKind::Static => c
                .members
                .iter()
                .map(|m| MemberInfo { id: m.id.clone(), addr: m.addr, weight: m.weight, state: MemberState::Serving })
                .collect(),
            _ => vec![MemberInfo {
                state: if gossip_seeds.is_some() { MemberState::Joining } else { MemberState::Serving },
                ..me.clone()
            }],
        };
        let membership = Arc::new(Membership::new(id.clone(), members, config.node.handoff.0));
        let peers =
            Arc::new(Pool::new(endpoint.clone(), tls::client_config(&files, transport.clone())?, PEER_CONNECT_TIMEOUT));
        let shutdown = CancellationToken::new();
        let gossip = match gossip_seeds {
            Some(seeds) => {
                let generation = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_millis() as u64)
                    .max(1);
                let peer = Peer {
                    id: me.id.clone(),
                    addr: me.addr,
                    weight: me.weight,
                    state: MemberState::Serving,
                    generation,
                };
                let gossip = Gossip::new(peer, &seeds, generation ^ u64::from(quic_addr.port()));
                let peer_config = any_node_client_config(&files, transport.clone())?;
                let (handle, task) =
                    driver::spawn(gossip, endpoint.clone(), peer_config, membership.clone(), shutdown.clone());
                Some((handle, task))
            }
            None => None,
        };

        let metrics = NodeMetrics::new(config.volume.iter().map(|v| v.name.clone()).collect());
        let store = PageStore::open(&config, &metrics).await?;
        let service = Arc::new(Service {
            id: id.clone(),
            volumes,
            store,
            metrics,
            page_size: config.cache.page_size.0 as u32,
            origin_timeout: config.node.origin_timeout.0,
            inflight: Semaphore::new(config.node.max_inflight),
            fills: Arc::new(Semaphore::new((config.node.max_fill_bytes.0 / config.cache.page_size.0).max(1) as usize)),
            started: Instant::now(),
            membership,
            gossip: gossip.as_ref().map(|(handle, _)| handle.clone()),
            peers,
            operators: config.node.operators.clone(),
            node_certs: NodeCerts::new(&files)?,
            hooks,
        });

        let admin = tokio::net::TcpListener::bind(config.node.admin_listen)
            .await
            .map_err(|e| bind("admin HTTP", config.node.admin_listen, e))?;
        let admin_addr = admin.local_addr().map_err(|e| bind("admin HTTP", config.node.admin_listen, e))?;

        let tracker = TaskTracker::new();
        // A renewed certificate is picked up without a restart (new handshakes only).
        let (node, token) = (id.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CERT_CHECK_EVERY);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match cert.reload_if_changed() {
                    Ok(true) => tracing::info!(%node, "certificate reloaded; new connections use it"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%node, error = %e, "certificate files changed but do not load; keeping the old one")
                    }
                }
            }
        });
        tokio::spawn(server::serve(endpoint.clone(), service.clone(), shutdown.clone(), tracker.clone()));
        let (s, token) = (service.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = admin::serve(admin, s, token).await {
                tracing::error!(error = %e, "admin HTTP stopped");
            }
        });
        tracing::info!(node = %id, quic = %quic_addr, admin = %admin_addr, "node serving");
        let gossip_task = gossip.map(|(_, task)| task);
        Ok(Self { id, quic_addr, admin_addr, service, endpoint, shutdown, tracker, gossip_task })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.service.metrics
    }

    /// The request handling behind the socket (for benches and allocation tests).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops accepting, lets requests in flight finish (up to `grace`), closes connections, and
    /// flushes and closes the cache so the next start is warm.
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.shutdown.cancel();
        if let Some(task) = self.gossip_task {
            let _ = tokio::time::timeout(grace, task).await;
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(node = %self.id, "requests still in flight after {grace:?}; closing anyway");
        }
        self.endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
        if let Err(e) = self.service.store.close().await {
            tracing::error!(node = %self.id, error = %e, "closing the cache failed");
        }
        tracing::info!(node = %self.id, "node stopped");
    }
}
