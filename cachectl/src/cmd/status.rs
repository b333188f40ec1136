//! `cachectl status`: one screen with the ring's epoch and every member of the ring: state,
//! weight, share of the key space, whether it answers, hit ratio, request, byte and origin rates, errors, latency and cache use,
//! from each node's own counters (a `Status` request over QUIC). `--watch` refreshes, with rates
//! over the last interval; a single shot shows averages since each node started. Below the
//! table, each volume's origin use (requests and bytes per origin), copies into its regional
//! bucket (backlog, outcomes) and estimated cost, summed over the nodes.

use std::{collections::HashMap, time::Duration};

use cache_client::Client;
use cache_proto::{
    members::RingView,
    units::ByteSize,
    wire::{MemberState, NodeStatus, ResyncReport, VolumeUse},
};
use futures::future::join_all;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Refresh every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<u64>,
}

#[derive(Serialize)]
struct MemberStatus {
    id: String,
    addr: String,
    state: MemberState,
    weight: u32,
    share: f64,
    reachable: bool,
    error: Option<String>,
    status: Option<NodeStatus>,
}

async fn collect(client: &Client) -> (std::sync::Arc<RingView>, Vec<MemberStatus>) {
    let view = match client.refresh_members().await {
        Ok(view) => view,
        Err(e) => {
            eprintln!("warning: {e}");
            client.ring()
        }
    };
    let ring = &view.ring;
    let answers = join_all(ring.members().iter().map(|m| client.node_status(m))).await;
    let members = ring
        .members()
        .iter()
        .zip(&view.members)
        .zip(answers)
        .zip(ring.shares())
        .map(|(((m, info), answer), share)| MemberStatus {
            id: m.id.to_string(),
            addr: m.addr.to_string(),
            state: info.state,
            weight: info.weight,
            share,
            reachable: answer.is_ok(),
            error: answer.as_ref().err().map(ToString::to_string),
            status: answer.ok(),
        })
        .collect();
    (view, members)
}

fn document(view: &RingView, members: &[MemberStatus]) -> serde_json::Value {
    serde_json::json!({
        "epoch": format!("{:016x}", view.epoch),
        "members": members,
        "volumes": volumes(members),
        "resyncs": resyncs(members),
    })
}

/// The latest scheduled resync of each volume, whichever node led it.
fn resyncs(members: &[MemberStatus]) -> Vec<ResyncReport> {
    let mut out: Vec<ResyncReport> = Vec::new();
    for r in members.iter().filter_map(|m| m.status.as_ref()).flat_map(|s| &s.resyncs) {
        match out.iter_mut().find(|o| o.volume == r.volume) {
            Some(o) if o.started_unix < r.started_unix => *o = r.clone(),
            Some(_) => {}
            None => out.push(r.clone()),
        }
    }
    out.sort_by(|a, b| a.volume.cmp(&b.volume));
    out
}

/// Each volume's origin use, copies and cost, summed over the nodes that answered.
fn volumes(members: &[MemberStatus]) -> Vec<VolumeUse> {
    let mut out: Vec<VolumeUse> = Vec::new();
    for v in members.iter().filter_map(|m| m.status.as_ref()).flat_map(|s| &s.volumes) {
        match out.iter_mut().find(|o| o.volume == v.volume) {
            Some(sum) => sum.add(v),
            None => {
                let mut sum = VolumeUse::default();
                sum.add(v);
                out.push(sum);
            }
        }
    }
    out.sort_by(|a, b| a.volume.cmp(&b.volume));
    out
}

/// One block per volume: the copy backlog and outcomes, the cost estimate, and each origin's
/// requests and bytes (all nodes together).
fn print_volumes(members: &[MemberStatus]) {
    for v in volumes(members) {
        println!(
            "volume {}: copy backlog {} objects ({}), oldest {}s; copies done {}, already there {}, redone {}, \
             failed {}, not queued {}; estimated spent {:.4}, saved {:.4}",
            v.volume,
            v.copy_pending,
            ByteSize(v.copy_pending_bytes),
            v.copy_oldest_secs,
            v.copies_done,
            v.copies_already_there,
            v.copies_redone,
            v.copies_failed,
            v.copies_not_queued,
            v.spent,
            v.saved
        );
        for r in resyncs(members).iter().filter(|r| r.volume == v.volume) {
            match r.finished_unix {
                Some(end) => println!(
                    "  last resync (led by {}): started {} (unix), {}s; found {}, copied {}, already there {}, \
                     failed {}, extra in the mirror {}{}",
                    r.node,
                    r.started_unix,
                    end.saturating_sub(r.started_unix),
                    r.found,
                    r.copied,
                    r.already_there,
                    r.failed,
                    r.extra,
                    r.error.as_deref().map(|e| format!("; stopped: {e}")).unwrap_or_default()
                ),
                None => println!("  resync running (led by {}) since {} (unix)", r.node, r.started_unix),
            }
        }
        for (i, o) in v.origins.iter().enumerate() {
            println!(
                "  origin {i} {}{}: GET {} ({}), missing {}, failed {}, HEAD {}, PUT {} ({}); spent {:.4}",
                o.url,
                if o.replica { " (regional copy)" } else { "" },
                o.gets,
                ByteSize(o.get_bytes),
                o.gets_missing,
                o.gets_failed,
                o.heads,
                o.puts,
                ByteSize(o.put_bytes),
                o.spent
            );
        }
    }
}

