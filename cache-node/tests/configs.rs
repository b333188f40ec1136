//! Every file in `configs/` is a valid config of the kind it claims to be, so the documented
//! examples cannot drift from the code.

use std::path::Path;

use cache_client::config::ClientConfig;
use cache_node::config::NodeConfig;

#[test]
fn every_example_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for dir in [root.clone(), root.join("local")] {
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
    assert_eq!(checked, 6, "node.toml, client.toml and the four local demo configs");
}
