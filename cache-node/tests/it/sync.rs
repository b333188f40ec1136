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
    println!("{}\n$ cachectl sync {VOLUME} myjfs/ (again)\n{out}", text(&first.stdout));
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
    println!("$ cachectl sync {VOLUME} myjfs/ --check --checksum\n{out}{}", text(&check.stderr));
    assert!(!check.status.success(), "differences exit non-zero");
    assert!(text(&check.stderr).contains("1 missing, 1 extra, 1 differing"), "{}", text(&check.stderr));
    assert!(out.contains("6 objects in the sources, 4 the same, 1 missing, 1 extra, 1 differing"), "{out}");
    for (what, k) in [("missing", &added), ("extra", deleted), ("differs", changed)] {
        assert!(out.lines().any(|l| l.starts_with(what) && l.contains(k.as_str())), "{what} {k}: {out}");
    }
    let json = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--check", "--checksum", "--json"]).await;
    println!("$ cachectl sync {VOLUME} myjfs/ --check --checksum --json\n{}", text(&json.stdout));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_resync_runs_on_exactly_one_node_and_shows_in_status() {
    // Gossip: every node sees the whole ring (the harness's static nodes each see only themselves).
    let cluster = Cluster::start_with_replica(&["a", "b", "c"], |c| {
        c.gossip = true;
        c.configure_node = |n| n.copy.resync_every = cache_proto::units::Span(std::time::Duration::from_secs(2));
    })
    .await;
    let objects: Vec<_> = (0..10u64)
        .map(|i| {
            let k = block_key(7000 + i, 0, 500 + i);
            let d = cluster.put(&k, 7000 + i, 500 + i);
            (k, d)
        })
        .collect();
    let client = cluster.client();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait for a run that found everything already there: an earlier run copied it.
    let (leaders, report) = loop {
        let mut leaders = Vec::new();
        let mut last = None;
        for n in &cluster.nodes {
            let id = cache_proto::key::NodeId::new(&n.id).expect("id");
            let member = cache_proto::ring::Member { id, addr: n.quic, weight: 1 };
            let s = client.node_status(&member).await.expect("status");
            if !s.resyncs.is_empty() {
                leaders.push(s.id.clone());
                last = s.resyncs.into_iter().find(|r| r.volume == VOLUME);
            }
        }
        if let Some(r) = &last
            && r.finished_unix.is_some()
            && r.already_there == 10
        {
            break (leaders, last.expect("a report"));
        }
        assert!(tokio::time::Instant::now() < deadline, "no resync found everything there: {last:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(leaders.len(), 1, "one node leads the resyncs: {leaders:?}");
    assert_eq!((report.found, report.failed, report.extra, report.copied), (10, 0, 0, 0), "{report:?}");
    for (k, d) in &objects {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "the resync copied {k}");
    }
    assert_eq!(cluster.regional().put_count(), 10, "each object copied once");
    let leader = cluster.nodes.iter().position(|n| n.id == leaders[0]).expect("leader");
    let metrics = cluster.metrics(leader).await;
    assert_eq!(
        metric(&metrics, &format!("mirrorcache_node_resync_last_objects{{volume=\"{VOLUME}\",kind=\"found\"}}")),
        10.0
    );
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let status = cachectl(&["--config", config.to_str().expect("utf8"), "status"]).await;
    let out = text(&status.stdout);
    assert!(out.contains(&format!("last resync (led by {})", leaders[0])) && out.contains("found 10"), "{out}");
}

/// Peak RSS (KiB) of `cachectl args`, measured by GNU time, and its stdout.
async fn peak_rss(args: &[&str]) -> (u64, String) {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("peak_rss_kib=%M")
        .arg(cachectl_binary())
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run /usr/bin/time cachectl");
    let err = text(&out.stderr);
    let kib = err
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {err}"));
    (kib, format!("{}\n{err}", text(&out.stdout)))
}

/// A measurement, not a check (run by hand: `cargo test -p cache-node --test it
/// sync::memory -- --ignored --nocapture`): the peak RSS of `cachectl sync` over
/// 1,000 and 100,000 small keys, in both buckets. Bounded memory: the figure barely moves with
/// the number of keys. Needs GNU time at /usr/bin/time, and an idle machine: the test server
/// walks the whole bucket for each LIST page, so 100,000 keys take over 10 minutes (on a loaded
/// machine its LIST times out; ARCHITECTURE.md has the figures and how they were taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: writes 200,000 small objects"]
async fn memory_of_a_sync_over_many_keys_stays_bounded() {
    // The test server lists a page by walking the whole bucket: slow at 100,000 keys.
    let cluster = Cluster::start_with_replica(&["a", "b"], |c| {
        c.tuning.configure_origin = |o| {
            o.stall_timeout = cache_proto::units::Span(std::time::Duration::from_secs(300));
            o.retry_timeout = cache_proto::units::Span(std::time::Duration::from_secs(600));
        };
    })
    .await;
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let config = config.to_str().expect("utf8").to_owned();
    let mut written = 0u64;
    for total in [1_000u64, 100_000] {
        while written < total {
            let k = block_key(1_000_000 + written, 0, 64);
            let d = cluster.put(&k, written, 64);
            cluster.regional().put(BUCKET, &format!("{VOLUME}/{k}"), &d).expect("regional put");
            written += 1;
        }
        let cp = cluster.path(&format!("sync-{total}.checkpoint"));
        let (sync_kib, out) =
            peak_rss(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp.to_str().expect("utf8")])
                .await;
        assert!(
            out.contains(&format!("found {total} objects")) && out.contains(&format!("already there {total}")),
            "{out}"
        );
        println!("keys {total}: sync peak RSS {sync_kib} KiB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_copies_fail_exits_non_zero_naming_them_and_copies_them_when_run_again() {
    let (cluster, objects, config) = start(&["a"], 3).await;
    cluster.regional().fail_puts(cache_testkit::PutFault::Refuse, None);
    let cp = cluster.path("sync.checkpoint");
    let cp = cp.to_str().expect("utf8");
    let sync = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp]).await;
    let (out, err) = (text(&sync.stdout), text(&sync.stderr));
    assert!(!sync.status.success(), "{out}");
    assert!(out.contains("copied 0 (0B), already there 0, failed 3"), "{out}");
    for (k, _) in &objects {
        assert!(err.contains(&format!("failed: {k}: node a: origin_failed")), "{k} named: {err}");
    }
    assert!(err.contains("3 objects failed"), "{err}");
    // The checkpoint never moves past a failed copy: here the first key failed, so none is kept.
    assert!(!Path::new(cp).exists(), "nothing done, no checkpoint");

    cluster.regional().clear_put_faults();
    let sync = cachectl(&["--config", &config, "sync", VOLUME, "myjfs/", "--checkpoint", cp]).await;
    assert!(sync.status.success(), "{}", text(&sync.stderr));
    assert!(text(&sync.stdout).contains("copied 3 ("), "{}", text(&sync.stdout));
}
