//! A node behind a slow link: every datagram to and from node a goes through the relay capped
//! at 512 KiB/s each way (a saturated or faulty NIC, a gray failure: slow, not down; the relay is
//! a fault injector by necessity). Its pages are cached, so its answers begin at once and then
//! crawl: a 4 MiB page would take 8 s. The client, having learned the cluster's usual rate from
//! the other nodes, drops such an answer for the next node (within the hedge budget) and strikes
//! node a, which is set aside after three strikes; every byte is still right.

use std::sync::Arc;

use bench::relay::{RelayOptions, RelayStats};
use cache_client::stats::Source;
use cache_proto::key::{ObjectKey, Volume};
use cache_testkit::{block_key, cluster::*};

const BLOCKS: u64 = 18;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_slow_link_is_read_around() -> anyhow::Result<()> {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let volume = Volume::new(VOLUME)?;
    let blocks: Vec<(ObjectKey, bytes::Bytes)> = (0..BLOCKS)
        .map(|i| {
            let k = block_key(5000 + i, 0, PAGE);
            let data = cluster.put(&k, 5000 + i, PAGE);
            Ok((ObjectKey::new(&k)?, data))
        })
        .collect::<anyhow::Result<_>>()?;

    // Fill every owner's cache, and learn who owns what.
    let direct = cluster.client();
    let mut on_a = Vec::new();
    let mut elsewhere = Vec::new();
    for (key, data) in &blocks {
        let (bytes, pages) = direct.read_traced(&volume, key, 0, PAGE).await?;
        assert_eq!(&bytes, data);
        match &pages[0].source {
            Source::Node { id, .. } if id == "a" => on_a.push((key.clone(), data.clone())),
            _ => elsewhere.push((key.clone(), data.clone())),
        }
    }
    assert!(on_a.len() >= 2 && elsewhere.len() >= 8, "owners: {} on a, {} elsewhere", on_a.len(), elsewhere.len());

    // Node a now sits behind the capped relay: the second client knows it only there.
    let front = bench::relay::bind("127.0.0.1:0".parse()?).await?;
    let relay_addr = front.local_addr()?;
    let opts = RelayOptions {
        delay: std::time::Duration::ZERO,
        jitter: std::time::Duration::ZERO,
        reorder: 0.0,
        duplicate: 0.0,
        seed: 1,
        rate: Some(512 << 10),
    };
    let relay = tokio::spawn(bench::relay::run(front, cluster.nodes[0].quic, opts, Arc::new(RelayStats::default())));
    let mut config = cluster.client_config(TOKEN, VOLUME, &cluster.path("certs"));
    let Some(a) = config.cluster.members.iter_mut().find(|m| m.id.as_str() == "a") else {
        anyhow::bail!("the harness's client config has no static member a");
    };
    a.addr = relay_addr;
    let client = cache_client::Client::new(&config)?;

    // The usual rate, from the nodes with a fast link (two rounds: enough samples).
    for _ in 0..2 {
        for (key, data) in &elsewhere {
            assert_eq!(&client.read(&volume, key, 0, PAGE).await?, data);
        }
    }
    // Node a's pages, all at once: each answer begins and crawls.
    let reads = on_a.iter().map(|(key, data)| {
        let (client, volume) = (&client, &volume);
        async move {
            let (bytes, pages) = client.read_traced(volume, key, 0, PAGE).await?;
            assert_eq!(&bytes, data, "{key}");
            anyhow::Ok(pages)
        }
    });
    let traces = futures::future::try_join_all(reads).await?;
    relay.abort();

    let stats = client.stats().snapshot();
    let crawled = stats.get("fallback_crawling").copied().unwrap_or(0);
    assert!(crawled >= 1, "no crawling answer was dropped: {stats:?}");
    let moved = traces
        .iter()
        .filter(|pages| !matches!(&pages[0].source, Source::Node { id, .. } if id == "a"))
        .filter(|pages| pages[0].passed_over.iter().any(|why| why.contains("too slow") || why.contains("set aside")))
        .count();
    assert!(moved >= 1, "no read of a's pages moved on: {traces:?}");
    Ok(())
}
