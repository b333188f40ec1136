//! One origin GET per block when the origin is slow: three nodes whose origin sits behind the
//! delaying proxy (50 ms per request, 32 MB/s for all connections: a far bucket on a busy
//! link), and many readers of distinct cold blocks at once, each block read as JuiceFS reads it
//! (its first 128 KiB and the rest, together), through the real client with its default
//! hedging. Each fill takes seconds, far past `hedge_after`; the owners answer as the origin's
//! bytes come, so no hedge may turn into a second fill and no read may go around the cache.

use std::sync::Arc;

use bench::proxy::{Proxy, ProxyOptions};
use cache_testkit::{block_key, cluster::*};
use futures::future::try_join_all;

const BLOCKS: u64 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_costs_one_get_per_block_and_the_next_pass_hits() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let upstream = cluster.s3.endpoint().trim_start_matches("http://").to_owned();
    let options = ProxyOptions {
        delay: std::time::Duration::from_millis(50),
        bandwidth: Some(32_000_000),
        ..ProxyOptions::default()
    };
    let proxy = Proxy::start("127.0.0.1:0".parse()?, &upstream, options).await?;
    // The nodes again, now reading the origin through the proxy.
    cluster.tuning.endpoint = Some(proxy.endpoint());
    for i in 0..3 {
        cluster.stop(i).await;
        cluster.spawn(i).await;
    }
    let blocks: Vec<(String, bytes::Bytes)> = (0..BLOCKS)
        .map(|i| {
            let k = block_key(3000 + i, 0, PAGE);
            let data = cluster.put(&k, 3000 + i, PAGE);
            (k, data)
        })
        .collect();
    let client = Arc::new(cluster.client());

    let pass = || {
        try_join_all(blocks.iter().flat_map(|(k, data)| {
            [(0, 128 << 10), (128 << 10, PAGE - (128 << 10))].map(|(offset, len)| {
                let client = client.clone();
                async move {
                    let got = client.read(&vol(), &key(k), offset, len).await?;
                    anyhow::ensure!(got == data.slice(offset as usize..(offset + len) as usize), "{k}: wrong bytes");
                    Ok(())
                }
            })
        }))
    };
    pass().await?;
    let stats = client.stats().snapshot();
    assert_eq!(proxy.stats().requests(), BLOCKS, "origin GETs for {BLOCKS} cold blocks: {stats:?}");
    assert_eq!(cluster.s3.get_count(), BLOCKS);
    assert_eq!(stats["pages_origin_fallback"], 0, "reads went around the cache: {stats:?}");
    assert_eq!(stats.get("fallback_hedge_escalated"), None, "a hedge filled a page again: {stats:?}");

    pass().await?;
    assert_eq!(proxy.stats().requests(), BLOCKS, "the second pass went to the origin");
    let mut hits = 0.0;
    for i in 0..3 {
        hits += metric(&cluster.metrics(i).await, r#"mirrorcache_node_hits_total{volume="vol1",tier="memory"}"#);
    }
    assert_eq!(hits, 2.0 * BLOCKS as f64, "every read of the second pass is a memory hit");
    Ok(())
}
