//! A node whose fill budget is full answers Busy instead of queueing: two nodes, each with room
//! for one page being filled (`max_fill_bytes` = one page), an origin that holds every request
//! for a second (the delaying proxy), and six cold blocks read at once. Each node fills one page
//! and refuses the others after `FILL_QUEUE_WAIT`, so those readers go to the next node or the
//! origin instead of waiting their turn; every byte is still right.

use std::{sync::Arc, time::Duration};

use bench::proxy::{Proxy, ProxyOptions};
use cache_proto::{
    key::{ObjectKey, Volume},
    units::ByteSize,
};
use cache_testkit::{block_key, cluster::*};
use futures::future::try_join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fill_budget_answers_busy_and_the_read_goes_elsewhere() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_configured(&["a", "b"], |c| {
        c.configure_node = |node| node.node.max_fill_bytes = ByteSize(PAGE);
    })
    .await;
    let upstream = cluster.s3.endpoint().trim_start_matches("http://").to_owned();
    let options = ProxyOptions { delay: Duration::from_secs(1), ..ProxyOptions::default() };
    let proxy = Proxy::start("127.0.0.1:0".parse()?, &upstream, options).await?;
    cluster.tuning.endpoint = Some(proxy.endpoint());
    for i in 0..2 {
        cluster.stop(i).await;
        cluster.spawn(i).await;
    }
    let blocks: Vec<(ObjectKey, bytes::Bytes)> = (0..6)
        .map(|i| {
            let k = block_key(7000 + i, 0, PAGE);
            let data = cluster.put(&k, 7000 + i, PAGE);
            Ok((ObjectKey::new(&k)?, data))
        })
        .collect::<anyhow::Result<_>>()?;
    let client = Arc::new(cluster.client());
    let volume = Volume::new(VOLUME)?;
    try_join_all(blocks.iter().map(|(key, data)| {
        let (client, volume) = (client.clone(), volume.clone());
        async move {
            anyhow::ensure!(client.read(&volume, key, 0, PAGE).await? == data, "{key}: wrong bytes");
            anyhow::Ok(())
        }
    }))
    .await?;

    let mut busy = 0.0;
    for i in 0..2 {
        busy += metric(&cluster.metrics(i).await, r#"mirrorcache_node_errors_total{kind="busy"}"#);
    }
    let stats = client.stats().snapshot();
    assert!(busy >= 1.0, "no node answered Busy: {stats:?}");
    assert!(stats.get("fallback_refused_busy").copied().unwrap_or(0) >= 1, "{stats:?}");
    Ok(())
}
