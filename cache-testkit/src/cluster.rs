//! A real cluster for integration tests: `cache-node` processes on loopback QUIC (port 0; the
//! bound addresses are read from each node's startup line and kept for restarts), an in-process
//! S3 server (s3s + s3s-fs) with SigV4 credentials as the origin, and certificates from
//! `cachectl certs`' own generator. Everything lives in one temp dir and is killed on drop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use bytes::Bytes;
use cache_client::{
    Client,
    config::{ClientConfig, ClusterConfig, MemberConfig, OriginConfig, TlsConfig, VolumeConfig},
};
use cache_node::config::{CacheSection, NodeConfig};
use cache_proto::{
    key::NodeId,
    units::{ByteSize, Span},
};
use serde::Serialize;
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::S3Origin;
pub use crate::{block_key, content};

pub const AK: &str = "AKIAMIRRORCACHETEST";
pub const SK: &str = "mirrorcache-test-secret-key";
pub const TOKEN: &str = "vol1-token-0123456789";
pub const BUCKET: &str = "bucket";
pub const VOLUME: &str = "vol1";
pub const PAGE: u64 = 4 << 20;

#[derive(Debug)]
pub struct NodeProc {
    pub id: String,
    pub quic: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
}

impl NodeProc {
    /// The node's process id while it runs (to read its /proc entries).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub dir: TempDir,
    pub s3: S3Origin,
    pub nodes: Vec<NodeProc>,
    /// Gossip membership seeded by the first node (else a static member list per client).
    pub gossip: bool,
    /// Deadlines and retries of the origin, for nodes and clients alike.
    pub tuning: OriginTuning,
    /// The `[cache]` section of the nodes' configs (written at each spawn).
    pub cache: CacheSection,
    /// Applied to each node's config at each spawn, after the harness's own keys (e.g. to set
    /// `node.max_inflight`).
    pub configure_node: fn(&mut NodeConfig),
    /// Environment of the node processes (e.g. a fault injector's `LD_PRELOAD`).
    pub node_env: Vec<(String, String)>,
    /// Setup 2: a second S3 server, the volume's regional copy (the first origin of the chain,
    /// `replica = true`, same bucket and prefix as the source `s3`), started by
    /// [`Self::start_with_replica`].
    pub replica: Option<S3Origin>,
    /// Applied to the regional copy's `[[volume.origin]]` entry (e.g. write credentials, prices).
    pub configure_replica: fn(&mut OriginConfig),
}

/// The origin's deadlines and retries in a test cluster's configs.
#[derive(Debug, Clone)]
pub struct OriginTuning {
    /// `origin_timeout` of nodes (`[node]`) and clients (`[client]`).
    pub origin_timeout: Duration,
    /// Applied to each `[[volume.origin]]` entry, e.g. to set `stall_timeout`.
    pub configure_origin: fn(&mut OriginConfig),
    /// The origin's endpoint as nodes and clients reach it, when not the S3 server's own (a
    /// delaying proxy in front of it).
    pub endpoint: Option<String>,
}

impl Default for OriginTuning {
    fn default() -> Self {
        Self { origin_timeout: Duration::from_secs(10), configure_origin: |_| {}, endpoint: None }
    }
}

/// The `[cache]` section of test nodes: 64 MiB of memory, 512 MiB of disk, 4 MiB pages.
pub fn cache() -> CacheSection {
    CacheSection {
        memory_capacity: ByteSize::mib(64),
        disk_capacity: ByteSize::mib(512),
        page_size: ByteSize(PAGE),
        ..CacheSection::default()
    }
}

/// Writes `config` (a node's or a client's) as a TOML file at `path`.
pub fn write_config(path: &Path, config: &impl Serialize) {
    let text = toml::to_string(config).expect("configs serialize to TOML");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The test volume's name.
pub fn vol() -> cache_proto::key::Volume {
    cache_proto::key::Volume::new(VOLUME).expect("valid")
}

/// An object key that must be valid.
pub fn key(k: &str) -> cache_proto::key::ObjectKey {
    cache_proto::key::ObjectKey::new(k).expect("valid")
}

/// Handoff window of gossip test clusters (short, so drains finish quickly).
pub const HANDOFF: Duration = Duration::from_secs(5);

/// A loopback UDP port that was free a moment ago (gossip nodes need their addresses before
/// they start, to be each other's seeds).
fn free_udp_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr")
}

