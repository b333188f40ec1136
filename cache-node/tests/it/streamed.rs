//! A miss is streamed: the node that fills a page from the origin forwards its bytes to the
//! asking client as they arrive, and sends the digest after them (wire `Status::Streamed`).
//! A real `cache-node` process, the in-process S3 origin dripping its bodies (its fault switch,
//! so that "while the origin still sends" lasts long enough to look at), real QUIC.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cache_client::{
    config::TlsConfig,
    stats::Source,
    tls::{TlsFiles, client_config, transport_config},
};
use cache_proto::{
    digest::page_digest,
    wire::{
        Get, PageHead, RESPONSE_PREFIX_LEN, Request, ResponseHead, Status, TRAILER_LEN, Tier, Warm, WarmMode,
        WarmOutcome,
    },
};
use cache_testkit::Fault;
use cache_testkit::cluster::*;

async fn connect(cluster: &Cluster) -> quinn::Connection {
    let certs = cluster.path("certs");
    let files = TlsFiles::load(&TlsConfig {
        ca: certs.join("ca.pem"),
        cert: certs.join("client.pem"),
        key: certs.join("client.key"),
    })
    .expect("certificates");
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).expect("client endpoint");
    endpoint.set_default_client_config(client_config(&files, Arc::new(transport_config())).expect("client config"));
    let node = &cluster.nodes[0];
    endpoint.connect(node.quic, &node.id).expect("connect").await.expect("handshake")
}

fn get(k: &str, start: u32, len: u32) -> Get {
    Get { volume: vol(), token: TOKEN.into(), key: key(k), page_size: PAGE as u32, page: 0, start, len }
}

/// Sends `request` on a new stream and reads the answer's head.
async fn ask(conn: &quinn::Connection, request: &Request) -> (Status, ResponseHead, quinn::RecvStream) {
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&request.encode()).await.expect("request");
    send.finish().expect("finish");
    let mut prefix = [0u8; RESPONSE_PREFIX_LEN];
    recv.read_exact(&mut prefix).await.expect("prefix");
    let (status, len) = ResponseHead::parse_prefix(&prefix).expect("valid prefix");
    let mut head = vec![0u8; len];
    recv.read_exact(&mut head).await.expect("head");
    (status, ResponseHead::decode_head(request.kind(), status, &head).expect("head decodes"), recv)
}

fn page_head(head: ResponseHead) -> PageHead {
    match head {
        ResponseHead::Page(p) => p,
        other => panic!("expected a page head, got {other:?}"),
    }
}

async fn is_cached(conn: &quinn::Connection, k: &str) -> bool {
    let request = Request::Warm(Warm {
        volume: vol(),
        token: TOKEN.into(),
        key: key(k),
        page_size: PAGE as u32,
        page: 0,
        mode: WarmMode::Check,
    });
    match ask(conn, &request).await.1 {
        ResponseHead::Warm { outcome, .. } => outcome == WarmOutcome::Present,
        other => panic!("expected a warm answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_reaches_the_client_while_the_origin_still_sends_it() {
    let cluster = Cluster::start(&["a"]).await;
    let k = block_key(70, 0, PAGE);
    let data = cluster.put(&k, 70, PAGE);
    // One chunk of s3s-fs's body (a few KiB) every 2 ms: the origin takes seconds for the whole
    // page, inside the node's 10 s origin deadline.
    cluster.s3.fail_always(Fault::Drip { chunk: 16 << 10, every: Duration::from_millis(2) });
    let conn = connect(&cluster).await;

    let (status, head, mut recv) = ask(&conn, &Request::Get(get(&k, 0, PAGE as u32))).await;
    assert_eq!(status, Status::Streamed);
    let head = page_head(head);
    assert_eq!((head.len as u64, head.object_size, head.tier), (PAGE, PAGE, Tier::Origin));

    // The first bytes are here while the fill is not done: the page is not cached yet.
    let mut first = vec![0u8; 256 << 10];
    recv.read_exact(&mut first).await.expect("first bytes");
    assert_eq!(first, data[..256 << 10]);
    assert!(!is_cached(&conn, &k).await, "the page was cached before its first bytes reached the client");

    let mut rest = vec![0u8; PAGE as usize - first.len()];
    recv.read_exact(&mut rest).await.expect("the rest of the page");
    assert_eq!(rest, data[256 << 10..]);
    let mut trailer = [0u8; TRAILER_LEN];
    recv.read_exact(&mut trailer).await.expect("the digest after the bytes");
    assert_eq!(u64::from_be_bytes(trailer), page_digest(VOLUME, &k, 0, 0, &data));
    assert!(recv.read_to_end(1).await.expect("end of the stream").is_empty());

    // Filled once: the next Get is a memory hit with its digest in the head, and no new GET.
    let gets = cluster.s3.get_count();
    let (status, head, _) = ask(&conn, &Request::Get(get(&k, 0, PAGE as u32))).await;
    let head = page_head(head);
    assert_eq!((status, head.tier, cluster.s3.get_count()), (Status::Ok, Tier::Memory, gets));
    assert_eq!(head.digest, page_digest(VOLUME, &k, 0, 0, &data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_pieces_are_the_origins_bytes() {
    let cluster = Cluster::start(&["a"]).await;
    let client = cluster.client_without_hedging();
    // Small chunks, slowly (a fill takes seconds): each piece is cut from several forwarded
    // chunks, and a wrong cut would fail the client's digest check and show as a fallback.
    cluster.s3.fail_always(Fault::Drip { chunk: 16 << 10, every: Duration::from_millis(2) });
    // (object size, offset, length): a middle range, a range across the end of a short last
    // page, a whole short object, one byte.
    let cases = [
        (PAGE + (100 << 10), PAGE + 1000, 200 << 10),
        (PAGE, (1 << 20) + 5, 128 << 10),
        (300 << 10, 0, 300 << 10),
        (PAGE, PAGE - 1, 1),
    ];
    for (i, (size, offset, len)) in cases.into_iter().enumerate() {
        let k = block_key(80 + i as u64, 0, size);
        let data = cluster.put(&k, 80 + i as u64, size);
        let (bytes, traces) = client.read_traced(&vol(), &key(&k), offset, len).await.expect("read");
        let want: Bytes = data.slice(offset as usize..(offset + len).min(size) as usize);
        assert_eq!(bytes, want, "case {i}");
        assert!(
            traces.iter().all(|t| matches!(t.source, Source::Node { tier: Tier::Origin, .. })),
            "case {i}: {traces:?}"
        );
    }
    let stats = client.stats().snapshot();
    assert!(stats.iter().all(|(k, v)| !k.starts_with("fallback") || *v == 0), "{stats:?}");
}
