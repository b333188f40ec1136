//! The load engine of `cache-bench` against real parts in this process: an S3 origin (s3s, SigV4),
//! the delaying proxy in front of it (20 ms per request), a node whose origin endpoint is the
//! proxy, and a client whose origin (for origin mode and fallback) is the proxy too.
//!
//! It checks that the tool measures what it claims: no errors and the right byte counts (and
//! bytes, with `verify`, plus a few reads checked here), every origin-mode read counted by the
//! proxy, a warm run served wholly from the cache with no origin request in its measured phase,
//! and warm reads faster than origin reads (each origin read pays the proxy's 20 ms).

use std::{sync::Arc, time::Duration};

use bench::{
    AK, BUCKET, NODE_ID, SK, VOLUME, certs, client_config, content,
    load::{LoadSpec, Mode, Target, object_key, populate, run},
    node_config,
    proxy::{Proxy, ProxyOptions},
    volume,
};
use cache_client::Client;
use cache_node::RunningNode;
use cache_testkit::S3Origin;

const OBJECTS: u64 = 8;
const SIZE: u64 = 1 << 20;
const DELAY: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_warm_runs_measure_what_they_claim() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = certs(&dir.path().join("certs"), &[NODE_ID])?;
    let s3 = S3Origin::start(&dir.path().join("origin"), AK, SK).await?;
    std::fs::create_dir_all(s3.root().join(BUCKET))?; // the bucket; populate PUTs into it
    let direct = s3.origin_config(BUCKET, VOLUME);
    assert_eq!(populate(&direct, "bench", OBJECTS, SIZE, 4).await?.written, OBJECTS);

    let upstream = s3.endpoint().trim_start_matches("http://").to_owned();
    let options = ProxyOptions { delay: DELAY, ..ProxyOptions::default() };
    let proxy = Proxy::start("127.0.0.1:0".parse()?, &upstream, options).await?;
    let origin = proxy.origin_config(&direct);
    let node =
        RunningNode::start(node_config(&dir.path().join("node"), &certs, "64MiB", "512MiB", Some(&origin))?).await?;
    let config = client_config(&[(NODE_ID, node.quic_addr())], &certs, &origin)?;
    let client = Arc::new(Client::new(&config)?);
    let target = Target::new(client.clone(), &config, &volume())?;
    let spec = |mode| LoadSpec {
        concurrency: 4,
        requests: 200,
        duration: Duration::from_secs(10),
        verify: true,
        proxy: Some(proxy.stats().clone()),
        ..LoadSpec::new(mode, OBJECTS, SIZE)
    };

    let o = run(&target, &spec(Mode::Origin)).await?;
    assert_eq!((o.errors, o.error_samples.len()), (0, 0), "{:?}", o.error_samples);
    assert!(o.requests >= 20, "{o:?}");
    assert_eq!(o.bytes, o.requests * SIZE);
    assert_eq!(o.origin_gets_proxy, Some(o.requests), "every origin read went through the proxy");
    assert_eq!((o.origin_gets_client, o.origin_gets_nodes, o.hit_ratio), (o.requests, Some(0), None));

    let before = proxy.stats().requests();
    let w = run(&target, &spec(Mode::Warm)).await?;
    assert_eq!((w.errors, w.warm_errors), (0, Some(0)), "{:?}", w.error_samples);
    assert!(w.requests >= 20, "{w:?}");
    assert_eq!(w.bytes, w.requests * SIZE);
    assert_eq!(w.hit_ratio, Some(1.0), "{w:?}");
    assert_eq!(w.pages_memory, w.requests, "one page per 1 MiB object, all from memory");
    assert_eq!(w.origin_gets_proxy, Some(0), "no origin request while measuring");
    assert_eq!((w.origin_gets_nodes, w.origin_gets_client), (Some(0), 0));
    assert_eq!(proxy.stats().requests() - before, OBJECTS, "the warming pass filled each object once");

    // Latency, one read at a time so CPU queueing (debug builds, busy CI) cannot hide the 20 ms:
    // random 128 KiB ranges of Zipf-chosen objects, where the cache's own work is small.
    let small =
        |mode| LoadSpec { range: Some(128 << 10), zipf: Some(1.1), concurrency: 1, requests: 100, ..spec(mode) };
    let (o2, w2) = (run(&target, &small(Mode::Origin)).await?, run(&target, &small(Mode::Warm)).await?);
    eprintln!("{}{}", bench::load::table(&[o, w]), bench::load::table(&[o2.clone(), w2.clone()]));
    for r in [&o2, &w2] {
        assert_eq!((r.errors, r.read_size), (0, 128 << 10), "{:?}", r.error_samples);
        assert_eq!(r.bytes, r.requests * (128 << 10));
    }
    assert_eq!((o2.origin_gets_proxy, w2.origin_gets_proxy, w2.hit_ratio), (Some(o2.requests), Some(0), Some(1.0)));
    assert!(o2.p50_ms >= DELAY.as_secs_f64() * 1e3, "{o2:?}");
    assert!(w2.p50_ms < o2.p50_ms, "warm p50 {} ms vs origin p50 {} ms", w2.p50_ms, o2.p50_ms);

    // A few reads checked here, through the cache and from the origin.
    for (i, offset, len) in [(0, 0, SIZE), (3, 1000, 5000), (7, SIZE - 10, 10)] {
        let key = object_key("bench", i, SIZE)?;
        let bytes = client.read(&target.volume, &key, offset, len).await?;
        let want = content(i, SIZE).slice(offset as usize..(offset + len) as usize);
        assert_eq!(bytes, want, "object {i}");
        assert_eq!(target.origin.get_range(&key, offset..offset + len).await?.bytes, want, "object {i}");
    }
    node.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
