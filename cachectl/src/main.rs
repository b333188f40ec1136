//! `cachectl`: talk to a mirrorcache cluster as a client.
//!
//! - `get VOLUME KEY [--offset N] [--len N] [-o FILE] [-v]`: read through the cache
//! - `status [--json]`: ring epoch, members (state, weight, share), reachability and counters
//! - `drain NODE [--no-wait]`: take a node off the ring and wait until it can be stopped
//! - `warmup VOLUME PREFIX [--check | --evict]`: fill (or check, or drop) pages at their owners
//! - `sync VOLUME [PREFIX] [--check [--json] | --delete-extra]`: copy the sources into the
//!   regional copy through the ring (resumable), or report / remove what differs
//! - `gateway [--listen ADDR] [--threads N]`: a read-only S3 endpoint over the cluster (bucket = volume)
//! - `certs --dir DIR --nodes a,b,c --clients NAME`: create a cluster CA and certificates

mod cmd;

use cmd::{drain, gateway, get, status, sync, warmup};

use std::path::PathBuf;

use anyhow::Context;
use cache_client::{Client, config::ClientConfig};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "mirrorcache admin and read tool")]
struct Args {
    /// Client config file (TOML); see configs/client.toml. Not needed for `certs`.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read an object (or a range of it) through the cache.
    Get(get::GetArgs),
    /// Show the ring epoch and every member: state, weight, share, reachability and counters.
    Status(status::StatusArgs),
    /// Take a node off the ring (weight 0) and wait until it can be stopped without misses.
    Drain(drain::DrainArgs),
    /// Cache every page under a prefix (or in a key file) at its owner; --check, --evict.
    Warmup(warmup::WarmupArgs),
    /// Copy what the regional copy lacks from the sources (by the ring's nodes, resumable);
    /// --check reports the differences, --delete-extra removes objects no source has.
    Sync(sync::SyncArgs),
    /// Serve the volumes read-only over the S3 API (bucket = volume, SigV4: volume / token).
    Gateway(gateway::GatewayArgs),
    /// Create a cluster CA (or reuse the one in DIR) and node and client certificates.
    Certs {
        /// Directory for ca.pem, ca.key and NAME.pem/NAME.key.
        #[arg(long)]
        dir: PathBuf,
        /// Node ids, comma-separated (each becomes the certificate's DNS name).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Client names, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "client")]
        clients: Vec<String>,
        /// Validity of node and client certificates, in days.
        #[arg(long, default_value_t = cachectl::certs::DEFAULT_DAYS)]
        days: u32,
    },
}

fn client(config: Option<&PathBuf>) -> anyhow::Result<Client> {
    let path = config.context("--config FILE is required for this command")?;
    let config = ClientConfig::load(path)?;
    Ok(Client::new(&config)?)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Gateway(gateway) = &args.command {
        runtime.worker_threads(gateway.threads());
    }
    runtime.enable_all().build().context("starting the async runtime")?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Get(get) => get::run(&client(args.config.as_ref())?, get).await,
        Command::Status(status) => status::run(&client(args.config.as_ref())?, status).await,
        Command::Drain(drain) => drain::run(&client(args.config.as_ref())?, drain).await,
        Command::Warmup(warmup) => warmup::run(&client(args.config.as_ref())?, warmup).await,
        Command::Sync(sync) => sync::run(client(args.config.as_ref())?, sync).await,
        Command::Gateway(gateway) => gateway::run(args.config.as_ref(), gateway).await,
        Command::Certs { dir, nodes, clients, days } => {
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
            for path in cachectl::certs::generate(&dir, &nodes, &clients, days)? {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}
