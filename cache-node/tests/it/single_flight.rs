//! Single flight under stress: a thousand concurrent readers of one cold page cost the origin one
//! GET; a fill whose leader fails (the origin refuses its GET) is taken over by a waiter; a fill
//! whose caller goes away (a dropped future, a client that disconnects) still gives its waiters
//! their page; and nothing wrong is cached on the way. Measured figures are printed with
//! `eprintln!` (run with `--no-capture`).
//!
//! What foyer 0.22's `get_or_fetch` does when the caller that started a fetch is dropped: the
//! fetch is not the caller's future but a task foyer spawned when the first caller joined, so it
//! runs on, inserts the page into memory and hands it to every waiter; a caller only waits for a
//! channel. Only if that task itself is dropped (its runtime shuts down) do the waiters get
//! foyer's "task cancelled" error, which the node answers by reading the origin directly.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_client::{
    Client,
    config::{ClientConfig, ClusterConfig, MemberConfig, OriginConfig, TlsConfig, VolumeConfig},
};
use cache_node::{
    RunningNode,
    config::{CacheSection, NodeConfig},
    lookup::Failure,
    server::respond,
    service::Service,
    store::{Page, PageKey, PageStore},
};
use cache_proto::{
    key::{NodeId, ObjectKey},
    units::{ByteSize, Span},
    wire::{Get, REQUEST_PREFIX_LEN, Request, RequestKind, ResponseHead, Status, Tier},
};
use cache_testkit::S3Origin;
use cache_testkit::cluster::{Cluster, PAGE, block_key, content, foyer_metric, metric, vol};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const TOKEN: &str = "single-flight-token-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_readers_of_a_cold_page_cost_one_origin_get() {
    let mut cluster = Cluster::start(&["a"]).await;
    let readers = 1000;
    // Each reader asks for its own 128 KiB of the page (the node fills the whole page once).
    let read_all = |client: Arc<Client>, k: String, data: Bytes| async move {
        let started = Instant::now();
        let reads = (0..readers).map(|i| {
            let (client, k, data) = (client.clone(), k.clone(), data.clone());
            tokio::spawn(async move {
                let offset = (i * 4096) % (PAGE - (128 << 10));
                let got = client.read(&vol(), &ObjectKey::new(&k).expect("key"), offset, 128 << 10).await;
                (got.expect("read") == data.slice(offset as usize..offset as usize + (128 << 10))) as u64
            })
        });
        let right: u64 = futures::future::join_all(reads).await.into_iter().map(|r| r.expect("task")).sum();
        (right, started.elapsed())
    };

    // With the default `max_inflight` (256), readers past it are answered Busy and go to the
    // origin themselves: the limit counts requests that only wait on a fill.
    let k = block_key(1, 0, PAGE);
    let data = cluster.put(&k, 1, PAGE);
    let client = Arc::new(cluster.client());
    let gets = cluster.s3.get_count();
    let (right, took) = read_all(client.clone(), k, data).await;
    let m = cluster.metrics(0).await;
    let stats = client.stats().snapshot();
    eprintln!(
        "{readers} readers, max_inflight 256: {right} right in {took:?}; origin GETs {} (node {}, client fallback \
         {}); busy answers {}",
        cluster.s3.get_count() - gets,
        metric(&m, "mirrorcache_node_origin_requests_total{volume=\"vol1\"}"),
        stats.get("pages_origin_fallback").copied().unwrap_or(0),
        metric(&m, "mirrorcache_node_errors_total{kind=\"busy\"}"),
    );
    assert_eq!(right, readers);

    // Room for every reader: one origin GET, and one disk write.
    cluster.configure_node = |c| c.node.max_inflight = 1100;
    cluster.stop(0).await;
    cluster.spawn(0).await;
    let k = block_key(2, 0, PAGE);
    let data = cluster.put(&k, 2, PAGE);
    let client = Arc::new(cluster.client());
    let gets = cluster.s3.get_count();
    let (right, took) = read_all(client.clone(), k, data).await;
    let m = cluster.metrics(0).await;
    let gets = cluster.s3.get_count() - gets;
    let enqueued = foyer_metric(&m, "foyer_storage_op_total", "enqueue");
    let served: Vec<String> = ["pages_node_miss", "pages_node_memory", "pages_origin_fallback"]
        .iter()
        .map(|s| format!("{s} {}", client.stats().snapshot().get(*s).copied().unwrap_or(0)))
        .collect();
    eprintln!(
        "{readers} readers, max_inflight 1100: {right} right in {took:?}; origin GETs {gets}; pages queued for \
         disk {enqueued}; {}",
        served.join(", ")
    );
    assert_eq!(right, readers);
    assert_eq!(gets, 1, "{readers} concurrent cold reads, one origin GET");
    assert_eq!(enqueued, 1.0, "the page is written to disk once, not once per waiter");
    assert!(took < Duration::from_secs(60), "{took:?}");
}

