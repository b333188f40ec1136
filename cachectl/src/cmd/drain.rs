//! `cachectl drain NODE`: takes a node off the ring (weight 0). The node keeps answering for the
//! pages it holds while their new owners fetch them from it (warm handoff), and says `drained`
//! once that window has passed: then it can be stopped without a miss storm. The command waits
//! for that, with a progress bar, unless `--no-wait`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cache_client::Client;
use cache_proto::ring::Member;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// Id of the node to drain.
    node: String,
    /// Return once the node is draining; do not wait until it can be stopped.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

pub async fn run(client: &Client, args: DrainArgs) -> anyhow::Result<()> {
    let view = client.refresh_members().await.unwrap_or_else(|e| {
        eprintln!("warning: {e}");
        client.ring()
    });
    let info = view
        .get(&args.node)
        .with_context(|| format!("no member {} on the ring (members: {})", args.node, names(&view.members)))?;
    let member = Member { id: info.id.clone(), addr: info.addr, weight: info.weight };
    let status = client.drain(&member).await.map_err(|e| anyhow::anyhow!("drain {}: {e}", args.node))?;
    println!("{}: draining (ring epoch {:016x})", args.node, status.epoch);
    if args.no_wait || status.drained {
        return report(&args.node, status.drained);
    }
    let total = status.drain_left_secs.unwrap_or(0).max(1);
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} handing off pages [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match client.node_status(&member).await {
            Ok(s) if s.drained => {
                bar.finish_and_clear();
                return report(&args.node, true);
            }
            Ok(s) => {
                bar.set_position(total.saturating_sub(s.drain_left_secs.unwrap_or(0)));
                bar.set_message(String::new());
            }
            Err(e) => bar.set_message(format!("status: {e}")),
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("{} not drained after {}s", args.node, args.timeout);
        }
    }
}

fn report(node: &str, drained: bool) -> anyhow::Result<()> {
    if drained {
        println!("{node}: drained; it can be stopped");
    } else {
        println!("{node}: draining; `cachectl status` shows `drained` when it can be stopped");
    }
    Ok(())
}

fn names(members: &[cache_proto::wire::MemberInfo]) -> String {
    members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
}
