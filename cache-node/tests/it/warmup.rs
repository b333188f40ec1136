//! `cachectl warmup` against a real cluster: after a warmup, reading every page of the prefix
//! costs the origin nothing; `--check` reports the cached share; `--evict` drops it; a key that
//! cannot be read makes the command fail and name it.

use std::process::Output;

use cache_proto::key::{ObjectKey, Volume};
use cache_testkit::cluster::*;
use tokio::process::Command;

async fn cachectl(args: &[&str]) -> Output {
    Command::new(cachectl_binary()).args(args).env("RUST_LOG", "error").output().await.expect("run cachectl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_fills_checks_and_evicts_a_prefix() {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let mut objects = Vec::new();
    for i in 0..8u64 {
        let len = if i == 7 { 2 * PAGE + 99 } else { PAGE - i * 1000 };
        let k = block_key(300 + i, 0, len);
        objects.push((k.clone(), cluster.put(&k, 300 + i, len)));
    }
    // Outside the prefix: must not be touched.
    let other = "otherfs/chunks/0/0/1_0_100";
    cluster.put(other, 1, 100);
    let pages: u64 = objects.iter().map(|(_, d)| (d.len() as u64).div_ceil(PAGE)).sum();
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let config = config.to_str().expect("utf8");

    let check = cachectl(&["--config", config, "warmup", VOLUME, "myjfs/chunks/", "--check"]).await;
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains(&format!("cached: 0.0% of {pages} pages of 8 objects")),
        "{}",
        text(&check.stdout)
    );

    let gets = cluster.s3.get_count();
    let warm = cachectl(&["--config", config, "warmup", VOLUME, "myjfs/chunks/", "--concurrency", "4"]).await;
    assert!(warm.status.success(), "{}", text(&warm.stderr));
    let out = text(&warm.stdout);
    assert!(out.contains(&format!("warmed 8 objects: {pages} pages ({pages} fetched, 0 already cached)")), "{out}");
    assert_eq!(cluster.s3.get_count() - gets, pages, "one origin GET per page");

    let again = cachectl(&["--config", config, "warmup", VOLUME, "myjfs/chunks/"]).await;
    assert!(text(&again.stdout).contains(&format!("(0 fetched, {pages} already cached)")), "{}", text(&again.stdout));

    let client = cluster.client();
    let gets = cluster.s3.get_count();
    let vol = Volume::new(VOLUME).expect("v");
    for (k, d) in &objects {
        let key = ObjectKey::new(k).expect("k");
        assert_eq!(&client.read(&vol, &key, 0, d.len() as u64).await.expect("read"), d);
    }
    assert_eq!(cluster.s3.get_count(), gets, "after a warmup, reads cost the origin nothing");

    let check = cachectl(&["--config", config, "warmup", VOLUME, "myjfs/chunks/", "--check"]).await;
    assert!(text(&check.stdout).contains(&format!("cached: 100.0% of {pages} pages")), "{}", text(&check.stdout));
    let evict = cachectl(&["--config", config, "warmup", VOLUME, "myjfs/chunks/", "--evict"]).await;
    assert!(evict.status.success() && text(&evict.stdout).contains(&format!("evicted {pages} pages")));
    let check = cachectl(&["--config", config, "warmup", VOLUME, "myjfs/chunks/", "--check"]).await;
    assert!(text(&check.stdout).contains("cached: 0.0%"), "{}", text(&check.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_fails_naming_keys_it_could_not_read() {
    let cluster = Cluster::start(&["a", "b"]).await;
    let good = block_key(1, 0, 1000);
    cluster.put(&good, 1, 1000);
    let missing = block_key(2, 0, PAGE);
    let keys = cluster.path("keys.txt");
    std::fs::write(&keys, format!("{good}\n{missing}\n")).expect("write");
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let out = cachectl(&[
        "--config",
        config.to_str().expect("utf8"),
        "warmup",
        VOLUME,
        "--keys",
        keys.to_str().expect("utf8"),
    ])
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&missing) && err.contains("not_found") && err.contains("1 of 2 objects failed"), "{err}");
    assert!(!err.contains(&format!("failed: {good}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_asks_again_when_an_owner_stops_answering_for_a_moment() {
    let cluster = Cluster::start(&["a", "b"]).await;
    let mut pages = 0;
    for i in 0..12u64 {
        cluster.put(&block_key(400 + i, 0, PAGE), 400 + i, PAGE);
        pages += 1;
    }
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let config = config.to_str().expect("utf8").to_owned();
    // Node a stops answering (SIGSTOP) as the warmup starts, and comes back 2 s later: its
    // pages fail once (no handshake, or a silent connection) and are asked again.
    cluster.signal(0, "STOP");
    let warm = tokio::spawn(async move { cachectl(&["--config", &config, "warmup", VOLUME, "myjfs/chunks/"]).await });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    cluster.signal(0, "CONT");
    let warm = warm.await.expect("join");
    let (out, err) = (text(&warm.stdout), text(&warm.stderr));
    assert!(warm.status.success(), "{err}");
    assert!(out.contains(&format!("warmed 12 objects: {pages} pages ({pages} fetched")), "{out}");
    assert!(err.contains("asked again"), "node a's pages were asked again: {err}");
}
