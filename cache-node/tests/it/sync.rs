//! `cachectl sync` against a real cluster in setup 2: two in-process S3 servers (the source and
//! the regional copy), real nodes, the real `cachectl` binary. The tests count the PUTs the
//! regional server saw. No fakes.

use std::{path::Path, process::Output};

use cache_proto::wire::VolumeUse;
use cache_testkit::cluster::*;
use tokio::process::Command;

async fn cachectl(args: &[&str]) -> Output {
    Command::new(cachectl_binary()).args(args).env("RUST_LOG", "error").output().await.expect("run cachectl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A setup-2 cluster with `n` small blocks under `myjfs/chunks/` in the source only, and the
/// path of a client config.
async fn start(ids: &[&str], n: u64) -> (Cluster, Vec<(String, bytes::Bytes)>, String) {
    let cluster = Cluster::start_with_replica(ids, |_| {}).await;
    let objects: Vec<_> = (0..n)
        .map(|i| {
            let len = 1000 + i * 37;
            let k = block_key(5000 + i, 0, len);
            let d = cluster.put(&k, 5000 + i, len);
            (k, d)
        })
        .collect();
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let config = config.to_str().expect("utf8").to_owned();
    (cluster, objects, config)
}

/// The test volume's use, summed over the nodes, and how many nodes copied anything.
async fn copies(cluster: &Cluster) -> (VolumeUse, usize) {
    let client = cluster.client();
    let (mut sum, mut nodes) = (VolumeUse::default(), 0);
    for i in 0..cluster.nodes.len() {
        let s = client.node_status(client.ring().ring.member(i)).await.expect("status");
        let u = s.volumes.iter().find(|v| v.volume == VOLUME).expect("volume");
        nodes += usize::from(u.copies_done > 0);
        sum.add(u);
    }
    (sum, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_copies_everything_through_the_owners_then_check_finds_nothing_missing() {
    let (cluster, objects, config) = start(&["a", "b", "c"], 24).await;
    let cp = cluster.path("sync.checkpoint");
    let cp = cp.to_str().expect("utf8");
    let sync = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp]).await;
    let out = text(&sync.stdout);
    assert!(sync.status.success(), "{out}\n{}", text(&sync.stderr));
    assert!(
        out.contains("found 24 objects")
            && out.contains("copied 24 (")
            && out.contains("already there 0, failed 0, extra in the mirror 0"),
        "{out}"
    );
    assert_eq!(cluster.regional().put_count(), 24, "one PUT per object");
    for (k, d) in &objects {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "{k}");
    }
    let (used, nodes) = copies(&cluster).await;
    assert_eq!(used.copies_done, 24, "{used:?}");
    assert!(nodes >= 2, "the owners copy: more than one node did ({nodes})");
    assert!(!Path::new(cp).exists(), "a finished sync leaves no checkpoint");

    let check = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--check"]).await;
    let out = text(&check.stdout);
    assert!(check.status.success(), "{out}\n{}", text(&check.stderr));
    assert!(out.contains("24 objects in the sources, 24 the same, 0 missing, 0 extra, 0 differing"), "{out}");

    let again = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp]).await;
    assert!(text(&again.stdout).contains("copied 0 (0B), already there 24"), "{}", text(&again.stdout));
    assert_eq!(cluster.regional().put_count(), 24, "a second sync writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sync_resumes_from_its_checkpoint_and_copies_only_the_rest() {
    let (cluster, objects, config) = start(&["a", "b"], 20).await;
    let cp = cluster.path("sync.checkpoint");
    let cp = cp.to_str().expect("utf8");
    let first = cachectl(&[
        "--config",
        &config,
        "sync",
        VOLUME,
        "myjfs/",
        "--checkpoint",
        cp,
        "--max-objects",
        "8",
        "--concurrency",
        "3",
    ])
    .await;
    let out = text(&first.stdout);
    assert!(first.status.success(), "{out}\n{}", text(&first.stderr));
    assert!(out.contains("copied 8 (") && out.contains("stopped after 8 copies"), "{out}");
    assert_eq!(cluster.regional().put_count(), 8);
    let saved = std::fs::read_to_string(cp).expect("a checkpoint is left");
    let mut keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert!(saved.contains(&format!("\"done_through\":\"{}\"", keys[7])), "{saved}");

    let second = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp]).await;
    let out = text(&second.stdout);
    assert!(second.status.success(), "{out}\n{}", text(&second.stderr));
    assert!(out.contains(&format!("resumed after {}", keys[7])), "{out}");
    assert!(out.contains("found 12 objects") && out.contains("copied 12 ("), "{out}");
    assert_eq!(cluster.regional().put_count(), 20, "the rest only: 8 + 12 PUTs for 20 objects");
    for (k, d) in &objects {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "{k}");
    }
    assert!(!Path::new(cp).exists(), "done: the checkpoint is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_deleted_an_added_and_a_changed_object_and_delete_extra_removes_only_the_extra() {
    let (cluster, objects, config) = start(&["a", "b"], 6).await;
    let cp = cluster.path("sync.checkpoint");
    let sync =
        cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp.to_str().expect("utf8")]).await;
    assert!(sync.status.success(), "{}", text(&sync.stderr));
    // In the source: one block deleted (its file's blocks are gone), one added, one rewritten
    // with other bytes of the same size (only the checksum tells).
    let (deleted, _) = &objects[1];
    std::fs::remove_file(cluster.s3.root().join(BUCKET).join(VOLUME).join(deleted)).expect("delete from the source");
    let added = block_key(6001, 0, 777);
    cluster.put(&added, 6001, 777);
    let (changed, old) = &objects[3];
    let new = cluster.put(changed, 9999, old.len() as u64);
    assert_ne!(&new, old);

    // The test server's listings carry no ETags: --checksum HEADs objects of the same size.
    let check = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--check", "--checksum"]).await;
    let out = text(&check.stdout);
    assert!(!check.status.success(), "differences exit non-zero");
    assert!(text(&check.stderr).contains("1 missing, 1 extra, 1 differing"), "{}", text(&check.stderr));
    assert!(out.contains("6 objects in the sources, 4 the same, 1 missing, 1 extra, 1 differing"), "{out}");
    for (what, k) in [("missing", &added), ("extra", deleted), ("differs", changed)] {
        assert!(out.lines().any(|l| l.starts_with(what) && l.contains(k.as_str())), "{what} {k}: {out}");
    }
    let json = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--check", "--checksum", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(
        (report["missing"].as_u64(), report["extra"].as_u64(), report["differing"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    let kinds: Vec<(&str, &str)> = report["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| (d["kind"].as_str().unwrap_or(""), d["key"].as_str().unwrap_or("")))
        .collect();
    assert!(
        kinds.contains(&("differs", changed.as_str())) && kinds.contains(&("extra", deleted.as_str())),
        "{kinds:?}"
    );
    assert!(report["differences"][0]["detail"].is_string());

    let puts = cluster.regional().put_count();
    let delete = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--delete-extra"]).await;
    let out = text(&delete.stdout);
    assert!(delete.status.success(), "{out}\n{}", text(&delete.stderr));
    assert!(out.contains("1 extra in the mirror, 1 deleted, 0 failed"), "{out}");
    assert!(cluster.regional_object(deleted).is_none(), "the extra object is gone");
    assert_eq!(cluster.regional_object(changed).as_deref(), Some(&old[..]), "the changed one is left as it was");
    assert!(cluster.regional_object(&added).is_none(), "nothing copied");
    assert_eq!(cluster.regional().put_count(), puts, "nothing written");
    let check = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--check", "--checksum"]).await;
    assert!(text(&check.stdout).contains("4 the same, 1 missing, 0 extra, 1 differing"), "{}", text(&check.stdout));

    // A sync then makes the copy whole again.
    let sync = cachectl(&[
        "--config",
        &config,
        "sync",
        VOLUME,
        "myjfs/",
        "--checksum",
        "--checkpoint",
        cp.to_str().expect("utf8"),
    ])
    .await;
    assert!(text(&sync.stdout).contains("copied 2 ("), "{}", text(&sync.stdout));
    assert_eq!(cluster.regional_object(changed).as_deref(), Some(&new[..]));
    let check = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--check", "--checksum"]).await;
    assert!(check.status.success(), "{}", text(&check.stdout));
}
