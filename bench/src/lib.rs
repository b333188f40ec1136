//! Shared setup for the criterion benches in `benches/`, the cluster load tool ([`load`]) and the
//! correctness checker ([`check`]): certificates, an in-process S3 origin with JuiceFS-shaped
//! 4 MiB objects, node and client configs, a node with a client on loopback, a bare quinn pair
//! with the same transport and TLS, and a driver that keeps `n` operations in flight.
//!
//! ```text
//!  Loopback::start ─► certs (ca, a, client) ─► S3Origin (put objects) ─► RunningNode "a" ─► Client
//!  BarePair::start ─► quinn server (payload per stream) ◄── quinn client, same TLS; our transport
//!                     settings or quinn's defaults
//!  in_flight(n, per_task, op)  n tasks, each running `op` per_task times; returns the wall time
//! ```
//!
//! Everything lives in a temp dir that is removed when the owner is dropped.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use cache_client::{
    Client,
    config::{ClientConfig, ClusterConfig, MemberConfig, OriginConfig, TlsConfig, VolumeConfig},
    tls,
};
use cache_node::{RunningNode, config::NodeConfig, metrics::NodeMetrics, store::PageStore};
use cache_proto::{
    key::{NodeId, ObjectKey, Volume},
    units::{ByteSize, Span},
};
use cache_testkit::S3Origin;
use tempfile::TempDir;

pub mod check;
pub mod load;
pub mod proxy;
pub mod relay;

pub const AK: &str = "AKIAMIRRORCACHEBENCH";
pub const SK: &str = "mirrorcache-bench-secret-key";
pub const TOKEN: &str = "vol1-token-0123456789";
pub const BUCKET: &str = "bucket";
pub const VOLUME: &str = "vol1";
/// Page size of every bench (one JuiceFS block).
pub const PAGE: u64 = 4 << 20;
/// The node's id, and the server name clients connect to.
pub const NODE_ID: &str = "a";

pub use cache_testkit::content;

/// A JuiceFS-shaped block key: `<fs>/chunks/<id/1000/1000>/<id/1000>/<id>_<index>_<size>`.
pub fn block_key(slice: u64, index: u64, size: u64) -> ObjectKey {
    ObjectKey::new(&cache_testkit::block_key(slice, index, size)).expect("block keys are valid object keys")
}

/// The bench volume's name.
pub fn volume() -> Volume {
    Volume::new(VOLUME).expect("valid volume name")
}

/// Writes a CA, one certificate per node id and one for `client` into `dir`, and returns `dir`.
pub fn certs(dir: &Path, nodes: &[&str]) -> anyhow::Result<PathBuf> {
    cachectl::certs::generate(dir, nodes, &["client"], 30).context("generate certificates")?;
    Ok(dir.to_owned())
}

/// The `[tls]` section of `name` (a node id or `client`) for certificates made by [`certs`].
pub fn tls_paths(certs: &Path, name: &str) -> TlsConfig {
    TlsConfig::in_dir(certs, name)
}

/// The bench volume on `origin` (region `us-east-1` unless it names one).
fn volume_config(origin: &OriginConfig) -> VolumeConfig {
    let origin = OriginConfig { region: origin.region.clone().or_else(|| Some("us-east-1".into())), ..origin.clone() };
    VolumeConfig::new(volume(), TOKEN, vec![origin])
}

