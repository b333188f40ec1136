//! The origin chain against real stores: an in-process S3 server (s3s + s3s-fs over loopback, SigV4) and a
//! local directory. Objects are shaped like JuiceFS blocks: a full 4 MiB block and a short last block.

use bytes::Bytes;
use cache_client::{
    config::OriginConfig,
    origin::{OriginChain, OriginError, OriginRead},
};
use cache_proto::key::ObjectKey;
use cache_testkit::{S3Origin, content};
use object_store::{ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path as StorePath};
use s3s::crypto::{Checksum as _, Md5};

const AK: &str = "AKIAMIRRORCACHETEST";
const SK: &str = "mirrorcache-test-secret-key";
const BLOCK: u64 = 4 << 20;
const FULL_KEY: &str = "myjfs/chunks/0/0/1234_0_4194304";
const PART_KEY: &str = "myjfs/chunks/0/0/1235_0_1048699";
const PART_LEN: u64 = (1 << 20) + 123;

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).expect("valid key")
}

fn md5_hex(data: &[u8]) -> String {
    Md5::checksum(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn file_origin(dir: &std::path::Path) -> OriginConfig {
    OriginConfig::new(format!("file://{}", dir.display())) // temp dirs need no percent-encoding
}

/// The range cases every store must agree on; `check_etag` compares the ETag with the MD5 (S3 only).
async fn check_ranges(chain: &OriginChain, full: &Bytes, part: &Bytes, check_etag: bool) {
    let (fk, pk) = (key(FULL_KEY), key(PART_KEY));

    let r = chain.get_range(&fk, 0..BLOCK).await.expect("full block");
    assert_eq!(r.bytes, *full);
    assert_eq!((r.object_size, r.origin), (BLOCK, 0));
    let etag = r.etag.clone().expect("an ETag");
    if check_etag {
        assert_eq!(etag.trim_matches('"'), md5_hex(full));
    }

    let r = chain.get_range(&fk, 1000..70_000).await.expect("sub-range");
    assert_eq!(r.bytes, full.slice(1000..70_000));
    assert_eq!((r.object_size, r.etag.as_deref()), (BLOCK, Some(etag.as_str())));

    let r = chain.get_range(&fk, BLOCK - 10..BLOCK + 100).await.expect("clamped tail");
    assert_eq!(r.bytes, full.slice(BLOCK as usize - 10..));

    // The short last block, read as a whole page, and a page-sized range inside it.
    let r = chain.get_range(&pk, 0..BLOCK).await.expect("clamped short block");
    assert_eq!((r.bytes.len() as u64, r.object_size), (PART_LEN, PART_LEN));
    assert_eq!(r.bytes, *part);
    let r = chain.get_range(&pk, 1 << 20..(1 << 20) + BLOCK).await.expect("clamped tail of short block");
    assert_eq!(r.bytes, part.slice(1 << 20..));

    // Starting exactly at the end, or an empty range: no bytes, but the size.
    for range in [PART_LEN..PART_LEN + BLOCK, 10..10] {
        let r = chain.get_range(&pk, range.clone()).await.expect("empty read");
        assert!(r.bytes.is_empty(), "{range:?}");
        assert_eq!(r.object_size, PART_LEN);
    }

    match chain.get_range(&pk, PART_LEN + 1..PART_LEN + 10).await {
        Err(e @ OriginError::OutOfRange { .. }) => {
            assert!(e.to_string().contains(PART_KEY), "{e}");
            let OriginError::OutOfRange { start, size, .. } = e else { unreachable!() };
            assert_eq!((start, size), (PART_LEN + 1, PART_LEN));
        }
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    match chain.get_range(&fk, 2 * BLOCK..3 * BLOCK).await {
        Err(OriginError::OutOfRange { start, size, .. }) => assert_eq!((start, size), (2 * BLOCK, BLOCK)),
        other => panic!("expected OutOfRange, got {other:?}"),
    }

    let missing = "myjfs/chunks/0/0/9999_0_4194304";
    match chain.get_range(&key(missing), 0..BLOCK).await {
        Err(e @ OriginError::NotFound { .. }) => assert!(e.to_string().contains(missing), "{e}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

struct World {
    _dir: tempfile::TempDir,
    s3: S3Origin,
    full: Bytes,
    part: Bytes,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Origin::start(&dir.path().join("s3"), AK, SK).await.expect("start S3 origin");
    let (full, part) = (content(1, BLOCK), content(2, PART_LEN));
    s3.put("bucket", &format!("prefix/{FULL_KEY}"), &full).expect("put");
    s3.put("bucket", &format!("prefix/{PART_KEY}"), &part).expect("put");
    World { _dir: dir, s3, full, part }
}

#[tokio::test]
async fn s3_origin_ranges() {
    let w = world().await;
    let chain = OriginChain::from_config(&[w.s3.origin_config("bucket", "prefix")]).expect("chain");
    assert_eq!((chain.len(), chain.label(0)), (1, "s3://bucket/prefix"));
    check_ranges(&chain, &w.full, &w.part, true).await;
}

#[tokio::test]
async fn s3_origin_costs_one_get_per_read() {
    let w = world().await;
    let chain = OriginChain::from_config(&[w.s3.origin_config("bucket", "prefix")]).expect("chain");
    for (k, range) in [(FULL_KEY, 0..BLOCK), (FULL_KEY, 5..6), (PART_KEY, 0..BLOCK), (PART_KEY, 100..BLOCK * 2)] {
        let (gets, bytes) = (w.s3.get_count(), w.s3.bytes_served());
        let r = chain.get_range(&key(k), range.clone()).await.expect("read");
        assert_eq!(w.s3.get_count(), gets + 1, "{k} {range:?}");
        assert_eq!(w.s3.bytes_served(), bytes + r.bytes.len() as u64, "{k} {range:?}");
    }
    // Past the end: the refused GET, then a HEAD (not a GET) for the size.
    let gets = w.s3.get_count();
    let r = chain.get_range(&key(PART_KEY), PART_LEN + 1..PART_LEN + 2).await;
    assert!(matches!(r, Err(OriginError::OutOfRange { .. })), "{r:?}");
    assert_eq!(w.s3.get_count(), gets + 1);
}

#[tokio::test]
async fn s3_origin_serves_put_files_like_s3() {
    let w = world().await;
    let store = AmazonS3Builder::new()
        .with_bucket_name("bucket")
        .with_endpoint(w.s3.endpoint())
        .with_region("us-east-1")
        .with_access_key_id(AK)
        .with_secret_access_key(SK)
        .with_allow_http(true)
        .build()
        .expect("store");
    let path = StorePath::from(format!("prefix/{PART_KEY}"));
    let meta = store.head(&path).await.expect("HEAD");
    assert_eq!(meta.size, PART_LEN);
    assert_eq!(meta.e_tag.as_deref().map(|e| e.trim_matches('"')), Some(md5_hex(&w.part).as_str()));
    assert_eq!(store.get_range(&path, 7..77).await.expect("range GET"), w.part.slice(7..77));

    // Overwriting with `put` changes the ETag; an object written with PutObject reads back through the chain.
    let new = content(3, 1000);
    w.s3.put("bucket", &format!("prefix/{PART_KEY}"), &new).expect("overwrite");
    let meta = store.head(&path).await.expect("HEAD");
    assert_eq!((meta.size, meta.e_tag.as_deref().map(|e| e.trim_matches('"'))), (1000, Some(md5_hex(&new).as_str())));
    let via_api = content(4, 5000);
    store.put(&StorePath::from("prefix/api/obj"), PutPayload::from(via_api.clone())).await.expect("PutObject");
    let chain = OriginChain::from_config(&[w.s3.origin_config("bucket", "prefix")]).expect("chain");
    assert_eq!(chain.get_range(&key("api/obj"), 0..BLOCK).await.expect("read").bytes, via_api);
}

#[tokio::test]
async fn chain_falls_through_missing_origins_only() {
    let w = world().await;
    let empty_dir = tempfile::tempdir().expect("tempdir");
    w.s3.put("other", "unrelated", b"x").expect("put");
    let fk = key(FULL_KEY);
    for first in [file_origin(empty_dir.path()), w.s3.origin_config("other", "prefix")] {
        let chain = OriginChain::from_config(&[first.clone(), w.s3.origin_config("bucket", "prefix")]).expect("chain");
        let r: OriginRead = chain.get_range(&fk, 0..BLOCK).await.expect("served by the second origin");
        assert_eq!((r.origin, r.bytes.len() as u64), (1, BLOCK), "{}", first.url);
        assert_eq!(r.bytes, w.full);
    }

    // A refused origin is an error, not a miss: the chain stops there.
    let mut wrong = w.s3.origin_config("bucket", "prefix");
    wrong.secret_access_key = Some("not-the-secret".into());
    for chain in [vec![wrong.clone()], vec![wrong, w.s3.origin_config("bucket", "prefix")]] {
        let chain = OriginChain::from_config(&chain).expect("chain");
        match chain.get_range(&fk, 0..BLOCK).await {
            Err(e @ OriginError::Other { .. }) => {
                let text = e.to_string();
                assert!(text.contains(FULL_KEY) && text.contains("s3://bucket/prefix"), "{text}");
            }
            other => panic!("expected Other, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn file_origin_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (full, part) = (content(1, BLOCK), content(2, PART_LEN));
    for (k, data) in [(FULL_KEY, &full), (PART_KEY, &part)] {
        let path = dir.path().join(k);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    }
    let chain = OriginChain::from_config(&[file_origin(dir.path())]).expect("chain");
    check_ranges(&chain, &full, &part, false).await;
}
