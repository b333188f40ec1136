//! Setup 2: the volume's regional copy is the first origin (`replica = true`), the source after
//! it; two real in-process S3 servers (`cluster.replica` and `cluster.s3`), real nodes, the real
//! client. A node that fills an object from the source copies it into the regional bucket; the
//! tests count what each server saw. The only fakes are the regional server's PutObject faults
//! (`PutFault`: refused, unavailable, corrupted or truncated writes), which a real server cannot
//! be made to do on demand.

use std::time::Duration;

use cache_proto::units::ByteSize;
use cache_proto::wire::{NodeStatus, VolumeUse};
use cache_testkit::{PutFault, cluster::*};
use tokio::process::Command;

/// Copies retry quickly in tests (the defaults wait 1 s, doubling to 5 min).
fn quick_copies(c: &mut cache_node::config::NodeConfig) {
    c.copy.backoff = cache_proto::units::Span(Duration::from_millis(100));
    c.copy.backoff_max = cache_proto::units::Span(Duration::from_millis(400));
    c.copy.attempts = 1000;
}

async fn start(ids: &[&str]) -> Cluster {
    Cluster::start_with_replica(ids, |c| c.configure_node = quick_copies).await
}

async fn statuses(cluster: &Cluster) -> Vec<NodeStatus> {
    let client = cluster.client();
    let mut out = Vec::new();
    for i in 0..cluster.nodes.len() {
        out.push(client.node_status(client.ring().ring.member(i)).await.expect("node answers status"));
    }
    out
}

/// The test volume's use, summed over the nodes.
async fn volume_use(cluster: &Cluster) -> VolumeUse {
    let mut sum = VolumeUse::default();
    for s in statuses(cluster).await {
        sum.add(s.volumes.iter().find(|v| v.volume == VOLUME).expect("the volume's use"));
    }
    sum
}

