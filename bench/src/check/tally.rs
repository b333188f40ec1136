//! What the checker saw: one [`Record`] per read, added up in a [`Tally`] (one for the whole run,
//! one per progress interval), and printed as a [`Progress`] line per interval and a [`Summary`]
//! at the end (JSON, or a table).
//!
//! Every read started is counted once in `reads`, by outcome: `ok`, `wrong`, `short`, `errors`,
//! `timed_out` (no answer by the deadline plus slack), `cancelled` (cut short by a stop signal).
//! `late` is separate: reads that took longer than the deadline, whatever their outcome (every
//! timed-out read, and a cancelled one that had already run past the deadline). Latency quantiles
//! are over every read but the cancelled ones. Pages are counted for reads that returned bytes.

use std::{collections::BTreeMap, time::Duration};

use cache_client::stats::Source;
use cache_proto::wire::Tier;
use serde::Serialize;

use super::shape::ReadPlan;
use crate::load::report::quantiles;

/// Failure descriptions kept per run.
const FAILURE_SAMPLES: usize = 10;

/// How one read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    WrongBytes,
    ShortRead,
    /// The client returned an error: a short kind (`not_found`, `origin_timeout`, ...) and its text.
    Error {
        kind: &'static str,
        text: String,
    },
    TimedOut,
    Cancelled,
}

/// One read, as the tally needs it.
#[derive(Debug, Clone)]
pub struct Record {
    pub plan: ReadPlan,
    pub outcome: Outcome,
    pub latency: Duration,
    /// Took longer than the deadline.
    pub late: bool,
    /// Bytes returned (0 unless the client answered).
    pub bytes: u64,
    /// Where each page came from (empty unless the client answered).
    pub sources: Vec<Source>,
    /// What went wrong, for the failure samples (wrong, short, timed out, late).
    pub detail: Option<String>,
}

/// Pages by source. `miss` is a node's own origin read (`Tier::Origin`), `fallback` the client's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pages {
    pub memory: u64,
    pub disk: u64,
    pub miss: u64,
    /// Not in JSON: always 0 in `pages_by_node`, the only place `Pages` is serialized whole.
    #[serde(skip)]
    pub fallback: u64,
}

impl Pages {
    pub fn add(&mut self, source: &Source) {
        match source {
            Source::Node { tier: Tier::Memory, .. } => self.memory += 1,
            Source::Node { tier: Tier::Disk, .. } => self.disk += 1,
            Source::Node { tier: Tier::Origin, .. } => self.miss += 1,
            Source::Origin => self.fallback += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.memory + self.disk + self.miss + self.fallback
    }

    /// Pages whose bytes came from the origin, through a node (miss) or not (fallback).
    pub fn from_origin(&self) -> u64 {
        self.miss + self.fallback
    }

    /// Pages served by a node from memory or disk over all pages; `None` without pages.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| (self.memory + self.disk) as f64 / total as f64)
    }
}

/// Counters over a set of reads.
#[derive(Debug, Default)]
pub struct Tally {
    pub reads: u64,
    pub bytes: u64,
    pub ok: u64,
    pub wrong: u64,
    pub short: u64,
    pub errors: BTreeMap<&'static str, u64>,
    /// The first error text of each kind.
    pub error_samples: BTreeMap<&'static str, String>,
    pub timed_out: u64,
    pub cancelled: u64,
    pub late: u64,
    pub pages: Pages,
    /// Pages served by each node, by tier (fallback stays 0).
    pub nodes: BTreeMap<String, Pages>,
    pub shapes: BTreeMap<&'static str, u64>,
    /// Latency of each read but the cancelled ones.
    pub nanos: Vec<u64>,
    pub failures: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, r: &Record) {
        self.reads += 1;
        self.bytes += r.bytes;
        *self.shapes.entry(r.plan.shape.as_str()).or_default() += 1;
        match &r.outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::WrongBytes => self.wrong += 1,
            Outcome::ShortRead => self.short += 1,
            Outcome::Error { kind, text } => {
                *self.errors.entry(kind).or_default() += 1;
                self.error_samples.entry(kind).or_insert_with(|| text.clone());
            }
            Outcome::TimedOut => self.timed_out += 1,
            Outcome::Cancelled => self.cancelled += 1,
        }
        self.late += u64::from(r.late);
        if r.outcome != Outcome::Cancelled {
            self.nanos.push(r.latency.as_nanos() as u64);
        }
        for source in &r.sources {
            self.pages.add(source);
            if let Source::Node { id, .. } = source {
                self.nodes.entry(id.clone()).or_default().add(source);
            }
        }
        if let Some(detail) = &r.detail
            && self.failures.len() < FAILURE_SAMPLES
        {
            let p = &r.plan;
            self.failures.push(format!("object {} {} @{}+{}: {detail}", p.object, p.shape.as_str(), p.offset, p.len));
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The progress line of this tally as one interval ending `t` seconds into the run.
    pub fn progress(&mut self, t: Duration) -> Progress {
        let p99 = (!self.nanos.is_empty()).then(|| quantiles(&mut self.nanos)[1]);
        Progress {
            t: (t.as_secs_f64() * 1e3).round() / 1e3,
            reads: self.reads,
            ok: self.ok,
            wrong: self.wrong,
            short: self.short,
            errors: self.error_count(),
            late: self.late,
            hit_ratio: self.pages.hit_ratio(),
            origin_pages: self.pages.from_origin(),
            pages: self.pages.total(),
            p99_ms: p99,
        }
    }
}

