//! The cluster load engine behind `cache-bench`: reads JuiceFS-shaped objects from a running
//! cluster (or straight from the origin, as the baseline) with `concurrency` reads in flight, and
//! reports throughput, latency quantiles, hit ratio, origin GETs and CPU per GB.
//!
//! ```text
//!  run(target, spec)
//!   ├ warm mode: read every object whole once through the cache (untimed)
//!   ├ snapshot: client page counters, each node's origin_requests, CPU (/proc), proxy counter
//!   ├ measure:  `concurrency` tasks take request numbers from one counter until `requests` are
//!   │           taken or `duration` has passed; each picks (object, offset, len) and reads it
//!   │             origin: OriginChain::get_range (no cache)   cold/warm: Client::read
//!   └ snapshot again → Report (deltas over the measured phase only)
//! ```
//!
//! - **origin**: objects chosen by `dist`, read from the volume's origin chain directly.
//! - **cold**: every object once, in a seeded random order (at most `min(requests, objects)`
//!   reads): each is a miss if the cluster has not seen these objects (use a fresh `prefix` or a
//!   cleaned cluster; the reported hit ratio shows whether it was cold). `dist` is not used.
//! - **warm**: a warming pass first reads every object whole (concurrently, not timed), then
//!   reads are chosen by `dist`. The hit ratio is 100% if the cache holds all objects.
//!
//! A read is the whole object, or with `range` a sub-range of that length at a uniformly random
//! byte offset (not aligned to anything: JuiceFS random reads). Each read's length is checked, and
//! with `verify` its bytes too (against [`crate::content`], which costs client CPU: leave it off
//! when measuring CPU). A read that fails or exceeds `read_timeout` is counted as an error and the
//! run goes on; latency quantiles are over successful reads.
//!
//! `cache-bench check` ([`crate::check`]) reads the same objects (named by [`keys`], written by
//! [`populate`]) to check correctness instead of speed: every byte of reads of mixed shapes, the
//! source of every page, and a deadline per read, with a JSON line per second to follow a
//! scenario (a node restarted, the origin down) as it happens.

mod engine;
pub mod keys;
pub mod report;
pub mod zipf;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use cache_client::{Client, config::ClientConfig, origin::OriginChain};
use cache_proto::key::Volume;
pub use engine::run;
pub use keys::{object_key, object_keys, populate};
pub use report::{Report, table};
pub use zipf::KeyDist;

use crate::proxy::ProxyStats;

/// What a run reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The origin directly: the baseline without the cache.
    Origin,
    /// Every object once through the cache, in a fresh order (all misses).
    Cold,
    /// Through the cache after reading every object once (hits).
    Warm,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Cold => "cold",
            Self::Warm => "warm",
        }
    }
}

/// A cluster (through its client) and one of its volumes.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: Arc<Client>,
    pub volume: Volume,
    /// The volume's origin chain from the client config (origin mode reads it).
    pub origin: Arc<OriginChain>,
}

impl Target {
    /// `client` must have been built from `config`, which must list `volume`.
    pub fn new(client: Arc<Client>, config: &ClientConfig, volume: &Volume) -> anyhow::Result<Self> {
        let entry = config
            .volume
            .iter()
            .find(|v| &v.name == volume)
            .with_context(|| format!("volume {volume} is not in the client config"))?;
        let origin = OriginChain::from_config(&entry.origin).with_context(|| format!("volume {volume} origins"))?;
        Ok(Self { client, volume: volume.clone(), origin: Arc::new(origin) })
    }
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub mode: Mode,
    /// Objects `0..objects` under `prefix` (see [`keys`]), each `object_size` bytes.
    pub objects: u64,
    pub object_size: u64,
    pub prefix: String,
    /// Read this many bytes at a random offset instead of whole objects.
    pub range: Option<u64>,
    /// Zipf exponent; `None` is uniform.
    pub zipf: Option<f64>,
    pub concurrency: usize,
    /// The measured phase ends after this many reads or `duration`, whichever comes first.
    pub requests: u64,
    pub duration: Duration,
    pub read_timeout: Duration,
    pub seed: u64,
    pub verify: bool,
    /// Node processes on this host whose CPU time is measured.
    pub node_pids: Vec<u32>,
    /// An in-process proxy in front of the origin whose request counter is reported.
    pub proxy: Option<Arc<ProxyStats>>,
}

impl LoadSpec {
    /// A spec with the defaults of `cache-bench` (uniform whole reads, 8 in flight, bounded by
    /// 1000 reads or 30 s).
    pub fn new(mode: Mode, objects: u64, object_size: u64) -> Self {
        Self {
            mode,
            objects,
            object_size,
            prefix: "bench".into(),
            range: None,
            zipf: None,
            concurrency: 8,
            requests: 1000,
            duration: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            seed: 1,
            verify: false,
            node_pids: Vec::new(),
            proxy: None,
        }
    }

    /// Bytes each read asks for.
    pub fn read_size(&self) -> u64 {
        self.range.map_or(self.object_size, |r| r.min(self.object_size))
    }
}
