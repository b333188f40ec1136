//! `cachectl sync VOLUME [PREFIX]`: copy what the volume's sources have and its regional copy
//! lacks (or holds with another size or checksum), each object by the ring node that owns its
//! page 0; with a progress bar, a checkpoint to resume from, and a summary. `--check` only
//! reports the differences (a table, or `--json`); `--delete-extra` only removes the objects the
//! sources no longer have. The engine is `cache_client::sync`.

use std::{
    io::IsTerminal,
    path::PathBuf,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use anyhow::bail;
use cache_client::{
    Client,
    sync::{self, Finding, SyncMode, SyncPlan, SyncTally, checkpoint},
};
use cache_proto::{key::Volume, units::ByteSize};
use indicatif::{ProgressBar, ProgressStyle};

use super::sync_report::{CheckReport, FAILURES_SHOWN};

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    volume: String,
    /// Only keys that start with this.
    prefix: Option<String>,
    /// Compare only: report missing, extra and differing objects; copy nothing.
    #[arg(long, conflicts_with = "delete_extra")]
    check: bool,
    /// Only delete objects of the regional copy that no source has (copy nothing).
    #[arg(long)]
    delete_extra: bool,
    /// With --check: the report as JSON.
    #[arg(long, requires = "check")]
    json: bool,
    /// Copies at once over the ring (each node also keeps its own copy.concurrency).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Bytes per second for the whole sync, e.g. 100MiB (each node also keeps copy.bandwidth).
    #[arg(long)]
    bwlimit: Option<ByteSize>,
    /// The checkpoint file (default: $XDG_STATE_HOME/mirrorcache/sync/VOLUME-HASH.json).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Start from the beginning: ignore (and replace) the checkpoint.
    #[arg(long)]
    restart: bool,
    /// Stop handing out copies after this many; the checkpoint lets a later run resume.
    #[arg(long)]
    max_objects: Option<u64>,
    /// Where a listing gives no MD5 ETag for an object of the same size on both sides, HEAD
    /// both to compare checksums (S3 listings give ETags; some S3-compatible servers' do not).
    #[arg(long)]
    checksum: bool,
    /// How long one copy may take at its node, in seconds.
    #[arg(long, default_value_t = 600)]
    copy_timeout: u64,
}

