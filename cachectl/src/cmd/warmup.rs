//! `cachectl warmup VOLUME PREFIX` (or `--keys FILE`): ask each page's owner to cache it, with
//! bounded concurrency and a progress bar; `--check` reports what share is cached without
//! fetching anything; `--evict` drops it. A page whose owner cannot be reached is asked again
//! after the pool's set-aside (a restart, a busy moment); exits non-zero, naming the keys, if any
//! page still failed.

use std::{
    io::IsTerminal,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use cache_client::{Client, pool::SET_ASIDE, warm::Warmed};
use cache_proto::{
    key::{ObjectKey, Volume},
    units::ByteSize,
    wire::{WarmMode, WarmOutcome},
};
use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct WarmupArgs {
    volume: String,
    /// Warm every object whose key starts with this (listed at the volume's first origin).
    prefix: Option<String>,
    /// Instead of listing: a file with one `KEY` or `KEY SIZE` per line.
    #[arg(long, conflicts_with = "prefix")]
    keys: Option<PathBuf>,
    /// Pages warmed at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Report what share of the objects' pages is cached; fetch nothing.
    #[arg(long, conflicts_with = "evict")]
    check: bool,
    /// Drop the objects' pages from the cache.
    #[arg(long)]
    evict: bool,
}

/// One object to warm; `size` is unknown for a key file line without one.
struct Object {
    key: ObjectKey,
    size: Option<u64>,
}

/// Tries per page: a node the pool set aside is probed again after [`SET_ASIDE`], so waiting
/// that long between tries rides out a node that restarts or stops answering for a moment; a
/// node still away after the last try fails the page.
const TRIES: u32 = 4;

#[derive(Default)]
struct Tally {
    pages: AtomicU64,
    bytes: AtomicU64,
    /// Pages asked again because their owner could not be reached.
    retried: AtomicU64,
    by_outcome: [AtomicU64; 4],
}

fn read_keys(path: &PathBuf) -> anyhow::Result<Vec<Object>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default();
        let key = ObjectKey::new(key).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let size =
            words.next().map(str::parse).transpose().with_context(|| format!("{}:{}: size", path.display(), n + 1))?;
        out.push(Object { key, size });
    }
    Ok(out)
}

pub async fn run(client: &Client, args: WarmupArgs) -> anyhow::Result<()> {
    let volume = Volume::new(&args.volume)?;
    let mode = match (args.check, args.evict) {
        (true, _) => WarmMode::Check,
        (_, true) => WarmMode::Evict,
        _ => WarmMode::Fill,
    };
    let objects = match (&args.keys, &args.prefix) {
        (Some(path), _) => read_keys(path)?,
        (None, Some(prefix)) => client
            .list_objects(&volume, prefix)
            .await
            .with_context(|| format!("listing {volume}/{prefix}"))?
            .into_iter()
            .map(|(key, size)| Object { key, size: Some(size) })
            .collect(),
        (None, None) => bail!("give a PREFIX to list, or --keys FILE"),
    };
    if mode != WarmMode::Fill && objects.iter().any(|o| o.size.is_none()) {
        bail!("--check and --evict need each object's size: list a PREFIX, or write `KEY SIZE` lines");
    }
    let page_size = u64::from(client.page_size());
    let known: u64 = objects.iter().filter_map(|o| o.size).sum();
    let bar = progress(known, objects.len());
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let ticker =
        (!std::io::stderr().is_terminal()).then(|| tokio::spawn(plain_progress(tally.clone(), known, started)));

    let failures: Vec<String> = stream::iter(objects.iter())
        .map(|o| warm_object(client, &volume, o, mode, page_size, &tally, &bar))
        .buffer_unordered(args.concurrency.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    bar.finish_and_clear();
    if let Some(t) = ticker {
        t.abort();
    }

    let count = |o: WarmOutcome| tally.by_outcome[o as usize].load(Ordering::Relaxed);
    let (pages, bytes) = (tally.pages.load(Ordering::Relaxed), tally.bytes.load(Ordering::Relaxed));
    let retried = tally.retried.load(Ordering::Relaxed);
    if retried > 0 {
        eprintln!("asked again {retried} times: an owner could not be reached (set aside, restarting or busy)");
    }
    let secs = started.elapsed().as_secs_f64();
    match mode {
        WarmMode::Fill => println!(
            "warmed {} objects: {pages} pages ({} fetched, {} already cached), {} in {secs:.1}s ({}/s)",
            objects.len(),
            count(WarmOutcome::Filled),
            count(WarmOutcome::Present),
            ByteSize(bytes),
            ByteSize((bytes as f64 / secs.max(1e-3)) as u64),
        ),
        WarmMode::Check => {
            let share = if pages == 0 { 100.0 } else { 100.0 * count(WarmOutcome::Present) as f64 / pages as f64 };
            println!(
                "cached: {share:.1}% of {pages} pages of {} objects ({} absent)",
                objects.len(),
                count(WarmOutcome::Absent)
            );
        }
        WarmMode::Evict => println!("evicted {pages} pages of {} objects", objects.len()),
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("failed: {f}");
        }
        bail!("{} of {} objects failed", failures.len(), objects.len());
    }
    Ok(())
}

/// Warms every page of one object: page 0 first when the size is unknown (its answer tells it).
async fn warm_object(
    client: &Client,
    volume: &Volume,
    object: &Object,
    mode: WarmMode,
    page_size: u64,
    tally: &Tally,
    bar: &ProgressBar,
) -> Result<(), String> {
    let mut size = object.size;
    let mut page = 0;
    loop {
        let pages = size.map(|s| s.div_ceil(page_size).max(1));
        if pages.is_some_and(|n| page >= n) {
            return Ok(());
        }
        let mut tries = 1;
        let Warmed { outcome, object_size } = loop {
            match client.warm(volume, &object.key, page, mode).await {
                Ok(warmed) => break warmed,
                Err(e) if e.is_transient() && tries < TRIES => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(SET_ASIDE).await;
                    tries += 1;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        let total = match size {
            Some(s) => s,
            None => *size.insert(object_size.ok_or_else(|| format!("{}: node did not say its size", object.key))?),
        };
        let bytes = (total - (page * page_size).min(total)).min(page_size);
        tally.pages.fetch_add(1, Ordering::Relaxed);
        tally.bytes.fetch_add(bytes, Ordering::Relaxed);
        tally.by_outcome[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if object.size.is_some() {
            bar.inc(bytes);
        }
        page += 1;
    }
}

fn progress(known_bytes: u64, objects: usize) -> ProgressBar {
    if known_bytes == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(known_bytes);
    let style = ProgressStyle::with_template(
        "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} ({msg})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("{objects} objects"));
    bar
}

/// Plain progress lines every 2 s when stderr is not a terminal (logs, CI).
async fn plain_progress(tally: Arc<Tally>, known: u64, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let bytes = tally.bytes.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "warmup: {} pages, {} of {} ({}/s)",
            tally.pages.load(Ordering::Relaxed),
            ByteSize(bytes),
            ByteSize(known),
            ByteSize((bytes as f64 / secs) as u64)
        );
    }
}
