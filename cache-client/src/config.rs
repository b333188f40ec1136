//! Config sections shared by clients and nodes: `[cluster]`, `[tls]`, `[[volume]]`, and the
//! client's own `[client]` and `[cache]`. One TOML file per process; unknown keys and bad values
//! fail at load time with a message that names the key. `configs/` has a commented example of
//! every key.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use std::sync::Arc;

use cache_proto::{
    key::{NodeId, Volume},
    limits::{DEFAULT_PAGE_SIZE as DEFAULT_PAGE_BYTES, MAX_PAGE_SIZE, MAX_WEIGHT, MIN_PAGE_SIZE},
    members::RingView,
    units::{ByteSize, Span},
    wire::{MemberInfo, MemberState},
};

/// Default page size: one JuiceFS block.
pub const DEFAULT_PAGE_SIZE: ByteSize = ByteSize(DEFAULT_PAGE_BYTES);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), message: message.into() }
    }
}

/// Reads and parses one TOML config file; `T` decides which sections are allowed.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse_toml(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
}

/// Parses TOML text; the message names the offending key and line.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
}

/// `[cluster]`: who is on the ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Where membership comes from: `"static"` (the `members` list, the default) or `"gossip"`
    /// (nodes find each other from `seeds` and keep the ring up to date by themselves).
    #[serde(default)]
    pub membership: Membership,
    /// Static: the nodes of the ring. Clients and nodes should list the same members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberConfig>,
    /// Gossip: QUIC addresses of a few nodes to learn the cluster from (any that answers will do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<SocketAddr>,
}

impl ClusterConfig {
    /// A static ring of `members`.
    pub fn members(members: Vec<MemberConfig>) -> Self {
        Self { membership: Membership::Static, members, seeds: Vec::new() }
    }

    /// Gossip membership learnt from `seeds`.
    pub fn gossip(seeds: Vec<SocketAddr>) -> Self {
        Self { membership: Membership::Gossip, members: Vec::new(), seeds }
    }

    /// The static member list, each serving (empty with gossip: the nodes tell it).
    pub fn member_infos(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|m| MemberInfo { id: m.id.clone(), addr: m.addr, weight: m.weight, state: MemberState::Serving })
            .collect()
    }

    /// The ring of the static member list (empty with gossip: the nodes tell it).
    pub fn static_ring(&self) -> Arc<RingView> {
        RingView::new(self.member_infos())
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    #[default]
    Static,
    Gossip,
}

impl Membership {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Gossip => "gossip",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: NodeId,
    /// QUIC (UDP) address of the node.
    pub addr: SocketAddr,
    /// Share of the key space, relative to the other members. Default 1; 0 takes no pages.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl MemberConfig {
    /// A member of weight 1.
    pub fn new(id: NodeId, addr: SocketAddr) -> Self {
        Self { id, addr, weight: default_weight() }
    }
}

fn default_weight() -> u32 {
    1
}

/// `[tls]`: PEM files of the cluster CA and of this process's own certificate and key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsConfig {
    /// The files `cachectl certs` writes for `name` (a node id or a client name) into `dir`:
    /// `ca.pem`, `NAME.pem` and `NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self { ca: dir.join("ca.pem"), cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) }
    }
}

/// `[[volume]]`: one file system's data, who may read it, and where it comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub name: Volume,
    /// Shared secret a client presents to read this volume's pages.
    pub token: String,
    /// Ordered origins: the first that has an object serves it (e.g. a regional copy, then the
    /// source bucket).
    pub origin: Vec<OriginConfig>,
}

impl VolumeConfig {
    /// Volume `name`, read with `token`, from `origins` in order.
    pub fn new(name: Volume, token: impl Into<String>, origins: Vec<OriginConfig>) -> Self {
        Self { name, token: token.into(), origin: origins }
    }
}

