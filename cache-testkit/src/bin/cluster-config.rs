//! `cluster-config`: writes a node's or a client's config file for the scripts' clusters
//! (`scripts/lib/netns-cluster.sh`, `scripts/bench.sh`), built with the same config builders the
//! tests use, so no script writes TOML by hand. Every config it writes is validated first.
//!
//! ```text
//! cluster-config node a --listen 10.77.0.11:7000 --admin 10.77.0.11:9100 --data-dir D --certs C \
//!     --origin http://10.77.0.1:9000 --seed 10.77.0.11:7000 --seed 10.77.0.12:7000 -o a.toml
//! cluster-config client --certs C --origin http://127.0.0.1:9000 --member a=127.0.0.1:7001 -o client.toml
//! ```
//! The one volume is the demo origin's (`mirror-origin`'s defaults): bucket `demo`, prefix = the
//! volume's name (`--bucket`, `--prefix` to change them).

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use cache_client::config::{ClientConfig, ClusterConfig, MemberConfig, OriginConfig, TlsConfig, VolumeConfig};
use cache_node::config::NodeConfig;
use cache_proto::{
    key::{NodeId, Volume},
    units::{ByteSize, Span},
};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "Writes a node's or a client's config for the scripts' test and bench clusters")]
// A flag given twice takes the later value, so a script can add to its usual flags.
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// A node's config.
    Node(NodeArgs),
    /// A client's config (`cachectl`, `cache-bench`).
    Client(ClientArgs),
}

#[derive(Args, Debug)]
struct NodeArgs {
    id: String,
    #[arg(long)]
    listen: SocketAddr,
    /// Admin HTTP (metrics, health).
    #[arg(long)]
    admin: SocketAddr,
    /// The address other nodes and clients are told (default: the listen address).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    #[arg(long)]
    data_dir: PathBuf,
    /// Page buffers being filled from the origin at once, in bytes.
    #[arg(long)]
    max_fill_bytes: Option<ByteSize>,
    #[arg(long, default_value = "512MiB")]
    memory: ByteSize,
    #[arg(long, default_value = "1GiB")]
    disk: ByteSize,
    /// Buffered disk I/O (file systems without O_DIRECT, such as tmpfs).
    #[arg(long)]
    no_direct_io: bool,
    #[arg(long)]
    handoff: Option<Span>,
    #[arg(long)]
    origin_timeout: Option<Span>,
    /// A client certificate name that may drain the node (repeatable).
    #[arg(long)]
    operator: Vec<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// The name of the client certificate in `--certs`.
    #[arg(long, default_value = "client")]
    name: String,
    #[arg(long)]
    connect_timeout: Option<Span>,
    #[arg(long)]
    page_timeout: Option<Span>,
    #[arg(long)]
    origin_timeout: Option<Span>,
    #[command(flatten)]
    common: Common,
}

/// What nodes and clients share: certificates, the cluster and the volume.
#[derive(Args, Debug)]
struct Common {
    /// Directory `cachectl certs` wrote (ca.pem, NAME.pem, NAME.key).
    #[arg(long)]
    certs: PathBuf,
    /// A static member, `ID=ADDR` (repeatable).
    #[arg(long, value_parser = member)]
    member: Vec<MemberConfig>,
    /// A gossip seed (repeatable): gossip membership instead of static members.
    #[arg(long, conflicts_with = "member")]
    seed: Vec<SocketAddr>,
    /// The S3 endpoint of the volume's origin, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    origin: String,
    #[arg(long, default_value = "vol1")]
    volume: String,
    #[arg(long, default_value = "vol1-token-0123456789")]
    token: String,
    #[arg(long, default_value = "demo")]
    bucket: String,
    /// The prefix of the volume's keys in the bucket (default: the volume's name; "" for none,
    /// as a JuiceFS bucket has: its keys start with the file system's name).
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long, default_value = "mirrorcache-demo")]
    access_key: String,
    #[arg(long, default_value = "mirrorcache-demo-secret")]
    secret_key: String,
    /// Where to write the config (standard output if not given).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

fn member(s: &str) -> Result<MemberConfig, String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=ADDR")?;
    let id = NodeId::new(id).map_err(|e| format!("member id {id:?}: {e}"))?;
    let addr = addr.parse().map_err(|e| format!("member address {addr:?}: {e}"))?;
    Ok(MemberConfig::new(id, addr))
}

impl Common {
    /// Static members, gossip seeds, or (neither) no cluster section.
    fn cluster(&self) -> Option<ClusterConfig> {
        if !self.seed.is_empty() {
            Some(ClusterConfig::gossip(self.seed.clone()))
        } else if !self.member.is_empty() {
            Some(ClusterConfig::members(self.member.clone()))
        } else {
            None
        }
    }