/// The value of the series `series` (name and labels, as printed) in a `/metrics` text; 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// A counter foyer registers, summed by family and `op` label (prometheus-client appends its
/// own `_total` to foyer's names).
pub fn foyer_metric(text: &str, family: &str, op: &str) -> f64 {
    let op = format!("op=\"{op}\"");
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains(&op))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A binary of the workspace, found where cargo builds it: beside the test executable's `deps/`
/// directory (`target/<profile>/`). (`CARGO_BIN_EXE_*` exists only in a package's own tests.)
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let profile = if deps.ends_with("deps") { deps.parent().expect("target/<profile>") } else { deps };
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p {name}`), or run the tests with `scripts/test.sh` (or \
         `cargo nextest run --workspace`), which builds it",
        path.display()
    );
    path
}

/// `cache-node`, built beside the tests (cargo builds it for cache-node's own tests).
pub fn node_binary() -> PathBuf {
    workspace_binary("cache-node")
}

/// `cachectl`, built beside `cache-node` when the workspace's tests are built.
pub fn cachectl_binary() -> PathBuf {
    workspace_binary("cachectl")
}

impl Cluster {
    /// Starts the origin and one node per id.
    pub async fn start(ids: &[&str]) -> Cluster {
        Self::start_with(ids, false, &[]).await
    }

    /// Starts the origin and one node per id, with gossip membership seeded by the first node;
    /// certificates are made for `spare` ids too, for nodes added later with [`Self::add`].
    pub async fn start_gossip(ids: &[&str], spare: &[&str]) -> Cluster {
        Self::start_with(ids, true, spare).await
    }

    /// Starts the origin and one node per id, with the origin's deadlines and retries set.
    pub async fn start_tuned(ids: &[&str], tuning: OriginTuning) -> Cluster {
        Self::start_with_config(ids, false, &[], move |c| c.tuning = tuning).await
    }

    /// [`Self::start`], with `configure` applied before the nodes start (e.g. to set `cache`).
    pub async fn start_configured(ids: &[&str], configure: impl FnOnce(&mut Cluster)) -> Cluster {
        Self::start_with_config(ids, false, &[], configure).await
    }

    /// Setup 2: [`Self::start_configured`] with a second S3 server (`replica`) as the volume's
    /// regional copy, in front of the source (`s3`) in every origin chain.
    pub async fn start_with_replica(ids: &[&str], configure: impl FnOnce(&mut Cluster)) -> Cluster {
        Self::start_inner(ids, false, &[], true, configure).await
    }

    async fn start_with(ids: &[&str], gossip: bool, spare: &[&str]) -> Cluster {
        Self::start_with_config(ids, gossip, spare, |_| {}).await
    }

    async fn start_with_config(
        ids: &[&str],
        gossip: bool,
        spare: &[&str],
        configure: impl FnOnce(&mut Cluster),
    ) -> Cluster {
        Self::start_inner(ids, gossip, spare, false, configure).await
    }

    async fn start_inner(
        ids: &[&str],
        gossip: bool,
        spare: &[&str],
        with_replica: bool,
        configure: impl FnOnce(&mut Cluster),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let all: Vec<&str> = ids.iter().chain(spare).copied().collect();
        cachectl::certs::generate(&dir.path().join("certs"), &all, &["client"], 30).expect("certificates");
        let s3 = S3Origin::start(&dir.path().join("origin"), AK, SK).await.expect("S3 origin");
        let replica = if with_replica {
            let root = dir.path().join("regional");
            std::fs::create_dir_all(root.join(BUCKET)).expect("regional bucket");
            Some(S3Origin::start(&root, AK, SK).await.expect("regional S3"))
        } else {
            None
        };
        let mut cluster = Cluster {
            dir,
            s3,
            nodes: Vec::new(),
            gossip,
            tuning: OriginTuning::default(),
            cache: cache(),
            configure_node: |_| {},
            node_env: Vec::new(),
            replica,
            configure_replica: |_| {},
        };
        configure(&mut cluster);
        for id in ids {
            cluster.add(id).await;
        }
        cluster
    }

    /// Starts one more node (gossip: it joins through the first node).
    pub async fn add(&mut self, id: &str) -> usize {
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let quic = if self.gossip { free_udp_addr() } else { unbound };
        self.nodes.push(NodeProc { id: id.to_string(), quic, admin: unbound, child: None });
        let i = self.nodes.len() - 1;
        self.spawn(i).await;
        i
    }

    /// The `[cluster]` section of a gossip node or client.
    fn gossip_cluster(&self) -> ClusterConfig {
        ClusterConfig::gossip(vec![self.nodes[0].quic])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn volume_config(&self, name: &str, token: &str) -> VolumeConfig {
        let mut origin = self.s3.origin_config(BUCKET, VOLUME);
        if let Some(endpoint) = &self.tuning.endpoint {
            origin.endpoint = Some(endpoint.clone());
        }
        (self.tuning.configure_origin)(&mut origin);
        let name = cache_proto::key::Volume::new(name).expect("valid volume name");
        let mut origins = vec![origin];
        if let Some(replica) = &self.replica {
            let mut regional = replica.origin_config(BUCKET, VOLUME);
            (self.tuning.configure_origin)(&mut regional);
            regional.replica = true;
            (self.configure_replica)(&mut regional);
            origins.insert(0, regional);
        }
        VolumeConfig::new(name, token, origins)
    }

    /// Node `i`'s config file as the harness writes it at each spawn.
    pub fn node_config(&self, i: usize) -> NodeConfig {
        let n = &self.nodes[i];
        let d = self.dir.path();
        let id = NodeId::new(&n.id).expect("valid node id");
        let mut config = NodeConfig::local(id, d.join("data").join(&n.id), TlsConfig::in_dir(&d.join("certs"), &n.id));
        config.node.listen = n.quic;
        config.node.admin_listen = n.admin;
        config.node.origin_timeout = Span(self.tuning.origin_timeout);
        config.node.operators = vec!["client".into()];
        config.node.handoff = Span(HANDOFF);
        config.cache = self.cache.clone();
        config.cluster = self.gossip.then(|| self.gossip_cluster());
        config.volume = vec![self.volume_config(VOLUME, TOKEN)];
        (self.configure_node)(&mut config);
        config
    }

    /// Starts node `i` as a process and waits for its "serving" line (no sleeps: its own report).
    pub async fn spawn(&mut self, i: usize) {
        let config = self.path(&format!("{}.toml", self.nodes[i].id));
        write_config(&config, &self.node_config(i));
        let mut child = Command::new(node_binary())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .envs(self.node_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn cache-node");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.contains(" serving QUIC on ") {
                    return line;
                }
            }
            panic!("node {} exited before serving", self.nodes[i].id);
        };
        let line = tokio::time::timeout(Duration::from_secs(60), ready).await.expect("node serves within 60s");
        // "node a serving QUIC on 127.0.0.1:X and admin HTTP on http://127.0.0.1:Y"
        let words: Vec<&str> = line.split_whitespace().collect();
        let n = &mut self.nodes[i];
        n.quic = words[5].parse().expect("quic addr");
        n.admin = words[10].trim_start_matches("http://").parse().expect("admin addr");
        n.child = Some(child);
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    }

    /// The process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().and_then(|c| c.id())
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.pid(i).expect("node runs");
        let ok = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        assert!(ok.expect("kill").success(), "kill -{signal} {pid}");
    }

    /// `kill -9`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().await.expect("kill");
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let pid = child.id().expect("pid");
            let ok = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill -TERM");
            assert!(ok.success());
            let status =
                tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
            assert!(status.success(), "node exited with {status}");
        }
    }

    /// A client config for this cluster, with the certificate `client` in `certs` and `volume`
    /// read with `token`.
    pub fn client_config(&self, token: &str, volume: &str, certs: &Path) -> ClientConfig {
        let cluster = if self.gossip {
            self.gossip_cluster()
        } else {
            ClusterConfig::members(
                self.nodes.iter().map(|n| MemberConfig::new(NodeId::new(&n.id).expect("valid id"), n.quic)).collect(),
            )
        };
        let mut config = ClientConfig::new(cluster, TlsConfig::in_dir(certs, "client"));
        config.client.connect_timeout = Span(Duration::from_secs(1));
        config.client.page_timeout = Span(Duration::from_secs(10));
        config.client.origin_timeout = Span(self.tuning.origin_timeout);
        let mut volume = self.volume_config(volume, token);
        // Clients only read: write credentials stay in the nodes' configs.
        for origin in &mut volume.origin {
            origin.write_access_key_id = None;
            origin.write_secret_access_key = None;
        }
        config.volume = vec![volume];
        config
    }

    /// [`Self::client_config`] as the text of a config file.
    pub fn client_toml(&self, token: &str, volume: &str, certs: &Path) -> String {
        toml::to_string(&self.client_config(token, volume, certs)).expect("configs serialize to TOML")
    }

    pub fn client_with(&self, token: &str, volume: &str, certs: &Path) -> Client {
        let config = self.client_config(token, volume, certs);
        config.validate().expect("valid client config");
        Client::new(&config).expect("client")
    }

    pub fn client(&self) -> Client {
        self.client_with(TOKEN, VOLUME, &self.path("certs"))
    }

    /// A client that never hedges (tests that count origin GETs of slow cold fills).
    pub fn client_without_hedging(&self) -> Client {
        let mut config = self.client_config(TOKEN, VOLUME, &self.path("certs"));
        config.client.hedge_after = Span(Duration::ZERO);
        Client::new(&config).expect("client")
    }

    /// Node `i`'s `/metrics` text.
    pub async fn metrics(&self, i: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.nodes[i].admin).await.expect("connect admin");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    /// The regional copy's server (setup 2). Panics without one.
    pub fn regional(&self) -> &S3Origin {
        self.replica.as_ref().expect("a cluster started with a regional copy")
    }

    /// Object `key` of the test volume as the regional copy holds it, if it does.
    pub fn regional_object(&self, key: &str) -> Option<Vec<u8>> {
        self.regional().object(BUCKET, &format!("{VOLUME}/{key}"))
    }

    /// Writes an object to the origin and returns its bytes.
    pub fn put(&self, key: &str, seed: u64, len: u64) -> Bytes {
        let data = content(seed, len);
        self.s3.put(BUCKET, &format!("{VOLUME}/{key}"), &data).expect("put object");
        data
    }
}
