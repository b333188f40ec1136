//! Node faults, with real `cache-node` processes: a node stalled mid-stream (SIGSTOP: its
//! connections stay open, no bytes come) is set aside (by the watchdog on its connection, or
//! after hedges that found it silent), not waited on for the connection's idle timeout, and
//! probed back once it recovers; a node that goes silent is set aside before a read waits on it.
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
async fn a_stalled_owner_is_set_aside_then_probed_back() {
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
    // Reads move once a is set aside: by the watchdog on its connection (silent for 600 ms), or
    // after 3 hedges that found it silent; whichever comes first (the hedge is due at 500 ms, so
    // both happen). Before either, a read waited for the 5 s idle timeout.
    assert!(slowest < Duration::from_secs(3), "slowest read {slowest:?}");
    let set_aside = stats.get("fallback_set_aside").copied().unwrap_or(0);
    assert!(set_aside >= 1, "the stalled node is skipped: {stats:?}");

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

/// A node that goes silent is set aside by the watchdog on its pooled connection, before any
/// read has to find out: the next read skips it at once (no hedge, no deadline) and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_set_aside_by_its_connection_before_a_read_waits_on_it() {
    let cluster = Cluster::start(&["a", "b"]).await;
    let client = cluster.client();
    let volume = Volume::new(VOLUME).expect("volume");
    let objects = keys_owned_by(&cluster, &client, "a", 2);
    for (key, data) in &objects {
        assert_eq!(client.read(&volume, key, 0, PAGE).await.expect("warm read"), *data);
    }
    let hedged_before = client.stats().snapshot().get("fallback_hedged").copied().unwrap_or(0);

    cluster.signal(0, "STOP");
    // No reads meanwhile: only the connection can tell that a went quiet.
    tokio::time::sleep(cache_client::pool::SILENT_AFTER * 3).await;
    let (bytes, pages) = client.read_traced(&volume, &objects[1].0, 0, PAGE).await.expect("read never fails");
    cluster.signal(0, "CONT");
    assert_eq!(bytes, objects[1].1);
    assert!(matches!(&pages[0].source, Source::Node { id, .. } if id == "b"), "{:?}", pages[0]);
    assert!(
        pages[0].passed_over.iter().any(|why| why.contains("node a set aside")),
        "a was skipped as set aside: {:?}",
        pages[0].passed_over
    );
    let hedged = client.stats().snapshot().get("fallback_hedged").copied().unwrap_or(0);
    assert_eq!(hedged, hedged_before, "no read waited on a for a hedge deadline");
}