/// `[[volume.origin]]`: one object store.
///
/// The deadlines and retries apply to S3 origins (a `file://` origin is a local directory).
/// Together they bound one read: at most `1 + retries` requests, none started after
/// `retry_timeout`; the caller's own deadline (the node's `origin_timeout`, the client's
/// `[client] origin_timeout`) ends the read in any case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// `s3://bucket/prefix` (key K is object `prefix/K`) or `file:///abs/path`.
    pub url: String,
    /// S3 endpoint, e.g. `http://127.0.0.1:9000`; unset means AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (tests and local mirrors only).
    #[serde(default)]
    pub allow_http: bool,
    /// Deadline for each step of a request to make progress: connecting, the first byte of the
    /// answer, and every read of the body after it. A request that stalls this long fails and is
    /// retried. A body that keeps trickling in is ended by the caller's deadline instead.
    /// Default 5s (S3 answers in tens of milliseconds; a stalled connection costs this much).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: Span,
    /// Retries of a request that failed with 5xx (InternalError, SlowDown), 429, a connection
    /// error, a stall or a cut body, with jittered exponential backoff from 100 ms (capped at 1 s).
    /// Never retried: 404 and other 4xx, and a body that fails its ETag. Each retry is one more
    /// request to the origin. 0..=10, default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// No retry starts later than this after the first request. Keep it well under the
    /// `origin_timeout` of nodes and clients, so a read ends with the origin's own error rather
    /// than a deadline. Default 10s.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout: Span,
    /// Check the bytes of a whole object read against its ETag when the ETag is a plain MD5 (32
    /// hex digits: S3 single-part uploads, like JuiceFS blocks), and refuse them on a mismatch. A
    /// part of an object, or a multipart ETag (`...-N`), cannot be checked this way. Turn it off
    /// for buckets whose ETags are not MD5s of the content although they look so (SSE-KMS or
    /// SSE-C encryption). Costs an MD5 pass over each whole-object read, made while the body
    /// arrives (MD5 hashes roughly half a GB/s on one core). Default true.
    #[serde(default = "default_verify_etag")]
    pub verify_etag: bool,
    /// This origin is the volume's **regional copy** ("setup 2"): reads take it first, and the
    /// origins after it are its sources. A node that fills a page from a source because the
    /// copy lacks the object queues a copy of the object into it (`[copy]` in the node config).
    /// Only the first origin may say so, and at least one source must follow. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replica: bool,
    /// Credentials nodes write the regional copy with (`replica = true` only), separate from
    /// the read credentials above, which clients use too. Set both or neither; unset, writes
    /// use the read credentials (or the instance's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_secret_access_key: Option<String>,
    /// Price of one GB (2^30 bytes) read from (or written to) this origin, in any currency, for
    /// the cost estimate of `status` and `/metrics` (e.g. 0.02 for inter-region transfer).
    /// Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub price_per_gb: f64,
    /// Price of 1,000 requests (GET, HEAD, PUT) to this origin, for the cost estimate.
    /// Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub price_per_1000_requests: f64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Most retries an origin may be given (each is one more request to it).
pub const MAX_ORIGIN_RETRIES: u32 = 10;

impl OriginConfig {
    /// An origin at `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            stall_timeout: default_stall_timeout(),
            retries: default_retries(),
            retry_timeout: default_retry_timeout(),
            verify_etag: default_verify_etag(),
            replica: false,
            write_access_key_id: None,
            write_secret_access_key: None,
            price_per_gb: 0.0,
            price_per_1000_requests: 0.0,
        }
    }

    /// This origin as nodes write it: the write credentials in place of the read ones (a
    /// regional copy; any other origin is returned as it is).
    pub fn for_writes(&self) -> OriginConfig {
        let mut writer = self.clone();
        if self.write_access_key_id.is_some() {
            writer.access_key_id = self.write_access_key_id.clone();
            writer.secret_access_key = self.write_secret_access_key.clone();
        }
        writer
    }
}

fn default_stall_timeout() -> Span {
    Span(Duration::from_secs(5))
}
fn default_retries() -> u32 {
    3
}
fn default_retry_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_verify_etag() -> bool {
    true
}

/// `[cache]` as a client sees it: only the page size, which must equal the nodes'.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageSizeConfig {
    #[serde(default = "default_page_size")]
    pub page_size: ByteSize,
}

impl Default for PageSizeConfig {
    fn default() -> Self {
        Self { page_size: DEFAULT_PAGE_SIZE }
    }
}

