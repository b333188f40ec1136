//! A node's config file: parsing and validation never panic on any text, and what a node
//! derives from a config that validates (weight, address, disk blocks, shards) does not either.
#![no_main]

use cache_client::config::parse_toml;
use cache_node::config::NodeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = parse_toml::<NodeConfig>(text) else { return };
    if config.validate().is_err() {
        return;
    }
    let _ = (config.weight(), config.advertise(), config.disk_dir());
    assert!(config.cache.block_size() >= config.cache.page_size.0);
    assert!(config.cache.memory_shards() >= 1);
});
