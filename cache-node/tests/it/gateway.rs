//! `cachectl gateway` with a real S3 client nobody here wrote: boto3 (`tests/gateway_client.py`)
//! lists, reads whole objects and ranges, HEADs, is refused writes and bad credentials, against a
//! 3-node cluster. The bodies it got are compared here with the bytes put at the origin, and a
//! repeated GET must be served by the nodes (no new origin GET). boto3 is required: the test
//! fails, saying how to install it, when it is missing.

use std::{path::Path, process::Stdio, time::Duration};

use cache_client::config::{OriginConfig, VolumeConfig};
use cache_proto::key::Volume;
use cache_testkit::cluster::*;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway_client.py");
const OTHER_VOLUME: &str = "vol2";
const OTHER_TOKEN: &str = "vol2-token-0123456789";

fn require_boto3() {
    let out = std::process::Command::new("python3").args(["-c", "import boto3"]).output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "this test needs boto3: run `python3 -m pip install boto3` ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("this test needs python3 with boto3 (`python3 -m pip install boto3`): {e}"),
    }
}

/// Starts `cachectl gateway` on port 0 and returns it with the endpoint from its one line.
pub(crate) async fn start_gateway(config: &Path) -> (Child, String) {
    let mut child = Command::new(cachectl_binary())
        .arg("--config")
        .arg(config)
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cachectl gateway");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("gateway prints its address within 30s")
        .expect("read stdout")
        .expect("gateway exited before serving");
    let endpoint = line.strip_prefix("gateway serving on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert!(endpoint.starts_with("http://127.0.0.1:") && !endpoint.ends_with(":0"), "{line}");
    (child, endpoint.to_owned())
}

/// Runs the boto3 script; panics with its output unless it succeeds. Returns its stdout.
async fn boto3(args: &[&str]) -> String {
    let out = Command::new("python3").arg(SCRIPT).args(args).output().await.expect("run python3");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.code() != Some(3), "this test needs boto3: run `python3 -m pip install boto3`\n{stderr}");
    assert!(out.status.success(), "boto3 script failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

/// Memory hits summed over the nodes, asked over QUIC.
async fn memory_hits(client: &cache_client::Client, nodes: usize) -> u64 {
    let mut hits = 0;
    for i in 0..nodes {
        hits += client.node_status(client.ring().ring.member(i)).await.expect("node status").hits_memory;
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_through_the_gateway_and_cannot_write() {
    require_boto3();
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let keys = [
        (block_key(1001, 0, 4 << 20), 4 << 20),                      // one whole page
        (block_key(1001, 1, 1 << 20), 1 << 20),                      // a short last block
        (block_key(1002, 0, 1000), 1000),                            // a tiny one
        (block_key(2_000_123, 0, (5 << 20) + 123), (5 << 20) + 123), // two pages
        ("myjfs/juicefs_uuid".to_owned(), 36),                       // beside chunks/
    ];
    let mut objects = Vec::new();
    for (i, (key, len)) in keys.iter().enumerate() {
        let data = cluster.put(key, 500 + i as u64, *len);
        let file = cluster.path(&format!("expected-{i}.bin"));
        std::fs::write(&file, &data).expect("write expected bytes");
        objects.push((key.clone(), data, file));
    }

    // The volume, and another one whose valid credentials must not read it.
    std::fs::create_dir_all(cluster.path("vol2")).expect("mkdir");
    let other = VolumeConfig::new(
        Volume::new(OTHER_VOLUME).expect("valid volume name"),
        OTHER_TOKEN,
        vec![OriginConfig::new(format!("file://{}/", cluster.path("vol2").display()))],
    );
    let mut gateway_config = cluster.client_config(TOKEN, VOLUME, &cluster.path("certs"));
    gateway_config.volume.push(other);
    let config = cluster.path("gateway.toml");
    write_config(&config, &gateway_config);
    let (mut gateway, endpoint) = start_gateway(&config).await;

    let (page, tiny, two_pages) = (&objects[0], &objects[2], &objects[3]);
    let ranges = [
        (two_pages, "bytes=4194000-4194999", 4_194_000, 4_195_000), // across the page boundary
        (two_pages, "bytes=5000000-", 5_000_000, two_pages.1.len()),
        (page, "bytes=-1000", (4 << 20) - 1000, 4 << 20),
        (page, "bytes=10-99999999", 10, 4 << 20), // cut at the end
        (tiny, "bytes=-5000", 0, 1000),           // longer than the object
        (tiny, "bytes=999-999", 999, 1000),
    ];
    let range_spec: Vec<serde_json::Value> = ranges
        .iter()
        .enumerate()
        .map(|(i, (o, range, start, end))| {
            let out = cluster.path(&format!("range-{i}.bin"));
            serde_json::json!({ "key": o.0, "range": range, "start": start, "end": end, "out": out })
        })
        .collect();
    let spec = serde_json::json!({
        "endpoint": endpoint,
        "bucket": VOLUME,
        "access_key": VOLUME,
        "secret_key": TOKEN,
        "other": { "access_key": OTHER_VOLUME, "secret_key": OTHER_TOKEN },
        "fs": "myjfs",
        "objects": objects.iter().map(|(k, _, f)| serde_json::json!({ "key": k, "file": f })).collect::<Vec<_>>(),
        "ranges": range_spec,
    });
    let spec_file = cluster.path("spec.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write spec");
    let spec_file = spec_file.to_str().expect("utf8");

    let report = boto3(&["check", spec_file]).await;
    println!("{report}");
    let summary: serde_json::Value = serde_json::from_str(report.lines().last().expect("summary")).expect("json");
    assert!(summary["checks"].as_u64().expect("checks") >= 40, "{report}");
    for (i, (o, range, start, end)) in ranges.iter().enumerate() {
        let got = std::fs::read(cluster.path(&format!("range-{i}.bin"))).expect("range body");
        assert!(got == o.1[*start..*end], "{} {range}: {} bytes differ from the origin's", o.0, got.len());
    }

    // A second GetObject of a key is served by the nodes: no origin GET, memory hits instead.
    let client = cluster.client();
    let (gets, hits) = (cluster.s3.get_count(), memory_hits(&client, 3).await);
    let out = cluster.path("again.bin");
    boto3(&["get", spec_file, &two_pages.0, out.to_str().expect("utf8")]).await;
    assert!(std::fs::read(&out).expect("body") == two_pages.1, "second GET differs from the origin's bytes");
    assert_eq!(cluster.s3.get_count(), gets, "the second GET went to the origin");
    assert!(memory_hits(&client, 3).await >= hits + 2, "two pages should be memory hits");

    let pid = gateway.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = tokio::time::timeout(Duration::from_secs(10), gateway.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "gateway exited with {status} on SIGTERM");
}
