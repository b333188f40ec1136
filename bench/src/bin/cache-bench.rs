//! `cache-bench`: drives a running mirrorcache cluster from a client config and prints what it
//! measured (see `bench::load` for the modes and the report's fields), checks every byte it reads
//! (`check`, see `bench::check` for the counters and the JSON lines), or runs a delaying origin
//! proxy (`bench::proxy`).
//!
//! ```text
//! cache-bench --config FILE --volume VOL --mode origin,warm [--objects N] [--object-size 4MiB]
//!             [--prefix P] [--range 128KiB] [--zipf S] [--concurrency C] [--requests R]
//!             [--seconds T] [--seed N] [--verify] [--node-pids PID,PID] [--json]
//! cache-bench populate --config FILE --volume VOL [--objects N] [--object-size 4MiB] [--prefix P]
//! cache-bench check --config FILE --volume VOL [--objects N] [--object-size 4MiB] [--prefix P]
//!             [--range 128KiB] [--concurrency 8] [--seconds 30] [--requests 1000000]
//!             [--deadline 30s] [--seed 1] [--progress] [--json] [--allow-errors] [--stop-file PATH]
//! cache-bench proxy --listen 127.0.0.1:9400 --upstream 127.0.0.1:9000 --delay 50ms [--bandwidth 100MB]
//! ```
//!
//! Several modes run one after another on the same client and objects, and print one table (or
//! with `--json` one JSON line per mode). Every run stops by itself (`--requests` or `--seconds`,
//! whichever comes first); Ctrl-C or SIGTERM stops early. `check` also stops on Ctrl-C, SIGTERM
//! or its stop file, and still prints its summary; it exits non-zero if any read returned wrong or
//! too few bytes, was late, or (without `--allow-errors`) failed. Certificate paths in the config
//! are relative to the working directory, as for `cachectl`.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use bench::{
    check::{self, CheckSpec},
    load::{self, LoadSpec, Mode, Target},
    proxy::{Proxy, ProxyOptions},
};
use cache_client::{Client, config::ClientConfig};
use cache_proto::{
    key::Volume,
    units::{ByteSize, Span},
};
use clap::{Args, Parser, Subcommand};

/// The node binary's allocator (see `cache-node/src/main.rs`): the load tool reads 4 MiB pages
/// into fresh buffers like a node fills them; recommended for any process linking the client.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Load tool for a running mirrorcache cluster, and a delaying origin proxy")]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the objects to the volume's first origin (skipping those already there).
    Populate {
        #[command(flatten)]
        objects: ObjectArgs,
        /// PUTs in flight.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Read the objects with many readers and check every byte and every read's deadline, until
    /// `--seconds`, `--requests`, Ctrl-C, SIGTERM or the stop file; exit non-zero on any failure.
    Check(CheckArgs),
    /// Run a TCP proxy in front of an origin's HTTP endpoint that delays every request and caps
    /// the response bandwidth, until Ctrl-C (or `--seconds`).
    Proxy(ProxyArgs),
    /// Run a UDP relay in front of a node's QUIC port that delays, reorders and duplicates
    /// datagrams (netem in user space), until Ctrl-C, SIGTERM (or `--seconds`).
    UdpRelay(RelayArgs),
}

#[derive(Args, Debug)]
struct RelayArgs {
    /// Where peers send (the node's advertised address).
    #[arg(long)]
    listen: SocketAddr,
    /// Where the node listens.
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long, default_value = "20ms", value_parser = span)]
    delay: Duration,
    /// Up to this much more, uniformly.
    #[arg(long, default_value = "10ms", value_parser = span)]
    jitter: Duration,
    /// Share of datagrams held back by another 2 x delay (0..1).
    #[arg(long, default_value_t = 0.05)]
    reorder: f64,
    /// Share of datagrams sent twice (0..1).
    #[arg(long, default_value_t = 0.01)]
    duplicate: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cap each direction at this many bytes per second (e.g. 2MiB): a slow link.
    #[arg(long, value_parser = size)]
    rate: Option<u64>,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

