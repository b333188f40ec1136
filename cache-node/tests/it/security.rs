//! Nothing is trusted by default: clients need a certificate from the cluster CA, and a
//! volume's token, for hits and misses alike. Each refusal is a clear error with no bytes, and a
//! client whose own origin credentials work reads the origin instead.

use std::{sync::Arc, time::Duration};

use cache_client::stats::Source;
use cache_proto::{
    key::Volume,
    wire::{Get, REQUEST_PREFIX_LEN, Request},
};
use cache_testkit::cluster::*;

/// Sum of the three nodes' origin requests and errors.
async fn node_totals(cluster: &Cluster) -> (u64, u64) {
    let client = cluster.client();
    let mut totals = (0, 0);
    for i in 0..cluster.nodes.len() {
        let s = client.node_status(client.ring().ring.member(i)).await.expect("status");
        totals.0 += s.origin_requests;
        totals.1 += s.errors;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_and_unknown_volume_are_refused_hot_and_cold() {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let k = block_key(42, 0, 1 << 20);
    let data = cluster.put(&k, 42, 1 << 20);
    // Warm the page with a good client, so the refusals below are tested on a hit too.
    assert_eq!(
        cluster.client().read(&Volume::new(VOLUME).expect("v"), &key(&k), 0, 1 << 20).await.expect("warm"),
        data
    );
    let cold = block_key(43, 0, 1 << 20);
    let cold_data = cluster.put(&cold, 43, 1 << 20);

    let certs = cluster.path("certs");
    let cases = [
        (cluster.client_with("not-the-right-token", VOLUME, &certs), VOLUME, "wrong token for volume vol1"),
        (cluster.client_with(TOKEN, "vol9", &certs), "vol9", "serves no volume vol9"),
    ];
    for (client, volume, why) in cases {
        let (origin_before, errors_before) = node_totals(&cluster).await;
        let gets_before = cluster.s3.get_count();
        let volume = Volume::new(volume).expect("valid");
        for (k, d) in [(&k, &data), (&cold, &cold_data)] {
            let (bytes, traces) = client.read_traced(&volume, &key(k), 0, 1 << 20).await.expect("origin fallback");
            assert_eq!(&bytes, d);
            assert_eq!(traces[0].source, Source::Origin);
            assert_eq!(traces[0].passed_over.len(), 2, "{traces:?}");
            assert!(traces[0].passed_over.iter().all(|p| p.contains(why)), "{traces:?}");
        }
        let (origin_after, errors_after) = node_totals(&cluster).await;
        assert_eq!(origin_after, origin_before, "a refused request must not cause an origin GET at a node");
        assert_eq!(errors_after - errors_before, 4, "two nodes refused each of two pages");
        assert_eq!(cluster.s3.get_count() - gets_before, 2, "only the client's own fallback GETs");
        let stats = client.stats().snapshot();
        assert_eq!(stats["pages_origin_fallback"], 2);
        assert!(stats.keys().any(|k| k.starts_with("fallback_refused_")), "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca_is_refused() {
    let cluster = Cluster::start(&["a", "b"]).await;
    let k = block_key(77, 0, 1 << 20);
    let data = cluster.put(&k, 77, 1 << 20);
    let other = cluster.path("other-ca");
    cachectl::certs::generate(&other, &["a", "b"], &["client"], 30).expect("other CA");
    // The client trusts the real CA (so it knows the nodes) but presents a certificate from
    // another CA: splice the two.
    std::fs::copy(cluster.path("certs/ca.pem"), other.join("ca.pem")).expect("copy ca");
    let client = cluster.client_with(TOKEN, VOLUME, &other);
    let (bytes, traces) =
        client.read_traced(&Volume::new(VOLUME).expect("v"), &key(&k), 0, 1 << 20).await.expect("fallback");
    assert_eq!(bytes, data);
    assert_eq!(traces[0].source, Source::Origin);
    assert!(!traces[0].passed_over.is_empty());
    for i in 0..2 {
        assert!(
            client.node_status(client.ring().ring.member(i)).await.is_err(),
            "a node answered a client from another CA"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_gets_no_bytes() {
    let cluster = Cluster::start(&["a"]).await;
    let k = block_key(5, 0, 1 << 20);
    cluster.put(&k, 5, 1 << 20);
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(cluster.path("certs/ca.pem")).expect("ca");
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut crypto =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots)
            .with_no_client_auth();
    crypto.alpn_protocols = vec![cache_client::tls::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("quic crypto");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));

    let request = Request::Get(Get {
        volume: Volume::new(VOLUME).expect("v"),
        token: TOKEN.into(),
        key: key(&k),
        page_size: PAGE as u32,
        page: 0,
        start: 0,
        len: 1 << 20,
    });
    let attempt = async {
        // With TLS 1.3 the handshake can complete before the node checks the client's
        // (missing) certificate; the refusal then arrives on the first stream.
        let conn = endpoint
            .connect(cluster.nodes[0].quic, "a")
            .map_err(|e| format!("{e:?}"))?
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("{e:?}"))?;
        send.write_all(&request.encode()).await.map_err(|e| format!("{e:?}"))?;
        send.finish().map_err(|e| format!("{e:?}"))?;
        let mut prefix = [0u8; REQUEST_PREFIX_LEN];
        recv.read_exact(&mut prefix).await.map_err(|e| format!("{e:?}"))?;
        Ok::<_, String>(prefix)
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt).await.expect("refused promptly");
    let err = result.expect_err("a client without a certificate got an answer");
    assert!(err.contains("no certificates"), "the node should say why: {err}");
}