/// One interval of the run (`--progress`, one JSON line per second). Counts are of reads that
/// ended in the interval; `hit_ratio` and `p99_ms` are `null` when none did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Seconds since the run started, at the interval's end (millisecond precision).
    pub t: f64,
    pub reads: u64,
    pub ok: u64,
    pub wrong: u64,
    pub short: u64,
    pub errors: u64,
    pub late: u64,
    /// Pages served by a node from memory or disk over all pages of the interval.
    pub hit_ratio: Option<f64>,
    /// Pages read from the origin: node misses plus client fallbacks.
    pub origin_pages: u64,
    pub pages: u64,
    pub p99_ms: Option<f64>,
}

/// What was checked: the parameters of the run and its length.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    pub volume: String,
    pub objects: u64,
    pub object_size: u64,
    pub page_size: u64,
    pub range: u64,
    pub concurrency: usize,
    pub seed: u64,
    pub deadline_ms: f64,
    pub seconds: f64,
}

/// The whole run. The JSON line (`--json`) has exactly these fields ([`RunInfo`]'s first).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub run: RunInfo,
    /// Every read started: ok + wrong + short + errors + timed_out + cancelled.
    pub reads: u64,
    /// Bytes returned by reads the client answered.
    pub bytes: u64,
    pub ok: u64,
    pub wrong: u64,
    pub short: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first error text of each kind.
    pub error_samples: BTreeMap<String, String>,
    pub late: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    /// The first few wrong, short, timed-out or late reads, described.
    pub failures: Vec<String>,
    pub pages: u64,
    pub pages_memory: u64,
    pub pages_disk: u64,
    pub pages_miss: u64,
    pub pages_origin_fallback: u64,
    /// Pages per node id, by tier.
    pub pages_by_node: BTreeMap<String, Pages>,
    pub hit_ratio: Option<f64>,
    /// Reads per shape (`whole`, `range`, `crossing`, `to_end`).
    pub shapes: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn new(run: RunInfo, mut t: Tally) -> Self {
        let [p50, p99, p999, max] = quantiles(&mut t.nanos);
        let keys = |m: BTreeMap<&'static str, u64>| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Self {
            run,
            reads: t.reads,
            bytes: t.bytes,
            ok: t.ok,
            wrong: t.wrong,
            short: t.short,
            errors: t.error_count(),
            error_samples: t.error_samples.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            errors_by_kind: keys(t.errors),
            late: t.late,
            timed_out: t.timed_out,
            cancelled: t.cancelled,
            failures: t.failures,
            pages: t.pages.total(),
            pages_memory: t.pages.memory,
            pages_disk: t.pages.disk,
            pages_miss: t.pages.miss,
            pages_origin_fallback: t.pages.fallback,
            pages_by_node: t.nodes,
            hit_ratio: t.pages.hit_ratio(),
            shapes: keys(t.shapes),
            p50_ms: p50,
            p99_ms: p99,
            p999_ms: p999,
            max_ms: max,
        }
    }

    /// The conditions that fail the run (empty: it passed). Errors do not count with
    /// `allow_errors`; neither do cancelled reads, which a stop cut short.
    pub fn failed(&self, allow_errors: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (n, what) in [
            (self.wrong, "returned wrong bytes"),
            (self.short, "returned too few bytes"),
            (self.late, "took longer than the deadline"),
        ] {
            if n > 0 {
                out.push(format!("{n} reads {what}"));
            }
        }
        if self.errors > 0 && !allow_errors {
            let kinds: Vec<String> = self.errors_by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            out.push(format!("{} reads failed ({})", self.errors, kinds.join(", ")));
        }
        if self.reads == self.cancelled {
            out.push("no read finished".into());
        }
        out
    }

    /// A human-readable table of the summary.
    pub fn table(&self) -> String {
        let ratio = self.hit_ratio.map_or_else(|| "-".into(), |h| format!("{:.1}%", h * 100.0));
        let mut out = format!(
            "volume {}: {} objects x {} B, pages of {} B, ranges of {} B, concurrency {}, seed {}, {:.1} s\n",
            self.run.volume,
            self.run.objects,
            self.run.object_size,
            self.run.page_size,
            self.run.range,
            self.run.concurrency,
            self.run.seed,
            self.run.seconds
        );
        let shapes: Vec<String> = self.shapes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out += &format!("reads      {:>10}  ({}), {} bytes\n", self.reads, shapes.join(", "), self.bytes);
        for (name, n) in [
            ("ok", self.ok),
            ("wrong", self.wrong),
            ("short", self.short),
            ("errors", self.errors),
            ("late", self.late),
            ("timed out", self.timed_out),
            ("cancelled", self.cancelled),
        ] {
            out += &format!("{name:<10} {n:>10}\n");
        }
        for (kind, n) in &self.errors_by_kind {
            let text = self.error_samples.get(kind).map_or("", String::as_str);
            out += &format!("  {kind:<20} {n:>8}  e.g. {text}\n");
        }
        out += &format!(
            "pages      {:>10}  memory {}, disk {}, node miss {}, origin fallback {}; hit ratio {ratio}\n",
            self.pages, self.pages_memory, self.pages_disk, self.pages_miss, self.pages_origin_fallback
        );
        for (id, p) in &self.pages_by_node {
            out += &format!("  node {id:<15} memory {}, disk {}, miss {}\n", p.memory, p.disk, p.miss);
        }
        out += &format!(
            "latency ms p50 {:.2}, p99 {:.2}, p999 {:.2}, max {:.2} (deadline {:.0})\n",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.run.deadline_ms
        );
        for f in &self.failures {
            out += &format!("failure: {f}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Shape;

    fn record(outcome: Outcome, late: bool, sources: Vec<Source>) -> Record {
        let plan = ReadPlan { object: 1, shape: Shape::Range, offset: 5, len: 10 };
        let detail = (late || outcome == Outcome::WrongBytes).then(|| "bad".to_owned());
        Record { plan, outcome, latency: Duration::from_millis(3), late, bytes: 10, sources, detail }
    }

    #[test]
    fn outcomes_and_pages_add_up() {
        let node = |tier| Source::Node { id: "a".into(), tier };
        let mut t = Tally::default();
        t.add(&record(Outcome::Ok, false, vec![node(Tier::Memory), node(Tier::Disk)]));
        t.add(&record(Outcome::Ok, true, vec![node(Tier::Origin), Source::Origin]));
        t.add(&record(Outcome::WrongBytes, false, vec![node(Tier::Memory)]));
        t.add(&record(Outcome::Error { kind: "not_found", text: "gone".into() }, false, vec![]));
        t.add(&record(Outcome::Cancelled, false, vec![]));
        let p = t.progress(Duration::from_millis(1500));
        assert_eq!((p.t, p.reads, p.ok, p.wrong, p.errors, p.late), (1.5, 5, 2, 1, 1, 1));
        assert_eq!((p.pages, p.origin_pages, p.hit_ratio), (5, 2, Some(0.6)));
        assert_eq!(t.nodes["a"], Pages { memory: 2, disk: 1, miss: 1, fallback: 0 });
        let s = Summary::new(RunInfo::default(), t);
        assert_eq!(s.failed(true), vec!["1 reads returned wrong bytes", "1 reads took longer than the deadline"]);
        assert_eq!(s.failed(false).len(), 3);
        assert_eq!(s.failures, vec!["object 1 range @5+10: bad"; 2]);
        assert!(s.table().contains("not_found"));
    }

    #[test]
    fn nothing_finished_fails() {
        let mut t = Tally::default();
        t.add(&record(Outcome::Cancelled, false, vec![]));
        assert_eq!(Summary::new(RunInfo::default(), t).failed(false), vec!["no read finished"]);
        assert_eq!(Summary::new(RunInfo::default(), Tally::default()).failed(true), vec!["no read finished"]);
    }
}
