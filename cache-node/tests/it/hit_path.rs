//! The node's request handling in-process, from the request frame to the answer: a memory hit
//! allocates nothing (counted by a counting allocator, up to the encoded head and the payload, a
//! slice of the cached page; quinn's own send path is outside the count and is measured by the
//! loopback bench), and a page past an object's end costs the origin nothing once the first page
//! is cached.

// The counting allocator needs `unsafe impl GlobalAlloc`; each use says why it is sound.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    hint::black_box,
};

use cache_client::config::{OriginConfig, TlsConfig, VolumeConfig};
use cache_node::{RunningNode, config::NodeConfig, server::respond};
use cache_proto::{
    key::{NodeId, ObjectKey, Volume},
    units::ByteSize,
    wire::{Get, REQUEST_PREFIX_LEN, Request, RequestKind, ResponseHead, Tier},
};
use cache_testkit::S3Origin;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations made on the calling thread, then defers to the system allocator.
struct Counting;

fn count() {
    // `try_with`: during thread teardown the counter may be gone; those allocations don't matter.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; counting touches only a const-initialised thread-local `Cell`, which neither
// allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const TOKEN: &str = "alloc-test-token-0123";

const KEY: &str = "myjfs/chunks/0/0/1_0_4194304";

/// The request frame (prefix, body) of a `Get` of `[start, +len)` in page `page` of [`KEY`].
fn frame(page: u64, start: u32, len: u32) -> ([u8; REQUEST_PREFIX_LEN], Vec<u8>) {
    let request = Request::Get(Get {
        volume: Volume::new("vol1").expect("v"),
        token: TOKEN.into(),
        key: ObjectKey::new(KEY).expect("k"),
        page_size: 4 << 20,
        page,
        start,
        len,
    });
    let bytes = request.encode();
    let prefix = bytes[..REQUEST_PREFIX_LEN].try_into().expect("prefix");
    (prefix, bytes[REQUEST_PREFIX_LEN..].to_vec())
}

/// A one-node config over the origin at `endpoint`, everything under `d`.
fn node_config(d: &std::path::Path, endpoint: &str) -> NodeConfig {
    let id = NodeId::new("a").expect("valid node id");
    let mut config = NodeConfig::local(id, d.join("data"), TlsConfig::in_dir(&d.join("certs"), "a"));
    config.cache.memory_capacity = ByteSize::mib(64);
    config.cache.disk_capacity = ByteSize::mib(512);
    let origin = OriginConfig {
        endpoint: Some(endpoint.into()),
        access_key_id: Some("AKIAALLOC".into()),
        secret_access_key: Some("alloc-secret".into()),
        allow_http: true,
        ..OriginConfig::new("s3://bucket/vol1")
    };
    config.volume = vec![VolumeConfig::new(Volume::new("vol1").expect("v"), TOKEN, vec![origin])];
    config
}

/// An origin holding [`KEY`] with `object_len` bytes and one node in front of it, under `d`.
async fn one_node(d: &std::path::Path, object_len: usize) -> (S3Origin, RunningNode) {
    cachectl::certs::generate(&d.join("certs"), &["a"], &["client"], 30).expect("certs");
    let s3 = S3Origin::start(&d.join("origin"), "AKIAALLOC", "alloc-secret").await.expect("origin");
    s3.put("bucket", &format!("vol1/{KEY}"), &vec![42u8; object_len]).expect("put");
    let config = node_config(d, &s3.endpoint());
    let node = RunningNode::start(config).await.expect("node");
    (s3, node)
}

#[test]
fn a_memory_hit_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_s3, node) = one_node(dir.path(), 4 << 20).await;
        let service = node.service().clone();

        for (start, len) in [(0, 4 << 20), (1 << 20, 128 << 10)] {
            let (prefix, body) = frame(0, start, len);
            // The first answer fills the page; the next is a memory hit.
            for expect in [Tier::Origin, Tier::Memory] {
                let answer = respond(&service, &prefix, &body, None).await;
                let head = ResponseHead::decode(RequestKind::Get, answer.head()).expect("decodes").expect("whole");
                let ResponseHead::Page(head) = head.0 else { panic!("not a page: {head:?}") };
                if start == 0 {
                    assert_eq!(head.tier, expect);
                }
                assert_eq!(answer.into_payload().await.expect("filled").len(), len as usize);
            }
            let before = allocations();
            for _ in 0..100 {
                let answer = respond(&service, &prefix, &body, None).await;
                black_box(answer.head());
                black_box(&answer.payload);
            }
            let per_hit = (allocations() - before) as f64 / 100.0;
            assert_eq!(per_hit, 0.0, "allocations per memory hit of [{start}, +{len})");
        }
        node.shutdown(std::time::Duration::from_secs(5)).await;
    });
}

/// A request for a page past an object's end is answered from the cached first page's size,
/// without asking the origin again (it would cost a GET and a HEAD each time).
#[test]
fn pages_past_the_end_are_answered_from_the_cached_size() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s3, node) = one_node(dir.path(), 1 << 20).await;
        let service = node.service().clone();
        let request = |page| frame(page, 0, 4 << 20);
        let (prefix, body) = request(0);
        respond(&service, &prefix, &body, None).await.into_payload().await.expect("filled");
        let gets = s3.get_count();
        for page in [1, 2, 1000] {
            let (prefix, body) = request(page);
            let answer = respond(&service, &prefix, &body, None).await;
            let (head, _) = ResponseHead::decode(RequestKind::Get, answer.head()).expect("decodes").expect("whole");
            let ResponseHead::Page(head) = head else { panic!("not a page: {head:?}") };
            assert_eq!((head.len, head.object_size), (0, 1 << 20), "page {page}");
        }
        assert_eq!(s3.get_count(), gets, "no origin request for pages past the end");
        node.shutdown(std::time::Duration::from_secs(5)).await;
    });
}
