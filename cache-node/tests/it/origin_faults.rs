//! Scenario 5: the origin misbehaves. A `cache-node` process fills pages from the in-process S3
//! origin while its fault switch ([`Fault`]) answers 404, 500 or 503, hangs, drips, cuts or
//! corrupts GetObject answers; the client reads through the node and falls back to the origin.
//!
//! Each test checks the rule: a read returns exactly the origin's bytes or a typed error, ends
//! within a bounded time, costs the origin a counted number of GETs, and leaves nothing bad in the
//! cache (once the fault is cleared, the next read is a fill from the origin with the right bytes).
//! Figures are printed (`--no-capture`) for the record.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_client::{
    Client, ReadError,
    config::OriginConfig,
    origin::{OriginChain, OriginError},
    stats::Source,
};
use cache_proto::{key::ObjectKey, units::Span, wire::Tier};
use cache_testkit::Fault;
use cache_testkit::cluster::*;

/// Origin settings of these clusters: a short stall deadline and two retries, so that a fault
/// costs at most three requests per asker and a hang ends in about 3 × 400 ms plus backoff.
const STALL: Duration = Duration::from_millis(400);
const RETRIES: u64 = 2;
/// Requests per asker for a fault that is retried until the retries run out.
const ATTEMPTS: u64 = 1 + RETRIES;

fn tuning(origin_timeout: Duration) -> OriginTuning {
    OriginTuning {
        origin_timeout,
        configure_origin: |o| {
            o.stall_timeout = Span(STALL);
            o.retries = RETRIES as u32;
            o.retry_timeout = Span(Duration::from_secs(5));
        },
        ..OriginTuning::default()
    }
}

/// A cold JuiceFS block of one whole page at the origin.
fn block(cluster: &Cluster, slice: u64) -> (ObjectKey, Bytes) {
    let k = block_key(slice, 0, PAGE);
    let data = cluster.put(&k, slice, PAGE);
    (key(&k), data)
}

/// Origin GETs and time spent by `read`.
async fn measured<T>(cluster: &Cluster, read: impl Future<Output = T>) -> (T, u64, Duration) {
    let (gets, began) = (cluster.s3.get_count(), Instant::now());
    let out = read.await;
    (out, cluster.s3.get_count() - gets, began.elapsed())
}

fn fallbacks(client: &Client, reason: &str) -> u64 {
    client.stats().snapshot().get(&format!("fallback_{reason}")).copied().unwrap_or(0)
}

/// Once the origin is healthy, the page is read again: a node fill (not a cached failure, not a
/// cached bad page), one GET, the origin's bytes.
async fn heals(cluster: &Cluster, client: &Client, k: &ObjectKey, data: &Bytes) {
    cluster.s3.clear_faults();
    let (read, gets, _) = measured(cluster, client.read_traced(&vol(), k, 0, PAGE)).await;
    let (bytes, traces) = read.expect("read once the origin is healthy");
    assert_eq!(&bytes, data);
    assert!(matches!(traces[0].source, Source::Node { tier: Tier::Origin, .. }), "{traces:?}");
    assert_eq!(gets, 1);
    let (again, gets, _) = measured(cluster, client.read_traced(&vol(), k, 0, PAGE)).await;
    let (bytes, traces) = again.expect("second read");
    assert_eq!((&bytes, gets), (data, 0));
    assert!(matches!(traces[0].source, Source::Node { tier: Tier::Memory, .. }), "{traces:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_costs_one_get_per_asker_and_is_never_retried() {
    let cluster = Cluster::start_tuned(&["a"], tuning(Duration::from_secs(3))).await;
    let client = cluster.client();

    // A key no origin has: the node answers NotFound; the client checks the origin itself once.
    let missing = key(&block_key(1, 0, PAGE));
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &missing, 0, PAGE)).await;
    eprintln!("404 (missing key): {gets} GETs, {took:?}");
    assert!(matches!(read, Err(ReadError::Origin(OriginError::NotFound { .. }))), "{read:?}");
    assert_eq!(gets, 2, "one GET by the node, one by the client's fallback, none retried");
    assert_eq!(fallbacks(&client, "refused_not_found"), 1, "the node answered NotFound");

    // An object the origin has but answers 404 for (deleted, or a replica behind): the same.
    let (k, data) = block(&cluster, 2);
    cluster.s3.fail_always(Fault::NotFound);
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &k, 0, PAGE)).await;
    eprintln!("404 (injected): {gets} GETs, {took:?}");
    assert!(matches!(read, Err(ReadError::Origin(OriginError::NotFound { .. }))), "{read:?}");
    assert_eq!((gets, cluster.s3.faults_injected()), (2, 2));
    assert_eq!(fallbacks(&client, "refused_not_found"), 2);
    heals(&cluster, &client, &k, &data).await;

    // The origin chain alone, with retries configured: a 404 is one GET.
    let chain = OriginChain::from_config(&[origin(&cluster)]).expect("chain");
    let (read, gets, _) = measured(&cluster, chain.get_range(&missing, 0..PAGE)).await;
    assert!(matches!(read, Err(OriginError::NotFound { .. })), "{read:?}");
    assert_eq!(gets, 1);
}

