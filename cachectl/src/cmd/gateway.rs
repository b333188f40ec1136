//! `cachectl gateway [--listen ADDR] [--threads N]`: serve the config's volumes read-only over the S3 API
//! (bucket = volume; SigV4 with access key = volume name, secret = the volume's token). Prints
//! one line, `gateway serving on http://ADDR` (the bound address), then serves until Ctrl-C or
//! SIGTERM.

use std::{io::Write, net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use cache_client::{Client, config::ClientConfig};
use cachectl::gateway;

#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    /// Address to serve HTTP on (port 0: any free port; the line printed tells which).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Worker threads (one is the fastest on two cores; raise it for a mount that reads more
    /// than one core can move).
    ///
    /// One thread serves ~0.8 GB/s of cached blocks on the bench machine, more than two did (0.58 GB/s with two: every chunk a stream reader
    /// waits for then wakes a task on another thread; BENCHMARKS.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
}

impl GatewayArgs {
    pub fn threads(&self) -> usize {
        self.threads.into()
    }
}

pub async fn run(config: Option<&PathBuf>, args: GatewayArgs) -> anyhow::Result<()> {
    let path = config.context("--config FILE is required for this command")?;
    let config = ClientConfig::load(path)?;
    let client = Arc::new(Client::new(&config)?);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "gateway serving on http://{addr}")?;
    out.flush()?;
    drop(out);
    gateway::serve(listener, client, &config.volume, cache_client::signal::stopped()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
