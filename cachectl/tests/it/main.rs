//! `cachectl` as an operator runs it, without a cluster: certificates, help, and config errors.
//! (Commands that need a cluster are tested in cache-node/tests/it, which start one; this file also
//! makes cargo build `cachectl` whenever the workspace's tests are built.)

use std::process::{Command, Output};

fn cachectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachectl")).args(args).env("RUST_LOG", "error").output().expect("run cachectl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn certs_creates_a_ca_and_leaf_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    let out = cachectl(&["certs", "--dir", d, "--nodes", "a,b", "--clients", "mount1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in ["ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key", "mount1.pem", "mount1.key"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let bad = cachectl(&["certs", "--dir", d, "--nodes", "Not_A_Label"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("Not_A_Label"), "{}", text(&bad.stderr));
}

#[test]
fn help_lists_every_command() {
    let out = cachectl(&["--help"]);
    assert!(out.status.success());
    for command in ["get", "status", "warmup", "gateway", "certs"] {
        assert!(text(&out.stdout).contains(command), "{command} missing from:\n{}", text(&out.stdout));
    }
}

#[test]
fn config_errors_name_the_file_and_key() {
    let out = cachectl(&["--config", "/nonexistent/client.toml", "status"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/client.toml"), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[cluster]\nmembers = []\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n").expect("write");
    let out = cachectl(&["--config", path.to_str().expect("utf8"), "status"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cluster.members"), "{}", text(&out.stderr));
    let out = cachectl(&["status"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--config"), "{}", text(&out.stderr));
}
