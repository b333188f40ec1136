//! The checker of `cache-bench check` against real parts in this process: an S3 origin (s3s,
//! SigV4) holding objects written by `populate`, one node over QUIC, and a client of it.
//!
//! It checks that a healthy cluster passes with every counter adding up (outcomes, pages by
//! source against the client's own counters, the per-second lines against the totals), that a
//! stop ends a long run at once with its summary, and that the checker can fail: objects whose
//! origin bytes are wrong, cut short or missing are reported as wrong, short and errors, and
//! `judge` itself flags one flipped byte and a short buffer.

use std::{sync::Arc, time::Duration};

use bench::{
    AK, BUCKET, NODE_ID, SK, VOLUME, certs,
    check::{self, CheckSpec, Progress, Verdict, judge},
    client_config, content,
    load::{object_key, populate},
    node_config, volume,
};
use cache_client::Client;
use cache_node::{Hooks, RunningNode};
use cache_testkit::S3Origin;
use tempfile::TempDir;

const OBJECTS: u64 = 6;
/// Two pages of 4 MiB: the second is short, so page-crossing reads cross inside the object.
const SIZE: u64 = (4 << 20) + (100 << 10);

struct Cluster {
    _dir: TempDir,
    s3: S3Origin,
    node: RunningNode,
    client: Arc<Client>,
    /// The client config `client` was made from.
    config: cache_client::config::ClientConfig,
}

impl Cluster {
    /// The origin with objects `0..OBJECTS` under `bench`, one node, a client.
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(Hooks::default()).await
    }

    /// [`Self::start`] with `hooks` installed in the node.
    async fn start_with(hooks: Hooks) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = certs(&dir.path().join("certs"), &[NODE_ID])?;
        let s3 = S3Origin::start(&dir.path().join("origin"), AK, SK).await?;
        std::fs::create_dir_all(s3.root().join(BUCKET))?; // the bucket; populate PUTs into it
        let origin = s3.origin_config(BUCKET, VOLUME);
        assert_eq!(populate(&origin, "bench", OBJECTS, SIZE, 4).await?.written, OBJECTS);
        let config = node_config(&dir.path().join("node"), &certs, "64MiB", "512MiB", Some(&origin))?;
        let node = RunningNode::start_with(config, hooks).await?;
        let config = client_config(&[(NODE_ID, node.quic_addr())], &certs, &origin)?;
        let client = Arc::new(Client::new(&config)?);
        Ok(Self { _dir: dir, s3, node, client, config })
    }

    /// Runs `spec`, returning the summary and the progress lines.
    async fn check(
        &self,
        spec: &CheckSpec,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<(check::Summary, Vec<Progress>)> {
        let mut lines = Vec::new();
        let summary = check::run(self.client.clone(), &volume(), spec, stop, |p| lines.push(p.clone())).await?;
        Ok((summary, lines))
    }
}

