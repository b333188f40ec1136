//! The binaries as an operator uses them against a cluster: `cachectl get -v`, `status`, bad
//! node config files, and the node's admin HTTP endpoint.

use std::process::Output;

use cache_testkit::cluster::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::Command,
};

async fn cachectl(args: &[&str]) -> Output {
    Command::new(cachectl_binary()).args(args).env("RUST_LOG", "error").output().await.expect("run cachectl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_verbose_shows_sources_and_status_shows_members() {
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let k = block_key(31, 0, 3 << 20);
    let data = cluster.put(&k, 31, 3 << 20);
    let config = cluster.path("client.toml");
    std::fs::write(&config, cluster.client_toml(TOKEN, VOLUME, &cluster.path("certs"))).expect("write");
    let config = config.to_str().expect("utf8");
    let out_file = cluster.path("out.bin");

    let cold = cachectl(&["--config", config, "get", VOLUME, &k, "-o", out_file.to_str().expect("utf8"), "-v"]).await;
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    assert_eq!(std::fs::read(&out_file).expect("output"), data);
    assert!(text(&cold.stderr).contains("(miss, filled from origin)"), "{}", text(&cold.stderr));

    let warm = cachectl(&["--config", config, "get", VOLUME, &k, "--offset", "1000", "--len", "5000", "-v"]).await;
    assert!(warm.status.success());
    assert_eq!(warm.stdout, data[1000..6000]);
    assert!(text(&warm.stderr).contains("(memory hit)"), "{}", text(&warm.stderr));

    let bad_token = cluster.path("bad.toml");
    std::fs::write(&bad_token, cluster.client_toml("wrong-token-000", VOLUME, &cluster.path("certs"))).expect("write");
    let refused = cachectl(&["--config", bad_token.to_str().expect("utf8"), "get", VOLUME, &k, "-v"]).await;
    assert!(refused.status.success());
    assert_eq!(refused.stdout, data);
    let err = text(&refused.stderr);
    assert!(
        err.contains("origin (fallback)")
            && err.contains("wrong token")
            && err.contains("fallback_refused_unauthorized"),
        "{err}"
    );

    let status = cachectl(&["--config", config, "status", "--json"]).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["reachable"] == true));
    let misses: u64 = members.iter().map(|m| m["status"]["misses"].as_u64().expect("misses")).sum();
    let hits: u64 = members.iter().map(|m| m["status"]["hits_memory"].as_u64().expect("hits")).sum();
    assert_eq!((misses, hits), (1, 1));
    assert!(members.iter().any(|m| m["status"]["p99_ms"].as_f64().is_some_and(|v| v > 0.0)), "{json}");
    let share: f64 = members.iter().map(|m| m["share"].as_f64().expect("share")).sum();
    assert!((share - 1.0).abs() < 1e-6);

    cluster.kill(2).await;
    let table = cachectl(&["--config", config, "status"]).await;
    let table = text(&table.stdout);
    assert!(table.lines().any(|l| l.starts_with("c ") && l.contains(" NO ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("a ") && l.contains(" yes ")), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_http_serves_health_and_metrics() {
    let cluster = Cluster::start(&["a"]).await;
    let k = block_key(1, 0, 1 << 20);
    cluster.put(&k, 1, 1 << 20);
    let client = cluster.client();
    let (v, key) =
        (cache_proto::key::Volume::new(VOLUME).expect("v"), cache_proto::key::ObjectKey::new(&k).expect("k"));
    client.read(&v, &key, 0, 1 << 20).await.expect("cold");
    client.read(&v, &key, 0, 1 << 20).await.expect("warm");

    let health = http_get(cluster.nodes[0].admin, "/healthz").await;
    assert!(health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok a\n"), "{health}");
    let metrics = http_get(cluster.nodes[0].admin, "/metrics").await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
    };
    // Hit ratio per volume, and the bytes the cache saved the origin (served from memory).
    assert_eq!(value("mirrorcache_node_hits_total{volume=\"vol1\",tier=\"memory\"}"), 1.0);
    assert_eq!(value("mirrorcache_node_hits_total{volume=\"vol1\",tier=\"disk\"}"), 0.0);
    assert_eq!(value("mirrorcache_node_misses_total{volume=\"vol1\"}"), 1.0);
    assert_eq!(value("mirrorcache_node_origin_requests_total{volume=\"vol1\"}"), 1.0);
    assert_eq!(value("mirrorcache_node_origin_bytes_total{volume=\"vol1\"}"), (1 << 20) as f64);
    assert_eq!(value("mirrorcache_node_served_bytes_total{volume=\"vol1\",tier=\"memory\"}"), (1 << 20) as f64);
    assert_eq!(value("mirrorcache_node_served_bytes_total{volume=\"vol1\",tier=\"origin\"}"), (1 << 20) as f64);
    assert_eq!(value("mirrorcache_node_errors_total{kind=\"unauthorized\"}"), 0.0);
    assert_eq!(value("mirrorcache_node_request_duration_seconds_count{tier=\"memory\"}"), 1.0);
    assert!(value("mirrorcache_node_cache_used_bytes{tier=\"memory\"}") >= (1 << 20) as f64);
    assert!(metrics.contains("mirrorcache_node_request_duration_seconds_bucket"));
    assert!(metrics.contains("foyer_storage_op_total"), "foyer's own metrics share the registry");
}

#[tokio::test]
async fn bad_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[node]\nid = \"a\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\nbogus = 1\n",
            "bogus",
        ),
        ("[node]\nid = \"a\"\nlisten = \"nowhere\"\n", "listen"),
        (
            "[node]\nid = \"a\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n[cache]\ndisk_capacity = \"1MiB\"\n[tls]\nca = \"x\"\ncert = \"x\"\nkey = \"x\"\n",
            "cache.disk_capacity",
        ),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).expect("write");
        let out = Command::new(node_binary()).arg("--config").arg(&path).output().await.expect("run node");
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(key), "expected {key} in: {}", text(&out.stderr));
    }
}

#[tokio::test]
async fn gateway_refuses_zero_threads_before_reading_its_config() {
    let out = cachectl(&["--config", "/nonexistent.toml", "gateway", "--threads", "0"]).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--threads") && stderr.contains("0 is not in 1.."), "{stderr}");
}
