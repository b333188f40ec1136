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
pub mod config;
pub mod lookup;
pub mod metrics;
pub mod node_id;
pub mod server;
pub mod service;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use cache_client::{
    key::NodeId,
    origin::{OriginChain, OriginError},
    tls::{self, TlsError},
};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::NodeConfig,
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
}

impl RunningNode {
    /// Opens the cache (recovering what is on disk), binds QUIC and admin HTTP, and starts
    /// serving. Ports may be 0; the bound addresses are in [`Self::quic_addr`] and
    /// [`Self::admin_addr`].
    pub async fn start(config: NodeConfig) -> Result<Self, StartError> {
        let id = node_id::resolve(config.node.id.as_ref(), &config.node.data_dir).map_err(StartError::NodeId)?;
        let files = tls::TlsFiles::load(&config.tls)?;
        let server_config = tls::server_config(&files, Arc::new(tls::transport_config()))?;

        let mut volumes = HashMap::new();
        for v in &config.volume {
            let origin = OriginChain::from_config(&v.origin)
                .map_err(|source| StartError::Origin { volume: v.name.to_string(), source })?;
            volumes.insert(v.name.clone(), VolumeState { token: v.token.clone(), origin: Arc::new(origin) });
        }

        let metrics = NodeMetrics::new(config.volume.iter().map(|v| v.name.clone()).collect());
        let store = PageStore::open(&config, metrics.registry.clone()).await?;
        let service = Arc::new(Service {
            id: id.clone(),
            volumes,
            store,
            metrics,
            page_size: config.cache.page_size.0 as u32,
            origin_timeout: config.node.origin_timeout.0,
            inflight: Semaphore::new(config.node.max_inflight),
            started: Instant::now(),
        });

        let bind = |what, addr, source| StartError::Bind { what, addr, source };
        let endpoint = quinn::Endpoint::server(server_config, config.node.listen)
            .map_err(|e| bind("QUIC", config.node.listen, e))?;
        let quic_addr = endpoint.local_addr().map_err(|e| bind("QUIC", config.node.listen, e))?;
        let admin = tokio::net::TcpListener::bind(config.node.admin_listen)
            .await
            .map_err(|e| bind("admin HTTP", config.node.admin_listen, e))?;
        let admin_addr = admin.local_addr().map_err(|e| bind("admin HTTP", config.node.admin_listen, e))?;

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::spawn(server::serve(endpoint.clone(), service.clone(), shutdown.clone(), tracker.clone()));
        let (s, token) = (service.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = admin::serve(admin, s, token).await {
                tracing::error!(error = %e, "admin HTTP stopped");
            }
        });
        tracing::info!(node = %id, quic = %quic_addr, admin = %admin_addr, "node serving");
        Ok(Self { id, quic_addr, admin_addr, service, endpoint, shutdown, tracker })
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
