//! A client reading whole 4 MiB pages from one node over QUIC on 127.0.0.1, all memory hits, with
//! 1 and 8 reads in flight, side by side with bare quinn moving the same bytes (4 MiB per stream,
//! 1 and 8 streams in flight) between two endpoints with the same mutual TLS: `bare_quinn` with
//! the same transport config as the cache, `bare_quinn_default` with quinn's defaults (the
//! stretch target compares against that one). DESIGN.md §7: a page served from memory should come close to what quinn itself
//! moves over loopback on one connection; the gap is the cost of the cache's own work (wire
//! frames, lookup, digest check, the client's copy into one buffer).
//!
//! Client, node, origin and the bare endpoints share one multi-thread tokio runtime, as they
//! would share the cores of one host. Each iteration moves `inflight` pages: `inflight` tasks read
//! in a loop until each has done its share, so `inflight` requests are outstanding throughout.

use std::sync::Arc;

use bench::{BareConfig, BarePair, Loopback, PAGE, content, in_flight, runtime};
use cache_client::stats::Source;
use cache_proto::wire::Tier;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Objects (of one page each) the cache path cycles through: 32 MiB, all in memory.
const OBJECTS: u64 = 8;
const IN_FLIGHT: [u64; 2] = [1, 8];

fn loopback(c: &mut Criterion) {
    let rt = runtime();
    let (cache, bares) = rt.block_on(async {
        let cache = Loopback::start(OBJECTS, "128MiB").await.expect("start origin, node and client");
        cache.warm().await.expect("warm the cache");
        // Check once that reads now come from the node's memory, not from disk or the origin.
        for key in &cache.keys {
            let (_, traces) = cache.client.read_traced(&cache.volume, key, 0, PAGE).await.expect("read");
            assert!(
                traces.iter().all(|t| matches!(&t.source, Source::Node { tier: Tier::Memory, .. })),
                "{key}: expected a memory hit, got {traces:?}"
            );
        }
        let bare = BarePair::start(content(0, PAGE), BareConfig::Ours).await.expect("start bare quinn pair");
        let default = BarePair::start(content(0, PAGE), BareConfig::QuinnDefault).await.expect("start default pair");
        (Arc::new(cache), [("bare_quinn", Arc::new(bare)), ("bare_quinn_default", Arc::new(default))])
    });

    let mut g = c.benchmark_group("loopback_4MiB");
    g.sample_size(20);
    for n in IN_FLIGHT {
        g.throughput(Throughput::Bytes(n * PAGE));
        g.bench_with_input(BenchmarkId::new("mirrorcache", format!("inflight={n}")), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                let cache = cache.clone();
                async move {
                    in_flight(n, iters, move |i| {
                        let cache = cache.clone();
                        async move { cache.read(i).await.map(drop) }
                    })
                    .await
                    .expect("cache reads")
                }
            })
        });
        for (name, bare) in &bares {
            g.bench_with_input(BenchmarkId::new(*name, format!("inflight={n}")), &n, |b, &n| {
                b.to_async(&rt).iter_custom(|iters| {
                    let bare = bare.clone();
                    async move {
                        in_flight(n, iters, move |_| {
                            let bare = bare.clone();
                            async move {
                                let bytes = bare.fetch(PAGE as u32).await?;
                                anyhow::ensure!(bytes.len() as u64 == PAGE, "bare quinn moved {} bytes", bytes.len());
                                Ok(())
                            }
                        })
                        .await
                        .expect("bare quinn streams")
                    }
                })
            });
        }
    }
    g.finish();

    // Every measured read must have been a memory hit: no disk hits, no fallback to the origin.
    let stats = cache.client.stats().snapshot();
    eprintln!("client counters after the run: {stats:?}");
    let bad: Vec<_> = stats
        .iter()
        .filter(|(k, v)| **v > 0 && !matches!(k.as_str(), "pages_node_memory" | "pages_node_miss"))
        .collect();
    assert!(bad.is_empty() && stats["pages_node_miss"] == OBJECTS, "reads left the memory tier: {stats:?}");
    rt.block_on(async {
        if let Ok(cache) = Arc::try_unwrap(cache) {
            cache.shutdown().await;
        }
        for (_, bare) in bares {
            if let Ok(bare) = Arc::try_unwrap(bare) {
                bare.close().await;
            }
        }
    });
}

criterion_group!(benches, loopback);
criterion_main!(benches);

/// The node binary's allocator (see `cache-node/src/main.rs`), so the bench measures what it runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
