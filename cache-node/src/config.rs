//! A node's config file: `[node]`, `[cache]`, and the shared `[cluster]`, `[tls]`, `[[volume]]`
//! sections from `cache_client::config`. Every key and its default is documented in
//! `configs/node.toml`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use cache_client::config::{
    ClusterConfig, ConfigError, Membership, TlsConfig, VolumeConfig, default_page_size, load_toml, validate_cluster,
    validate_page_size, validate_volumes,
};
use cache_proto::limits::MAX_WEIGHT;
use cache_proto::{
    key::NodeId,
    units::{ByteSize, Span},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub cache: CacheSection,
    /// The ring as this node knows it (reported by `status`); clients route by their own copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    pub tls: TlsConfig,
    #[serde(default)]
    pub volume: Vec<VolumeConfig>,
    /// Copies into volumes' regional copies (`replica = true` origins). Unused without one.
    #[serde(default)]
    pub copy: CopySection,
}

/// `[copy]`: how a node copies objects it had to read from a source into the volume's regional
/// copy. The queue of pending copies lives in `<data_dir>/copies` and survives restarts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CopySection {
    /// Copies run at once on this node (each holds one object in memory). Default 2.
    #[serde(default = "default_copy_concurrency")]
    pub concurrency: usize,
    /// Bytes per second this node writes into regional copies, all copies together: what a
    /// burst of cold reads may add to the node's egress. "0B" means no cap. Default 50MiB.
    #[serde(default = "default_copy_bandwidth")]
    pub bandwidth: ByteSize,
    /// Attempts of one copy before it is marked failed (kept in `<data_dir>/copies/failed`,
    /// queued again when the node starts, or by a resync). Each attempt is a HEAD and a PUT to
    /// the regional copy, and a GET from the source unless the node still caches the object.
    /// Default 20.
    #[serde(default = "default_copy_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt; each later wait is a random time up to twice the last,
    /// at most `backoff_max` (jittered exponential backoff). Default 1s.
    #[serde(default = "default_copy_backoff")]
    pub backoff: Span,
    /// Longest wait between attempts. With the defaults, 20 attempts span about an hour of a
    /// regional bucket refusing writes. Default 5m.
    #[serde(default = "default_copy_backoff_max")]
    pub backoff_max: Span,
    /// Copies waiting at most; a copy beyond it is not queued (counted as `not_queued`; the
    /// read is served all the same, and a resync copies the object later). Each costs a file
    /// of about 300 bytes and as much memory. Default 100000.
    #[serde(default = "default_copy_max_pending")]
    pub max_pending: usize,
    /// Objects larger than this are not copied (a copy holds the object in memory): not on
    /// fill, and a sync or resync reports them failed naming this key. Default 64MiB (JuiceFS
    /// blocks are at most 16 MiB).
    #[serde(default = "default_copy_max_object")]
    pub max_object: ByteSize,
    /// How often the cluster runs a full sync of each volume from its sources into its
    /// regional copy (led by one node: the owner of the volume's resync point on the ring).
    /// It lists both buckets (one LIST per 1000 keys each) and copies what is missing or
    /// differs through the owners. "0s" turns it off. Default 7d.
    #[serde(default = "default_copy_resync_every")]
    pub resync_every: Span,
}

impl Default for CopySection {
    fn default() -> Self {
        Self {
            concurrency: default_copy_concurrency(),
            bandwidth: default_copy_bandwidth(),
            attempts: default_copy_attempts(),
            backoff: default_copy_backoff(),
            backoff_max: default_copy_backoff_max(),
            max_pending: default_copy_max_pending(),
            max_object: default_copy_max_object(),
            resync_every: default_copy_resync_every(),
        }
    }
}

fn default_copy_concurrency() -> usize {
    2
}
fn default_copy_bandwidth() -> ByteSize {
    ByteSize::mib(50)
}
fn default_copy_attempts() -> u32 {
    20
}
fn default_copy_backoff() -> Span {
    Span(Duration::from_secs(1))
}
fn default_copy_backoff_max() -> Span {
    Span(Duration::from_secs(300))
}
fn default_copy_max_pending() -> usize {
    100_000
}
fn default_copy_resync_every() -> Span {
    Span(Duration::from_secs(7 * 86_400))
}
fn default_copy_max_object() -> ByteSize {
    ByteSize::mib(64)
}

