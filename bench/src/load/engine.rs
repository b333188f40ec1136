//! [`run`]: the warming pass, the measured phase between two snapshots of the counters, and the
//! [`Report`] built from their difference. See the module docs of [`crate::load`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use cache_proto::key::ObjectKey;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use tokio::task::JoinSet;

use super::{
    KeyDist, LoadSpec, Mode, Target,
    keys::object_keys,
    report::{Report, per_gb, pids_cpu, process_cpu, quantiles},
};

/// Error messages kept per run.
const ERROR_SAMPLES: usize = 5;

/// Runs `spec` against `target` and reports the measured phase. Fails only on a bad spec; read
/// errors are counted in the report.
pub async fn run(target: &Target, spec: &LoadSpec) -> anyhow::Result<Report> {
    anyhow::ensure!(spec.objects > 0, "need at least one object");
    anyhow::ensure!(spec.object_size > 0, "objects must not be empty");
    anyhow::ensure!(spec.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(spec.range != Some(0), "a range must be at least one byte");
    let keys = Arc::new(object_keys(&spec.prefix, spec.objects, spec.object_size)?);
    let dist = KeyDist::new(spec.objects, spec.zipf).map_err(anyhow::Error::msg)?;
    let mut report = Report {
        mode: spec.mode.as_str().into(),
        volume: target.volume.to_string(),
        objects: spec.objects,
        object_size: spec.object_size,
        read_size: spec.read_size(),
        dist: if spec.mode == Mode::Cold { "each once".into() } else { dist.label() },
        concurrency: spec.concurrency,
        ..Report::default()
    };

    if spec.mode == Mode::Warm {
        let every = Picker { plan: Plan::Each((0..spec.objects).collect()), range: None, size: spec.object_size };
        let began = Instant::now();
        let warmed = measure(target, spec, Mode::Warm, every, &keys, spec.objects, None).await?;
        report.warm_seconds = Some(began.elapsed().as_secs_f64());
        report.warm_errors = Some(warmed.errors);
    }

    let (plan, limit) = match spec.mode {
        Mode::Cold => {
            let mut order: Vec<u64> = (0..spec.objects).collect();
            order.shuffle(&mut StdRng::seed_from_u64(spec.seed));
            (Plan::Each(order), spec.requests.min(spec.objects))
        }
        Mode::Origin | Mode::Warm => (Plan::Dist(dist), spec.requests),
    };
    let picker = Picker { plan, range: spec.range, size: spec.object_size };
    let before = Snapshot::take(target, spec).await;
    let began = Instant::now();
    let mut run = measure(target, spec, spec.mode, picker, &keys, limit, Some(began + spec.duration)).await?;
    let secs = began.elapsed().as_secs_f64();
    let after = Snapshot::take(target, spec).await;

    let [p50, p99, p999, max] = quantiles(&mut run.nanos);
    let [memory, disk, miss, fallback] = std::array::from_fn(|i| after.pages[i].saturating_sub(before.pages[i]));
    let delta = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
    let cpu = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
    let pages = memory + disk + miss + fallback;
    Ok(Report {
        requests: run.requests,
        errors: run.errors,
        error_samples: run.samples,
        bytes: run.bytes,
        seconds: secs,
        mb_per_s: run.bytes as f64 / 1e6 / secs,
        requests_per_s: run.requests as f64 / secs,
        p50_ms: p50,
        p99_ms: p99,
        p999_ms: p999,
        max_ms: max,
        hit_ratio: (spec.mode != Mode::Origin && pages > 0).then(|| (memory + disk) as f64 / pages as f64),
        pages_memory: memory,
        pages_disk: disk,
        pages_miss: miss,
        pages_origin_fallback: fallback,
        origin_gets_nodes: delta(after.node_origin_gets, before.node_origin_gets),
        origin_gets_client: if spec.mode == Mode::Origin { run.requests } else { fallback },
        origin_gets_proxy: delta(after.proxy_requests, before.proxy_requests),
        client_cpu_s_per_gb: per_gb(cpu(after.cpu, before.cpu), run.bytes),
        node_cpu_s_per_gb: per_gb(cpu(after.node_cpu, before.node_cpu), run.bytes),
        ..report
    })
}

/// Which object request number `k` reads.
#[derive(Debug)]
enum Plan {
    /// Request `k` reads object `order[k]`.
    Each(Vec<u64>),
    /// Each request draws an object.
    Dist(KeyDist),
}

#[derive(Debug)]
struct Picker {
    plan: Plan,
    range: Option<u64>,
    size: u64,
}

impl Picker {
    /// (object, offset, length) of request `k`.
    fn pick(&self, k: u64, rng: &mut StdRng) -> (u64, u64, u64) {
        let object = match &self.plan {
            Plan::Each(order) => order[k as usize % order.len()],
            Plan::Dist(dist) => dist.sample(rng),
        };
        match self.range {
            Some(len) if len < self.size => (object, rng.random_range(0..=self.size - len), len),
            _ => (object, 0, self.size),
        }
    }
}

/// What the tasks of one phase saw.
#[derive(Debug, Default)]
struct Outcome {
    requests: u64,
    errors: u64,
    bytes: u64,
    /// Latency of each successful read.
    nanos: Vec<u64>,
    samples: Vec<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.nanos.extend(other.nanos);
        let room = ERROR_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

/// `spec.concurrency` tasks read until `limit` request numbers are taken or `deadline` passes.
async fn measure(
    target: &Target,
    spec: &LoadSpec,
    mode: Mode,
    picker: Picker,
    keys: &Arc<Vec<ObjectKey>>,
    limit: u64,
    deadline: Option<Instant>,
) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicU64::new(0));
    let picker = Arc::new(picker);
    let mut tasks = JoinSet::new();
    for t in 0..spec.concurrency as u64 {
        let (target, picker, keys, next) = (target.clone(), picker.clone(), keys.clone(), next.clone());
        let (timeout, verify) = (spec.read_timeout, spec.verify);
        let mut rng = StdRng::seed_from_u64(spec.seed.wrapping_add(t.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        tasks.spawn(async move {
            let mut out = Outcome::default();
            while deadline.is_none_or(|d| Instant::now() < d) {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= limit {
                    break;
                }
                let (object, offset, len) = picker.pick(k, &mut rng);
                let key = &keys[object as usize];
                let began = Instant::now();
                let read = tokio::time::timeout(timeout, read(&target, mode, key, offset, len)).await;
                let nanos = began.elapsed().as_nanos() as u64;
                out.requests += 1;
                let checked = match read {
                    Err(_) => Err(anyhow::anyhow!("no answer within {timeout:?}")),
                    Ok(read) => read.and_then(|bytes| check(&bytes, object, offset, len, picker.size, verify)),
                };
                match checked {
                    Ok(()) => {
                        out.bytes += len;
                        out.nanos.push(nanos);
                    }
                    Err(e) => {
                        out.errors += 1;
                        if out.samples.len() < ERROR_SAMPLES {
                            out.samples.push(format!("{key} @{offset}+{len}: {e:#}"));
                        }
                    }
                }
            }
            out
        });
    }
    let mut total = Outcome::default();
    while let Some(task) = tasks.join_next().await {
        total.merge(task.context("load task panicked")?);
    }
    Ok(total)
}

async fn read(target: &Target, mode: Mode, key: &ObjectKey, offset: u64, len: u64) -> anyhow::Result<Bytes> {
    Ok(match mode {
        Mode::Origin => target.origin.get_range(key, offset..offset + len).await?.bytes,
        Mode::Cold | Mode::Warm => target.client.read(&target.volume, key, offset, len).await?,
    })
}

/// The read returned `len` bytes, and with `verify` the object's bytes at `offset`.
fn check(bytes: &Bytes, object: u64, offset: u64, len: u64, size: u64, verify: bool) -> anyhow::Result<()> {
    anyhow::ensure!(bytes.len() as u64 == len, "read {} bytes, asked for {len}", bytes.len());
    if verify {
        let want = crate::content(object, size).slice(offset as usize..(offset + len) as usize);
        anyhow::ensure!(*bytes == want, "bytes differ from the object's content");
    }
    Ok(())
}

/// Counters read before and after the measured phase.
#[derive(Debug)]
struct Snapshot {
    /// Client pages by source: node memory, node disk, node miss, origin fallback.
    pages: [u64; 4],
    node_origin_gets: Option<u64>,
    proxy_requests: Option<u64>,
    cpu: Option<Duration>,
    node_cpu: Option<Duration>,
}

impl Snapshot {
    async fn take(target: &Target, spec: &LoadSpec) -> Self {
        let stats = target.client.stats().snapshot();
        let page = |name: &str| stats.get(name).copied().unwrap_or(0);
        let view = target.client.ring();
        let statuses =
            futures::future::join_all(view.ring.members().iter().map(|m| target.client.node_status(m))).await;
        let node_origin_gets = statuses.into_iter().map(|s| s.ok().map(|s| s.origin_requests)).sum();
        Self {
            pages: ["pages_node_memory", "pages_node_disk", "pages_node_miss", "pages_origin_fallback"].map(page),
            node_origin_gets,
            proxy_requests: spec.proxy.as_ref().map(|p| p.requests()),
            cpu: process_cpu(None),
            node_cpu: pids_cpu(&spec.node_pids),
        }
    }
}
