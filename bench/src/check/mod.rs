//! The correctness checker behind `cache-bench check`: many concurrent readers for a bounded
//! time over the objects `populate` wrote, every byte of every read compared with what the object
//! holds, and every page's source recorded. Meant to run during a scenario (nodes restarted,
//! added, removed; the origin slowed or down) and to fail loudly if a read ever returns wrong
//! bytes, too few bytes, an error, or takes longer than the deadline.
//!
//! ```text
//!  run(client, volume, spec, stop, on_interval)
//!   ├ `concurrency` reader tasks, until `requests` are taken, `duration` passed, or `stop` fired:
//!   │    Layout::pick (seeded): object uniform, shape uniform (whole, range, crossing, to_end)
//!   │    Client::read_traced under timeout(deadline + slack)
//!   │    judge(bytes, expected(plan)) → Record { outcome, latency, late, pages' sources }
//!   │      ──► bounded channel ──►
//!   └ this task: Tally of the run + Tally of the current second; every second (on the clock, not
//!     per read) the second's Tally becomes one Progress for `on_interval`, then is reset.
//!     When every reader has ended: the last partial second, then the Summary.
//! ```
//!
//! Stopping: at the time or request bound, readers take no new read and finish the ones in flight
//! (each bounded by its timeout). When `stop` fires (a signal, a stop file), reads in flight are
//! dropped and counted as `cancelled`, and as `late` too if they had already run past the
//! deadline. The checker knows the cluster only through its client, so membership may change
//! under it. See [`tally`] for what each counter means.

pub mod shape;
pub mod tally;

use std::{
    future::Future,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use cache_client::{Client, PageTrace, ReadError, client::MAX_READ_LEN, origin::OriginError};
use cache_proto::key::Volume;
use rand::{SeedableRng, rngs::StdRng};
pub use shape::{Layout, ReadPlan, Shape, Verdict, expected, judge};
pub use tally::{Outcome, Progress, Record, RunInfo, Summary, Tally};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::load::object_key;

/// Longest wait past the deadline before a read is given up as `timed_out`.
const MAX_SLACK: Duration = Duration::from_secs(5);

/// One check run's parameters (the defaults of `cache-bench check`).
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Objects `0..objects` under `prefix` (see [`crate::load::keys`]), each `object_size` bytes.
    pub objects: u64,
    pub object_size: u64,
    pub prefix: String,
    /// Length of range reads, and at most the extra length of "to the end" reads. Default 128 KiB.
    pub range: u64,
    /// Readers. Default 8.
    pub concurrency: usize,
    /// The run ends after this many reads (default 1 000 000) or `duration` (default 30 s),
    /// whichever comes first. Every read's latency is kept: 8 bytes per read.
    pub requests: u64,
    pub duration: Duration,
    /// A read slower than this is `late`; one not answered by `deadline + min(deadline, 5 s)` is
    /// given up as `timed_out`. Default 30 s.
    pub deadline: Duration,
    pub seed: u64,
}

impl CheckSpec {
    pub fn new(objects: u64, object_size: u64) -> Self {
        Self {
            objects,
            object_size,
            prefix: "bench".into(),
            range: 128 << 10,
            concurrency: 8,
            requests: 1_000_000,
            duration: Duration::from_secs(30),
            deadline: Duration::from_secs(30),
            seed: 1,
        }
    }

    /// Errors name the `cache-bench check` flag at fault. [`run`] calls this first.
    pub fn validate(&self, page: u64) -> anyhow::Result<()> {
        anyhow::ensure!(self.objects > 0, "--objects must be at least 1");
        anyhow::ensure!(self.object_size > 0, "--object-size must be at least 1 byte");
        anyhow::ensure!(self.range > 0, "--range must be at least 1 byte");
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(self.requests > 0, "--requests must be at least 1");
        anyhow::ensure!(!self.deadline.is_zero(), "--deadline must be more than 0");
        anyhow::ensure!(page > 0, "the client's page size is 0");
        let longest = self.object_size.max(page).saturating_add(self.range);
        anyhow::ensure!(
            longest <= MAX_READ_LEN,
            "--object-size (or the page size) plus --range is {longest} bytes, more than a read may ask for \
             ({MAX_READ_LEN})"
        );
        object_key(&self.prefix, 0, self.object_size).context("--prefix")?;
        Ok(())
    }
}

