//! A node's life: [`Node::build`] opens the cache (recovering what is on disk), loads TLS, binds
//! QUIC and admin HTTP and joins the ring; [`Node::run`] serves until its shutdown future
//! resolves, then lets requests in flight finish and closes the cache, so the next start is warm.
//! As mini-redis's `server::run(listener, shutdown)`: ports may be 0, the bound addresses are
//! known before serving, and a test stops a node by resolving a future, not by a signal.
//!
//! ```text
//! Node::build ─► TLS (reloading cert) ─► volumes' origin chains ─► QUIC endpoint ─► membership
//!             ─► gossip task (if any) ─► PageStore::open ─► Copier::start (queued copies
//!                resume) ─► Service ─► admin listener
//! Node::run   ─► server::serve (QUIC) + admin::serve (HTTP) + cert reload ... shutdown resolves
//!             ─► stop accepting ─► wait for streams (grace) ─► close QUIC ─► close the cache
//! ```

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use cache_client::{
    config::Membership as MembershipKind,
    node_cert::{NodeCerts, any_node_client_config},
    origin::{OriginChain, OriginError},
    pool::Pool,
    tls::{self, TlsError, TlsFiles},
    tls_reload::CertReloader,
};
use cache_proto::{
    key::NodeId,
    wire::{MemberInfo, MemberState},
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    admin,
    answer::Hooks,
    config::NodeConfig,
    copy::{Copier, CopierError, CopierParts},
    cost::OriginPrice,
    lookup::{Lookup, VolumeState},
    membership::{Membership, driver, gossip::Gossip, peer::Peer},
    metrics::NodeMetrics,
    node_id, server,
    service::Service,
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
    #[error("copies into regional buckets: {0}")]
    Copier(#[from] CopierError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// How often a node looks for a renewed certificate.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Deadline for opening a connection to another node (warm handoff).
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A node built and bound, not yet serving.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    quic_addr: SocketAddr,
    admin_addr: SocketAddr,
    service: Arc<Service>,
    endpoint: quinn::Endpoint,
    admin: TcpListener,
    cert: CertReloader,
    /// Fires when the node stops; the gossip task already listens to it.
    stop: CancellationToken,
    /// Gossip membership: the task to wait for on shutdown (it says goodbye to the cluster).
    gossip_task: Option<JoinHandle<()>>,
}

impl Node {
    /// Opens the cache, loads TLS, binds QUIC and admin HTTP (ports may be 0) and joins the ring,
    /// with `hooks` installed (tests inject faults through them; a product passes the default).
    pub async fn build(config: NodeConfig, hooks: Hooks) -> Result<Self, StartError> {
        let id = node_id::resolve(config.node.id.as_ref(), &config.node.data_dir).map_err(StartError::NodeId)?;
        let files = TlsFiles::load(&config.tls)?;
        let transport = Arc::new(tls::transport_config());
        let cert = CertReloader::new(&files)?;
        let server_config = tls::quic_server_config(&files, cert.resolver(), transport.clone())?;

        let mut volumes = HashMap::new();
        for v in &config.volume {
            let origin = OriginChain::from_config(&v.origin)
                .map_err(|source| StartError::Origin { volume: v.name.to_string(), source })?;
            let prices = v.origin.iter().map(OriginPrice::from).collect();
            volumes.insert(v.name.clone(), VolumeState { token: v.token.clone(), origin: Arc::new(origin), prices });
        }

        let bind = |what, addr, source| StartError::Bind { what, addr, source };
        let endpoint =
            tls::endpoint(config.node.listen, Some(server_config)).map_err(|e| bind("QUIC", config.node.listen, e))?;
        let quic_addr = endpoint.local_addr().map_err(|e| bind("QUIC", config.node.listen, e))?;
        let admin = TcpListener::bind(config.node.admin_listen)
            .await
            .map_err(|e| bind("admin HTTP", config.node.admin_listen, e))?;
        let admin_addr = admin.local_addr().map_err(|e| bind("admin HTTP", config.node.admin_listen, e))?;

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
            Some(c) if c.membership == MembershipKind::Static => c.member_infos(),
            _ => vec![MemberInfo {
                state: if gossip_seeds.is_some() { MemberState::Joining } else { MemberState::Serving },
                ..me.clone()
            }],
        };
        let membership = Arc::new(Membership::new(id.clone(), members, config.node.handoff.0));
        let stop = CancellationToken::new();
        let (gossip, gossip_task) = match gossip_seeds {
            Some(seeds) => {
                let generation =
                    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64).max(1);
                let peer =
                    Peer { id: me.id, addr: me.addr, weight: me.weight, state: MemberState::Serving, generation };
                let gossip = Gossip::new(peer, &seeds, generation ^ u64::from(quic_addr.port()));
                let peer_config = any_node_client_config(&files, transport.clone())?;
                let (handle, task) =
                    driver::spawn(gossip, endpoint.clone(), peer_config, membership.clone(), stop.clone());
                (Some(handle), Some(task))
            }
            None => (None, None),
        };

        let metrics = NodeMetrics::new(config.volume.iter().map(|v| v.name.clone()).collect());
        for v in &config.volume {
            metrics.volume_origins(&v.name, v.origin.len());
        }
        let store = PageStore::open(&config, &metrics).await?;
        let page_size = config.cache.page_size.0;
        let chains = volumes.iter().map(|(name, state)| (name.clone(), state.origin.clone())).collect();
        let parts = CopierParts {
            node: id.clone(),
            data_dir: &config.node.data_dir,
            config: config.copy.clone(),
            store: store.clone(),
            page_size,
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        let copier = Copier::start(parts, &config.volume, &chains)?;
        let lookup = Lookup {
            id: id.clone(),
            store,
            metrics,
            membership,
            peers: Arc::new(Pool::new(endpoint.clone(), tls::client_config(&files, transport)?, PEER_CONNECT_TIMEOUT)),
            fills: Arc::new(Semaphore::new((config.node.max_fill_bytes.0 / page_size).max(1) as usize)),
            taps: Arc::default(),
            page_size: page_size as u32,
            origin_timeout: config.node.origin_timeout.0,
            copier,
        };
        let service = Arc::new(Service {
            id: id.clone(),
            volumes,
            lookup,
            inflight: Semaphore::new(config.node.max_inflight),
            started: Instant::now(),
            gossip,
            operators: config.node.operators.clone(),
            node_certs: NodeCerts::new(&files)?,
            hooks,
            resyncs: crate::resync::Resyncs::open(&config.node.data_dir, config.copy.resync_every.0),
        });
        Ok(Self { id, quic_addr, admin_addr, service, endpoint, admin, cert, stop, gossip_task })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` resolves to a grace period, then stops accepting, lets requests
    /// in flight finish (up to the grace), closes connections, and flushes and closes the cache.
    pub async fn run(self, shutdown: impl Future<Output = Duration>) {
        let Self { id, quic_addr, admin_addr, service, endpoint, admin, mut cert, stop, gossip_task } = self;
        let tracker = TaskTracker::new();
        let quic = tokio::spawn(server::serve(endpoint.clone(), service.clone(), stop.clone(), tracker.clone()));
        let admin = tokio::spawn(admin::serve(admin, service.clone(), stop.clone()));
        tokio::spawn(crate::resync::run(service.clone(), stop.clone()));
        tracing::info!(node = %id, quic = %quic_addr, admin = %admin_addr, "node serving");

        // A renewed certificate is picked up without a restart (new handshakes only).
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(CERT_CHECK_EVERY);
        let grace = loop {
            tokio::select! {
                grace = &mut shutdown => break grace,
                _ = tick.tick() => match cert.reload_if_changed() {
                    Ok(true) => tracing::info!(node = %id, "certificate reloaded; new connections use it"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(node = %id, error = %e, "certificate files changed but do not load; keeping the old one"),
                },
            }
        };

        stop.cancel();
        if let Some(task) = gossip_task {
            let _ = tokio::time::timeout(grace, task).await;
        }
        let _ = quic.await;
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(node = %id, "requests still in flight after {grace:?}; closing anyway");
        }
        endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
        if let Ok(Err(e)) = admin.await {
            tracing::error!(node = %id, error = %e, "admin HTTP stopped");
        }
        if let Err(e) = service.lookup.store.close().await {
            tracing::error!(node = %id, error = %e, "closing the cache failed");
        }
        tracing::info!(node = %id, "node stopped");
    }
}

/// A node serving on a task of its own, for tests and benches. Dropping it does not stop it:
/// call [`RunningNode::shutdown`].
#[derive(Debug)]
pub struct RunningNode {
    pub id: NodeId,
    quic_addr: SocketAddr,
    admin_addr: SocketAddr,
    service: Arc<Service>,
    stop: tokio::sync::oneshot::Sender<Duration>,
    task: JoinHandle<()>,
}

impl RunningNode {
    /// [`Node::build`] with no hooks, then [`Node::run`] on its own task.
    pub async fn start(config: NodeConfig) -> Result<Self, StartError> {
        Self::start_with(config, Hooks::default()).await
    }

    /// [`Node::build`] with `hooks` installed, then [`Node::run`] on its own task.
    pub async fn start_with(config: NodeConfig, hooks: Hooks) -> Result<Self, StartError> {
        let node = Node::build(config, hooks).await?;
        let (id, quic_addr, admin_addr, service) =
            (node.id.clone(), node.quic_addr, node.admin_addr, node.service.clone());
        let (stop, grace) = tokio::sync::oneshot::channel();
        // Dropping a RunningNode does not stop it (the sender is gone, not a grace sent).
        let shutdown = async move {
            match grace.await {
                Ok(grace) => grace,
                Err(_) => std::future::pending().await,
            }
        };
        let task = tokio::spawn(node.run(shutdown));
        Ok(Self { id, quic_addr, admin_addr, service, stop, task })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn metrics(&self) -> &NodeMetrics {
        self.service.metrics()
    }

    /// The request handling behind the socket (for benches and allocation tests).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops the node as [`Node::run`] does, with `grace` for requests in flight.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(grace);
        let _ = self.task.await;
    }
}