/// The cluster's origin as the chain's only entry, with the test settings.
fn origin(cluster: &Cluster) -> OriginConfig {
    OriginConfig {
        stall_timeout: cache_proto::units::Span(STALL),
        retries: RETRIES as u32,
        ..cluster.s3.origin_config(BUCKET, VOLUME)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_once_for_all_concurrent_readers() {
    const READERS: usize = 32;
    let cluster = Cluster::start_tuned(&["a"], tuning(Duration::from_secs(3))).await;
    let client = cluster.client();
    for (slice, fault) in [(10, Fault::InternalError), (11, Fault::SlowDown)] {
        let (k, data) = block(&cluster, slice);
        let faulted = cluster.s3.faults_injected();
        cluster.s3.fail_next(fault, RETRIES);
        // Each reader asks for its own 128 KiB of the page, as random reads of a block do.
        const PART: u64 = 128 << 10;
        let v = vol();
        let at = |i: usize| i as u64 * PART % PAGE;
        let reads = futures::future::join_all((0..READERS).map(|i| client.read_traced(&v, &k, at(i), PART)));
        let (reads, gets, took) = measured(&cluster, reads).await;
        eprintln!("{fault:?} x{RETRIES}, {READERS} readers of a cold page: {gets} GETs, {took:?}");
        for (i, read) in reads.into_iter().enumerate() {
            let (bytes, traces) = read.expect("the retry within the budget succeeds");
            assert_eq!(bytes, data.slice(at(i) as usize..(at(i) + PART) as usize));
            assert!(matches!(traces[0].source, Source::Node { .. }), "no fallback: {traces:?}");
        }
        assert_eq!(cluster.s3.faults_injected() - faulted, RETRIES);
        assert_eq!(gets, ATTEMPTS, "one fill for all readers: the failed GETs and the one that worked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_fail_typed_after_the_retry_budget() {
    const READERS: u64 = 32;
    let cluster = Cluster::start_tuned(&["a"], tuning(Duration::from_secs(3))).await;
    let client = cluster.client();
    let (k, data) = block(&cluster, 20);
    cluster.s3.fail_always(Fault::SlowDown);
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &k, 0, PAGE)).await;
    eprintln!("SlowDown always, one reader: {gets} GETs, {took:?}");
    match &read {
        Err(ReadError::Origin(e @ OriginError::Other { .. })) => assert!(e.to_string().contains("503"), "{e}"),
        other => panic!("expected the origin's 503, got {other:?}"),
    }
    assert_eq!(gets, 2 * ATTEMPTS, "the node's fill and the client's fallback, each retried {RETRIES} times");
    assert_eq!(fallbacks(&client, "refused_origin_failed"), 1);
    assert!(took < Duration::from_secs(3), "well inside the deadlines: {took:?}");

    // Many readers at once: the node still sends one fill, but each reader's fallback is its own.
    let v = vol();
    let reads = futures::future::join_all((0..READERS).map(|_| client.read(&v, &k, 0, PAGE)));
    let (reads, gets, took) = measured(&cluster, reads).await;
    eprintln!("SlowDown always, {READERS} readers: {gets} GETs, {took:?}");
    assert!(reads.iter().all(|r| matches!(r, Err(ReadError::Origin(OriginError::Other { .. })))));
    // Askers: each reader's own fallback, the node's fill, and the node's one retry by a waiter
    // that takes over a failed fill.
    assert!(gets <= (2 + READERS) * ATTEMPTS, "at most {ATTEMPTS} GETs per asker: {gets}");
    heals(&cluster, &client, &k, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_origin_fails_at_the_stall_deadline_and_caches_nothing() {
    let cluster = Cluster::start_tuned(&["a"], tuning(Duration::from_secs(3))).await;
    let client = cluster.client();

    // One hung answer: the stall deadline ends it and the retry gets the page.
    let (k, data) = block(&cluster, 30);
    cluster.s3.fail_next(Fault::Hang, 1);
    let (read, gets, took) = measured(&cluster, client.read_traced(&vol(), &k, 0, PAGE)).await;
    eprintln!("one hang: {gets} GETs, {took:?}");
    let (bytes, traces) = read.expect("the retry after the stall succeeds");
    assert_eq!(bytes, data);
    assert!(matches!(traces[0].source, Source::Node { tier: Tier::Origin, .. }), "{traces:?}");
    assert_eq!(gets, 2);
    assert!(took >= STALL, "{took:?}");

    // An origin that never answers: each asker gives up after its attempts have stalled.
    let (k, data) = block(&cluster, 31);
    cluster.s3.fail_always(Fault::Hang);
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &k, 0, PAGE)).await;
    eprintln!("hang always: {gets} GETs, {took:?}");
    assert!(matches!(read, Err(ReadError::Origin(OriginError::Stalled { .. }))), "{read:?}");
    assert_eq!(gets, 2 * ATTEMPTS, "the node's attempts, then the client's");
    assert_eq!(fallbacks(&client, "refused_origin_failed"), 1);
    // Each asker: 3 stalls of 400 ms and at most 0.3 s of backoff, under its 3 s origin_timeout.
    assert!(took >= 2 * ATTEMPTS as u32 * STALL, "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    heals(&cluster, &client, &k, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_origin_ends_at_the_callers_deadline_and_caches_nothing() {
    const DEADLINE: Duration = Duration::from_millis(1500);
    let cluster = Cluster::start_tuned(&["a"], tuning(DEADLINE)).await;
    let client = cluster.client();
    let (k, data) = block(&cluster, 40);
    // 16 KiB every 100 ms: never a stall, but 4 MiB would take 26 s.
    cluster.s3.fail_always(Fault::Drip { chunk: 16 << 10, every: Duration::from_millis(100) });
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &k, 0, PAGE)).await;
    eprintln!("drip always: {gets} GETs, {took:?}");
    assert!(matches!(read, Err(ReadError::OriginTimeout { .. })), "{read:?}");
    assert_eq!(fallbacks(&client, "refused_origin_failed"), 1, "the node's fill hit its origin_timeout");
    assert_eq!(gets, 2, "one GET each for the node and the client, cut by their deadlines");
    assert!(took >= 2 * DEADLINE && took < 2 * DEADLINE + Duration::from_secs(2), "{took:?}");
    heals(&cluster, &client, &k, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_body_is_resumed_or_fails_typed_and_caches_nothing() {
    let cluster = Cluster::start_tuned(&["a"], tuning(Duration::from_secs(3))).await;
    let client = cluster.client();

    // One cut answer: object_store asks for the rest (same ETag) and the page is whole.
    let (k, data) = block(&cluster, 50);
    cluster.s3.fail_next(Fault::Truncate { keep: 1 << 20 }, 1);
    let (read, gets, took) = measured(&cluster, client.read_traced(&vol(), &k, 0, PAGE)).await;
    eprintln!("one cut body: {gets} GETs, {took:?}");
    let (bytes, traces) = read.expect("the resumed body completes the page");
    assert_eq!(bytes, data);
    assert!(matches!(traces[0].source, Source::Node { tier: Tier::Origin, .. }), "{traces:?}");
    assert_eq!(gets, 2);

    // Every answer cut after 64 KiB: the resumes run out and the read fails, typed.
    let (k, data) = block(&cluster, 51);
    cluster.s3.fail_always(Fault::Truncate { keep: 64 << 10 });
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &k, 0, PAGE)).await;
    eprintln!("cut always: {gets} GETs, {took:?}");
    match read {
        Err(ReadError::Origin(OriginError::Truncated { expected, got, .. })) => {
            // Each resume starts where the last body broke; what arrived of each cut body varies.
            assert_eq!(expected, PAGE);
            assert!(got > 0 && got <= ATTEMPTS * (64 << 10), "{got}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert_eq!(gets, 2 * ATTEMPTS);
    assert_eq!(fallbacks(&client, "refused_origin_failed"), 1);
    heals(&cluster, &client, &k, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_body_fails_its_etag_and_is_never_cached() {
    let cluster = Cluster::start_tuned(&["a"], tuning(Duration::from_secs(3))).await;
    let client = cluster.client();

    // Every answer has one byte flipped: the node and the client both see the MD5 differ from
    // the ETag; no retry (the same path may flip it again), nothing cached.
    let (k, data) = block(&cluster, 60);
    cluster.s3.fail_always(Fault::Corrupt { at: 1000 });
    let (read, gets, took) = measured(&cluster, client.read(&vol(), &k, 0, PAGE)).await;
    eprintln!("corrupt always: {gets} GETs, {took:?}");
    assert!(matches!(read, Err(ReadError::Origin(OriginError::Corrupt { .. }))), "{read:?}");
    assert_eq!(gets, 2);
    assert_eq!(fallbacks(&client, "refused_origin_failed"), 1);
    heals(&cluster, &client, &k, &data).await;

    // One corrupt answer: the node refuses it, the client's own origin read is whole and right.
    let (k, data) = block(&cluster, 61);
    cluster.s3.fail_next(Fault::Corrupt { at: PAGE - 1 }, 1);
    let (read, gets, took) = measured(&cluster, client.read_traced(&vol(), &k, 0, PAGE)).await;
    eprintln!("one corrupt answer: {gets} GETs, {took:?}");
    let (bytes, traces) = read.expect("the fallback reads the right bytes");
    assert_eq!(bytes, data);
    assert_eq!(traces[0].source, Source::Origin, "{traces:?}");
    assert_eq!(gets, 2);
    heals(&cluster, &client, &k, &data).await;
}