impl CopySection {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=256).contains(&self.concurrency) {
            return Err(ConfigError::invalid("copy.concurrency", "must be 1..=256"));
        }
        if self.attempts == 0 {
            return Err(ConfigError::invalid("copy.attempts", "must be at least 1"));
        }
        if self.backoff.0.is_zero() {
            return Err(ConfigError::invalid("copy.backoff", "must be above 0"));
        }
        if self.backoff_max.0 < self.backoff.0 {
            return Err(ConfigError::invalid(
                "copy.backoff_max",
                format!("{} is shorter than copy.backoff ({})", self.backoff_max, self.backoff),
            ));
        }
        if self.max_pending == 0 {
            return Err(ConfigError::invalid("copy.max_pending", "must be at least 1"));
        }
        if self.max_object.0 == 0 {
            return Err(ConfigError::invalid("copy.max_object", "must be above 0"));
        }
        Ok(())
    }
}

/// `[node]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Stable id on the ring and in the node's certificate. Unset: generated once and kept in
    /// `<data_dir>/node-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<NodeId>,
    /// QUIC (UDP) address to serve pages on.
    pub listen: SocketAddr,
    /// HTTP address for `/metrics` and `/healthz`.
    pub admin_listen: SocketAddr,
    /// Directory for the node id and (by default) the disk cache.
    pub data_dir: PathBuf,
    /// Deadline for filling one page from the origin. Default 30s.
    #[serde(default = "default_origin_timeout")]
    pub origin_timeout: Span,
    /// Requests served at once; more are answered `Busy` and the client goes elsewhere. Default 256.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Bytes of pages being filled from the origin at once (readers of one page share its
    /// fill; hits take none). More fills wait for room before they allocate: with
    /// `memory_capacity`, what keeps a node inside its memory under a burst of cold reads.
    /// Default 256MiB; at least one page.
    #[serde(default = "default_max_fill_bytes")]
    pub max_fill_bytes: ByteSize,
    /// Address other nodes and clients reach this node at (gossip membership advertises it).
    /// Default: `listen`, which then must not be a wildcard address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Share of the key space relative to the other members (gossip membership). Default: one
    /// unit per 16 GiB of disk cache, at least 1, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Names of client certificates that may drain this node (`cachectl drain`). Default: none.
    #[serde(default)]
    pub operators: Vec<String>,
    /// For this long after a ring change, a page's new owner asks its previous owner for a page
    /// before the origin (warm handoff), and a draining node waits this long before it reports
    /// that it can be stopped. Default 60s; "0s" turns handoff off.
    #[serde(default = "default_handoff")]
    pub handoff: Span,
}

fn default_origin_timeout() -> Span {
    Span(Duration::from_secs(30))
}
fn default_handoff() -> Span {
    Span(Duration::from_secs(60))
}
fn default_max_fill_bytes() -> ByteSize {
    ByteSize::mib(256)
}
fn default_max_inflight() -> usize {
    256
}

/// `[cache]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Bytes of pages kept in memory. Default 256MiB.
    #[serde(default = "default_memory_capacity")]
    pub memory_capacity: ByteSize,
    /// Bytes of pages kept on disk. Default 1GiB. Always set it in production: it is the cache.
    #[serde(default = "default_disk_capacity")]
    pub disk_capacity: ByteSize,
    /// Directory of the disk cache. Default `<data_dir>/cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_dir: Option<PathBuf>,
    /// Page size: the unit of caching and of ring placement. Clients must use the same. Default 4MiB.
    #[serde(default = "default_page_size")]
    pub page_size: ByteSize,
    /// Read and write the disk cache with O_DIRECT, bypassing the OS page cache (which would
    /// only hold a second copy of what the memory tier holds). Default true; set false on file
    /// systems without O_DIRECT (tmpfs).
    #[serde(default = "default_direct_io")]
    pub direct_io: bool,
}

fn default_direct_io() -> bool {
    true
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            memory_capacity: default_memory_capacity(),
            disk_capacity: default_disk_capacity(),
            disk_dir: None,
            page_size: default_page_size(),
            direct_io: default_direct_io(),
        }
    }
}

fn default_memory_capacity() -> ByteSize {
    ByteSize::mib(256)
}
fn default_disk_capacity() -> ByteSize {
    ByteSize::mib(1024)
}

impl CacheSection {
    /// Disk engine block: the unit foyer writes and evicts; a page must fit in one with room for
    /// its index, so blocks hold 16 pages (64 MiB for 4 MiB pages), and at least 16 MiB.
    pub fn block_size(&self) -> u64 {
        (self.page_size.0 * 16).clamp(16 << 20, 256 << 20)
    }
}