fn byte_size(what: &str, text: &str) -> anyhow::Result<ByteSize> {
    text.parse().map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// A validated node config: id [`NODE_ID`], QUIC and admin on 127.0.0.1:0, data in `data_dir`,
/// 4 MiB pages, the given cache sizes (e.g. `"64MiB"`), and the bench volume if `origin` is set.
/// The certificates are only read by [`RunningNode::start`], not by [`open_store`].
pub fn node_config(
    data_dir: &Path,
    certs: &Path,
    memory: &str,
    disk: &str,
    origin: Option<&OriginConfig>,
) -> anyhow::Result<NodeConfig> {
    let id = NodeId::new(NODE_ID).context("node id")?;
    let mut config = NodeConfig::local(id, data_dir, tls_paths(certs, NODE_ID));
    config.cache.memory_capacity = byte_size("cache.memory_capacity", memory)?;
    config.cache.disk_capacity = byte_size("cache.disk_capacity", disk)?;
    config.cache.page_size = ByteSize(PAGE);
    config.volume = origin.map(volume_config).into_iter().collect();
    config.validate().context("node config")?;
    Ok(config)
}

/// A validated client config for `members` (id, QUIC address), with the `client` certificate and
/// the bench volume on `origin`.
pub fn client_config(
    members: &[(&str, SocketAddr)],
    certs: &Path,
    origin: &OriginConfig,
) -> anyhow::Result<ClientConfig> {
    let members = members
        .iter()
        .map(|(id, addr)| Ok(MemberConfig::new(NodeId::new(id).with_context(|| format!("node id {id}"))?, *addr)))
        .collect::<anyhow::Result<_>>()?;
    let mut config = ClientConfig::new(ClusterConfig::members(members), tls_paths(certs, "client"));
    config.client.connect_timeout = Span(Duration::from_secs(2));
    config.client.page_timeout = Span(Duration::from_secs(10));
    config.client.origin_timeout = Span(Duration::from_secs(10));
    config.volume = vec![volume_config(origin)];
    config.validate().context("client config")?;
    Ok(config)
}

/// Opens a bare page store (no node around it) in `dir` with the given capacities.
pub async fn open_store(dir: &Path, memory: &str, disk: &str) -> anyhow::Result<PageStore> {
    let config = node_config(dir, &dir.join("no-certs"), memory, disk, None)?;
    Ok(PageStore::open(&config, &NodeMetrics::new(Vec::new())).await?)
}

/// Puts `n` objects of [`PAGE`] bytes (seeds `0..n`) into the bench volume on `s3` and returns
/// their keys.
pub fn put_blocks(s3: &S3Origin, n: u64) -> anyhow::Result<Vec<ObjectKey>> {
    (0..n)
        .map(|i| {
            let key = block_key(1000 + i, 0, PAGE);
            s3.put(BUCKET, &format!("{VOLUME}/{key}"), &content(i, PAGE)).with_context(|| format!("put {key}"))?;
            Ok(key)
        })
        .collect()
}

/// One node serving the bench volume from an in-process S3 origin, and a client of it, all on
/// loopback in this process.
#[derive(Debug)]
pub struct Loopback {
    pub dir: TempDir,
    pub s3: S3Origin,
    pub node: RunningNode,
    pub client: Arc<Client>,
    pub volume: Volume,
    /// Objects of one page each, in the origin (not yet in the cache: see [`Loopback::warm`]).
    pub keys: Vec<ObjectKey>,
}

impl Loopback {
    /// Starts the origin with `objects` objects of one page, the node (memory `memory`, disk
    /// 512 MiB) and a client whose single member is the node. Call inside a tokio runtime.
    pub async fn start(objects: u64, memory: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("tempdir")?;
        let certs = certs(&dir.path().join("certs"), &[NODE_ID])?;
        let s3 = S3Origin::start(&dir.path().join("origin"), AK, SK).await?;
        let keys = put_blocks(&s3, objects)?;
        let origin = s3.origin_config(BUCKET, VOLUME);
        let config = node_config(&dir.path().join("node"), &certs, memory, "512MiB", Some(&origin))?;
        let node = RunningNode::start(config).await.context("start node")?;
        let client = Client::new(&client_config(&[(NODE_ID, node.quic_addr())], &certs, &origin)?)?;
        Ok(Self { dir, s3, node, client: Arc::new(client), volume: volume(), keys })
    }

    /// Reads every object once through the cache, so later reads are hits.
    pub async fn warm(&self) -> anyhow::Result<()> {
        for key in &self.keys {
            let bytes = self.client.read(&self.volume, key, 0, PAGE).await?;
            anyhow::ensure!(bytes.len() as u64 == PAGE, "{key}: read {} bytes", bytes.len());
        }
        Ok(())
    }

    /// Reads object `i % keys` whole through the cache and checks its length.
    pub async fn read(&self, i: u64) -> anyhow::Result<Bytes> {
        let key = &self.keys[(i % self.keys.len() as u64) as usize];
        let bytes = self.client.read(&self.volume, key, 0, PAGE).await?;
        anyhow::ensure!(bytes.len() as u64 == PAGE, "{key}: read {} bytes", bytes.len());
        Ok(bytes)
    }

    /// Stops the node (flushing its cache); the origin and the temp dir go when `self` drops.
    pub async fn shutdown(self) {
        self.node.shutdown(Duration::from_secs(5)).await;
    }
}

/// The transport settings of a [`BarePair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareConfig {
    /// The node's and client's own ([`tls::transport_config`], [`tls::endpoint_config`]).
    Ours,
    /// quinn's defaults (`TransportConfig::default()`, `EndpointConfig::default()`).
    QuinnDefault,
}

