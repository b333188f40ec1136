//! `cachectl status`: every member of the ring with its share of the key space, whether it
//! answers, and its own counters (asked over QUIC with a `Status` request).

use cache_client::{Client, units::ByteSize, wire::NodeStatus};
use futures::future::join_all;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct MemberStatus {
    id: String,
    addr: String,
    weight: u32,
    share: f64,
    reachable: bool,
    error: Option<String>,
    status: Option<NodeStatus>,
}

pub async fn run(client: &Client, args: StatusArgs) -> anyhow::Result<()> {
    let ring = client.ring();
    let shares = ring.shares();
    let answers = join_all((0..ring.members().len()).map(|i| client.node_status(i))).await;
    let members: Vec<MemberStatus> = ring
        .members()
        .iter()
        .zip(answers)
        .zip(shares)
        .map(|((m, answer), share)| MemberStatus {
            id: m.id.to_string(),
            addr: m.addr.to_string(),
            weight: m.weight,
            share,
            reachable: answer.is_ok(),
            error: answer.as_ref().err().cloned(),
            status: answer.ok(),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "members": members }))?);
        return Ok(());
    }
    println!(
        "{:<10} {:<22} {:>6} {:>6} {:>5} {:>9} {:>9} {:>9} {:>10} {:>8} {:>17} {:>17}",
        "NODE", "ADDR", "WEIGHT", "SHARE", "UP", "HIT-MEM", "HIT-DISK", "MISS", "SERVED", "ERRORS", "MEMORY", "DISK"
    );
    for m in &members {
        let share = format!("{:.1}%", m.share * 100.0);
        match &m.status {
            Some(s) => println!(
                "{:<10} {:<22} {:>6} {:>6} {:>5} {:>9} {:>9} {:>9} {:>10} {:>8} {:>17} {:>17}",
                m.id,
                m.addr,
                m.weight,
                share,
                "yes",
                s.hits_memory,
                s.hits_disk,
                s.misses,
                ByteSize(s.bytes_served).to_string(),
                s.errors,
                format!("{}/{}", ByteSize(s.memory_used), ByteSize(s.memory_capacity)),
                format!("{}/{}", ByteSize(s.disk_used), ByteSize(s.disk_capacity)),
            ),
            None => println!(
                "{:<10} {:<22} {:>6} {:>6} {:>5}  {}",
                m.id,
                m.addr,
                m.weight,
                share,
                "NO",
                m.error.as_deref().unwrap_or("")
            ),
        }
    }
    Ok(())
}
