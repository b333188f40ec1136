//! `mirror-origin`: a local S3-compatible origin (s3s + s3s-fs, SigV4) serving a directory, for
//! the demo cluster and load runs on one machine. `--sample VOLUME` first writes JuiceFS-shaped
//! blocks under `<bucket>/<VOLUME>/` so there is something to read. Not for production data.
//! SIGUSR1 prints the GETs and bytes served so far (`scripts/bench-mount.sh` counts with it).

use std::{net::SocketAddr, path::PathBuf};

use cache_testkit::{S3Origin, block_key, content};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Local S3-compatible origin for mirrorcache demos and load runs")]
struct Args {
    /// Directory served; bucket names are its subdirectories.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    #[arg(long, default_value = "mirrorcache-demo")]
    access_key: String,
    #[arg(long, default_value = "mirrorcache-demo-secret")]
    secret_key: String,
    #[arg(long, default_value = "demo")]
    bucket: String,
    /// Write sample blocks for this volume (prefix `<bucket>/<VOLUME>/myjfs/chunks/...`).
    #[arg(long)]
    sample: Option<String>,
    /// How many sample blocks of 4 MiB (plus one short last block).
    #[arg(long, default_value_t = 16)]
    blocks: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let origin = S3Origin::start_on(&args.dir, args.listen, &args.access_key, &args.secret_key).await?;
    if let Some(volume) = &args.sample {
        for slice in 1..=args.blocks + 1 {
            let len: u64 = if slice <= args.blocks { 4 << 20 } else { (1 << 20) + 123 };
            let key = format!("{volume}/{}", block_key(slice, 0, len));
            origin.put(&args.bucket, &key, &content(slice, len))?;
        }
        println!(
            "wrote {} sample blocks: {volume}/myjfs/chunks/0/0/<1..={}>_0_<size>",
            args.blocks + 1,
            args.blocks + 1
        );
    }
    println!("origin serving s3://{} on {}", args.bucket, origin.endpoint());
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut stopped = std::pin::pin!(cache_client::signal::stopped());
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = usr1.recv() => println!("origin served {} GETs, {} bytes", origin.get_count(), origin.bytes_served()),
        }
    }
    println!("origin served {} GETs, {} bytes", origin.get_count(), origin.bytes_served());
    Ok(())
}
