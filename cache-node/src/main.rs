//! `cache-node --config FILE`: run one mirrorcache node until SIGINT or SIGTERM.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use cache_node::{Hooks, Node, config::NodeConfig};
use clap::Parser;

/// mimalloc, not the system allocator: its 4 MiB page buffers are reused, not mapped and zeroed
/// by the kernel on every disk hit, and sit on transparent huge pages, so an O_DIRECT read into
/// them moves ~4x faster on the bench machine (BENCHMARKS.md, "Changes measured").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about = "mirrorcache cache node: serves object-store pages over QUIC from memory and disk")]
struct Args {
    /// Node config file (TOML); see configs/node.toml.
    #[arg(long, short)]
    config: PathBuf,
    /// How long shutdown waits for requests in flight.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    grace: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .init();
    let args = Args::parse();
    let config = NodeConfig::load(&args.config)?;
    let node = Node::build(config, Hooks::default())
        .await
        .with_context(|| format!("starting node from {}", args.config.display()))?;
    println!("node {} serving QUIC on {} and admin HTTP on http://{}", node.id, node.quic_addr(), node.admin_addr());
    let grace = Duration::from_secs(args.grace);
    node.run(async move {
        cache_client::signal::stopped().await;
        tracing::info!("signal received; shutting down");
        grace
    })
    .await;
    Ok(())
}
