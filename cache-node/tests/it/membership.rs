//! Gossip membership end to end, with real `cache-node` processes on loopback QUIC: nodes find
//! each other through a seed, clients learn the ring from any node and follow its changes, a
//! new node takes its pages from their previous owners instead of the origin (warm handoff), a
//! drained node hands its pages off and then reports it can be stopped, and a killed node leaves
//! every ring within seconds and takes its old place when it comes back. Every read is compared
//! with the origin's bytes. (The multi-host version, in network namespaces, is
//! `scripts/membership.sh`.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_client::Client;
use cache_proto::{
    key::{ObjectKey, Volume},
    ring::{Member, page_point},
    wire::MemberState,
};
use cache_testkit::cluster::{Cluster, HANDOFF, PAGE, VOLUME, block_key};

const OBJECTS: u64 = 24;

/// Polls `cond` every 100 ms for up to `limit`; returns how long it took.
async fn wait_for(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

async fn ring_ids(client: &Client) -> Vec<(String, MemberState)> {
    let view = client.refresh_members().await.unwrap_or_else(|_| client.ring());
    view.members.iter().map(|m| (m.id.to_string(), m.state)).collect()
}

/// Whether every member of the client's ring reports the client's epoch (gossip has converged).
async fn converged(client: &Client) -> bool {
    let view = client.ring();
    for m in view.ring.members() {
        match client.node_status(m).await {
            Ok(s) if s.epoch == view.epoch => {}
            _ => return false,
        }
    }
    true
}

fn put_all(cluster: &Cluster) -> Vec<(ObjectKey, Bytes)> {
    (0..OBJECTS)
        .map(|i| {
            let key = block_key(i, 0, PAGE);
            let data = cluster.put(&key, i, PAGE);
            (ObjectKey::new(&key).expect("key"), data)
        })
        .collect()
}

/// Reads every object whole and checks its bytes.
async fn read_all(client: &Client, objects: &[(ObjectKey, Bytes)]) {
    let volume = Volume::new(VOLUME).expect("volume");
    for (key, data) in objects {
        let got = client.read(&volume, key, 0, PAGE).await.expect("read never fails");
        assert!(got == *data, "{key}: bytes differ from the origin");
    }
}

fn member(client: &Client, id: &str) -> Member {
    let view = client.ring();
    let m = view.get(id).unwrap_or_else(|| panic!("{id} on the ring"));
    Member { id: m.id.clone(), addr: m.addr, weight: m.weight }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_follows_joins_drains_and_deaths() {
    let mut cluster = Cluster::start_gossip(&["a", "b", "c"], &["d"]).await;
    let client = cluster.client();
    let names = |ids: &[(String, MemberState)]| ids.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    let serving = |id: &str| (id.to_owned(), MemberState::Serving);
    wait_for("3 serving members on the client's ring", Duration::from_secs(20), async || {
        ring_ids(&client).await == [serving("a"), serving("b"), serving("c")]
    })
    .await;
    let objects = put_all(&cluster);
    read_all(&client, &objects).await;
    read_all(&client, &objects).await;
    let warm_gets = cluster.s3.get_count();

    // A fourth node joins a warm cluster: the pages it now owns come from their previous
    // owners, not from the origin.
    let before = client.ring();
    cluster.add("d").await;
    wait_for("d on every ring", Duration::from_secs(20), async || {
        names(&ring_ids(&client).await) == ["a", "b", "c", "d"] && converged(&client).await
    })
    .await;
    let after = client.ring();
    let volume = Volume::new(VOLUME).expect("volume");
    let moved = objects
        .iter()
        .filter(|(key, _)| {
            let p = page_point(&volume, key, 0);
            let owner = |v: &cache_proto::members::RingView| v.ring.member(v.ring.owner(p).expect("owner")).id.clone();
            owner(&before) != owner(&after)
        })
        .count();
    read_all(&client, &objects).await;
    let join_gets = cluster.s3.get_count() - warm_gets;
    let d = client.node_status(&member(&client, "d")).await.expect("d status");
    eprintln!("join: {moved} of {OBJECTS} pages moved, {join_gets} origin GETs, {} handed off", d.handoff_pages);
    assert!(moved > 0, "a new member owns some pages");
    assert_eq!(d.handoff_pages as usize, moved, "every moved page came from its previous owner");
    assert_eq!(join_gets, 0, "no origin GET for pages that moved");

    // Drain b: it owns nothing any more, its pages move without origin GETs, and it reports
    // that it can be stopped once the handoff window has passed.
    let b = member(&client, "b");
    let status = client.drain(&b).await.expect("drain b");
    assert_eq!(status.state, MemberState::Draining);
    wait_for("b draining on the client's ring", Duration::from_secs(20), async || {
        ring_ids(&client).await.contains(&("b".to_owned(), MemberState::Draining))
    })
    .await;
    let gets = cluster.s3.get_count();
    read_all(&client, &objects).await;
    assert_eq!(cluster.s3.get_count(), gets, "pages of a draining node come from it, not the origin");
    wait_for("b drained", HANDOFF + Duration::from_secs(10), async || {
        client.node_status(&b).await.is_ok_and(|s| s.drained)
    })
    .await;

    // kill -9 c: it leaves every ring within seconds, and no read fails meanwhile.
    cluster.kill(2).await;
    let killed = Instant::now();
    read_all(&client, &objects).await;
    let gone = wait_for("c off the client's ring", Duration::from_secs(30), async || {
        !names(&ring_ids(&client).await).contains(&"c".to_owned())
    })
    .await;
    eprintln!("kill: c left the client's ring {:?} after kill -9", killed.elapsed().max(gone));
    read_all(&client, &objects).await;

    // c comes back at the same address with the same id, and takes its old place.
    cluster.spawn(2).await;
    wait_for("c back on the ring", Duration::from_secs(30), async || {
        names(&ring_ids(&client).await).contains(&"c".to_owned())
    })
    .await;
    read_all(&client, &objects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_needs_an_operator_certificate() {
    let cluster = Cluster::start_gossip(&["a"], &[]).await;
    // "mount" is a client of the cluster CA but not in node.operators.
    cachectl::certs::generate(&cluster.path("certs"), &[], &["mount"], 1).expect("certs");
    let mut config = cluster.client_config(cache_testkit::cluster::TOKEN, VOLUME, &cluster.path("certs"));
    config.tls = cache_client::config::TlsConfig::in_dir(&cluster.path("certs"), "mount");
    let mount = Client::new(&config).expect("client");
    let view = mount.refresh_members().await.expect("members from the seed");
    let a = view.get("a").expect("a");
    let err = mount.drain(&Member { id: a.id.clone(), addr: a.addr, weight: a.weight }).await.expect_err("refused");
    let err = err.to_string();
    assert!(err.contains("forbidden") && err.contains("mount"), "{err}");
    let status = mount.node_status(&Member { id: a.id.clone(), addr: a.addr, weight: a.weight }).await.expect("status");
    assert_ne!(status.state, MemberState::Draining);
}