pub fn default_page_size() -> ByteSize {
    DEFAULT_PAGE_SIZE
}

/// `[client]`: deadlines of the client library.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Deadline for a QUIC handshake with a node. Default 2s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Deadline for a node's answer to begin, and then for each gap in its bytes (an answer
    /// that keeps coming is not cut off). Default 10s.
    #[serde(default = "default_page_timeout")]
    pub page_timeout: Span,
    /// Deadline for one page read from the origin on fallback. Default 30s.
    #[serde(default = "default_origin_timeout")]
    pub origin_timeout: Span,
    /// A page's owner whose answer has not begun within this is joined by the next node: a peek
    /// (cached pages only), then after 4 x this a full request if the owner has sent nothing at
    /// all meanwhile (a hedged read; at most about 10 % extra requests). Default 500ms; "0s"
    /// turns hedging off.
    #[serde(default = "default_hedge_after")]
    pub hedge_after: Span,
}

impl Default for ClientSection {
    fn default() -> Self {
        Self {
            connect_timeout: default_connect_timeout(),
            page_timeout: default_page_timeout(),
            origin_timeout: default_origin_timeout(),
            hedge_after: default_hedge_after(),
        }
    }
}

fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(2))
}
fn default_page_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_origin_timeout() -> Span {
    Span(Duration::from_secs(30))
}
fn default_hedge_after() -> Span {
    Span(Duration::from_millis(500))
}

/// A client's whole config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub cluster: ClusterConfig,
    pub tls: TlsConfig,
    #[serde(default)]
    pub volume: Vec<VolumeConfig>,
    #[serde(default)]
    pub cache: PageSizeConfig,
    #[serde(default)]
    pub client: ClientSection,
}

impl ClientConfig {
    /// A client of `cluster` with the certificate `tls`, no volumes, and every other key at its
    /// default.
    pub fn new(cluster: ClusterConfig, tls: TlsConfig) -> Self {
        Self { cluster, tls, volume: Vec::new(), cache: PageSizeConfig::default(), client: ClientSection::default() }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_toml(path)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_cluster(&self.cluster)?;
        validate_volumes(&self.volume)?;
        // Clients only read: the regional copy's write credentials belong in node configs.
        for (i, v) in self.volume.iter().enumerate() {
            for (j, o) in v.origin.iter().enumerate() {
                if o.write_access_key_id.is_some() || o.write_secret_access_key.is_some() {
                    return Err(ConfigError::invalid(
                        format!("volume[{i}].origin[{j}].write_access_key_id"),
                        "clients never write: keep the regional copy's write credentials in node configs only",
                    ));
                }
            }
        }
        validate_page_size("cache.page_size", self.cache.page_size)
    }
}

/// Checks `[cluster]`: static: at least one member, unique ids and addresses, weights in range;
/// gossip: at least one seed, and no member list (the ring comes from the nodes).
pub fn validate_cluster(cluster: &ClusterConfig) -> Result<(), ConfigError> {
    if cluster.membership == Membership::Gossip {
        if !cluster.members.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.members",
                "not used with membership = \"gossip\" (list a few node addresses as cluster.seeds)",
            ));
        }
        if cluster.seeds.is_empty() {
            return Err(ConfigError::invalid("cluster.seeds", "membership = \"gossip\" needs at least one seed"));
        }
        return Ok(());
    }
    if !cluster.seeds.is_empty() {
        return Err(ConfigError::invalid("cluster.seeds", "only used with membership = \"gossip\""));
    }
    if cluster.members.is_empty() {
        return Err(ConfigError::invalid("cluster.members", "needs at least one member"));
    }
    let (mut ids, mut addrs) = (HashSet::new(), HashSet::new());
    for (i, m) in cluster.members.iter().enumerate() {
        if !ids.insert(&m.id) {
            return Err(ConfigError::invalid(format!("cluster.members[{i}].id"), format!("duplicate id {}", m.id)));
        }
        if !addrs.insert(m.addr) {
            return Err(ConfigError::invalid(
                format!("cluster.members[{i}].addr"),
                format!("duplicate address {}", m.addr),
            ));
        }
        if m.weight > MAX_WEIGHT {
            return Err(ConfigError::invalid(
                format!("cluster.members[{i}].weight"),
                format!("must be 0..={MAX_WEIGHT}"),
            ));
        }
    }
    if cluster.members.iter().all(|m| m.weight == 0) {
        return Err(ConfigError::invalid("cluster.members", "every member has weight 0: nothing could own a page"));
    }
    Ok(())
}