pub async fn run(client: Client, args: SyncArgs) -> anyhow::Result<()> {
    let volume = Volume::new(&args.volume)?;
    let prefix = args.prefix.clone().unwrap_or_default();
    let mode = match (args.check, args.delete_extra) {
        (true, _) => SyncMode::Check,
        (_, true) => SyncMode::DeleteExtra,
        _ => SyncMode::Copy,
    };
    let checkpoint_path = args.checkpoint.clone().unwrap_or_else(|| checkpoint::default_path(volume.as_str(), &prefix));
    if args.restart {
        checkpoint::remove(&checkpoint_path)?;
    }
    let plan = SyncPlan {
        volume: volume.clone(),
        prefix: prefix.clone(),
        mode,
        concurrency: args.concurrency,
        bwlimit: args.bwlimit.map(|b| b.0),
        max_copies: args.max_objects,
        checkpoint: Some(checkpoint_path.clone()),
        head_for_checksum: args.checksum,
    };
    let tally = Arc::new(SyncTally::default());
    let started = Instant::now();
    let bar = (mode == SyncMode::Copy && std::io::stderr().is_terminal()).then(progress_bar);
    let ticker = (mode == SyncMode::Copy && !std::io::stderr().is_terminal())
        .then(|| tokio::spawn(plain_progress(tally.clone(), started)));
    let updater = bar.clone().map(|bar| tokio::spawn(update_bar(bar, tally.clone())));

    let mut report = CheckReport::new(volume.as_str(), &prefix);
    let mut failures: Vec<String> = Vec::new();
    let timeout = Duration::from_secs(args.copy_timeout);
    let end = sync::run_client(Arc::new(client), &plan, timeout, &tally, |finding| {
        if let Finding::Failed { key, error } = &finding {
            if failures.len() < FAILURES_SHOWN {
                // The error names the key already when it comes from the copy.
                failures.push(if error.starts_with(key.as_str()) { error.clone() } else { format!("{key}: {error}") });
            }
        } else if mode == SyncMode::Check {
            report.add(&finding, !args.json);
        }
    })
    .await?;
    for task in [ticker, updater].into_iter().flatten() {
        task.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let get = SyncTally::get;
    let secs = started.elapsed().as_secs_f64();
    match mode {
        SyncMode::Check => {
            report.same = get(&tally.already_there);
            report.found = get(&tally.found);
            report.print(args.json);
            let (missing, extra, differing) = (report.missing, report.extra, report.differing);
            if missing + differing + extra > 0 {
                bail!(
                    "the regional copy differs from the sources: {missing} missing, {extra} extra, {differing} differing"
                );
            }
            return Ok(());
        }
        SyncMode::DeleteExtra => println!(
            "delete-extra {volume}/{prefix}: {} extra in the mirror, {} deleted, {} failed, in {secs:.1}s",
            get(&tally.extra),
            get(&tally.deleted),
            get(&tally.failed),
        ),
        SyncMode::Copy => {
            if let Some(after) = &end.resumed_after {
                println!("resumed after {after} (checkpoint {})", checkpoint_path.display());
            }
            println!("{}", summary(&volume, &prefix, &tally, secs));
            if end.stopped_early {
                println!(
                    "stopped after {} copies (--max-objects); run again to resume from {}",
                    get(&tally.to_copy),
                    checkpoint_path.display()
                );
            }
        }
    }
    let failed = get(&tally.failed);
    if failed > 0 {
        for f in &failures {
            eprintln!("failed: {f}");
        }
        if failed as usize > failures.len() {
            eprintln!("... and {} more", failed as usize - failures.len());
        }
        bail!("{failed} objects failed (first: {})", failures.first().map_or("?", String::as_str));
    }
    Ok(())
}

/// The closing line of a copying sync.
fn summary(volume: &Volume, prefix: &str, t: &SyncTally, secs: f64) -> String {
    let get = SyncTally::get;
    let copied_bytes = get(&t.copied_bytes);
    format!(
        "sync {volume}/{prefix}: found {} objects ({}), copied {} ({}), already there {}, failed {}, extra in the mirror {}; {secs:.1}s, {}/s",
        get(&t.found),
        ByteSize(get(&t.found_bytes)),
        get(&t.copied),
        ByteSize(copied_bytes),
        get(&t.already_there),
        get(&t.failed),
        get(&t.extra),
        ByteSize((copied_bytes as f64 / secs.max(1e-3)) as u64),
    )
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} ({msg})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Moves the bar: its length is what was found to copy so far (the listing runs ahead of the
/// copies, so it soon holds the whole), its position what was copied.
async fn update_bar(bar: ProgressBar, tally: Arc<SyncTally>) {
    let get = SyncTally::get;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        bar.set_length(get(&tally.to_copy_bytes));
        bar.set_position(get(&tally.copied_bytes));
        bar.set_message(format!(
            "{}/{} objects, {} found, {} already there, {} failed",
            get(&tally.copied),
            get(&tally.to_copy),
            get(&tally.found),
            get(&tally.already_there),
            get(&tally.failed)
        ));
    }
}

/// Plain progress lines every 2 s when stderr is not a terminal (logs, CI).
async fn plain_progress(tally: Arc<SyncTally>, started: Instant) {
    let get = |c: &AtomicU64| SyncTally::get(c);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (done, total) = (get(&tally.copied_bytes), get(&tally.to_copy_bytes));
        let secs = started.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-3);
        let eta = if rate > 0.0 { format!("{:.0}s", total.saturating_sub(done) as f64 / rate) } else { "?".into() };
        eprintln!(
            "sync: {}/{} objects copied, {} of {}, {}/s, ETA {eta}; {} found, {} already there, {} failed",
            get(&tally.copied),
            get(&tally.to_copy),
            ByteSize(done),
            ByteSize(total),
            ByteSize(rate as u64),
            get(&tally.found),
            get(&tally.already_there),
            get(&tally.failed)
        );
    }
}
