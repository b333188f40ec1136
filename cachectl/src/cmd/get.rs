//! `cachectl get`: read an object or a range through the cluster and write it out.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use cache_client::Client;
use cache_proto::key::{ObjectKey, Volume};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    volume: String,
    key: String,
    /// First byte to read.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes to read (default: to the end of the first 256 MiB).
    #[arg(long)]
    len: Option<u64>,
    /// Write the bytes here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Tell, on stderr, which source served each page and which nodes were passed over.
    #[arg(short, long)]
    verbose: bool,
}

pub async fn run(client: &Client, args: GetArgs) -> anyhow::Result<()> {
    let volume = Volume::new(&args.volume)?;
    let key = ObjectKey::new(&args.key)?;
    let len = args.len.unwrap_or(cache_client::client::MAX_READ_LEN);
    let started = std::time::Instant::now();
    let (bytes, traces) =
        client.read_traced(&volume, &key, args.offset, len).await.with_context(|| format!("reading {volume}/{key}"))?;
    let elapsed = started.elapsed();
    match &args.output {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(&bytes).context("writing to stdout")?,
    }
    if args.verbose {
        let mut err = std::io::stderr().lock();
        writeln!(err, "{} bytes of {volume}/{key} at offset {} in {elapsed:.2?}", bytes.len(), args.offset)?;
        for t in &traces {
            writeln!(err, "  page {}: {}", t.page, t.source)?;
            for why in &t.passed_over {
                writeln!(err, "    passed over: {why}")?;
            }
        }
        for (name, value) in client.stats().snapshot() {
            if value > 0 {
                writeln!(err, "  {name} = {value}")?;
            }
        }
    }
    Ok(())
}
