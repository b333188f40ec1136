//! Ring lookups: the owner of a page on rings of 3, 10 and 100 equal-weight members, the
//! two-node walk the client does for every page (owner, then fallback), and `page_point` (the
//! xxh3 of volume, key and page) on its own. DESIGN.md §7 wants a lookup well under a
//! microsecond, with no allocation beyond the page itself (`walk` allocates its `seen` vector).

use std::{hint::black_box, net::SocketAddr};

use bench::{PAGE, block_key, volume};
use cache_proto::{
    key::{NodeId, ObjectKey},
    ring::{Member, Ring, page_point},
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Distinct pages looked up in turn, so one cached path through the binary search is not all
/// that is measured. The turn goes on across criterion's samples.
const KEYS: usize = 1024;

fn ring(n: usize) -> Ring {
    Ring::new(
        (0..n)
            .map(|i| Member {
                id: NodeId::new(&format!("node-{i}")).expect("valid id"),
                addr: SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 7000)),
                weight: 1,
            })
            .collect(),
    )
}

fn keys() -> Vec<ObjectKey> {
    (0..KEYS as u64).map(|i| block_key(1_000_000 + i, i % 16, PAGE)).collect()
}

fn ring_benches(c: &mut Criterion) {
    let volume = volume();
    let keys = keys();
    let points: Vec<u64> = keys.iter().map(|k| page_point(&volume, k, 0)).collect();

    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("page_point", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            page_point(black_box(&volume), black_box(&keys[i]), black_box(3))
        })
    });
    for n in [3, 10, 100] {
        let ring = ring(n);
        assert!(ring.owner(points[0]).is_some_and(|o| o < n), "ring of {n} has an owner");
        assert_eq!(ring.walk(points[0]).take(2).count(), 2, "ring of {n} walks to two distinct nodes");
        g.bench_with_input(BenchmarkId::new("owner", format!("members={n}")), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                ring.owner(page_point(&volume, &keys[i], 0))
            })
        });
        g.bench_with_input(BenchmarkId::new("walk2", format!("members={n}")), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                let mut two = ring.walk(black_box(points[i])).take(2);
                (two.next(), two.next())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ring_benches);
criterion_main!(benches);