// ---- one node in this process, behind an origin proxy that can delay and refuse GETs ----

/// An HTTP proxy in front of the S3 origin: every GetObject is held for `delay`, and with
/// `refuse_first` the first one is answered `403 AccessDenied` (S3 clients do not retry it).
/// (A fault switch in `testkit::S3Origin` would do instead, once there is one.)
struct OriginProxy {
    addr: SocketAddr,
    gets: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OriginProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OriginProxy {
    async fn start(upstream: SocketAddr, delay: Duration, refuse_first: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let gets = Arc::new(AtomicU64::new(0));
        let seen = gets.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(proxy_connection(client, upstream, seen.clone(), delay, refuse_first));
            }
        });
        Self { addr, gets, task }
    }

    fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

/// Reads the connection's request head, applies the faults to a GET, and forwards it with
/// `Connection: close`, so that every request comes on a connection of its own and is seen here.
async fn proxy_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    gets: Arc<AtomicU64>,
    delay: Duration,
    refuse_first: bool,
) {
    let _ = client.set_nodelay(true);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines: Vec<&str> =
        text.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    if head.starts_with("GET ") {
        let n = gets.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::time::sleep(delay).await;
        if n == 1 && refuse_first {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                        <Message>refused by the test proxy</Message></Error>";
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            return;
        }
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let _ = server.set_nodelay(true);
    if server.write_all(head.as_bytes()).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// One node in this process over the origin behind a proxy, and its certificates.
struct Rig {
    dir: tempfile::TempDir,
    s3: S3Origin,
    proxy: OriginProxy,
    node: RunningNode,
}

const AK: &str = "AKIASINGLEFLIGHT";
const SK: &str = "single-flight-secret";

impl Rig {
    async fn start(delay: Duration, refuse_first: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        cachectl::certs::generate(&d.join("certs"), &["a"], &["client"], 30).expect("certs");
        let s3 = S3Origin::start(&d.join("origin"), AK, SK).await.expect("origin");
        let upstream: SocketAddr = s3.endpoint().trim_start_matches("http://").parse().expect("addr");
        let proxy = OriginProxy::start(upstream, delay, refuse_first).await;
        let mut config = NodeConfig::local(node_id("a"), d.join("data"), TlsConfig::in_dir(&d.join("certs"), "a"));
        config.node.origin_timeout = Span(Duration::from_secs(10));
        config.cache = small_cache();
        config.volume = vec![volume_config(&format!("http://{}", proxy.addr))];
        config.validate().expect("valid");
        let node = RunningNode::start(config).await.expect("node");
        Self { dir, s3, proxy, node }
    }

    fn put(&self, k: &str, seed: u64) -> Bytes {
        let data = content(seed, PAGE);
        self.s3.put("bucket", &format!("vol1/{k}"), &data).expect("put");
        data
    }

    fn service(&self) -> Arc<Service> {
        self.node.service().clone()
    }

    /// A client of this node whose own origin fallback goes to the origin directly.
    fn client(&self) -> Client {
        let certs = self.dir.path().join("certs");
        let member = MemberConfig::new(node_id("a"), self.node.quic_addr());
        let mut config = ClientConfig::new(ClusterConfig::members(vec![member]), TlsConfig::in_dir(&certs, "client"));
        config.client.connect_timeout = Span(Duration::from_secs(1));
        config.client.page_timeout = Span(Duration::from_secs(10));
        config.client.origin_timeout = Span(Duration::from_secs(10));
        config.volume = vec![volume_config(&self.s3.endpoint())];
        Client::new(&config).expect("client")
    }

    fn enqueued(&self) -> f64 {
        foyer_metric(&self.node.metrics().encode(), "foyer_storage_op_total", "enqueue")
    }
}

fn volume_config(endpoint: &str) -> VolumeConfig {
    let origin = OriginConfig {
        endpoint: Some(endpoint.into()),
        region: Some("us-east-1".into()),
        access_key_id: Some(AK.into()),
        secret_access_key: Some(SK.into()),
        allow_http: true,
        ..OriginConfig::new("s3://bucket/vol1")
    };
    VolumeConfig::new(vol(), TOKEN, vec![origin])
}

fn node_id(id: &str) -> NodeId {
    NodeId::new(id).expect("valid node id")
}

/// The cache of the in-process nodes: 64 MiB of memory, 512 MiB of disk.
fn small_cache() -> CacheSection {
    CacheSection { memory_capacity: ByteSize::mib(64), disk_capacity: ByteSize::mib(512), ..CacheSection::default() }
}

/// Asks `service` for the whole first page of `k`, as the server would for a client's stream:
/// the page's bytes and tier, or the error status.
async fn get_page(service: Arc<Service>, k: String) -> Result<(Bytes, Tier), Status> {
    let request = Request::Get(Get {
        volume: vol(),
        token: TOKEN.into(),
        key: ObjectKey::new(&k).expect("key"),
        page_size: PAGE as u32,
        page: 0,
        start: 0,
        len: PAGE as u32,
    });
    let bytes = request.encode();
    let prefix: [u8; REQUEST_PREFIX_LEN] = bytes[..REQUEST_PREFIX_LEN].try_into().expect("prefix");
    let answer = respond(&service, &prefix, &bytes[REQUEST_PREFIX_LEN..], None).await;
    match ResponseHead::decode(RequestKind::Get, answer.head()).expect("decodes").expect("whole head").0 {
        // A miss this request fills is streamed: its bytes are there once the fill ends.
        ResponseHead::Page(head) => {
            answer.into_payload().await.map(|bytes| (bytes, head.tier)).ok_or(Status::OriginFailed)
        }
        ResponseHead::Error(e) => Err(e.status),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Waits until the proxy has seen `n` GETs (the leader's fill has reached the origin).
async fn until_gets(proxy: &OriginProxy, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.gets() < n {
        assert!(Instant::now() < deadline, "the origin never saw GET {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_when_the_leaders_origin_get_fails() {
    let rig = Rig::start(Duration::from_millis(300), true).await;
    let k = block_key(10, 0, PAGE);
    let data = rig.put(&k, 10);
    let leader = tokio::spawn(get_page(rig.service(), k.clone()));
    until_gets(&rig.proxy, 1).await;
    let waiters: Vec<_> = (0..49).map(|_| tokio::spawn(get_page(rig.service(), k.clone()))).collect();

    let leader = leader.await.expect("task");
    let mut right = 0;
    for w in waiters {
        let (bytes, tier) = w.await.expect("task").expect("a waiter gets its page");
        assert_eq!(tier, Tier::Origin);
        right += u32::from(bytes == data);
    }
    let m = rig.node.metrics().encode();
    eprintln!(
        "leader's GET refused: leader answered {:?}; {right} of 49 waiters right; GETs at the proxy {}, served by \
         the origin {}; node origin requests {}",
        leader.as_ref().map(|(_, t)| t),
        rig.proxy.gets(),
        rig.s3.get_count(),
        metric(&m, "mirrorcache_node_origin_requests_total{volume=\"vol1\"}"),
    );
    assert_eq!(leader.err(), Some(Status::OriginFailed), "the leader's own request reports its failure");
    assert_eq!(right, 49);
    assert_eq!(rig.proxy.gets(), 2, "one refused GET, one GET taken over for all the waiters");
    // Nothing wrong was cached: the page now comes from memory, with the origin's bytes.
    let (bytes, tier) = get_page(rig.service(), k).await.expect("cached");
    assert_eq!((bytes == data, tier), (true, Tier::Memory));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_not_taken_over_nor_remembered() {
    let rig = Rig::start(Duration::from_millis(300), false).await;
    let k = block_key(11, 0, PAGE);
    // The object appears only after the first GET has been answered 404.
    let leader = tokio::spawn(get_page(rig.service(), k.clone()));
    until_gets(&rig.proxy, 1).await;
    let waiters: Vec<_> = (0..19).map(|_| tokio::spawn(get_page(rig.service(), k.clone()))).collect();
    assert_eq!(leader.await.expect("task").err(), Some(Status::NotFound));
    for w in waiters {
        assert_eq!(w.await.expect("task").err(), Some(Status::NotFound), "a missing object is missing for all");
    }
    assert_eq!(rig.s3.get_count(), 1, "waiters share the leader's 404");
    let data = rig.put(&k, 11);
    let (bytes, tier) = get_page(rig.service(), k).await.expect("the object now exists");
    eprintln!("object missing at the first GET: 20 readers NotFound on 1 GET; once written: {tier:?}");
    assert_eq!((bytes == data, tier), (true, Tier::Origin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_leader_does_not_fail_its_waiters() {
    let rig = Rig::start(Duration::from_millis(800), false).await;
    let k = block_key(12, 0, PAGE);
    let data = rig.put(&k, 12);
    let leader = tokio::spawn(get_page(rig.service(), k.clone()));
    until_gets(&rig.proxy, 1).await;
    let waiters: Vec<_> = (0..20).map(|_| tokio::spawn(get_page(rig.service(), k.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The request that started the fill goes away (its future is dropped).
    leader.abort();
    assert!(leader.await.is_err_and(|e| e.is_cancelled()));
    let mut right = 0;
    for w in waiters {
        let (bytes, _) = w.await.expect("task").expect("a waiter gets its page");
        right += u32::from(bytes == data);
    }
    let (bytes, tier) = get_page(rig.service(), k).await.expect("cached");
    eprintln!(
        "leader dropped mid-fill: {right} of 20 waiters right; origin GETs {}; then {tier:?}; pages queued for disk {}",
        rig.s3.get_count(),
        rig.enqueued()
    );
    assert_eq!(right, 20);
    assert_eq!(rig.s3.get_count(), 1);
    assert_eq!((bytes == data, tier), (true, Tier::Memory));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_fill_costs_nothing_and_fails_nobody() {
    let rig = Rig::start(Duration::from_millis(800), false).await;
    let k = block_key(13, 0, PAGE);
    let data = rig.put(&k, 13);
    let key = ObjectKey::new(&k).expect("key");
    // A client asks for the cold page and goes away while the node fills it.
    let gone = rig.client();
    let reading = {
        let key = key.clone();
        tokio::spawn(async move { gone.read(&vol(), &key, 0, PAGE).await })
    };
    until_gets(&rig.proxy, 1).await;
    reading.abort(); // drops the client: its endpoint and connection close
    let _ = reading.await;
    let other = rig.client();
    let (bytes, traces) = other.read_traced(&vol(), &key, 0, PAGE).await.expect("read");
    eprintln!(
        "client gone mid-fill: the next client got {:?}; origin GETs {}; pages queued for disk {}",
        traces[0].source,
        rig.s3.get_count(),
        rig.enqueued()
    );
    assert!(bytes == data);
    assert_eq!(rig.s3.get_count(), 1, "the fill was finished, and shared or kept");
    assert_eq!(rig.enqueued(), 1.0, "the node's request outlives its client: the page is written to disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foyer_runs_a_fill_to_the_end_when_every_caller_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = TlsConfig { ca: "x".into(), cert: "x".into(), key: "x".into() };
    let mut config = NodeConfig::local(node_id("a"), dir.path(), tls);
    config.cache = small_cache();
    let metrics = cache_node::metrics::NodeMetrics::new(Vec::new());
    let store = PageStore::open(&config, &metrics).await.expect("open");
    let key = PageKey { volume: vol(), key: ObjectKey::new("k").expect("key"), page: 0 };
    let fills = Arc::new(AtomicU64::new(0));
    let fill = |fills: Arc<AtomicU64>| async move {
        fills.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, Failure>(Page { object_size: 3, etag: None, digest: 0, bytes: Bytes::from_static(b"abc") })
    };
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (store, key, fill) = (store.clone(), key.clone(), fill(fills.clone()));
            tokio::spawn(async move { store.get_or_fill(&key, fill).await.map(|(e, t)| (e.value().bytes.clone(), t)) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for c in &callers {
        c.abort();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cached = store.memory_get("vol1", "k", 0).map(|e| e.value().bytes.clone());
    eprintln!(
        "all 10 callers dropped mid-fill: fills run {}; page in memory after: {cached:?}",
        fills.load(Ordering::Relaxed)
    );
    assert_eq!(fills.load(Ordering::Relaxed), 1);
    assert_eq!(cached, Some(Bytes::from_static(b"abc")), "the fill ran to the end without any caller");
    store.close().await.expect("close");
}