/// Checks `[[volume]]`: unique names, a token, at least one origin with a known scheme.
pub fn validate_volumes(volumes: &[VolumeConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        if !names.insert(&v.name) {
            return Err(ConfigError::invalid(format!("volume[{i}].name"), format!("duplicate volume {}", v.name)));
        }
        if v.token.len() < 8 || v.token.len() > cache_proto::wire::MAX_TOKEN_LEN {
            return Err(ConfigError::invalid(
                format!("volume[{i}].token"),
                format!("must be 8..={} bytes", cache_proto::wire::MAX_TOKEN_LEN),
            ));
        }
        if v.origin.is_empty() {
            return Err(ConfigError::invalid(format!("volume[{i}].origin"), "needs at least one origin"));
        }
        for (j, o) in v.origin.iter().enumerate() {
            if !(o.url.starts_with("s3://") || o.url.starts_with("file:///")) {
                return Err(ConfigError::invalid(
                    format!("volume[{i}].origin[{j}].url"),
                    format!("{:?}: expected s3://bucket/prefix or file:///absolute/path", o.url),
                ));
            }
            if o.stall_timeout.0.is_zero() {
                return Err(ConfigError::invalid(format!("volume[{i}].origin[{j}].stall_timeout"), "must be above 0"));
            }
            if o.retries > MAX_ORIGIN_RETRIES {
                return Err(ConfigError::invalid(
                    format!("volume[{i}].origin[{j}].retries"),
                    format!("must be 0..={MAX_ORIGIN_RETRIES}"),
                ));
            }
            validate_replica(i, j, o, v.origin.len())?;
        }
    }
    Ok(())
}

/// Checks the regional-copy keys and prices of origin `j` of volume `i` (of `count` origins).
fn validate_replica(i: usize, j: usize, o: &OriginConfig, count: usize) -> Result<(), ConfigError> {
    let key = |name: &str| format!("volume[{i}].origin[{j}].{name}");
    if o.replica && j > 0 {
        return Err(ConfigError::invalid(
            key("replica"),
            "only the first origin may be the regional copy (the origins after it are its sources)",
        ));
    }
    if o.replica && count < 2 {
        return Err(ConfigError::invalid(key("replica"), "a regional copy needs a source origin after it"));
    }
    for (name, value) in
        [("write_access_key_id", &o.write_access_key_id), ("write_secret_access_key", &o.write_secret_access_key)]
    {
        if value.is_some() && !o.replica {
            return Err(ConfigError::invalid(key(name), "only the regional copy (replica = true) is written"));
        }
    }
    if o.write_access_key_id.is_some() != o.write_secret_access_key.is_some() {
        return Err(ConfigError::invalid(
            key("write_secret_access_key"),
            "write_access_key_id and write_secret_access_key must be set together",
        ));
    }
    for (name, price) in [("price_per_gb", o.price_per_gb), ("price_per_1000_requests", o.price_per_1000_requests)] {
        if !price.is_finite() || price < 0.0 {
            return Err(ConfigError::invalid(key(name), format!("{price} is not a price (0 or more)")));
        }
    }
    Ok(())
}

