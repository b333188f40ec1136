//! The read path end to end, with real parts only: three `cache-node` processes on loopback
//! QUIC with foyer caches on disk, an S3 server with SigV4 over loopback HTTP as the origin, mTLS
//! certificates, and the real client library.

use std::time::Duration;

use cache_client::{ReadError, stats::Source};
use cache_proto::wire::Tier;
use cache_testkit::cluster::*;

async fn statuses(client: &cache_client::Client, n: usize) -> Vec<cache_proto::wire::NodeStatus> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(client.node_status(client.ring().ring.member(i)).await.expect("node answers status"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_origin_and_second_reads_hit_the_cache() {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let client = cluster.client();
    // JuiceFS-shaped objects: full 4 MiB blocks, short last blocks, a 64 KiB block, and one
    // object of two and a bit pages to cross page boundaries.
    let mut objects = Vec::new();
    for (i, len) in [PAGE, PAGE, PAGE, (1 << 20) + 123, 64 << 10, PAGE, 1, 2 * PAGE + 5].into_iter().enumerate() {
        let k = block_key(1000 + i as u64, 0, len);
        objects.push((k.clone(), cluster.put(&k, i as u64, len)));
    }
    let mut ranges_read = 0;
    for (k, data) in &objects {
        let len = data.len() as u64;
        let cases = [
            (0, len),
            (0, 128 << 10),
            (len / 3, 128 << 10),
            (len.saturating_sub(100), 1000),
            (PAGE - 10, 20),
            (len, 10),
            (5, 0),
        ];
        for (offset, n) in cases {
            let got = client.read(&vol(), &key(k), offset, n).await;
            let end = (offset + n).min(len);
            if n == 0 {
                // Like pread(2) with a count of 0: empty, wherever the offset is, and no request.
                assert_eq!(got.expect("zero-length read"), bytes::Bytes::new());
            } else if offset > len {
                assert!(matches!(got, Err(ReadError::OutOfRange { .. })), "{k} @{offset}: {got:?}");
            } else {
                assert_eq!(got.expect("read"), data.slice(offset as usize..end as usize), "{k} @{offset}+{n}");
                ranges_read += 1;
            }
        }
    }
    let past = client.read(&vol(), &key(&objects[4].0), (64 << 10) + 1, 10).await;
    assert!(matches!(past, Err(ReadError::OutOfRange { size, .. }) if size == 64 << 10), "{past:?}");
    assert!(ranges_read > 40);

    // Second round: every whole object again. The origin sees no request; the nodes count hits.
    let gets_before = cluster.s3.get_count();
    let before = statuses(&client, 3).await;
    for (k, data) in &objects {
        let (bytes, traces) = client.read_traced(&vol(), &key(k), 0, data.len() as u64).await.expect("read");
        assert_eq!(&bytes, data);
        for t in traces {
            assert!(matches!(t.source, Source::Node { tier: Tier::Memory, .. }), "{k}: {:?}", t.source);
        }
    }
    assert_eq!(cluster.s3.get_count(), gets_before, "warm reads must not reach the origin");
    let after = statuses(&client, 3).await;
    let hits = |s: &[cache_proto::wire::NodeStatus]| s.iter().map(|s| s.hits_memory).sum::<u64>();
    let pages = objects.iter().map(|(_, d)| (d.len() as u64).div_ceil(PAGE)).sum::<u64>();
    assert_eq!(hits(&after) - hits(&before), pages);
    assert_eq!(
        after.iter().map(|s| s.origin_requests).sum::<u64>(),
        before.iter().map(|s| s.origin_requests).sum::<u64>()
    );
    // Pages were spread over the ring, not all on one node.
    assert!(after.iter().filter(|s| s.misses > 0).count() >= 2, "{after:?}");
    assert_eq!(client.stats().origin_fallback.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_reads_of_one_page_cost_one_origin_get() {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    // Slow cold fills on a loaded machine would be hedged; this test is about the node.
    let client = std::sync::Arc::new(cluster.client_without_hedging());
    let k = block_key(7, 0, PAGE);
    let data = cluster.put(&k, 7, PAGE);
    let before = cluster.s3.get_count();
    let reads = (0..32).map(|_| {
        let (client, k) = (client.clone(), k.clone());
        tokio::spawn(async move { client.read(&vol(), &key(&k), 0, PAGE).await })
    });
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.expect("task").expect("read"), data);
    }
    assert_eq!(cluster.s3.get_count() - before, 1, "32 concurrent cold reads, one origin GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_serves_its_pages_from_disk() {
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let client = cluster.client();
    let keys: Vec<(String, bytes::Bytes)> = (0..6)
        .map(|i| {
            let k = block_key(500 + i, 0, PAGE);
            let d = cluster.put(&k, 500 + i, PAGE);
            (k, d)
        })
        .collect();
    let mut owners = Vec::new();
    for (k, d) in &keys {
        let (bytes, traces) = client.read_traced(&vol(), &key(k), 0, PAGE).await.expect("cold read");
        assert_eq!(&bytes, d);
        let Source::Node { id, tier: Tier::Origin } = &traces[0].source else { panic!("{:?}", traces[0].source) };
        owners.push(id.clone());
    }
    let owner = owners[0].clone();
    let idx = cluster.nodes.iter().position(|n| n.id == owner).expect("owner");
    cluster.stop(idx).await;
    cluster.spawn(idx).await;
    let client = cluster.client();
    let gets = cluster.s3.get_count();
    for ((k, d), o) in keys.iter().zip(&owners) {
        let (bytes, traces) = client.read_traced(&vol(), &key(k), 0, PAGE).await.expect("warm read");
        assert_eq!(&bytes, d);
        if *o == owner {
            assert_eq!(traces[0].source, Source::Node { id: owner.clone(), tier: Tier::Disk }, "{k}");
        }
    }
    assert_eq!(cluster.s3.get_count(), gets, "no origin GET after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_does_not_fail_reads() {
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let client = cluster.client();
    let keys: Vec<(String, bytes::Bytes)> = (0..12)
        .map(|i| {
            let k = block_key(900 + i, 0, 1 << 20);
            let d = cluster.put(&k, 900 + i, 1 << 20);
            (k, d)
        })
        .collect();
    for (k, d) in &keys {
        assert_eq!(&client.read(&vol(), &key(k), 0, 1 << 20).await.expect("warm-up"), d);
    }
    cluster.kill(1).await;
    let started = std::time::Instant::now();
    let mut served_by_b = 0;
    for round in 0..2 {
        for (k, d) in &keys {
            let (bytes, traces) = client.read_traced(&vol(), &key(k), 0, 1 << 20).await.expect("read despite kill");
            assert_eq!(&bytes, d, "round {round} {k}");
            if matches!(&traces[0].source, Source::Node { id, .. } if id == "b") {
                served_by_b += 1;
            }
        }
    }
    assert_eq!(served_by_b, 0, "a killed node served pages");
    let stats = client.stats().snapshot();
    assert!(stats.iter().any(|(k, v)| k.starts_with("fallback_") && *v > 0), "{stats:?}");
    // The dead node costs one page deadline, then is set aside instead of slowing every read.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_to_the_end_asks_only_for_pages_that_exist() {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let client = cluster.client();
    let k = block_key(64, 0, PAGE);
    let data = cluster.put(&k, 64, PAGE);
    let gets = cluster.s3.get_count();
    // `cachectl get` without --len asks for 256 MiB: one page exists.
    let (bytes, traces) =
        client.read_traced(&vol(), &key(&k), 0, cache_client::client::MAX_READ_LEN).await.expect("read");
    assert_eq!(bytes, data);
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert_eq!(cluster.s3.get_count() - gets, 1);
    let big = block_key(65, 0, 2 * PAGE + 7);
    let big_data = cluster.put(&big, 65, 2 * PAGE + 7);
    let (bytes, traces) = client.read_traced(&vol(), &key(&big), 5, 60 * PAGE).await.expect("read");
    assert_eq!(bytes, big_data.slice(5..));
    assert_eq!(traces.len(), 3);
}