/// Polls `done` every 50 ms for up to 30 s; returns the last value it saw.
async fn wait_for<T: std::fmt::Debug>(what: &str, mut probe: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {value:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_only_the_source_has_is_served_copied_once_then_read_from_the_regional_copy() {
    let mut cluster = start(&["a", "b", "c"]).await;
    let k = block_key(4100, 0, PAGE);
    let data = cluster.put(&k, 4100, PAGE);
    // Three clients (each its own QUIC connections) read the cold block at once.
    let clients: Vec<_> = (0..3).map(|_| std::sync::Arc::new(cluster.client_without_hedging())).collect();
    let reads = clients.iter().map(|c| {
        let (c, k) = (c.clone(), k.clone());
        tokio::spawn(async move { c.read(&vol(), &key(&k), 0, PAGE).await })
    });
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.expect("task").expect("read"), data);
    }
    assert_eq!(cluster.s3.get_count(), 1, "one source GET for three concurrent cold reads");

    let used =
        wait_for("the copy", async || volume_use(&cluster).await, |u| u.copies_done == 1 && u.copy_pending == 0).await;
    assert_eq!(cluster.regional_object(&k).as_deref(), Some(&data[..]), "the regional bucket holds the block");
    assert_eq!(cluster.regional().put_count(), 1, "copied once");
    assert_eq!((used.copies_redone, used.copies_failed, used.copies_not_queued), (0, 0, 0));
    assert_eq!(cluster.s3.get_count(), 1, "the copy took the bytes from the node's memory, not the source");

    // Empty caches: every node restarted on fresh data. The block now comes from the regional
    // copy and the source sees nothing.
    for i in 0..cluster.nodes.len() {
        cluster.kill(i).await;
        let _ = std::fs::remove_dir_all(cluster.path(&format!("data/{}", cluster.nodes[i].id)));
        cluster.spawn(i).await;
    }
    let regional_gets = cluster.regional().get_count();
    assert_eq!(cluster.client().read(&vol(), &key(&k), 0, PAGE).await.expect("read"), data);
    assert_eq!(cluster.s3.get_count(), 1, "no source GET once the regional copy has the block");
    assert_eq!(cluster.regional().get_count(), regional_gets + 1);
    let used = volume_use(&cluster).await;
    assert_eq!((used.origins[0].gets, used.origins[1].gets, used.copy_pending), (1, 0, 0), "{used:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.regional().put_count(), 1, "a regional read queues no copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_bucket_refusing_writes_leaves_reads_alone_and_copies_finish_when_it_is_back() {
    let cluster = start(&["a"]).await;
    cluster.regional().fail_puts(PutFault::Refuse, None);
    let client = cluster.client();
    let blocks: Vec<_> = (0..3)
        .map(|i| {
            let k = block_key(4200 + i, 0, PAGE / 2);
            let d = cluster.put(&k, 4200 + i, PAGE / 2);
            (k, d)
        })
        .collect();
    for (k, d) in &blocks {
        assert_eq!(&client.read(&vol(), &key(k), 0, PAGE / 2).await.expect("read served from the source"), d);
    }
    let stuck = wait_for(
        "refused attempts",
        async || (volume_use(&cluster).await, cluster.regional().put_count()),
        |(_, puts)| *puts >= 6,
    )
    .await
    .0;
    assert_eq!((stuck.copy_pending, stuck.copy_pending_bytes, stuck.copies_done), (3, 3 * PAGE / 2, 0), "{stuck:?}");
    assert!(blocks.iter().all(|(k, _)| cluster.regional_object(k).is_none()));
    // Reads keep being served meanwhile (from the cache now).
    for (k, d) in &blocks {
        assert_eq!(&client.read(&vol(), &key(k), 0, PAGE / 2).await.expect("read"), d);
    }

    // The bucket is back: the copies finish by themselves.
    cluster.regional().fail_puts(PutFault::Unavailable, Some(3));
    let used = wait_for(
        "copies after the bucket is back",
        async || volume_use(&cluster).await,
        |u| u.copies_done == 3 && u.copy_pending == 0,
    )
    .await;
    for (k, d) in &blocks {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "{k}");
    }
    assert_eq!(used.copies_failed, 0);
    assert_eq!(cluster.s3.get_count(), 3, "retries took the bytes from the cache, not the source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_bucket_that_is_down_costs_reads_nothing_and_copies_finish_when_it_is_back() {
    let mut cluster = start(&["a"]).await;
    let client = cluster.client();
    let (root, addr) = (cluster.regional().root().to_owned(), cluster.regional().addr());
    cluster.replica = None; // the regional bucket's server stops
    wait_for("the regional server to stop", async || tokio::net::TcpStream::connect(addr).await.is_err(), |down| *down)
        .await;
    let blocks: Vec<_> = (0..3)
        .map(|i| {
            let k = block_key(5000 + i, 0, PAGE / 4);
            let d = cluster.put(&k, 5000 + i, PAGE / 4);
            (k, d)
        })
        .collect();
    let started = std::time::Instant::now();
    for (k, d) in &blocks {
        assert_eq!(&client.read(&vol(), &key(k), 0, PAGE).await.expect("read served from the source"), d);
    }
    let took = started.elapsed();
    let stuck = wait_for("queued copies", async || volume_use(&cluster).await, |u| u.copy_pending == 3).await;
    // The first read found the regional copy down (one GET with its retries); the others skipped it.
    assert_eq!((stuck.origins[0].gets_failed, stuck.origins[1].gets, stuck.copies_done), (1, 3, 0), "{stuck:?}");
    println!("3 cold reads with the regional bucket down: {took:?}");

    cluster.replica = Some(cache_testkit::S3Origin::start_on(&root, addr, AK, SK).await.expect("the bucket is back"));
    wait_for(
        "copies after the bucket is back",
        async || volume_use(&cluster).await,
        |u| u.copies_done == 3 && u.copy_pending == 0,
    )
    .await;
    for (k, d) in &blocks {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_copies_survive_kill_9_and_finish_after_restart() {
    // Wrong write credentials: every copy is refused and stays queued.
    let mut cluster = Cluster::start_with_replica(&["a"], |c| {
        c.configure_node = quick_copies;
        c.configure_replica = |o| {
            o.write_access_key_id = Some(AK.into());
            o.write_secret_access_key = Some("not-the-secret".into());
        };
    })
    .await;
    let client = cluster.client();
    let blocks: Vec<_> = (0..4)
        .map(|i| {
            let k = block_key(4300 + i, 0, 100_000 + i);
            let d = cluster.put(&k, 4300 + i, 100_000 + i);
            (k, d)
        })
        .collect();
    for (k, d) in &blocks {
        assert_eq!(&client.read(&vol(), &key(k), 0, PAGE).await.expect("read"), d);
    }
    let stuck = wait_for("queued copies", async || volume_use(&cluster).await, |u| u.copy_pending == 4).await;
    assert_eq!(stuck.copies_done, 0);
    let queue = cluster.path("data/a/copies/pending");
    assert_eq!(std::fs::read_dir(&queue).expect("queue dir").count(), 4, "one durable entry per copy");

    // kill -9, then start again with the right write credentials: the copies finish.
    cluster.kill(0).await;
    cluster.configure_replica = |o| {
        o.write_access_key_id = Some(AK.into());
        o.write_secret_access_key = Some(SK.into());
    };
    cluster.spawn(0).await;
    let used = wait_for(
        "copies after the restart",
        async || volume_use(&cluster).await,
        |u| u.copies_done == 4 && u.copy_pending == 0,
    )
    .await;
    for (k, d) in &blocks {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "{k}");
    }
    assert_eq!(std::fs::read_dir(&queue).expect("queue dir").count(), 0, "done copies leave the queue");
    // After the restart the cache was cold for the copier only if the pages were not on disk:
    // either way each copy cost at most one more source GET.
    assert!(cluster.s3.get_count() <= 8, "{}", cluster.s3.get_count());
    assert_eq!(used.copies_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_out_of_attempts_are_kept_as_failed_and_queued_again_at_the_next_start() {
    let mut cluster = Cluster::start_with_replica(&["a"], |c| {
        c.configure_node = |n| {
            quick_copies(n);
            n.copy.attempts = 3;
        };
    })
    .await;
    cluster.regional().fail_puts(PutFault::Refuse, None);
    let client = cluster.client();
    let blocks: Vec<_> = (0..2)
        .map(|i| {
            let k = block_key(4800 + i, 0, 50_000);
            let d = cluster.put(&k, 4800 + i, 50_000);
            (k, d)
        })
        .collect();
    for (k, d) in &blocks {
        assert_eq!(&client.read(&vol(), &key(k), 0, PAGE).await.expect("read"), d);
    }
    let used = wait_for("failed copies", async || volume_use(&cluster).await, |u| u.copies_failed == 2).await;
    assert_eq!((used.copy_pending, used.copies_done), (0, 0), "{used:?}");
    assert_eq!(cluster.regional().put_count(), 6, "3 attempts each");
    let failed = cluster.path("data/a/copies/failed");
    assert_eq!(std::fs::read_dir(&failed).expect("failed dir").count(), 2, "kept for a resync");

    cluster.regional().clear_put_faults();
    cluster.stop(0).await;
    cluster.spawn(0).await;
    wait_for("requeued copies", async || volume_use(&cluster).await, |u| u.copies_done == 2 && u.copy_pending == 0)
        .await;
    for (k, d) in &blocks {
        assert_eq!(cluster.regional_object(k).as_deref(), Some(&d[..]), "{k}");
    }
    assert_eq!(std::fs::read_dir(&failed).expect("failed dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_cannot_be_written_costs_reads_nothing() {
    let cluster = start(&["a"]).await;
    let client = cluster.client();
    // The queue's directory replaced by a file: every entry write fails (as on a broken disk).
    let pending = cluster.path("data/a/copies/pending");
    std::fs::remove_dir_all(&pending).expect("rm");
    std::fs::write(&pending, b"not a directory").expect("write");
    let k = block_key(4900, 0, PAGE);
    let d = cluster.put(&k, 4900, PAGE);
    assert_eq!(client.read(&vol(), &key(&k), 0, PAGE).await.expect("read served"), d);
    let used = wait_for("the refused entry", async || volume_use(&cluster).await, |u| u.copies_not_queued == 1).await;
    assert_eq!((used.copy_pending, used.copies_done), (0, 0), "{used:?}");

    // The disk is back: the next object is queued and copied.
    std::fs::remove_file(&pending).expect("rm");
    std::fs::create_dir(&pending).expect("mkdir");
    let k2 = block_key(4901, 0, PAGE);
    let d2 = cluster.put(&k2, 4901, PAGE);
    assert_eq!(client.read(&vol(), &key(&k2), 0, PAGE).await.expect("read"), d2);
    wait_for("the copy", async || volume_use(&cluster).await, |u| u.copies_done == 1).await;
    assert_eq!(cluster.regional_object(&k2).as_deref(), Some(&d2[..]));
    assert!(cluster.regional_object(&k).is_none(), "the object not queued waits for a resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_truncated_copy_is_detected_and_redone() {
    let cluster = start(&["a"]).await;
    let client = cluster.client();
    for (i, fault) in [PutFault::Corrupt { at: 1000 }, PutFault::Truncate { keep: 777 }].into_iter().enumerate() {
        let (puts, gets) = (cluster.regional().put_count(), cluster.s3.get_count());
        cluster.regional().fail_puts(fault, Some(1));
        let k = block_key(4400 + i as u64, 0, PAGE);
        let d = cluster.put(&k, 4400 + i as u64, PAGE);
        assert_eq!(client.read(&vol(), &key(&k), 0, PAGE).await.expect("read"), d);
        let used = wait_for(
            "the redone copy",
            async || volume_use(&cluster).await,
            |u| u.copies_done == i as u64 + 1 && u.copy_pending == 0,
        )
        .await;
        assert_eq!(used.copies_redone, i as u64 + 1, "{fault:?} detected: {used:?}");
        assert_eq!(cluster.regional_object(&k).as_deref(), Some(&d[..]), "{fault:?}: the copy was redone right");
        assert_eq!(cluster.regional().put_count() - puts, 2, "{fault:?}: one bad PUT, one good");
        assert_eq!(cluster.s3.get_count() - gets, 2, "{fault:?}: the fill, then the redo reads the source afresh");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_figures_match_what_the_two_servers_counted() {
    let cluster = Cluster::start_with_replica(&["a"], |c| {
        c.configure_node = quick_copies;
        c.configure_replica = |o| {
            o.price_per_gb = 0.01;
            o.price_per_1000_requests = 5.0;
        };
        c.tuning.configure_origin = |o| {
            if !o.replica {
                o.price_per_gb = 0.09;
                o.price_per_1000_requests = 0.4;
            }
        };
    })
    .await;
    let client = cluster.client();
    // Blocks only the source has (read, then copied) and blocks already in both. (A missing
    // block is left out: the client reads the origins itself after a node's not_found.)
    let mut blocks = Vec::new();
    for i in 0..3 {
        let k = block_key(4500 + i, 0, PAGE - i);
        blocks.push((k.clone(), cluster.put(&k, 4500 + i, PAGE - i)));
    }
    for i in 0..2 {
        let k = block_key(4600 + i, 0, 300_000 + i);
        let d = cluster.put(&k, 4600 + i, 300_000 + i);
        cluster.regional().put(BUCKET, &format!("{VOLUME}/{k}"), &d).expect("regional put");
        blocks.push((k, d));
    }
    for (k, d) in &blocks {
        assert_eq!(&client.read(&vol(), &key(k), 0, PAGE).await.expect("read"), d);
    }
    let used =
        wait_for("the copies", async || volume_use(&cluster).await, |u| u.copies_done == 3 && u.copy_pending == 0)
            .await;
    let (regional, source) = (cluster.regional(), &cluster.s3);
    let (r, s) = (&used.origins[0], &used.origins[1]);
    assert!(r.replica && !s.replica);
    assert_eq!(r.gets + r.gets_missing, regional.get_count(), "{used:?}");
    assert_eq!(r.get_bytes, regional.bytes_served());
    assert_eq!(r.heads, regional.head_count());
    assert_eq!((r.puts, r.put_bytes), (regional.put_count(), regional.put_bytes()));
    assert_eq!(s.gets + s.gets_missing, source.get_count(), "{used:?}");
    assert_eq!(s.get_bytes, source.bytes_served());
    assert_eq!((s.heads, s.puts), (source.head_count(), source.put_count()));
    // 3 blocks missed the regional copy and came from the source; 2 were served by it.
    assert_eq!((r.gets, r.gets_missing, s.gets, s.gets_missing), (2, 3, 3, 0));

    let gib = (1u64 << 30) as f64;
    let regional_spent = (regional.bytes_served() + regional.put_bytes()) as f64 / gib * 0.01
        + (regional.get_count() + regional.head_count() + regional.put_count()) as f64 / 1000.0 * 5.0;
    let source_spent = source.bytes_served() as f64 / gib * 0.09 + source.get_count() as f64 / 1000.0 * 0.4;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.max(1.0);
    assert!(close(r.spent, regional_spent), "{} vs {regional_spent}", r.spent);
    assert!(close(s.spent, source_spent), "{} vs {source_spent}", s.spent);
    assert!(close(used.spent, regional_spent + source_spent));
    let saved = r.get_bytes as f64 / gib * (0.09 - 0.01) + r.gets as f64 / 1000.0 * (0.4 - 5.0);
    assert!(close(used.saved, saved), "{} vs {saved}", used.saved);

    // The same figures in /metrics.
    let metrics = cluster.metrics(0).await;
    let series = |s: &str| metric(&metrics, s);
    assert_eq!(
        series("mirrorcache_node_origin_ops_total{volume=\"vol1\",origin=\"0\",op=\"put\"}") as u64,
        regional.put_count()
    );
    assert_eq!(
        series("mirrorcache_node_origin_op_bytes_total{volume=\"vol1\",origin=\"1\",op=\"get\"}") as u64,
        source.bytes_served()
    );
    assert_eq!(series("mirrorcache_node_copies_total{volume=\"vol1\",outcome=\"done\"}"), 3.0);
    assert_eq!(series("mirrorcache_node_copy_backlog_objects{volume=\"vol1\"}"), 0.0);
    assert!(close(series("mirrorcache_node_cost_estimate{volume=\"vol1\",kind=\"spent\"}"), used.spent), "{metrics}");

    // And in `cachectl status`, as an operator reads them.
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let out = Command::new(cachectl_binary())
        .args(["--config", config.to_str().expect("utf8"), "status"])
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run cachectl");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("volume vol1: copy backlog 0 objects (0B), oldest 0s; copies done 3,"), "{text}");
    assert!(
        text.contains(&format!(
            "(regional copy): GET 2 ({}), missing 3, failed 0, HEAD 6, PUT 3",
            cache_proto::units::ByteSize(r.get_bytes)
        )),
        "{text}"
    );
}

#[tokio::test]
async fn setup2_config_errors_fail_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = "[node]\nid = \"a\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n[tls]\nca = \"x\"\ncert = \"x\"\nkey = \"x\"\n";
    let volume = "[[volume]]\nname = \"vol1\"\ntoken = \"0123456789abcdef\"\n";
    let origin = |extra: &str| format!("[[volume.origin]]\nurl = \"s3://b/p\"\n{extra}\n");
    let cases = [
        (format!("{head}{volume}{}{}", origin(""), origin("replica = true")), "volume[0].origin[1].replica"),
        (format!("{head}{volume}{}", origin("replica = true")), "volume[0].origin[0].replica"),
        (
            format!(
                "{head}{volume}{}{}",
                origin("write_access_key_id = \"W\"\nwrite_secret_access_key = \"S\""),
                origin("")
            ),
            "volume[0].origin[0].write_access_key_id",
        ),
        (
            format!("{head}{volume}{}{}", origin("replica = true"), origin("price_per_gb = -1.0")),
            "volume[0].origin[1].price_per_gb",
        ),
        (format!("{head}[copy]\nconcurrency = 0\n"), "copy.concurrency"),
        (format!("{head}[copy]\nbandwidth_cap = \"1MiB\"\n"), "bandwidth_cap"),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).expect("write");
        let out = Command::new(node_binary()).arg("--config").arg(&path).output().await.expect("run node");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(key), "expected {key} in: {stderr}");
    }
}

/// A figure, not a check (`--run-ignored only`): cold reads of 24 blocks, one at a time, on a
/// plain cluster and on setup 2 where each read also queues a copy that runs beside the next
/// reads (PUT of 4 MiB at the default 50 MiB/s cap). Side by side in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --run-ignored only and read its output"]
async fn measure_cold_reads_with_and_without_copies() {
    /// CPU seconds node 0 has used (utime + stime of /proc/PID/stat, at 100 ticks a second).
    fn node_cpu(cluster: &Cluster) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", cluster.pid(0).expect("runs"))).expect("stat");
        let fields: Vec<&str> = stat.rsplit(')').next().expect("fields").split_whitespace().collect();
        (fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime")) / 100.0
    }
    async fn pass(cluster: &Cluster, base: u64) -> (Duration, f64) {
        let cpu = node_cpu(cluster);
        let client = cluster.client_without_hedging();
        let blocks: Vec<_> = (0..24)
            .map(|i| (block_key(base + i, 0, PAGE), cluster.put(&block_key(base + i, 0, PAGE), base + i, PAGE)))
            .collect();
        let mut times = Vec::new();
        for (k, d) in &blocks {
            let started = std::time::Instant::now();
            assert_eq!(&client.read(&vol(), &key(k), 0, PAGE).await.expect("read"), d);
            times.push(started.elapsed());
        }
        times.sort();
        // Let the copies of this pass finish, so their CPU counts here.
        tokio::time::sleep(Duration::from_secs(2)).await;
        (times[times.len() / 2], node_cpu(cluster) - cpu)
    }
    let plain = Cluster::start(&["a"]).await;
    let setup2 = start(&["a"]).await;
    // Setup 2 without copies (every object is over max_object): the regional copy's 404 alone.
    let no_copies =
        Cluster::start_with_replica(&["a"], |c| c.configure_node = |n| n.copy.max_object = ByteSize(1)).await;
    for round in 0..2 {
        let (a, a_cpu) = pass(&plain, 6000 + 100 * round).await;
        let (b, b_cpu) = pass(&setup2, 6000 + 100 * round).await;
        let (c, c_cpu) = pass(&no_copies, 6000 + 100 * round).await;
        let used = volume_use(&setup2).await;
        println!(
            "round {round}: median cold read: plain {a:?}; setup 2 without copies {c:?} ({:.2}x); setup 2 with copies {b:?} ({:.2}x); node CPU for 24 reads: {a_cpu:.2}s, {c_cpu:.2}s, {b_cpu:.2}s; copies done so far {}, pending {}",
            c.as_secs_f64() / a.as_secs_f64(),
            b.as_secs_f64() / a.as_secs_f64(),
            used.copies_done,
            used.copy_pending
        );
    }
}
