//! Node faults, with real `cache-node` processes: a node stalled mid-stream (SIGSTOP: its
//! connections stay open, no bytes come) costs a read at most the hedge escalation (4 x 500 ms),
//! not the connection's idle timeout; a node that stays slow is set aside and probed back once
//! it recovers.
//! (Killed nodes and partitions, with the checker, are in `scripts/faults.sh`.)

use std::time::{Duration, Instant};

use cache_client::stats::Source;
use cache_proto::{
    key::{ObjectKey, Volume},
    ring::page_point,
};
use cache_testkit::cluster::{Cluster, PAGE, VOLUME, block_key};

/// Keys (and their bytes) whose first page node `owner` owns on the client's ring.
fn keys_owned_by(
    cluster: &Cluster,
    client: &cache_client::Client,
    owner: &str,
    n: usize,
) -> Vec<(ObjectKey, bytes::Bytes)> {
    let volume = Volume::new(VOLUME).expect("volume");
    let view = client.ring();
    (0..200u64)
        .filter_map(|i| {
            let key = ObjectKey::new(&block_key(i, 0, PAGE)).expect("key");
            let idx = view.ring.owner(page_point(&volume, &key, 0))?;
            (view.ring.member(idx).id.as_str() == owner).then(|| {
                let data = cluster.put(key.as_str(), i, PAGE);
                (key, data)
            })
        })
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_owner_costs_a_hedge_deadline_and_is_set_aside_then_probed_back() {
    let cluster = Cluster::start(&["a", "b"]).await;
    let client = cluster.client();
    let volume = Volume::new(VOLUME).expect("volume");
    let objects = keys_owned_by(&cluster, &client, "a", 6);
    for (key, data) in &objects {
        assert_eq!(client.read(&volume, key, 0, PAGE).await.expect("warm read"), *data);
    }

    // SIGSTOP: the process keeps its sockets, nothing answers.
    cluster.signal(0, "STOP");
    let mut slowest = Duration::ZERO;
    for (key, data) in &objects {
        let started = Instant::now();
        let (bytes, pages) = client.read_traced(&volume, key, 0, PAGE).await.expect("read never fails");
        slowest = slowest.max(started.elapsed());
        assert_eq!(bytes, *data, "{key}: wrong bytes");
        assert!(matches!(&pages[0].source, Source::Node { id, .. } if id == "b"), "{:?}", pages[0]);
    }
    let stats = client.stats().snapshot();
    eprintln!("stalled owner: slowest read {slowest:?}; {stats:?}");
    // A peek at b misses (b never had these pages), so reads move after 4 x 500 ms or once a is
    // set aside; a read without hedging would wait for the 5 s idle timeout.
    assert!(slowest < Duration::from_secs(3), "slowest read {slowest:?}");
    let hedged = stats.get("fallback_hedged").copied().unwrap_or(0);
    let set_aside = stats.get("fallback_set_aside").copied().unwrap_or(0);
    assert!(hedged >= 1, "hedged {hedged}");
    assert!(set_aside >= 1, "after 3 hedges the slow node is skipped: {stats:?}");

    // Recovered: once the set-aside time has passed, reads go back to it.
    cluster.signal(0, "CONT");
    tokio::time::sleep(cache_client::pool::SET_ASIDE + Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (bytes, pages) = client.read_traced(&volume, &objects[0].0, 0, PAGE).await.expect("read");
        assert_eq!(bytes, objects[0].1);
        if matches!(&pages[0].source, Source::Node { id, .. } if id == "a") {
            break;
        }
        assert!(Instant::now() < deadline, "node a never served again: {:?}", pages[0]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
