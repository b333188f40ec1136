//! What one run measured ([`Report`]), how it is printed (a table, or one JSON line per run), and
//! the two probes it needs: latency quantiles and CPU time from `/proc/PID/stat`.
//!
//! Units: MB/s and "per GB" are decimal (10^6, 10^9 bytes); latencies are milliseconds. CPU time
//! is `utime + stime` of the whole process (all threads) in clock ticks of `USER_HZ`, which Linux
//! fixes at 100 for user space; reading `/proc` needs no libc call. In an in-process setup the
//! "client" process also runs the node, so its CPU is both.

use std::time::Duration;

use serde::Serialize;

/// One run of one mode. The JSON line has exactly these fields.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub mode: String,
    pub volume: String,
    pub objects: u64,
    pub object_size: u64,
    /// Bytes per read: `object_size`, or the `--range` length.
    pub read_size: u64,
    pub dist: String,
    pub concurrency: usize,
    /// Reads finished in the measured phase (successes and errors).
    pub requests: u64,
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Bytes returned by successful reads (each checked against the length asked for).
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub requests_per_s: f64,
    /// Latency of successful reads, first request byte to last response byte.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Pages served from node memory or disk over all pages asked of the cache (None: origin mode).
    pub hit_ratio: Option<f64>,
    pub pages_memory: u64,
    pub pages_disk: u64,
    pub pages_miss: u64,
    pub pages_origin_fallback: u64,
    /// GETs the nodes sent their origins (delta of each member's `origin_requests`; None when a
    /// node did not answer the status request).
    pub origin_gets_nodes: Option<u64>,
    /// GETs this process sent the origin: every read in origin mode, fallback pages otherwise.
    pub origin_gets_client: u64,
    /// Requests the in-process proxy forwarded during the measured phase, when there is one.
    pub origin_gets_proxy: Option<u64>,
    pub client_cpu_s_per_gb: Option<f64>,
    /// Summed over `--node-pids` (None without them, or when one could not be read).
    pub node_cpu_s_per_gb: Option<f64>,
    /// Warm mode: the untimed warming pass.
    pub warm_seconds: Option<f64>,
    pub warm_errors: Option<u64>,
}

/// Latency quantiles (ms) of `nanos`, which is sorted in place: p50, p99, p999, max.
pub fn quantiles(nanos: &mut [u64]) -> [f64; 4] {
    if nanos.is_empty() {
        return [0.0; 4];
    }
    nanos.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
        nanos[rank - 1] as f64 / 1e6
    };
    [at(0.50), at(0.99), at(0.999), at(1.0)]
}

/// CPU seconds per decimal GB moved (None when nothing was moved or CPU is unknown).
pub fn per_gb(cpu: Option<Duration>, bytes: u64) -> Option<f64> {
    cpu.filter(|_| bytes > 0).map(|c| c.as_secs_f64() / (bytes as f64 / 1e9))
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on every Linux build).
const USER_HZ: f64 = 100.0;

/// User + system CPU time of process `pid` (`None`: this process), from `/proc/PID/stat`.
pub fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    parse_stat_cpu(&std::fs::read_to_string(path).ok()?)
}

/// Fields 14 and 15 (utime, stime) of a stat line; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 (state) is the first after `)`
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
}

/// Sum of [`process_cpu`] over `pids` (None if any is unreadable; `Some(0)` for no pids is not
/// meaningful, so that is None too).
pub fn pids_cpu(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| process_cpu(Some(p))).sum()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The runs as a table, one row per run, under a line naming the workload of the first.
pub fn table(reports: &[Report]) -> String {
    let Some(first) = reports.first() else { return String::new() };
    let mut out = format!(
        "volume {}: {} objects x {} B, reads of {} B, {}, concurrency {}\n",
        first.volume, first.objects, first.object_size, first.read_size, first.dist, first.concurrency
    );
    out += &format!(
        "{:<7} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>11} {:>11} {:>9} {:>9}\n",
        "mode",
        "reqs",
        "errors",
        "MB/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "hit%",
        "origin GETs",
        "(nodes)",
        "cpu s/GB",
        "node s/GB"
    );
    for r in reports {
        let hit = r.hit_ratio.map(|h| h * 100.0);
        let nodes = r.origin_gets_nodes.map_or_else(|| "-".into(), |n| n.to_string());
        out += &format!(
            "{:<7} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>11} {:>11} {:>9} {:>9}\n",
            r.mode,
            r.requests,
            r.errors,
            r.mb_per_s,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            opt(hit, 1),
            r.origin_gets_client + r.origin_gets_nodes.unwrap_or(0),
            nodes,
            opt(r.client_cpu_s_per_gb, 2),
            opt(r.node_cpu_s_per_gb, 2),
        );
    }
    for r in reports.iter().filter(|r| !r.error_samples.is_empty()) {
        out += &format!("{} errors, e.g.: {}\n", r.mode, r.error_samples.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).map(|ms| ms * 1_000_000).collect();
        v.reverse();
        assert_eq!(quantiles(&mut v), [500.0, 990.0, 999.0, 1000.0]);
        assert_eq!(quantiles(&mut [3_000_000]), [3.0; 4]);
        assert_eq!(quantiles(&mut []), [0.0; 4]);
    }

    #[test]
    fn stat_lines_parse_past_odd_command_names() {
        let line = "4242 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_cpu(line), Some(Duration::from_secs(3)));
        assert!(process_cpu(None).is_some(), "this process's own stat is readable");
        assert_eq!(per_gb(Some(Duration::from_secs(2)), 500_000_000), Some(4.0));
        assert_eq!(per_gb(Some(Duration::from_secs(2)), 0), None);
    }
}