    fn volume(&self) -> anyhow::Result<VolumeConfig> {
        let name = Volume::new(&self.volume).map_err(|e| anyhow::anyhow!("--volume {:?}: {e}", self.volume))?;
        let origin = OriginConfig {
            endpoint: Some(self.origin.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            allow_http: true,
            ..OriginConfig::new(format!("s3://{}/{}", self.bucket, self.prefix.as_ref().unwrap_or(&self.volume)))
        };
        Ok(VolumeConfig::new(name, self.token.clone(), vec![origin]))
    }

    fn write(&self, config: &impl Serialize) -> anyhow::Result<()> {
        let text = toml::to_string(config).context("serializing the config")?;
        match &self.out {
            Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display())),
            None => {
                print!("{text}");
                Ok(())
            }
        }
    }
}

fn node(args: NodeArgs) -> anyhow::Result<()> {
    let id = NodeId::new(&args.id).map_err(|e| anyhow::anyhow!("node id {:?}: {e}", args.id))?;
    let common = &args.common;
    let mut config = NodeConfig::local(id, &args.data_dir, TlsConfig::in_dir(&common.certs, &args.id));
    config.node.listen = args.listen;
    config.node.admin_listen = args.admin;
    config.node.advertise = args.advertise;
    config.node.operators = args.operator;
    if let Some(bytes) = args.max_fill_bytes {
        config.node.max_fill_bytes = bytes;
    }
    if let Some(handoff) = args.handoff {
        config.node.handoff = handoff;
    }
    if let Some(timeout) = args.origin_timeout {
        config.node.origin_timeout = timeout;
    }
    config.cache.memory_capacity = args.memory;
    config.cache.disk_capacity = args.disk;
    config.cache.direct_io = !args.no_direct_io;
    config.cluster = common.cluster();
    config.volume = vec![common.volume()?];
    config.validate()?;
    common.write(&config)
}

fn client(args: ClientArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let cluster = common.cluster().context("a client needs --member or --seed")?;
    let mut config = ClientConfig::new(cluster, TlsConfig::in_dir(&common.certs, &args.name));
    let c = &mut config.client;
    for (value, field) in [
        (args.connect_timeout, &mut c.connect_timeout),
        (args.page_timeout, &mut c.page_timeout),
        (args.origin_timeout, &mut c.origin_timeout),
    ] {
        if let Some(value) = value {
            *field = value;
        }
    }
    config.volume = vec![common.volume()?];
    config.validate()?;
    common.write(&config)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().what {
        What::Node(args) => node(args),
        What::Client(args) => client(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a script gets for these words, read back as the node or client would read it.
    fn written(words: &[&str]) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("config.toml");
        let mut argv = vec!["cluster-config"];
        argv.extend_from_slice(words);
        argv.extend(["--certs", "/certs", "--origin", "http://127.0.0.1:9000", "-o", out.to_str().expect("utf-8")]);
        match Cli::try_parse_from(argv)?.what {
            What::Node(args) => node(args)?,
            What::Client(args) => client(args)?,
        }
        Ok((dir, out))
    }

    #[test]
    fn configs_written_load_as_the_processes_read_them() {
        let (_dir, path) = written(&[
            "node",
            "a",
            "--listen",
            "10.77.0.11:7001",
            "--admin",
            "10.77.0.11:9100",
            "--data-dir",
            "/d/a",
            "--seed",
            "10.77.0.11:7000",
            "--memory",
            "512MiB",
            "--memory",
            "256MiB",
            "--max-fill-bytes",
            "32MiB",
            "--advertise",
            "10.77.0.11:7000",
            "--no-direct-io",
        ])
        .expect("node config");
        let node = NodeConfig::load(&path).expect("a node loads it");
        assert_eq!(node.node.listen, "10.77.0.11:7001".parse().expect("addr"));
        assert_eq!(node.advertise(), "10.77.0.11:7000".parse().expect("addr"));
        assert_eq!((node.cache.memory_capacity, node.node.max_fill_bytes), (ByteSize::mib(256), ByteSize::mib(32)));
        assert!(!node.cache.direct_io);
        assert_eq!(node.tls.cert, PathBuf::from("/certs/a.pem"));
        assert_eq!(node.volume[0].origin[0].endpoint.as_deref(), Some("http://127.0.0.1:9000"));

        let (_dir, path) =
            written(&["client", "--member", "a=127.0.0.1:7001", "--page-timeout", "10s"]).expect("client");
        let client = ClientConfig::load(&path).expect("a client loads it");
        assert_eq!(client.cluster.members[0].id.as_str(), "a");
        assert_eq!(client.client.page_timeout, "10s".parse().expect("span"));
        assert_eq!(client.volume[0].token, "vol1-token-0123456789");
    }

    #[test]
    fn bad_words_are_refused_naming_them() {
        let err = written(&["client", "--member", "a:7001"]).expect_err("no '='");
        assert!(err.to_string().contains("ID=ADDR"), "{err}");
        let err = written(&["client"]).expect_err("no members");
        assert!(err.to_string().contains("--member or --seed"), "{err}");
        let err = written(&["node", "a b", "--listen", "127.0.0.1:1", "--admin", "127.0.0.1:2", "--data-dir", "/d"])
            .expect_err("bad id");
        assert!(err.to_string().contains("node id"), "{err}");
    }
}