/// The objects: which cluster and volume, how many, how big, under which prefix.
#[derive(Args, Debug)]
struct ObjectArgs {
    /// Client config (the format of configs/client.toml).
    #[arg(long, required = true)]
    config: Option<PathBuf>,
    /// Volume to read (a `[[volume]]` of the config).
    #[arg(long, required = true)]
    volume: Option<String>,
    #[arg(long, default_value_t = 64)]
    objects: u64,
    #[arg(long, default_value = "4MiB", value_parser = size)]
    object_size: u64,
    /// Objects are `<prefix>/chunks/0/<i/1000>/<i>_0_<size>`.
    #[arg(long, default_value = "bench")]
    prefix: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    objects: ObjectArgs,
    /// One or more of origin, cold, warm (comma-separated), run in that order.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    mode: Vec<Mode>,
    /// Read this many bytes at a random offset instead of whole objects.
    #[arg(long, value_parser = size)]
    range: Option<u64>,
    /// Choose objects by Zipf with this exponent (default: uniform).
    #[arg(long)]
    zipf: Option<f64>,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop after this many reads...
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// ...or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// A read slower than this counts as an error.
    #[arg(long, default_value = "60s", value_parser = span)]
    read_timeout: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Check every read's bytes (costs client CPU).
    #[arg(long)]
    verify: bool,
    /// Node processes on this host whose CPU per GB is reported.
    #[arg(long, value_delimiter = ',')]
    node_pids: Vec<u32>,
    /// One JSON line per run instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    objects: ObjectArgs,
    /// Length of range and page-crossing reads (and at most the excess of reads to the end).
    #[arg(long, default_value = "128KiB", value_parser = size)]
    range: u64,
    /// Readers in flight.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    concurrency: usize,
    /// Stop after this many seconds...
    #[arg(long, default_value_t = 30.0, value_parser = seconds, allow_negative_numbers = true)]
    seconds: f64,
    /// ...or this many reads, whichever comes first.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// A read slower than this is late (a failure); one not answered by deadline + min(deadline,
    /// 5s) is given up.
    #[arg(long, default_value = "30s", value_parser = span)]
    deadline: Duration,
    /// Seed of the objects and shapes chosen.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON line of the last second's counters to stderr every second.
    #[arg(long)]
    progress: bool,
    /// Print the summary as one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Read errors (e.g. with the origin down) do not fail the run; wrong, short and late reads do.
    #[arg(long)]
    allow_errors: bool,
    /// Stop (and print the summary) when this file appears.
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Do not check node answers against their digests: only to prove that the checker
    /// catches what the digest would have (a corrupting node then reaches the reader).
    #[arg(long)]
    no_verify_digests: bool,
}

#[derive(Args, Debug)]
struct ProxyArgs {
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// The origin's `host:port` (an `http://` prefix is accepted).
    #[arg(long)]
    upstream: String,
    /// Added to every request's time to first byte (the request is held this long).
    #[arg(long, default_value = "50ms", value_parser = span)]
    delay: Duration,
    /// Response bytes per second over all connections, e.g. 100MB (default: unlimited).
    #[arg(long, value_parser = size)]
    bandwidth: Option<u64>,
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

fn size(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.0)
}

fn span(s: &str) -> Result<Duration, String> {
    s.parse::<Span>().map(|s| s.0)
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && Duration::try_from_secs_f64(t).is_ok() => Ok(t),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The client's own log (a node set aside, a fallback), as `cachectl` prints it: RUST_LOG.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let work = match cli.command {
        // The proxy watches the signals itself, to print its counters when it stops.
        Some(Command::Proxy(args)) => return proxy(args).await,
        Some(Command::UdpRelay(args)) => return relay(args).await,
        // So does the checker, which exits with 1 when a check failed (having said which).
        Some(Command::Check(args)) => {
            if !check(args).await? {
                std::process::exit(1);
            }
            return Ok(());
        }
        Some(Command::Populate { objects, concurrency }) => {
            futures::future::Either::Left(populate(objects, concurrency))
        }
        None => futures::future::Either::Right(run(cli.run)),
    };
    tokio::select! {
        result = work => result,
        () = cache_client::signal::stopped() => anyhow::bail!("interrupted"),
    }
}

impl ObjectArgs {
    fn load(&self) -> anyhow::Result<(ClientConfig, Volume)> {
        let path = self.config.as_ref().context("--config is required")?;
        let config = ClientConfig::load(path)?;
        let volume = self.volume.as_deref().context("--volume is required")?;
        let volume = Volume::new(volume).map_err(|e| anyhow::anyhow!("--volume {volume:?}: {e}"))?;
        Ok((config, volume))
    }
}