/// Runs `spec` against `volume` through `client` until a bound is reached or `stop` fires, calls
/// `on_interval` once a second (and for the last partial second), and returns the summary. Fails
/// only on a bad spec; read failures are in the summary (see [`Summary::failed`]).
pub async fn run(
    client: Arc<Client>,
    volume: &Volume,
    spec: &CheckSpec,
    stop: impl Future<Output = ()>,
    mut on_interval: impl FnMut(&Progress),
) -> anyhow::Result<Summary> {
    let page = u64::from(client.page_size());
    spec.validate(page)?;
    let began = Instant::now();
    let reader = Arc::new(Reader {
        client,
        volume: volume.clone(),
        prefix: spec.prefix.clone(),
        layout: Layout { objects: spec.objects, object_size: spec.object_size, page, range: spec.range },
        deadline: spec.deadline,
        end: began + spec.duration,
        requests: spec.requests,
        taken: AtomicU64::new(0),
    });
    let (records_tx, mut records) = mpsc::channel(spec.concurrency.saturating_mul(16).min(1 << 16));
    let (halt, halted) = watch::channel(false);
    let mut readers = JoinSet::new();
    for t in 0..spec.concurrency as u64 {
        let rng = StdRng::seed_from_u64(spec.seed.wrapping_add(t.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        readers.spawn(reader.clone().read_loop(rng, halted.clone(), records_tx.clone()));
    }
    drop(records_tx);

    let second = Duration::from_secs(1);
    let mut ticker = tokio::time::interval_at((began + second).into(), second);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut total, mut window) = (Tally::default(), Tally::default());
    let mut stopping = false;
    tokio::pin!(stop);
    // Ends when every reader has ended and dropped its sender; each reader is bounded.
    loop {
        tokio::select! {
            record = records.recv() => match record {
                Some(r) => {
                    window.add(&r);
                    total.add(&r);
                }
                None => break,
            },
            _ = ticker.tick() => on_interval(&std::mem::take(&mut window).progress(began.elapsed())),
            () = &mut stop, if !stopping => {
                stopping = true;
                halt.send_replace(true);
            }
        }
    }
    if window.reads > 0 {
        on_interval(&window.progress(began.elapsed()));
    }
    while let Some(done) = readers.join_next().await {
        done.context("a checker reader panicked")?;
    }
    let run = RunInfo {
        volume: volume.to_string(),
        objects: spec.objects,
        object_size: spec.object_size,
        page_size: page,
        range: spec.range,
        concurrency: spec.concurrency,
        seed: spec.seed,
        deadline_ms: spec.deadline.as_secs_f64() * 1e3,
        seconds: began.elapsed().as_secs_f64(),
    };
    Ok(Summary::new(run, total))
}

/// Resolves once `path` exists (checked every 200 ms).
pub async fn file_appears(path: &Path) {
    while !tokio::fs::try_exists(path).await.unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What every reader task shares.
#[derive(Debug)]
struct Reader {
    client: Arc<Client>,
    volume: Volume,
    prefix: String,
    layout: Layout,
    deadline: Duration,
    end: Instant,
    requests: u64,
    /// Request numbers taken so far, over all readers.
    taken: AtomicU64,
}

impl Reader {
    async fn read_loop(self: Arc<Self>, mut rng: StdRng, mut halted: watch::Receiver<bool>, out: mpsc::Sender<Record>) {
        while !*halted.borrow()
            && Instant::now() < self.end
            && self.taken.fetch_add(1, Ordering::Relaxed) < self.requests
        {
            let plan = self.layout.pick(&mut rng);
            let began = Instant::now();
            let halt = async {
                let _ = halted.wait_for(|h| *h).await;
            };
            let record = tokio::select! {
                biased;
                record = self.check(plan) => record,
                () = halt => self.cancelled(plan, began.elapsed()),
            };
            let cancelled = record.outcome == Outcome::Cancelled;
            if out.send(record).await.is_err() || cancelled {
                break;
            }
        }
    }

    /// One read of `plan`, judged.
    async fn check(&self, plan: ReadPlan) -> Record {
        let key = match object_key(&self.prefix, plan.object, self.layout.object_size) {
            Ok(key) => key,
            Err(e) => return self.record(plan, Outcome::Error { kind: "key", text: format!("{e:#}") }, Duration::ZERO),
        };
        let give_up = self.deadline + self.deadline.min(MAX_SLACK);
        let began = Instant::now();
        let read = tokio::time::timeout(give_up, self.client.read_traced(&self.volume, &key, plan.offset, plan.len));
        let read = read.await;
        let latency = began.elapsed();
        let (bytes, pages) = match read {
            Err(_) => {
                let mut r = self.record(plan, Outcome::TimedOut, latency);
                r.detail = Some(format!("{key}: no answer within {give_up:?}"));
                return r;
            }
            Ok(Err(e)) => {
                let mut r = self.record(plan, Outcome::Error { kind: error_kind(&e), text: e.to_string() }, latency);
                r.detail = r.late.then(|| format!("{key}: failed after {latency:?}: {e}"));
                return r;
            }
            Ok(Ok(read)) => read,
        };
        let (outcome, detail) = match judge(&bytes, &expected(&plan, self.layout.object_size)) {
            Verdict::Ok => (Outcome::Ok, None),
            Verdict::WrongBytes { at } => {
                (Outcome::WrongBytes, Some(format!("wrong byte at +{at} of the {} returned", bytes.len())))
            }
            Verdict::ShortRead { got, want } => (Outcome::ShortRead, Some(format!("{got} bytes returned, {want} due"))),
        };
        let mut r = self.record(plan, outcome, latency);
        let detail = detail.or_else(|| r.late.then(|| format!("took {latency:?}")));
        r.detail = detail.map(|d| format!("{key}: {d}; {}", describe(&pages)));
        r.bytes = bytes.len() as u64;
        r.sources = pages.into_iter().map(|p| p.source).collect();
        r
    }

    fn cancelled(&self, plan: ReadPlan, latency: Duration) -> Record {
        let mut r = self.record(plan, Outcome::Cancelled, latency);
        if r.late {
            r.detail = Some(format!("still unanswered after {latency:?} when the run was stopped"));
        }
        r
    }

    fn record(&self, plan: ReadPlan, outcome: Outcome, latency: Duration) -> Record {
        let late = latency > self.deadline;
        Record { plan, outcome, latency, late, bytes: 0, sources: Vec::new(), detail: None }
    }
}

/// Where each page came from, and which nodes were passed over and why.
fn describe(pages: &[PageTrace]) -> String {
    let each: Vec<String> = pages
        .iter()
        .map(|p| {
            let passed = if p.passed_over.is_empty() { String::new() } else { format!(" after {:?}", p.passed_over) };
            format!("page {} from {}{passed}", p.page, p.source)
        })
        .collect();
    each.join(", ")
}

/// A short, stable name for the kind of a read error (the summary buckets errors by it).
pub fn error_kind(e: &ReadError) -> &'static str {
    match e {
        ReadError::UnknownVolume(_) => "unknown_volume",
        ReadError::TooLarge { .. } => "too_large",
        ReadError::OutOfRange { .. } | ReadError::Origin(OriginError::OutOfRange { .. }) => "out_of_range",
        ReadError::OriginTimeout { .. } => "origin_timeout",
        ReadError::Changed { .. } => "changed",
        ReadError::Origin(OriginError::Config { .. }) => "origin_config",
        ReadError::Origin(OriginError::NotFound { .. }) => "not_found",
        ReadError::Origin(OriginError::Truncated { .. }) => "origin_truncated",
        ReadError::Origin(OriginError::Stalled { .. }) => "origin_stalled",
        ReadError::Origin(OriginError::Corrupt { .. }) => "origin_corrupt",
        ReadError::Origin(OriginError::Other { .. }) => "origin",
    }
}
