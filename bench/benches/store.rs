//! The page store alone (no QUIC, no node): `get_or_fill` hits of 4 MiB pages from the memory
//! tier and from the disk tier of the foyer hybrid cache. A memory hit should cost a lookup and a
//! reference count, whatever the page size; a disk hit should come close to what the disk reads
//! (DESIGN.md §7). Before measuring, each case checks once that its reads really hit the tier it
//! is named after.
//!
//! The store reads its disk tier with O_DIRECT (`[cache] direct_io`, on by default), so
//! `disk_hit` measures foyer's block engine read path (pread into an aligned buffer, foyer's
//! checksum, the decode copy into a new page) against the device, not the OS page cache.

use std::{hint::black_box, time::Duration};

use bench::{PAGE, block_key, content, open_store, runtime, volume};
use cache_node::{
    lookup::Failure,
    store::{Page, PageKey, PageStore},
};
use cache_proto::{digest::page_digest, wire::Tier};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use tokio::runtime::Runtime;

/// The disk case reads pages in turn with room for one in memory, so each read misses memory.
const DISK_PAGES: u64 = 8;
const MEMORY_PAGES: u64 = 4;

fn key(i: u64) -> PageKey {
    PageKey { volume: volume(), key: block_key(2000 + i, 0, PAGE), page: 0 }
}

fn page(i: u64) -> Page {
    let bytes = content(i, PAGE);
    let k = key(i);
    Page { object_size: PAGE, etag: None, digest: page_digest(&k.volume, &k.key, 0, 0, &bytes), bytes }
}

/// Reads page `i`; a fill (a miss) gives back a page anyway, but with tier `Origin`.
async fn get(store: &PageStore, i: u64) -> Tier {
    let fill = page(i);
    let (entry, tier) = store.get_or_fill(&key(i), async { Ok::<_, Failure>(fill) }).await.expect("store answers");
    assert_eq!(entry.value().bytes.len() as u64, PAGE);
    tier
}

/// Fills pages `0..n`, then reads them in turn until every read of a round comes from `want`
/// (disk writes are asynchronous), or panics after a few seconds.
async fn fill_and_check(store: &PageStore, n: u64, want: Tier) {
    for i in 0..n {
        assert_eq!(get(store, i).await, Tier::Origin, "page {i} starts empty");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut tiers = Vec::new();
        for i in 0..n {
            tiers.push(get(store, i).await);
        }
        if tiers.iter().all(|&t| t == want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "wanted {want:?} hits, got {tiers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Measures hits of pages `0..n` in turn, asserting each comes from `tier`. The fill would fail:
/// a miss while measuring is a panic, not a silently slower sample. The turn goes on across
/// criterion's samples, so no sample starts on the page the one before it ended with.
fn bench_hits(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, name: &str, store: &PageStore, n: u64, tier: Tier) {
    let keys: Vec<PageKey> = (0..n).map(key).collect();
    let mut i = 0;
    g.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % keys.len();
            let key = &keys[i];
            async move {
                let miss = async { Err::<Page, _>(Failure::Origin("miss while measuring hits".into())) };
                let (entry, got) = store.get_or_fill(key, miss).await.expect("hit");
                assert_eq!(got, tier);
                black_box(entry)
            }
        })
    });
}

fn store(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("store_4MiB");
    g.throughput(Throughput::Bytes(PAGE));

    // Memory: room for 16 pages, 4 used.
    let dir = tempfile::tempdir().expect("tempdir");
    let mem = rt.block_on(async {
        let store = open_store(dir.path(), "64MiB", "512MiB").await.expect("open store");
        fill_and_check(&store, MEMORY_PAGES, Tier::Memory).await;
        store
    });
    bench_hits(&mut g, &rt, "memory_hit", &mem, MEMORY_PAGES, Tier::Memory);
    rt.block_on(mem.close()).expect("close memory store");

    // Disk: memory holds one page (8 MiB < two pages and their overhead), so reading 8 pages in
    // turn makes every read a disk hit that evicts the page read before it.
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = rt.block_on(async {
        let store = open_store(dir.path(), "8MiB", "512MiB").await.expect("open store");
        fill_and_check(&store, DISK_PAGES, Tier::Disk).await;
        store
    });
    g.sample_size(20);
    bench_hits(&mut g, &rt, "disk_hit", &disk, DISK_PAGES, Tier::Disk);
    rt.block_on(disk.close()).expect("close disk store");
    g.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);

/// The node binary's allocator (see `cache-node/src/main.rs`), so the bench measures what it runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