async fn populate(args: ObjectArgs, concurrency: usize) -> anyhow::Result<()> {
    let (config, volume) = args.load()?;
    let origin = config
        .volume
        .iter()
        .find(|v| v.name == volume)
        .and_then(|v| v.origin.first())
        .with_context(|| format!("volume {volume} has no origin in the client config"))?;
    eprintln!("writing {} objects of {} to {}...", args.objects, ByteSize(args.object_size), origin.url);
    let done = load::populate(origin, &args.prefix, args.objects, args.object_size, concurrency).await?;
    println!("{} written, {} already there", done.written, done.skipped);
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (config, volume) = args.objects.load()?;
    let client = Arc::new(Client::new(&config)?);
    let target = Target::new(client, &config, &volume)?;
    let mut reports = Vec::new();
    for &mode in &args.mode {
        let spec = LoadSpec {
            prefix: args.objects.prefix.clone(),
            range: args.range,
            zipf: args.zipf,
            concurrency: args.concurrency,
            requests: args.requests,
            duration: Duration::try_from_secs_f64(args.seconds).context("--seconds")?,
            read_timeout: args.read_timeout,
            seed: args.seed,
            verify: args.verify,
            node_pids: args.node_pids.clone(),
            ..LoadSpec::new(mode, args.objects.objects, args.objects.object_size)
        };
        eprintln!("running {}{}...", mode.as_str(), if mode == Mode::Warm { " (warming first)" } else { "" });
        let report = load::run(&target, &spec).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        reports.push(report);
    }
    if !args.json {
        print!("{}", load::table(&reports));
    }
    let failed: u64 = reports.iter().map(|r| r.errors).sum();
    anyhow::ensure!(failed == 0, "{failed} reads failed");
    Ok(())
}

/// Runs the checker and prints its summary; `false` if a check failed.
async fn check(args: CheckArgs) -> anyhow::Result<bool> {
    let (config, volume) = args.objects.load()?;
    let mut client = Client::new(&config)?;
    if args.no_verify_digests {
        client = client.without_digest_checks();
    }
    let client = Arc::new(client);
    let spec = CheckSpec {
        prefix: args.objects.prefix.clone(),
        range: args.range,
        concurrency: args.concurrency,
        requests: args.requests,
        duration: Duration::from_secs_f64(args.seconds),
        deadline: args.deadline,
        seed: args.seed,
        ..CheckSpec::new(args.objects.objects, args.objects.object_size)
    };
    let stop = async {
        match &args.stop_file {
            Some(path) => tokio::select! {
                () = cache_client::signal::stopped() => {}
                () = check::file_appears(path) => {}
            },
            None => cache_client::signal::stopped().await,
        }
    };
    let progress = |p: &check::Progress| {
        if let (true, Ok(line)) = (args.progress, serde_json::to_string(p)) {
            eprintln!("{line}");
        }
    };
    spec.validate(u64::from(client.page_size()))?;
    eprintln!("checking {} objects of {} in volume {volume}...", spec.objects, ByteSize(spec.object_size));
    let summary = check::run(client, &volume, &spec, stop, progress).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    std::io::stdout().flush()?;
    let failed = summary.failed(args.allow_errors);
    if !failed.is_empty() {
        eprintln!("check failed: {}", failed.join("; "));
    }
    Ok(failed.is_empty())
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&args.reorder), "--reorder must be within 0..=1");
    anyhow::ensure!((0.0..=1.0).contains(&args.duplicate), "--duplicate must be within 0..=1");
    let options = bench::relay::RelayOptions {
        delay: args.delay,
        jitter: args.jitter,
        reorder: args.reorder,
        duplicate: args.duplicate,
        seed: args.seed,
        rate: args.rate,
    };
    let front = bench::relay::bind(args.listen).await.with_context(|| format!("listen {}", args.listen))?;
    eprintln!("relay listening on {} -> {}, {options:?}", args.listen, args.upstream);
    let stats = Arc::new(bench::relay::RelayStats::default());
    let limit = async {
        match args.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = bench::relay::run(front, args.upstream, options, stats.clone()) => r?,
        () = cache_client::signal::stopped() => {}
        () = limit => {}
    }
    println!("relay stopped: {}", stats.summary());
    Ok(())
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let upstream = args.upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let options = ProxyOptions { delay: args.delay, bandwidth: args.bandwidth, max_connections: args.max_connections };
    let proxy =
        Proxy::start(args.listen, &upstream, options).await.with_context(|| format!("listen {}", args.listen))?;
    let cap = args.bandwidth.map_or_else(|| "unlimited".to_owned(), |b| format!("{} B/s", b));
    eprintln!("proxy listening on {} -> {upstream}, delay {:?}, bandwidth {cap}", proxy.addr(), args.delay);
    let limit = async {
        match args.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    let report = async {
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let now = proxy.stats().summary();
            if now != last {
                eprintln!("proxy: {now}");
                last = now;
            }
        }
    };
    tokio::select! {
        () = cache_client::signal::stopped() => {}
        () = limit => {}
        () = report => {}
    }
    println!("proxy stopped: {}", proxy.stats().summary());
    Ok(())
}