pub fn validate_page_size(key: &str, size: ByteSize) -> Result<(), ConfigError> {
    if (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size.0) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{size} is outside {}..={}", ByteSize(MIN_PAGE_SIZE), ByteSize(MAX_PAGE_SIZE)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
membership = "static"
members = [ { id = "a", addr = "127.0.0.1:7001" }, { id = "b", addr = "127.0.0.1:7002", weight = 2 } ]
[tls]
ca = "certs/ca.pem"
cert = "certs/client.pem"
key = "certs/client.key"
[[volume]]
name = "vol1"
token = "0123456789abcdef"
[[volume.origin]]
url = "s3://bucket/prefix"
endpoint = "http://127.0.0.1:9000"
allow_http = true
"#;

    fn parse(text: &str) -> Result<ClientConfig, String> {
        let c: ClientConfig = parse_toml(text)?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).expect("parses");
        assert_eq!(c.cluster.members[0].weight, 1);
        assert_eq!(c.cluster.members[1].weight, 2);
        assert_eq!(c.cache.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(c.client.page_timeout.0, Duration::from_secs(10));
        assert_eq!(c.volume[0].origin[0].region, None);
        let origin = &c.volume[0].origin[0];
        let defaults = OriginConfig::new(origin.url.clone());
        assert_eq!((origin.stall_timeout, origin.retries), (defaults.stall_timeout, defaults.retries));
        assert_eq!((origin.retry_timeout, origin.verify_etag), (defaults.retry_timeout, defaults.verify_etag));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse(&GOOD.replace("allow_http", "allow_htp")).unwrap_err();
        assert!(err.contains("allow_htp"), "{err}");
        let err = parse(&format!("{GOOD}\n[bogus]\nx = 1\n")).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (GOOD.replace("\"b\", addr", "\"a\", addr"), "cluster.members[1].id"),
            (GOOD.replace("7002", "7001"), "cluster.members[1].addr"),
            (GOOD.replace("0123456789abcdef", "short"), "volume[0].token"),
            (GOOD.replace("s3://bucket", "ftp://bucket"), "volume[0].origin[0].url"),
            (format!("{GOOD}\n[cache]\npage_size = \"1KiB\"\n"), "cache.page_size"),
            (GOOD.replace("weight = 2", "weight = 1000"), "cluster.members[1].weight"),
            (GOOD.replace("allow_http = true", "allow_http = true\nretries = 11"), "volume[0].origin[0].retries"),
            (GOOD.replace("allow_http = true", "allow_http = true\nstall_timeout = \"0s\""), "stall_timeout"),
        ];
        for (text, key) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(key), "expected {key} in {err}");
        }
        let err = parse(&GOOD.replace("\"a\", addr", "\"A\", addr")).unwrap_err();
        assert!(err.contains("node id"), "{err}");
        let err = parse(&GOOD.replace("allow_http = true", "allow_http = true\nreplica = \"yes\"")).unwrap_err();
        assert!(err.contains("replica"), "{err}");
        let err = parse(&GOOD.replace("membership = \"static\"", "membership = \"gosip\"")).unwrap_err();
        assert!(err.contains("membership"), "{err}");
        let err = parse(&GOOD.replace("membership = \"static\"", "membership = \"gossip\"")).unwrap_err();
        assert!(err.contains("cluster.members"), "{err}");
    }

    #[test]
    fn a_serialized_config_parses_back_and_validates() {
        let certs = Path::new("certs");
        let origin = OriginConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: true,
            ..OriginConfig::new("s3://bucket/prefix")
        };
        let mut config = ClientConfig::new(
            ClusterConfig::members(vec![MemberConfig::new(
                NodeId::new("a").expect("id"),
                "127.0.0.1:7001".parse().expect("addr"),
            )]),
            TlsConfig::in_dir(certs, "client"),
        );
        config.volume.push(VolumeConfig::new(Volume::new("vol1").expect("name"), "0123456789abcdef", vec![origin]));
        config.client.hedge_after = Span(Duration::ZERO);
        let text = toml::to_string(&config).expect("serializes");
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.tls.cert, certs.join("client.pem"));
        assert_eq!(back.cluster.members[0].addr, config.cluster.members[0].addr);
        assert_eq!(back.volume[0].origin, config.volume[0].origin);
        assert_eq!(back.client.hedge_after, config.client.hedge_after);
        assert!(!text.contains("region"), "unset options are left out:\n{text}");

        let mut gossip = config;
        gossip.cluster = ClusterConfig::gossip(vec!["127.0.0.1:7001".parse().expect("addr")]);
        let back = parse(&toml::to_string(&gossip).expect("serializes")).expect("gossip parses back");
        assert_eq!((back.cluster.membership, back.cluster.seeds.len()), (Membership::Gossip, 1));
    }

    /// `GOOD` with a regional copy first and the source after it.
    fn setup2(replica_keys: &str, source_keys: &str) -> String {
        format!(
            "{GOOD}\n[[volume.origin]]\nurl = \"s3://source/prefix\"\nendpoint = \"http://127.0.0.1:9001\"\nallow_http = true\n{source_keys}\n"
        )
        .replacen("allow_http = true\n", &format!("allow_http = true\n{replica_keys}\n"), 1)
    }

    /// Checks `text` as the shared volume checks do (what a node config runs too).
    fn parse_volumes(text: &str) -> Result<ClientConfig, String> {
        let c: ClientConfig = parse_toml(text)?;
        validate_volumes(&c.volume).map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_regional_copy_with_write_credentials_and_prices_parses() {
        let text = setup2(
            "replica = true\nwrite_access_key_id = \"W\"\nwrite_secret_access_key = \"WS\"\nprice_per_gb = 0.0\nprice_per_1000_requests = 0.005",
            "price_per_gb = 0.02\nprice_per_1000_requests = 0.0004",
        );
        let c = parse_volumes(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let err = parse(&text).unwrap_err();
        assert!(err.contains("volume[0].origin[0].write_access_key_id") && err.contains("node"), "{err}");
        let (replica, source) = (&c.volume[0].origin[0], &c.volume[0].origin[1]);
        assert!(replica.replica && !source.replica);
        assert_eq!(replica.for_writes().access_key_id.as_deref(), Some("W"));
        assert_eq!(replica.for_writes().secret_access_key.as_deref(), Some("WS"));
        assert_eq!((source.price_per_gb, source.price_per_1000_requests), (0.02, 0.0004));
        let back = parse_volumes(&toml::to_string(&c).expect("serializes")).expect("parses back");
        assert_eq!(back.volume[0].origin, c.volume[0].origin);
        // Without write credentials the copy is written with the read ones.
        let plain = parse(&setup2("replica = true", "")).expect("parses");
        assert_eq!(plain.volume[0].origin[0].for_writes(), plain.volume[0].origin[0]);
    }

    #[test]
    fn contradictory_regional_copy_settings_name_the_key() {
        let write_key = "write_access_key_id = \"W\"\nwrite_secret_access_key = \"WS\"";
        for (text, key) in [
            (setup2("", "replica = true"), "volume[0].origin[1].replica"),
            (GOOD.replace("allow_http = true", "allow_http = true\nreplica = true"), "volume[0].origin[0].replica"),
            (setup2(write_key, ""), "volume[0].origin[0].write_access_key_id"),
            (setup2("replica = true", write_key), "volume[0].origin[1].write_access_key_id"),
            (setup2("replica = true\nwrite_access_key_id = \"W\"", ""), "volume[0].origin[0].write_secret_access_key"),
            (setup2("replica = true", "price_per_gb = -1.0"), "volume[0].origin[1].price_per_gb"),
            (
                setup2("replica = true\nprice_per_1000_requests = nan", ""),
                "volume[0].origin[0].price_per_1000_requests",
            ),
        ] {
            let err = parse_volumes(&text).unwrap_err();
            assert!(err.contains(key), "expected {key} in {err}\n{text}");
        }
    }

    #[test]
    fn gossip_needs_seeds_and_no_members() {
        let gossip = GOOD.replace(
            "membership = \"static\"\nmembers = [ { id = \"a\", addr = \"127.0.0.1:7001\" }, { id = \"b\", addr = \"127.0.0.1:7002\", weight = 2 } ]",
            "membership = \"gossip\"\nseeds = [\"127.0.0.1:7001\"]",
        );
        let c = parse(&gossip).expect("parses");
        assert_eq!(c.cluster.membership, Membership::Gossip);
        assert_eq!(c.cluster.seeds.len(), 1);
        let err = parse(&gossip.replace("seeds = [\"127.0.0.1:7001\"]", "seeds = []")).unwrap_err();
        assert!(err.contains("cluster.seeds"), "{err}");
        let err = parse(&GOOD.replace("membership = \"static\"", "seeds = [\"127.0.0.1:1\"]")).unwrap_err();
        assert!(err.contains("cluster.seeds"), "{err}");
    }
}