/// Two quinn endpoints on loopback with the node's mTLS setup (server name [`NODE_ID`]) and the
/// transport settings given by a [`BareConfig`]. The server answers every bidirectional stream with the first `u32` (big-endian)
/// bytes the client asks for from its payload, as one `write_chunk` of a shared `Bytes`, the way a
/// node answers a page. This is the ceiling the cache path is measured against.
#[derive(Debug)]
pub struct BarePair {
    pub dir: TempDir,
    pub server: quinn::Endpoint,
    pub client: quinn::Endpoint,
    pub conn: quinn::Connection,
}

impl BarePair {
    /// Binds both endpoints, starts the server and connects. Call inside a tokio runtime.
    pub async fn start(payload: Bytes, config: BareConfig) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("tempdir")?;
        let certs = certs(dir.path(), &[NODE_ID])?;
        let server_tls = tls::TlsFiles::load(&tls_paths(&certs, NODE_ID))?;
        let client_tls = tls::TlsFiles::load(&tls_paths(&certs, "client"))?;
        let (server_addr, client_addr) = (([127, 0, 0, 1], 0).into(), ([0, 0, 0, 0], 0).into());
        let (transport, server, mut client) = match config {
            BareConfig::Ours => {
                let transport = Arc::new(tls::transport_config());
                let server_config = tls::server_config(&server_tls, transport.clone())?;
                (transport, tls::endpoint(server_addr, Some(server_config))?, tls::endpoint(client_addr, None)?)
            }
            BareConfig::QuinnDefault => {
                let transport = Arc::new(quinn::TransportConfig::default());
                let server_config = tls::server_config(&server_tls, transport.clone())?;
                (transport, quinn::Endpoint::server(server_config, server_addr)?, quinn::Endpoint::client(client_addr)?)
            }
        };
        let addr = server.local_addr()?;
        client.set_default_client_config(tls::client_config(&client_tls, transport)?);
        tokio::spawn(serve_bare(server.clone(), payload));
        let conn = client.connect(addr, NODE_ID)?.await.context("bare quinn handshake")?;
        Ok(Self { dir, server, client, conn })
    }

    /// Asks for `len` bytes on a new stream and reads them into one buffer, as the client does.
    pub async fn fetch(&self, len: u32) -> anyhow::Result<Bytes> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(&len.to_be_bytes()).await?;
        send.finish()?;
        let mut buf = vec![0u8; len as usize];
        recv.read_exact(&mut buf).await?;
        Ok(buf.into())
    }

    /// Closes both endpoints.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.server.close(0u32.into(), b"done");
        self.client.wait_idle().await;
    }
}

async fn serve_bare(endpoint: quinn::Endpoint, payload: Bytes) {
    while let Some(incoming) = endpoint.accept().await {
        let payload = payload.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let payload = payload.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 4];
                    recv.read_exact(&mut len).await?;
                    let len = (u32::from_be_bytes(len) as usize).min(payload.len());
                    send.write_chunk(payload.slice(..len)).await?;
                    send.finish()?;
                    anyhow::Ok(())
                });
            }
        });
    }
}

/// Runs `op(i)` for `i` in `0..n * per_task` on `n` spawned tasks (task `t` takes `t, t + n, ...`),
/// so `n` operations are in flight until the last ones drain, and returns the wall time. The first
/// error stops the run.
pub async fn in_flight<F, Fut>(n: u64, per_task: u64, op: F) -> anyhow::Result<Duration>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let began = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for j in 0..per_task {
                    op(t + j * n).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("in-flight task panicked")??;
    }
    Ok(began.elapsed())
}

/// The multi-thread tokio runtime the async benches run in (one worker per core).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}