fn spec(prefix: &str, objects: u64) -> CheckSpec {
    CheckSpec {
        prefix: prefix.into(),
        concurrency: 4,
        duration: Duration::from_secs(2),
        deadline: Duration::from_secs(10),
        ..CheckSpec::new(objects, SIZE)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_cluster_passes_and_every_count_adds_up() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let (s, lines) = cluster.check(&spec("bench", OBJECTS), std::future::pending()).await?;
    eprintln!("{}", s.table());
    assert!(s.failed(false).is_empty(), "{:?}\n{}", s.failed(false), s.table());
    assert!(s.ok > 0 && s.ok == s.reads, "{s:?}");
    assert_eq!((s.wrong, s.short, s.errors, s.late, s.timed_out, s.cancelled), (0, 0, 0, 0, 0, 0));
    assert_eq!(s.shapes.values().sum::<u64>(), s.reads);
    assert_eq!(s.pages, s.pages_memory + s.pages_disk + s.pages_miss + s.pages_origin_fallback);
    assert_eq!(s.pages_origin_fallback, 0, "the node answered every page");
    assert!(s.pages >= s.reads, "at least one page per read");
    let node_pages: u64 = s.pages_by_node.values().map(|p| p.memory + p.disk + p.miss).sum();
    assert_eq!(node_pages, s.pages - s.pages_origin_fallback);
    let stats = cluster.client.stats().snapshot();
    let counted = |name: &str| stats.get(name).copied().unwrap_or(0);
    assert_eq!(
        [s.pages_memory, s.pages_disk, s.pages_miss, s.pages_origin_fallback],
        ["pages_node_memory", "pages_node_disk", "pages_node_miss", "pages_origin_fallback"].map(counted),
        "the checker's pages are the client's own counts"
    );
    assert!(s.pages_miss >= 1 && s.hit_ratio.is_some_and(|h| h > 0.0), "cold at first, then hits: {s:?}");

    // One line per second and the last partial one; together they are the whole run.
    assert!(lines.len() >= 2 && lines[0].t >= 1.0, "{lines:?}");
    assert!(lines.windows(2).all(|w| w[0].t < w[1].t), "{lines:?}");
    let sum = |f: fn(&Progress) -> u64| lines.iter().map(f).sum::<u64>();
    assert_eq!((sum(|p| p.reads), sum(|p| p.ok), sum(|p| p.pages)), (s.reads, s.ok, s.pages));
    assert_eq!(sum(|p| p.origin_pages), s.pages_miss + s.pages_origin_fallback);
    let json = serde_json::to_value(&lines[0])?;
    for field in ["t", "reads", "ok", "wrong", "short", "errors", "late", "hit_ratio", "origin_pages", "p99_ms"] {
        assert!(json.get(field).is_some(), "progress line lacks {field}: {json}");
    }

    // A stop ends a long run at once, and it still passes: reads cut short are not failures.
    let long = CheckSpec { duration: Duration::from_secs(60), ..spec("bench", OBJECTS) };
    let (s, _) = cluster.check(&long, tokio::time::sleep(Duration::from_millis(1500))).await?;
    assert!(s.run.seconds < 5.0, "a stop cancels reads in flight: {s:?}");
    assert!(s.ok > 0 && s.failed(false).is_empty(), "{:?}", s.failed(false));
    assert_eq!(s.reads, s.ok + s.cancelled);
    cluster.node.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_short_and_missing_objects_fail_the_check() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let put = |prefix: &str, data: &[u8]| {
        let key = object_key(prefix, 0, SIZE)?;
        cluster.s3.put(BUCKET, &format!("{VOLUME}/{key}"), data)?;
        anyhow::Ok(())
    };
    // The cluster faithfully serves what the origin holds, which is not what the key promises.
    put("wrong", &content(99, SIZE))?;
    put("short", &content(0, SIZE - 1000))?;
    // Bounded by the request count, not the clock.
    let few = |prefix| CheckSpec { requests: 16, duration: Duration::from_secs(60), ..spec(prefix, 1) };

    let (s, _) = cluster.check(&few("wrong"), std::future::pending()).await?;
    assert_eq!((s.reads, s.wrong, s.ok), (16, 16, 0), "{}", s.table());
    assert!(s.failures.iter().any(|f| f.contains("wrong byte at +")), "{:?}", s.failures);
    assert!(s.failed(true).iter().any(|f| f.contains("wrong bytes")));

    let (s, _) = cluster.check(&few("short"), std::future::pending()).await?;
    assert!(s.short > 0 && s.wrong == 0, "{}", s.table());
    assert!(s.failed(true).iter().any(|f| f.contains("too few bytes")));

    // Missing objects are errors, which --allow-errors lets pass.
    let (s, _) = cluster.check(&few("missing"), std::future::pending()).await?;
    assert_eq!((s.reads, s.errors, s.errors_by_kind.get("not_found")), (16, 16, Some(&16)), "{}", s.table());
    assert!(s.error_samples["not_found"].contains("not found"), "{:?}", s.error_samples);
    assert_eq!(s.failed(false).len(), 1);
    assert!(s.failed(true).is_empty());
    cluster.node.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

#[test]
fn judge_flags_one_flipped_byte_and_a_short_buffer() {
    let want = content(1, 4096);
    assert_eq!(judge(&want, &want), Verdict::Ok);
    let mut flipped = want.to_vec();
    flipped[1234] ^= 0x01;
    assert_eq!(judge(&flipped, &want), Verdict::WrongBytes { at: 1234 });
    assert_eq!(judge(&want[..4000], &want), Verdict::ShortRead { got: 4000, want: 4096 });
    assert_eq!(judge(&[], &want), Verdict::ShortRead { got: 0, want: 4096 });
    assert_eq!(judge(&flipped[..4000], &want), Verdict::WrongBytes { at: 1234 }, "a wrong byte outranks a cut");
    let mut long = want.to_vec();
    long.push(0);
    assert_eq!(judge(&long, &want), Verdict::WrongBytes { at: 4096 }, "bytes past the end are wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_node_is_caught_by_digests_and_without_them_by_the_checker() -> anyhow::Result<()> {
    // The node flips a byte in every page it sends, keeping the digest.
    let cluster = Cluster::start_with(Hooks { answer: Some(cache_testkit::faults::corrupt_answers()) }).await?;
    let (s, _) = cluster.check(&spec("bench", OBJECTS), std::future::pending()).await?;
    eprintln!("digests on:\n{}", s.table());
    assert!(s.failed(false).is_empty(), "the client refuses every corrupt answer: {:?}", s.failed(false));
    assert!(s.pages_origin_fallback > 0 && s.pages_origin_fallback == s.pages, "{s:?}");

    // The same node, read by a client that skips the digest check: the checker must fail.
    let unchecked = Arc::new(Client::new(&cluster.config)?.without_digest_checks());
    let summary = check::run(unchecked, &volume(), &spec("bench", OBJECTS), std::future::pending(), |_| {}).await?;
    eprintln!("digests off:\n{}", summary.table());
    assert!(summary.wrong > 0, "{summary:?}");
    assert!(!summary.failed(false).is_empty(), "the checker fails the run");
    cluster.node.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
