//! Every file in `configs/` is a valid config of the kind it claims to be, so the documented
//! examples cannot drift from the code.

use std::path::Path;

use cache_client::config::ClientConfig;
use cache_node::config::NodeConfig;

#[test]
fn every_example_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for dir in [root.clone(), root.join("local"), root.join("juicefs-mirror")] {
        for entry in std::fs::read_dir(&dir).expect("configs dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            if text.lines().any(|l| l.trim() == "[node]") {
                NodeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            } else {
                ClientConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked, 8,
        "node.toml, client.toml, regional-copy.toml, the four local demo configs and the JuiceFS gateway's"
    );
}

/// Every `mirrorcache_node_*` metric the Grafana dashboard and the docs query is one the node
/// really exports.
#[test]
fn dashboard_queries_only_metrics_the_node_exports() {
    let volume = cache_proto::key::Volume::new("vol1").expect("valid");
    let metrics = cache_node::metrics::NodeMetrics::new(vec![volume.clone()]);
    metrics.volume_origins(&volume, 2);
    let exported = metrics.encode();
    let dashboard =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/grafana-dashboard.json"))
            .expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 6));
    let mut names: Vec<&str> = dashboard
        .split("mirrorcache_node_")
        .skip(1)
        .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or(""))
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let series = format!("mirrorcache_node_{name}");
        let base = series.trim_end_matches("_bucket");
        assert!(
            exported.contains(&format!("# TYPE {base} ")) || exported.contains(&format!("\n{series}")),
            "{series} is not exported"
        );
    }
}
