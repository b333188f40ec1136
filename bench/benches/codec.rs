//! Wire codec: encode and decode of a `Get` request frame and of the page response head that
//! answers it, per operation. Every page read pays each of these once on each side, so they must
//! stay far below the microseconds a 4 MiB page takes to move (DESIGN.md §7). Also the page
//! digest over 4 MiB, which the client computes for every page it receives (and the node for
//! every page it fills or reads back from disk), in bytes per second.

use std::hint::black_box;

use bench::{PAGE, block_key, content, volume};
use cache_proto::{
    digest::page_digest,
    wire::{Get, PageHead, Request, RequestKind, ResponseHead, Tier},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A whole-page `Get` of a JuiceFS-shaped key, as the client sends it.
fn get_request() -> Request {
    Request::Get(Get {
        volume: volume(),
        token: bench::TOKEN.into(),
        key: block_key(1_234_567, 0, PAGE),
        page_size: PAGE as u32,
        page: 0,
        start: 0,
        len: PAGE as u32,
    })
}

/// The head of a 4 MiB page answer, with an S3-style ETag.
fn page_head() -> ResponseHead {
    ResponseHead::Page(PageHead {
        object_size: PAGE,
        digest: 0x0123_4567_89ab_cdef,
        len: PAGE as u32,
        epoch: 0x5eed,
        tier: Tier::Memory,
        etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
    })
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));

    let request = get_request();
    let frame = request.encode();
    let (decoded, used) = Request::decode(&frame).expect("decodes").expect("complete frame");
    assert_eq!((&decoded, used), (&request, frame.len()), "request round-trips");
    g.bench_function("get_request/encode", |b| b.iter(|| black_box(&request).encode()));
    g.bench_function("get_request/decode", |b| b.iter(|| Request::decode(black_box(&frame))));

    let head = page_head();
    let frame = head.encode();
    let (decoded, used) = ResponseHead::decode(RequestKind::Get, &frame).expect("decodes").expect("complete head");
    assert_eq!((&decoded, used), (&head, frame.len()), "page head round-trips");
    g.bench_function("page_head/encode", |b| b.iter(|| black_box(&head).encode()));
    g.bench_function("page_head/decode", |b| b.iter(|| ResponseHead::decode(RequestKind::Get, black_box(&frame))));
    g.finish();

    let mut g = c.benchmark_group("digest");
    g.throughput(Throughput::Bytes(PAGE));
    let (volume, key, bytes) = (volume(), block_key(1_234_567, 0, PAGE), content(7, PAGE));
    g.bench_function("page_4MiB", |b| b.iter(|| page_digest(&volume, &key, 0, 0, black_box(&bytes))));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