impl CacheSection {
    /// Memory shards: foyer divides the capacity evenly, so each shard must hold many pages or
    /// pages that land in one shard evict each other early. At least 32 pages a shard, at most 16.
    pub fn memory_shards(&self) -> usize {
        (self.memory_capacity.0 / (32 * self.page_size.0)).clamp(1, 16) as usize
    }
}

impl NodeConfig {
    /// Node `id` on loopback (QUIC and admin HTTP on 127.0.0.1, port 0) with its data in
    /// `data_dir`, the certificate `tls`, no cluster or volumes, and every other key at its default.
    pub fn local(id: NodeId, data_dir: impl Into<PathBuf>, tls: TlsConfig) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            node: NodeSection {
                id: Some(id),
                listen: loopback,
                admin_listen: loopback,
                data_dir: data_dir.into(),
                origin_timeout: default_origin_timeout(),
                max_inflight: default_max_inflight(),
                max_fill_bytes: default_max_fill_bytes(),
                advertise: None,
                weight: None,
                operators: Vec::new(),
                handoff: default_handoff(),
            },
            cache: CacheSection::default(),
            cluster: None,
            tls,
            volume: Vec::new(),
            copy: CopySection::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_toml(path)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(cluster) = &self.cluster {
            validate_cluster(cluster)?;
        }
        validate_volumes(&self.volume)?;
        self.copy.validate()?;
        validate_page_size("cache.page_size", self.cache.page_size)?;
        if self.cache.memory_capacity.0 < self.cache.page_size.0 {
            return Err(ConfigError::invalid("cache.memory_capacity", "must hold at least one page"));
        }
        // foyer wants many more blocks than flushers + clean-block threshold (2 + 2 here).
        let min_disk = 8 * self.cache.block_size();
        if self.cache.disk_capacity.0 < min_disk {
            return Err(ConfigError::invalid(
                "cache.disk_capacity",
                format!(
                    "must be at least {} (8 disk blocks of {})",
                    ByteSize(min_disk),
                    ByteSize(self.cache.block_size())
                ),
            ));
        }
        if self.node.max_inflight == 0 {
            return Err(ConfigError::invalid("node.max_inflight", "must be at least 1"));
        }
        if self.node.max_fill_bytes.0 < self.cache.page_size.0 {
            return Err(ConfigError::invalid("node.max_fill_bytes", "must hold at least one page"));
        }
        if self.node.weight.is_some_and(|w| w > MAX_WEIGHT) {
            return Err(ConfigError::invalid("node.weight", format!("must be 0..={MAX_WEIGHT}")));
        }
        let gossip = self.cluster.as_ref().is_some_and(|c| c.membership == Membership::Gossip);
        if gossip && (self.advertise().ip().is_unspecified() || self.advertise().port() == 0) {
            return Err(ConfigError::invalid(
                "node.advertise",
                format!("gossip needs an address others can reach; {} is not one", self.advertise()),
            ));
        }
        Ok(())
    }

    /// The weight this node advertises: `node.weight`, or one unit per 16 GiB of disk cache.
    pub fn weight(&self) -> u32 {
        self.node.weight.unwrap_or_else(|| (self.cache.disk_capacity.0 >> 34).clamp(1, u64::from(MAX_WEIGHT)) as u32)
    }

    /// The address this node advertises: `node.advertise`, else `node.listen`.
    pub fn advertise(&self) -> SocketAddr {
        self.node.advertise.unwrap_or(self.node.listen)
    }

    pub fn disk_dir(&self) -> PathBuf {
        self.cache.disk_dir.clone().unwrap_or_else(|| self.node.data_dir.join("cache"))
    }
}

#[cfg(test)]
mod tests {
    use cache_client::config::parse_toml;

    use super::*;

