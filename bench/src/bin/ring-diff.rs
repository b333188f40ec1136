//! `ring-diff`: how many pages of the load objects changed owner between two rings, each the
//! JSON that `cachectl status --json` prints (its `members`: id, addr, weight, state). The
//! membership tests compare it with the origin GETs a ring change caused.
//!
//! ```text
//! ring-diff --before BEFORE.json --after AFTER.json --volume vol1 --objects N --object-size 4MiB
//!           [--prefix P] [--page-size 4MiB]
//! ```
//! Prints one JSON line: `{"pages":…,"moved":…,"moved_to":{"d":…}}`.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context as _;
use bench::load::object_keys;
use cache_proto::{key::Volume, members::RingView, ring::page_point, units::ByteSize, wire::MemberInfo};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Count the load objects' pages whose owner differs between two rings")]
struct Args {
    #[arg(long)]
    before: PathBuf,
    #[arg(long)]
    after: PathBuf,
    #[arg(long)]
    volume: String,
    #[arg(long)]
    objects: u64,
    #[arg(long, default_value = "4MiB")]
    object_size: ByteSize,
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value = "4MiB")]
    page_size: ByteSize,
}

fn ring(path: &PathBuf) -> anyhow::Result<std::sync::Arc<RingView>> {
    #[derive(serde::Deserialize)]
    struct Doc {
        members: Vec<MemberInfo>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Doc =
        serde_json::from_str(&text).with_context(|| format!("{}: not `cachectl status --json`", path.display()))?;
    Ok(RingView::new(doc.members))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (before, after) = (ring(&args.before)?, ring(&args.after)?);
    let volume = Volume::new(&args.volume)?;
    anyhow::ensure!(args.page_size.0 > 0, "--page-size must be positive");
    let pages_per_object = args.object_size.0.div_ceil(args.page_size.0);
    let (mut pages, mut moved) = (0u64, 0u64);
    let mut moved_to: BTreeMap<String, u64> = BTreeMap::new();
    for key in object_keys(&args.prefix, args.objects, args.object_size.0)? {
        for page in 0..pages_per_object {
            let point = page_point(&volume, &key, page);
            let owner = |v: &RingView| v.ring.owner(point).map(|i| v.ring.member(i).id.to_string());
            pages += 1;
            let (was, now) = (owner(&before), owner(&after));
            if was != now {
                moved += 1;
                *moved_to.entry(now.unwrap_or_default()).or_default() += 1;
            }
        }
    }
    println!("{}", serde_json::json!({ "pages": pages, "moved": moved, "moved_to": moved_to }));
    Ok(())
}