pub async fn run(client: &Client, args: StatusArgs) -> anyhow::Result<()> {
    let Some(every) = args.watch else {
        let (view, members) = collect(client).await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&document(&view, &members))?);
        } else {
            print_table(&view, &members, &HashMap::new(), None);
        }
        return Ok(());
    };
    let every = Duration::from_secs(every.max(1));
    let mut previous: HashMap<String, NodeStatus> = HashMap::new();
    loop {
        let (view, members) = collect(client).await;
        if args.json {
            println!("{}", serde_json::to_string(&document(&view, &members))?);
        } else {
            print!("\x1b[2J\x1b[H");
            print_table(&view, &members, &previous, Some(every));
        }
        previous = members.into_iter().filter_map(|m| m.status.map(|s| (m.id, s))).collect();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Per-second rates: over `interval` against `before` when there is one, else since start.
fn rates(now: &NodeStatus, before: Option<&NodeStatus>, interval: Option<Duration>) -> (f64, f64, f64) {
    let requests = |s: &NodeStatus| (s.hits_memory + s.hits_disk + s.misses) as f64;
    let (base, secs) = match (before, interval) {
        (Some(b), Some(i)) => (b.clone(), i.as_secs_f64()),
        _ => (NodeStatus::default(), now.uptime_secs.max(1) as f64),
    };
    (
        (requests(now) - requests(&base)).max(0.0) / secs,
        now.bytes_served.saturating_sub(base.bytes_served) as f64 / secs,
        now.origin_requests.saturating_sub(base.origin_requests) as f64 / secs,
    )
}

fn print_table(
    view: &RingView,
    members: &[MemberStatus],
    previous: &HashMap<String, NodeStatus>,
    interval: Option<Duration>,
) {
    println!("ring epoch {:016x}, {} members", view.epoch, members.len());
    println!(
        "{:<8} {:<21} {:<8} {:>3} {:>6} {:>4} {:>6} {:>8} {:>10} {:>8} {:>6} {:>8} {:>8} {:>17} {:>17}",
        "NODE",
        "ADDR",
        "STATE",
        "WT",
        "SHARE",
        "UP",
        "HIT%",
        "REQ/S",
        "BYTES/S",
        "ORIG/S",
        "ERR",
        "P50",
        "P99",
        "MEMORY",
        "DISK"
    );
    for m in members {
        let share = format!("{:.1}%", m.share * 100.0);
        let Some(s) = &m.status else {
            println!(
                "{:<8} {:<21} {:<8} {:>3} {:>6} {:>4}  {}",
                m.id,
                m.addr,
                m.state.as_str(),
                m.weight,
                share,
                "NO",
                m.error.as_deref().unwrap_or("")
            );
            continue;
        };
        let hits = s.hits_memory + s.hits_disk;
        let hit_ratio = match hits + s.misses {
            0 => "-".to_owned(),
            n => format!("{:.1}", 100.0 * hits as f64 / n as f64),
        };
        let (req, bytes, origin) = rates(s, previous.get(&m.id), interval);
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}ms"));
        let state = if s.drained { "drained".to_owned() } else { m.state.as_str().to_owned() };
        println!(
            "{:<8} {:<21} {:<8} {:>3} {:>6} {:>4} {:>6} {:>8.1} {:>10} {:>8.1} {:>6} {:>8} {:>8} {:>17} {:>17}",
            m.id,
            m.addr,
            state,
            m.weight,
            share,
            "yes",
            hit_ratio,
            req,
            ByteSize(bytes as u64).to_string(),
            origin,
            s.errors,
            ms(s.p50_ms),
            ms(s.p99_ms),
            format!("{}/{}", ByteSize(s.memory_used), ByteSize(s.memory_capacity)),
            format!("{}/{}", ByteSize(s.disk_used), ByteSize(s.disk_capacity)),
        );
    }
    print_volumes(members);
}