    const GOOD: &str = r#"
[node]
id = "a"
listen = "127.0.0.1:7001"
admin_listen = "127.0.0.1:9001"
data_dir = "data/a"
[cache]
memory_capacity = "256MiB"
disk_capacity = "2GiB"
page_size = "4MiB"
[tls]
ca = "certs/ca.pem"
cert = "certs/a.pem"
key = "certs/a.key"
[[volume]]
name = "vol1"
token = "0123456789abcdef"
[[volume.origin]]
url = "file:///tmp/origin"
"#;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        let c: NodeConfig = parse_toml(text)?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn good_config_and_defaults() {
        let c = parse(GOOD).expect("parses");
        assert_eq!(c.disk_dir(), PathBuf::from("data/a/cache"));
        assert_eq!(c.cache.block_size(), 64 << 20);
        assert_eq!(c.cache.memory_shards(), 2);
        assert_eq!(c.node.max_inflight, 256);
        let minimal = parse(
            &GOOD
                .replace("[cache]\nmemory_capacity = \"256MiB\"\ndisk_capacity = \"2GiB\"\npage_size = \"4MiB\"\n", ""),
        )
        .expect("defaults");
        assert_eq!(minimal.cache.disk_capacity, ByteSize::mib(1024));
        assert_eq!(minimal.weight(), 1);
        assert_eq!(c.node.handoff.0, Duration::from_secs(60));
        assert_eq!(c.copy, CopySection::default());
        assert_eq!((c.copy.concurrency, c.copy.bandwidth, c.copy.attempts), (2, ByteSize::mib(50), 20));
        let big = parse(&GOOD.replace("disk_capacity = \"2GiB\"", "disk_capacity = \"320GiB\"")).expect("parses");
        assert_eq!(big.weight(), 20);
    }

    #[test]
    fn a_serialized_config_parses_back_and_validates() {
        use cache_client::config::{ClusterConfig, OriginConfig};
        use cache_proto::key::Volume;

        let certs = Path::new("certs");
        let mut config = NodeConfig::local(NodeId::new("a").expect("id"), "data/a", TlsConfig::in_dir(certs, "a"));
        config.cache.memory_capacity = ByteSize::mib(64);
        config.node.operators = vec!["client".into()];
        config.cluster = Some(ClusterConfig::gossip(vec!["127.0.0.1:7001".parse().expect("addr")]));
        config.node.listen = "127.0.0.1:7002".parse().expect("addr");
        let origin = OriginConfig::new("file:///tmp/origin");
        config.volume.push(VolumeConfig::new(Volume::new("vol1").expect("name"), "0123456789abcdef", vec![origin]));
        let text = toml::to_string(&config).expect("serializes");
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.node.id, config.node.id);
        assert_eq!((back.node.listen, back.node.admin_listen), (config.node.listen, config.node.admin_listen));
        assert_eq!(back.node.operators, config.node.operators);
        assert_eq!(back.cache.memory_capacity, ByteSize::mib(64));
        assert_eq!(back.disk_dir(), PathBuf::from("data/a/cache"));
        assert_eq!(back.tls.key, certs.join("a.key"));
        assert_eq!(back.volume[0].origin, config.volume[0].origin);
        assert!(!text.contains("disk_dir") && !text.contains("advertise"), "unset options are left out:\n{text}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            (GOOD.replace("disk_capacity = \"2GiB\"", "disk_capacity = \"10MiB\""), "cache.disk_capacity"),
            (GOOD.replace("memory_capacity = \"256MiB\"", "memory_capacity = \"1MiB\""), "cache.memory_capacity"),
            (GOOD.replace("page_size = \"4MiB\"", "page_size = \"32MiB\""), "cache.page_size"),
            (GOOD.replace("listen = \"127.0.0.1:7001\"", "listen = \"nowhere\""), "listen"),
            (GOOD.replace("data_dir", "datadir"), "datadir"),
            (GOOD.replace("2GiB", "2 gigs"), "2 gigs"),
            (GOOD.replace("data_dir = \"data/a\"", "data_dir = \"data/a\"\nweight = 101"), "node.weight"),
            (format!("{GOOD}\n[copy]\nconcurrency = 0\n"), "copy.concurrency"),
            (format!("{GOOD}\n[copy]\nbackoff = \"10s\"\nbackoff_max = \"1s\"\n"), "copy.backoff_max"),
            (format!("{GOOD}\n[copy]\nattempts = 0\n"), "copy.attempts"),
            (format!("{GOOD}\n[copy]\nmax_pending = 0\n"), "copy.max_pending"),
            (format!("{GOOD}\n[copy]\nbandwith = \"1MiB\"\n"), "bandwith"),
            (
                format!("{}\n[cluster]\nmembership = \"gossip\"\nseeds = [\"127.0.0.1:7001\"]\n", GOOD)
                    .replace("listen = \"127.0.0.1:7001\"", "listen = \"0.0.0.0:7001\""),
                "node.advertise",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(key), "expected {key} in {err}");
        }
    }
}
